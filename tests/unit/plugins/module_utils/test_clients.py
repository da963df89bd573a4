"""The two clients on protocol edge cases the real server and the lab registry cannot be made to produce on demand,
answered by a scripted local server (tests/lab/scripted_http.py): redirects to another origin, JSON that is not an
object, manifests naming digests such as `../../x`, a checksum step that stays silent, a registry's challenge
answered wrongly. What the real parts do produce is tested against them (tests/integration/test_public_registry.py).
"""
import hashlib
import json
import os

import pytest

from ansible_collections.llmops.ollama.plugins.module_utils._http import OllamaError, OllamaNotFound
from ansible_collections.llmops.ollama.plugins.module_utils._names import parse_model_name
from ansible_collections.llmops.ollama.plugins.module_utils._ollama_client import OllamaClient, client_from_params
from ansible_collections.llmops.ollama.plugins.module_utils._registry_client import (
    RegistryClient,
    blob_rule,
    parse_challenge,
    seed_url,
    server_rule,
)
from ansible_collections.llmops.ollama.tests.lab.scripted_http import ScriptedServer

TOKEN = "server-token-3f9a"
SECRET_HEADER = "team-secret-77"


def server_client(url, timeout=5):
    return client_from_params(dict(base_url=url, timeout=timeout, api_token=TOKEN, headers={"X-Team": SECRET_HEADER}))


# -- issue 13 item 2: the server's token and headers never follow a redirect to another origin -------------------

def test_token_and_headers_never_follow_a_redirect_to_another_origin():
    with ScriptedServer(lambda h: h.reply(200, {"version": "0.34.4"})) as other:
        target = other.url("localhost") + "/api/version"
        with ScriptedServer(lambda h: h.redirect(target)) as first:
            with pytest.raises(OllamaError) as err:
                server_client(first.url()).version()
        assert other.seen == [], "the redirect was followed to another origin"
    assert "redirected to another address, http://localhost:%d" % other.port in err.value.msg
    assert "set base_url to it" in err.value.msg
    assert TOKEN not in err.value.msg and SECRET_HEADER not in err.value.msg
    assert first.seen[0]["headers"]["Authorization"] == "Bearer " + TOKEN  # the server itself gets them


def test_a_redirect_on_the_same_origin_is_followed_with_the_token():
    def script(h):
        if h.path == "/api/version":
            return h.redirect("/proxied/api/version", 307)
        h.reply(200, {"version": "0.34.4"})

    with ScriptedServer(script) as srv:
        assert server_client(srv.url()).version() == "0.34.4"
    assert [s["path"] for s in srv.seen] == ["/api/version", "/proxied/api/version"]
    assert srv.seen[1]["headers"]["Authorization"] == "Bearer " + TOKEN
    assert srv.seen[1]["headers"]["X-Team"] == SECRET_HEADER


def test_a_redirected_pull_is_not_repeated_elsewhere():
    with ScriptedServer(lambda h: h.redirect("/elsewhere", 307)) as srv:
        with pytest.raises(OllamaError) as err:
            server_client(srv.url()).pull("m")
    assert "the request is not repeated there" in err.value.msg
    assert [s["path"] for s in srv.seen] == ["/api/pull"]


# -- issue 13 item 17: JSON that is not an object ---------------------------------------------------------------

@pytest.mark.parametrize("answer", [[], "models", 3, None, [{"name": "x"}]])
def test_json_that_is_not_an_object(answer):
    with ScriptedServer(lambda h: h.reply(200, json.dumps(answer).encode())) as srv:
        client = OllamaClient(srv.url(), timeout=5)
        for call in (client.version, client.tags, client.ps):
            with pytest.raises(OllamaError) as err:
                call()
            assert "not what Ollama sends" in err.value.msg and "Is base_url an Ollama server?" in err.value.msg


