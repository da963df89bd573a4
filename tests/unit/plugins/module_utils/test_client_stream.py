"""Pull-stream and error shapes the real server cannot be made to produce on demand.

These tests use a local HTTP server on loopback (tests/lab/scripted_http.py) that answers with recorded or
deliberately broken NDJSON streams (truncated, garbage, error mid-stream, dropped connection, silence). Everything
the real server does produce is tested against the real `ollama serve` in tests/integration.
"""
import socket

import pytest

from ansible_collections.llmops.ollama.plugins.module_utils._http import OllamaError, OllamaNotFound, OllamaUnreachable
from ansible_collections.llmops.ollama.plugins.module_utils._ollama_client import OllamaClient
from ansible_collections.llmops.ollama.tests.lab.scripted_http import ScriptedServer

OK_STREAM = [
    {"status": "pulling manifest"},
    {"status": "pulling 44ec465f21a6", "digest": "sha256:44ec", "total": 100, "completed": 10},
    {"status": "pulling 44ec465f21a6", "digest": "sha256:44ec", "total": 100, "completed": 100},
    {"status": "verifying sha256 digest"},
    {"status": "writing manifest"},
    {"status": "success"},
]


@pytest.fixture
def server():
    """`server(script, timeout)` points a client at a scripted server answering every request with `script`."""
    with ScriptedServer() as httpd:
        def use(script, timeout=5):
            httpd.script = script
            return OllamaClient(httpd.url(), timeout=timeout)

        yield use


def test_success_only_with_a_final_success_line(server):
    seen = []
    client = server(lambda h: h.stream(OK_STREAM))
    result = client.pull("m", progress=seen.append)
    assert result.statuses[-1] == "success"
    assert result.bytes == 90  # first seen at 10 of 100
    assert len(seen) == len(OK_STREAM)


def test_stream_that_ends_without_success(server):
    client = server(lambda h: h.stream(OK_STREAM[:4]))
    with pytest.raises(OllamaError) as err:
        client.pull("m")
    assert "ended without 'success'" in err.value.msg
    assert "last status: verifying sha256 digest" in err.value.msg


def test_error_line_after_output_started(server):
    client = server(lambda h: h.stream(OK_STREAM[:2] + [{"error": "max retries exceeded: disk full"}]))
    with pytest.raises(OllamaError) as err:
        client.pull("m")
    assert err.value.msg == "pulling m failed: max retries exceeded: disk full"


def test_garbage_line(server):
    client = server(lambda h: h.stream(OK_STREAM[:1] + [b"<html>proxy error</html>\n"]))
    with pytest.raises(OllamaError) as err:
        client.pull("m")
    assert "not JSON" in err.value.msg and "proxy error" in err.value.msg


def test_json_that_is_not_an_object(server):
    client = server(lambda h: h.stream([b"[1, 2]\n"]))
    with pytest.raises(OllamaError) as err:
        client.pull("m")
    assert "unexpected line" in err.value.msg


def test_http_error_before_output(server):
    client = server(lambda h: h.reply(500, {"error": "pull model manifest: file does not exist"}))
    with pytest.raises(OllamaError) as err:
        client.pull("m")
    assert err.value.status == 500
    assert "HTTP 500" in err.value.msg and "file does not exist" in err.value.msg


def test_not_found_is_its_own_error(server):
    client = server(lambda h: h.reply(404, {"error": "model 'x' not found"}))
    with pytest.raises(OllamaNotFound) as err:
        client.delete("x")
    assert "model 'x' not found" in err.value.msg


def test_connection_dropped_mid_stream(server):
    client = server(lambda h: h.stream(OK_STREAM[:2], close_early=True))
    with pytest.raises(OllamaError) as err:
        client.pull("m")
    assert "ended without 'success'" in err.value.msg or "connection" in err.value.msg
    assert "run again" in err.value.msg


def test_silence_hits_the_idle_timeout(server):
    client = server(lambda h: h.stream(OK_STREAM[:2] + [OK_STREAM[-1]], pause=2.5), timeout=1)
    with pytest.raises(OllamaError) as err:
        client.pull("m")
    assert "sent nothing for 1s" in err.value.msg


def test_slow_but_steady_stream_is_not_a_timeout(server):
    client = server(lambda h: h.stream(OK_STREAM, pause=0.4), timeout=1)
    assert client.pull("m").statuses[-1] == "success"


def test_answer_that_is_not_ollama(server):
    client = server(lambda h: h.reply(200, b"<html>It works!</html>", "text/html"))
    with pytest.raises(OllamaError) as err:
        client.version()
    assert "not JSON" in err.value.msg and "Is base_url an Ollama server?" in err.value.msg


def test_loopback_host_check_explained(server):
    client = server(lambda h: h.reply(403, b""))
    with pytest.raises(OllamaError) as err:
        client.tags()
    assert "HTTP 403" in err.value.msg and "refuses other Host names" in err.value.msg


def test_proxy_refusal_is_shown_as_the_proxy_says_it(server):
    # the proxy role's answer to a "use" token asking to pull (the fleet test sees it from real nginx too)
    client = server(lambda h: h.reply(403, b"this token may use models but not manage them\n", "text/plain"))
    with pytest.raises(OllamaError) as err:
        client.tags()
    assert "HTTP 403" in err.value.msg and "this token may use models but not manage them" in err.value.msg
    assert "Host" not in err.value.msg


def test_token_and_headers_are_sent(server):
    seen = {}

    def script(h):
        seen.update(h.headers)
        h.reply(200, {"version": "0.32.15"})

    client = server(script)
    client.headers["X-Team"] = "ml"
    client.headers["Authorization"] = "Bearer s3cret"
    assert client.version() == "0.32.15"
    assert seen["Authorization"] == "Bearer s3cret" and seen["X-Team"] == "ml"


def test_nobody_listening():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(OllamaUnreachable) as err:
        OllamaClient("http://127.0.0.1:%d" % port, timeout=2).version()
    assert "could not reach the Ollama server at http://127.0.0.1:%d" % port in err.value.msg
    assert "systemctl start ollama" in err.value.msg
