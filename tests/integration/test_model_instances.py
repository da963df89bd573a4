"""ollama_model with `instances`: the servers of ollama_server_instances share one store, so a model pulled through
the first is served by the others, and keep_alive loads it into each one's memory. Three real `ollama serve` (the lab
build) run here: the first, a second on the same OLLAMA_MODELS, and a third on a store of its own, as a server
wrongly set up would be. The model is the lab's real tiny GGUF, so a load is a real llama-server process."""
import pytest

from ansible_collections.llmops.ollama.plugins.module_utils._ollama_client import OllamaClient
from ansible_collections.llmops.ollama.plugins.modules import ollama_model
from tests.lab.module_run import assert_clear_failure, run_module
from tests.lab.ollama_server import OllamaServer


@pytest.fixture
def pair():
    with OllamaServer() as first:
        with OllamaServer(models_dir=first.models_dir) as second:
            yield first, second


def model_run(server, **args):
    args = dict(dict(base_url=server.url, insecure=True, fit_check="off", progress_interval=0), **args)
    return run_module(ollama_model, args)


def in_memory(server):
    return [m["name"] for m in OllamaClient(server.url).ps()]


def test_pulled_through_the_first_served_and_loaded_by_each_then_nothing_to_do(pair, registry):
    first, second = pair
    name = "%s/lab/tiny:latest" % registry.address
    code, check = model_run(first, name=[name], keep_alive=-1, instances=[second.url], _ansible_check_mode=True)
    assert code == 0 and check["changed"], check
    assert in_memory(second) == []

    code, result = model_run(first, name=[name], keep_alive=-1, instances=[second.url])
    assert code == 0 and result["changed"], result
    assert result["models"][0]["loaded"] is True
    assert result["models"][0]["loaded_on"] == [second.url]
    # one store: the second lists the model without a pull of its own, and has it in memory
    assert [m["name"] for m in OllamaClient(second.url).tags()] == [name]
    assert in_memory(first) == [name] and in_memory(second) == [name]

    code, again = model_run(first, name=[name], keep_alive=-1, instances=[second.url])
    assert code == 0 and not again["changed"], again
    assert "loaded_on" not in again["models"][0]


def test_a_server_on_another_store_is_named(pair, registry):
    first, _second = pair
    name = "%s/lab/tiny:latest" % registry.address
    with OllamaServer() as apart:
        code, result = model_run(first, name=[name], instances=[apart.url])
    assert_clear_failure(code, result)
    assert ("the server at %s does not list '%s': it does not share the store of the first (OLLAMA_MODELS)"
            % (apart.url, name)) in result["msg"], result["msg"]
    # the pull through the first happened and is reported
    assert result["models"][0]["changed"] is True


def test_an_instance_that_does_not_answer_is_named(pair, registry):
    first, second = pair
    name = "%s/lab/tiny:latest" % registry.address
    url = second.url
    second.stop()
    code, result = model_run(first, name=[name], instances=[url])
    assert_clear_failure(code, result)
    assert "the server at %s (another instance on this host) could not be read" % url in result["msg"], result["msg"]
