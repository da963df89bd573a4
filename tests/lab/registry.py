"""A real model registry for the lab: Debian's `docker-registry` (Distribution) behind a small front.

Ollama cannot pull from a plain Distribution registry: blobs come back with 200 and no `Location` header
and Ollama fails with "http: no Location header in response" (upstream issue #7244). The front forwards
every request to the registry unchanged and adds `Location: <same path>` to 200 blob responses, which
Ollama then follows on the same host. It also counts the blob bytes it served per client address, so
benchmarks can measure what crossed the "WAN" (`GET /_lab/stats`, reset with `DELETE /_lab/stats`).

`public=True` (with a LabCA from tests/lab/pki.py) makes one that answers as public registries do
(registry.ollama.ai, Docker Hub):

- TLS with a certificate from the lab's own CA (clients must be given the CA: `registry_ca_path` for the modules,
  SSL_CERT_FILE for `ollama serve`); the front asks for, and records, client certificates, so tests can see that
  nobody presents one.
- Distribution's own `auth: token`: every request without a token gets 401 `WWW-Authenticate: Bearer
  realm=...,service=...,scope=...`. The front serves the realm (`/token`) on the registry's own address, as Ollama
  requires (the `realm` knob below names another host), and signs RS256 JWTs that Distribution verifies against
  `rootcertbundle`. Anonymous pulls are granted, except in the namespace `private`, which is refused (a registry
  that needs a login). Pushes go through the plain registry sharing the same storage.
- Blob GETs that Distribution allows (ranged ones too) are answered with 307 (or the `redirect` knob's status) to a
  CDN on another host name (`127.0.0.2`), with a signed and expiring URL, as registry.ollama.ai redirects to
  Cloudflare R2; the CDN serves the bytes (ranges too) and refuses unsigned requests.

Every request the public front, its token service and its CDN see is kept in `requests` (method, path, headers,
whether a client certificate was presented, and `dropped_after` where the CDN cut its answer).

Knobs are set with `PUT` (or `POST`) `/_lab/stats` and a JSON object (`set_knobs()`); a body names the knobs it
sets, an empty one (or `{}`) resets them all, and the answer is the knobs now in effect. An unknown knob or value is
refused (400) and changes nothing. Two make a slow registry: `{"delay": seconds}` waits before each answer;
`{"rate": bytes_per_second}` throttles the blob bodies it sends, all clients together (0 or null: full speed). The
rate is a site's uplink: one budget of bytes per second shared by every connection, so N hosts pulling at once each
get 1/N of it (`set_uplink()`, `--uplink-mbps`, or LAB_UPLINK_MBPS for the lab's services).

Three more make the public one answer as other registries and CDNs do (the plain front refuses them), while
Distribution behind it stays the same:

- `{"redirect": status}`: the status of the blob redirects to the CDN, 307 (the default, what Ollama's server
  follows to another host), 301, 302, 303 or 308.
- `{"realm": "other"}`: the 401 challenges name a token realm on the CDN's host (`https://127.0.0.2:<port>/token`,
  where the CDN answers with the same tokens) instead of the registry's own: the front rewrites the realm of
  Distribution's `WWW-Authenticate`. `"own"` (the default) leaves it as Distribution says it.
- `{"drop_after": n}`: the CDN sends the first `n` bytes of an answer's body, then closes the connection (a TCP FIN,
  no TLS close_notify), once per blob: the first GET of each blob whose answer is longer than `n` bytes is cut, the
  next ones are whole, so a client that resumes from what it kept (Range) finishes on its next request, and one that
  starts over does too (every request cut would only show how many tries a client makes). Setting `drop_after` again
  arms it again for every blob; 0 or null turns it off. The requests the CDN cut have `dropped_after` set in
  `requests`.

    python3 -m tests.lab.registry serve --listen 127.0.0.1:5000 --storage DIR [--uplink-mbps 100]   # foreground
"""
import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.lab.net import free_port, wait_http

BLOB_PATH = re.compile(r"^/v2/.+/blobs/sha256:[0-9a-f]{64}$")
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
               "proxy-authorization", "proxy-authenticate"}


