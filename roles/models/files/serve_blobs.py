# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Serve a model store's blobs to the hosts of later waves (the models role's tasks/waves.yml), read-only.

    python3 serve_blobs.py --directory STORE/blobs --port PORT --password-file FILE

Only GET and HEAD of /blobs/sha256-<64 hex digits> are answered, and only to a client that gives the rollout's
password as HTTP basic authentication (user "peer"): a host on the LAN without it gets 401, any other path 404.
The password is read from a file (only the store's owner reads it), never from the command line, which every
local user can see. The fetching host checks each blob's sha256 itself.
"""
import argparse
import base64
import hmac
import os
import re
import shutil
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BLOB = re.compile(r"^/blobs/(sha256-[0-9a-f]{64})$")
USER = "peer"


def make_handler(directory, password):
    expected = ("Basic " + base64.b64encode(("%s:%s" % (USER, password)).encode("utf-8")).decode("ascii")).encode()

    class Peer(BaseHTTPRequestHandler):
        server_version = "llmops-ollama-peer"

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
            if not match:
                return self._empty(404)
            path = os.path.join(directory, match.group(1))
            if not os.path.isfile(path):
                return self._empty(404)
            with open(path, "rb") as blob:
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directory", required=True, help="the model store's blobs folder")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--password-file", required=True)
    args = parser.parse_args(argv)
    try:
        with open(args.password_file) as handle:
            password = handle.read().strip()
    except OSError as exc:
        sys.exit("cannot read the password file: %s" % exc)
    if not password:
        sys.exit("the password file %s is empty" % args.password_file)
    server = ThreadingHTTPServer(("", args.port), make_handler(args.directory, password))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
