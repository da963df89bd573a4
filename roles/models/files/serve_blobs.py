# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Serve a rollout's blobs from a model store to the hosts of later waves (the models role's tasks/waves.yml), over TLS.

    python3 serve_blobs.py --directory STORE/blobs --port PORT --password-file FILE --digests-file FILE
                           --tls-file FILE [--user USER]

Only GET and HEAD of /blobs/sha256-<64 hex digits> are answered, only for the digests of the digests file (the blobs
of the models the rollout spreads, sha256:<hex> each, separated by white space), and only to a client that gives the
rollout's password as HTTP basic authentication (user "peer"): a client without it gets 401 for anything; any other
path, and any blob not listed (whether the store has it or not), 404. It speaks TLS only, with the key and certificate
of the TLS file (signed by the rollout's CA, which the fetching hosts verify): a plain HTTP request gets no answer. It
listens on every address of the host, IPv6 and IPv4 (one dual-stack socket), or IPv4 only on a host without IPv6.

The password, the key and the list are read from files (only root reads them), never from the command line, which
every local user can see. Started as root, it reads them, then runs as USER (the store's owner) before it answers
anything. The fetching host checks each blob's sha256 itself.
"""
import argparse
import base64
import errno
import hmac
import os
import pwd
import re
import shutil
import socket
import socketserver
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BLOB = re.compile(r"^/blobs/(sha256-[0-9a-f]{64})$")
DIGEST = re.compile(r"^sha256[:-]([0-9a-fA-F]{64})$")
USER = "peer"
# Seconds a client may stay silent (its TLS handshake included) before its connection is closed.
TIMEOUT = 300
# What binding the IPv6 wildcard fails with on a host without IPv6 (then IPv4 alone is served).
NO_IPV6 = (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT)


def make_handler(directory, password, digests):
    expected = ("Basic " + base64.b64encode(("%s:%s" % (USER, password)).encode("utf-8")).decode("ascii")).encode()

    class Peer(BaseHTTPRequestHandler):
        server_version = "llmops-ollama-peer"
        timeout = TIMEOUT

        def log_message(self, *args):
            pass  # the unit's journal would hold every request of the rollout

        def _empty(self, status, headers=()):
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _serve(self, body):
            given = self.headers.get("Authorization", "").encode("utf-8", "replace")
            if not hmac.compare_digest(given, expected):
                return self._empty(401, [("WWW-Authenticate", 'Basic realm="ollama-peer"')])
            match = BLOB.match(self.path.split("?", 1)[0])
            # a blob outside the rollout gets the answer of a blob the store lacks: nothing tells which it is
            if not match or match.group(1) not in digests:
                return self._empty(404)
            try:
                blob = open(os.path.join(directory, match.group(1)), "rb")
            except OSError:
                return self._empty(404)
            with blob:
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(os.fstat(blob.fileno()).st_size))
                self.end_headers()
                if body:
                    shutil.copyfileobj(blob, self.wfile, 1 << 20)
            return None

        def do_GET(self):
            self._serve(True)

        def do_HEAD(self):
            self._serve(False)

    return Peer


class PeerServer(ThreadingHTTPServer):
    """Each connection's TLS handshake is made in its own thread (a client that never finishes one holds up no other);
    one that fails (plain HTTP, a port scan) is closed without an answer."""

    daemon_threads = True

    def __init__(self, address, handler, context, family):
        self.address_family = family
        self.context = context
        ThreadingHTTPServer.__init__(self, address, handler)

    def server_bind(self):
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # IPv4 clients too
        # not HTTPServer's own, which looks the host's name up (a DNS query, slow where there is no DNS)
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "peer", self.server_address[1]

    def finish_request(self, request, client_address):
        request.settimeout(TIMEOUT)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (OSError, ValueError):  # ssl.SSLError is an OSError
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            self.shutdown_request(tls)

    def handle_error(self, request, client_address):
        # a client that went away mid-blob: one line in the unit's journal, no traceback
        sys.stderr.write("peer %s: %s\n" % (client_address[0], sys.exc_info()[1]))


def listen(port, handler, context):
    """The server on every address: IPv6 and IPv4 on one socket, or IPv4 alone on a host without IPv6."""
    if socket.has_ipv6:
        try:
            return PeerServer(("::", port), handler, context, socket.AF_INET6)
        except OSError as exc:
            if exc.errno not in NO_IPV6:
                raise
    return PeerServer(("0.0.0.0", port), handler, context, socket.AF_INET)


def read_file(path, what):
    try:
        with open(path) as handle:
            text = handle.read()
    except (OSError, UnicodeError) as exc:
        sys.exit("cannot read the %s file: %s" % (what, exc))
    if not text.strip():
        sys.exit("the %s file %s is empty" % (what, path))
    return text


def read_digests(path):
    digests = set()
    for line in read_file(path, "digests").split():
        match = DIGEST.match(line)
        if not match:
            sys.exit("the digests file %s has %r, which is not sha256:<64 hex digits>" % (path, line[:80]))
        digests.add("sha256-" + match.group(1).lower())
    return frozenset(digests)


def tls_context(path):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(path)
    except (OSError, ValueError) as exc:
        sys.exit("cannot use the TLS file %s (the key and certificate, PEM): %s" % (path, exc))
    return context


def become(name):
    """Run as the user `name` from here on (when started as root), with that user's groups."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        sys.exit("no user %s on this host" % name)
    if os.getuid() == entry.pw_uid:
        return
    try:
        os.initgroups(name, entry.pw_gid)
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
    except OSError as exc:
        sys.exit("cannot run as %s: %s (start it as root)" % (name, exc))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directory", required=True, help="the model store's blobs folder")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--password-file", required=True)
    parser.add_argument("--digests-file", required=True, help="the blobs served (sha256:<hex>, white space between)")
    parser.add_argument("--tls-file", required=True, help="the server's key and certificate (PEM)")
    parser.add_argument("--user", help="the user to serve as once the files are read (the store's owner)")
    args = parser.parse_args(argv)
    password = read_file(args.password_file, "password").strip()
    digests = read_digests(args.digests_file)
    context = tls_context(args.tls_file)
    try:
        server = listen(args.port, make_handler(args.directory, password, digests), context)
    except OSError as exc:
        sys.exit("cannot listen on port %d: %s" % (args.port, exc))
    if args.user:
        become(args.user)
    server.serve_forever()


if __name__ == "__main__":
    main()
