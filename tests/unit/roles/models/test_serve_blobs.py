"""The models role's peer server (roles/models/files/serve_blobs.py), run as the role runs it (`python3 FILE ...`),
on loopback: the blobs of a store, read-only, to holders of the rollout's password only. The fleet test
(tests/fleet/test_site_waves.py) shows the role's hosts serving each other with it."""
import base64
import hashlib
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ansible_collections.llmops.ollama.tests.lab.net import free_port, wait_http

SCRIPT = Path(__file__).resolve().parents[4] / "roles" / "models" / "files" / "serve_blobs.py"
PASSWORD = "Zq3rollout5ecret"


@pytest.fixture
def peer(tmp_path):
    store = tmp_path / "models"
    (store / "blobs").mkdir(parents=True)
    (store / "manifests").mkdir()
    (store / "manifests" / "m").write_text("{}")
    data = os.urandom(3 << 20)
    digest = hashlib.sha256(data).hexdigest()
    (store / "blobs" / ("sha256-" + digest)).write_bytes(data)
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--directory", str(store / "blobs"), "--port", str(port),
                             "--password-file", str(secret)], stderr=subprocess.PIPE)
    url = "http://127.0.0.1:%d" % port
    wait_http(url + "/", timeout=20, proc=proc)  # it answers 401
    yield url, digest, data, proc
    proc.terminate()
    proc.wait(timeout=10)


def get(url, password=PASSWORD, user="peer", method="GET"):
    request = urllib.request.Request(url, method=method)
    if password is not None:
        login = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
        request.add_header("Authorization", "Basic " + login)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_a_blob_goes_to_the_passwords_holder_whole(peer):
    url, digest, data, _proc = peer
    status, headers, body = get("%s/blobs/sha256-%s" % (url, digest))
    assert status == 200 and body == data and headers["Content-Length"] == str(len(data))
    status, headers, body = get("%s/blobs/sha256-%s" % (url, digest), method="HEAD")
    assert status == 200 and body == b"" and headers["Content-Length"] == str(len(data))


@pytest.mark.parametrize("password,user", [(None, "peer"), ("wrong", "peer"), (PASSWORD, "other"),
                                           (PASSWORD[:-1], "peer"), ("", "peer")])
def test_without_the_password_nothing_is_served(peer, password, user):
    url, digest, _data, _proc = peer
    status, headers, body = get("%s/blobs/sha256-%s" % (url, digest), password=password, user=user)
    assert status == 401 and body == b"" and headers["WWW-Authenticate"] == 'Basic realm="ollama-peer"'


@pytest.mark.parametrize("path", ["/", "/manifests/m", "/blobs/", "/blobs/sha256-%s" % ("0" * 64),
                                  "/blobs/sha256-ABC", "/blobs/../manifests/m", "/blobs/sha256-%2e%2e%2fmanifests",
                                  "/../password"])
def test_nothing_but_a_blob_is_served(peer, path):
    url, _digest, _data, _proc = peer
    status, _headers, body = get(url + path)
    assert status == 404 and body == b""


def test_the_password_is_not_on_the_command_line(peer):
    _url, _digest, _data, proc = peer
    with open("/proc/%d/cmdline" % proc.pid, "rb") as handle:
        assert PASSWORD.encode() not in handle.read()


@pytest.mark.parametrize("content,message", [(None, "cannot read the password file"), ("\n", "is empty")])
def test_no_password_no_server(tmp_path, content, message):
    secret = tmp_path / "password"
    if content is not None:
        secret.write_text(content)
    out = subprocess.run([sys.executable, str(SCRIPT), "--directory", str(tmp_path), "--port", str(free_port()),
                          "--password-file", str(secret)], stderr=subprocess.PIPE, universal_newlines=True,
                         timeout=30, check=False)
    assert out.returncode == 1 and message in out.stderr and "Traceback" not in out.stderr