SERVICE = "llmops-lab-registry"
ISSUER = "llmops-lab-token-service"
DENIED_NAMESPACES = ("private",)
CDN_HOST = "127.0.0.2"
REDIRECTS = (301, 302, 303, 307, 308)  # the `redirect` knob's values
REALMS = ("own", "other")  # the `realm` knob's values
PUBLIC_KNOBS = ("redirect", "realm", "drop_after")  # knobs of the public registry only


class TLSServer(ThreadingHTTPServer):
    """A threading HTTP server that speaks TLS when given a context (the handshake happens in the handler thread)."""

    daemon_threads = True
    context = None

    def get_request(self):
        sock, addr = super().get_request()
        if self.context is not None:
            sock = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    @property
    def scheme(self):
        return "https" if self.context is not None else "http"

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError)):
            return  # a client that does not trust the lab's CA, or hung up: what some tests make happen
        super().handle_error(request, client_address)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Front(TLSServer):
    def __init__(self, listen, upstream, context=None):
        self.context = context
        super().__init__(listen, FrontHandler)
        self.upstream = upstream  # (host, port)
        self.signer = None  # a pki.SigningKey when the registry needs tokens
        self.cdn = None  # the Cdn when blob GETs are redirected
        self.requests = []  # what the public front saw (see the module docstring)
        self.lock = threading.Lock()
        self.stats = {}  # client ip -> {"blob_bytes": n, "blob_requests": n, "manifest_requests": n}
        self.delay = 0.0  # seconds added before each answer (slow-registry tests)
        self.rate = None  # bytes per second of blob bodies, all clients together (None: full speed)
        self._next_send = 0.0  # when the throttle lets the next bytes go
        self.redirect = 307  # the status of blob redirects to the CDN (public registries)
        self.realm = "own"  # where the 401 challenges' realm is: "own" or "other" (the CDN's host)
        self.drop_after = None  # the CDN cuts the first long answer of each blob after this many bytes (None: never)
        self.dropped = set()  # the blobs whose answer the CDN cut since drop_after was set

    def set_knobs(self, knobs):
        """Apply the knobs of a `PUT /_lab/stats` body (see the module docstring); {} resets them all. Returns the
        knobs now in effect; raises ValueError (and changes nothing) for an unknown knob or value."""
        if not isinstance(knobs, dict):
            raise ValueError("the knobs are a JSON object")
        unknown = sorted(set(knobs) - {"delay", "rate"} - set(PUBLIC_KNOBS))
        if unknown:
            raise ValueError("unknown knobs: %s" % ", ".join(unknown))
        if self.cdn is None and any(knobs.get(k) not in (None, 307, "own", 0) for k in PUBLIC_KNOBS):
            raise ValueError("redirect, realm and drop_after are knobs of the public registry only")
        redirect = knobs.get("redirect") or 307
        if isinstance(redirect, bool) or redirect not in REDIRECTS:
            raise ValueError("redirect must be one of %s" % ", ".join(str(r) for r in REDIRECTS))
        realm = knobs.get("realm") or "own"
        if realm not in REALMS:
            raise ValueError("realm must be \"own\" or \"other\"")
        drop_after = knobs.get("drop_after") or None
        if drop_after is not None and (isinstance(drop_after, bool) or not isinstance(drop_after, int)
                                       or drop_after < 0):
            raise ValueError("drop_after must be a number of bytes, or 0 or null")
        for name in ("delay", "rate"):
            value = knobs.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise ValueError("%s must be a number, or 0 or null" % name)
        every = not knobs
        if every or "delay" in knobs:
            self.delay = float(knobs.get("delay") or 0)
        if every or "rate" in knobs:
            self.set_rate(knobs.get("rate"))
        with self.lock:
            if every or "redirect" in knobs:
                self.redirect = redirect
            if every or "realm" in knobs:
                self.realm = realm
            if every or "drop_after" in knobs:
                self.drop_after = drop_after
                self.dropped = set()
        return self.knobs()

    def knobs(self):
        return {"delay": self.delay, "rate": self.rate, "redirect": self.redirect, "realm": self.realm,
                "drop_after": self.drop_after}

    def drop_at(self, digest, length):
        """How many bytes of an answer of `length` bytes of blob `digest` the CDN sends before it drops the
        connection, or None to send it whole: `drop_after` for the first answer of each blob longer than that."""
        with self.lock:
            if not self.drop_after or digest in self.dropped or length <= self.drop_after:
                return None
            self.dropped.add(digest)
            return self.drop_after

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

    def record(self, where, handler):
        cert = None
        if hasattr(handler.connection, "getpeercert"):
            try:
                cert = handler.connection.getpeercert()
            except ValueError:
                cert = None
        entry = dict(where=where, method=handler.command, path=handler.path,
                     headers=dict((k.title(), v) for k, v in handler.headers.items()), client_cert=bool(cert))
        with self.lock:
            self.requests.append(entry)
        return entry

    def token(self, scopes):
        """An RS256 JWT granting anonymous pulls of the repositories in `scopes`, or None when one is refused."""
        access = []
        for scope in scopes:
            kind, _sep, rest = scope.partition(":")
            name, _sep, actions = rest.rpartition(":")
            if kind != "repository" or not name:
                continue
            if name.split("/", 1)[0] in DENIED_NAMESPACES:
                return None
            granted = [a for a in actions.split(",") if a == "pull"]
            access.append({"type": "repository", "name": name, "actions": granted})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self.signer.der_cert()).decode("ascii")]}
        claims = {"iss": ISSUER, "sub": "", "aud": SERVICE, "exp": now + 300, "nbf": now - 10, "iat": now,
                  "jti": b64url(os.urandom(12)), "access": access}
        signing_input = "%s.%s" % (b64url(json.dumps(header).encode()), b64url(json.dumps(claims).encode()))
        return signing_input + "." + b64url(self.signer.sign(signing_input.encode("ascii")))


