"""Warm models: ollama_model's keep_alive loads the models it keeps into a real `ollama serve` (the lab build, with its
llama-server) and ollama_facts' running models show them. The model is the lab's real tiny GGUF, so a load is a real
llama-server process with the weights in memory, not a record in a table."""
import json

import pytest

from ansible_collections.llmops.ollama.plugins.module_utils._ollama_client import OllamaClient
from ansible_collections.llmops.ollama.plugins.modules import ollama_facts, ollama_model
from tests.lab import models
from tests.lab.module_run import assert_clear_failure, run_module
from tests.lab.ollama_server import OllamaServer
from tests.lab.paths import REPO

TARGET = REPO / "tests" / "integration" / "targets" / "warm_models" / "playbook.yml"


@pytest.fixture
def server():
    """A server of its own: what is in memory here must be what these tests loaded."""
    with OllamaServer() as own:
        yield own


def model_run(server, **args):
    args = dict(dict(base_url=server.url, insecure=True, fit_check="off", progress_interval=0), **args)
    return run_module(ollama_model, args)


def tags(server):
    return OllamaClient(server.url).tags()


def running(server):
    """The names and digests the server has in memory, from ollama_facts (what a playbook sees)."""
    code, result = run_module(ollama_facts, {"base_url": server.url, "gather": ["server"]})
    assert code == 0, result
    return {(m["name"], (m.get("digest") or "").replace("sha256:", "")) for m in result["ansible_facts"]["ollama"]["running"]}


@pytest.mark.parametrize("value, says", [
    (0, "would unload"), ("0s", "would unload"), ("soon", "neither a number of seconds nor a duration"),
    ("30", None), (True, "must be a number of seconds or a duration"), ([1], "must be a number of seconds"),
])
def test_keep_alive_values(server, registry, value, says):
    name = "%s/lab/tiny" % registry.address
    code, result = model_run(server, name=[name], keep_alive=value, _ansible_check_mode=True)
    if says is None:  # seconds as a string are what the server reads as a number
        assert code == 0 and result["models"][0]["loaded"] is True, result
        return
    assert_clear_failure(code, result)
    assert says in result["msg"] and "keep_alive" in result["msg"], result["msg"]
    assert tags(server) == []


def test_pull_then_load_then_nothing_to_do(server, registry):
    name = "%s/lab/tiny" % registry.address
    digest = registry.digests["lab/tiny:latest"].replace("sha256:", "")

    code, check = model_run(server, name=[name], keep_alive=-1, _ansible_check_mode=True)
    assert code == 0 and check["changed"], check
    assert (check["models"][0]["action"], check["models"][0]["loaded"]) == ("pulled", True)
    assert running(server) == set() and tags(server) == []  # check mode loaded nothing

    code, first = model_run(server, name=[name], keep_alive=-1)
    assert code == 0 and first["changed"], first
    assert (first["models"][0]["action"], first["models"][0]["loaded"]) == ("pulled", True)
    assert running(server) == {(name + ":latest", digest)}

    for check_mode in (True, False):  # in memory with the digest the server has: nothing to do, and check mode says so
        code, again = model_run(server, name=[name], keep_alive="-1m", _ansible_check_mode=check_mode)
        assert code == 0 and not again["changed"], again
        assert (again["models"][0]["action"], again["models"][0]["loaded"]) == ("none", False)

    # the model really answers from memory, with the scripted reply of its weights
    answer = OllamaClient(server.url)._json("/api/generate", "POST",
                                            {"model": name, "prompt": "Say hello.", "stream": False})
    assert answer["response"] == models.reply("lab/tiny", "latest")


def test_a_model_on_the_server_but_not_in_memory_is_loaded(server, registry):
    name = "%s/lab/tiny:1b" % registry.address
    code, pulled = model_run(server, name=[name])
    assert code == 0 and pulled["changed"] and "loaded" not in pulled["models"][0], pulled  # keep_alive unset
    assert running(server) == set()

    code, check = model_run(server, name=[name], keep_alive="30m", _ansible_check_mode=True)
    assert code == 0 and check["changed"] and check["models"][0]["loaded"] is True, check
    assert check.get("diff") is None or check["diff"]["before"] == check["diff"]["after"]
    code, loaded = model_run(server, name=[name], keep_alive="30m")
    assert code == 0 and loaded["changed"], loaded
    assert (loaded["models"][0]["action"], loaded["models"][0]["loaded"]) == ("none", True)
    assert {n for n, _d in running(server)} == {name}


def test_absent_models_are_not_loaded_and_a_failed_load_says_why(server, registry):
    kept = "%s/lab/tiny" % registry.address
    gone = "%s/lab/small" % registry.address  # synthetic: its bytes are not a model llama-server can load
    code, pulled = model_run(server, name=[kept, gone])
    assert code == 0, pulled
    code, result = model_run(server, models=[{"name": gone, "state": "absent"}, kept], keep_alive="5m")
    assert code == 0, result
    by_name = {m["name"]: m for m in result["models"]}
    assert by_name[gone]["action"] == "removed" and "loaded" not in by_name[gone]
    assert by_name[kept]["loaded"] is True

    code, pulled = model_run(server, name=[gone])
    assert code == 0, pulled
    code, failed = model_run(server, name=[gone], keep_alive="5m")
    assert_clear_failure(code, failed)
    assert "'%s' is on the server but could not be loaded into memory" % gone in failed["msg"], failed["msg"]
    assert failed["models"][0]["loaded"] is False


def test_the_models_role_keeps_the_models_in_memory(server, registry, playbook, tmp_path):
    """What a playbook user writes: the models role with ollama_models_keep_alive, then ollama_facts."""
    name = "%s/lab/tiny" % registry.address
    results = tmp_path / "results.json"
    variables = {"ollama_url": server.url, "model": name, "results_file": str(results)}
    for run_number in (1, 2):
        run = playbook(TARGET, extra_vars=variables)
        assert run.rc == 0, run.output[-4000:]
        out = json.loads(results.read_text())
        assert [m["name"] for m in out["running"]] == [name + ":latest"], out
        assert out["models"][0]["loaded"] is (run_number == 1), out  # loaded once, then left as it is
        assert out["changed"] is (run_number == 1), out  # the role's task: a load is a change, none the second time
