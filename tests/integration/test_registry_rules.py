"""The modules read a registry as the real Ollama server's pull does: the same redirects followed, the same token
realms taken, and where a module refuses, the server's pull fails too.

Each case runs both against one registry: the module (ollama_bundle, which reads the manifest and downloads the
blobs, as the server's pull does) in-process with its real exit_json/fail_json, and a real `ollama serve` of this
module's own (the lab build of the release the server role installs) through /api/pull. The registry is a scripted
local server (tests/lab/scripted_http.py) with a "CDN" and a token service on another host name (127.0.0.2).

The lab's real registry (Distribution behind its public front, tests/lab/registry.py) now produces, through its
knobs, blob downloads sent to its CDN with 301, 302, 303, 307 or 308, a token realm on another host, and a CDN that
drops the connection mid-blob: tests/integration/test_public_registry_rules.py runs the same comparisons against it,
over TLS (tests/integration/test_public_registry.py covers the rest of what a public registry does). Here the same
redirect and realm cases stay, over plain HTTP (insecure), with what the front cannot be made to produce: a manifest
redirected to another host (over HTTPS, and with insecure), and a token service that redirects to another host.
"""

import pytest

from ansible_collections.llmops.ollama.plugins.modules import ollama_bundle
from tests.lab import models
from tests.lab.module_run import assert_clear_failure, run_module
from tests.lab.ollama_server import OllamaServer
from tests.lab.pki import LabCA
from tests.lab.scripted_http import ScriptedServer

OTHER_HOST = "127.0.0.2"  # another host name on loopback, as a CDN or an outside token service is
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
TOKEN = "scripted-token-7c1d"


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return LabCA(tmp_path_factory.mktemp("rules-ca"))


@pytest.fixture(scope="module")
def server(ca):
    """A real server that trusts the CA of the scripted HTTPS registry, as one pulling from a site registry must."""
    with OllamaServer(env={"SSL_CERT_FILE": str(ca.cert)}) as srv:
        yield srv


class Registry:
    """A registry of one model (`ns/<model>:latest`) on 127.0.0.1 and a second host on 127.0.0.2 that serves the
    same blobs and manifest (a CDN, or the other host a manifest is redirected to) and tokens.

    blob: how a blob GET is answered: "location" (200 with its own path as Location, which the server needs:
    upstream issue #7244), or a status (301, 302, 307...) redirecting it to the other host.
    manifest: "serve", or a status redirecting the manifest GET to the other host.
    realm: None (no token needed), "own" (Bearer realm on the registry's own host and port) or "other".
    token_moved: the registry's own token service redirects (302) to the other host's."""

    def __init__(self, model, blob="location", manifest="serve", realm=None, context=None, other_context=None,
                 token_moved=False):
        self.model = model
        self.raw, self.blobs = models.build("ns/%s:latest" % model, 1, 1 << 16)
        self.blob, self.manifest, self.realm, self.token_moved = blob, manifest, realm, token_moved
        self.other = ScriptedServer(self._other, host=OTHER_HOST, context=other_context)
        self.registry = ScriptedServer(self._registry, context=context)
        self.name = "127.0.0.1:%d/ns/%s:latest" % (self.registry.port, model)

    def _serve(self, h, path):
        if path.endswith("/manifests/latest"):
            return h.reply(200, self.raw, MANIFEST_TYPE)
        digest = path.rsplit("/", 1)[1]
        if digest in self.blobs:
            return h.reply(200, self.blobs[digest], "application/octet-stream")
        return h.reply(404, {"errors": [{"code": "BLOB_UNKNOWN", "message": "unknown"}]})

    def _other(self, h):
        path = h.path.split("?", 1)[0]
        if path == "/token":
            return h.reply(200, {"token": TOKEN})
        return self._serve(h, path)

    def _registry(self, h):
        path = h.path.split("?", 1)[0]
        if path == "/token" and self.token_moved:
            return h.redirect(self.other.url() + h.path, 302)
        if path == "/token":
            return h.reply(200, {"token": TOKEN})
        if self.realm and h.headers.get("Authorization") != "Bearer " + TOKEN:
            where = self.registry.url() if self.realm == "own" else self.other.url()
            challenge = 'Bearer realm="%s/token",service="scripted",scope="repository:ns/%s:pull"' % (where, self.model)
            return h.reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                           headers=[("WWW-Authenticate", challenge)])
        if path.endswith("/manifests/latest") and self.manifest != "serve":
            return h.redirect(self.other.url() + path, self.manifest)
        if "/blobs/" in path and h.command == "GET":
            if self.blob == "location":
                return h.reply(200, self.blobs.get(path.rsplit("/", 1)[1], b""), "application/octet-stream",
                               [("Location", path)])
            return h.redirect(self.other.url() + path, self.blob)
        return self._serve(h, path)

    def close(self):
        self.registry.close()
        self.other.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def module_fetch(tmp_path, reg, insecure=True, **more):
    """ollama_bundle fetching the model into a new bundle: (exit code, result)."""
    args = dict(path=str(tmp_path / ("bundle-%s" % reg.model)), models=[reg.name], insecure=insecure, timeout=20)
    args.update(more)
    return run_module(ollama_bundle, args)