class LabHandler(BaseHTTPRequestHandler):
    """What the front's and the CDN's handlers share: JSON answers, and the token service."""

    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # keep test output quiet
        pass

    def _answer(self, status, body, headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _token(self, front):
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        if query.get("service") != [SERVICE]:
            return self._answer(400, {"errors": [{"code": "UNSUPPORTED", "message": "unknown service"}]})
        token = front.token(query.get("scope") or [])
        if token is None:
            return self._answer(401, {"errors": [{"code": "DENIED", "message": "this namespace needs a login"}]})
        return self._answer(200, {"token": token, "access_token": token, "expires_in": 300,
                                  "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


class FrontHandler(LabHandler):
    def _lab(self):
        status = 200
        if self.command == "GET":
            with self.server.lock:
                body = json.dumps(self.server.stats).encode()
        elif self.command == "DELETE":
            self.server.stats.clear()
            body = {}
        elif self.command in ("PUT", "POST"):
            length = int(self.headers.get("Content-Length", "0"))
            try:
                body = self.server.set_knobs(json.loads(self.rfile.read(length) or b"{}"))
            except ValueError as exc:  # a JSONDecodeError too
                status, body = 400, {"error": str(exc)}
        else:
            body = {}
        self._answer(status, body)

    def _forward(self):
        if self.path.startswith("/_lab/stats"):
            return self._lab()
        if self.server.signer is not None or self.server.cdn is not None:
            self.server.record("registry", self)
        if self.server.signer is not None and self.path.split("?", 1)[0] == "/token":
            return self._token(self.server)
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
            if is_blob and resp.status in (200, 206) and self.command == "GET" and self.server.cdn is not None:
                # a ranged GET (a resumed download) too, as registry.ollama.ai sends every blob GET to its CDN
                location = self.server.cdn.signed_url(path.rsplit("/", 1)[1])
                self.send_response(self.server.redirect)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(resp.status, resp.reason)
            has_length = False
            for k, v in resp.getheaders():
                if k.lower() in HOP_HEADERS:
                    continue
                if k.lower() == "www-authenticate" and self.server.realm == "other":
                    v = re.sub(r'realm="[^"]*"', lambda _m: 'realm="%s/token"' % self.server.cdn.url, v)
                has_length = has_length or k.lower() == "content-length"
                self.send_header(k, v)
            if is_blob and resp.status == 200 and resp.getheader("Location") is None and self.server.cdn is None:
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


class Cdn(TLSServer):
    """Blob bytes from the registry's storage, for signed, unexpired URLs only (a CDN's presigned URLs)."""

    def __init__(self, listen, storage, front, context=None):
        self.context = context
        super().__init__(listen, CdnHandler)
        self.storage = Path(storage)
        self.front = front
        self.key = os.urandom(32)

    def _sig(self, digest, expires):
        return hmac.new(self.key, ("%s:%d" % (digest, expires)).encode(), hashlib.sha256).hexdigest()

    @property
    def url(self):
        host, port = self.server_address[:2]
        return "%s://%s:%d" % (self.scheme, host, port)

    def signed_url(self, digest):
        expires = int(time.time()) + 600
        sig = self._sig(digest, expires)
        return "%s/blobs/%s?expires=%d&sig=%s" % (self.url, digest, expires, sig)

    def check(self, digest, query):
        try:
            expires = int(query.get("expires", ["0"])[0])
        except ValueError:
            return False
        return expires > time.time() and hmac.compare_digest(query.get("sig", [""])[0], self._sig(digest, expires))

    def path_of(self, digest):
        hexd = digest.split(":", 1)[1]
        return self.storage / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexd[:2] / hexd / "data"


class CdnHandler(LabHandler):
    def _refuse(self, status, text):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        cdn = self.server
        entry = cdn.front.record("cdn", self)
        parts = urllib.parse.urlsplit(self.path)
        if parts.path == "/token":  # the realm the challenges name with {"realm": "other"}
            return self._token(cdn.front)
        match = re.match(r"^/blobs/(sha256:[0-9a-f]{64})$", parts.path)
        if not match or not cdn.check(match.group(1), urllib.parse.parse_qs(parts.query)):
            return self._refuse(403, "signature missing, wrong or expired")
        path = cdn.path_of(match.group(1))
        if not path.is_file():
            return self._refuse(404, "no such blob")
        size = path.stat().st_size
        start, end = 0, size - 1
        ranged = re.match(r"^bytes=(\d+)-(\d*)$", self.headers.get("Range", ""))
        if ranged:
            start = int(ranged.group(1))
            end = min(int(ranged.group(2)), size - 1) if ranged.group(2) else size - 1
            if start > end:
                return self._refuse(416, "range not satisfiable")
        self.send_response(206 if ranged else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        if ranged:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, size))
        self.end_headers()
        if self.command == "HEAD":
            return
        client = self.client_address[0]
        cdn.front.count(client, "blob_requests")
        left = end - start + 1
        drop = cdn.front.drop_at(match.group(1), left)
        if drop is not None:
            entry["dropped_after"] = left = drop
        try:
            with open(path, "rb") as f:
                f.seek(start)
                while left > 0:
                    chunk = f.read(min(cdn.front.chunk(), left))
                    if not chunk:
                        break
                    cdn.front.throttle(len(chunk))
                    self.wfile.write(chunk)
                    cdn.front.count(client, "blob_bytes", len(chunk))
                    left -= len(chunk)
            if drop is not None:  # the connection closes (finish() and the server's shutdown_request) mid-body
                self.wfile.flush()
                self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_HEAD = do_GET


def registry_config(storage, addr, realm=None, rootcertbundle=None):
    auth = ""
    if realm:
        auth = ("auth:\n  token:\n    realm: %s\n    service: %s\n    issuer: %s\n    rootcertbundle: %s\n"
                % (realm, SERVICE, ISSUER, rootcertbundle))
    return (
        "version: 0.1\n"
        "log:\n  level: warn\n"
        "storage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\n"
        "http:\n  addr: %s\n" % (storage, addr)
    ) + auth


class Registry:
    """A running docker-registry on loopback plus its front on `listen` (host, port).

    With `public=True` and a `ca` (pki.LabCA): TLS, token auth and a CDN for blobs (see the module docstring).
    """

    def __init__(self, storage, listen=("127.0.0.1", 0), log_dir=None, public=False, ca=None):
        self.storage = Path(storage)
        self.listen = listen
        self.log_dir = Path(log_dir or self.storage.parent)
        self.public = public
        self.ca = ca
        self.proc = None
        self.front = None
        self.cdn = None
        self._tmp = None

    def start(self):
        if shutil.which("docker-registry") is None:
            sys.exit("docker-registry is not installed: apt-get install docker-registry")
        self.storage.mkdir(parents=True, exist_ok=True)
        self._tmp = tempfile.mkdtemp(prefix="registry-")
        backend_port = free_port()
        conf = Path(self._tmp) / "config.yml"
        realm = rootcertbundle = None
        context = cdn_context = None
        if self.public:
            from tests.lab.pki import SigningKey

            context = self.ca.server_context("registry", dns=("localhost",), ips=(self.listen[0],))
            cdn_context = self.ca.server_context("cdn", dns=(), ips=(CDN_HOST,))
        self.front = Front(self.listen, ("127.0.0.1", backend_port), context)
        if self.public:
            self.front.signer = SigningKey(self._tmp)
            realm, rootcertbundle = self.url + "/token", self.front.signer.cert
            self.cdn = Cdn((CDN_HOST, 0), self.storage, self.front, cdn_context)
            self.front.cdn = self.cdn
            threading.Thread(target=self.cdn.serve_forever, daemon=True).start()
        conf.write_text(registry_config(self.storage, "127.0.0.1:%d" % backend_port, realm, rootcertbundle))
        log = open(self.log_dir / "registry.log", "ab")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(conf)], stdout=log, stderr=log,
                                     start_new_session=True)
        wait_http("http://127.0.0.1:%d/v2/" % backend_port, proc=self.proc)
        threading.Thread(target=self.front.serve_forever, daemon=True).start()
        return self

    @property
    def address(self):
        host, port = self.front.server_address[:2]
        return "%s:%d" % (host, port)

    @property
    def url(self):
        return "%s://%s" % (self.front.scheme, self.address)

    @property
    def requests(self):
        """What the front, its token service and its CDN saw (public registries)."""
        return list(self.front.requests)

    def set_rate(self, bytes_per_second):
        """Throttle the blob bodies the front sends (None or 0: full speed), as `PUT /_lab/stats {"rate": n}`."""
        self.front.set_rate(bytes_per_second)

    @property
    def cdn_url(self):
        """The CDN's origin (public registries): where blob GETs are redirected, and the realm of {"realm": "other"}."""
        return self.cdn.url

    def stop(self):
        for server in (self.front, self.cdn):
            if server:
                server.shutdown()
                server.server_close()
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


