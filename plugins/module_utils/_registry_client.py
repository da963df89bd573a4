# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The client of model registries (Docker Distribution v2, as Ollama pulls from them) and of bundle seeds.

Its TLS settings are its own: the system's trust store, plus ``registry_ca_path`` when a site registry has its own
CA; a bundle seed given a CA of its own (``bundle_ca_path`` or ``bundle_ca_pem``, as the models role gives its peers'
CA for a rollout) is trusted against that CA alone. Nothing of the Ollama server's connection options (``ca_path``,
``client_cert``, ``api_token``, ``headers``) is ever used here. A registry that answers 401 with ``WWW-Authenticate:
Bearer realm=...,service=...,scope=...`` gets what Docker clients and Ollama send: an anonymous ``GET
<realm>?service=...&scope=...``, and the token it returns as ``Authorization: Bearer``. Blob downloads follow
redirects to other hosts (registry.ollama.ai sends them to a CDN) without the token, and never from HTTPS to plain
HTTP unless ``insecure``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import hashlib
import json
import os
import re

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
CHALLENGE_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')
MAX_TOKEN_BYTES = 1 << 20


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

    # -- requests with the token dance ---------------------------------------------------------------
    def _get(self, url, scope, headers=None, insecure=False, method="GET"):
        """GET (or HEAD) a registry URL, answering a Bearer challenge once; returns the open Response."""
        headers = dict(headers or {})
        redirect = Redirect(methods=("GET", "HEAD"), other_origin=True, strip=("Authorization",), downgrade=insecure)
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
        """The token a Bearer challenge asks for, fetched anonymously from its realm."""
        challenge = exc.headers.get("WWW-Authenticate") if exc.headers else None
        scheme, params = parse_challenge(challenge)
        where = _describe(url)
        if scheme != "bearer" or not params.get("realm"):
            raise OllamaError("%s asks for a login (%s) for %s, which neither this module nor the Ollama server can "
                              "give: pull from a registry that allows anonymous pulls (or a token service)"
                              % (where, (challenge or "no WWW-Authenticate").split(" ")[0], urlsplit(url).path),
                              url=url, status=401)
        realm = params["realm"]
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise OllamaError("%s named a token service that is not an HTTP(S) URL (%s)" % (where, redact(realm)),
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
        try:
            resp = self.transport.open(token_url, "GET", {"Accept": "application/json"}, None,
                                       Redirect(other_origin=True, downgrade=insecure))
        except HTTPStatusError as err:
            raise OllamaError("the token service of %s (%s) refused an anonymous token for %s: HTTP %s %s. The server "
                              "cannot pull from there either" % (where, origin_text(realm), scope or "the request",
                                                                 err.status, err.message), url=url, status=401)
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
        token = answer.get("token") or answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token or re.search(r"[\x00-\x20\x7f]", token):
            raise OllamaError("the token service of %s (%s) answered without a usable token"
                              % (where, origin_text(realm)), url=url, status=401)
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
        """Download a registry blob of `name` to `dest`, verifying its sha256 on the way. Returns bytes written."""
        url = name.blob_url(check_digest(digest), insecure)
        resp = self._get(url, name.scope, insecure=insecure)
        return _save(resp, url, digest, dest, _describe(url))

    def download_from_seed(self, base, headers, digest, dest):
        """Download blob `digest` of a bundle served at `base` (see seed_url) to `dest`. Returns bytes written."""
        url = "%s/blobs/%s" % (base, check_digest(digest).replace(":", "-"))
        resp = self.seed.open(url, "GET", headers, None, Redirect(other_origin=True, strip=("Authorization",)))
        return _save(resp, url, digest, dest, _describe_seed(url))


def seed_url(url):
    """(URL without credentials, headers carrying them) of a bundle_url, which may hold user:password@."""
    try:
        parts = urlsplit(url)
        parts.port  # pylint: disable=pointless-statement  # a port that is not a number raises here
    except ValueError as exc:
        raise OllamaError("bundle_url is not a URL (%s): give the http:// or https:// URL of the bundle directory"
                          % exc)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OllamaError("bundle_url %s is not an http:// or https:// URL of the bundle directory" % redact(url))
    headers = {}
    if parts.username is not None or parts.password is not None:
        login = "%s:%s" % (unquote(parts.username or ""), unquote(parts.password or ""))
        headers["Authorization"] = "Basic " + base64.b64encode(login.encode("utf-8")).decode("ascii")
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), parts.query, "")), headers


def _save(resp, url, digest, dest, what, chunk=1 << 20):
    """Write the body to `dest`.partial, verify it is `digest`, rename it to `dest`. Returns bytes written.

    A failure to read is an OllamaError; a failure to write (the disk) is the OSError itself."""
    partial = dest + ".partial"
    h, written = hashlib.sha256(), 0
    try:
        with open(partial, "wb") as out:
            while True:
                try:
                    block = resp.read(chunk)
                except READ_ERRORS as exc:
                    raise OllamaError("downloading %s from %s failed after %d bytes: %s; run again to finish"
                                      % (digest, what, written, short(exc)), url=url)
                if not block:
                    break
                h.update(block)
                out.write(block)
                written += len(block)
    except Exception:
        if os.path.exists(partial):
            os.unlink(partial)
        raise
    finally:
        resp.close()
    if "sha256:" + h.hexdigest() != digest.replace("-", ":", 1).lower():
        os.unlink(partial)
        raise OllamaError("%s sent a blob whose sha256 is %s, not %s; nothing was kept"
                          % (what, h.hexdigest(), digest), url=url)
    os.rename(partial, dest)
    return written


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
    cls = OllamaNotFound if exc.status == 404 else HTTPStatusError
    return cls(text, url=url, status=exc.status, message=exc.message, headers=exc.headers)
