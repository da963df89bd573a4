"""Codex knows the local models: the codex role's model catalog (model_catalog_json), read from a real `ollama serve`
(the lab build, with the lab's tiny models from the lab registry) and used by the real Codex CLI 0.171.0.

The server runs models with OLLAMA_CONTEXT_LENGTH=8192 (tests/lab/ollama_server.py), as the server role writes
ollama_server_context_length; one model made from the tiny one sets num_ctx 2048 of its own, and lab/small's template
renders no tools. `codex exec` prints the model's answer with no "Model metadata ... not found" warning, and the
context the server then runs the model with (/api/ps) is the catalog's context_window.
"""
import json
import os
import subprocess
import urllib.request

import pytest

from tests.integration.codex_run import LOOPBACK_ONLY, PLAYBOOK_ENV
from tests.lab import codex_cli, models
from tests.lab.ollama_server import OllamaServer
from tests.lab.paths import REPO

TARGET = REPO / "tests" / "integration" / "targets" / "codex" / "render.yml"
METADATA_WARNING = "Model metadata for `%s` not found"
REPLY = models.reply("lab/tiny", "latest").strip()  # "Hello from tiny!"


def api(server, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(server.url + path, data=data), timeout=60) as resp:
        lines = resp.read().decode().strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


@pytest.fixture(scope="module")
def server(registry):
    """A server of its own, with the tiny model (tools), lab/small (no tools) and a 2k-context copy of tiny."""
    with OllamaServer() as srv:
        srv.tiny = "%s/lab/tiny:latest" % registry.address
        srv.small = "%s/lab/small:latest" % registry.address
        for name in (srv.tiny, srv.small):
            assert api(srv, "/api/pull", {"model": name, "insecure": True, "stream": False})["status"] == "success"
        srv.short = "lab/tiny-2k:latest"
        assert api(srv, "/api/create", {"model": srv.short, "from": srv.tiny, "parameters": {"num_ctx": 2048},
                                        "stream": False})["status"] == "success"
        yield srv


def render(playbook, server, root, **extra):
    home = root / "home"
    (home / ".codex").mkdir(parents=True, exist_ok=True)
    variables = dict({"codex_provider": "local", "codex_local_port": server.port, "codex_model": server.tiny,
                      "codex_server_context_length": 8192, "codex_system_config": False,
                      "codex_system_config_dir": str(root / "etc-codex"),
                      "codex_users": [{"name": "root", "home": str(home)}]}, **extra)
    return playbook(TARGET, extra_vars=variables, env=PLAYBOOK_ENV), home