def front_stats(url, method="GET"):
    """The front's blob counts per client (`GET /_lab/stats`), or, with DELETE, reset them."""
    req = urllib.request.Request(url + "/_lab/stats", method=method)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"{}")


def settled(url, seconds=10):
    """Wait until the front at `url` has counted all it sent: a cut transfer's last block reaches it after the client
    is gone (a fault proxy stops reading, the front may still be writing one block)."""
    deadline, last = time.time() + seconds, None
    while time.time() < deadline:
        now = front_stats(url)
        if now == last:
            return
        last = now
        time.sleep(1)


def mbps_to_rate(mbps):
    """Bytes per second of a link of `mbps` megabits per second (None for 0: full speed)."""
    return float(mbps) * 1e6 / 8 if mbps else None


def set_knobs(registry_url, cafile=None, **knobs):
    """Set knobs of a running front (`PUT /_lab/stats`, see the module docstring; none: reset them all) and return
    the knobs now in effect. `cafile`: the lab CA's certificate, for a public registry."""
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    req = urllib.request.Request(registry_url + "/_lab/stats", data=json.dumps(knobs).encode(), method="PUT",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10, context=context) as resp:
        return json.loads(resp.read())


def set_uplink(registry_url, mbps):
    """Limit the blob bytes a running front sends, all clients together, to `mbps` megabits per second (0: lift it),
    as `PUT /_lab/stats {"rate": bytes_per_second}`."""
    set_knobs(registry_url, rate=mbps_to_rate(mbps))


def main(argv):
    parser = argparse.ArgumentParser(prog="python3 -m tests.lab.registry")
    sub = parser.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve", help="run the registry and its front in the foreground")
    serve.add_argument("--listen", default="127.0.0.1:5000")
    serve.add_argument("--storage", required=True)
    serve.add_argument("--seed", action="store_true", help="push the lab's synthetic models")
    serve.add_argument("--uplink-mbps", type=float, default=0,
                       help="blob bytes sent to all clients together, in megabits per second (0: full speed)")
    args = parser.parse_args(argv)
    host, port = args.listen.rsplit(":", 1)
    reg = Registry(args.storage, (host, int(port))).start()
    reg.set_rate(mbps_to_rate(args.uplink_mbps))
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
