"""Real inference: the lab's tiny model (tests/lab/tiny_gguf.py) pulled by ollama_model into a real `ollama serve`
(the lab build, with its llama-server), answering /api/generate, and the real Codex CLI answering through the config
the codex role wrote. No mocks: the reply is what the model's weights produce."""
import json
import os
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.lab import codex_cli, models
from tests.lab.ollama_server import OllamaServer
from tests.lab.paths import REPO

TARGET = REPO / "tests" / "integration" / "targets" / "inference" / "playbook.yml"


def codex_exec(home, *args, **env_extra):
    """`codex exec` as a user runs it: no prompt on stdin, outside a git repository, nothing but loopback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CODEX_", "OPENAI_", "OLLAMA_"))}
    env.update(HOME=str(home), CODEX_HOME=str(home / ".codex"), RUST_BACKTRACE="0",
               NO_PROXY="127.0.0.1,localhost", HTTPS_PROXY="http://127.0.0.1:9", **env_extra)
    cmd = [str(codex_cli.ensure().binary), "exec", "--skip-git-repo-check"] + list(args) + ["Say hello."]
    return subprocess.run(cmd, env=env, cwd=str(home), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=180, check=False)


@pytest.fixture
def ollama_server():
    """A server of its own: the other tests expect the session's server not to have the models pulled here."""
    with OllamaServer() as server:
        yield server


def test_a_pulled_model_answers_and_codex_prints_its_answer(ollama_server, registry, playbook, tmp_path):
    model = "%s/lab/tiny" % registry.address
    home = tmp_path / "home"
    (home / ".codex").mkdir(parents=True)
    results = tmp_path / "results.json"
    run = playbook(TARGET, extra_vars={"ollama_url": ollama_server.url, "model": model,
                                       "codex_home": str(home / ".codex"), "results_file": str(results)})
    assert run.rc == 0, run.output[-6000:]
    out = json.loads(results.read_text())
    step = out["pulled"]["models"][0]
    manifest, blobs = models.build("lab/tiny:latest", answer=models.reply("lab/tiny", "latest"))
    size = sum(len(b) for b in blobs.values())
    assert step["action"] == "pulled" and step["size"] == size
    assert step["fit"]["ok"] and step["fit"]["fits"] in ("ram", "vram", "split")
    assert out["generated"]["response"] == models.reply("lab/tiny", "latest")  # " Hello from tiny!"
    assert out["generated"]["done_reason"] == "stop"

    # the role wrote the name as the server lists it (no tag -> :latest), so Codex finds it in /api/tags
    config = tomllib.loads((home / ".codex" / "config.toml").read_text())
    assert config["model"] == model + ":latest"
    assert (config["model_provider"], config["oss_provider"]) == ("ollama-local", "ollama")
    assert config["model_providers"]["ollama-local"]["base_url"] == ollama_server.url + "/v1"
    # `codex exec` with the config alone; and `codex exec --oss` (the built-in provider, pointed at this server's port
    # as on a host whose server is not on 11434), which takes the model only from -m: with --oss, Codex 0.171 asks
    # for gpt-oss:20b whatever the config says
    oss = {"CODEX_OSS_BASE_URL": ollama_server.url + "/v1"}
    # the role's model catalog tells Codex the model's context (the server's 8192), so Codex does not warn that it
    # knows nothing of the model (tests/integration/test_codex_catalog.py shows the catalog in detail)
    catalog = json.loads(Path(config["model_catalog_json"]).read_text())
    assert [(m["slug"], m["context_window"]) for m in catalog["models"]] == [(config["model"], 8192)]
    for args, env in (((), {}), (("--oss", "-m", config["model"]), oss)):
        codex = codex_exec(home, *args, **env)
        assert codex.returncode == 0, codex.stderr[-3000:]
        assert codex.stdout.strip() == "Hello from tiny!", args
        assert "Model metadata" not in codex.stderr, codex.stderr[-3000:]
    ignored = codex_exec(home, "--oss", **oss)
    assert ignored.returncode != 0 and "Pulling model gpt-oss:20b" in ignored.stderr, ignored.stderr[-2000:]
