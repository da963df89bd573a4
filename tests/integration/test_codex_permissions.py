"""Permission profiles (the codex role's codex_permissions, codex_default_permissions and
codex_allowed_permission_profiles), checked with the real Codex CLI 0.171.0.

The role renders into a temporary folder that run_codex bind-mounts over /etc/codex. What Codex uses is read three
ways, none of which is the role's own word: what Codex prints (its warnings, `codex doctor --json`), what it sends
the model (the request's <permission_profile> to a real HTTP server standing in for the provider), and what a
command run in Codex's own sandbox (`codex sandbox -- sh -c ...`, bubblewrap) can do: write into data/out, read
data/secrets/key. The host's profile `team` (the default) is read-only and denies data/secrets; `build` extends it
and may write data/out. A user's own ~/.codex/config.toml chooses `mine`, which may do both: with the policy Codex
runs `team` instead; without it the same user and file get `mine` (the assertions can fail).
"""
import json
import tomllib

import pytest

from tests.integration.codex_run import PLAYBOOK_ENV, doctor, loaded, run_codex
from tests.lab.paths import REPO

TARGET = REPO / "tests" / "integration" / "targets" / "codex" / "render.yml"
MARKER = "# Managed by Ansible (llmops.ollama.codex)"
PROBE = "touch {out}/probe && echo WROTE; cat {secrets}/key && echo READ; rm -f {out}/probe"


def profiles(root):
    secrets, out = str(root / "data" / "secrets"), str(root / "data" / "out")
    return {"team": {"extends": ":read-only", "filesystem": {secrets: "deny"}},
            "build": {"extends": "team", "filesystem": {out: "write"}}}


def own_config(root):
    """A user's own config.toml (not the role's) choosing a profile of their own that may do everything."""
    return "\n".join([
        'default_permissions = "mine"',
        "",
        "[permissions.mine]",
        'extends = ":workspace"',
        "",
        "[permissions.mine.filesystem]",
        '"%s" = "write"' % (root / "data" / "out"),
        '"%s" = "read"' % (root / "data" / "secrets"),
        "",
    ])


class Scenario:
    pass


def scenario(root, capture, **variables):
    """A fresh root: data to probe, a home the role writes (root's, in codex_users) and a home with the user's own
    config; the role rendered with the variables (check mode first, then twice)."""
    from tests.conftest import run_playbook

    s = Scenario()
    s.root, s.sysdir, s.managed, s.own = root, root / "etc-codex", root / "home-managed", root / "home-own"
    (root / "data" / "out").mkdir(parents=True)
    (root / "data" / "secrets").mkdir()
    (root / "data" / "secrets" / "key").write_text("hush\n")
    s.managed.mkdir()
    (s.own / ".codex").mkdir(parents=True)
    (s.own / ".codex" / "config.toml").write_text(own_config(root))
    s.variables = dict({"codex_provider": "remote", "codex_remote_url": capture.url, "codex_model": "lab/tiny",
                        "codex_request_max_retries": 0, "codex_stream_max_retries": 0,
                        "codex_system_config_dir": str(s.sysdir), "codex_model_catalog": False,
                        "codex_users": [{"name": "root", "home": str(s.managed)}]}, **variables)

    def run(check=False):
        result = run_playbook(TARGET, extra_vars=s.variables, check=check, env=PLAYBOOK_ENV)
        assert result.rc == 0, result.output[-5000:]
        return result

    s.check = run(check=True)
    s.after_check = s.sysdir.exists()
    s.first = run()
    s.second = run()
    return s


@pytest.fixture(scope="module")
def policy(capture, tmp_path_factory):
    root = tmp_path_factory.mktemp("codex-permissions")
    return scenario(root, capture, codex_permissions=profiles(root), codex_default_permissions="team",
                    codex_allowed_permission_profiles=["team", "build", ":read-only"])


def sandboxed(codex, s, home, *args, with_policy=True):
    """What `codex [ARGS] sandbox` lets a command do: {"wrote": bool, "read": bool}, and the output."""
    command = PROBE.format(out=s.root / "data" / "out", secrets=s.root / "data" / "secrets")
    proc = run_codex(codex, list(args) + ["sandbox", "--", "sh", "-c", command], home,
                     system_dir=s.sysdir if with_policy else None)
    out = proc.stdout + proc.stderr
    return {"wrote": "WROTE" in proc.stdout.splitlines(), "read": "READ" in proc.stdout.splitlines()}, out


def exec_turn(codex, s, capture, home, *args):
    """`codex exec` as the user: its output, and the <permission_profile> of the first request Codex sent."""
    before = len(capture.requests)
    proc = run_codex(codex, list(args) + ["exec", "--skip-git-repo-check", "hi"], home, system_dir=s.sysdir)
    out = proc.stdout + proc.stderr
    assert len(capture.requests) > before, out[-3000:]
    body = json.loads(capture.requests[before][2])
    texts = [c.get("text", "") for item in body.get("input", []) if isinstance(item.get("content"), list)
             for c in item["content"]]
    context = [t for t in texts if "<permission_profile" in t]
    assert context, texts
    return out, context[0][context[0].index("<permission_profile"):context[0].index("</permission_profile>")]


