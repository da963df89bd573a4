# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The client of Ollama's REST API, shared by every module, and the index of the server's models by parsed name.

It talks only to the server (or a proxy in front of it): its TLS options (``ca_path``, ``client_cert``,
``validate_certs``), ``api_token`` and ``headers`` are the server's and never go anywhere else, not even after a
redirect to another origin (which it refuses). Registries have their own client (_registry_client.py). It knows
nothing of AnsibleModule: every failure is an OllamaError whose message says what happened, where, and what to do.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import socket
import time

from ansible.module_utils.six.moves.urllib.parse import quote, urlsplit

from ansible_collections.llmops.ollama.plugins.module_utils._http import (
    READ_ERRORS,
    HTTPStatusError,
    OllamaError,
    OllamaNotFound,
    OllamaTimeout,
    OllamaUnreachable,
    Redirect,
    Transport,
    check_timeout,
    short,
)
from ansible_collections.llmops.ollama.plugins.module_utils._names import (
    InvalidModelName,
    existing_name,
    parse_listed_name,
)

DEFAULT_BASE_URL = "http://127.0.0.1:11434"
INSTALL_HINT = ("Is Ollama installed and running there? Install it (llmops.ollama.server role, or "
                "https://ollama.com/download) and start it with 'systemctl start ollama' or 'ollama serve'.")
RESTART_HINT = "It answered earlier in this task: it may have stopped or restarted; run the task again."
# Ollama hashes every new layer after 'verifying sha256 digest' and sends nothing meanwhile. The silence allowed
# then is the timeout plus the time to hash the new bytes at this rate: a slow disk, or a host whose cores are busy
# (the lab saw 100 MB take over 5 s to hash on a loaded 2-core machine).
VERIFY_RATE = 10 * 1000 * 1000
# Same-origin redirects of reads are followed; nothing is sent to another origin.
SERVER_REDIRECTS = Redirect(methods=("GET", "HEAD"), other_origin=False)

LOOPBACK = ("127.0.0.1", "::1", "localhost")  # the host names of this host's own servers


def api_argument_spec():
    """Connection options shared by every module that talks to a server (the llmops.ollama.api doc fragment)."""
    return dict(
        base_url=dict(type="str", aliases=["host"]),
        timeout=dict(type="int", default=30),
        validate_certs=dict(type="bool", default=True),
        ca_path=dict(type="path"),
        client_cert=dict(type="path"),
        client_key=dict(type="path"),
        api_token=dict(type="str", no_log=True),
        headers=dict(type="dict", default={}, no_log=True),
    )


HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an RFC 9110 token
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # what may not be in a header value (tab may)


def _latin1(text):
    try:
        text.encode("latin-1")
        return True
    except UnicodeError:
        return False


def check_pem_option(params, option):
    path = params.get(option)
    if path and not os.path.isfile(path):
        raise OllamaError("%s %s is not a file on this host: give the path of a PEM file" % (option, path))
    return path or None


def client_from_params(params):
    """The Ollama client from a module's validated params; raises OllamaError for bad values."""
    timeout = check_timeout(params.get("timeout", 30))
    headers = {}
    for name, value in (params.get("headers") or {}).items():
        if not isinstance(name, str) or not HEADER_NAME.match(name):
            raise OllamaError("headers: %r is not an HTTP header name (letters, digits and !#$%%&'*+-.^_`|~)" % (name,))
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
        check_pem_option(params, option)
    token = params.get("api_token")
    if token and CONTROL.search(token):
        raise OllamaError("api_token contains a line break or another control character: give the token alone")
    if token and not _latin1(token):
        raise OllamaError("api_token has characters an HTTP header cannot carry (Latin-1 only): give the token alone")
    return OllamaClient(base_url=params.get("base_url"), timeout=timeout,
                        validate_certs=params.get("validate_certs", True), ca_path=params.get("ca_path"),
                        client_cert=params.get("client_cert"), client_key=params.get("client_key"),
                        api_token=token, headers=headers)


class InvalidBaseURL(OllamaError):
    pass


