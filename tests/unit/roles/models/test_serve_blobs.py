"""The models role's peer server (roles/models/files/serve_blobs.py), run as the role runs it (`python3 FILE ...`),
on loopback, with a CA and a certificate made here with openssl (tests/lab/pki.py): over TLS only, the blobs of the
rollout's list only, to holders of the rollout's password only, on IPv4 and IPv6 from one socket. The fleet test
(tests/fleet/test_site_waves.py) shows the role's hosts serving each other with it."""
import base64
import hashlib
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ansible_collections.llmops.ollama.tests.lab.net import free_port
from ansible_collections.llmops.ollama.tests.lab.peer import SCRIPT, Peer, ipv6_loopback, tls_file
from ansible_collections.llmops.ollama.tests.lab.pki import LabCA

PASSWORD = "Zq3rollout5ecret"
HOSTS = ["127.0.0.1", pytest.param("::1", id="ipv6")]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """The rollout's CA, the peer's key and certificate (for its loopback addresses) in one file, and another CA."""
    folder = tmp_path_factory.mktemp("pki")
    ca = LabCA(folder / "ca", name="rollout CA")
    other = LabCA(folder / "other", name="another CA")  # what a host that is not the rollout's source would trust
    return ca, tls_file(ca, folder / "tls.pem"), other


def store_with_blobs(root):
    """A model store whose blobs folder holds the rollout's blob and a private one (a model made on that host)."""
    (root / "blobs").mkdir(parents=True)
    (root / "manifests").mkdir()
    (root / "manifests" / "m").write_text("{}")
    blobs = {}
    for kind, size in (("rollout", 3 << 20), ("private", 1 << 16)):
        data = os.urandom(size)
        digest = hashlib.sha256(data).hexdigest()
        (root / "blobs" / ("sha256-" + digest)).write_bytes(data)
        blobs[kind] = (digest, data)
    return blobs


@pytest.fixture
def peer(tmp_path, pki):
    store = tmp_path / "models"
    blobs = store_with_blobs(store)
    missing = hashlib.sha256(b"listed, not in this store").hexdigest()
    with Peer(tmp_path / "peer", store / "blobs", [blobs["rollout"][0], missing], pki[1], PASSWORD) as server:
        yield server.port, blobs, missing, server.proc


def trusting(ca_cert):
    context = ssl.create_default_context(cafile=str(ca_cert))
    context.verify_flags |= getattr(ssl, "VERIFY_X509_STRICT", 0)  # as Python 3.13 checks by default
    return context


def get(url, ca_cert, password=PASSWORD, user="peer", method="GET"):
    request = urllib.request.Request(url, method=method)
    if password is not None:
        login = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
        request.add_header("Authorization", "Basic " + login)
    try:
        with urllib.request.urlopen(request, timeout=10, context=trusting(ca_cert)) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def url_of(host, port, path):
    if host == "::1":
        reason = ipv6_loopback()
        if reason:
            print(reason)
            pytest.skip(reason)
        host = "[::1]"
    return "https://%s:%d%s" % (host, port, path)


@pytest.mark.parametrize("host", HOSTS)
def test_a_blob_of_the_rollout_goes_to_the_passwords_holder_whole(peer, pki, host):
    port, blobs, _missing, _proc = peer
    digest, data = blobs["rollout"]
    url = url_of(host, port, "/blobs/sha256-%s" % digest)
    status, headers, body = get(url, pki[0].cert)
    assert status == 200 and headers["Content-Length"] == str(len(data))
    assert hashlib.sha256(body).hexdigest() == digest and body == data
    status, headers, body = get(url, pki[0].cert, method="HEAD")
    assert status == 200 and body == b"" and headers["Content-Length"] == str(len(data))


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("password,user", [(None, "peer"), ("wrong", "peer"), (PASSWORD, "other"),
                                           (PASSWORD[:-1], "peer"), ("", "peer")])
def test_without_the_password_nothing_is_served(peer, pki, host, password, user):
    port, blobs, _missing, _proc = peer
    for kind in ("rollout", "private"):
        url = url_of(host, port, "/blobs/sha256-%s" % blobs[kind][0])
        status, headers, body = get(url, pki[0].cert, password=password, user=user)
        assert status == 401 and body == b"" and headers["WWW-Authenticate"] == 'Basic realm="ollama-peer"'


@pytest.mark.parametrize("host", HOSTS)
def test_a_blob_outside_the_rollout_is_not_found_whether_the_store_has_it_or_not(peer, pki, host):
    port, blobs, missing, _proc = peer
    answers = []
    for digest in (blobs["private"][0], "0" * 64, missing):  # in the store but not listed; neither; listed, not there
        status, headers, body = get(url_of(host, port, "/blobs/sha256-%s" % digest), pki[0].cert)
        answers.append((status, headers["Content-Length"], body))
    assert answers == [(404, "0", b"")] * 3


