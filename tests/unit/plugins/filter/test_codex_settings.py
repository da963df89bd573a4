"""The codex_settings_problem filter on its own (tests/integration/test_codex_role.py refuses each case through the
role, with the real Codex CLI reading what the role writes when the settings pass)."""
import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.llmops.ollama.plugins.filter.codex_settings import KEYS, codex_settings_problem

GOOD = dict(provider="remote", remote_provider_id="ollama-gpu", local_provider_id="ollama-local", builtin_local=False,
            reserved_ids=["openai", "ollama", "lmstudio", "amazon-bedrock"], local_port=11434, model="tiny:latest",
            cli_install=True, cli_version="0.171.0", users=[{"name": "alice", "profiles": {"fast": {}}}],
            profiles={"fast": {"model": "tiny:latest"}}, extra_settings={}, config={"approval_policy": "on-request"},
            remote_token="s3cret", user_tokens=False, env_key="OLLAMA_GPU_TOKEN", env_key_given=False,
            tokens_given=True, auth={}, remote_ca="", remote_ca_host="", remote_ca_host_known=False,
            allowed_approval_policies=["on-request"], allowed_sandbox_modes=[], allowed_web_search_modes=[],
            allowed_mcp_servers={"docs": {"command": "/usr/bin/docs"}},
            permissions={"team": {"extends": ":workspace", "filesystem": {"/srv/secrets": "deny", "/srv/data": {
                ".": "read", "scratch": "write"}}, "network": {"enabled": True, "domains": {"example.com": "allow"}}},
                "review": {"extends": "team", "workspace_roots": {"/srv/code": True}}},
            default_permissions="team", allowed_permission_profiles=["team", "review", ":read-only"])


def test_good_settings_have_no_problem():
    assert codex_settings_problem(GOOD) == ""


