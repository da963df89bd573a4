"""ollama_ready's GPU guard: where /api/ps says the loaded model sits (size_vram of size).

The lab has no GPU, so the real server here always answers size_vram 0 and cannot show a model on a GPU, or one split
between GPU and CPU. These tests stand in for that with a local HTTP server on loopback (tests/lab/scripted_http.py)
answering /api/version, /api/tags, /api/chat and /api/ps as Ollama 0.34.4 does: the answers below are the lab
server's own, recorded from tests/integration/test_ready.py's tool model, with only size_vram changed to what a GPU
host reports (all of size on the GPU, part of it, none). What needs a real GPU (that the server puts the model there)
is not tested here; tests/integration/test_ready.py runs the rest of the gate against the real server.
"""
import json

import pytest

from ansible_collections.llmops.ollama.plugins.modules import ollama_ready
from ansible_collections.llmops.ollama.tests.lab.module_run import assert_clear_failure, run_module
from ansible_collections.llmops.ollama.tests.lab.scripted_http import ScriptedServer

NAME = "127.0.0.1:5000/lab/tiny-tools:latest"
SIZE = 87168121
DETAILS = {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"], "parameter_size": "288K",
           "quantization_level": "F32"}
CHAT = {"model": "127.0.0.1:5000/lab/tiny-tools", "created_at": "2026-12-07T17:41:52.80704198Z",
        "message": {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_rr39cgah", "function": {"index": 0, "name": "report_ready", "arguments": {}}}]},
        "done": True, "done_reason": "stop", "total_duration": 278403217, "load_duration": 269650791,
        "prompt_eval_count": 39, "prompt_eval_cached_count": 0, "prompt_eval_duration": 2486000, "eval_count": 5,
        "eval_duration": 1763000}


def ps_entry(size_vram):
    return {"name": NAME, "model": NAME, "size": SIZE, "digest": "d94f2661" + "0" * 56, "details": DETAILS,
            "expires_at": "2026-12-07T17:46:53.347204982Z", "size_vram": size_vram, "context_length": 8192}


@pytest.fixture
def serve():
    servers = []

    def start(size_vram, chat=None):
        def script(handler):
            path = handler.path
            if path == "/api/version":
                handler.reply(200, {"version": "0.34.4"})
            elif path == "/api/tags":
                handler.reply(200, {"models": [{"name": NAME, "model": NAME, "size": SIZE, "digest": "d94f2661" + "0" * 56,
                                                "details": DETAILS}]})
            elif path == "/api/chat":
                status, body = chat or (200, CHAT)
                handler.reply(status, body)
            elif path == "/api/ps":
                handler.reply(200, {"models": [ps_entry(size_vram)]})
            else:
                handler.reply(404, {"error": "not found"})

        server = ScriptedServer(script)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def warnings(result):
    """The warnings' texts: strings, or (ansible-core 2.19) summaries whose event has the text."""
    return [w if isinstance(w, str) else w.get("event", {}).get("msg", "") for w in result.get("warnings", [])]


def gate(server, **args):
    return run_module(ollama_ready, dict(dict(base_url=server.url(), model="127.0.0.1:5000/lab/tiny-tools"), **args))


def test_a_model_on_the_cpu_fails_when_a_gpu_is_required(serve):
    server = serve(0)
    code, result = gate(server, require_gpu=True, num_ctx=8192)
    assert_clear_failure(code, result)
    assert result["msg"].startswith("the model runs on the CPU: /api/ps shows size_vram 0 of its %d bytes in memory, "
                                    "and require_gpu is set" % SIZE), result["msg"]
    assert (result["processor"], result["size_vram"], result["size"]) == ("cpu", 0, SIZE)
    assert result["answered"] is True and result["tool_called"] is True  # it answered: the place is what fails
    body = json.loads(server.seen[[s["path"] for s in server.seen].index("/api/chat")]["body"])
    assert body["tools"][0]["function"]["name"] == "report_ready" and body["options"] == {"num_ctx": 8192}
    assert body["stream"] is False


@pytest.mark.parametrize("size_vram, where", [(SIZE, "gpu"), (SIZE // 2, "split")])
def test_a_model_in_gpu_memory_passes(serve, size_vram, where):
    code, result = gate(serve(size_vram), require_gpu=True)
    assert code == 0, result
    assert (result["processor"], result["size_vram"]) == (where, size_vram)
    assert result["tokens_per_second"] == round(5 / 0.001763, 2) and result["load_seconds"] == 0.27
    assert result["context"] == 8192 and result["changed"] is False


def shown_warnings(result, capsys):
    """The warnings a user sees: in the result, or, where an earlier test left ansible-core's controller display
    loaded in this process (2.19 and later then print a module's warning at once), on stderr."""
    return warnings(result) + [line for line in capsys.readouterr().err.splitlines() if "[WARNING]" in line]


def test_on_the_cpu_of_a_gpu_host_without_require_gpu_it_warns(serve, monkeypatch, capsys):
    monkeypatch.setattr(ollama_ready._hardware, "pci_display_devices", lambda: {"nvidia": [{"slot": "0000:01:00.0"}]})
    capsys.readouterr()
    code, result = gate(serve(0))
    assert code == 0, result
    assert result["processor"] == "cpu"
    assert any("the model runs on the CPU" in w and "this host has GPUs (nvidia x1)" in w
               for w in shown_warnings(result, capsys)), result
    monkeypatch.setattr(ollama_ready._hardware, "pci_display_devices", lambda: {})
    code, result = gate(serve(0))
    assert code == 0 and not shown_warnings(result, capsys), result


def test_a_model_without_tool_support_says_so(serve):
    """What Ollama answers a chat offering tools to a model whose template has none."""
    said = '"127.0.0.1:5000/lab/tiny-tools" does not support tools'
    code, result = gate(serve(SIZE, chat=(400, {"error": said})))
    assert_clear_failure(code, result)
    assert "the server answered HTTP 400: %s" % said in result["msg"] and "set tool_call false" in result["msg"]
