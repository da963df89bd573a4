"""ollama_facts' cloud state, from a real `ollama serve`'s /api/status (the lab builds of 0.34.4 and 0.32.15): off by
OLLAMA_NO_CLOUD, by the service user's ~/.ollama/server.json, by both, or on."""
import json

import pytest

from ansible_collections.llmops.ollama.plugins.modules import ollama_facts
from tests.lab import ollama_build
from tests.lab.module_run import run_module
from tests.lab.ollama_server import OllamaServer
from tests.lab.scripted_http import ScriptedServer


def cloud_of(server):
    code, result = run_module(ollama_facts, {"base_url": server.url, "gather": ["server"]})
    assert code == 0, result
    facts = result["ansible_facts"]["ollama"]
    assert facts["reachable"] is True, facts
    return facts["cloud"]


@pytest.mark.parametrize("version", ollama_build.VERSIONS)
@pytest.mark.parametrize("env, config, expected", [
    ({}, False, {"disabled": False, "source": "none"}),
    ({"OLLAMA_NO_CLOUD": "1"}, False, {"disabled": True, "source": "env"}),
    ({}, True, {"disabled": True, "source": "config"}),
    ({"OLLAMA_NO_CLOUD": "1"}, True, {"disabled": True, "source": "both"}),
], ids=["on", "env", "server.json", "both"])
def test_the_cloud_state_is_what_the_server_says(version, env, config, expected):
    ollama_build.build(version)
    server = OllamaServer(version=version, env=dict({"OLLAMA_NO_CLOUD": ""}, **env))
    if config:  # the server reads ~/.ollama/server.json of the user it runs as (HOME is the server's own folder)
        (server.home / ".ollama").mkdir(parents=True, exist_ok=True)
        (server.home / ".ollama" / "server.json").write_text(json.dumps({"disable_ollama_cloud": True}))
    with server:
        assert cloud_of(server) == expected


def test_facts_not_gathered_say_nothing_of_the_cloud():
    code, result = run_module(ollama_facts, {"base_url": "http://127.0.0.1:9", "gather": ["server"]})
    assert code == 0 and result["ansible_facts"]["ollama"]["cloud"] is None, result


def test_a_proxy_that_refuses_the_status_leaves_the_other_facts():
    """The proxy role lets only admin tokens read /api/status (nginx's 403 for a use token, tests/fleet/test_site_proxy.py):
    a local HTTP server answers like it, as a real server alone cannot; the models are still reported."""
    models = {"models": [{"name": "lab/tiny:latest", "model": "lab/tiny:latest", "digest": "ab" * 32}]}

    def script(h):
        if h.path == "/api/status":
            return h.reply(403, b"this token may use models but not manage them\n", ctype="text/plain")
        return h.reply(200, {"version": "0.34.4"} if h.path == "/api/version" else models)

    with ScriptedServer(script) as srv:
        code, result = run_module(ollama_facts, {"base_url": srv.url(), "gather": ["server"]})
    assert code == 0, result
    facts = result["ansible_facts"]["ollama"]
    assert (facts["error"], facts["cloud"], [m["name"] for m in facts["models"]]) == (None, None, ["lab/tiny:latest"])