def gets(srv):
    return [s for s in srv.seen if s["method"] == "GET"]


@pytest.mark.parametrize("status", [301, 302])
def test_a_blob_sent_to_another_host_with_301_or_302_is_refused_as_the_server_refuses_it(server, tmp_path, status):
    with Registry("moved%d" % status, blob=status) as reg:
        code, result = module_fetch(tmp_path, reg)
        assert code == 1, result
        assert_clear_failure(code, result)
        msg = result["msg"]
        assert "with a redirect (HTTP %d) to another host, http://%s:%d" % (status, OTHER_HOST, reg.other.port) in msg
        assert "Ollama's server follows a blob download to another host only on 307" in msg, msg
        assert "its pull fails there too (\"unexpected status code %d\")" % status in msg, msg
        assert "must send blob downloads to another host with 307" in msg, msg
        assert gets(reg.other) == [], "the module fetched from the other host"

        pulled, error = server.pull(reg.name, insecure=True)
        assert not pulled and error == "unexpected status code %d" % status, error
        assert gets(reg.other) == [], "the server fetched from the other host"


def test_a_blob_sent_to_another_host_with_307_is_fetched_as_the_server_fetches_it(server, tmp_path):
    with Registry("cdn307", blob=307) as reg:
        code, result = module_fetch(tmp_path, reg)
        assert code == 0 and result["changed"], result
        fetched = [s["path"].rsplit("/", 1)[1] for s in gets(reg.other)]
        assert sorted(fetched) == sorted(reg.blobs), fetched  # every blob came from the other host
        bundle = tmp_path / "bundle-cdn307" / "blobs"
        assert sorted(p.name.replace("-", ":", 1) for p in bundle.iterdir()) == sorted(reg.blobs)

        del reg.other.seen[:]
        pulled, error = server.pull(reg.name, insecure=True)
        assert pulled, error
        assert sorted(s["path"].rsplit("/", 1)[1] for s in gets(reg.other)) == sorted(reg.blobs)


def test_a_token_realm_on_another_host_is_refused_as_the_server_refuses_it(server, tmp_path):
    with Registry("realm", realm="other") as reg:
        code, result = module_fetch(tmp_path, reg)
        assert_clear_failure(code, result)
        msg = result["msg"]
        own, other = "127.0.0.1:%d" % reg.registry.port, "%s:%d" % (OTHER_HOST, reg.other.port)
        assert "sends clients for a token to http://%s/token, which is not the registry's own host and port (%s)" % (
            other, own) in msg, msg
        assert "Ollama's server takes a token only from the registry's own host and port" in msg, msg
        assert "realm host \"%s\" does not match original host \"%s\"" % (other, own) in msg, msg
        assert reg.other.seen == [], "the module asked the other host for a token"

        pulled, error = server.pull(reg.name, insecure=True)
        assert not pulled and error.endswith("realm host \"%s\" does not match original host \"%s\"" % (other, own)), \
            error
        assert reg.other.seen == [], "the server asked the other host for a token"


