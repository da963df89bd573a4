# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The client of model registries (Docker Distribution v2, as Ollama pulls from them) and of bundle seeds.

Its TLS settings are its own: the system's trust store, plus ``registry_ca_path`` when a site registry has its own
CA; a bundle seed given a CA of its own (``bundle_ca_path`` or ``bundle_ca_pem``, as the models role gives its peers'
CA for a rollout) is trusted against that CA alone. Nothing of the Ollama server's connection options (``ca_path``,
``client_cert``, ``api_token``, ``headers``) is ever used here.

It reads a registry as the Ollama server's pull does, so that what a module finds there is what the server's pull
would find, and where it refuses the server's pull fails too. Read from Ollama 0.34.4 (the release the server role
installs):

- Manifests, a blob's HEAD (which the server sends before its download) and token requests follow a redirect only
  to the same host and port (``URL.Host``, as written), between hosts of ollama.com, ollama.ai, hf.co and
  huggingface.co, or anywhere with ``insecure`` (server/images.go ``makeRequest``, its default ``CheckRedirect``;
  elsewhere the server fails with "blocked redirect to a different host"). Ollama 0.32 followed any redirect here.
- A blob's GET follows redirects on the same host name (``URL.Hostname()``, any port); the first redirect to another
  host name is followed only when it is a 307, and that URL (the download URL, a CDN's) is then fetched as any URL
  is, without the token (server/download.go ``blobDownload.run``; elsewhere the server fails with "unexpected status
  code 302"). registry.ollama.ai sends blob downloads to a CDN that way.
- A 401 with ``WWW-Authenticate: Bearer realm=...,service=...,scope=...`` is answered with a ``GET
  <realm>?service=...&scope=...`` only when the realm's host and port are the registry's own (server/auth.go
  ``getAuthorizationToken``: "realm host ... does not match original host ..."), and the token is the answer's
  ``token`` (``api.TokenResponse``; an ``access_token`` alone is not read). The server signs that request with its
  own key (``~/.ollama/id_ed25519`` in its service user's home), which ollama.com reads to allow private models;
  this client asks anonymously, since it has no such key, and says so where a registry of ollama.com refuses it.

This client never goes from HTTPS to plain HTTP unless ``insecure`` (a redirect, or a token service named over HTTP).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import errno
import hashlib
import json
import os
import re
import stat

from ansible.module_utils.six.moves.urllib.parse import unquote, urlencode, urlsplit, urlunsplit

from ansible_collections.llmops.ollama.plugins.module_utils._http import (
    READ_ERRORS,
    HTTPStatusError,
    OllamaError,
    OllamaNotFound,
    Redirect,
    Transport,
    ca_context,
    check_timeout,
    origin_text,
    redact,
    short,
)
from ansible_collections.llmops.ollama.plugins.module_utils._manifest import (
    MEDIA_TYPE,
    InvalidManifest,
    check_digest,
    parse,
)

REGISTRY_HINT = "Check the registry address and that this host can reach it."
# Hosts between which Ollama's server follows a registry's redirects, each with its subdomains (server/images.go
# allowedRedirectHosts, Ollama 0.34.4).
REDIRECT_HOSTS = ("ollama.com", "ollama.ai", "hf.co", "huggingface.co")
# ollama.com's registries (registry.ollama.ai, the default): private models need the server's signed token request.
OLLAMA_COM_HOSTS = ("ollama.com", "ollama.ai")
# Why a registry of ollama.com may refuse this client and not the server (see the module docstring).
SIGNED = ("A private model on ollama.com (or one that is not there): Ollama's server signs its token requests with its "
          "own key (~/.ollama/id_ed25519 in its service user's home), and ollama.com lets it pull the model when that "
          "key is connected to an account that may; this module has no such key (it does not read the server's) and "
          "cannot read what the registry has. The server's own pull can: connect its key to such an account (ollama "
          "signin, run against that server, opens ollama.com/connect with it); check mode and state latest cannot "
          "tell for such a model")
NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
CHALLENGE_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')
MAX_TOKEN_BYTES = 1 << 20
# what reading a blob's body can raise: the connection's errors, and a body that ended short (raised in the loop)
_BODY_ERRORS = READ_ERRORS + (OllamaError,)


def registry_argument_spec():
    """Options of modules that read registries themselves (the llmops.ollama.registry doc fragment)."""
    return dict(registry_ca_path=dict(type="path"))


def registry_client_from_params(params, timeout=None, validate_certs=True, ca_option="registry_ca_path"):
    """The registry client from a module's validated params; raises OllamaError for bad values. A module with a
    bundle_url may give its seed a CA of its own (bundle_ca_path or bundle_ca_pem), trusted for the seed only."""
    timeout = check_timeout(params.get("timeout", 30) if timeout is None else timeout)
    ca = params.get(ca_option)
    if ca and not os.path.isfile(ca):
        raise OllamaError("%s %s is not a file on this host: give the path of the registry's CA certificate (PEM)"
                          % (ca_option, ca))
    seed_ca = params.get("bundle_ca_path")
    if seed_ca and not os.path.isfile(seed_ca):
        raise OllamaError("bundle_ca_path %s is not a file on this host: give the path of the CA certificate (PEM) "
                          "that signed the bundle server's certificate" % seed_ca)
    seed_context = ca_context(seed_ca, params.get("bundle_ca_pem"),
                              "bundle_ca_path %s" % seed_ca if seed_ca else "bundle_ca_pem")
    return RegistryClient(timeout=timeout, ca_path=ca or None, validate_certs=validate_certs, ca_option=ca_option,
                          seed_context=seed_context)


def parse_challenge(header):
    """(scheme, {param: value}) of a WWW-Authenticate header, e.g. Bearer realm="...",service="...",scope="..."."""
    header = (header or "").strip()
    scheme, _sep, rest = header.partition(" ")
    params = {}
    for match in CHALLENGE_PARAM.finditer(rest):
        value = match.group(2) if match.group(2) is not None else match.group(3)
        params[match.group(1).lower()] = re.sub(r"\\(.)", r"\1", value or "")
    return scheme.lower(), params


def go_host(url):
    """Go's ``URL.Host`` of `url`: its host and port as written (no user info, case kept), which Ollama's server
    compares for its redirect and token rules."""
    return urlsplit(url).netloc.rpartition("@")[2]


def go_hostname(url):
    """Go's ``URL.Hostname()`` of `url`: its host without the port (and an IPv6 address without brackets)."""
    host = go_host(url)
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if ":" in host else host


def _among(hostname, domains):
    return any(hostname == d or hostname.endswith("." + d) for d in domains)


def is_ollama_com(url):
    """Whether `url` is on a registry of ollama.com (registry.ollama.ai, ollama.com, their subdomains)."""
    return _among(go_hostname(url).lower(), OLLAMA_COM_HOSTS)


def server_rule(what, method, path, insecure, token=False):
    """The redirects Ollama's server follows for a registry's manifests, blob HEADs and token requests (the default
    CheckRedirect of server/images.go makeRequest): the same host and port, between ollama.com's and Hugging Face's
    hosts, or any with insecure (which the server never applies to a token request). A Redirect rule (see
    _http.Redirect)."""
    def rule(visited, target, status):
        start = visited[0]
        if insecure or go_host(target) == go_host(start):
            return
        if _among(go_hostname(start), REDIRECT_HOSTS) and _among(go_hostname(target), REDIRECT_HOSTS):
            return
        change = ("The token service must answer on its own address" if token else
                  "The registry must answer on its own address (only a blob's GET may go to another host, with a 307), "
                  "or, for a registry you trust on the LAN, pull with insecure: true, which follows any redirect")
        raise OllamaError(
            "%s answered %s %s with a redirect (HTTP %d) to another host, %s. Ollama's server follows a registry's "
            "redirects only on the registry's own host and port (or between ollama.com's and Hugging Face's hosts), "
            "so its pull fails there too (\"blocked redirect to a different host\"); nothing was fetched there. %s"
            % (what, method, path, status, origin_text(target), change), url=start, status=status)
    return rule


def blob_rule(what, path):
    """The redirects Ollama's server follows for a blob's GET (server/download.go blobDownload.run): any on the
    registry's host name; the first one to another host name only when it is a 307, and from that URL (the
    download URL) on, any. A Redirect rule (see _http.Redirect)."""
    def rule(visited, target, status):
        start = visited[0]
        if any(go_hostname(url) != go_hostname(start) for url in visited[1:]):
            return  # at the download URL, which the server fetches as any URL
        if go_hostname(target) == go_hostname(start) or status == 307:
            return
        raise OllamaError(
            "%s answered GET %s with a redirect (HTTP %d) to another host, %s. Ollama's server follows a blob "
            "download to another host only on 307 (Temporary Redirect), so its pull fails there too (\"unexpected "
            "status code %d\"); nothing was fetched there. The registry (or the proxy in front of it) must send blob "
            "downloads to another host with 307, or serve them itself"
            % (what, path, status, origin_text(target), status), url=start, status=status)
    return rule


class RegistryClient(object):
    def __init__(self, timeout=30, ca_path=None, validate_certs=True, ca_option="registry_ca_path", seed_context=None):
        self.timeout = timeout
        self.ca_option = ca_option
        try:
            from ansible.module_utils.urls import make_context  # slow to import: only when a registry is read

            context = make_context(validate_certs=validate_certs)  # the system's trust store, as Ansible finds it
            if ca_path and validate_certs:
                context.load_verify_locations(cafile=ca_path)
        except (IOError, OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise OllamaError("cannot use %s %s: %s; give the registry's CA certificate (PEM)"
                              % (ca_option, ca_path, short(exc)))
        self.transport = Transport(timeout, context, _describe, REGISTRY_HINT)
        # a seed with a CA of its own (seed_context, from ca_context) is trusted against that CA alone
        self.seed = Transport(timeout, seed_context or context, _describe_seed,
                              "Check bundle_url and that this host can reach it.")
        self.seed.tls_hint = lambda: (
            "Its certificate must be signed by the CA given in bundle_ca_pem (or bundle_ca_path) and name the host of "
            "bundle_url." if seed_context is not None else
            "If the bundle server has a CA of its own, give it with bundle_ca_path or bundle_ca_pem.")
        self.transport.tls_hint = lambda: ("If the registry has a CA of its own, give it with %s (the server needs it "
                                           "too: SSL_CERT_FILE in its environment)." % ca_option)
        self.tokens = {}  # (realm, service, scope) -> token
        self.fetched_bytes = 0  # blob bytes downloaded, in all
        self.resumed_bytes = 0  # blob bytes an interrupted download had kept, not downloaded again

    # -- requests with the token dance ---------------------------------------------------------------
    def _get(self, url, scope, headers=None, insecure=False, method="GET", blob=False):
        """GET (or HEAD) a registry URL, answering a Bearer challenge once, following redirects as the server does
        (a blob's GET: blob_rule; anything else: server_rule); returns the open Response."""
        headers = dict(headers or {})
        path = urlsplit(url).path
        rule = (blob_rule(_describe(url), path) if blob and method == "GET" else
                server_rule(_describe(url), method, path, insecure))
        redirect = Redirect(methods=("GET", "HEAD"), strip=("Authorization",), downgrade=insecure, rule=rule)
        key = (_origin_of(url), scope)
        token = self.tokens.get(key)
        for attempt in (1, 2):
            sent = dict(headers)
            if token:
                sent["Authorization"] = "Bearer %s" % token
            try:
                return self.transport.open(url, method, sent, None, redirect)
            except HTTPStatusError as exc:
                if exc.status != 401 or attempt == 2:
                    raise _explain(exc, url, bool(token))
                token = self._token(url, exc, scope, insecure)
                self.tokens[key] = token
        raise OllamaError("unreachable")  # pragma: no cover

    def _token(self, url, exc, scope, insecure):
        """The token a Bearer challenge asks for, fetched anonymously from its realm, which must be on the registry's
        own host and port as the server requires."""
        challenge = exc.headers.get("WWW-Authenticate") if exc.headers else None
        scheme, params = parse_challenge(challenge)
        where = _describe(url)
        if scheme != "bearer" or not params.get("realm"):
            raise OllamaError("%s asks for a login (%s) for %s, which neither this module nor the Ollama server can "
                              "give: pull from a registry that allows anonymous pulls (or a token service)"
                              % (where, (challenge or "no WWW-Authenticate").split(" ")[0], urlsplit(url).path),
                              url=url, status=401)
        realm = params["realm"]
        try:
            parts = urlsplit(realm)
            parts.port  # pylint: disable=pointless-statement  # a port that is not a number raises here
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise OllamaError("%s named a token service that is not an HTTP(S) URL (%s)" % (where, redact(realm)),
                              url=url, status=401)
        if go_host(realm) != go_host(url):
            raise OllamaError(
                "%s sends clients for a token to %s, which is not the registry's own host and port (%s). Ollama's "
                "server takes a token only from the registry's own host and port, so its pull fails there too "
                "(realm host \"%s\" does not match original host \"%s\"); nothing was asked there. The registry "
                "must name a token service (the realm of its WWW-Authenticate) on its own address, e.g. behind the "
                "proxy in front of it" % (where, redact(realm), go_host(url), go_host(realm), go_host(url)),
                url=url, status=401)
        if parts.scheme == "http" and urlsplit(url).scheme == "https" and not insecure:
            raise OllamaError("%s named a token service over plain HTTP (%s); refused (set insecure: true only for a "
                              "registry you trust on the LAN)" % (where, redact(realm)), url=url, status=401)
        query = [("service", params["service"])] if params.get("service") else []
        for one in (params.get("scope") or scope or "").split(" "):
            if one:
                query.append(("scope", one))
        sep = "&" if parts.query else "?"
        token_url = realm + (sep + urlencode(query) if query else "")
        # the server asks without insecure, whatever the pull's (server/auth.go: registryOptions{})
        rule = server_rule("the token service of %s" % where, "GET", parts.path, False, token=True)
        try:
            resp = self.transport.open(token_url, "GET", {"Accept": "application/json"}, None,
                                       Redirect(methods=("GET",), downgrade=insecure, rule=rule))
        except HTTPStatusError as err:
            text = ("the token service of %s (%s) refused an anonymous token for %s: HTTP %s %s"
                    % (where, origin_text(realm), scope or "the request", err.status, err.message))
            raise OllamaError(text + (". " + SIGNED if is_ollama_com(url) else ". The server cannot pull from there "
                                      "either"), url=url, status=401)
        try:
            raw = resp.read(MAX_TOKEN_BYTES)
        except READ_ERRORS as err:
            raise OllamaError("lost the connection to the token service of %s: %s" % (where, short(err)), url=url)
        finally:
            resp.close()
        try:
            answer = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeError):
            answer = None
        token = answer.get("token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token or re.search(r"[\x00-\x20\x7f]", token):
            more = ""
            if isinstance(answer, dict) and answer.get("access_token"):
                more = (": it sent access_token, but Ollama's server reads only token, so its pull is refused too "
                        "(\"unauthorized: access denied\"); the token service must answer {\"token\": ...}")
            raise OllamaError("the token service of %s (%s) answered without a usable token%s"
                              % (where, origin_text(realm), more), url=url, status=401)
        return token

    # -- manifests -------------------------------------------------------------------------------------
    def manifest_bytes(self, name, insecure=False):
        """The manifest of a parsed ModelName, as the registry serves it (the bytes Ollama stores)."""
        resp = self._get(name.manifest_url(insecure), name.scope, {"Accept": MEDIA_TYPE}, insecure)
        try:
            return resp.read()
        except READ_ERRORS as exc:
            raise OllamaError("lost the connection to %s while reading the manifest of %s: %s"
                              % (_describe(name.manifest_url(insecure)), name.short, short(exc)))
        finally:
            resp.close()

    def manifest(self, name, insecure=False):
        """(hex digest, parsed manifest) of a parsed ModelName. Raises OllamaError for a manifest Ollama refuses.

        Ollama stores the manifest bytes as fetched, so this digest equals the ``digest`` /api/tags shows once the
        model is pulled.
        """
        url = name.manifest_url(insecure)
        raw = self.manifest_bytes(name, insecure)
        try:
            return parse(raw)
        except InvalidManifest as exc:
            raise OllamaError("%s sent a manifest for %s that Ollama would refuse: %s"
                              % (_describe(url), name.short, exc), url=url)

    def manifest_by_digest(self, name, digest, insecure=False):
        """(raw bytes, parsed manifest) of the manifest `digest` (hex) of a parsed ModelName's repository, as the
        registry serves it by digest (``/v2/<repo>/manifests/sha256:<hex>``) whatever its tags point to now.

        OllamaNotFound when the registry no longer serves it; OllamaError when the bytes are not that digest or are a
        manifest Ollama would refuse."""
        url = "%s/manifests/sha256:%s" % (name.repository_url(insecure), digest)
        resp = self._get(url, name.scope, {"Accept": MEDIA_TYPE}, insecure)
        try:
            raw = resp.read()
        except READ_ERRORS as exc:
            raise OllamaError("lost the connection to %s while reading the manifest sha256:%s of %s: %s"
                              % (_describe(url), digest, name.short, short(exc)))
        finally:
            resp.close()
        try:
            got, manifest = parse(raw)
        except InvalidManifest as exc:
            raise OllamaError("%s sent a manifest for %s@sha256:%s that Ollama would refuse: %s"
                              % (_describe(url), name.short, digest, exc), url=url)
        if got != digest:
            raise OllamaError("%s answered the manifest sha256:%s of %s with other bytes (sha256:%s); nothing was "
                              "kept" % (_describe(url), digest, name.short, got), url=url)
        return raw, manifest

    # -- blobs -----------------------------------------------------------------------------------------
    def fetch_blob(self, name, digest, dest, insecure=False):
        """Download a registry blob of `name` to `dest`, verifying its sha256 on the way. Returns the bytes fetched
        (a download an earlier run left unfinished is resumed: see _save; its bytes are added to `resumed_bytes`).

        As the server downloads it: a HEAD first (redirects as for manifests), then the GET (blob_rule)."""
        url = name.blob_url(check_digest(digest), insecure)
        self._get(url, name.scope, insecure=insecure, method="HEAD").close()

        def open_at(start):
            return self._get(url, name.scope, headers=_range(start), insecure=insecure, blob=True)

        return self._count(_save(open_at, url, digest, dest, _describe(url)))

    def probe_blob(self, name, digest, insecure=False):
        """Ask for the first byte of a registry blob of `name` the way fetch_blob asks for all of it (the HEAD, then a
        ranged GET following redirects as the server does), and read nothing more: raises OllamaError where the
        server's pull of it would fail at the download (a blob sent to another host with a 301 or 302, a download
        host that cannot be reached). Check mode's look ahead at a pull."""
        url = name.blob_url(check_digest(digest), insecure)
        self._get(url, name.scope, insecure=insecure, method="HEAD").close()
        self._get(url, name.scope, headers={"Range": "bytes=0-0"}, insecure=insecure, blob=True).close()

    def download_from_seed(self, base, headers, digest, dest):
        """Download blob `digest` of a bundle served at `base` (see seed_url) to `dest`. Returns the bytes fetched
        (resuming a download an earlier run left unfinished, as fetch_blob does)."""
        url = "%s/blobs/%s" % (base, check_digest(digest).replace(":", "-"))

        def open_at(start):
            sent = dict(headers, **_range(start))
            return self.seed.open(url, "GET", sent, None, Redirect(other_origin=True, strip=("Authorization",)))

        return self._count(_save(open_at, url, digest, dest, _describe_seed(url)))

    def _count(self, counts):
        fetched, resumed = counts
        self.fetched_bytes += fetched
        self.resumed_bytes += resumed
        return fetched


def _range(start):
    """The headers asking for a blob from byte `start` on (none for the whole blob)."""
    return {"Range": "bytes=%d-" % start} if start else {}


def seed_url(url, username=None, password=None):
    """(URL without credentials, headers carrying them) of a bundle_url, which may hold user:password@; `username`
    and `password` (bundle_username, bundle_password) are a login given apart from the URL, each at most once."""
    try:
        parts = urlsplit(url)
        parts.port  # pylint: disable=pointless-statement  # a port that is not a number raises here
    except ValueError as exc:
        raise OllamaError("bundle_url is not a URL (%s): give the http:// or https:// URL of the bundle directory"
                          % exc)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OllamaError("bundle_url %s is not an http:// or https:// URL of the bundle directory" % redact(url))
    if username and parts.username:
        raise OllamaError("bundle_url %s holds a user name, and bundle_username is set too: give the user name once"
                          % redact(url))
    if password and parts.password:
        raise OllamaError("bundle_url %s holds a password, and bundle_password is set too: give it once, as "
                          "bundle_password (an option Ansible keeps out of its output)" % redact(url))
    headers = {}
    if username or password or parts.username is not None or parts.password is not None:
        login = "%s:%s" % (username or unquote(parts.username or ""), password or unquote(parts.password or ""))
        headers["Authorization"] = "Basic " + base64.b64encode(login.encode("utf-8")).decode("ascii")
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), parts.query, "")), headers


def _save(open_at, url, digest, dest, what, chunk=1 << 20):
    """Download blob `digest` to `dest`.partial, verify its sha256, rename it to `dest`. Returns (bytes fetched now,
    bytes resumed: kept from an interrupted download and not fetched again).

    `open_at(start)` opens the download (a Response): the whole blob when `start` is 0, else from byte `start` on
    (``Range: bytes=<start>-``). A `dest`.partial left by an interrupted download is resumed when it is a regular file
    with one link owned by this user (opened with O_NOFOLLOW and O_NONBLOCK, then looked at with fstat): its bytes are
    hashed and the rest is asked for. A 206 whose Content-Range starts there is appended; a 200 (the server ignores
    Range) starts over, as does a 206 of another range; a 416 (the partial file is whole, or too long) renames it when
    it verifies and starts over when not. Anything else at that name (a link, a FIFO, a file of another user or with
    other links) is removed, never opened through, and the file is made anew (O_EXCL, O_NOFOLLOW).
    A failed read keeps the partial file, so that the next run continues from there (an OllamaError saying so), and
    so does an interruption (KeyboardInterrupt: Ctrl-C; a killed process keeps it anyway); a blob whose sha256 is not
    `digest` is removed (an OllamaError); a failure to write (the disk) removes it and is the OSError itself."""
    partial = dest + ".partial"
    want = digest.replace("-", ":", 1).lower()
    out, h = _partial_file(partial, chunk)
    kept = out.tell()
    resp = None
    try:
        if kept:
            try:
                resp = open_at(kept)
            except HTTPStatusError as exc:
                if exc.status != 416:
                    raise
                if "sha256:" + h.hexdigest() == want:  # the partial file is the whole blob
                    out.close()
                    os.rename(partial, dest)
                    return 0, kept
            if resp is None or resp.status != 206 or _range_start(resp.headers.get("Content-Range")) != kept:
                if resp is not None and resp.status != 200:  # a range it was not asked for: ask for the whole blob
                    resp.close()
                    resp = None
                out.seek(0)  # start over
                out.truncate()
                h, kept = hashlib.sha256(), 0
        if resp is None:
            resp = open_at(0)
        written = kept
        length = _length(resp.headers.get("Content-Length"))
        try:
            while True:
                try:
                    block = resp.read(chunk)
                    if not block and length is not None and written - kept < length:
                        # http.client's read(n) ends quietly where the connection closed before the body did
                        raise OllamaError("the connection closed after %d of the %d bytes of the answer"
                                          % (written - kept, length))
                except _BODY_ERRORS as exc:
                    out.flush()
                    raise OllamaError(
                        "downloading %s from %s failed after %d bytes (%d of them in this run): %s. The %d bytes "
                        "received are kept in %s, and the next run continues from there (it asks only for the rest)"
                        % (digest, what, written, written - kept, short(exc), written, partial), url=url)
                if not block:
                    break
                out.write(block)
                h.update(block)
                written += len(block)
        finally:
            resp.close()
        out.close()
    except (OllamaError, KeyboardInterrupt):  # a failed read, or Ctrl-C mid-blob
        empty = out.closed or not (out.flush() or os.fstat(out.fileno()).st_size)
        out.close()
        if empty:  # nothing to resume; else the partial file stays and the next run resumes it
            _unlink(partial)
        raise
    except BaseException:
        out.close()
        _unlink(partial)
        raise
    if "sha256:" + h.hexdigest() != want:
        _unlink(partial)
        resumed = (" (%d bytes, the first %d of them kept from an interrupted download)" % (written, kept)
                   if kept else "")
        raise OllamaError("%s sent a blob whose sha256 is %s, not %s%s; nothing was kept, and the next run downloads "
                          "it whole" % (what, h.hexdigest(), digest, resumed), url=url)
    os.rename(partial, dest)
    return written - kept, kept


def _partial_file(partial, chunk):
    """(file open for writing at its end, sha256 of the bytes before that) for `partial`: the file an interrupted
    download left when it is a regular file with one link owned by this user; else a new, empty one (whatever was
    at that name removed first)."""
    try:
        fd = os.open(partial, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            _unlink(partial)  # a link (ELOOP), a file this user may not write: never opened through
        fd = None
    if fd is not None:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_uid == os.geteuid():
            out = os.fdopen(fd, "r+b")
            h = hashlib.sha256()
            try:
                for block in iter(lambda: out.read(chunk), b""):
                    h.update(block)
            except BaseException:
                out.close()
                raise
            return out, h
        os.close(fd)
        _unlink(partial)  # a FIFO, a device, a file of another user or with other links
    return os.fdopen(os.open(partial, NEW_FILE, 0o666), "wb"), hashlib.sha256()


def _length(header):
    """A Content-Length header's bytes, or None."""
    return int(header) if header and header.strip().isdigit() else None


def _range_start(header):
    """The first byte of a ``Content-Range: bytes <first>-<last>/<size>`` header, or None."""
    found = re.match(r"^\s*bytes\s+(\d+)-\d+/(?:\d+|\*)\s*$", header or "")
    return int(found.group(1)) if found else None


def _unlink(path):
    try:
        os.unlink(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise


def _origin_of(url):
    parts = urlsplit(url)
    return "%s://%s" % (parts.scheme, parts.netloc.rpartition("@")[2])


def _describe(url):
    return "the registry at %s" % origin_text(url)


def _describe_seed(url):
    return "the bundle server at %s" % origin_text(url)


def _explain(exc, url, had_token):
    """A registry's error status in plain words (it never asks for the server's api_token)."""
    text = exc.msg
    if exc.status == 401:
        text += (". The registry refused the token it issued" if had_token else
                 ". The registry asks for credentials this module cannot send (the server's api_token is never sent "
                 "to registries)")
        if is_ollama_com(url):
            text += ". " + SIGNED
    cls = OllamaNotFound if exc.status == 404 else HTTPStatusError
    return cls(text, url=url, status=exc.status, message=exc.message, headers=exc.headers)