def codex(home, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CODEX_", "OPENAI_", "OLLAMA_"))}
    env.update(HOME=str(home), RUST_BACKTRACE="0", **LOOPBACK_ONLY)
    return subprocess.run([str(codex_cli.ensure().binary)] + list(args), env=env, cwd=str(home),
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=180, check=False)


def ask(home, *args):
    return codex(home, "exec", "--skip-git-repo-check", *(list(args) + ["Say hello."]))


@pytest.fixture(scope="module")
def rendered(server, tmp_path_factory):
    from tests.conftest import run_playbook

    root = tmp_path_factory.mktemp("codex-catalog")
    variables = {"codex_provider": "local", "codex_local_port": server.port, "codex_model": server.tiny,
                 "codex_server_context_length": 8192, "codex_system_config": False,
                 "codex_system_config_dir": str(root / "etc-codex"),
                 "codex_users": [{"name": "root", "home": str(root / "home")}]}
    (root / "home" / ".codex").mkdir(parents=True)
    check = run_playbook(TARGET, extra_vars=variables, check=True, env=PLAYBOOK_ENV)
    first = run_playbook(TARGET, extra_vars=variables, env=PLAYBOOK_ENV)
    second = run_playbook(TARGET, extra_vars=variables, env=PLAYBOOK_ENV)
    for run in (check, first, second):
        assert run.rc == 0, run.output[-5000:]
    catalog_path = root / "etc-codex" / "ollama-models.json"
    return dict(root=root, home=root / "home", check=check, first=first, second=second, path=catalog_path,
                catalog=json.loads(catalog_path.read_text()), variables=variables)


def test_the_catalog_holds_the_models_codex_can_use_with_the_servers_context(server, rendered):
    entries = {m["slug"]: m for m in rendered["catalog"]["models"]}
    # lab/small cannot call tools: left out, and the run says so
    assert sorted(entries) == sorted([server.tiny, server.short])
    assert "not in the catalog, as they cannot call tools: %s" % server.small in rendered["first"].output
    assert entries[server.tiny]["context_window"] == 8192  # the server's OLLAMA_CONTEXT_LENGTH
    assert entries[server.short]["context_window"] == 2048  # the model's own num_ctx
    tiny = entries[server.tiny]
    assert tiny["input_modalities"] == ["text"]
    assert tiny["description"] == "Ollama: llama 281K F32"
    assert (tiny["base_instructions"], tiny["shell_type"], tiny["supported_reasoning_levels"]) == ("", "default", [])
    st = rendered["path"].stat()
    assert (st.st_mode & 0o777, st.st_uid) == (0o644, 0)
    config = (rendered["home"] / ".codex" / "config.toml").read_text()
    assert 'model_catalog_json = "%s"' % rendered["path"] in config


def test_check_mode_predicts_the_catalog_and_a_second_run_changes_nothing(rendered):
    first, check, second = (rendered[k].stats["localhost"]["changed"] for k in ("first", "check", "second"))
    assert first > 0 and check == first, rendered["check"].output[-3000:]
    assert second == 0, rendered["second"].output[-3000:]


def test_codex_reads_the_catalog(rendered, server):
    """`codex debug models` renders the catalog Codex loaded: the entries as written."""
    out = codex(rendered["home"], "debug", "models")
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = {m["slug"]: m for m in json.loads(out.stdout)["models"]}
    assert sorted(loaded) == sorted([server.tiny, server.short])
    assert loaded[server.tiny]["context_window"] == 8192 and loaded[server.short]["context_window"] == 2048


@pytest.mark.parametrize("which", ["tiny", "short"])
def test_codex_answers_without_the_metadata_warning_and_the_server_runs_the_catalogs_context(
        rendered, server, which):
    model = getattr(server, which)
    answer = ask(rendered["home"], *(["-m", model] if which == "short" else []))
    assert answer.returncode == 0, answer.stderr[-3000:]
    assert answer.stdout.strip() == REPLY
    assert "Model metadata" not in answer.stderr, answer.stderr[-3000:]
    running = {m["name"]: m["context_length"] for m in api(server, "/api/ps")["models"]}
    wanted = {m["slug"]: m["context_window"] for m in rendered["catalog"]["models"]}[model]
    assert running[model] == wanted


def test_without_the_catalog_codex_warns(playbook, server, tmp_path):
    """Guard: the same config without the catalog prints Codex's warning (and still answers)."""
    run, home = render(playbook, server, tmp_path, codex_model_catalog=False)
    assert run.rc == 0, run.output[-3000:]
    assert "model_catalog_json" not in (home / ".codex" / "config.toml").read_text()
    answer = ask(home)
    assert answer.stdout.strip() == REPLY, answer.stderr[-3000:]
    assert METADATA_WARNING % server.tiny in answer.stderr


def test_a_model_that_cannot_call_tools_is_refused(playbook, server, tmp_path):
    run, home = render(playbook, server, tmp_path, codex_model=server.small)
    assert run.rc != 0
    assert "codex_model %s cannot call tools" % server.small in run.output, run.output[-3000:]
    assert "Choose a model with the tools capability" in run.output
    assert not (home / ".codex" / "config.toml").exists()
    assert not (tmp_path / "etc-codex" / "ollama-models.json").exists()


def test_a_server_that_cannot_be_read_leaves_the_catalog_as_it_was(playbook, server, rendered, tmp_path):
    before = rendered["path"].read_text()
    dead = dict(rendered["variables"], codex_local_port=9)
    from tests.conftest import run_playbook

    run = run_playbook(TARGET, extra_vars=dead, env=PLAYBOOK_ENV)
    assert run.rc == 0, run.output[-3000:]
    assert "could not read the models of the server at http://127.0.0.1:9" in run.output
    assert "the catalog written before is kept until a run that can read it" in run.output
    assert rendered["path"].read_text() == before
    assert 'model_catalog_json = "%s"' % rendered["path"] in (rendered["home"] / ".codex" / "config.toml").read_text()
    # with no catalog there, Codex is given none (a path to a missing file would stop it)
    fresh, home = render(playbook, server, tmp_path, codex_local_port=9)
    assert fresh.rc == 0 and "Codex is given no catalog" in fresh.output, fresh.output[-3000:]
    assert "model_catalog_json" not in (home / ".codex" / "config.toml").read_text()
    # put the fixture's files back for the other tests
    assert run_playbook(TARGET, extra_vars=rendered["variables"], env=PLAYBOOK_ENV).rc == 0


def test_a_remote_servers_catalog_is_read_with_the_token_kept_out_of_the_log(playbook, server, rendered, tmp_path):
    """A remote provider: the catalog is read from codex_remote_url (the token goes along; this server ignores it,
    tests/fleet/test_site_proxy.py reads through the proxy that needs it) and the token is not in the run's log."""
    run, home = render(playbook, server, tmp_path, codex_provider="remote", codex_remote_url=server.url,
                       codex_remote_token="s3cret-catalog-token")
    assert run.rc == 0, run.output[-3000:]
    catalog = json.loads((tmp_path / "etc-codex" / "ollama-models.json").read_text())
    assert catalog == rendered["catalog"]
    assert "s3cret-catalog-token" not in run.output


def test_a_look_that_fails_runs_every_step_and_writes_the_same_files(server, rendered, tmp_path):
    """The role's look at the host fails (forced: tests/integration/targets/codex/look_fails.yml): every step runs,
    the server's models and the users are read by tasks of their own, and the files are those the look's path
    writes; check mode predicts the run, a second run changes nothing, and the look's path then finds nothing to do."""
    from tests.conftest import run_playbook

    root = tmp_path / "root"
    (root / "home" / ".codex").mkdir(parents=True)
    variables = dict(rendered["variables"], codex_system_config_dir=str(root / "etc-codex"),
                     codex_users=[{"name": "root", "home": str(root / "home")}])
    failing = TARGET.parent / "look_fails.yml"
    check, first, second = (run_playbook(failing, extra_vars=variables, check=mode, env=PLAYBOOK_ENV)
                            for mode in (True, False, False))
    for run in (check, first, second):
        assert run.rc == 0, run.output[-5000:]
        # the look's message is kept out of the log (it may hold the token): the tasks that run show the path taken
        assert "TASK [llmops.ollama.codex : List the server's models]" in run.output
    changed = [run.stats["localhost"]["changed"] for run in (check, first, second)]
    assert changed[1] > 0 and changed[0] == changed[1] and changed[2] == 0, changed
    assert json.loads((root / "etc-codex" / "ollama-models.json").read_text()) == rendered["catalog"]
    written = (root / "home" / ".codex" / "config.toml").read_text()
    assert written == (rendered["home"] / ".codex" / "config.toml").read_text().replace(
        str(rendered["root"]), str(root))
    looked = run_playbook(TARGET, extra_vars=variables, env=PLAYBOOK_ENV)
    assert looked.rc == 0 and looked.stats["localhost"]["changed"] == 0, looked.output[-3000:]
    assert "List the server's models" not in looked.output