def test_a_token_realm_on_the_registry_itself_is_used_by_both(server, tmp_path):
    # blobs through the CDN: the server downloads from the URL a blob GET gives it without the token
    with Registry("ownrealm", realm="own", blob=307) as reg:
        code, result = module_fetch(tmp_path, reg)
        assert code == 0 and result["changed"], result
        pulled, error = server.pull(reg.name, insecure=True)
        assert pulled, error
        tokens = [s for s in reg.registry.seen if s["path"].startswith("/token?")]
        agents = sorted(set(s["headers"]["User-Agent"].split("/")[0] for s in tokens))
        assert agents == ["llmops.ollama", "ollama"], agents


def test_a_token_service_that_redirects_to_another_host_is_refused_as_the_server_refuses_it(server, tmp_path):
    """The server asks for its token without insecure, whatever the pull's: even an insecure pull stops there."""
    with Registry("tokenmoved", realm="own", blob=307, token_moved=True) as reg:
        code, result = module_fetch(tmp_path, reg)
        assert_clear_failure(code, result)
        msg = result["msg"]
        assert "the token service of the registry at http://127.0.0.1:%d answered GET /token with a redirect (HTTP " \
               "302) to another host, http://%s:%d" % (reg.registry.port, OTHER_HOST, reg.other.port) in msg, msg
        assert "(\"blocked redirect to a different host\")" in msg and "insecure" not in msg, msg
        assert reg.other.seen == [], "the module followed the redirect"

        pulled, error = server.pull(reg.name, insecure=True)
        assert not pulled and error.endswith("blocked redirect to a different host"), error
        assert reg.other.seen == [], "the server followed the redirect"


def test_a_manifest_redirected_to_another_host_over_https_is_refused_as_the_server_refuses_it(server, tmp_path, ca):
    context = ca.server_context("rules-registry", dns=(), ips=("127.0.0.1",), ask_client_cert=False)
    other = ca.server_context("rules-other", dns=(), ips=(OTHER_HOST,), ask_client_cert=False)
    with Registry("manifest302", manifest=302, context=context, other_context=other) as reg:
        code, result = module_fetch(tmp_path, reg, insecure=False, registry_ca_path=str(ca.cert))
        assert_clear_failure(code, result)
        msg = result["msg"]
        assert ("answered GET /v2/ns/manifest302/manifests/latest with a redirect (HTTP 302) to another host, "
                "https://%s:%d" % (OTHER_HOST, reg.other.port)) in msg, msg
        assert "only on the registry's own host and port" in msg, msg
        assert "(\"blocked redirect to a different host\")" in msg and "insecure: true" in msg, msg
        assert reg.other.seen == [], "the module followed the redirect"

        pulled, error = server.pull(reg.name, insecure=False)
        assert not pulled and error.endswith("blocked redirect to a different host"), error
        assert error.startswith("pull model manifest: Get \"https://%s:%d/" % (OTHER_HOST, reg.other.port)), error
        assert reg.other.seen == [], "the server followed the redirect"


def test_with_insecure_a_manifest_redirected_to_another_host_is_followed_by_both(server, tmp_path):
    with Registry("insecure302", manifest=302) as reg:
        code, result = module_fetch(tmp_path, reg)
        assert code == 0 and result["changed"], result
        assert [s["path"] for s in reg.other.seen] == ["/v2/ns/insecure302/manifests/latest"]
        pulled, error = server.pull(reg.name, insecure=True)
        assert pulled, error
        assert [s["path"] for s in reg.other.seen].count("/v2/ns/insecure302/manifests/latest") == 2
