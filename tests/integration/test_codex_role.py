"""The codex role through ansible-playbook, checked with the real Codex CLI, pinned (no mocks).

The role renders into temporary roots (codex_system_config_dir, the users' home/codex_home), never into the
machine's /etc/codex or /root. Then the real `codex` (tests/lab/codex_cli.py) reads what was written:

- `codex doctor --json`: checks["config.load"] must be "ok" ("warning" means Codex ignored keys of ours) and
  checks["network.provider_reachability"] must reach the provider, a real `ollama serve` (the ollama_server fixture).
- The system layer is only read from /etc/codex: inside `unshare --mount` the rendered folder is bind-mounted there,
  over a private overlay of /etc, so the machine's /etc is untouched (it need not even have /etc/codex).
- doctor has no --profile, so a profile is proved with `codex --profile NAME exec`: it prints the model and provider
  in use and sends the request, which Ollama (or the capture server below) answers.
- Every codex process is given a dead loopback proxy for anything but loopback, so nothing leaves the machine
  (doctor otherwise probes GitHub for updates, and OpenAI for its default provider).
"""
import base64
import hashlib
import json
import os
import shutil
import subprocess
import threading
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.integration.codex_run import PLAYBOOK_ENV, doctor, exec_header, loaded
from tests.lab import codex_cli, ollama_build
from tests.lab.paths import REPO

TARGET = REPO / "tests" / "integration" / "targets" / "codex"
MARKER = "# Managed by Ansible (llmops.ollama.codex)"

# Values that need TOML escaping on their way into the files: quotes, a backslash, non-ASCII letters (a model name
# can hold none of these: Ollama's names are letters, digits, _, -, . and :, as the role checks).
MODEL = "lab/Coder_x.y-z:7b-q4_K"
HEADER = 'team "blue" \\ ünï'
TOKEN = "s3cret-token"


# ---------------------------------------------------------------------------------------------------------------
# The remote scenario: a custom provider for the ollama_server fixture with a token, headers, profiles, three
# users (one default home, one with a config of their own, one forced), and the system layer. Three runs: check
# mode on a fresh root, real, real again.


@pytest.fixture(scope="module")
def remote(ollama_server, capture, tmp_path_factory):
    root = tmp_path_factory.mktemp("codex-remote")
    sysdir = root / "etc-codex"
    nobody_home = root / "home-nobody"
    nobody_home.mkdir()
    own = {"root": root / "root-codex", "daemon": root / "daemon-codex"}
    for user, path in own.items():
        path.mkdir(mode=0o700)
        (path / "config.toml").write_text('# %s\'s own\nmodel = "mine:%s"\n' % (user, user))
    variables = {
        "codex_provider": "remote",
        "codex_remote_url": ollama_server.url + "/",  # a trailing slash: the file must have exactly one /v1
        "codex_env_key": "OLLAMA_API_KEY",
        "codex_env_key_instructions": "Ask the platform team for an Ollama token.",
        "codex_http_headers": {"X-Team": HEADER},
        "codex_request_max_retries": 0,
        "codex_stream_max_retries": 0,
        "codex_stream_idle_timeout_ms": 20000,
        "codex_model": MODEL,
        "codex_model_context_window": 32768,
        "codex_model_reasoning_effort": "low",
        "codex_approval_policy": "on-request",
        "codex_sandbox_mode": "workspace-write",
        "codex_extra_settings": {"check_for_update_on_startup": False},
        "codex_system_config_dir": str(sysdir),
        # the catalog is test_codex_catalog.py's: the models of this shared server depend on the tests run before
        "codex_model_catalog": False,
        "codex_users": [
            {"name": "nobody", "home": str(nobody_home), "profiles": {
                "fast": {"model": "small:1b", "model_reasoning_effort": "minimal", "sandbox_mode": "read-only"},
                # the same provider, sent to the capture server: the profile layer is merged over config.toml
                "capture": {"model_providers": {"ollama-remote": {
                    "name": "capture", "wire_api": "responses", "base_url": capture.url + "/v1"}}},
            }},
            {"name": "root", "codex_home": str(own["root"])},
            {"name": "daemon", "codex_home": str(own["daemon"]), "force": True},
        ],
    }
    from tests.conftest import run_playbook

    def run(check=False):
        result = run_playbook(TARGET / "render.yml", extra_vars=variables, check=check, env=PLAYBOOK_ENV)
        assert result.rc == 0, result.output[-5000:]
        return result

    class Scenario:
        pass

    s = Scenario()
    s.root, s.sysdir, s.own, s.ollama, s.variables = root, sysdir, own, ollama_server, variables
    s.nobody_home, s.nobody_dir = nobody_home, nobody_home / ".codex"
    s.check = run(check=True)
    s.fresh_after_check = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    s.first = run()
    s.second = run()
    return s


