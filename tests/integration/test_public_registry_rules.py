"""The modules read the lab's real registry front as the real Ollama server's pull does, with the front's knobs set
to answer as stricter or flakier registries do (tests/lab/registry.py, `PUT /_lab/stats`): blob downloads sent to
the CDN with 301, 302, 303 or 308 instead of 307, a token realm on the CDN's host instead of the registry's own, and
a CDN that drops the connection mid-blob. Distribution stays the real registry behind the front; its TLS (the lab's
CA), its token auth and the CDN on 127.0.0.2 are those of `public_registry`.

Each case runs both against it: the module (ollama_bundle, which reads the manifest and downloads the blobs as the
server's pull does, in-process with its real exit_json/fail_json; ollama_model in check mode where it reads the
registry) and a real `ollama serve` of this module's own (the lab build of the release the server role installs)
through /api/pull. Where the module refuses, the server's pull fails too, and what the registry's front, its token
service and its CDN saw shows that neither went where it must not. test_registry_rules.py keeps, against a scripted
registry, what the front cannot produce (a manifest redirected to another host, a token service that redirects).
"""
import hashlib
import json
import ssl
import urllib.error
import urllib.request

import pytest

from ansible_collections.llmops.ollama.plugins.modules import ollama_bundle, ollama_model
from tests.lab import models
from tests.lab.module_run import assert_clear_failure, run_module
from tests.lab.ollama_server import OllamaServer
from tests.lab.registry import CDN_HOST, SERVICE, set_knobs

SIZE = 1 << 20  # the model layer: small, so each case is quick
DROP_AFTER = 256 << 10  # where the CDN cuts a blob's first answer
DEFAULTS = {"delay": 0.0, "rate": None, "redirect": 307, "realm": "own", "drop_after": None}


@pytest.fixture(scope="module")
def server(lab_ca):
    """A server of this module's own that trusts the lab's CA, as a server pulling from a site registry must."""
    with OllamaServer(env={"SSL_CERT_FILE": str(lab_ca.cert)}) as srv:
        yield srv


@pytest.fixture
def knobs(public_registry, lab_ca):
    """Set the public front's knobs for this test; they are reset after it (an empty body), since other tests share
    the registry."""
    def put(**values):
        return set_knobs(public_registry.url, cafile=str(lab_ca.cert), **values)

    yield put
    assert put() == DEFAULTS


class Model:
    """A synthetic model of the test's own (a 1 MiB layer, a template, a config), pushed through the plain registry
    (the public one serves the same store), named by the public registry's address."""

    def __init__(self, registry, public_registry, repo):
        self.repo = repo
        manifest, self.blobs = models.build(repo + ":latest", 1, SIZE)
        self.digest = models.push(registry.url, repo, "latest", manifest, self.blobs).split(":", 1)[1]  # as Ollama
        self.layer = max(self.blobs, key=lambda d: len(self.blobs[d]))
        self.name = "%s/%s:latest" % (public_registry.address, repo)


def module_fetch(tmp_path, model, lab_ca):
    """ollama_bundle fetching the model into the test's bundle: (exit code, result)."""
    args = dict(path=str(tmp_path / "bundle"), models=[model.name], registry_ca_path=str(lab_ca.cert), timeout=20)
    return run_module(ollama_bundle, args)


def server_tags(server):
    with urllib.request.urlopen(server.url + "/api/tags", timeout=10) as answer:
        return {m["name"]: m["digest"] for m in json.load(answer)["models"]}


def seen(public_registry, since, where, agent):
    """The requests `where` ("registry" or "cdn") saw from the module (agent "llmops.ollama") or the server
    ("ollama/" at the registry, Go's "Go-http-client/" at the CDN) since `since`."""
    prefixes = {"module": ("llmops.ollama",), "server": ("ollama/", "Go-http-client/")}[agent]
    return [r for r in public_registry.requests[since:]
            if r["where"] == where and r["headers"].get("User-Agent", "").startswith(prefixes)]


def blob_file(tmp_path, digest):
    return tmp_path / "bundle" / "blobs" / digest.replace(":", "-")


def test_the_knobs_are_checked_and_the_plain_front_refuses_the_public_ones(public_registry, registry, lab_ca, knobs):
    assert knobs(redirect=302, drop_after=10) == dict(DEFAULTS, redirect=302, drop_after=10)
    assert knobs(realm="other") == dict(DEFAULTS, redirect=302, drop_after=10, realm="other")  # only what it names
    for bad in ({"redirect": 300}, {"realm": "elsewhere"}, {"drop_after": -1}, {"drop_after": "1k"}, {"colour": 1}):
        with pytest.raises(urllib.error.HTTPError) as refused:
            knobs(**bad)
        assert refused.value.code == 400, bad
    assert knobs(realm="own") == dict(DEFAULTS, redirect=302, drop_after=10)  # a refused body changed nothing
    with pytest.raises(urllib.error.HTTPError) as refused:
        set_knobs(registry.url, realm="other")
    assert refused.value.code == 400 and "public registry only" in json.load(refused.value)["error"]


