"""What a user sees when a registry, an index, a bundle or a server answers with something it should not (issue 13
items 4, 15, 16 and 17): each is a clear failure, or a correct result, never a traceback, and nothing is written
where it must not be. Modules run in-process (tests/lab/module_run.py). Registries and servers that answer wrongly
are scripted local servers (tests/lab/scripted_http.py): the real ones cannot be made to send such answers.
"""
import hashlib
import json
import os

import pytest

from ansible_collections.llmops.ollama.plugins.modules import ollama_bundle, ollama_facts, ollama_import, ollama_model
from tests.lab.module_run import assert_clear_failure, run_module
from tests.lab.net import free_port
from tests.lab.scripted_http import ScriptedServer

CLOSED = "http://127.0.0.1:%d" % free_port()


def manifest_naming(digest):
    return json.dumps({"schemaVersion": 2, "config": {"digest": "sha256:" + "c" * 64, "size": 2},
                       "layers": [{"digest": digest, "size": 3}]}).encode()


def files_under(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _dirs, fs in os.walk(root) for f in fs)


@pytest.mark.parametrize("digest", ["../../../x", "sha256:../../../../x", "sha256-" + "f" * 63 + "/", "/etc/passwd"])
def test_a_registry_manifest_naming_a_path_writes_nothing(tmp_path, digest):
    """Item 4: a manifest whose digest is a path made ollama_bundle create x.partial outside the bundle."""
    work = tmp_path / "work"
    (work / "a" / "b").mkdir(parents=True)
    with ScriptedServer(lambda h: h.reply(200, manifest_naming(digest))) as reg:
        name = "127.0.0.1:%d/ns/model" % reg.port
        code, result = run_module(ollama_bundle, dict(path=str(work / "a" / "b" / "bundle"), models=[name],
                                                      insecure=True))
        assert_clear_failure(code, result)
        assert "Ollama would refuse" in result["msg"] and "not sha256:<64 hex digits>" in result["msg"]
        assert [s["path"] for s in reg.seen] == ["/v2/ns/model/manifests/latest"]  # no blob was asked for
        assert files_under(tmp_path) == []

        code, result = run_module(ollama_model, dict(base_url=CLOSED, name=name, state="latest", insecure=True))
        assert_clear_failure(code, result)


def index_entry(manifest_bytes, **override):
    entry = dict(digest=hashlib.sha256(manifest_bytes).hexdigest(), manifest=manifest_bytes.decode(), size=5,
                 blobs=[])
    entry.update(override)
    return entry


GOOD = manifest_naming("sha256:" + "a" * 64)


@pytest.mark.parametrize("index, says", [
    ({"models": []}, "no 'models' object (a list)"),
    ({}, "no 'models' object (nothing)"),
    ({"models": {"reg:5000/ns/m:latest": []}}, "has no manifest text"),
    ({"models": {"reg:5000/ns/m:latest": {"digest": "x"}}}, "has no manifest text"),
    ({"models": {"reg:5000/ns/m:latest": index_entry(GOOD, digest=None)}}, "says its digest is null"),
    ({"models": {"reg:5000/ns/m:latest": {"manifest": "{not json", "digest": hashlib.sha256(b"{not json").hexdigest()}}},
     "has a manifest Ollama would refuse"),
    ({"models": {"reg:5000/ns/m:latest": index_entry(b"[1, 2]")}}, "a manifest is a JSON object, not a list"),
    ({"models": {"reg:5000/ns/m:latest": index_entry(manifest_naming("../x"))}}, "not sha256:<64 hex digits>"),
    ({"models": {"bad name!": index_entry(GOOD)}}, "is not a model name"),
])
def test_a_malformed_index_says_what_is_wrong(tmp_path, index, says):
    """Item 15: KeyError 'digest', AttributeError on a list, JSONDecodeError before."""
    with ScriptedServer(lambda h: h.reply(200, {"models": []})) as srv:
        code, result = run_module(ollama_import, dict(base_url=srv.url(), models=["reg:5000/ns/m"], index=index,
                                                      staging_dir=str(tmp_path / "s"), models_dir=str(tmp_path / "m")))
    assert_clear_failure(code, result)
    assert result["msg"].startswith("index: ") and says in result["msg"], result["msg"]
    assert "rebuild it with llmops.ollama.ollama_bundle" in result["msg"]
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("timeout", [10 ** 11, 86401, 0, -5])
def test_a_bundle_timeout_out_of_range(tmp_path, timeout):
    """Item 16: timeout=1e11 raised OverflowError in the socket."""
    code, result = run_module(ollama_bundle, dict(path=str(tmp_path / "b"), models=["127.0.0.1:1/ns/m"],
                                                  timeout=timeout, insecure=True))
    assert_clear_failure(code, result)
    assert "timeout must be a positive number of seconds, at most 86400" in result["msg"]


def test_stray_files_in_a_bundle_are_not_models(tmp_path):
    """Item 16: a .DS_Store in manifests/ (or deeper) raised NotADirectoryError; Ollama ignores such files."""
    root = tmp_path / "bundle"
    for stray in ("manifests/.DS_Store", "manifests/reg:5000/.DS_Store", "manifests/reg:5000/ns/.DS_Store",
                  "manifests/reg:5000/ns/m/.DS_Store", "manifests/reg:5000/ns/m/bad tag", "blobs/.DS_Store"):
        (root / stray).parent.mkdir(parents=True, exist_ok=True)
        (root / stray).write_bytes(b"\0junk")
    code, result = run_module(ollama_bundle, dict(path=str(root), models=[]))
    assert code == 0 and json.loads((root / "index.json").read_text()) == {"models": {}}, result


@pytest.mark.parametrize("answer", [b"[]", b'"models"', b"7", b"null", b'{"models": "x"}', b'{"models": [1]}'])
def test_a_server_answering_json_that_is_not_an_object(tmp_path, answer):
    """Item 17: AttributeError in ollama_facts and ollama_model."""
    with ScriptedServer(lambda h: h.reply(200, answer)) as srv:
        code, result = run_module(ollama_model, dict(base_url=srv.url(), name="m"))
        assert_clear_failure(code, result)
        assert "Is base_url an Ollama server?" in result["msg"], result["msg"]
        code, result = run_module(ollama_facts, dict(base_url=srv.url(), gather=["server"]))
        assert code == 0, result
        facts = result["ansible_facts"]["ollama"]
        assert "Is base_url an Ollama server?" in facts["error"], facts
        code, result = run_module(ollama_import, dict(base_url=srv.url(), models=["m"], index={"models": {}},
                                                      models_dir=str(tmp_path)))
        assert_clear_failure(code, result)
