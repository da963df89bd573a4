"""A local HTTP server on loopback that answers as a test's script says, and keeps every request it got.

For protocol edge cases the real Ollama server and the lab registry cannot be made to produce on demand (redirects to
another origin, JSON that is not an object, a manifest naming a digest such as `../../x`, a silent checksum step).
Each test that uses it says so; everything the real parts do produce is tested against them.
"""
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _any(self):
        length = int(self.headers.get("Content-Length", 0) or 0)
        self.body = self.rfile.read(length) if length else b""
        self.server.seen.append(dict(method=self.command, path=self.path, headers=dict(self.headers.items()),
                                     body=self.body))
        self.server.script(self)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _any

    def reply(self, status, body=b"", ctype="application/json", headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def redirect(self, location, status=302):
        self.reply(status, b"", "text/plain", [("Location", location)])

    def stream(self, lines, pause=0.0, pause_after=None, close_early=False):
        """NDJSON lines; `pause` seconds between lines, or only after the line index `pause_after`."""
        import time

        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Connection", "close")
        self.end_headers()
        for i, line in enumerate(lines):
            self.wfile.write(line if isinstance(line, bytes) else (json.dumps(line) + "\n").encode())
            self.wfile.flush()
            if pause and (pause_after is None or i == pause_after):
                time.sleep(pause)
        if close_early:
            self.connection.shutdown(socket.SHUT_RDWR)


class ScriptedServer(ThreadingHTTPServer):
    """`script(handler)` answers each request; `seen` lists them (method, path, headers, body). With `context` (an
    ssl server context, e.g. from pki.LabCA.server_context) it speaks HTTPS."""

    daemon_threads = True

    def __init__(self, script=None, host="127.0.0.1", context=None):
        self.context = context
        super().__init__((host, 0), Handler)
        self.script = script or (lambda h: h.reply(404, {"error": "no script"}))
        self.seen = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def get_request(self):
        sock, addr = super().get_request()
        if self.context is not None:  # the handshake happens in the handler's thread
            sock = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request, client_address):
        import ssl
        import sys

        if isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError)):
            return  # a client that does not trust the CA, or hung up
        super().handle_error(request, client_address)

    @property
    def port(self):
        return self.server_address[1]

    def url(self, host=None):
        return "%s://%s:%d" % ("https" if self.context is not None else "http", host or self.server_address[0],
                               self.port)

    def close(self):
        self.shutdown()
        self.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
