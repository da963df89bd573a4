# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one HTTP client of the collection: Ollama's REST API and the registry manifests it pulls from.

Built on ``ansible.module_utils.urls`` so a managed host needs nothing but Python, and TLS, proxies and
client certificates behave as in every other Ansible module. It knows nothing of AnsibleModule: every
failure is an OllamaError whose message says what happened, where, and what to do.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import re
import socket
import time

from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.six.moves.urllib.parse import urlsplit
from ansible.module_utils.urls import open_url

try:  # the exception names moved over ansible-core releases; all are optional
    from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
except ImportError:  # pragma: no cover
    UrlsConnectionError = OSError
try:
    from ansible.module_utils.urls import SSLValidationError
except ImportError:  # pragma: no cover
    SSLValidationError = OSError

try:
    from http.client import HTTPException
except ImportError:  # pragma: no cover
    HTTPException = OSError

# What a request can raise besides HTTPError: refused, reset, DNS, TLS, timeouts, malformed URLs.
TRANSPORT_ERRORS = (URLError, UrlsConnectionError, OSError, HTTPException, ValueError)

DEFAULT_BASE_URL = "http://127.0.0.1:11434"
# Longest timeout accepted: a day of silence. Python's sockets refuse much more (OverflowError), and no server or
# registry worth waiting for is silent that long.
MAX_TIMEOUT = 86400
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
INSTALL_HINT = ("Is Ollama installed and running there? Install it (llmops.ollama.server role, or "
                "https://ollama.com/download) and start it with 'systemctl start ollama' or 'ollama serve'.")


def api_argument_spec():
    """Connection options shared by every module (documented in the llmops.ollama.api doc fragment)."""
    return dict(
        base_url=dict(type="str", aliases=["host"]),
        timeout=dict(type="int", default=30),
        validate_certs=dict(type="bool", default=True),
        ca_path=dict(type="path"),
        client_cert=dict(type="path"),
        client_key=dict(type="path"),
        api_token=dict(type="str", no_log=True),
        headers=dict(type="dict", default={}),
    )


HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an RFC 9110 token
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # what may not be in a header value (tab may)


def _latin1(text):
    try:
        text.encode("latin-1")
        return True
    except UnicodeError:
        return False


def client_from_params(params):
    """Build the client from a module's validated params; raises OllamaError for bad values."""
    timeout = params.get("timeout")
    if timeout is not None and not 0 < timeout <= MAX_TIMEOUT:
        raise OllamaError("timeout must be a positive number of seconds, at most %d (a day), got %s"
                          % (MAX_TIMEOUT, timeout))
    headers = {}
    for name, value in (params.get("headers") or {}).items():
        if not HEADER_NAME.match(name):
            raise OllamaError("headers: %r is not an HTTP header name (letters, digits and !#$%%&'*+-.^_`|~)" % name)
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise OllamaError("headers: the value of %s must be a string, not %s; quote it"
                              % (name, "null" if value is None else type(value).__name__))
        if CONTROL.search(str(value)):
            raise OllamaError("headers: the value of %s contains a line break or another control character" % name)
        if not _latin1(str(value)):
            raise OllamaError("headers: the value of %s has characters an HTTP header cannot carry (Latin-1 only)"
                              % name)
        headers[name] = str(value)
    for option in ("ca_path", "client_cert", "client_key"):
        if params.get(option) and not os.path.isfile(params[option]):
            raise OllamaError("%s %s is not a file on this host: give the path of a PEM file" % (option, params[option]))
    if params.get("api_token") and CONTROL.search(params["api_token"]):
        raise OllamaError("api_token contains a line break or another control character: give the token alone")
    if params.get("api_token") and not _latin1(params["api_token"]):
        raise OllamaError("api_token has characters an HTTP header cannot carry (Latin-1 only): give the token alone")
    return OllamaClient(base_url=params.get("base_url"), timeout=timeout or 30,
                        validate_certs=params.get("validate_certs", True), ca_path=params.get("ca_path"),
                        client_cert=params.get("client_cert"), client_key=params.get("client_key"),
                        api_token=params.get("api_token"), headers=headers)


class OllamaError(Exception):
    def __init__(self, msg, url=None, status=None):
        super(OllamaError, self).__init__(msg)
        self.msg = msg
        self.url = url
        self.status = status


class OllamaUnreachable(OllamaError):
    """The server (or registry) did not answer at all."""


class OllamaNotFound(OllamaError):
    """404: the model (or manifest) does not exist."""


class InvalidBaseURL(OllamaError):
    pass


