"""The models role's TLS for a rollout in waves as the controller makes it (roles/models/tasks/peer_tls.yml, run by
tests/integration/targets/peer_tls/playbook.yml on localhost with the controller's openssl): the peer server
(tests/lab/peer.py) serves with the host's key and certificate, and a client that trusts the rollout's CA alone,
with the strict X.509 checks of Python 3.13, verifies it for the address the other hosts reach it at (an IPv4 or
IPv6 address, or a name), and for no other. The CA's folder on the controller is the controller user's alone."""
import base64
import hashlib
import json
import os
import shutil
import ssl
import stat
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.lab.paths import REPO
from tests.lab.peer import Peer, ipv6_loopback, root_only

TARGET = REPO / "tests" / "integration" / "targets" / "peer_tls" / "playbook.yml"
PASSWORD = "tls-test-7731"


def made_for(playbook, tmp_path, address):
    results = tmp_path / "results.json"
    run = playbook(TARGET, extra_vars={"address": address, "results_file": str(results)})
    assert run.rc == 0, run.output[-4000:]
    assert run.changed() == {"localhost": 1}, run.output[-4000:]  # the results file: nothing on the hosts yet
    return json.loads(results.read_text())


def client(ca_pem):
    context = ssl.create_default_context(cadata=ca_pem)
    context.verify_flags |= getattr(ssl, "VERIFY_X509_STRICT", 0)
    return context


@pytest.mark.parametrize("address,connect", [("127.0.0.1", "127.0.0.1"), ("::1", "[::1]"), ("localhost", "localhost")])
def test_a_hosts_certificate_verifies_against_the_rollouts_ca_for_its_address(playbook, tmp_path, address, connect):
    if address == "::1" and ipv6_loopback():
        print(ipv6_loopback())
        pytest.skip(ipv6_loopback())
    made = made_for(playbook, tmp_path, address)
    folder = Path(made["folder"])
    try:
        assert stat.S_IMODE(os.stat(str(folder)).st_mode) == 0o700
        tls = root_only(tmp_path / "tls.pem", Path(made["host"] + ".key").read_text() + "\n"
                        + Path(made["host"] + ".crt").read_text() + "\n")
        (tmp_path / "blobs").mkdir()
        data = b"a blob of the rollout"
        digest = hashlib.sha256(data).hexdigest()
        (tmp_path / "blobs" / ("sha256-" + digest)).write_bytes(data)
        login = "Basic " + base64.b64encode(("peer:" + PASSWORD).encode()).decode()
        with Peer(tmp_path / "secrets", tmp_path / "blobs", [digest], tls, PASSWORD) as peer:
            request = urllib.request.Request("https://%s:%d/blobs/sha256-%s" % (connect, peer.port, digest),
                                             headers={"Authorization": login})
            with urllib.request.urlopen(request, timeout=10, context=client(made["ca"])) as resp:
                assert resp.read() == data
            # the certificate names that address only
            other = "localhost" if address != "localhost" else "127.0.0.1"
            with pytest.raises(urllib.error.URLError) as err:
                urllib.request.urlopen("https://%s:%d/" % (other, peer.port), timeout=10, context=client(made["ca"]))
            assert isinstance(err.value.reason, ssl.SSLCertVerificationError), err.value
    finally:
        shutil.rmtree(str(folder))


def test_an_address_that_is_neither_a_name_nor_an_ip_is_refused(playbook, tmp_path):
    run = playbook(TARGET, extra_vars={"address": "peer, DNS:evil", "results_file": str(tmp_path / "r.json")})
    assert run.rc != 0 and "ollama_models_bundle_spread_address must be a host name or an IP address" in run.output
    assert "Make a folder on the controller" not in run.output
