# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Resuming a blob download (RegistryClient.fetch_blob, download_from_seed) from the `.partial` file an interrupted
run kept.

The registry here is a scripted local server (tests/lab/scripted_http.py): it stands in for answers the lab's real
registry (Distribution, which honours Range) cannot be made to give: ignoring Range (200), answering 416, a 206 of
another range, a connection cut after some bytes on demand. The resume against the real registry is in
tests/integration/test_bundle_resume.py."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import re
import socket

import pytest

from ansible_collections.llmops.ollama.plugins.module_utils._http import OllamaError
from ansible_collections.llmops.ollama.plugins.module_utils._names import parse_model_name
from ansible_collections.llmops.ollama.plugins.module_utils._registry_client import RegistryClient
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


def test_a_lock_install_keeps_nothing_of_an_interrupted_download(tmp_path):
    """install_by_digest (_lock.py) stages in a directory of its own that it removes at the end: its downloads keep
    nothing (keep=False), and the message does not promise a resume."""
    dest = str(tmp_path / "blob")
    with registry("cut") as srv:
        with pytest.raises(OllamaError) as err:
            RegistryClient(timeout=5).fetch_blob(parse_model_name("127.0.0.1:%d/ns/m" % srv.port), DIGEST, dest,
                                                 insecure=True, keep=False)
    assert "failed after %d bytes" % KEPT in err.value.msg and "run again to download it" in err.value.msg
    assert "kept" not in err.value.msg
    assert not os.path.exists(dest + ".partial")