def normalize_base_url(value=None):
    """Return the server root for `value`, following OLLAMA_HOST's rules (envconfig.Host).

    ``host`` -> ``http://host:11434``; ``http://h`` -> port 80; ``https://h`` -> 443; 0.0.0.0 and :: (bind
    addresses) -> loopback; a trailing ``/`` or ``/v1`` (Codex's OpenAI-style base URL) is dropped, so
    ``http://h:11434``, ``http://h:11434/`` and ``http://h:11434/v1`` are the same server. Empty -> the
    managed host's OLLAMA_HOST, else http://127.0.0.1:11434.
    """
    raw = value if value is not None else os.environ.get("OLLAMA_HOST", "")
    text = (raw or "").strip()
    if not text:
        return DEFAULT_BASE_URL
    default_port = 11434
    if "://" in text:
        scheme, rest = text.split("://", 1)
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise InvalidBaseURL("invalid Ollama URL '%s': use http:// or https://, e.g. http://gpu1:11434" % raw)
        default_port = 80 if scheme == "http" else 443
    else:
        scheme, rest = "http", text
    hostport, _sep, path = rest.partition("/")
    try:
        parts = urlsplit("//" + hostport)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise InvalidBaseURL("invalid Ollama URL '%s': %s" % (raw, exc))
    if hostport and not host:
        raise InvalidBaseURL("invalid Ollama URL '%s': no host name in it" % raw)
    if parts.username or parts.password:
        raise InvalidBaseURL("invalid Ollama URL '%s': put credentials in api_token, not in the URL" % raw)
    host = host or "127.0.0.1"
    if not host.isascii():
        try:  # an internationalised name, as a URL has to carry it
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise InvalidBaseURL("invalid Ollama URL '%s': the host name cannot be encoded (%s)" % (raw, exc))
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    if ":" in host:
        host = "[%s]" % host
    path = "/" + path.strip("/") if path.strip("/") else ""
    if path.endswith("/v1") or path == "/v1":
        path = path[:-3]
    return "%s://%s:%d%s" % (scheme, host, port or default_port, path.rstrip("/"))


class PullResult(object):
    """What one pull did: decided only by a final ``success`` line."""

    def __init__(self):
        self.statuses = []
        self.layers = {}  # digest -> [first completed seen, total, last completed]
        self.seconds = 0.0

    def observe(self, event):
        status = event.get("status", "")
        if not self.statuses or self.statuses[-1] != status:
            self.statuses.append(status)
        digest = event.get("digest")
        if digest and "total" in event:
            total, completed = int(event.get("total") or 0), int(event.get("completed") or 0)
            entry = self.layers.setdefault(digest, [completed, total, completed])
            entry[1], entry[2] = total, completed

    @property
    def bytes(self):
        """Bytes fetched in this pull (layers already in the store count 0)."""
        return sum(max(last - first, 0) for first, _total, last in self.layers.values())


