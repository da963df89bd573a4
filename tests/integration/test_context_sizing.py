"""ollama_context against a real `ollama serve` (the lab build) holding the lab's tiny model: the shape the module
sizes the context by is the server's real /api/show of a real GGUF (tests/lab/tiny_gguf.py: llama architecture, 2
layers, 4 heads, 4 KV heads, embedding 64, context_length 32768), and the weights are its size in the server's real
/api/tags. The memory is given in bytes, as the module's `memory` option takes it: this machine has no GPU, and what
its RAM has free changes from run to run. One test reads this machine's real hardware (`memory: auto`) and checks
only where the figure came from. The tiny model holds 32768 tokens, so the minimum here is the lab's 8192
(tests/lab/group_vars/all.yml), not 65536, which the model's own limit refuses (the first test shows that too).

Modules run in-process (tests/lab/module_run.py). A server whose /api/show lacks the keys is a scripted one
(tests/lab/scripted_http.py): the real server shows what its GGUF has, and the lab's GGUF has them all.
"""
import pytest

from ansible_collections.llmops.ollama.plugins.module_utils._ollama_client import OllamaClient
from ansible_collections.llmops.ollama.plugins.modules import ollama_context, ollama_model
from tests.lab.module_run import assert_clear_failure, run_module
from tests.lab.net import free_port
from tests.lab.scripted_http import ScriptedServer

GIB = 1024 ** 3
MIB = 1024 ** 2
# 2 (keys and values) x 2 layers x 4 KV heads x 16 (64 / 4 heads) x 2 bytes (f16)
PER_TOKEN = 2 * 2 * 4 * 16 * 2


@pytest.fixture(scope="module")
def tiny(ollama_server, registry):
    """The lab's tiny model on the session's shared server, for this file's tests only: the server is left as it was
    found (test_ollama_model.py, later, expects a server without it)."""
    name = "%s/lab/tiny" % registry.address
    client = OllamaClient(ollama_server.url)
    had = any(m["name"] == name + ":latest" for m in client.tags())
    code, result = run_module(ollama_model, dict(base_url=ollama_server.url, name=[name], insecure=True,
                                                 fit_check="off", progress_interval=0))
    assert code == 0, result
    (entry,) = [m for m in client.tags() if m["name"] == name + ":latest"]
    yield name, entry["size"]
    if not had:
        client.delete(name + ":latest")


def context_run(server, **args):
    return run_module(ollama_context, dict(dict(base_url=server.url), **args))


def test_the_context_comes_from_the_real_shape(ollama_server, tiny):
    name, size = tiny
    results = []
    for check_mode in (False, True):
        code, result = context_run(ollama_server, model=name, memory=2 * GIB, min_context=8192,
                                   _ansible_check_mode=check_mode)
        assert code == 0 and result["changed"] is False, result
        results.append(result)
    assert results[0] == results[1]  # check mode: the same answer
    result = results[0]
    figures = result["figures"]
    assert (result["model"], result["context"], result["fits_min"], result["message"]) == (
        name + ":latest", 32768, True, None)
    assert (figures["architecture"], figures["layers"], figures["attention_layers"], figures["kv_heads"],
            figures["key_length"], figures["value_length"], figures["model_context_length"]) == (
                "llama", 2, 2, 4, 16, 16, 32768)
    assert figures["kv_bytes_per_token"] == PER_TOKEN and figures["weights_bytes"] == size
    assert figures["limited_by"] == "model" and figures["memory_from"] == "given (memory)"
    # 32768 tokens in all is Ollama's batch of 1024 (768 MiB counted), with llama-server's 1 GiB margin
    assert (figures["batch"], figures["compute_bytes"], figures["margin_bytes"]) == (1024, 768 * MIB, GIB)
    assert figures["kv_bytes"] == 32768 * PER_TOKEN
    assert figures["need_bytes"] == size + 32768 * PER_TOKEN + 768 * MIB + GIB

    # two slots and a q8_0 cache: 256 values per token x 34/32 bytes, twice
    code, result = context_run(ollama_server, model=name, memory=2 * GIB, min_context=8192, num_parallel=2,
                               kv_cache_type="q8_0")
    assert code == 0 and result["figures"]["kv_bytes_per_token"] == 272, result
    assert result["figures"]["kv_bytes"] == 2 * 32768 * 272

    # 65536 is more than the model holds, whatever the memory
    code, result = context_run(ollama_server, model=name, memory=64 * GIB)
    assert_clear_failure(code, result)
    assert result["msg"].endswith(": %s:latest holds at most 32768 tokens (its context_length), below the 65536 "
                                  "minimum; choose a model with a longer context, or lower the minimum (min_context);"
                                  " 32768 fits in memory here." % name), result["msg"]
    assert "(%s)" % ollama_server.url in result["msg"] and result["context"] == 32768


