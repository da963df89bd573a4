"""A real model registry for the lab: Debian's `docker-registry` (Distribution) behind a small front.

Ollama cannot pull from a plain Distribution registry: blobs come back with 200 and no `Location` header
and Ollama fails with "http: no Location header in response" (upstream issue #7244). The front forwards
every request to the registry unchanged and adds `Location: <same path>` to 200 blob responses, which
Ollama then follows on the same host. It also counts the blob bytes it served per client address, so
benchmarks can measure what crossed the "WAN" (`GET /_lab/stats`, reset with `DELETE /_lab/stats`).

Two knobs make a slow registry, set with `PUT` (or `POST`) `/_lab/stats` and a JSON body: `{"delay": seconds}`
waits before each answer; `{"rate": bytes_per_second}` throttles the blob bodies it sends, all clients together
(0 or null: full speed). A body names the knobs it sets; an empty one resets both.

    python3 -m tests.lab.registry serve --listen 127.0.0.1:5000 --storage DIR   # foreground
"""
import argparse
import http.client
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.lab.net import free_port, wait_http

BLOB_PATH = re.compile(r"^/v2/.+/blobs/sha256:[0-9a-f]{64}$")
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
               "proxy-authorization", "proxy-authenticate"}


class Front(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, listen, upstream):
        super().__init__(listen, FrontHandler)
        self.upstream = upstream  # (host, port)
        self.lock = threading.Lock()
        self.stats = {}  # client ip -> {"blob_bytes": n, "blob_requests": n, "manifest_requests": n}
        self.delay = 0.0  # seconds added before each answer (slow-registry tests)
        self.rate = None  # bytes per second of blob bodies, all clients together (None: full speed)
        self._next_send = 0.0  # when the throttle lets the next bytes go

    def set_rate(self, rate):
        with self.lock:
            self.rate = float(rate) if rate else None
            self._next_send = 0.0

    def throttle(self, n):
        """Wait until `n` more bytes may be sent at the set rate (shared by every connection)."""
        with self.lock:
            if not self.rate:
                return
            now = time.time()
            start = max(now, self._next_send)
            self._next_send = start + n / self.rate
            until = self._next_send
        time.sleep(max(0.0, until - time.time()))

    def chunk(self):
        """Bytes to send at a time: small when throttled, so the rate is smooth."""
        rate = self.rate
        return max(4096, min(1 << 16, int(rate / 20))) if rate else 1 << 16

    def count(self, client, key, n=1):
        with self.lock:
            entry = self.stats.setdefault(client, {"blob_bytes": 0, "blob_requests": 0, "manifest_requests": 0})
            entry[key] += n


class FrontHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # keep test output quiet
        pass

    def _lab(self):
        if self.command == "GET":
            body = json.dumps(self.server.stats).encode()
        elif self.command == "DELETE":
            self.server.stats.clear()
            body = b"{}"
        elif self.command in ("PUT", "POST"):
            length = int(self.headers.get("Content-Length", "0"))
            knobs = json.loads(self.rfile.read(length) or b"{}")
            if "delay" in knobs or not knobs:
                self.server.delay = float(knobs.get("delay") or 0)
            if "rate" in knobs or not knobs:
                self.server.set_rate(knobs.get("rate"))
            body = b"{}"
        else:
            body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _forward(self):
        if self.path.startswith("/_lab/stats"):
            return self._lab()
        if self.server.delay:
            time.sleep(self.server.delay)
        length = int(self.headers.get("Content-Length", "0") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
        conn = http.client.HTTPConnection(*self.server.upstream, timeout=300)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            path = self.path.split("?", 1)[0]
            is_blob = BLOB_PATH.match(path) is not None
            client = self.client_address[0]
            if "/manifests/" in path and self.command == "GET":
                self.server.count(client, "manifest_requests")
            self.send_response(resp.status, resp.reason)
            has_length = False
            for k, v in resp.getheaders():
                if k.lower() in HOP_HEADERS:
                    continue
                has_length = has_length or k.lower() == "content-length"
                self.send_header(k, v)
            if is_blob and resp.status == 200 and resp.getheader("Location") is None:
                self.send_header("Location", self.path)
            if not has_length and self.command != "HEAD":
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command == "HEAD":
                return
            if is_blob and resp.status in (200, 206):
                self.server.count(client, "blob_requests")
            body_of_blob = is_blob and resp.status in (200, 206)
            while True:
                chunk = resp.read(self.server.chunk() if body_of_blob else 1 << 16)
                if not chunk:
                    break
                if body_of_blob:
                    self.server.throttle(len(chunk))
                self.wfile.write(chunk)
                if body_of_blob:
                    self.server.count(client, "blob_bytes", len(chunk))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            conn.close()

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward


def registry_config(storage, addr):
    return (
        "version: 0.1\n"
        "log:\n  level: warn\n"
        "storage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\n"
        "http:\n  addr: %s\n" % (storage, addr)
    )


class Registry:
    """A running docker-registry on loopback plus its front on `listen` (host, port)."""

    def __init__(self, storage, listen=("127.0.0.1", 0), log_dir=None):
        self.storage = Path(storage)
        self.listen = listen
        self.log_dir = Path(log_dir or self.storage.parent)
        self.proc = None
        self.front = None
        self._tmp = None

    def start(self):
        if shutil.which("docker-registry") is None:
            sys.exit("docker-registry is not installed: apt-get install docker-registry")
        self.storage.mkdir(parents=True, exist_ok=True)
        self._tmp = tempfile.mkdtemp(prefix="registry-")
        backend_port = free_port()
        conf = Path(self._tmp) / "config.yml"
        conf.write_text(registry_config(self.storage, "127.0.0.1:%d" % backend_port))
        log = open(self.log_dir / "registry.log", "ab")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(conf)], stdout=log, stderr=log,
                                     start_new_session=True)
        wait_http("http://127.0.0.1:%d/v2/" % backend_port, proc=self.proc)
        self.front = Front(self.listen, ("127.0.0.1", backend_port))
        threading.Thread(target=self.front.serve_forever, daemon=True).start()
        return self

    @property
    def address(self):
        host, port = self.front.server_address[:2]
        return "%s:%d" % (host, port)

    @property
    def url(self):
        return "http://" + self.address

    def set_rate(self, bytes_per_second):
        """Throttle the blob bodies the front sends (None or 0: full speed), as `PUT /_lab/stats {"rate": n}`."""
        self.front.set_rate(bytes_per_second)

    def stop(self):
        if self.front:
            self.front.shutdown()
            self.front.server_close()
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv):
    parser = argparse.ArgumentParser(prog="python3 -m tests.lab.registry")
    sub = parser.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve", help="run the registry and its front in the foreground")
    serve.add_argument("--listen", default="127.0.0.1:5000")
    serve.add_argument("--storage", required=True)
    serve.add_argument("--seed", action="store_true", help="push the lab's synthetic models")
    args = parser.parse_args(argv)
    host, port = args.listen.rsplit(":", 1)
    reg = Registry(args.storage, (host, int(port))).start()
    if args.seed:
        from tests.lab import models
        models.seed(reg.url)
    print("registry ready at %s (storage %s)" % (reg.url, args.storage), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    stop.wait()
    reg.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
