"""ollama_server_context_length auto (docs/codex.md) on a lab host: lab3, a bookworm workstation running the server,
the lab's models and Codex. What a team sees is checked: the context sized on the host lands in a drop-in of the
server's own and the server runs the model with it (/api/ps after a request), Codex's catalog gets the number, a
second run changes nothing (the site, then the sizing on its own with the model in memory, then the codex play on
its own), a minimum that cannot fit fails with the figures and a model the server lacks says what to do, both leaving
the server as it was, and turning auto off removes the drop-in (lab3 is left with the lab's settings, as the other
tests expect it).

The lab's model (lab/tiny, tests/lab/tiny_gguf.py) holds 32768 tokens and needs little memory: its context is its own
limit, whatever the host's RAM, so the minimum here is 16384 and 65536 is the one that cannot fit. How memory bounds
the context on GPUs is tests/unit/plugins/module_utils/test_context.py's, with recorded GPUs; counting back a loaded
copy is tests/unit/plugins/modules/test_context_loaded.py's.
"""
import json
from pathlib import Path

from tests.lab.ansible_run import recap

import pytest

HOST = "lab3"
AUTO = {"ollama_server_context_length": "auto", "ollama_server_context_min": 16384}
LIMIT = 32768  # lab/tiny's own context_length
DROPIN = "/etc/systemd/system/ollama.service.d/40-context.conf"
ENVIRONMENT = "/etc/systemd/system/ollama.service.d/10-environment.conf"
CATALOG = "/etc/codex/ollama-models.json"


def run(lab, playbook, extra_vars=None, fails=False, check=False):
    done = lab.playbook(playbook, limit=HOST, extra_vars=extra_vars, check=check)
    print("%s%s %s: %.1fs, %s" % (playbook if isinstance(playbook, str) else Path(playbook).name,
                                  " --check" if check else "", extra_vars, done.seconds, recap(done.output).get(HOST)))
    assert (done.rc != 0) == fails, done.output[-5000:]
    return done, recap(done.output)[HOST]


def server(lab):
    """The server's process and its context drop-in: a restart or a rewrite changes them."""
    return lab.ssh(HOST, "systemctl show -p MainPID --value ollama.service; cat %s" % DROPIN)


def catalog(lab):
    return dict((m["slug"], m.get("context_window")) for m in json.loads(lab.ssh(HOST, "cat %s" % CATALOG))["models"])


@pytest.fixture(scope="module")
def model(lab):
    return "%s/lab/tiny:latest" % lab.site["registry"]


@pytest.fixture(scope="module")
def sized(lab):
    _done, counts = run(lab, "site.yml", AUTO)
    assert counts["changed"] > 0
    return server(lab)


def test_auto_sizes_the_context_and_the_server_runs_with_it(lab, sized, model):
    assert lab.ssh(HOST, "stat -c '%%U %%G %%a' %s" % DROPIN).split() == ["root", "root", "644"]
    text = lab.ssh(HOST, "cat %s" % DROPIN)
    assert text.endswith('[Service]\nEnvironment="OLLAMA_CONTEXT_LENGTH=%d"\n' % LIMIT), text
    assert ("# sized for: model=%s min_context=16384 num_parallel=1 kv_cache_type=f16 gpus=all\n" % model) in text
    # not in the environment every instance shares
    assert "OLLAMA_CONTEXT_LENGTH" not in lab.ssh(HOST, "cat %s" % ENVIRONMENT)
    assert "OLLAMA_CONTEXT_LENGTH=%d" % LIMIT in lab.ssh(HOST, "systemctl show -p Environment ollama.service")
    body = json.dumps({"model": model, "prompt": "hi", "stream": False, "options": {"num_predict": 4}})
    lab.ssh(HOST, "curl -fsS -m 60 http://127.0.0.1:11434/api/generate -d '%s' >/dev/null" % body)
    loaded = [(m["name"], m["context_length"]) for m in lab.api(HOST, "/api/ps")["models"]]
    assert loaded == [(model, LIMIT)], loaded