def test_the_policy_holds_the_profiles_and_the_layers_choose_one(policy):
    s = policy
    secrets, out = str(s.root / "data" / "secrets"), str(s.root / "data" / "out")
    text = (s.sysdir / "requirements.toml").read_text()
    assert text.startswith(MARKER)
    assert tomllib.loads(text) == {
        "allowed_permission_profiles": {"team": True, "build": True, ":read-only": True},
        "default_permissions": "team",
        "permissions": {"team": {"extends": ":read-only", "filesystem": {secrets: "deny"}},
                        "build": {"extends": "team", "filesystem": {out: "write"}}}}
    # the configuration layers choose the default and define no profile (one defined there again stops Codex)
    for path in (s.sysdir / "config.toml", s.managed / ".codex" / "config.toml"):
        doc = tomllib.loads(path.read_text())
        assert doc["default_permissions"] == "team"
        assert "permissions" not in doc and "sandbox_mode" not in doc, path
    # check mode predicted the change and wrote nothing; the second run changed nothing
    assert s.first.stats["localhost"]["changed"] > 0
    assert s.check.stats["localhost"]["changed"] == s.first.stats["localhost"]["changed"]
    assert not s.after_check
    assert s.second.stats["localhost"]["changed"] == 0, s.second.output[-3000:]


def test_doctor_loads_the_rendered_files_and_the_host_profile_runs(codex, policy):
    details = loaded(doctor(codex, policy.managed, system_dir=policy.sysdir))
    assert details["config.toml"] == str(policy.managed / ".codex" / "config.toml")
    # team: nothing written, data/secrets not read
    assert sandboxed(codex, policy, policy.managed)[0] == {"wrote": False, "read": False}


def test_a_users_own_profile_the_policy_forbids_is_not_the_one_codex_uses(codex, policy, capture):
    own_file = str(policy.own / ".codex" / "config.toml")
    # guard: the same user and file without the policy run `mine`
    assert sandboxed(codex, policy, policy.own, with_policy=False)[0] == {"wrote": True, "read": True}

    done, out = sandboxed(codex, policy, policy.own)
    assert done == {"wrote": False, "read": False}, out[-3000:]
    assert "Read-only file system" in out and "Permission denied" in out
    # Codex says so, naming both profiles
    fallback = ("Configured value for `permission_profile` is disallowed by requirements; falling back from `mine` to "
                "required value `team`.")
    load = doctor(codex, policy.own, system_dir=policy.sysdir)["config.load"]
    assert (load["status"], load["details"]["config.toml"]) == ("warning", own_file), load
    assert load["details"]["startup warning"] == fallback
    out, profile = exec_turn(codex, policy, capture, policy.own)
    assert "warning: " + fallback in out, out[-3000:]
    # and what it tells the model is team's: data/secrets denied, no write anywhere
    assert '<entry access="deny" escalatable="false"><path>%s</path></entry>' % (policy.root / "data" / "secrets") \
        in profile, profile
    assert 'access="write"' not in profile, profile


@pytest.mark.parametrize("flags", [["-s", "danger-full-access"], ["--dangerously-bypass-approvals-and-sandbox"],
                                   ["-c", 'sandbox_mode="danger-full-access"'],
                                   ["-c", 'default_permissions=":danger-full-access"']],
                         ids=["sandbox-flag", "bypass", "sandbox_mode", "builtin-not-allowed"])
def test_flags_and_the_older_sandbox_mode_are_held_to_the_policy(codex, policy, capture, flags):
    out, profile = exec_turn(codex, policy, capture, policy.managed, *flags)
    assert "sandbox: read-only" in out.splitlines(), out[-3000:]
    assert "<path>%s</path>" % (policy.root / "data" / "secrets") in profile and 'access="write"' not in profile


def test_an_allowed_choice_of_the_user_is_used(codex, policy):
    done, out = sandboxed(codex, policy, policy.own, "-c", 'default_permissions="build"')
    assert done == {"wrote": True, "read": False}, out[-3000:]  # build: team, and data/out writable


def test_without_an_allow_list_the_profiles_are_defaults_a_users_own_choice_overrides(codex, capture, tmp_path):
    s = scenario(tmp_path, capture, codex_permissions=profiles(tmp_path), codex_default_permissions="team")
    assert not (s.sysdir / "requirements.toml").exists()
    system = tomllib.loads((s.sysdir / "config.toml").read_text())
    assert system["default_permissions"] == "team" and system["permissions"] == profiles(tmp_path)
    assert "sandbox_mode" not in system
    assert s.second.stats["localhost"]["changed"] == 0, s.second.output[-3000:]
    loaded(doctor(codex, s.managed, system_dir=s.sysdir))
    assert sandboxed(codex, s, s.managed)[0] == {"wrote": False, "read": False}  # the host's default: team
    assert sandboxed(codex, s, s.own)[0] == {"wrote": True, "read": True}  # the user's own `mine`


def test_nothing_writes_sandbox_mode_unless_it_is_set(codex, capture, tmp_path):
    """By default no file the role writes has sandbox_mode (it would take the place of permission profiles chosen
    below it); set, it is written, and a user's own default_permissions still wins over the system layer's."""
    s = scenario(tmp_path / "default", capture)
    for path in (s.sysdir / "config.toml", s.managed / ".codex" / "config.toml"):
        doc = tomllib.loads(path.read_text())
        assert not {"sandbox_mode", "default_permissions", "permissions"} & set(doc), (path, doc)
    assert not (s.sysdir / "requirements.toml").exists()
    loaded(doctor(codex, s.managed, system_dir=s.sysdir))

    s = scenario(tmp_path / "set", capture, codex_sandbox_mode="read-only")
    assert tomllib.loads((s.sysdir / "config.toml").read_text())["sandbox_mode"] == "read-only"
    assert sandboxed(codex, s, s.managed)[0] == {"wrote": False, "read": True}  # read-only
    assert sandboxed(codex, s, s.own)[0] == {"wrote": True, "read": True}  # the user's own `mine`