@pytest.mark.parametrize("path", ["/", "/manifests/m", "/blobs/", "/blobs/sha256-ABC", "/blobs/../manifests/m",
                                  "/blobs/sha256-%2e%2e%2fmanifests", "/../password", "/digests"])
def test_nothing_but_a_blob_is_served(peer, pki, path):
    port, _blobs, _missing, _proc = peer
    status, _headers, body = get(url_of("127.0.0.1", port, path), pki[0].cert)
    assert status == 404 and body == b""


def test_plain_http_gets_no_answer(peer):
    port, blobs, _missing, _proc = peer
    login = base64.b64encode(("peer:%s" % PASSWORD).encode()).decode()
    request = ("GET /blobs/sha256-%s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic %s\r\n\r\n"
               % (blobs["rollout"][0], login)).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except ConnectionResetError:
            pass
    assert b"HTTP/" not in received and blobs["rollout"][1][:64] not in received, received[:200]
    with pytest.raises(Exception) as err:  # what urllib makes of it: anything but an HTTP answer
        urllib.request.urlopen("http://127.0.0.1:%d/blobs/sha256-%s" % (port, blobs["rollout"][0]), timeout=10)
    assert not isinstance(err.value, urllib.error.HTTPError), err.value


def test_a_client_trusting_another_ca_gets_nothing(peer, pki):
    port, blobs, _missing, _proc = peer
    with pytest.raises(urllib.error.URLError) as err:
        get(url_of("127.0.0.1", port, "/blobs/sha256-%s" % blobs["rollout"][0]), pki[2].cert)
    assert isinstance(err.value.reason, ssl.SSLCertVerificationError), err.value


def test_no_secret_is_on_the_command_line(peer, pki):
    _port, _blobs, _missing, proc = peer
    with open("/proc/%d/cmdline" % proc.pid, "rb") as handle:
        cmdline = handle.read()
    assert PASSWORD.encode() not in cmdline and b"PRIVATE KEY" not in cmdline
    assert pki[1].read_bytes()[-200:] not in cmdline


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can start it as the role does, to run as another user")
def test_it_reads_root_s_files_then_serves_as_the_stores_owner(pki, tmp_path):
    nobody = pwd.getpwnam("nobody")
    shared = Path(tempfile.mkdtemp(prefix="peer-store-"))  # a store the user can read, as the server's own is
    try:
        shared.chmod(0o755)
        blobs = store_with_blobs(shared / "models")
        for path in [shared / "models", shared / "models" / "blobs"] + list((shared / "models" / "blobs").iterdir()):
            path.chmod(0o755 if path.is_dir() else 0o644)
        with Peer(tmp_path / "peer", shared / "models" / "blobs", [blobs["rollout"][0]], pki[1], PASSWORD,
                  user="nobody") as server:
            digest, data = blobs["rollout"]
            status, _headers, body = get(url_of("127.0.0.1", server.port, "/blobs/sha256-%s" % digest), pki[0].cert)
            assert status == 200 and body == data
            # it answers only once it runs as the user
            with open("/proc/%d/status" % server.proc.pid) as handle:
                ids = dict(line.split(":", 1) for line in handle.read().splitlines() if ":" in line)
            assert ids["Uid"].split() == [str(nobody.pw_uid)] * 4 and ids["Gid"].split() == [str(nobody.pw_gid)] * 4
    finally:
        shutil.rmtree(str(shared))


@pytest.mark.parametrize("broken,message", [
    ("no password", "cannot read the password file"),
    ("empty password", "the password file"),
    ("no digests", "cannot read the digests file"),
    ("empty digests", "the digests file"),
    ("not a digest", "which is not sha256:<64 hex digits>"),
    ("no tls", "cannot use the TLS file"),
    ("not a key", "cannot use the TLS file"),
])
def test_a_file_missing_or_wrong_no_server(pki, tmp_path, broken, message):
    files = dict(password=tmp_path / "password", digests=tmp_path / "digests", tls=tmp_path / "tls.pem")
    files["password"].write_text("" if broken == "empty password" else PASSWORD)
    files["digests"].write_text({"empty digests": "\n", "not a digest": "sha256:%s ../x\n" % ("a" * 64)}
                                .get(broken, "sha256:%s\n" % ("a" * 64)))
    files["tls"].write_text("not a key\n" if broken == "not a key" else pki[1].read_text())
    for kind in ("password", "digests", "tls"):
        if broken == "no " + kind:
            files[kind].unlink()
    out = subprocess.run([sys.executable, str(SCRIPT), "--directory", str(tmp_path), "--port", str(free_port()),
                          "--password-file", str(files["password"]), "--digests-file", str(files["digests"]),
                          "--tls-file", str(files["tls"])],
                         stderr=subprocess.PIPE, universal_newlines=True, timeout=30, check=False)
    assert out.returncode == 1 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert "BEGIN" not in out.stderr