@pytest.mark.parametrize("status", [301, 302, 303, 308])
def test_a_blob_sent_to_the_cdn_with_another_status_than_307_is_refused_as_the_server_refuses_it(
        server, registry, public_registry, lab_ca, knobs, tmp_path, status):
    model = Model(registry, public_registry, "front/moved%d" % status)
    knobs(redirect=status)
    since = len(public_registry.requests)
    code, result = module_fetch(tmp_path, model, lab_ca)
    assert_clear_failure(code, result)
    msg = result["msg"]
    assert "with a redirect (HTTP %d) to another host, %s" % (status, public_registry.cdn_url) in msg, msg
    assert "Ollama's server follows a blob download to another host only on 307" in msg, msg
    assert "its pull fails there too (\"unexpected status code %d\")" % status in msg, msg
    assert "must send blob downloads to another host with 307" in msg, msg
    assert seen(public_registry, since, "registry", "module"), "the module did not reach the registry"
    assert seen(public_registry, since, "cdn", "module") == [], "the module fetched from the CDN"
    assert not any(blob_file(tmp_path, digest).exists() for digest in model.blobs)
    # ollama_model's check mode asks for a blob's first byte as the pull would, and predicts the failure
    code, check = run_module(ollama_model, dict(name=model.name, base_url=server.url,
                                                registry_ca_path=str(lab_ca.cert), _ansible_check_mode=True))
    assert_clear_failure(code, check)
    assert check["msg"].startswith("'%s' cannot be pulled: " % model.name), check["msg"]
    assert "with a redirect (HTTP %d) to another host" % status in check["msg"], check["msg"]
    assert seen(public_registry, since, "cdn", "module") == [], "check mode fetched from the CDN"

    pulled, error = server.pull(model.name)
    assert not pulled and error == "unexpected status code %d" % status, error
    assert seen(public_registry, since, "registry", "server"), "the server did not reach the registry"
    assert seen(public_registry, since, "cdn", "server") == [], "the server fetched from the CDN"
    assert model.name not in server_tags(server)


def test_a_blob_sent_to_the_cdn_with_307_is_fetched_by_both(server, registry, public_registry, lab_ca, knobs, tmp_path):
    model = Model(registry, public_registry, "front/cdn307")
    knobs(redirect=307, realm="own")  # what the front does unless told otherwise
    since = len(public_registry.requests)
    code, result = module_fetch(tmp_path, model, lab_ca)
    assert code == 0 and result["changed"], result
    assert result["models"][0]["digest"] == model.digest
    fetched = sorted(r["path"].split("/")[2].split("?")[0] for r in seen(public_registry, since, "cdn", "module"))
    assert fetched == sorted(model.blobs), fetched  # every blob from the CDN
    for digest, data in model.blobs.items():
        assert blob_file(tmp_path, digest).read_bytes() == data

    # check mode predicts the pull, having asked the CDN for one byte of the smallest blob the server lacks
    code, check = run_module(ollama_model, dict(name=model.name, base_url=server.url,
                                                registry_ca_path=str(lab_ca.cert), _ansible_check_mode=True))
    assert code == 0 and check["changed"] and check["models"][0]["action"] == "pulled", check
    since = len(public_registry.requests)
    pulled, error = server.pull(model.name)
    assert pulled, error
    assert server_tags(server)[model.name] == model.digest
    fetched = set(r["path"].split("/")[2].split("?")[0] for r in seen(public_registry, since, "cdn", "server"))
    assert model.layer in fetched, fetched  # the server's blobs came from the CDN (a blob it had is not fetched)