@pytest.mark.parametrize("models", [{"a": 1}, "x", [1, 2], [{"name": "ok"}, "bad"]])
def test_a_model_list_that_is_not_a_list_of_objects(models):
    with ScriptedServer(lambda h: h.reply(200, {"models": models})) as srv:
        with pytest.raises(OllamaError) as err:
            OllamaClient(srv.url(), timeout=5).tags()
    assert "'models' that is not a list of objects" in err.value.msg


# -- issue 13 item 10: the silent checksum step ----------------------------------------------------------------

BIG = 100 * 1000 * 1000
CHECKSUM_STREAM = [
    {"status": "pulling manifest"},
    {"status": "pulling 44ec465f21a6", "digest": "sha256:44ec", "total": BIG, "completed": 0},
    {"status": "pulling 44ec465f21a6", "digest": "sha256:44ec", "total": BIG, "completed": BIG},
    {"status": "verifying sha256 digest"},
    {"status": "writing manifest"},
    {"status": "success"},
]


def test_the_checksum_step_may_stay_silent_longer_than_the_timeout():
    """100 MB to hash: 1 s timeout + 10 s (at 10 MB/s) of silence allowed after 'verifying sha256 digest'."""
    with ScriptedServer(lambda h: h.stream(CHECKSUM_STREAM, pause=2.5, pause_after=3)) as srv:
        result = OllamaClient(srv.url(), timeout=1).pull("m")
    assert result.statuses[-1] == "success"


def test_silence_before_the_checksum_step_is_still_a_timeout():
    with ScriptedServer(lambda h: h.stream(CHECKSUM_STREAM, pause=2.5, pause_after=1)) as srv:
        with pytest.raises(OllamaError) as err:
            OllamaClient(srv.url(), timeout=1).pull("m")
    assert "sent nothing for 1s (last status: pulling 44ec465f21a6)" in err.value.msg


@pytest.mark.parametrize("listed, ok", [(True, True), (False, False)])
def test_a_stream_that_ends_during_the_checksum_asks_the_model_list(listed, ok):
    """The stream breaks after 'verifying sha256 digest': the pull succeeded if the server lists the model."""
    with ScriptedServer(lambda h: h.stream(CHECKSUM_STREAM[:4], close_early=True)) as srv:
        client = OllamaClient(srv.url(), timeout=1)
        if ok:
            assert "success (the server lists the model)" in client.pull("m", finished=lambda: listed).statuses
        else:
            with pytest.raises(OllamaError) as err:
                client.pull("m", finished=lambda: listed)
            assert "last status: verifying sha256 digest" in err.value.msg


# -- issue 13 items 4 and 6: registries ----------------------------------------------------------------------

def manifest_with(digest):
    return json.dumps({"schemaVersion": 2, "layers": [{"digest": digest, "size": 3,
                                                       "mediaType": "application/vnd.ollama.image.model"}]}).encode()


@pytest.mark.parametrize("digest", ["../../../x", "sha256:" + "0" * 63, "sha256:../" + "0" * 61, "md5:abc", 7, None])
def test_a_manifest_naming_a_bad_digest_is_refused(digest):
    with ScriptedServer(lambda h: h.reply(200, manifest_with(digest))) as srv:
        name = parse_model_name("127.0.0.1:%d/ns/m" % srv.port)
        with pytest.raises(OllamaError) as err:
            RegistryClient(timeout=5).manifest(name, insecure=True)
    assert "that Ollama would refuse" in err.value.msg and "not sha256:<64 hex digits>" in err.value.msg


def challenge_registry(token_answer, challenge=None):
    """A registry that wants a token from its own /token (what Distribution's auth: token says)."""
    def script(h):
        if h.path.startswith("/token"):
            return token_answer(h)
        if h.headers.get("Authorization") == "Bearer good-token":
            return h.reply(200, manifest_with("sha256:" + "a" * 64))
        realm = "http://127.0.0.1:%d/token" % h.server.port
        h.reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}, headers=[
            ("WWW-Authenticate", challenge or 'Bearer realm="%s",service="reg",scope="repository:ns/m:pull"' % realm)])
    return ScriptedServer(script)