class OllamaClient(object):
    def __init__(self, base_url=None, timeout=30, validate_certs=True, ca_path=None, client_cert=None,
                 client_key=None, api_token=None, headers=None):
        self.base_url = normalize_base_url(base_url)
        self.timeout = timeout
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.client_cert = client_cert
        self.client_key = client_key
        self.headers = dict(headers or {})
        if api_token:
            self.headers["Authorization"] = "Bearer %s" % api_token

    # -- transport ---------------------------------------------------------------------------------
    def _open(self, url, method="GET", body=None, headers=None, server=True, data=None):
        """Open `url`; map every transport failure to an OllamaError. Returns the open response.

        `body` is sent as JSON; `data` (bytes or a file) as it is.
        """
        all_headers = dict(self.headers) if server else {}
        all_headers.update(headers or {})
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            all_headers.setdefault("Content-Type", "application/json")
        what = "the Ollama server at %s" % self.base_url if server else "the registry at %s" % _origin(url)
        try:
            return open_url(url, data=data, headers=all_headers, method=method, timeout=self.timeout,
                            validate_certs=self.validate_certs, ca_path=self.ca_path,
                            client_cert=self.client_cert, client_key=self.client_key,
                            http_agent="llmops.ollama", follow_redirects="safe", use_netrc=False)
        except HTTPError as exc:
            raise _http_error(exc, url, what)
        except SSLValidationError as exc:
            raise OllamaUnreachable(
                "TLS verification failed for %s: %s. Give the CA with ca_path, or set validate_certs: false "
                "for a test server." % (what, _short(exc)), url=url)
        except TRANSPORT_ERRORS as exc:
            reason = getattr(exc, "reason", None) or exc  # ssl.SSLError has a reason that may be None
            if isinstance(reason, socket.timeout) or isinstance(exc, socket.timeout):
                raise OllamaUnreachable("no answer from %s within %ss (timeout). %s"
                                        % (what, self.timeout, INSTALL_HINT if server else ""), url=url)
            hint = INSTALL_HINT if server else "Check the registry address and that this host can reach it."
            raise OllamaUnreachable("could not reach %s (%s): %s. %s" % (what, url, _short(reason), hint), url=url)

    def _json(self, path, method="GET", body=None):
        url = self.base_url + path
        resp = self._open(url, method, body)
        try:
            raw = resp.read()
        except (socket.error, HTTPException) as exc:
            raise OllamaUnreachable("lost the connection to the Ollama server at %s while reading %s: %s"
                                    % (self.base_url, path, _short(exc)), url=url)
        finally:
            resp.close()
        if not raw.strip():
            return {}
        try:
            return json.loads(raw.decode("utf-8"))
        except ValueError:
            raise OllamaError("the server at %s answered %s with something that is not JSON (%r...). Is base_url "
                              "an Ollama server?" % (self.base_url, path, raw[:80]), url=url)

    # -- API -------------------------------------------------------------------------------------------
    def version(self):
        return self._json("/api/version").get("version", "")

    def tags(self):
        return self._json("/api/tags").get("models") or []

    def ps(self):
        return self._json("/api/ps").get("models") or []

    def show(self, model):
        return self._json("/api/show", "POST", {"model": model})

    def delete(self, model):
        self._json("/api/delete", "DELETE", {"model": model})

    def has_blob(self, digest):
        """Whether the server's store has the blob `digest` (``sha256:<hex>``)."""
        try:
            self._open(self.base_url + "/api/blobs/" + digest, "HEAD").close()
            return True
        except OllamaNotFound:
            return False

    def missing_bytes(self, manifest, planned=None):
        """Bytes of `manifest`'s blobs that the server does not have yet: what a pull will download.

        Blobs in `planned` (a set, updated here) are counted once across several models that share them.
        """
        planned = set() if planned is None else planned
        total = 0
        for blob in manifest_blobs(manifest):
            digest = blob.get("digest", "")
            if digest not in planned and not self.has_blob(digest):
                planned.add(digest)
                total += int(blob.get("size") or 0)
        return total

    def push_blob(self, digest, path):
        """Upload the file at `path` as blob `digest` to the server, which verifies the digest before keeping it."""
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            self._open(self.base_url + "/api/blobs/" + digest, "POST", data=f,
                       headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"}).close()

    def copy(self, source, destination):
        self._json("/api/copy", "POST", {"source": source, "destination": destination})

    def pull(self, model, insecure=False, progress=None):
        """Pull `model`, streaming NDJSON; return a PullResult or raise an OllamaError.

        Success is a final ``{"status": "success"}`` line and nothing else. `progress`, when given, is
        called with every parsed event.
        """
        url = self.base_url + "/api/pull"
        result = PullResult()
        started = time.time()
        resp = self._open(url, "POST", {"model": model, "insecure": bool(insecure), "stream": True})
        last = None
        try:
            while True:
                try:
                    line = resp.readline()
                except socket.timeout:
                    raise OllamaError("pulling %s: the server sent nothing for %ss (last status: %s). The registry "
                                      "may be slow or unreachable from the server; raise timeout or check it."
                                      % (model, self.timeout, last and last.get("status")), url=url)
                except (socket.error, HTTPException) as exc:
                    raise OllamaError("pulling %s: the connection to %s was lost (%s) after '%s'. The server "
                                      "stopped or restarted; run again to finish the pull (the store keeps what "
                                      "was complete)." % (model, self.base_url, _short(exc),
                                                          last and last.get("status")), url=url)
                if not line:
                    break
                line = line.strip()
                if not line:
                    continue
                try:
                    event = json.loads(line.decode("utf-8"))
                except ValueError:
                    raise OllamaError("pulling %s: the server sent a line that is not JSON: %r"
                                      % (model, line[:120]), url=url)
                if not isinstance(event, dict):
                    raise OllamaError("pulling %s: unexpected line from the server: %r" % (model, line[:120]),
                                      url=url)
                if event.get("error"):
                    raise OllamaError("pulling %s failed: %s%s" % (model, event["error"], _hint(event["error"])),
                                      url=url)
                result.observe(event)
                last = event
                if progress is not None:
                    progress(event)
        finally:
            resp.close()
            result.seconds = time.time() - started
        if not last or last.get("status") != "success":
            raise OllamaError("pulling %s: the stream ended without 'success' (last status: %s). The server may have "
                              "stopped; run again to finish the pull." % (model, last and last.get("status")),
                              url=url)
        return result

    # -- registry -------------------------------------------------------------------------------------
    def registry_manifest_bytes(self, name, insecure=False):
        """The manifest of a parsed ModelName, as the registry serves it (the bytes Ollama stores)."""
        resp = self._open(name.manifest_url(insecure), headers={"Accept": MANIFEST_TYPE}, server=False)
        try:
            return resp.read()
        finally:
            resp.close()

    def registry_manifest(self, name, insecure=False):
        """Fetch the registry manifest of a parsed ModelName. Returns (hex digest, manifest dict).

        Ollama stores the manifest bytes as fetched, so this digest equals the ``digest`` /api/tags shows
        once the model is pulled.
        """
        url = name.manifest_url(insecure)
        raw = self.registry_manifest_bytes(name, insecure)
        try:
            manifest = json.loads(raw.decode("utf-8"))
        except ValueError:
            raise OllamaError("the registry answered %s with something that is not a manifest" % url, url=url)
        return hashlib.sha256(raw).hexdigest(), manifest

    def fetch_blob(self, name, digest, dest, insecure=False, chunk=1 << 20):
        """Download a registry blob of `name` to `dest`, verifying its sha256 on the way. Returns bytes written.

        The data goes to `dest`.partial and is renamed only when complete and verified.
        """
        return self.download_blob(name.blob_url(digest, insecure), digest, dest, chunk)

    def download_blob(self, url, digest, dest, chunk=1 << 20):
        """Download the blob at `url` to `dest`, verifying it is `digest`; see fetch_blob."""
        partial = dest + ".partial"
        resp = self._open(url, server=False)
        h, written = hashlib.sha256(), 0
        try:
            with open(partial, "wb") as out:
                for block in iter(lambda: resp.read(chunk), b""):
                    h.update(block)
                    out.write(block)
                    written += len(block)
        except (socket.error, HTTPException) as exc:
            raise OllamaError("downloading %s from %s failed after %d bytes: %s; run again to finish"
                              % (digest, _origin(url), written, _short(exc)), url=url)
        finally:
            resp.close()
        if "sha256:" + h.hexdigest() != digest:
            os.unlink(partial)
            raise OllamaError("%s sent a blob whose sha256 is %s, not %s; nothing was kept"
                              % (_origin(url), h.hexdigest(), digest), url=url)
        os.rename(partial, dest)
        return written


def manifest_blobs(manifest):
    blobs = list(manifest.get("layers") or [])
    if manifest.get("config"):
        blobs.append(manifest["config"])
    return blobs


def manifest_size(manifest):
    return sum(int(blob.get("size") or 0) for blob in manifest_blobs(manifest))


def _origin(url):
    parts = urlsplit(url)
    return "%s://%s" % (parts.scheme, parts.netloc)


def _short(exc):
    text = str(exc) or exc.__class__.__name__
    prefix = "<url" + "open error "  # how urllib wraps a reason
    return text.replace(prefix, "").rstrip(">")


def _hint(error):
    """What to do about a pull error the server reports, when the server's own words do not say it."""
    if "no space left on device" in str(error):
        return (". The disk holding the server's models is full: free space there, or move the models "
                "(OLLAMA_MODELS) to a bigger disk, then run again")
    return ""


def _http_error(exc, url, what):
    body = b""
    try:
        body = exc.read() or b""
    except Exception:  # pylint: disable=broad-except
        pass
    message = ""
    try:
        message = json.loads(body.decode("utf-8")).get("error", "")
    except (ValueError, AttributeError):
        message = body.decode("utf-8", "replace").strip()[:200]
    if isinstance(message, dict):  # registries answer {"errors": [...]}; keep it readable
        message = json.dumps(message)
    if not message:
        try:
            errors = json.loads(body.decode("utf-8")).get("errors") or []
            message = "; ".join("%s: %s" % (e.get("code"), e.get("message")) for e in errors)
        except (ValueError, AttributeError):
            pass
    text = "%s answered HTTP %s for %s: %s" % (what, exc.code, urlsplit(url).path, message or exc.reason)
    if exc.code == 403 and "Ollama" in what and not message:  # Ollama's Host check answers with no body
        text += (". A server bound to loopback refuses other Host names; use base_url "
                 "http://127.0.0.1:<port>, or a proxy that rewrites Host")
    if exc.code == 401:
        text += ". Give a valid api_token (or a proxy's headers)"
    cls = OllamaNotFound if exc.code == 404 else OllamaError
    return cls(text, url=url, status=exc.code)