def changed(run):
    return run.stats["localhost"]["changed"]


def test_the_lab_cli_is_the_pinned_release(codex):
    out = subprocess.run([str(codex.binary), "--version"], stdout=subprocess.PIPE, universal_newlines=True, check=True)
    assert out.stdout.strip() == "codex-cli " + codex_cli.VERSION
    assert codex.tarball.name == "codex-%s-linux-x64.tgz" % codex_cli.VERSION
    assert codex_cli.sri_digest(codex.tarball) == codex.integrity


def test_seed_style_config_fails_to_load(codex, tmp_path):
    """Guard: the assertion on config.load can fail. The seed design's provider table is rejected twice over."""
    (tmp_path / ".codex").mkdir()
    config = tmp_path / ".codex" / "config.toml"
    config.write_text('model = "gpt-oss:20b"\nmodel_provider = "ollama"\n\n[model_providers.ollama]\nname = "Ollama"\n'
                      'base_url = "http://127.0.0.1:11434/v1"\nwire_api = "chat"\n')
    checks = doctor(codex, tmp_path)
    assert checks["config.load"]["status"] == "fail"
    assert checks["config.load"]["summary"] == "config could not be loaded"
    _header, out = exec_header(codex, tmp_path)
    assert '`wire_api = "chat"` is no longer supported' in out
    # with wire_api fixed, the next reason shows
    config.write_text(config.read_text().replace('wire_api = "chat"', 'wire_api = "responses"'))
    assert doctor(codex, tmp_path)["config.load"]["status"] == "fail"
    _header, out = exec_header(codex, tmp_path)
    assert "model_providers contains reserved built-in provider IDs: `ollama`" in out


def test_check_mode_predicts_the_changes_and_a_second_run_changes_nothing(remote):
    assert changed(remote.first) > 0
    assert changed(remote.check) == changed(remote.first), remote.check.output[-3000:]
    # check mode wrote nothing: only what the test itself made beforehand was there
    assert remote.fresh_after_check == ["daemon-codex", "daemon-codex/config.toml", "home-nobody", "root-codex",
                                        "root-codex/config.toml"]
    assert changed(remote.second) == 0, remote.second.output[-3000:]


def test_a_look_that_fails_runs_every_step_and_changes_nothing_on_the_converged_host(remote):
    """The role's look fails (forced, tests/integration/targets/codex/look_fails.yml): every step runs, in check mode
    and for real, and none changes the files the look's path wrote (the system layer, the users' configs and
    profiles, a forced user's file, the token's .env)."""
    from tests.conftest import run_playbook

    before = dict((p, p.read_bytes()) for p in remote.root.rglob("*") if p.is_file())
    for check in (True, False):
        run = run_playbook(TARGET / "look_fails.yml", extra_vars=remote.variables, check=check, env=PLAYBOOK_ENV)
        assert run.rc == 0, run.output[-5000:]
        assert "TASK [llmops.ollama.codex : Look up the users]" in run.output  # the look's other path ran
        assert changed(run) == 0, run.output[-5000:]
    assert dict((p, p.read_bytes()) for p in remote.root.rglob("*") if p.is_file()) == before


