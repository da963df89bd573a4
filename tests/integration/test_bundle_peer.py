"""ollama_import fetching a bundle's blobs from a models-role peer over TLS (bundle_url with bundle_ca_pem or
bundle_ca_path): the real peer server (roles/models/files/serve_blobs.py, run as the role runs it, tests/lab/peer.py)
on loopback with a certificate from a CA made here with openssl (tests/lab/pki.py), the real `ollama serve` to import
into, the module in-process (tests/lab/module_run.py). The host trusts that CA alone for the peer: the import works
over IPv4 and IPv6 and then changes nothing; with another CA, a CA given for an http:// URL, a blob the peer does not
serve (outside the rollout's list), the task fails saying why, without a traceback or the password. The password as
the no_log option bundle_password (as the role's wave gives it, tasks/wave.yml, run here through ansible-playbook -vvv
on two local hosts) is in no output, not even where the module refused its arguments before it ran, where a password
inside bundle_url was shown (in the play's output and the async job's file).
"""
import hashlib
import json
import sys
import urllib.request

import pytest

from ansible_collections.llmops.ollama.plugins.modules import ollama_import
from tests.lab import models
from tests.lab.module_run import assert_clear_failure, run_module
from tests.lab.ollama_server import OllamaServer
from tests.lab.paths import REPO
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


# -- the password as an option of its own (bundle_username, bundle_password), no_log -------------------------------

def test_the_password_as_an_option_logs_in_and_stays_out_of_the_result(peer, pki, tmp_path):
    srv, index = peer
    with OllamaServer() as server:
        args = import_args(server, tmp_path, index, srv.url("127.0.0.1"), bundle_username="peer",
                           bundle_password=PASSWORD, bundle_ca_pem=pki[0].cert.read_text())
        code, result = run_module(ollama_import, args)
        assert code == 0 and result["changed"], result
        assert listed(server) == {ROLLOUT: index["models"][ROLLOUT]["digest"]}
    assert PASSWORD not in json.dumps(result)
    if "invocation" in result:  # ansible-core 2.21 leaves the invocation out of a module's result
        assert result["invocation"]["module_args"]["bundle_password"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


def test_a_wrong_password_as_an_option_is_refused_by_the_peer(peer, pki, tmp_path):
    srv, index = peer
    with OllamaServer() as server:
        args = import_args(server, tmp_path, index, srv.url("127.0.0.1"), bundle_username="peer",
                           bundle_password="not-" + PASSWORD, bundle_ca_pem=pki[0].cert.read_text())
        code, result = run_module(ollama_import, args)
        assert listed(server) == {}
    assert_clear_failure(code, result)
    assert "the bundle server at https://127.0.0.1:%d answered HTTP 401" % srv.port in result["msg"], result["msg"]


@pytest.mark.parametrize("url,more,message", [
    # the module refuses its arguments before it runs: the option is masked, where a password in the URL is not
    ("https://127.0.0.1:1", dict(noprune="maybe"), "argument 'noprune' is of type"),
    ("https://peer:%s@127.0.0.1:1" % PASSWORD, dict(bundle_password=PASSWORD),
     "bundle_url https://127.0.0.1:1 holds a password, and bundle_password is set too: give it once"),
    ("https://peer@127.0.0.1:1", dict(bundle_username="peer"),
     "bundle_url https://127.0.0.1:1 holds a user name, and bundle_username is set too"),
])
def test_a_task_refused_keeps_the_password_option_out(tmp_path, url, more, message):
    args = dict(base_url="http://127.0.0.1:1", models=[ROLLOUT], index={"models": {}}, bundle_url=url,
                bundle_password=PASSWORD, staging_dir=str(tmp_path / "staging"))
    args.update(more)
    code, result = run_module(ollama_import, args)
    assert_clear_failure(code, result)
    assert message in result["msg"], result["msg"]
    assert PASSWORD not in json.dumps(result)


WAVE = REPO / "tests" / "integration" / "targets" / "models_wave" / "playbook.yml"


def wave(playbook, srv, server, tmp_path, ca, index, **more):
    """The role's wave (tasks/wave.yml) at -vvv on two local hosts: `fetcher` fetches from `source` (whose server is
    the peer `srv`), as an async job; returns the run and the text of the async job files it left."""
    inventory = tmp_path / "hosts.yml"
    local = dict(ansible_connection="local", ansible_python_interpreter=sys.executable)
    inventory.write_text(json.dumps({"all": {"hosts": {
        "source": dict(local, __ollama_models_mine=dict(wave=0, source=None, serves=1),
                       __ollama_models_peer_url="https://127.0.0.1:%d" % srv.port,
                       __ollama_models_peer_secret=PASSWORD),
        "fetcher": dict(local, __ollama_models_mine=dict(wave=1, source="source", serves=0))}}}))
    jobs = tmp_path / "async"
    variables = dict(wave=1, index=index, ca=ca, ollama_models=[ROLLOUT], ollama_models_base_url=server.url,
                     ollama_models_store_dir=str(server.models_dir), ollama_models_staging_dir=str(tmp_path / "s"),
                     ollama_models_bundle_spread_seconds=120)
    variables.update(more)
    run = playbook(WAVE, inventory=str(inventory), extra_vars=variables, args=["-vvv"],
                   env={"ANSIBLE_ASYNC_DIR": str(jobs)})
    left = "".join(p.read_text(errors="replace") for p in jobs.rglob("*") if p.is_file()) if jobs.exists() else ""
    return run, left


def test_a_waves_password_is_in_no_output_at_vvv(playbook, peer, pki, tmp_path):
    """wave.yml gives the source's password as bundle_password: the import works, and the password is nowhere in
    the play's -vvv output or the async job's files, also when the module refuses its arguments (before it runs,
    where a password in bundle_url was shown)."""
    srv, index = peer
    with OllamaServer() as server:
        run, left = wave(playbook, srv, server, tmp_path, pki[0].cert.read_text(), index)
        assert run.rc == 0, run.output[-4000:]
        assert listed(server) == {ROLLOUT: index["models"][ROLLOUT]["digest"]}
        # where -vvv shows the module's invocation (ansible-core 2.21 shows it no more), the password is masked
        assert "module_args" not in run.output or "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in run.output
        assert PASSWORD not in run.output and PASSWORD not in left
        run, left = wave(playbook, srv, server, tmp_path, pki[0].cert.read_text(), index,
                         ollama_models_noprune="maybe")
        assert run.rc != 0 and "argument 'noprune' is of type" in run.output, run.output[-4000:]
        # the invocation is shown (up to ansible-core 2.20), and its bundle_url holds no password
        assert "module_args" not in run.output or '"bundle_url": "https://127.0.0.1:%d"' % srv.port in run.output
        assert PASSWORD not in run.output and PASSWORD not in left
