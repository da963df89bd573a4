"""The readiness gate (ollama_ready) against a real `ollama serve` (the lab build) running real tiny GGUF models
(tests/lab/tiny_gguf.py): the tool model answers a real chat with a call of report_ready, which Ollama parses into
message.tool_calls; the plain tiny model answers in words; a model whose GGUF was cut short is listed by the server but
cannot load; a context beyond the model's own limit is lowered by the server to that limit. Nothing is mocked: every
answer and error below is the server's.

What needs a GPU (a model loaded on the CPU of a GPU host) is in tests/unit/plugins/modules/test_ready_gpu.py, against
recorded /api/ps answers: the lab has no GPU."""
import hashlib
import json
import time

import pytest

from ansible_collections.llmops.ollama.plugins.module_utils._ollama_client import OllamaClient
from ansible_collections.llmops.ollama.plugins.modules import ollama_model, ollama_ready
from tests.lab import models, tiny_gguf
from tests.lab.module_run import assert_clear_failure, run_module
from tests.lab.ollama_server import OllamaServer

SERVER_CONTEXT = 8192  # OllamaServer's OLLAMA_CONTEXT_LENGTH


def push_damaged(registry, repo):
    """A real tiny model whose GGUF blob is cut to half its bytes, pushed with the digest of what is left: a pull
    verifies it and the server lists the model, but it cannot be loaded."""
    manifest, blobs = models.build(repo + ":latest", answer=" Hello from damaged!")
    doc = json.loads(manifest)
    for layer in doc["layers"]:
        if layer["mediaType"] == "application/vnd.ollama.image.model":
            data = blobs.pop(layer["digest"])[:layer["size"] // 2]
            layer["digest"] = "sha256:" + hashlib.sha256(data).hexdigest()
            layer["size"] = len(data)
            blobs[layer["digest"]] = data
    return models.push(registry.url, repo, "latest", json.dumps(doc, separators=(",", ":")).encode(), blobs)


@pytest.fixture(scope="module")
def server(registry):
    """A server of its own with the three models pulled: the tool model, the plain tiny model, the damaged one."""
    manifest, blobs = models.build("lab/tiny-tools:latest", answer=models.TOOL_ANSWER)
    models.push(registry.url, "lab/tiny-tools", "latest", manifest, blobs)
    push_damaged(registry, "lab/damaged")
    with OllamaServer() as own:
        names = ["%s/%s" % (registry.address, repo) for repo in ("lab/tiny-tools", "lab/tiny", "lab/damaged")]
        code, pulled = run_module(ollama_model, dict(base_url=own.url, name=names, insecure=True, fit_check="off",
                                                     progress_interval=0))
        assert code == 0, pulled
        own.names = dict(zip(("tools", "tiny", "damaged"), names))
        yield own


def ready(server, model, **args):
    return run_module(ollama_ready, dict(dict(base_url=server.url, model=server.names[model]), **args))


def test_the_tool_model_calls_the_tool_at_the_configured_context(server):
    for check_mode in (True, False):  # check mode runs the same chat: the module changes nothing
        code, result = ready(server, "tools", num_ctx=SERVER_CONTEXT, timeout=60, _ansible_check_mode=check_mode)
        assert code == 0, result
        assert result["changed"] is False and result["answered"] is True and result["tool_called"] is True, result
        assert result["tool_calls"] == ["report_ready"] and result["content"] == ""
        assert result["eval_count"] > 0 and result["tokens_per_second"] > 0, result
        assert result["context"] == SERVER_CONTEXT
        assert result["processor"] == "cpu" and result["size_vram"] == 0 and result["size"] > 0  # no GPU here
        print("\ntool model (check mode %s): %s tokens in %s tokens/s, load %ss, total %ss, context %s, %s" % (
            check_mode, result["eval_count"], result["tokens_per_second"], result["load_seconds"],
            result["total_seconds"], result["context"], result["processor"]))
    # a floor it reaches passes; one it cannot reach fails, saying the figure
    code, result = ready(server, "tools", min_tokens_per_second=1)
    assert code == 0, result
    code, slow = ready(server, "tools", min_tokens_per_second=1e9)
    assert_clear_failure(code, slow)
    assert slow["msg"].startswith("too slow: ") and "under the minimum of 1000000000" in slow["msg"], slow["msg"]


def test_the_plain_model_answers_words_and_fails_without_a_tool_call(server):
    code, result = ready(server, "tiny")
    assert_clear_failure(code, result)
    assert result["msg"].startswith("no tool call: asked %s for a tool call of report_ready" % server.names["tiny"])
    assert "the model answered ' Hello from tiny!'" in result["msg"], result["msg"]
    assert "set tool_call false" in result["msg"]
    assert result["answered"] is True and result["tool_called"] is False
    print("\nplain model, tool asked: %s" % result["msg"])
    # asked for words only, it passes
    code, words = ready(server, "tiny", tool_call=False, num_ctx=SERVER_CONTEXT)
    assert code == 0, words
    assert words["content"] == models.reply("lab/tiny", "latest") and words["tool_called"] is None
    assert words["tokens_per_second"] > 0
    print("plain model, words: %s tokens/s, load %ss" % (words["tokens_per_second"], words["load_seconds"]))


def test_a_model_that_cannot_load_fails_with_the_servers_error(server):
    assert server.names["damaged"] + ":latest" in [m["name"] for m in OllamaClient(server.url).tags()]
    code, result = ready(server, "damaged")
    assert_clear_failure(code, result)
    assert result["answered"] is False
    msg = result["msg"]
    assert msg.startswith("asked %s for a tool call of report_ready: the server answered HTTP 500: "
                          % server.names["damaged"]), msg
    assert "the server could not run the model" in msg and "pulling it again" in msg, msg
    print("\ndamaged model: %s" % msg)


def test_a_missing_model_and_a_server_that_does_not_answer(server):
    code, result = run_module(ollama_ready, dict(base_url=server.url, model="lab/nothing-here"))
    assert_clear_failure(code, result)
    assert "has no model lab/nothing-here (it has " in result["msg"] and "Pull it first" in result["msg"], result["msg"]
    down = OllamaServer()  # a port nothing listens on
    code, result = run_module(ollama_ready, dict(base_url=down.url, model="x"))
    down.cleanup()
    assert_clear_failure(code, result)
    assert result["msg"].startswith("the server does not answer, so no model can: could not reach"), result["msg"]


def test_a_context_beyond_the_models_limit_is_lowered_by_the_server_and_fails(server):
    """Ollama 0.34.4 does not refuse a num_ctx beyond the model's trained context: it loads the model at that limit
    (llm/server.go, "requested context size too large for model") and /api/ps shows it. The gate fails on it. A
    context beyond the memory cannot be had with a model this small (its 32k context takes a few MB)."""
    code, result = ready(server, "tools", num_ctx=1000000)
    assert_clear_failure(code, result)
    assert result["answered"] is True and result["tool_called"] is True
    assert result["context"] == tiny_gguf.CONTEXT
    assert result["msg"].startswith("context too small: asked %s for a context of 1000000 tokens, the server runs it "
                                    "at %d" % (server.names["tools"], tiny_gguf.CONTEXT)), result["msg"]
    print("\ncontext 1000000: %s" % result["msg"])
    code, result = ready(server, "tools", num_ctx=tiny_gguf.CONTEXT)  # its own limit: fine
    assert code == 0 and result["context"] == tiny_gguf.CONTEXT, result


def test_a_time_limit_too_short_fails_as_a_timeout(server):
    name = server.names["tools"]
    OllamaClient(server.url).load(name, 0)  # out of memory: the chat has to load it (about 0.3 s here)
    # the server unloads it after answering (its runner stops in the background: longer on a busy machine)
    deadline = time.time() + 30
    while name + ":latest" in [m["name"] for m in OllamaClient(server.url).ps()] and time.time() < deadline:
        time.sleep(0.2)
    assert name + ":latest" not in [m["name"] for m in OllamaClient(server.url).ps()]
    code, result = ready(server, "tools", timeout=0.05)
    assert_clear_failure(code, result)
    assert result["msg"].startswith("asked %s for a tool call of report_ready: no answer within 0.05s (timeout)"
                                    % name), result["msg"]
    assert result["answered"] is False
    code, result = ready(server, "tools", timeout=0)
    assert_clear_failure(code, result)
    assert "timeout must be a positive number of seconds" in result["msg"]