def test_files_are_what_codex_reads_with_every_value_intact(remote, capture):
    system = remote.sysdir / "config.toml"
    user = remote.nobody_dir / "config.toml"
    for path in (system, user):
        text = path.read_text(encoding="utf-8")
        assert text.startswith(MARKER)
        assert text.count("/v1") == 1
        doc = tomllib.loads(text)
        assert doc["model"] == MODEL
        assert doc["model_provider"] == "ollama-remote"
        assert doc["check_for_update_on_startup"] is False
        assert (doc["approval_policy"], doc["sandbox_mode"], doc["model_reasoning_effort"]) == \
            ("on-request", "workspace-write", "low")
        assert doc["model_context_window"] == 32768
        assert doc["model_providers"] == {"ollama-remote": {
            "name": "Ollama (127.0.0.1)", "base_url": remote.ollama.url + "/v1", "wire_api": "responses",
            "env_key": "OLLAMA_API_KEY", "env_key_instructions": "Ask the platform team for an Ollama token.",
            "http_headers": {"X-Team": HEADER}, "request_max_retries": 0, "stream_max_retries": 0,
            "stream_idle_timeout_ms": 20000}}
    assert "oss_provider" not in tomllib.loads(system.read_text())  # only for the local server
    assert (system.stat().st_mode & 0o777, system.stat().st_uid) == (0o644, 0)
    assert (remote.sysdir.stat().st_mode & 0o777) == 0o755
    nobody = 65534
    assert (remote.nobody_dir.stat().st_mode & 0o777, remote.nobody_dir.stat().st_uid) == (0o700, nobody)
    for name in ("config.toml", "fast.config.toml", "capture.config.toml"):
        st = (remote.nobody_dir / name).stat()
        assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o600, nobody, nobody), name
    fast = (remote.nobody_dir / "fast.config.toml").read_text()
    assert fast.startswith(MARKER)
    assert tomllib.loads(fast) == {"model": "small:1b", "model_reasoning_effort": "minimal", "sandbox_mode": "read-only"}
    # profiles live in CODEX_HOME only: nothing but config.toml in the system folder
    assert sorted(p.name for p in remote.sysdir.iterdir()) == ["config.toml"]


def test_users_own_config_is_left_alone_unless_forced(remote):
    root_own = remote.own["root"] / "config.toml"
    assert root_own.read_text() == '# root\'s own\nmodel = "mine:root"\n'
    assert "NOT overwriting %s: it is root's own file" % root_own in remote.first.output
    assert "NOT overwriting %s" % root_own in remote.second.output  # said on every run, never a failure
    daemon_dir = remote.own["daemon"]
    assert (daemon_dir / "config.toml").read_text().startswith(MARKER)
    backups = [p for p in daemon_dir.iterdir() if p.name.startswith("config.toml.") and p.name != "config.toml"]
    assert len(backups) == 1 and backups[0].read_text() == '# daemon\'s own\nmodel = "mine:daemon"\n'
    assert (daemon_dir.stat().st_uid, daemon_dir.stat().st_mode & 0o777) == (1, 0o700)


def test_user_config_loads_and_reaches_the_remote_ollama(remote, codex):
    # HOME only: Codex finds ~/.codex/config.toml by itself, as it will for the user
    checks = doctor(codex, remote.nobody_home, env={"OLLAMA_API_KEY": TOKEN})
    details = loaded(checks)
    assert details["config.toml"] == str(remote.nobody_dir / "config.toml")
    assert (details["model"], details["model provider"]) == (MODEL, "ollama-remote")
    reach = checks["network.provider_reachability"]
    assert reach["status"] == "ok", reach
    assert reach["summary"] == "active provider endpoints are reachable over HTTP"
    assert reach["details"]["ollama-remote API route probe"] == \
        "%s/v1/<redacted> route exists (HTTP 200)" % remote.ollama.url
    assert checks["auth.credentials"]["status"] == "ok"
    assert checks["updates.status"]["details"]["check for update on startup"] == "false"  # codex_extra_settings


def test_the_token_variable_is_required(remote, codex):
    checks = doctor(codex, remote.nobody_home)
    loaded(checks)
    auth = checks["auth.credentials"]
    assert auth["status"] == "fail"
    assert auth["details"]["provider auth env var"] == "OLLAMA_API_KEY (missing)"


