"""The host's policy for Codex (the codex role's requirements.toml), checked with the real Codex CLI 0.171.0.

A user's own ~/.codex/config.toml asks for more than the policy allows: approval "never", sandbox
"danger-full-access", live web search, and three MCP servers (one allowed, one not listed, one listed under its name
with another command). The role renders the policy into a temporary folder that run_codex bind-mounts over
/etc/codex. What Codex does is read from what it prints and from what it sends to a real HTTP server standing in
for the provider (tests/integration/codex_run.py): Codex holds each setting to an allowed value, says so in a
warning naming /etc/codex/requirements.toml, and never starts the MCP servers the policy does not allow. The same
user, without the policy, gets what the config asks for: the assertions can fail.
"""
import json
import tomllib

import pytest

from tests.integration.codex_run import PLAYBOOK_ENV, run_codex
from tests.lab.paths import REPO

TARGET = REPO / "tests" / "integration" / "targets" / "codex" / "render.yml"
MARKER = "# Managed by Ansible (llmops.ollama.codex)"
MCP_URL = "https://mcp.example.com/mcp"

POLICY = {
    "codex_allowed_approval_policies": ["on-request"],
    "codex_allowed_sandbox_modes": ["read-only", "workspace-write"],
    "codex_allowed_web_search_modes": ["disabled"],
}
FALLBACK = "is disallowed by requirements; falling back to required value"


def user_config(capture, bin_dir):
    """A user's own config.toml asking for more than the policy allows."""
    return "\n".join([
        'model = "lab/tiny:latest"',
        'model_provider = "capture"',
        'approval_policy = "never"',
        'sandbox_mode = "danger-full-access"',
        'web_search = "live"',
        "",
        "[model_providers.capture]",
        'name = "capture"',
        'base_url = "%s/v1"' % capture.url,
        'wire_api = "responses"',
        "request_max_retries = 0",
        "stream_max_retries = 0",
        "",
        "[mcp_servers.docs]",  # allowed: the same name and command as the policy's entry
        'command = "%s/docs-mcp"' % bin_dir,
        "",
        "[mcp_servers.stranger]",  # not in the policy
        'command = "%s/stranger-mcp"' % bin_dir,
        "",
        "[mcp_servers.web]",  # in the policy by name, with a URL there and a command here
        'command = "%s/stranger-mcp"' % bin_dir,
        "",
    ])


@pytest.fixture(scope="module")
def policy(capture, tmp_path_factory):
    root = tmp_path_factory.mktemp("codex-policy")
    sysdir = root / "etc-codex"
    home = root / "home"
    bin_dir = root / "bin"
    (home / ".codex").mkdir(parents=True)
    bin_dir.mkdir()
    # each MCP "server" records that Codex started it, then exits (Codex reports the failed start and goes on)
    for name in ("docs-mcp", "stranger-mcp"):
        script = bin_dir / name
        script.write_text("#!/bin/sh\necho started >> %s/%s.started\nexit 1\n" % (root, name))
        script.chmod(0o755)
    (home / ".codex" / "config.toml").write_text(user_config(capture, bin_dir))
    variables = dict(POLICY, codex_system_config=False, codex_system_config_dir=str(sysdir),
                     codex_model_catalog=False,  # the policy alone: no server to read here
                     codex_allowed_mcp_servers={"docs": {"command": "%s/docs-mcp" % bin_dir}, "web": {"url": MCP_URL}})
    from tests.conftest import run_playbook

    def run(check=False, extra=None):
        result = run_playbook(TARGET, extra_vars=dict(variables, **(extra or {})), check=check, env=PLAYBOOK_ENV)
        assert result.rc == 0, result.output[-5000:]
        return result

    class Scenario:
        pass

    s = Scenario()
    s.root, s.sysdir, s.home, s.bin_dir, s.run, s.variables = root, sysdir, home, bin_dir, run, variables
    s.check = run(check=True)
    s.after_check = sysdir.exists()
    s.first = run()
    s.second = run()
    return s


