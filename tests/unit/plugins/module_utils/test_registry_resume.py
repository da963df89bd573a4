# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Resuming a blob download (RegistryClient.fetch_blob, download_from_seed, and the locked installs by digest of
_lock.install_by_digest, which download into ollama_model's staging_dir) from the `.partial` file an interrupted
run kept.

The registry here is a scripted local server (tests/lab/scripted_http.py): it stands in for answers the lab's real
registry (Distribution, which honours Range) cannot be made to give: ignoring Range (200), answering 416, a 206 of
another range, a connection cut after some bytes on demand. The Ollama server of install_by_digest is its blob API in
memory (Server below). The resume against the real registry and the real server is in
tests/integration/test_bundle_resume.py and tests/integration/test_lock_resume.py."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import re
import socket

import pytest

from ansible_collections.llmops.ollama.plugins.module_utils._http import OllamaError
from ansible_collections.llmops.ollama.plugins.module_utils._lock import install_by_digest
from ansible_collections.llmops.ollama.plugins.module_utils._names import parse_model_name
from ansible_collections.llmops.ollama.plugins.module_utils._registry_client import RegistryClient, _save
from ansible_collections.llmops.ollama.plugins.module_utils._staging import UnsafeStaging
from ansible_collections.llmops.ollama.tests.lab.scripted_http import ScriptedServer

BLOB = bytes(bytearray(i * 7 % 251 for i in range(300000)))
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
KEPT = 120000


def registry(mode):
    """A blob registry: `ranges` answers Range with 206, `ignore` with the whole blob (200), `416` refuses any
    Range, `other` answers a Range with a 206 of the whole blob (bytes 0-...), `cut` sends KEPT bytes of the whole blob
    and closes the connection."""
    def script(h):
        if h.command == "HEAD":
            return h.reply(200, BLOB, "application/octet-stream")
        ranged = re.match(r"^bytes=(\d+)-$", h.headers.get("Range", ""))
        if mode == "cut":
            h.send_response(200)
            h.send_header("Content-Length", str(len(BLOB)))
            h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(BLOB[:KEPT])
            h.wfile.flush()
            h.connection.shutdown(socket.SHUT_RDWR)
            h.close_connection = True
            return None
        if ranged and mode == "416":
            return h.reply(416, b"", "text/plain", [("Content-Range", "bytes */%d" % len(BLOB))])
        if ranged and mode == "ranges":
            start = int(ranged.group(1))
            if start >= len(BLOB):
                return h.reply(416, b"", "text/plain", [("Content-Range", "bytes */%d" % len(BLOB))])
            return h.reply(206, BLOB[start:], "application/octet-stream",
                           [("Content-Range", "bytes %d-%d/%d" % (start, len(BLOB) - 1, len(BLOB)))])
        if ranged and mode == "other":
            return h.reply(206, BLOB, "application/octet-stream",
                           [("Content-Range", "bytes 0-%d/%d" % (len(BLOB) - 1, len(BLOB)))])
        return h.reply(200, BLOB, "application/octet-stream")
    return ScriptedServer(script)


def fetch(server, dest):
    client = RegistryClient(timeout=5)
    fetched = client.fetch_blob(parse_model_name("127.0.0.1:%d/ns/m" % server.port), DIGEST, dest, insecure=True)
    return fetched, client.resumed_bytes


def gets(server):
    return [s["headers"].get("Range") for s in server.seen if s["method"] == "GET"]


def test_an_interrupted_download_is_kept_and_the_next_one_asks_only_for_the_rest(tmp_path):
    dest = str(tmp_path / "blob")
    with registry("cut") as srv:
        with pytest.raises(OllamaError) as err:
            fetch(srv, dest)
    assert "failed after %d bytes" % KEPT in err.value.msg
    assert "The %d bytes received are kept in %s.partial, and the next run continues from there" % (KEPT, dest) \
        in err.value.msg
    with open(dest + ".partial", "rb") as f:
        assert f.read() == BLOB[:KEPT]
    with registry("ranges") as srv:
        fetched, resumed = fetch(srv, dest)
        assert gets(srv) == ["bytes=%d-" % KEPT]
    assert (fetched, resumed) == (len(BLOB) - KEPT, KEPT)
    print("resumed: fetched %d of %d bytes (%d kept from the interrupted run)" % (fetched, len(BLOB), resumed))
    with open(dest, "rb") as f:
        assert f.read() == BLOB
    assert not os.path.exists(dest + ".partial")


def test_a_server_that_ignores_range_sends_the_whole_blob_and_it_starts_over(tmp_path):
    dest = str(tmp_path / "blob")
    (tmp_path / "blob.partial").write_bytes(BLOB[:KEPT])
    with registry("ignore") as srv:
        assert fetch(srv, dest) == (len(BLOB), 0)
        assert gets(srv) == ["bytes=%d-" % KEPT]  # asked, answered 200 whole: used, nothing kept twice
    assert open(dest, "rb").read() == BLOB and not os.path.exists(dest + ".partial")


