"""Secrets stay secret (issue 13 item 3): the values of `headers` are no_log as api_token is, and a bundle_url's
password is sent to the bundle server only, as basic authentication, and never shows in a message or in the task's
`invocation`. Modules run in-process (tests/lab/module_run.py) against a real `ollama serve`; the bundle server is a
scripted local server that asks for a login (a seed host's web server), which the lab has no real one of. The models
role's login for such a seed (ollama_models_bundle_username, ollama_models_bundle_password) reaches it, and is in no
line of the play's -vvv output.
"""
import base64
import hashlib
import json

import pytest

from ansible_collections.llmops.ollama.plugins.modules import ollama_facts, ollama_import, ollama_model
from tests.lab import models
from tests.lab.module_run import assert_clear_failure, run_module
from tests.lab.net import free_port
from tests.lab.ollama_server import OllamaServer
from tests.lab.paths import REPO
from tests.lab.scripted_http import ScriptedServer

HEADER_SECRET = "hdr-secret-4471"
PASSWORD = "pa55-secret-9932"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with OllamaServer() as srv:
        yield srv


@pytest.mark.parametrize("module", [ollama_model, ollama_facts])
def test_header_values_are_not_shown(module, server):
    args = dict(base_url=server.url, headers={"X-Proxy-Auth": HEADER_SECRET}, gather=["server"])
    if module is ollama_model:
        args = dict(base_url="http://127.0.0.1:%d" % free_port(), headers={"X-Proxy-Auth": HEADER_SECRET}, name="m")
    _code, result = run_module(module, args)
    text = json.dumps(result)
    assert HEADER_SECRET not in text, text
    if "invocation" in result:  # ansible-core 2.21 leaves the invocation out of a module's result
        assert result["invocation"]["module_args"]["headers"] == {"X-Proxy-Auth": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"}


def bundle(tmp_path, name):
    """A bundle directory holding one synthetic model, and its index as ollama_bundle writes it."""
    manifest, blobs = models.build(name, 1, 1 << 16)
    (tmp_path / "blobs").mkdir()
    for digest, data in blobs.items():
        (tmp_path / "blobs" / digest.replace(":", "-")).write_bytes(data)
    entry = dict(digest=hashlib.sha256(manifest).hexdigest(), manifest=manifest.decode(), blobs=sorted(blobs),
                 size=sum(len(b) for b in blobs.values()))
    return {"models": {name: entry}}


def seed(root, password):
    """A web server for the bundle that wants user 'team' with `password`."""
    wanted = "Basic " + base64.b64encode(("team:%s" % password).encode()).decode()

    def script(h):
        if h.headers.get("Authorization") != wanted:
            return h.reply(401, b"login required", "text/plain", [("WWW-Authenticate", 'Basic realm="bundle"')])
        path = root / h.path.lstrip("/")
        if not path.is_file():
            return h.reply(404, b"no such file", "text/plain")
        h.reply(200, path.read_bytes(), "application/octet-stream")
    return ScriptedServer(script)


def import_args(server, tmp_path, index, url):
    return dict(base_url=server.url, models=list(index["models"]), index=index, bundle_url=url,
                staging_dir=str(tmp_path / "staging"), models_dir=str(server.models_dir))


def test_a_bundle_url_login_goes_to_the_bundle_server_only(server, tmp_path):
    index = bundle(tmp_path, "site.example:5000/team/secret-model:latest")
    with seed(tmp_path, PASSWORD) as srv:
        url = "http://team:%s@127.0.0.1:%d/" % (PASSWORD, srv.port)
        code, result = run_module(ollama_import, import_args(server, tmp_path, index, url))
    assert code == 0 and result["changed"], result
    assert result["models"][0]["digest_after"] == index["models"]["site.example:5000/team/secret-model:latest"]["digest"]
    assert {s["headers"].get("Authorization", "")[:6] for s in srv.seen} == {"Basic "}
    assert PASSWORD not in json.dumps(result)
    if "invocation" in result:  # ansible-core 2.21 leaves the invocation out of a module's result
        assert result["invocation"]["module_args"]["bundle_url"] == "http://team:********@127.0.0.1:%d/" % srv.port


def test_a_bundle_server_refusing_the_login_is_named_without_the_password(server, tmp_path):
    index = bundle(tmp_path, "site.example:5000/team/refused:latest")
    with seed(tmp_path, "another-password") as srv:
        url = "http://team:%s@127.0.0.1:%d/bundle" % (PASSWORD, srv.port)
        code, result = run_module(ollama_import, import_args(server, tmp_path, index, url))
    assert_clear_failure(code, result)
    assert result["msg"].startswith("fetching blobs from the bundle at http://127.0.0.1:%d/bundle: the bundle server "
                                    "at http://127.0.0.1:%d answered HTTP 401" % (srv.port, srv.port)), result["msg"]
    assert "registry" not in result["msg"]
    assert PASSWORD not in json.dumps(result)


def test_the_models_roles_seed_login_is_sent_and_in_no_output_at_vvv(playbook, server, tmp_path):
    """The models role with a seed that asks for a login (ollama_models_bundle_username and _password): the role
    gives the password to ollama_import as its no_log option, the hosts fetch from the seed with it, and it is nowhere
    in the play's -vvv output."""
    name = "site.example:5000/team/seed-login:latest"
    index = bundle(tmp_path, name)
    (tmp_path / "index.json").write_text(json.dumps(index))
    with seed(tmp_path, PASSWORD) as srv:
        run = playbook(REPO / "tests" / "integration" / "targets" / "models_bundle" / "playbook.yml", args=["-vvv"],
                       extra_vars=dict(server_url=server.url, results_file=str(tmp_path / "results.json"),
                                       ollama_models=[name], ollama_models_source="bundle",
                                       ollama_models_bundle_dir=str(tmp_path), ollama_models_bundle_fetch=False,
                                       ollama_models_bundle_url="http://127.0.0.1:%d" % srv.port,
                                       ollama_models_bundle_username="team", ollama_models_bundle_password=PASSWORD,
                                       ollama_models_base_url=server.url,
                                       ollama_models_store_dir=str(server.models_dir),
                                       ollama_models_staging_dir=str(tmp_path / "staging")))
    assert run.rc == 0, run.output[-4000:]
    assert [m["name"] for m in json.loads((tmp_path / "results.json").read_text())["models"]].count(name) == 1
    assert {s["headers"].get("Authorization", "")[:6] for s in srv.seen} == {"Basic "}
    # where -vvv shows the module's invocation (ansible-core 2.21 shows it no more), the password is masked
    assert "module_args" not in run.output or "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in run.output
    assert PASSWORD not in run.output