def test_system_layer_loads_from_etc_codex(remote, codex, tmp_path):
    """A user with no config of their own gets /etc/codex/config.toml, the role's system file."""
    checks = doctor(codex, tmp_path, env={"OLLAMA_API_KEY": TOKEN}, system_dir=remote.sysdir)
    details = loaded(checks)
    assert details["config.toml"] == [str(tmp_path / ".codex" / "config.toml"), "missing"]
    assert (details["model"], details["model provider"]) == (MODEL, "ollama-remote")
    assert checks["network.provider_reachability"]["status"] == "ok"
    # and without the bind mount, this machine's Codex has no such provider: the layer really came from /etc/codex
    assert doctor(codex, tmp_path)["config.load"]["details"]["model provider"] == "openai"


def test_profile_is_layered_and_sent_to_ollama(remote, codex):
    header, out = exec_header(codex, remote.nobody_home, profile="fast", env={"OLLAMA_API_KEY": TOKEN})
    assert (header["model"], header["provider"]) == ("small:1b", "ollama-remote"), out[-2000:]
    assert header["reasoning effort"] == "minimal" and header["sandbox"].startswith("read-only")
    assert "model 'small:1b' not found" in out  # Ollama's answer: the request reached the server
    header, out = exec_header(codex, remote.nobody_home, env={"OLLAMA_API_KEY": TOKEN})
    assert (header["model"], header["reasoning effort"]) == (MODEL, "low")
    assert header["sandbox"].startswith("workspace-write")


def test_what_codex_sends_token_header_and_model_exactly(remote, codex, capture):
    before = len(capture.requests)
    header, out = exec_header(codex, remote.nobody_home, profile="capture", env={"OLLAMA_API_KEY": TOKEN})
    assert header["provider"] == "ollama-remote", out[-2000:]
    sent = capture.requests[before:]
    assert sent, out[-2000:]
    path, headers, body = sent[0]
    assert path == "/v1/responses"
    assert headers["Authorization"] == "Bearer " + TOKEN
    # http.server reads header bytes as latin-1; Codex sent the UTF-8 of the value
    assert headers["X-Team"].encode("latin-1").decode("utf-8") == HEADER
    assert json.loads(body)["model"] == MODEL


def test_the_token_can_come_from_a_command_instead_of_a_file(codex, capture, playbook, tmp_path):
    """codex_remote_auth_command: the role writes the provider's auth table and no .env; the real Codex runs the
    command and sends what it printed as the bearer token (to the capture server, which records the request)."""
    secret = tmp_path / "secret-store" / "ollama-token"
    secret.parent.mkdir(mode=0o700)
    secret.write_text(TOKEN + "\n")
    command = tmp_path / "ollama-token"
    command.write_text('#!/bin/sh\n# the token for the team given, from the site\'s secret store\n'
                       '[ "$1" = --team ] && [ "$2" = blue ] || exit 3\nexec cat "%s"\n' % secret)
    command.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    variables = {"codex_provider": "remote", "codex_remote_url": capture.url, "codex_model": MODEL,
                 "codex_remote_auth_command": {"command": str(command), "args": ["--team", "blue"],
                                               "timeout_ms": 5000, "refresh_interval_ms": 300000},
                 "codex_request_max_retries": 0, "codex_stream_max_retries": 0,
                 "codex_system_config": False, "codex_model_catalog": False,
                 "codex_users": [{"name": "root", "home": str(home)}]}
    first = playbook(TARGET / "render.yml", extra_vars=variables, env=PLAYBOOK_ENV)
    assert first.rc == 0, first.output[-4000:]
    provider = tomllib.loads((home / ".codex" / "config.toml").read_text())["model_providers"]["ollama-remote"]
    assert provider["auth"] == {"command": str(command), "args": ["--team", "blue"], "timeout_ms": 5000,
                                "refresh_interval_ms": 300000}
    assert "env_key" not in provider
    assert not (home / ".codex" / ".env").exists()  # no token in a file
    assert TOKEN not in first.output
    loaded(doctor(codex, home))

    before = len(capture.requests)
    header, out = exec_header(codex, home)
    assert header["provider"] == "ollama-remote", out[-2000:]
    sent = capture.requests[before:]
    assert sent, out[-2000:]
    assert sent[0][1]["Authorization"] == "Bearer " + TOKEN

    second = playbook(TARGET / "render.yml", extra_vars=variables, env=PLAYBOOK_ENV)
    assert second.rc == 0 and changed(second) == 0, second.output[-4000:]