@pytest.mark.parametrize("change, says", [
    (dict(remote_provider_id="openai"), "codex_remote_provider_id 'openai' cannot be used: it is one of Codex's"),
    (dict(provider="local", local_port="0", remote_token=""), "codex_local_port '0' is not a port number (1-65535)."),
    (dict(model="a b"), "model_name: invalid model name"),
    (dict(cli_version="latest"), "codex_cli_version 'latest' is not a Codex CLI version"),
    (dict(users=[{"name": "alice", "home": "home/alice"}]), "codex_users: each entry needs a name"),
    (dict(users=[{"name": "a"}, {"name": "a"}]), "codex_users lists a user twice."),
    (dict(extra_settings={"model_providers": {"x": {"base_url": "http://h:11434"}}}),
     "codex_extra_settings / codex_profiles: model_providers x: base_url must end in /v1"),
    (dict(env_key="CODEX_TOKEN"), "codex_env_key CODEX_TOKEN starts with CODEX_"),
    # Codex drops a .env key whose upper-cased name starts with CODEX_: codex_tok is dropped as CODEX_TOKEN is
    (dict(env_key="codex_tok"), "codex_env_key codex_tok starts with CODEX_ (in any case)"),
    (dict(env_key="Codex_Token"), "codex_env_key Codex_Token starts with CODEX_ (in any case)"),
    (dict(auth={"command": "/bin/t", "args": None}, remote_token="", tokens_given=False, env_key=""),
     "codex_remote_auth_command args must be a list of strings"),
    (dict(auth={"command": "/bin/t", "timeout_ms": True}, remote_token="", tokens_given=False, env_key=""),
     "codex_remote_auth_command timeout_ms and refresh_interval_ms must be whole numbers"),
    (dict(remote_ca_host="proxy1"), "codex_remote_ca_host proxy1 is not in the inventory."),
    (dict(allowed_sandbox_modes=["workspace-write"]), 'codex_allowed_sandbox_modes ["workspace-write"] must include'),
    (dict(allowed_mcp_servers={"docs": {"command": ""}}), 'codex_allowed_mcp_servers: "docs": each entry is a name'),
    (dict(config={"approval_policy": "never"}, profiles={"fast": {"approval_policy": "untrusted"}}),
     "codex_approval_policy / codex_sandbox_mode / codex_default_permissions / codex_extra_settings / codex_profiles: "
     "approval_policy never, approval_policy untrusted are outside the host's policy"),
    # permission profiles, and the allow-list
    (dict(permissions={":team": {}}, default_permissions="", allowed_permission_profiles=[]),
     'codex_permissions: ":team": profile names may hold letters, digits, _ and - only'),
    (dict(permissions={"network": {}}, default_permissions="", allowed_permission_profiles=[":read-only", ":workspace"]),
     'codex_permissions: "network": with codex_allowed_permission_profiles set'),
    (dict(permissions={"team": ":workspace"}), 'codex_permissions: "team": a profile is a mapping'),
    (dict(permissions={"team": {"extends": ":read-only", "filesytem": {}}}),
     'codex_permissions: "team": unknown keys filesytem (a profile takes extends, workspace_roots, filesystem, network)'),
    (dict(permissions={"team": {"extends": ":danger-full-access"}}),
     'codex_permissions: "team": extends ":danger-full-access": a profile extends :read-only or :workspace or another'),
    (dict(permissions={"team": {"extends": "ghost"}}), 'codex_permissions: "team": extends "ghost"'),
    (dict(permissions={"team": {"extends": "review"}, "review": {"extends": "team"}}),
     'codex_permissions: "team" extends itself through team -> review -> team'),
    (dict(permissions={"team": {"filesystem": {"/srv": "rw"}}}), 'codex_permissions: "team": filesystem maps a path'),
    (dict(permissions={"team": {"filesystem": {"/srv": {"a": {"b": "read"}}}}}),
     'codex_permissions: "team": filesystem maps a path'),
    (dict(permissions={"team": {"network": {"domains": {"example.com": "yes"}}}}),
     'codex_permissions: "team": network.domains maps each domain to allow or deny.'),
    (dict(default_permissions="ghost"), 'codex_default_permissions "ghost" is neither one of Codex\'s built-in profiles'),
    (dict(allowed_permission_profiles=["team", "mine"]), "codex_allowed_permission_profiles: mine is neither built-in"),
    (dict(allowed_permission_profiles=["review"]),
     'codex_default_permissions "team" is not in codex_allowed_permission_profiles ["review"]'),
    (dict(default_permissions="", allowed_permission_profiles=["review", ":read-only"]),
     'codex_allowed_permission_profiles ["review", ":read-only"]: set codex_default_permissions'),
    (dict(allowed_sandbox_modes=["read-only"]),
     'codex_default_permissions "team" counts as sandbox mode workspace-write, which codex_allowed_sandbox_modes'),
    (dict(profiles={"fast": {"default_permissions": ":danger-full-access"}}),
     "codex_approval_policy / codex_sandbox_mode / codex_default_permissions / codex_extra_settings / codex_profiles: "
     "default_permissions :danger-full-access is outside the host's policy"),
    (dict(allowed_permission_profiles=[], profiles={"fast": {"default_permissions": "ghost"}}),
     "codex_profiles: fast: default_permissions ghost is neither built-in"),
    (dict(config={"sandbox_mode": "read-only", "default_permissions": "team"}),
     "codex_sandbox_mode / codex_default_permissions / codex_extra_settings: sandbox_mode read-only: with "
     "codex_allowed_permission_profiles set Codex uses permission profiles only"),
    (dict(allowed_permission_profiles=[], config={"sandbox_mode": "read-only", "default_permissions": "team"}),
     "codex_sandbox_mode / codex_default_permissions / codex_extra_settings: sandbox_mode read-only and "
     "default_permissions team are both set in one file"),
    (dict(allowed_permission_profiles=[], config={"default_permissions": "team"},
          users=[{"name": "alice", "settings": {"sandbox_mode": "workspace-write"}}]),
     "codex_users: alice: settings: sandbox_mode workspace-write and default_permissions team are both set"),
    (dict(users=[{"name": "alice", "settings": {"permissions": {"team": {"extends": ":workspace"}}}}]),
     "codex_users: alice: settings: permissions team: with codex_allowed_permission_profiles set these profiles are"),
])
def test_each_problem_names_the_variable(change, says):
    assert codex_settings_problem(dict(GOOD, **change)).startswith(says)


def test_a_profile_file_may_keep_the_older_sandbox_mode_without_an_allow_list():
    """A profile file is a layer over config.toml: its sandbox_mode takes the place of the default_permissions below."""
    assert codex_settings_problem(dict(GOOD, allowed_permission_profiles=[], config={"default_permissions": "team"},
                                       profiles={"legacy": {"sandbox_mode": "read-only"}})) == ""


def test_an_allow_list_of_both_builtin_fallbacks_needs_no_default():
    assert codex_settings_problem(dict(GOOD, default_permissions="", config={},
                                       allowed_permission_profiles=[":read-only", ":workspace"])) == ""


def test_settings_without_every_key_are_a_clear_error():
    with pytest.raises(AnsibleFilterError, match="give a mapping with provider"):
        codex_settings_problem({k: GOOD[k] for k in KEYS[:3]})