def normalize_base_url(value=None):
    """Return the server root for `value`, following OLLAMA_HOST's rules (envconfig.Host).

    ``host`` -> ``http://host:11434``; ``:31434`` -> this host's port 31434; ``ollama.com`` -> ``https://ollama.com:443``;
    ``http://h`` -> port 80; ``https://h`` -> 443; 0.0.0.0 and :: (bind addresses) -> loopback; a trailing ``/`` or
    ``/v1`` (Codex's OpenAI-style base URL) is dropped, so ``http://h:11434``, ``http://h:11434/`` and
    ``http://h:11434/v1`` are the same server; a path is percent-encoded where a request line needs it (``/ü`` ->
    ``/%C3%BC``). Empty -> the managed host's OLLAMA_HOST, else http://127.0.0.1:11434.
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
    elif text == "ollama.com":  # as envconfig.Host: the hosted API, over HTTPS
        scheme, rest, default_port = "https", text, 443
    else:
        scheme, rest = "http", text
    hostport, _sep, path = rest.partition("/")
    try:
        parts = urlsplit("//" + hostport)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise InvalidBaseURL("invalid Ollama URL '%s': %s" % (raw, exc))
    if parts.username or parts.password or "@" in hostport:
        raise InvalidBaseURL("invalid Ollama URL '%s': put credentials in api_token, not in the URL" % raw)
    if hostport and not host and not (hostport.startswith(":") and port):
        raise InvalidBaseURL("invalid Ollama URL '%s': no host name in it" % raw)
    host = host or "127.0.0.1"  # ':31434', as the Ollama CLI takes it: this host
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
    # a path as a request line carries it: what is not allowed there (non-ASCII, spaces, control characters) is
    # percent-encoded, as Go's net/url does when the CLI sends it; what is encoded already stays as it is
    path = quote(path, safe="/%:@!$&'()*+,;=~")
    if path.endswith("/v1") or path == "/v1":
        path = path[:-3]
    return "%s://%s:%d%s" % (scheme, host, port or default_port, path.rstrip("/"))


class PullResult(object):
    """What one pull did: decided only by a final ``success`` line (or the model list after a silent end)."""

    def __init__(self):
        self.statuses = []
        self.layers = {}  # digest -> [first completed seen, total, last completed]
        self.seconds = 0.0

    def observe(self, event):
        status = event.get("status", "")
        if not isinstance(status, str):
            status = str(status)
        if not self.statuses or self.statuses[-1] != status:
            self.statuses.append(status)
        digest = event.get("digest")
        if digest and "total" in event:
            total, completed = _int(event.get("total")), _int(event.get("completed"))
            entry = self.layers.setdefault(str(digest), [completed, total, completed])
            entry[1], entry[2] = total, completed

    @property
    def bytes(self):
        """Bytes fetched in this pull (layers already in the store count 0)."""
        return sum(max(last - first, 0) for first, _total, last in self.layers.values())

    @property
    def new_bytes(self):
        """Bytes of the layers this pull had to fetch: what the server hashes after 'verifying sha256 digest'."""
        return sum(total for first, total, _last in self.layers.values() if first < total)


def _int(value):
    try:
        return max(int(value or 0), 0)
    except (TypeError, ValueError, OverflowError):
        return 0


class ModelIndex(object):
    """The server's models by parsed name: the one place that matches a wanted name with what the server lists.

    `get(parsed)` is the /api/tags entry of that model (matched case-insensitively on all four parts, as Ollama
    does) or None; `stored(parsed)` is the ModelName a pull of it is stored (and listed) under, and which the server
    asks the registry for (getExistingName: the casing of a model it has).
    """

    def __init__(self, entries):
        self.entries = {}
        self.names = {}
        for entry in entries:
            listed = entry.get("name") or entry.get("model") or ""
            try:
                parsed = parse_listed_name(listed) if isinstance(listed, str) else None
            except InvalidModelName:
                parsed = None  # a name this version cannot parse cannot be one we were asked for
            if parsed is not None:
                self.entries[parsed.key] = entry
                self.names[parsed.key] = parsed

    def get(self, parsed):
        return self.entries.get(parsed.key)

    def stored(self, parsed):
        return existing_name(parsed, self.names.values())

    def stored_name(self, parsed):
        return self.stored(parsed).short

    def listed(self):
        """The names as the server lists them."""
        return sorted(self.names[k].short for k in self.names)

    def items(self):
        return sorted(self.entries.items())

    def __contains__(self, parsed):
        return parsed.key in self.entries


class OllamaClient(object):
    def __init__(self, base_url=None, timeout=30, validate_certs=True, ca_path=None, client_cert=None,
                 client_key=None, api_token=None, headers=None):
        self.base_url = normalize_base_url(base_url)
        self.timeout = timeout
        self.headers = dict(headers or {})
        if api_token:
            self.headers["Authorization"] = "Bearer %s" % api_token
        self.answered = False  # whether the server answered once: then a broken connection is not "install it"
        context = None
        if urlsplit(self.base_url).scheme == "https":
            try:
                from ansible.module_utils.urls import make_context  # only for TLS: it is slow to import

                context = make_context(cafile=ca_path, validate_certs=validate_certs, client_cert=client_cert,
                                       client_key=client_key)
            except (IOError, OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise OllamaError("cannot use the TLS files given (ca_path, client_cert, client_key): %s; give PEM "
                                  "files" % short(exc))
        elif client_cert:
            context = None  # plain HTTP: a client certificate has nothing to do
        self.transport = Transport(timeout, context, self._describe, INSTALL_HINT)
        self.transport.tls_hint = lambda: ("Give the CA with ca_path, or set validate_certs: false for a test "
                                           "server.")

    def _describe(self, _url):
        return "the Ollama server at %s" % self.base_url

    @property
    def on_this_host(self):
        """Whether the server is on this host (base_url on loopback): its store and hardware are this host's."""
        return urlsplit(self.base_url).hostname in LOOPBACK

    # -- transport ---------------------------------------------------------------------------------
    def _open(self, path, method="GET", body=None, headers=None, data=None, timeout=None):
        """Open the API `path`; returns the open Response. `body` is sent as JSON; `data` (bytes, a file) as it is.
        `timeout`, when given, replaces the client's for this request."""
        all_headers = dict(self.headers)
        all_headers.update(headers or {})
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            all_headers.setdefault("Content-Type", "application/json")
        if self.answered:
            self.transport.unreachable_hint = RESTART_HINT
        try:
            resp = self.transport.open(self.base_url + path, method, all_headers, data, SERVER_REDIRECTS, timeout)
        except HTTPStatusError as exc:
            self.answered = True
            raise _explain(exc)
        self.answered = True
        return resp

    def _json(self, path, method="GET", body=None, expect=dict, timeout=None):
        resp = self._open(path, method, body, timeout=timeout)
        try:
            raw = resp.read()
        except socket.timeout:
            raise OllamaTimeout("the Ollama server at %s stopped sending its answer to %s for %ss (timeout)"
                                % (self.base_url, path, timeout or self.timeout), url=self.base_url + path)
        except READ_ERRORS as exc:
            raise OllamaUnreachable("lost the connection to the Ollama server at %s while reading %s: %s"
                                    % (self.base_url, path, short(exc)), url=self.base_url + path)
        finally:
            resp.close()
        if not raw.strip():
            return expect()
        try:
            value = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeError):
            raise OllamaError("the server at %s answered %s with something that is not JSON (%r...). Is base_url "
                              "an Ollama server?" % (self.base_url, path, raw[:80]), url=self.base_url + path)
        if not isinstance(value, expect):
            raise OllamaError("the server at %s answered %s with JSON that is not what Ollama sends (%s, not an "
                              "object). Is base_url an Ollama server?"
                              % (self.base_url, path, _kind(value)), url=self.base_url + path)
        return value

    def _list(self, path, key):
        value = self._json(path).get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise OllamaError("the server at %s answered %s with a '%s' that is not a list of objects. Is base_url "
                              "an Ollama server?" % (self.base_url, path, key), url=self.base_url + path)
        return value

    # -- API -------------------------------------------------------------------------------------------
    def version(self):
        version = self._json("/api/version").get("version", "")
        return version if isinstance(version, str) else str(version)

    def tags(self):
        return self._list("/api/tags", "models")

    def cloud(self):
        """Whether the server has ollama.com's cloud turned off, from /api/status: {"disabled": bool, "source":
        "env" (OLLAMA_NO_CLOUD), "config" (~/.ollama/server.json), "both" or "none"}; None from a release without
        /api/status (it answers 404)."""
        try:
            cloud = self._json("/api/status").get("cloud")
        except HTTPStatusError as exc:
            if exc.status == 404:
                return None
            raise
        if not isinstance(cloud, dict) or not isinstance(cloud.get("disabled"), bool):
            raise OllamaError("the server at %s answered /api/status without a cloud state (%r). Is base_url an "
                              "Ollama server?" % (self.base_url, cloud), url=self.base_url + "/api/status")
        return {"disabled": cloud["disabled"], "source": str(cloud.get("source") or "none")}

    def models(self):
        """The ModelIndex of what the server has now."""
        return ModelIndex(self.tags())

    def ps(self):
        return self._list("/api/ps", "models")

    def running(self):
        """The ModelIndex of the models the server has in memory now (/api/ps)."""
        return ModelIndex(self.ps())

    def load(self, model, keep_alive):
        """Load `model` into the server's memory and keep it there for `keep_alive` (seconds, or a duration string):
        a generate request with no prompt, which the server answers once the model is loaded."""
        self._json("/api/generate", "POST", {"model": model, "keep_alive": keep_alive, "stream": False})

    def chat(self, model, messages, tools=None, options=None, keep_alive=None, timeout=None):
        """One chat turn, not streamed (/api/chat): the server's whole answer, with ``message`` (``content``,
        ``tool_calls``) and its counters (``eval_count``, ``eval_duration``, ``load_duration``, ``total_duration``,
        in nanoseconds). `timeout` bounds the wait for it (the server sends nothing before it is done); a timeout
        raises OllamaTimeout, an error the server answers (a model it cannot load) an HTTPStatusError with its words
        in ``message``."""
        body = {"model": model, "messages": messages, "stream": False}
        if tools:
            body["tools"] = tools
        if options:
            body["options"] = options
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        return self._json("/api/chat", "POST", body, timeout=timeout)

    def show(self, model):
        return self._json("/api/show", "POST", {"model": model})

    def delete(self, model):
        self._json("/api/delete", "DELETE", {"model": model})

    def has_blob(self, digest):
        """Whether the server's store has the blob `digest` (``sha256:<hex>``, validated by the caller)."""
        try:
            self._open("/api/blobs/" + digest, "HEAD").close()
            return True
        except OllamaNotFound:
            return False

    def missing_bytes(self, blobs, planned=None):
        """Bytes of `blobs` ([(digest, size)]) the server does not have yet: what a pull will download.

        Blobs in `planned` (a set, updated here) are counted once across several models that share them.
        """
        planned = set() if planned is None else planned
        total = 0
        for digest, size in blobs:
            if digest not in planned and not self.has_blob(digest):
                planned.add(digest)
                total += size
        return total

    def push_blob(self, digest, source):
        """Upload `source`, the path of a file or a file open for reading (from its start), as blob `digest` to the
        server, which verifies the digest before keeping it. Returns the bytes sent."""
        if isinstance(source, str):
            with open(source, "rb") as f:
                return self.push_blob(digest, f)
        size = os.fstat(source.fileno()).st_size
        self._open("/api/blobs/" + digest, "POST", data=source,
                   headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"}).close()
        return size

    def copy(self, source, destination):
        self._json("/api/copy", "POST", {"source": source, "destination": destination})

    def pull(self, model, insecure=False, progress=None, finished=None):
        """Pull `model`, streaming NDJSON; return a PullResult or raise an OllamaError.

        Success is a final ``{"status": "success"}`` line and nothing else, with one exception: when the stream
        goes silent or breaks after 'verifying sha256 digest', `finished()` (when given) is asked whether the server
        now lists the model as the pull would leave it, and a yes is a success. `progress`, when given, is called
        with every parsed event.
        """
        url = self.base_url + "/api/pull"
        result = PullResult()
        started = time.time()
        resp = self._open("/api/pull", "POST", {"model": model, "insecure": bool(insecure), "stream": True})
        last = None
        try:
            while True:
                try:
                    line = resp.readline()
                except socket.timeout:
                    if _verifying(last) and finished is not None and finished():
                        result.statuses.append("success (the server lists the model)")
                        return result
                    raise OllamaError("pulling %s: the server sent nothing for %ss (last status: %s). The registry "
                                      "may be slow or unreachable from the server; raise timeout or check it."
                                      % (model, _silence(self.timeout, last, result), _status(last)), url=url)
                except READ_ERRORS as exc:
                    if _verifying(last) and finished is not None and finished():
                        result.statuses.append("success (the server lists the model)")
                        return result
                    raise OllamaError("pulling %s: the connection to %s was lost (%s) after '%s'. The server "
                                      "stopped or restarted; run again to finish the pull (the store keeps what "
                                      "was complete)." % (model, self.base_url, short(exc), _status(last)), url=url)
                if not line:
                    break
                line = line.strip()
                if not line:
                    continue
                try:
                    event = json.loads(line.decode("utf-8"))
                except (ValueError, UnicodeError):
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
                if _verifying(last):
                    _set_read_timeout(resp, _silence(self.timeout, last, result))
        finally:
            resp.close()
            result.seconds = time.time() - started
        if not last or last.get("status") != "success":
            if _verifying(last) and finished is not None and finished():
                result.statuses.append("success (the server lists the model)")
                return result
            raise OllamaError("pulling %s: the stream ended without 'success' (last status: %s). The server may have "
                              "stopped; run again to finish the pull." % (model, _status(last)), url=url)
        return result


def _status(event):
    return event.get("status") if isinstance(event, dict) else None


def _verifying(event):
    return _status(event) == "verifying sha256 digest"


def _silence(timeout, last, result):
    """Seconds of silence allowed after `last`: the timeout, plus the time to hash the new layers while verifying."""
    if _verifying(last):
        return int(timeout + result.new_bytes // VERIFY_RATE)
    return timeout


def _set_read_timeout(resp, seconds):
    """Let the stream stay silent `seconds` from now (the socket under the response)."""
    raw = getattr(resp, "raw", resp)
    for path in (("fp", "raw", "_sock"), ("fp", "_sock")):
        obj = raw
        for attr in path:
            obj = getattr(obj, attr, None)
        if obj is not None and hasattr(obj, "settimeout"):
            try:
                obj.settimeout(seconds)
            except (OSError, ValueError, OverflowError):
                pass
            return


def _kind(value):
    return {list: "a list", str: "a string", type(None): "null", bool: "a boolean"}.get(type(value), "a number")


def _hint(error):
    """What to do about a pull error the server reports, when the server's own words do not say it."""
    if "no space left on device" in str(error):
        return (". The disk holding the server's models is full: free space there, or move the models "
                "(OLLAMA_MODELS) to a bigger disk, then run again")
    return ""


def _explain(exc):
    """The server's (or a proxy's) error status, with what to do when its own words do not say it."""
    text = exc.msg
    if exc.status == 403 and not exc.message:  # Ollama's Host check answers with no body
        text += (". A server bound to loopback refuses other Host names; use base_url "
                 "http://127.0.0.1:<port>, or a proxy that rewrites Host")
    if exc.status == 401:
        text += ". Give a valid api_token (or a proxy's headers)"
    cls = OllamaNotFound if exc.status == 404 else HTTPStatusError
    return cls(text, url=exc.url, status=exc.status, message=exc.message, headers=exc.headers)