def test_local_provider_on_the_default_port_is_codex_builtin(codex, playbook, tmp_path):
    """Port 11434: nothing to define, `ollama` is built in. Proved against a real Ollama on 127.0.0.1:11434 in a
    private network namespace (the machine's own port 11434 is not touched)."""
    ollama_build.build(ollama_build.VERSIONS[0])
    sysdir = tmp_path / "etc-codex"
    run = playbook(TARGET / "render.yml", extra_vars={
        "codex_provider": "local", "codex_model": "qwen2.5-coder:1.5b", "codex_system_config_dir": str(sysdir),
        "codex_model_catalog": False},  # the machine's own port 11434 is not this test's server
        env=PLAYBOOK_ENV)
    assert run.rc == 0, run.output[-4000:]
    doc = tomllib.loads((sysdir / "config.toml").read_text())
    assert doc == {"model": "qwen2.5-coder:1.5b", "model_provider": "ollama", "oss_provider": "ollama"}
    home = tmp_path / "home"
    home.mkdir()
    state = tmp_path / "ollama"
    state.mkdir()
    checks = doctor(codex, home, system_dir=sysdir, ollama_on_11434=state)
    details = loaded(checks)
    assert (details["model"], details["model provider"]) == ("qwen2.5-coder:1.5b", "ollama")
    reach = checks["network.provider_reachability"]
    assert reach["status"] == "ok", reach
    assert reach["details"]["ollama API route probe"] == "http://localhost:11434/v1/<redacted> route exists (HTTP 200)"