def test_a_206_of_another_range_is_not_appended(tmp_path):
    dest = str(tmp_path / "blob")
    (tmp_path / "blob.partial").write_bytes(BLOB[:KEPT])
    with registry("other") as srv:
        assert fetch(srv, dest) == (len(BLOB), 0)
        assert gets(srv) == ["bytes=%d-" % KEPT, None]  # then the whole blob, without Range
    assert open(dest, "rb").read() == BLOB


def test_416_for_a_whole_partial_file_renames_it_and_for_a_too_long_one_starts_over(tmp_path):
    dest = str(tmp_path / "blob")
    (tmp_path / "blob.partial").write_bytes(BLOB)  # interrupted after the last byte, before the rename
    with registry("416") as srv:
        assert fetch(srv, dest) == (0, len(BLOB))
        assert gets(srv) == ["bytes=%d-" % len(BLOB)]
    assert open(dest, "rb").read() == BLOB and not os.path.exists(dest + ".partial")
    os.unlink(dest)
    (tmp_path / "blob.partial").write_bytes(BLOB + b"tail")
    with registry("416") as srv:
        assert fetch(srv, dest) == (len(BLOB), 0)
        assert gets(srv) == ["bytes=%d-" % (len(BLOB) + 4), None]
    assert open(dest, "rb").read() == BLOB and not os.path.exists(dest + ".partial")


def test_a_resumed_blob_that_does_not_verify_is_removed_whole(tmp_path):
    dest = str(tmp_path / "blob")
    (tmp_path / "blob.partial").write_bytes(b"x" * KEPT)  # not the blob's first bytes
    with registry("ranges") as srv:
        with pytest.raises(OllamaError) as err:
            fetch(srv, dest)
    assert "sent a blob whose sha256 is" in err.value.msg and "not %s" % DIGEST in err.value.msg
    assert "the first %d of them kept from an interrupted download); nothing was kept" % KEPT in err.value.msg
    assert not os.path.exists(dest) and not os.path.exists(dest + ".partial")
    with registry("ranges") as srv:  # the next run downloads it whole
        assert fetch(srv, dest) == (len(BLOB), 0)
        assert gets(srv) == [None]


@pytest.mark.parametrize("plant", ["link", "fifo", "hardlink", "other-owner"])
def test_what_is_not_a_partial_file_of_ours_is_removed_never_opened_through(tmp_path, plant):
    dest = str(tmp_path / "blob")
    partial = dest + ".partial"
    target = tmp_path / "elsewhere"
    target.write_bytes(BLOB[:KEPT])  # even the right bytes: never resumed from, never written
    if plant == "link":
        os.symlink(str(target), partial)
    elif plant == "fifo":
        os.mkfifo(partial)  # opening it for reading without O_NONBLOCK would hang
    elif plant == "hardlink":
        os.link(str(target), partial)
    else:
        if os.geteuid() != 0:
            pytest.skip("only root can give a file to another user")
        with open(partial, "wb") as f:
            f.write(BLOB[:KEPT])
        os.chown(partial, 65534, 65534)
    with registry("ranges") as srv:
        assert fetch(srv, dest) == (len(BLOB), 0)
        assert gets(srv) == [None]  # started over
    assert open(dest, "rb").read() == BLOB and not os.path.lexists(partial)
    assert target.read_bytes() == BLOB[:KEPT]


def test_a_download_from_a_bundle_seed_resumes_too(tmp_path):
    dest = str(tmp_path / "blob")
    (tmp_path / "blob.partial").write_bytes(BLOB[:KEPT])
    with registry("ranges") as srv:
        client = RegistryClient(timeout=5)
        fetched = client.download_from_seed("http://127.0.0.1:%d/bundle" % srv.port, {}, DIGEST, dest)
        assert [(s["path"], s["headers"].get("Range")) for s in srv.seen] == [
            ("/bundle/blobs/" + DIGEST.replace(":", "-"), "bytes=%d-" % KEPT)]
    assert (fetched, client.resumed_bytes, client.fetched_bytes) == (len(BLOB) - KEPT, KEPT, len(BLOB) - KEPT)
    assert open(dest, "rb").read() == BLOB


class Server(object):
    """What install_by_digest asks of the Ollama server (its blob API), in memory: the real one is in
    tests/integration/test_lock_resume.py. `refuse` makes the next upload fail, as a server that stopped would."""

    def __init__(self, has=()):
        self.blobs = dict((d, None) for d in has)
        self.refuse = False

    def has_blob(self, digest):
        return digest in self.blobs

    def push_blob(self, digest, source):
        if self.refuse:
            self.refuse = False
            raise OllamaError("lost the connection to the server")
        data = source.read()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
        self.blobs[digest] = data
        return len(data)


