"""ollama_model after a successful pull, when the server's list does not show the model yet.

Ollama rewrites a manifest in place (truncated, then written): while a second pull of the same model writes it,
/api/tags skips the model for a moment. The real server shows this only by chance (two plays pulling the same
model at once, tests/integration/test_faults_local.py), so these tests use a local HTTP server on loopback
(tests/lab/scripted_http.py) whose /api/tags leaves the model out of its first answers, as the real server did in
that race.
"""
import pytest

from ansible_collections.llmops.ollama.plugins.module_utils._names import parse_model_name
from ansible_collections.llmops.ollama.plugins.module_utils._ollama_client import OllamaClient
from ansible_collections.llmops.ollama.plugins.modules import ollama_model
from ansible_collections.llmops.ollama.tests.lab.scripted_http import ScriptedServer

ENTRY = {"name": "lab/tiny:latest", "model": "lab/tiny:latest", "digest": "ab" * 32, "size": 10}


@pytest.fixture
def tags_server():
    """A server whose /api/tags lists no model for its first `misses` answers, then lab/tiny."""
    state = {"misses": 0, "asked": 0}

    def script(handler):
        state["asked"] += 1
        handler.reply(200, {"models": [] if state["asked"] <= state["misses"] else [ENTRY]})

    with ScriptedServer(script) as httpd:
        yield OllamaClient(httpd.url(), timeout=5), state


def pulled_step():
    return dict(name="lab/tiny", model="lab/tiny:latest", state="present", action="pulled", changed=True,
                digest_before=None, digest_after=None, size=10, bytes=10, seconds=1.0, rate=10,
                parsed=parse_model_name("lab/tiny"))


def after_the_pull(client, wait):
    """What the module does once its pull succeeded: (steps, failures)."""
    steps, failures = [pulled_step()], []
    now = ollama_model.settled_models(client, steps, wait=wait)
    ollama_model.unlisted(steps, now, failures)
    ollama_model.reconcile(steps, now)
    return steps, failures


def test_a_pulled_model_missing_for_a_moment_is_waited_for(tags_server):
    client, state = tags_server
    state["misses"] = 3
    steps, failures = after_the_pull(client, wait=5)
    assert state["asked"] == 4 and failures == []
    assert steps[0]["changed"] is True and steps[0]["action"] == "pulled" and steps[0]["digest_after"] == "ab" * 32


def test_a_pulled_model_that_stays_missing_fails_the_step(tags_server):
    client, state = tags_server
    state["misses"] = 1000
    steps, failures = after_the_pull(client, wait=1)
    message = ("the server said the pull of 'lab/tiny' succeeded, but does not list it (%d s later): its manifest may "
               "have been removed or damaged meanwhile; run again" % ollama_model.SETTLE_SECONDS)
    assert failures == [message]
    assert steps[0]["changed"] is False and steps[0]["action"] == "none" and steps[0]["error"] == message
    assert state["asked"] > 1


def test_nothing_pulled_reads_the_list_once(tags_server):
    client, state = tags_server
    state["misses"] = 1000
    step = pulled_step()
    step.update(action="removed", state="absent")
    ollama_model.settled_models(client, [step], wait=5)
    assert state["asked"] == 1