def test_local_provider_on_another_port_is_a_custom_provider(codex, ollama_server, playbook, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    run = playbook(TARGET / "render.yml", extra_vars={
        "codex_provider": "local", "codex_local_port": ollama_server.port, "codex_system_config": False,
        "codex_model_catalog": False,
        "codex_users": [{"name": "root", "home": str(home)}]}, env=PLAYBOOK_ENV)
    assert run.rc == 0, run.output[-4000:]
    doc = tomllib.loads((home / ".codex" / "config.toml").read_text())
    assert doc == {"model": "gpt-oss:20b", "model_provider": "ollama-local", "oss_provider": "ollama",
                   "model_providers": {"ollama-local": {"name": "Ollama (local)", "wire_api": "responses",
                                                        "base_url": "http://127.0.0.1:%d/v1" % ollama_server.port}}}
    checks = doctor(codex, home)
    details = loaded(checks)
    assert details["model provider"] == "ollama-local"
    reach = checks["network.provider_reachability"]
    assert reach["status"] == "ok", reach
    assert reach["details"]["ollama-local API route probe"] == \
        "http://127.0.0.1:%d/v1/<redacted> route exists (HTTP 200)" % ollama_server.port


ADDRESSES = ["gpu1", "http://gpu1:11434/", "http://gpu1:11434/v1/", "  gpu1:8080  ", "HTTPS://ai.example.com/ollama/v1",
             "http://10.0.0.5", "0.0.0.0", "http://[::]:11434", "GPU-1.lab.example.com:443/v1",
             "ollama.com", ":31434"]

REFUSALS = [
    dict(name="reserved remote id", codex_remote_provider_id="ollama",
         expect="codex_remote_provider_id 'ollama' cannot be used: it is one of Codex's built-in provider ids"),
    dict(name="reserved local id", codex_provider="local", codex_local_port=8080, codex_local_provider_id="lmstudio",
         expect="codex_local_provider_id 'lmstudio' cannot be used"),
    dict(name="scheme typo", codex_remote_url="htp://gpu1:11434", expect="the scheme 'htp' is neither http nor https"),
    dict(name="missing colon", codex_remote_url="http//gpu1:11434", expect="is not an Ollama address"),
    dict(name="doubled /v1", codex_remote_url="http://gpu1:11434/v1/v1", expect="it ends in /v1 twice"),
    dict(name="port out of range", codex_remote_url="gpu1:114340", expect="port 114340 is not between 1 and 65535"),
    dict(name="credentials in URL", codex_remote_url="http://admin:pw@gpu1:11434", expect="is not an Ollama address"),
    dict(name="empty remote URL", codex_remote_url="",
         expect="codex_remote_url '' is not an Ollama address: it is empty, and codex_provider is remote"),
    dict(name="approval untrusted", codex_approval_policy="untrusted",
         expect="value of codex_approval_policy must be one of: on-request, never, got: untrusted"),
    dict(name="reserved ids in extra settings",
         codex_extra_settings={"model_providers": {"openai": {"name": "x", "base_url": "http://h:11434/v1"},
                                                   "amazon-bedrock": {"name": "y", "base_url": "http://h:11434/v1"}}},
         expect="model_providers openai, amazon-bedrock: built-in provider ids cannot be redefined"),
    dict(name="chat wire API", codex_extra_settings={"model_providers": {"gpu": {
        "name": "x", "base_url": "http://h:11434/v1", "wire_api": "chat"}}}, expect='wire_api must be "responses"'),
    dict(name="base_url without /v1 in a profile", codex_profiles={"gpu": {"model_providers": {"gpu": {
        "name": "x", "base_url": "http://h:11434"}}}}, expect="gpu: base_url must end in /v1"),
    dict(name="profile name with a slash", codex_profiles={"../x": {"model": "m"}},
         expect="Profile names become file names"),
    dict(name="profile name ending in a newline", codex_profiles={"fast\n": {"model": "m"}},
         expect="Profile names become file names"),
    dict(name="model name with a quote", codex_model='lab/"quoted":7b',
         expect="""invalid model name 'lab/"quoted":7b': the model '"quoted"' may not start with '"'"""),
    dict(name="unknown user", codex_users=[{"name": "no-such-user-here"}],
         expect="codex_users: no-such-user-here is not a user on localhost"),
    # the host's policy (test_codex_policy.py shows what Codex does with it)
    dict(name="sandbox policy without read-only", codex_allowed_sandbox_modes=["workspace-write"],
         codex_sandbox_mode="workspace-write",
         expect='codex_allowed_sandbox_modes ["workspace-write"] must include read-only'),
    dict(name="approval outside the policy", codex_approval_policy="never",
         codex_allowed_approval_policies=["on-request"],
         expect="approval_policy never is outside the host's policy"),
    dict(name="a profile's sandbox outside the policy", codex_allowed_sandbox_modes=["read-only"],
         codex_profiles={"yolo": {"sandbox_mode": "danger-full-access"}},
         expect="sandbox_mode danger-full-access is outside the host's policy"),
    dict(name="a user's web search outside the policy", codex_allowed_web_search_modes=["cached"],
         codex_users=[{"name": "nobody", "home": "/nonexistent", "settings": {"web_search": "live"}}],
         expect="codex_users: nobody: web_search live is outside the host's policy"),
    dict(name="MCP entry with a command and a URL",
         codex_allowed_mcp_servers={"docs": {"command": "/usr/bin/docs", "url": "https://x.example.com"}},
         expect='codex_allowed_mcp_servers: "docs": each entry is a name'),
    dict(name="MCP entry that is a string", codex_allowed_mcp_servers={"docs": "/usr/bin/docs"},
         expect='codex_allowed_mcp_servers: "docs": each entry is a name'),
    dict(name="unknown approval policy", codex_allowed_approval_policies=["sometimes"],
         expect="codex_allowed_approval_policies"),
    # permission profiles (test_codex_permissions.py shows what Codex does with them); codex_sandbox_mode is
    # read-only in every case (tasks/refusal.yml)
    dict(name="a profile name Codex reserves", codex_permissions={":team": {}},
         expect='codex_permissions: ":team": profile names may hold letters, digits, _ and - only'),
    dict(name="a profile key Codex would ignore",
         codex_permissions={"team": {"extends": ":read-only", "filesytem": {"/srv": "deny"}}},
         expect='codex_permissions: "team": unknown keys filesytem'),
    dict(name="a default the allow-list lacks", codex_permissions={"team": {"extends": ":read-only"}},
         codex_default_permissions="team", codex_allowed_permission_profiles=[":read-only", ":workspace"],
         expect='codex_default_permissions "team" is not in codex_allowed_permission_profiles'),
    dict(name="an allowed profile nobody defines", codex_allowed_permission_profiles=["mine", ":read-only"],
         expect="codex_allowed_permission_profiles: mine is neither built-in"),
    dict(name="an allow-list without a default to fall back to", codex_allowed_permission_profiles=[":read-only"],
         expect='codex_allowed_permission_profiles [":read-only"]: set codex_default_permissions'),
    dict(name="sandbox mode beside a default profile", codex_default_permissions=":workspace",
         expect="sandbox_mode read-only and default_permissions :workspace are both set in one file"),
    dict(name="sandbox mode under a profile allow-list",
         codex_allowed_permission_profiles=[":read-only", ":workspace"],
         expect="sandbox_mode read-only: with codex_allowed_permission_profiles set Codex uses permission profiles"),
    # the token from a command (the provider's auth table)
    dict(name="auth command and a token", codex_remote_auth_command={"command": "/usr/bin/token"},
         codex_remote_token="s3cret", expect="codex_remote_auth_command and a token"),
    dict(name="auth command and an env_key", codex_remote_auth_command={"command": "/usr/bin/token"},
         codex_env_key="OLLAMA_TOKEN", expect="codex_remote_auth_command and a token"),
    dict(name="auth command for the local server", codex_provider="local",
         codex_remote_auth_command={"command": "/usr/bin/token"},
         expect="codex_remote_auth_command is given, but codex_provider is not remote"),
    dict(name="auth command without a command", codex_remote_auth_command={"args": ["x"]},
         expect="codex_remote_auth_command needs a command"),
    dict(name="auth command args as one string",
         codex_remote_auth_command={"command": "/usr/bin/token", "args": "--team blue"},
         expect="codex_remote_auth_command args must be a list of strings"),
    dict(name="auth command with a key Codex does not know",
         codex_remote_auth_command={"command": "/usr/bin/token", "env": {"A": "1"}},
         expect="codex_remote_auth_command has keys Codex does not know: env"),
    dict(name="auth command with a timeout of 0",
         codex_remote_auth_command={"command": "/usr/bin/token", "timeout_ms": 0},
         expect="timeout_ms and refresh_interval_ms must be whole numbers of milliseconds above 0"),
]


def test_refusals_are_clear_and_addresses_normalized_like_ollama_host(playbook, tmp_path):
    from ansible_collections.llmops.ollama.plugins.module_utils._ollama_client import normalize_base_url

    sysdir = tmp_path / "etc-codex"
    run = playbook(TARGET / "refusals.yml", extra_vars={
        "system_dir": str(sysdir),
        "address_cases": [{"url": url, "expected": normalize_base_url(url) + "/v1"} for url in ADDRESSES],
        "refusal_cases": REFUSALS}, env=PLAYBOOK_ENV)
    assert run.rc == 0, run.output[-6000:]
    assert run.stats["localhost"]["failed"] == 0
    assert run.stats["localhost"]["rescued"] == len(REFUSALS)
    assert run.output.count("All assertions passed") == len(ADDRESSES)
    assert "Traceback" not in run.output
    assert not sysdir.exists()  # every refusal came before anything was written


# ---------------------------------------------------------------------------------------------------------------
# Installing the CLI: from a registry mirror on loopback serving the lab's copy of the real package and the real
# registry's metadata (integrity), into temporary directories.


class RegistryMirror:
    """An npm registry's two URLs for one package version: the version document and the tarball."""

    def __init__(self, cli):
        self.hits = []
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, body=None, path=None):
                self.send_response(200)
                self.send_header("Content-Type", "application/json" if body else "application/octet-stream")
                self.send_header("Content-Length", str(len(body) if body else path.stat().st_size))
                self.end_headers()
                if self.command == "GET":
                    if body:
                        self.wfile.write(body)
                    else:
                        with open(path, "rb") as f:
                            shutil.copyfileobj(f, self.wfile, 1 << 20)

            def do_GET(self):
                mirror.hits.append("%s %s" % (self.command, self.path))
                name = "%s-linux-x64" % cli.version
                if self.path == "/@openai/codex/" + name:
                    self._answer(body=json.dumps({"name": "@openai/codex", "version": name, "dist": {
                        "integrity": cli.integrity, "shasum": cli.shasum,
                        "tarball": "%s/@openai/codex/-/%s" % (mirror.url, cli.tarball.name)}}).encode())
                elif self.path == "/@openai/codex/-/" + cli.tarball.name:
                    self._answer(path=cli.tarball)
                else:
                    self.send_error(404)

            do_HEAD = do_GET

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def version_of(binary):
    return subprocess.run([str(binary), "--version"], stdout=subprocess.PIPE, universal_newlines=True, check=False,
                          env=dict(os.environ, HOME="/nonexistent")).stdout.strip()