def test_a_bearer_challenge_is_answered_with_an_anonymous_token():
    with challenge_registry(lambda h: h.reply(200, {"token": "good-token"})) as srv:
        digest, manifest = RegistryClient(timeout=5).manifest(parse_model_name("127.0.0.1:%d/ns/m" % srv.port), True)
    assert manifest["layers"][0]["size"] == 3 and digest == hashlib.sha256(manifest_with("sha256:" + "a" * 64)).hexdigest()
    token_request = [s for s in srv.seen if s["path"].startswith("/token")][0]
    assert token_request["path"] == "/token?service=reg&scope=repository%3Ans%2Fm%3Apull"
    assert "Authorization" not in token_request["headers"]


@pytest.mark.parametrize("answer, says", [
    (lambda h: h.reply(401, {"errors": [{"code": "DENIED", "message": "login"}]}), "refused an anonymous token"),
    (lambda h: h.reply(200, {"no": "token"}), "answered without a usable token"),
    (lambda h: h.reply(200, b"<html>"), "answered without a usable token"),
    (lambda h: h.reply(200, {"token": "wrong-token"}), "refused the token it issued"),
])
def test_a_token_that_does_not_work_says_so(answer, says):
    with challenge_registry(answer) as srv:
        with pytest.raises(OllamaError) as err:
            RegistryClient(timeout=5).manifest(parse_model_name("127.0.0.1:%d/ns/m" % srv.port), True)
    assert says in err.value.msg
    assert "api_token" not in err.value.msg  # never sent to registries, so never the advice


def test_a_basic_login_challenge_says_what_cannot_be_given():
    with challenge_registry(lambda h: h.reply(404, b""), challenge='Basic realm="site"') as srv:
        with pytest.raises(OllamaError) as err:
            RegistryClient(timeout=5).manifest(parse_model_name("127.0.0.1:%d/ns/m" % srv.port), True)
    assert "asks for a login (Basic)" in err.value.msg and "api_token" not in err.value.msg


def test_challenge_parsing():
    assert parse_challenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                           'scope="repository:library/ubuntu:pull"') == ("bearer", {
                               "realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                               "scope": "repository:library/ubuntu:pull"})
    assert parse_challenge('Bearer realm=https://r/t , scope="a b"')[1] == {"realm": "https://r/t", "scope": "a b"}


def test_a_not_found_manifest_is_its_own_error():
    with ScriptedServer(lambda h: h.reply(404, {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "unknown"}]})) as s:
        with pytest.raises(OllamaNotFound) as err:
            RegistryClient(timeout=5).manifest(parse_model_name("127.0.0.1:%d/ns/m" % s.port), True)
    assert "MANIFEST_UNKNOWN" in err.value.msg


def test_a_seed_url_keeps_its_credentials_out_of_the_url():
    url, headers = seed_url("https://me:p%40ss@seed.example.com:8443/bundle/")
    assert url == "https://seed.example.com:8443/bundle" and headers["Authorization"] == "Basic bWU6cEBzcw=="


@pytest.mark.parametrize("url", ["http://[::1", "http://h:port/x", "ftp://h/x", "h/x", ""])
def test_a_seed_url_that_is_not_one(url):
    """Found by the bad-input property test: 'http://[::1' raised ValueError."""
    with pytest.raises(OllamaError) as err:
        seed_url(url)
    assert "bundle_url" in err.value.msg and "http:// or https:// URL of the bundle directory" in err.value.msg