def test_codex_catalog_gets_the_number(lab, sized, model):
    found = catalog(lab)
    assert found[model] == LIMIT, found  # the lab's settings give 8192


def test_a_second_run_changes_nothing(lab, sized, model):
    # the model is in memory (the request above): the host matches, and its play ends before the sizing; Codex's
    # catalog takes the context from the drop-in the look read
    _done, counts = run(lab, "site.yml", AUTO)
    assert counts["changed"] == 0, counts
    assert server(lab) == sized
    assert model in [m["name"] for m in lab.api(HOST, "/api/ps")["models"]]


def test_the_sizing_on_its_own_with_the_model_in_memory_changes_nothing(lab, sized, model):
    assert model in [m["name"] for m in lab.api(HOST, "/api/ps")["models"]]
    done, counts = run(lab, Path(__file__).parent / "playbooks" / "context.yml", AUTO)
    assert counts["changed"] == 0, counts
    assert "ollama_server_context=%d" % LIMIT in done.output
    assert server(lab) == sized


def test_the_codex_play_on_its_own_keeps_the_number(lab, sized, model):
    # no ollama_server_context in this run: what systemd runs the server with
    _done, counts = run(lab, "codex.yml", AUTO)
    assert counts["changed"] == 0, counts
    assert catalog(lab)[model] == LIMIT


def test_a_minimum_that_cannot_fit_fails_with_the_figures_and_changes_nothing(lab, sized, model):
    done, counts = run(lab, "servers.yml", dict(AUTO, ollama_server_context_min=65536), fails=True)
    assert counts["failed"] == 1 and counts["changed"] == 0, counts
    said = " ".join(done.output.split())
    assert ("%s: ollama_server_context_length is auto, and the context of %s cannot be sized: " % (HOST, model)
            in said), said[-3000:]
    assert ("(http://127.0.0.1:11434): %s holds at most %d tokens (its context_length), below the 65536 minimum; "
            "choose a model with a longer context, or lower the minimum (min_context); %d fits in memory here. "
            "Nothing was changed." % (model, LIMIT, LIMIT)) in said, said[-3000:]
    assert server(lab) == sized


def test_a_model_the_server_lacks_fails_saying_what_to_do(lab, sized, model):
    missing = "%s/lab/not-there:latest" % lab.site["registry"]
    # check mode: a real run would pull what it lists first, so it says what it would size, and does not fail
    done, _counts = run(lab, "servers.yml", dict(AUTO, ollama_server_context_model=missing), check=True)
    assert ("The context would be sized once the server answers and has %s: '%s' is not on the server at "
            % (missing, missing)) in " ".join(done.output.split())
    done, counts = run(lab, "servers.yml", dict(AUTO, ollama_server_context_model=missing), fails=True)
    assert counts["failed"] == 1 and counts["changed"] == 0, counts
    said = " ".join(done.output.split())
    assert ("cannot be sized: '%s' is not on the server at http://127.0.0.1:11434: pull it first" % missing
            in said), said[-3000:]
    assert ("The context is sized once the model is on the server: list it in ollama_models (the models role pulls "
            "it before the context is sized), or set ollama_server_context_model to a model the server has. Nothing "
            "was changed.") in said, said[-3000:]
    assert server(lab) == sized


def test_without_auto_the_drop_in_goes(lab, sized, model):
    # the lab's own settings (8192, tests/lab/group_vars/all.yml), as the tests after this one find lab3
    _done, counts = run(lab, "site.yml")
    assert counts["changed"] > 0
    assert lab.ssh(HOST, "ls %s 2>/dev/null || echo gone" % DROPIN).strip() == "gone"
    assert 'Environment="OLLAMA_CONTEXT_LENGTH=8192"' in lab.ssh(HOST, "cat %s" % ENVIRONMENT)
    assert "OLLAMA_CONTEXT_LENGTH=8192" in lab.ssh(HOST, "systemctl show -p Environment ollama.service")
    assert catalog(lab)[model] == 8192