def test_install_cli_verified_from_the_registry_idempotent_and_switchable(codex, playbook, tmp_path):
    mirror = RegistryMirror(codex)
    try:
        install, bindir = tmp_path / "opt-codex", tmp_path / "bin"
        triple = "x86_64-unknown-linux-musl"
        # an earlier version in use, as a previous run would have left it
        old = install / "0.168.0" / "vendor" / triple / "bin" / "codex"
        old.parent.mkdir(parents=True)
        old.write_text("#!/bin/sh\necho codex-cli 0.168.0\n")
        old.chmod(0o755)
        bindir.mkdir()
        (bindir / "codex").symlink_to(old)
        variables = {"codex_cli_install": True, "codex_cli_registry_url": mirror.url + "/",
                     "codex_cli_install_dir": str(install), "codex_cli_bin_dir": str(bindir),
                     "codex_system_config": False, "codex_model_catalog": False}

        check = playbook(TARGET / "render.yml", extra_vars=variables, check=True, env=PLAYBOOK_ENV)
        assert check.rc == 0, check.output[-4000:]
        assert changed(check) > 0
        assert not (install / codex_cli.VERSION).exists() and os.readlink(bindir / "codex") == str(old)

        first = playbook(TARGET / "render.yml", extra_vars=variables, env=PLAYBOOK_ENV)
        assert first.rc == 0, first.output[-4000:]
        new = install / codex_cli.VERSION / "vendor" / triple / "bin" / "codex"
        assert os.readlink(bindir / "codex") == str(new)
        assert version_of(bindir / "codex") == "codex-cli " + codex_cli.VERSION
        # check mode read the metadata (to say what it would install); the real run fetched it and the tarball once
        meta, tarball = "GET /@openai/codex/%s-linux-x64" % codex.version, "GET /@openai/codex/-/" + codex.tarball.name
        assert mirror.hits == [meta, meta, tarball]
        assert sorted(p.name for p in install.iterdir()) == [".downloads", "0.168.0", codex_cli.VERSION]
        assert list((install / ".downloads").iterdir()) == []  # the package is not kept once unpacked
        assert old.exists()  # the earlier version stays for a rollback

        second = playbook(TARGET / "render.yml", extra_vars=variables, env=PLAYBOOK_ENV)
        assert second.rc == 0 and changed(second) == 0, second.output[-4000:]
        assert len(mirror.hits) == 3  # nothing fetched again

        back = playbook(TARGET / "render.yml", extra_vars=dict(variables, codex_cli_version="0.168.0"), env=PLAYBOOK_ENV)
        assert back.rc == 0 and changed(back) == 1, back.output[-4000:]
        assert version_of(bindir / "codex") == "codex-cli 0.168.0"
        assert len(mirror.hits) == 3
    finally:
        mirror.stop()


def test_install_cli_refuses_a_package_that_does_not_match_its_checksum(codex, playbook, tmp_path):
    wrong = "sha512:" + hashlib.sha512(b"not the package").hexdigest()
    run = playbook(TARGET / "render.yml", extra_vars={
        "codex_cli_install": True, "codex_cli_tarball_src": str(codex.tarball), "codex_cli_checksum": wrong,
        "codex_cli_install_dir": str(tmp_path / "opt-codex"), "codex_cli_bin_dir": str(tmp_path / "bin"),
        "codex_system_config": False, "codex_model_catalog": False}, env=PLAYBOOK_ENV)
    assert run.rc != 0
    digest = base64.b64decode(codex.integrity.split("-", 1)[1]).hex()
    assert "%s has sha512 %s, expected %s" % (codex.tarball, digest, wrong.split(":", 1)[1]) in run.output
    assert "Nothing was installed; the codex command is unchanged." in run.output
    assert not (tmp_path / "bin" / "codex").exists() and not (tmp_path / "opt-codex" / codex_cli.VERSION).exists()