def codex_exec(codex, policy, *args, with_policy=True):
    """`codex exec ARGS` as the user, with the rendered policy in /etc/codex (or without it): (header, output)."""
    proc = run_codex(codex, ["exec", "--skip-git-repo-check"] + list(args) + ["hi"], policy.home,
                     system_dir=policy.sysdir if with_policy else None)
    out = proc.stdout + proc.stderr
    header = dict(line.split(": ", 1) for line in out.splitlines()
                  if line.split(":", 1)[0] in ("model", "provider", "approval", "sandbox"))
    return header, out


def sent(capture, since):
    """The first request body Codex sent after `since` requests, and its turn metadata."""
    requests = capture.requests[since:]
    assert requests, "Codex sent nothing"
    body = json.loads(requests[0][2])
    turn = json.loads(body["client_metadata"]["x-codex-turn-metadata"])
    tools = [t.get("name") or t.get("type") for t in body.get("tools", [])]
    return turn, tools


def test_the_policy_file_is_what_codex_reads(policy):
    path = policy.sysdir / "requirements.toml"
    text = path.read_text()
    assert text.startswith(MARKER)
    assert tomllib.loads(text) == {
        "allowed_approval_policies": ["on-request"],
        "allowed_sandbox_modes": ["read-only", "workspace-write"],
        "allowed_web_search_modes": ["disabled"],
        "mcp_servers": {"docs": {"identity": {"command": "%s/docs-mcp" % policy.bin_dir}},
                        "web": {"identity": {"url": MCP_URL}}}}
    assert (path.stat().st_mode & 0o777, path.stat().st_uid) == (0o644, 0)
    assert sorted(p.name for p in policy.sysdir.iterdir()) == ["requirements.toml"]  # no config.toml asked for
    # check mode predicted the change and wrote nothing; the second run changed nothing
    assert policy.first.stats["localhost"]["changed"] > 0
    assert policy.check.stats["localhost"]["changed"] == policy.first.stats["localhost"]["changed"]
    assert not policy.after_check
    assert policy.second.stats["localhost"]["changed"] == 0, policy.second.output[-3000:]


def test_without_the_policy_the_user_gets_what_the_config_asks(codex, policy, capture):
    """Guard: the same user and config, with no requirements.toml, run as asked."""
    before = len(capture.requests)
    header, out = codex_exec(codex, policy, with_policy=False)
    assert (header["approval"], header["sandbox"].split()[0]) == ("never", "danger-full-access"), out[-3000:]
    assert FALLBACK not in out
    turn, tools = sent(capture, before)
    assert turn["sandbox_mode"] == "danger-full-access"
    assert "web_search" in tools


def test_a_user_asking_for_more_is_held_to_the_policy(codex, policy, capture):
    before = len(capture.requests)
    header, out = codex_exec(codex, policy)
    assert (header["approval"], header["sandbox"].split()[0]) == ("on-request", "read-only"), out[-3000:]
    # Codex says what it replaced and where the rule is, in its own words
    for setting, asked, allowed in (("approval_policy", "Never", "[OnRequest]"),
                                    ("sandbox_mode", "DangerFullAccess", "[ReadOnly, WorkspaceWrite]"),
                                    ("web_search_mode", "Live", "[Disabled]")):
        assert ("invalid value for `%s`: `%s` is not in the allowed set %s (set by /etc/codex/requirements.toml)"
                % (setting, asked, allowed)) in out, out[-3000:]
    assert "falling back to required value OnRequest" in out
    # and what it sends holds: a read-only sandbox, no web search tool for the model
    turn, tools = sent(capture, before)
    assert turn["sandbox_mode"] == "read-only"
    assert "web_search" not in tools and "exec_command" in tools


