"""ollama_import fetching a bundle's blobs from a models-role peer over TLS (bundle_url with bundle_ca_pem or
bundle_ca_path): the real peer server (roles/models/files/serve_blobs.py, run as the role runs it, tests/lab/peer.py)
on loopback with a certificate from a CA made here with openssl (tests/lab/pki.py), the real `ollama serve` to import
into, the module in-process (tests/lab/module_run.py). The host trusts that CA alone for the peer: the import works
over IPv4 and IPv6 and then changes nothing; with another CA, a CA given for an http:// URL, a blob the peer does not
serve (outside the rollout's list), the task fails saying why, without a traceback or the password.
"""
import hashlib
import json
import urllib.request

import pytest

from ansible_collections.llmops.ollama.plugins.modules import ollama_import
from tests.lab import models
from tests.lab.module_run import assert_clear_failure, run_module
from tests.lab.ollama_server import OllamaServer
from tests.lab.peer import Peer, ipv6_loopback, tls_file
from tests.lab.pki import LabCA

PASSWORD = "peer-secret-5521"
ROLLOUT = "site.example:5000/team/rollout:latest"
PRIVATE = "site.example:5000/team/private:latest"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    ca = LabCA(folder / "ca", name="rollout CA")
    return ca, tls_file(ca, folder / "tls.pem"), LabCA(folder / "other", name="another CA")


@pytest.fixture(scope="module")
def peer(tmp_path_factory, pki):
    """A peer's store holding two models, serving the blobs of one (the rollout's); and the bundle's index of both."""
    root = tmp_path_factory.mktemp("peer")
    (root / "blobs").mkdir()
    index, listed = {"models": {}}, []
    for name in (ROLLOUT, PRIVATE):
        manifest, blobs = models.build(name, 1, 1 << 18)
        for digest, data in blobs.items():
            (root / "blobs" / digest.replace(":", "-")).write_bytes(data)
        index["models"][name] = dict(digest=hashlib.sha256(manifest).hexdigest(), manifest=manifest.decode(),
                                     blobs=sorted(blobs), size=sum(len(b) for b in blobs.values()))
        if name == ROLLOUT:
            listed = [d.split(":", 1)[1] for d in blobs]
    with Peer(root / "secrets", root / "blobs", listed, pki[1], PASSWORD) as server:
        yield server, index


def import_args(server, tmp_path, index, url, name=ROLLOUT, **more):
    return dict(base_url=server.url, models=[name], index=index, bundle_url=url, staging_dir=str(tmp_path / "staging"),
                models_dir=str(server.models_dir), **more)


def listed(server):
    with urllib.request.urlopen(server.url + "/api/tags", timeout=10) as resp:
        return dict((m["name"], m["digest"]) for m in json.loads(resp.read())["models"])


@pytest.mark.parametrize("host", ["127.0.0.1", pytest.param("::1", id="ipv6")])
@pytest.mark.parametrize("how", ["bundle_ca_pem", "bundle_ca_path"])
def test_a_host_imports_from_its_peer_over_tls_trusting_the_rollouts_ca(peer, pki, tmp_path, host, how):
    if host == "::1" and ipv6_loopback():
        print(ipv6_loopback())
        pytest.skip(ipv6_loopback())
    srv, index = peer
    ca = {"bundle_ca_pem": pki[0].cert.read_text(), "bundle_ca_path": str(pki[0].cert)}[how]
    with OllamaServer() as server:
        args = import_args(server, tmp_path, index, srv.url(host, PASSWORD), **{how: ca})
        code, check = run_module(ollama_import, dict(args, _ansible_check_mode=True))
        assert code == 0 and check["changed"] and listed(server) == {}, check
        code, result = run_module(ollama_import, args)
        assert code == 0 and result["changed"] and result["staged_bytes"] > 1 << 18, result
        assert listed(server) == {ROLLOUT: index["models"][ROLLOUT]["digest"]}
        code, again = run_module(ollama_import, args)
        assert code == 0 and not again["changed"], again
    assert PASSWORD not in json.dumps([check, result, again])


def test_a_peer_whose_certificate_another_ca_signed_is_refused(peer, pki, tmp_path):
    srv, index = peer
    with OllamaServer() as server:
        args = import_args(server, tmp_path, index, srv.url("127.0.0.1", PASSWORD),
                           bundle_ca_pem=pki[2].cert.read_text())
        code, result = run_module(ollama_import, args)
        assert listed(server) == {}
    assert_clear_failure(code, result)
    assert result["msg"].startswith("fetching blobs from the bundle at https://127.0.0.1:%d: TLS verification failed "
                                    "for the bundle server at https://127.0.0.1:%d: " % (srv.port, srv.port)), result
    assert "certificate verify failed" in result["msg"]
    assert result["msg"].endswith("Its certificate must be signed by the CA given in bundle_ca_pem (or bundle_ca_path) "
                                  "and name the host of bundle_url."), result["msg"]
    assert PASSWORD not in json.dumps(result)


def test_a_blob_outside_the_rollout_is_not_served(peer, pki, tmp_path):
    srv, index = peer
    with OllamaServer() as server:
        args = import_args(server, tmp_path, index, srv.url("127.0.0.1", PASSWORD), name=PRIVATE,
                           bundle_ca_pem=pki[0].cert.read_text())
        code, result = run_module(ollama_import, args)
        assert listed(server) == {}
    assert_clear_failure(code, result)
    assert "the bundle server at https://127.0.0.1:%d answered HTTP 404" % srv.port in result["msg"], result["msg"]


@pytest.mark.parametrize("url,ca,message", [
    ("http://peer:%s@127.0.0.1:1" % PASSWORD, "pem", "bundle_url http://127.0.0.1:1 is not https://"),
    ("https://127.0.0.1:1", "junk", "cannot use bundle_ca_pem: "),
    ("https://127.0.0.1:1", "missing", "bundle_ca_path /nonexistent/ca.pem is not a file on this host"),
])
def test_a_ca_that_cannot_be_used_is_named(pki, tmp_path, url, ca, message):
    given = {"pem": dict(bundle_ca_pem=pki[0].cert.read_text()), "junk": dict(bundle_ca_pem="not a certificate"),
             "missing": dict(bundle_ca_path="/nonexistent/ca.pem")}[ca]
    index = {"models": {}}
    args = dict(base_url="http://127.0.0.1:1", models=[ROLLOUT], index=index, bundle_url=url,
                staging_dir=str(tmp_path / "staging"), **given)
    code, result = run_module(ollama_import, args)
    assert_clear_failure(code, result)
    assert message in result["msg"], result["msg"]
    assert PASSWORD not in json.dumps(result)