def test_too_little_memory_is_refused_with_the_figures(ollama_server, tiny):
    name, size = tiny
    memory = GIB + 10 * MIB
    for check_mode in (False, True):
        code, result = context_run(ollama_server, model=name, memory=memory, min_context=8192,
                                   _ansible_check_mode=check_mode)
        assert_clear_failure(code, result)
        assert result["changed"] is False
        msg = result["msg"]
        # 8192 tokens: more than 4096 in all, so Ollama's batch of 1024 and its 768 MiB, then the 1 GiB margin
        need = size + 8192 * PER_TOKEN + 768 * MIB + GIB
        assert result["figures"]["need_at_min_bytes"] == need
        assert ": %s:latest needs %.2f GiB for a 8192 context with 1 parallel (KV f16: 0.00 GiB, weights 0.00 GiB, " \
               "compute and margin 1.75 GiB) but 1.01 GiB are free; 4096 tokens would fit." % (name, need / GIB) in msg
        assert "Even with a q4_0 KV cache it would need 1.75 GiB." in msg
        assert msg.endswith("Choose a smaller model or a GPU with more free memory, or set a smaller context by hand "
                            "(ollama_server_context_length).")
        # 4096 tokens take the batch of 512, for which Ollama counts nothing: weights, 2 MiB of cache and the margin
        assert result["context"] == 4096 and result["fits_min"] is False

    code, result = context_run(ollama_server, model=name, memory=memory, min_context=8192, fail_below_min=False)
    assert code == 0 and result["context"] == 4096 and not result["fits_min"], result
    assert "4096 tokens would fit" in result["message"] and result["message"] in str(result["warnings"]), result

    code, result = context_run(ollama_server, model=name, memory=512 * MIB, min_context=8192)
    assert_clear_failure(code, result)
    assert "but 0.50 GiB are free; not even 1024 tokens fit." in result["msg"] and result["context"] is None


def test_memory_read_from_this_host(ollama_server, tiny):
    name, _size = tiny
    code, result = context_run(ollama_server, model=name, min_context=1024, fail_below_min=False)
    assert code == 0, result
    source = result["figures"]["memory_from"]
    assert source.startswith("RAM available (") or source.startswith("free VRAM of "), source
    assert result["figures"]["available_bytes"] > 0


@pytest.mark.parametrize("args, says", [
    (dict(model="lab/not-there"), "'lab/not-there' is not on the server at "),
    (dict(model="Bad Name!"), "invalid model name"),
    (dict(memory="24G"), "memory must be auto or a positive number of bytes"),
    (dict(memory=0), "memory must be auto or a positive number of bytes"),
    (dict(min_context=0), "min_context must be a positive number of tokens, not 0"),
    (dict(num_parallel=-1), "num_parallel must be 0 or more"),
    (dict(kv_cache_type="q5_1"), "value of kv_cache_type must be one of"),
])
def test_bad_input_is_a_clear_failure(ollama_server, tiny, args, says):
    code, result = context_run(ollama_server, **dict(dict(model=tiny[0], memory=2 * GIB), **args))
    assert_clear_failure(code, result)
    assert says in result["msg"], result["msg"]


def test_a_server_that_does_not_answer():
    code, result = run_module(ollama_context, dict(base_url="http://127.0.0.1:%d" % free_port(), model="lab/tiny",
                                                   memory=2 * GIB))
    assert_clear_failure(code, result)
    assert result["msg"].startswith("could not reach the Ollama server at http://127.0.0.1:"), result["msg"]


@pytest.mark.parametrize("model_info, says", [
    ({"general.architecture": "llama", "llama.context_length": 32768}, "model_info has no llama.block_count"),
    ({}, "the server returned no model_info for it"),
    ({"general.architecture": "llama", "llama.block_count": 2, "llama.context_length": 32768,
      "llama.attention.head_count": 4}, "model_info has neither llama.attention.key_length/value_length nor "
                                        "llama.embedding_length"),
])
def test_model_info_without_the_keys(model_info, says):
    """A scripted server: /api/tags lists the model, /api/show answers with model_info lacking keys."""
    entry = {"name": "lab/x:latest", "model": "lab/x:latest", "digest": "ab" * 32, "size": 1000}

    def script(handler):
        if handler.path == "/api/tags":
            handler.reply(200, {"models": [entry]})
        elif handler.path == "/api/show":
            handler.reply(200, {"model_info": model_info, "capabilities": ["completion"]})
        else:
            handler.reply(404, {"error": "not here"})

    with ScriptedServer(script) as srv:
        code, result = run_module(ollama_context, dict(base_url=srv.url(), model="lab/x", memory=2 * GIB))
    assert_clear_failure(code, result)
    assert result["msg"].startswith("cannot size the context of 'lab/x:latest' from what the server at %s shows: "
                                    % srv.url()), result["msg"]
    assert says in result["msg"], result["msg"]