def test_a_redirect_to_something_that_is_not_a_url():
    with ScriptedServer(lambda h: h.redirect("http://h:port/x")) as srv:
        with pytest.raises(OllamaError) as err:
            OllamaClient(srv.url(), timeout=5).version()
    assert "with a Location that is not a URL" in err.value.msg
    with ScriptedServer(lambda h: h.redirect("http://[::1/x")) as srv:  # urllib itself refuses this one
        with pytest.raises(OllamaError) as err:
            OllamaClient(srv.url(), timeout=5).version()
    assert "Invalid IPv6 URL" in err.value.msg


# -- the world outside the lab: redirects and token realms as Ollama's server takes them -------------------------
# The rules are Ollama 0.34.4's (server/images.go makeRequest, server/download.go blobDownload.run, server/auth.go
# getAuthorizationToken); tests/integration/test_registry_rules.py runs the real server beside the modules on them.

def follows(rule, visited, target, status=302):
    try:
        rule(visited, target, status)
    except OllamaError:
        return False
    return True


def test_the_servers_redirect_rule_for_manifests_heads_and_tokens():
    rule = server_rule("the registry", "GET", "/v2/ns/m/manifests/latest", insecure=False)
    start = ["https://reg.example:5000/v2/ns/m/manifests/latest"]
    assert follows(rule, start, "https://reg.example:5000/other")  # same host and port
    assert follows(rule, start, "http://reg.example:5000/other")  # the scheme is not compared (HTTPS to HTTP is
    # refused before the rule, unless insecure)
    assert not follows(rule, start, "https://reg.example:5001/other", 307)  # the port is part of the host
    assert not follows(rule, start, "https://reg.example/other", 307)
    assert not follows(rule, ["https://reg.example/v2/x"], "https://reg.example:443/x")  # as written, as Go compares
    assert not follows(rule, start, "https://cdn.example/x", 307)
    # between ollama.com's and Hugging Face's own hosts
    assert follows(rule, ["https://registry.ollama.ai/v2/x"], "https://cdn.ollama.com/x")
    assert follows(rule, ["https://registry.ollama.ai/v2/x"], "https://huggingface.co/x")
    assert not follows(rule, ["https://registry.ollama.ai/v2/x"], "https://r2.cloudflarestorage.com/x", 307)
    assert not follows(rule, ["https://notollama.com/v2/x"], "https://ollama.com/x")
    # insecure: any
    assert follows(server_rule("the registry", "GET", "/", insecure=True), start, "http://elsewhere/x")


def test_the_servers_redirect_rule_for_a_blob_download():
    rule = blob_rule("the registry", "/v2/ns/m/blobs/sha256:" + "a" * 64)
    start = ["https://reg.example/v2/ns/m/blobs/x"]
    for status in (301, 302, 303, 307, 308):
        assert follows(rule, start, "https://reg.example:8443/elsewhere", status)  # the same host name, any port
    for status in (301, 302, 303, 308):
        assert not follows(rule, start, "https://cdn.example/x", status)
    assert follows(rule, start, "https://cdn.example/x", 307)
    # from the download URL (a 307 away) on, any redirect
    assert follows(rule, start + ["https://cdn.example/x"], "https://other-cdn.example/y", 302)
    # a same-host hop first does not make the next one free
    assert not follows(rule, start + ["https://reg.example/v2/moved"], "https://cdn.example/x", 302)


def test_a_blob_sent_elsewhere_by_302_is_not_fetched_and_307_is(tmp_path):
    """A scripted registry and a second scripted server on another host name (localhost, where the registry is
    127.0.0.1): a plain Distribution registry cannot be made to redirect its blobs."""
    blob = b"abc"
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    with ScriptedServer(lambda h: h.reply(200, blob, "application/octet-stream")) as cdn:
        for status, fetched in ((302, False), (307, True)):
            del cdn.seen[:]

            def script(h, status=status):
                if h.command == "HEAD":
                    return h.reply(200, blob, "application/octet-stream")
                h.redirect(cdn.url("localhost") + "/blob", status)

            with ScriptedServer(script) as reg:
                name = parse_model_name("127.0.0.1:%d/ns/m" % reg.port)
                dest = str(tmp_path / "blob")
                if fetched:
                    assert RegistryClient(timeout=5).fetch_blob(name, digest, dest, insecure=True) == 3
                    os.unlink(dest)
                else:
                    with pytest.raises(OllamaError) as err:
                        RegistryClient(timeout=5).fetch_blob(name, digest, dest, insecure=True)
                    assert "only on 307 (Temporary Redirect)" in err.value.msg
                    assert "(\"unexpected status code 302\")" in err.value.msg
                    assert not os.path.exists(dest) and not os.path.exists(dest + ".partial")
            assert [s["method"] for s in reg.seen] == ["HEAD", "GET"]  # a HEAD first, as the server sends
            assert len(cdn.seen) == (1 if fetched else 0)