def test_a_token_realm_on_another_host_is_refused_as_the_server_refuses_it(
        server, registry, public_registry, lab_ca, knobs, tmp_path):
    model = Model(registry, public_registry, "front/realm")
    knobs(realm="other")
    own, other = public_registry.address, public_registry.cdn_url.split("://", 1)[1]
    assert other.startswith(CDN_HOST + ":") and own.startswith("127.0.0.1:")  # another host, not only another port
    since = len(public_registry.requests)
    code, result = module_fetch(tmp_path, model, lab_ca)
    assert_clear_failure(code, result)
    msg = result["msg"]
    assert ("sends clients for a token to %s/token, which is not the registry's own host and port (%s)"
            % (public_registry.cdn_url, own)) in msg, msg
    assert "Ollama's server takes a token only from the registry's own host and port" in msg, msg
    assert "realm host \"%s\" does not match original host \"%s\"" % (other, own) in msg, msg
    # ollama_model's check mode reads the registry's manifest, and refuses the same way
    code, check = run_module(ollama_model, dict(name=model.name, base_url=server.url,
                                                registry_ca_path=str(lab_ca.cert), _ansible_check_mode=True))
    assert_clear_failure(code, check)
    assert "realm host \"%s\" does not match original host \"%s\"" % (other, own) in check["msg"], check
    assert seen(public_registry, since, "cdn", "module") == [], "the module asked the other host for a token"

    pulled, error = server.pull(model.name)
    assert not pulled and error.endswith("realm host \"%s\" does not match original host \"%s\"" % (other, own)), \
        error
    assert seen(public_registry, since, "cdn", "server") == [], "the server asked the other host for a token"
    assert model.name not in server_tags(server)

    # the realm is a working token service, whose tokens the registry takes: what both refuse is where it is
    context = ssl.create_default_context(cafile=str(lab_ca.cert))
    scope = "repository:%s:pull" % model.repo
    url = "%s/token?service=%s&scope=%s" % (public_registry.cdn_url, SERVICE, scope)
    with urllib.request.urlopen(url, timeout=10, context=context) as answer:
        token = json.load(answer)["token"]
    request = urllib.request.Request("%s/v2/%s/manifests/latest" % (public_registry.url, model.repo), headers={
        "Authorization": "Bearer " + token, "Accept": models.MANIFEST_TYPE})
    with urllib.request.urlopen(request, timeout=10, context=context) as answer:
        assert hashlib.sha256(answer.read()).hexdigest() == model.digest


def test_a_blob_the_cdn_cuts_is_resumed_by_both(server, registry, public_registry, lab_ca, knobs, tmp_path):
    """The CDN drops the connection after DROP_AFTER bytes of each blob's first answer. The module fails, saying so,
    keeps what it got and resumes it on its next run (Range); the server retries within its pull (download.go: up to
    6 tries a part, 1 s after the first) and resumes from the bytes it got too, so one /api/pull succeeds."""
    model = Model(registry, public_registry, "front/dropped")
    size = len(model.blobs[model.layer])
    assert knobs(drop_after=DROP_AFTER)["drop_after"] == DROP_AFTER
    since = len(public_registry.requests)
    code, first = module_fetch(tmp_path, model, lab_ca)
    assert_clear_failure(code, first)
    partial = blob_file(tmp_path, model.layer).with_name(blob_file(tmp_path, model.layer).name + ".partial")
    msg = first["msg"]
    assert "downloading %s from" % model.layer in msg and "failed after %d bytes" % DROP_AFTER in msg, msg
    assert "kept in %s, and the next run continues from there" % partial in msg, msg
    assert partial.read_bytes() == model.blobs[model.layer][:DROP_AFTER]
    assert not blob_file(tmp_path, model.layer).exists()
    cut = [r for r in seen(public_registry, since, "cdn", "module") if model.layer in r["path"]]
    assert [(r["headers"].get("Range"), r.get("dropped_after")) for r in cut] == [(None, DROP_AFTER)], cut

    since = len(public_registry.requests)
    code, second = run_module(ollama_bundle, dict(path=str(tmp_path / "bundle"), models=[model.name],
                                                  registry_ca_path=str(lab_ca.cert), timeout=20))
    assert code == 0 and second["changed"], second
    assert second["resumed_bytes"] == DROP_AFTER, second
    resumed = [r for r in seen(public_registry, since, "cdn", "module") if model.layer in r["path"]]
    assert [(r["headers"].get("Range"), r.get("dropped_after")) for r in resumed] == [
        ("bytes=%d-" % DROP_AFTER, None)], resumed
    assert "sha256:" + hashlib.sha256(blob_file(tmp_path, model.layer).read_bytes()).hexdigest() == model.layer
    assert not partial.exists()

    knobs(drop_after=DROP_AFTER)  # armed again for every blob: the server's first answer of the layer is cut too
    since = len(public_registry.requests)
    pulled, error = server.pull(model.name)
    assert pulled, error
    assert server_tags(server)[model.name] == model.digest
    gets = [r for r in seen(public_registry, since, "cdn", "server") if model.layer in r["path"]]
    assert [(r["headers"].get("Range"), r.get("dropped_after")) for r in gets] == [
        ("bytes=0-%d" % (size - 1), DROP_AFTER), ("bytes=%d-%d" % (DROP_AFTER, size - 1), None)], gets
    assert "%s part 0 attempt 0 failed: unexpected EOF" % model.layer[7:19] in server.log.read_text()
    stored = server.models_dir / "blobs" / model.layer.replace(":", "-")
    assert stored.read_bytes() == model.blobs[model.layer]