def locked(port):
    """(parsed name, raw manifest, parsed manifest) of a model whose one layer is BLOB."""
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": DIGEST, "size": len(BLOB)}]}
    raw = json.dumps(manifest).encode()
    return parse_model_name("127.0.0.1:%d/ns/m" % port), raw, manifest


def install(srv, server, tmp_path, staging=None):
    client = RegistryClient(timeout=5)
    name, raw, manifest = locked(srv.port)
    return install_by_digest(server, client, name, raw, manifest, str(tmp_path / "models"),
                             staging or str(tmp_path / "staging"), insecure=True)


def test_a_lock_install_keeps_an_interrupted_download_in_the_staging_dir_and_resumes_it(tmp_path):
    """install_by_digest (_lock.py) downloads into staging_dir, not into the server's store: an interrupted download
    keeps its .partial file there, and the next run asks only for the rest, uploads the blob and removes it."""
    server = Server()
    staging = tmp_path / "staging"
    with registry("cut") as srv:
        with pytest.raises(OllamaError) as err:
            install(srv, server, tmp_path)
    partial = staging / (DIGEST.replace(":", "-") + ".partial")
    assert "The %d bytes received are kept in %s, and the next run continues" % (KEPT, partial) in err.value.msg
    assert partial.read_bytes() == BLOB[:KEPT]
    assert oct(staging.stat().st_mode & 0o777) == "0o700"
    assert not (tmp_path / "models").exists()  # nothing in the store, no manifest
    with registry("ranges") as srv:
        assert install(srv, server, tmp_path) == (len(BLOB) - KEPT, KEPT)
        assert gets(srv) == ["bytes=%d-" % KEPT]
    assert server.blobs[DIGEST] == BLOB
    assert os.listdir(str(staging)) == []  # uploaded, then removed
    assert os.listdir(str(tmp_path / "models")) == ["manifests"]  # nothing but the manifest in the store


def test_a_staged_blob_the_upload_did_not_take_is_verified_not_downloaded_again(tmp_path):
    server = Server()
    server.refuse = True
    with registry("ranges") as srv:
        with pytest.raises(OllamaError):
            install(srv, server, tmp_path)
    staged = tmp_path / "staging" / DIGEST.replace(":", "-")
    assert staged.read_bytes() == BLOB  # whole, verified, kept for the next run
    with registry("ranges") as srv:
        assert install(srv, server, tmp_path) == (0, len(BLOB))
        assert gets(srv) == ["bytes=%d-" % len(BLOB)]  # the registry's 416: nothing more to download
    assert server.blobs[DIGEST] == BLOB and os.listdir(str(tmp_path / "staging")) == []


def test_an_unsafe_staging_dir_is_refused_before_anything_is_fetched(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    os.symlink(str(tmp_path / "elsewhere"), str(tmp_path / "link"))
    with registry("ranges") as srv:
        with pytest.raises(UnsafeStaging) as err:
            install(srv, Server(), tmp_path, staging=str(tmp_path / "link"))
        assert srv.seen == []
    assert "staging_dir %s is a symbolic link (to %s)" % (tmp_path / "link", tmp_path / "elsewhere") in str(err.value)
    assert os.listdir(str(tmp_path / "elsewhere")) == [] and not (tmp_path / "models").exists()


def test_the_staging_dir_is_not_looked_at_when_the_server_has_every_blob(tmp_path):
    os.symlink("/nonexistent", str(tmp_path / "link"))
    with registry("ranges") as srv:
        assert install(srv, Server(has=[DIGEST]), tmp_path, staging=str(tmp_path / "link")) == (0, 0)
        assert srv.seen == []
    assert os.listdir(str(tmp_path / "models")) == ["manifests"]


class Interrupted(object):
    """A download answer whose reading stops with Ctrl-C (KeyboardInterrupt) after its first block."""
    status = 200
    headers = {"Content-Length": str(len(BLOB))}

    def __init__(self):
        self.blocks = [BLOB[:KEPT]]

    def read(self, _n):
        if self.blocks:
            return self.blocks.pop()
        raise KeyboardInterrupt

    def close(self):
        pass


def test_ctrl_c_mid_blob_keeps_what_was_received(tmp_path):
    dest = str(tmp_path / "blob")
    with pytest.raises(KeyboardInterrupt):
        _save(lambda start: Interrupted(), "http://registry/blob", DIGEST, dest, "the registry")
    with open(dest + ".partial", "rb") as f:
        assert f.read() == BLOB[:KEPT]
    with registry("ranges") as srv:
        assert fetch(srv, dest) == (len(BLOB) - KEPT, KEPT)
