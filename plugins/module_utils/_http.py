# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The HTTP transport under the collection's two clients (_ollama_client.py, _registry_client.py), and their errors.

Plain ``urllib`` with TLS contexts from ``ansible.module_utils.urls.make_context`` (so a managed host needs nothing
but Python, and certificates and proxies behave as in other Ansible modules). It never follows a redirect by
itself: each client says which redirects it follows and which headers must not go to another origin
(``scheme://host:port``), and the transport applies that. Messages name URLs without credentials or query strings.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import socket

from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.six.moves.urllib.parse import urljoin, urlsplit
from ansible.module_utils.six.moves.urllib.request import HTTPSHandler, ProxyHandler, Request, build_opener
from ansible.module_utils.six.moves.urllib.request import HTTPRedirectHandler

try:
    from http.client import HTTPException
except ImportError:  # pragma: no cover
    HTTPException = OSError

try:
    import ssl
    CertificateError = getattr(ssl, "SSLCertVerificationError", ssl.CertificateError)
except ImportError:  # pragma: no cover
    ssl = None
    CertificateError = OSError

# What a request can raise besides HTTPError: refused, reset, DNS, TLS, timeouts, malformed URLs.
TRANSPORT_ERRORS = (URLError, OSError, HTTPException, ValueError)
# What reading an open answer can raise: resets, timeouts, a body cut short (IncompleteRead).
READ_ERRORS = (OSError, HTTPException, ValueError)
# Longest timeout accepted: a day of silence. Python's sockets refuse much more (OverflowError), and no server or
# registry worth waiting for is silent that long.
MAX_TIMEOUT = 86400
MAX_REDIRECTS = 10
REDIRECTS = (301, 302, 303, 307, 308)
AGENT = "llmops.ollama"


class OllamaError(Exception):
    """A failure a module reports as it is: the message says what happened, where, and what to do."""

    def __init__(self, msg, url=None, status=None):
        super(OllamaError, self).__init__(msg)
        self.msg = msg
        self.url = url
        self.status = status


class OllamaUnreachable(OllamaError):
    """The server (or registry) did not answer at all, or the connection broke."""


class OllamaTimeout(OllamaUnreachable):
    """No answer within the timeout (the other side may still be working)."""


class HTTPStatusError(OllamaError):
    """An answer with an error status. `message` is what the other side said; `headers` its headers."""

    def __init__(self, msg, url=None, status=None, message="", headers=None):
        super(HTTPStatusError, self).__init__(msg, url=url, status=status)
        self.message = message
        self.headers = headers or {}


class OllamaNotFound(HTTPStatusError):
    """404: the model (or manifest) does not exist."""


def check_timeout(value, option="timeout"):
    if value is None or isinstance(value, bool) or not 0 < value <= MAX_TIMEOUT:
        raise OllamaError("%s must be a positive number of seconds, at most %d (a day), got %s"
                          % (option, MAX_TIMEOUT, value))
    return value


def ca_context(ca_path=None, ca_pem=None, option="bundle_ca_path"):
    """A TLS client context that trusts the given CA only (a PEM file, or its PEM text), never the system's store,
    and checks the certificate and the host name as always (verification cannot be turned off here). None when no
    CA is given. Raises OllamaError naming `option` for a CA it cannot use."""
    if not ca_path and not ca_pem:
        return None
    if ssl is None:  # pragma: no cover
        raise OllamaError("%s needs Python's ssl module, which this host's Python lacks" % option)
    try:
        context = ssl.create_default_context(cafile=ca_path or None, cadata=None if ca_path else ca_pem)
    except (IOError, OSError, ValueError, TypeError) as exc:  # ssl.SSLError is an OSError
        raise OllamaError("cannot use %s: %s; give the CA certificate (PEM, -----BEGIN CERTIFICATE-----)"
                          % (option, short(exc)))
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    if hasattr(ssl, "TLSVersion"):
        context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def redact(url):
    """`url` as messages may show it: no user name, password, query or fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = "[%s]" % host
        port = ":%d" % parts.port if parts.port else ""
    except ValueError:
        return "(an invalid URL)"
    return "%s://%s%s%s" % (parts.scheme, host, port, parts.path)


def origin(url):
    """(scheme, host, port) with the scheme's default port: what a redirect may not leave with credentials."""
    parts = urlsplit(url)
    scheme = (parts.scheme or "").lower()
    return scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(scheme)


def origin_text(url):
    scheme, host, port = origin(url)
    return "%s://%s:%s" % (scheme, "[%s]" % host if ":" in host else host, port)


def short(exc):
    text = str(exc) or exc.__class__.__name__
    prefix = "<url" + "open error "  # how urllib wraps a reason
    return text.replace(prefix, "").rstrip(">")


class _NoRedirects(HTTPRedirectHandler):
    """Hands every redirect back as an HTTPError; the transport decides."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise HTTPError(newurl, code, msg, headers, fp)


class Redirect(object):
    """What a client follows: `methods` that may be redirected, whether another origin is allowed (then `strip`
    headers are dropped), and whether HTTPS may turn into plain HTTP.

    `rule`, when given, decides instead of `other_origin` which redirects are followed, after the checks every
    redirect gets (a Location that is an HTTP(S) URL, the method, no HTTPS to HTTP): ``rule(visited, target,
    status)``, with `visited` the URLs requested so far (the first one first, the one redirected last), raises an
    OllamaError to refuse the redirect and returns to follow it (`strip` headers are then dropped when the origin
    changes)."""

    def __init__(self, methods=("GET", "HEAD"), other_origin=False, strip=(), downgrade=False, rule=None):
        self.methods = methods
        self.other_origin = other_origin
        self.strip = set(h.lower() for h in strip)
        self.downgrade = downgrade
        self.rule = rule


NO_REDIRECTS = Redirect(methods=())


class Response(object):
    """An open answer: `read`/`readline`, `status`, `headers`, `url` (after redirects); close it."""

    def __init__(self, raw, url):
        self.raw = raw
        self.url = url
        self.status = getattr(raw, "status", None) or raw.getcode()
        self.headers = raw.headers

    def read(self, *args):
        return self.raw.read(*args)

    def readline(self):
        return self.raw.readline()

    def close(self):
        self.raw.close()


class Transport(object):
    """Requests with one TLS context and timeout. `describe(url)` names the other side in messages."""

    def __init__(self, timeout, context, describe, unreachable_hint=""):
        self.timeout = timeout
        self.context = context
        self.describe = describe
        self.unreachable_hint = unreachable_hint
        self._opener = build_opener(ProxyHandler(), HTTPSHandler(context=context), _NoRedirects())

    def open(self, url, method="GET", headers=None, data=None, redirect=NO_REDIRECTS, timeout=None):
        """Open `url`, following redirects as `redirect` allows; returns a Response or raises an OllamaError.

        `timeout`, when given, replaces the transport's own for this request."""
        headers = dict(headers or {})
        start = url
        visited = []
        for _hop in range(MAX_REDIRECTS + 1):
            visited.append(url)
            try:
                return Response(self._open_once(url, method, headers, data, timeout), url)
            except HTTPError as exc:
                if exc.code not in REDIRECTS:
                    raise status_error(exc, url, self.describe(start))
                location = exc.headers.get("Location") if exc.headers else None
                _close(exc)
                url, headers = self._next(visited, method, headers, location, exc.code, redirect)
        raise OllamaError("%s redirected more than %d times, starting at %s; check the address"
                          % (self.describe(start), MAX_REDIRECTS, redact(start)), url=start)

    def _next(self, visited, method, headers, location, code, redirect):
        start, url = visited[0], visited[-1]
        what = self.describe(start)
        if not location:
            raise OllamaError("%s answered HTTP %d for %s with no Location to go to" % (what, code, urlsplit(url).path),
                              url=url, status=code)
        try:
            target = urljoin(url, location)
            origin(target)  # a port that is not a number raises here
        except ValueError:
            raise OllamaError("%s answered HTTP %d for %s with a Location that is not a URL (%r)"
                              % (what, code, urlsplit(url).path, location[:80]), url=url, status=code)
        if method not in redirect.methods:
            text = ("%s answered %s %s with a redirect (HTTP %d) to %s; the request is not repeated there: if that "
                    "is the right address, use it" % (what, method, urlsplit(url).path, code, redact(target)))
            raise OllamaError(text, url=url, status=code)
        scheme = urlsplit(target).scheme.lower()
        if scheme not in ("http", "https"):
            raise OllamaError("%s redirected to %s, which is not HTTP(S); nothing was fetched there"
                              % (what, redact(target)), url=url, status=code)
        if origin(url)[0] == "https" and scheme == "http" and not redirect.downgrade:
            raise OllamaError("%s redirected from HTTPS to plain HTTP (%s); refused (set insecure: true only for a "
                              "registry you trust on the LAN)" % (what, redact(target)), url=url, status=code)
        if redirect.rule is not None:
            redirect.rule(list(visited), target, code)
        if origin(target) != origin(url):
            if not redirect.other_origin and redirect.rule is None:
                raise OllamaError("%s redirected to another address, %s; the connection options (api_token, headers) "
                                  "are not sent there: if that is the server, set base_url to it"
                                  % (what, origin_text(target)), url=url, status=code)
            headers = dict((k, v) for k, v in headers.items() if k.lower() not in redirect.strip)
        return target, headers

    def _open_once(self, url, method, headers, data, timeout=None):
        req = Request(url, data=data, headers=headers)
        req.get_method = lambda: method
        req.add_header("User-Agent", AGENT)
        try:
            return self._opener.open(req, timeout=timeout or self.timeout)
        except HTTPError:
            raise
        except TRANSPORT_ERRORS as exc:
            raise self.unreachable(url, exc, timeout)

    def unreachable(self, url, exc, timeout=None):
        what = self.describe(url)
        reason = getattr(exc, "reason", None) or exc  # ssl.SSLError has a reason that may be None
        if isinstance(reason, socket.timeout) or isinstance(exc, socket.timeout):
            return OllamaTimeout("no answer from %s within %ss (timeout). %s"
                                 % (what, timeout or self.timeout, self.unreachable_hint), url=url)
        if _is_tls(reason):
            return OllamaUnreachable("TLS verification failed for %s: %s. %s" % (what, short(reason), self.tls_hint()),
                                     url=url)
        return OllamaUnreachable("could not reach %s (%s): %s. %s" % (what, redact(url), short(reason),
                                                                      self.unreachable_hint), url=url)

    def tls_hint(self):
        return "Give the CA that signed its certificate."


def _is_tls(reason):
    if ssl is None:
        return False
    return isinstance(reason, (ssl.SSLError, CertificateError)) or "CERTIFICATE_VERIFY_FAILED" in str(reason)


def _close(exc):
    try:
        exc.close()
    except Exception:  # pylint: disable=broad-except
        pass


def status_error(exc, url, what):
    """An HTTPStatusError (OllamaNotFound for 404) saying what `what` answered, in its own words."""
    body = b""
    try:
        body = exc.read() or b""
    except Exception:  # pylint: disable=broad-except
        pass
    _close(exc)
    message = ""
    try:
        parsed = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeError):
        parsed = None
        message = body.decode("utf-8", "replace").strip()[:200]
    if isinstance(parsed, dict):
        message = parsed.get("error") or ""
        if isinstance(message, (dict, list)):  # keep it readable
            message = json.dumps(message)[:200]
        errors = parsed.get("errors")
        if not message and isinstance(errors, list):  # registries answer {"errors": [{code, message}]}
            message = "; ".join(_registry_error(e) for e in errors if _registry_error(e))
    elif parsed is not None:
        message = body.decode("utf-8", "replace").strip()[:200]
    message = str(message)
    text = "%s answered HTTP %s for %s: %s" % (what, exc.code, urlsplit(url).path, message or exc.reason)
    cls = OllamaNotFound if exc.code == 404 else HTTPStatusError
    return cls(text, url=url, status=exc.code, message=message, headers=exc.headers or {})


def _registry_error(entry):
    """One of a registry's {"errors": [...]} in words ("" when there are none in it)."""
    if isinstance(entry, dict):
        words = [str(entry.get(k)) for k in ("code", "message") if entry.get(k) not in (None, "")]
        return ": ".join(words)
    return str(entry) if entry not in (None, "") else ""
