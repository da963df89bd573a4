"""The models role's peer server (roles/models/files/serve_blobs.py) on loopback, run as the role runs it (`python3 FILE
...` with its password, digests and TLS files in a folder only root reads), for the tests of the server itself and of
ollama_import fetching from it."""
import socket
import subprocess
import sys
import time
from pathlib import Path

from .net import free_port  # relative: ansible-test units imports this as ansible_collections.llmops.ollama.tests.lab

SCRIPT = Path(__file__).resolve().parents[2] / "roles" / "models" / "files" / "serve_blobs.py"


def root_only(path, text):
    path.write_text(text)
    path.chmod(0o400)
    return path


def tls_file(ca, path, name="peer", dns=("localhost",), ips=("127.0.0.1", "::1")):
    """The peer's key and certificate (signed by `ca`, a tests.lab.pki.LabCA) in one file, as the role puts them."""
    cert, key = ca.issue(name, dns, ips)
    return root_only(path, key.read_text() + cert.read_text())


class Peer:
    """The peer serving `blobs_dir`'s blobs of `digests` (hex) to holders of `password`, with `tls` (a file)."""

    def __init__(self, folder, blobs_dir, digests, tls, password, user=None):
        folder.mkdir(mode=0o700, exist_ok=True)
        self.password_file = root_only(folder / "password", password + "\n")
        self.digests_file = root_only(folder / "digests", "".join("sha256:%s\n" % d for d in digests))
        self.port = free_port()
        self.argv = [sys.executable, str(SCRIPT), "--directory", str(blobs_dir), "--port", str(self.port),
                     "--password-file", str(self.password_file), "--digests-file", str(self.digests_file),
                     "--tls-file", str(tls)] + (["--user", user] if user else [])
        self.proc = None

    def start(self, timeout=20):
        self.proc = subprocess.Popen(self.argv, stderr=subprocess.PIPE, universal_newlines=True)
        deadline = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("serve_blobs.py exited with %s: %s" % (self.proc.returncode, self.proc.stderr.read()))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
                return self
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)

    def url(self, host="127.0.0.1", password=None):
        login = "peer:%s@" % password if password else ""
        return "https://%s%s:%d" % (login, "[%s]" % host if ":" in host else host, self.port)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        if self.proc:
            self.proc.stderr.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def ipv6_loopback():
    """Why this machine cannot serve on ::1, or None when it can."""
    if not socket.has_ipv6:
        return "no IPv6 here: socket.has_ipv6 is false"
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError as exc:
        return "no IPv6 here: ::1 cannot be bound (%s)" % exc
    return None