def test_a_token_service_on_another_host_is_not_asked():
    with ScriptedServer(lambda h: h.reply(200, {"token": "good-token"})) as other:
        challenge = 'Bearer realm="%s/token",service="reg",scope="repository:ns/m:pull"' % other.url("localhost")
        with challenge_registry(lambda h: h.reply(200, {"token": "good-token"}), challenge=challenge) as srv:
            with pytest.raises(OllamaError) as err:
                RegistryClient(timeout=5).manifest(parse_model_name("127.0.0.1:%d/ns/m" % srv.port), True)
        assert other.seen == []
    assert ("realm host \"localhost:%d\" does not match original host \"127.0.0.1:%d\"" % (other.port, srv.port)
            in err.value.msg)
    assert "must name a token service (the realm of its WWW-Authenticate) on its own address" in err.value.msg


def test_a_token_answer_with_access_token_only_is_refused_as_the_server_reads_it():
    with challenge_registry(lambda h: h.reply(200, {"access_token": "good-token"})) as srv:
        with pytest.raises(OllamaError) as err:
            RegistryClient(timeout=5).manifest(parse_model_name("127.0.0.1:%d/ns/m" % srv.port), True)
    assert "it sent access_token, but Ollama's server reads only token" in err.value.msg
    assert "unauthorized: access denied" in err.value.msg


@pytest.mark.parametrize("token_answer, says", [
    (lambda h: h.reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "unauthorized"}]}),
     "refused an anonymous token for repository:library/private-one:pull"),
    (lambda h: h.reply(200, {"token": "anonymous"}), "The registry refused the token it issued"),
])
def test_a_private_model_on_ollama_com_says_what_the_server_can_read_and_the_module_cannot(
        monkeypatch, token_answer, says):
    """registry.ollama.ai cannot be reached from the lab, and a private model's refusal cannot be had from it
    anyway: a scripted server stands in for it, reached as this client's HTTP proxy (insecure, plain HTTP), so the
    request names registry.ollama.ai as a real one would."""
    def script(h):
        if "/token" in h.path:
            return token_answer(h)
        h.reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}, headers=[
            ("WWW-Authenticate", 'Bearer realm="http://registry.ollama.ai/token",service="ollama.com",'
                                 'scope="repository:library/private-one:pull"')])

    with ScriptedServer(script) as proxy:
        monkeypatch.setenv("http_proxy", proxy.url())
        for var in ("no_proxy", "NO_PROXY"):
            monkeypatch.delenv(var, raising=False)
        with pytest.raises(OllamaError) as err:
            RegistryClient(timeout=5).manifest(parse_model_name("private-one"), insecure=True)
    assert proxy.seen[0]["path"] == "http://registry.ollama.ai/v2/library/private-one/manifests/latest"
    msg = err.value.msg
    assert says in msg, msg
    assert "Ollama's server signs its token requests with its own key (~/.ollama/id_ed25519" in msg, msg
    assert "this module has no such key (it does not read the server's)" in msg, msg
    assert "ollama signin" in msg and "ollama.com/connect" in msg, msg
    assert "The server cannot pull from there either" not in msg