@pytest.mark.parametrize("flags", [["-s", "danger-full-access", "-c", 'approval_policy="never"', "-c",
                                    'web_search="live"'],
                                   ["--dangerously-bypass-approvals-and-sandbox"]], ids=["flags", "bypass"])
def test_command_line_flags_are_held_too(codex, policy, capture, flags):
    before = len(capture.requests)
    header, out = codex_exec(codex, policy, *flags)
    assert (header["approval"], header["sandbox"].split()[0]) == ("on-request", "read-only"), out[-3000:]
    assert out.count("(set by /etc/codex/requirements.toml)") >= 2
    turn, tools = sent(capture, before)
    assert turn["sandbox_mode"] == "read-only" and "web_search" not in tools


def test_mcp_servers_outside_the_allow_list_are_never_started(codex, policy):
    for started in policy.root.glob("*.started"):
        started.unlink()
    listed = run_codex(codex, ["mcp", "list", "--json"], policy.home, system_dir=policy.sysdir)
    servers = {s["name"]: (s["enabled"], s["disabled_reason"]) for s in json.loads(listed.stdout)}
    assert servers == {"docs": (True, None),
                       "stranger": (False, "requirements (/etc/codex/requirements.toml)"),
                       "web": (False, "requirements (/etc/codex/requirements.toml)")}, listed.stdout
    codex_exec(codex, policy)
    assert sorted(p.name for p in policy.root.glob("*.started")) == ["docs-mcp.started"]
    # guard: without the policy Codex starts both programs
    codex_exec(codex, policy, with_policy=False)
    assert sorted(p.name for p in policy.root.glob("*.started")) == ["docs-mcp.started", "stranger-mcp.started"]


def test_an_empty_allow_list_allows_no_mcp_server(codex, policy, tmp_path, playbook):
    sysdir = tmp_path / "etc-codex"
    run = playbook(TARGET, extra_vars={"codex_system_config": False, "codex_system_config_dir": str(sysdir),
                                       "codex_model_catalog": False,
                                       "codex_allowed_mcp_servers": {}}, env=PLAYBOOK_ENV)
    assert run.rc == 0, run.output[-3000:]
    assert tomllib.loads((sysdir / "requirements.toml").read_text()) == {"mcp_servers": {}}
    listed = run_codex(codex, ["mcp", "list", "--json"], policy.home, system_dir=sysdir)
    assert {s["name"]: s["enabled"] for s in json.loads(listed.stdout)} == {
        "docs": False, "stranger": False, "web": False}


def test_a_policy_of_the_administrators_own_is_kept_as_a_backup_and_ours_removed_when_unset(
        policy, tmp_path, playbook):
    sysdir = tmp_path / "etc-codex"
    sysdir.mkdir()
    own = 'allowed_approval_policies = ["never"]\n'
    (sysdir / "requirements.toml").write_text(own)
    base = {"codex_system_config": False, "codex_system_config_dir": str(sysdir), "codex_model_catalog": False}
    run = playbook(TARGET, extra_vars=dict(base, **POLICY), env=PLAYBOOK_ENV)
    assert run.rc == 0, run.output[-3000:]
    backups = [p for p in sysdir.iterdir() if p.name.startswith("requirements.toml.")]
    assert len(backups) == 1 and backups[0].read_text() == own
    assert (sysdir / "requirements.toml").read_text().startswith(MARKER)
    # no policy: the file the role wrote goes; a second run and a file of someone else's are left alone
    run = playbook(TARGET, extra_vars=base, env=PLAYBOOK_ENV)
    assert run.rc == 0 and run.stats["localhost"]["changed"] == 1, run.output[-3000:]
    assert not (sysdir / "requirements.toml").exists()
    (sysdir / "requirements.toml").write_text(own)
    run = playbook(TARGET, extra_vars=base, env=PLAYBOOK_ENV)
    assert run.rc == 0 and run.stats["localhost"]["changed"] == 0, run.output[-3000:]
    assert (sysdir / "requirements.toml").read_text() == own
