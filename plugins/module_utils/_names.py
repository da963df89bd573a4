# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ollama model names, parsed and compared exactly as the Ollama server does.

Two steps, as the server's pull and delete handlers take them (server/model_resolver.go):

1. ``internal/modelref``: surrounding white space is dropped and a source suffix is read: ``qwen3:local`` is
   ``qwen3``, ``gpt-oss:20b:cloud`` is ``gpt-oss:20b-cloud`` and ``gpt-oss:cloud`` is ``gpt-oss:cloud``;
   ``:local`` and ``:cloud`` together are refused.
2. ``types/model/name.go``: ``[scheme://][host[:port]/][namespace/]model[:tag]``; missing parts take the defaults
   ``registry.ollama.ai``, ``library`` and ``latest``. A scheme is read only in front of a host and the server
   ignores it (it pulls over HTTPS unless ``insecure``), so ``http://model`` (no host) is not a valid name.

Two names are the same model when all four parts match case-insensitively, so ``llama3.2`` is
``registry.ollama.ai/library/llama3.2:latest`` and is *not* ``llama3.2:1b``. The unit tests compare this module with
parses made by Ollama's own Go packages (tests/lab/names_oracle.py).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from collections import namedtuple

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
MISSING = ""

_LIMITS = {"host": 350, "namespace": 80, "model": 80, "tag": 80}
# Go's strings.TrimSpace: Unicode White_Space (Python's str.strip() also drops \x1c-\x1f, which Go keeps).
_GO_SPACE = frozenset(u"\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
                      u"\u200a\u2028\u2029\u202f\u205f\u3000")


class InvalidModelName(ValueError):
    """Raised with a message that says what is wrong with the name and what a valid one looks like."""


class ModelName(namedtuple("ModelName", "host namespace model tag scheme")):
    """A fully qualified name. `scheme` is the one written in front of the host ("" for none); Ollama ignores it."""

    __slots__ = ()

    @property
    def key(self):
        """Case-insensitive identity used to match names against the server's store."""
        return "/".join((self.host, self.namespace, self.model, self.tag)).lower()

    @property
    def short(self):
        """The short form Ollama shows in /api/tags (DisplayShortest: ``llama3.2:latest``, ``host:5000/ns/m:tag``)."""
        if self.host.lower() != DEFAULT_HOST:
            return "%s/%s/%s:%s" % (self.host, self.namespace, self.model, self.tag)
        if self.namespace.lower() != DEFAULT_NAMESPACE:
            return "%s/%s:%s" % (self.namespace, self.model, self.tag)
        return "%s:%s" % (self.model, self.tag)

    def with_parts(self, **parts):
        return self._replace(**parts)

    def manifest_url(self, insecure=False):
        """Where the registry serves this name's manifest (Docker Distribution v2 protocol)."""
        return "%s/manifests/%s" % (self.repository_url(insecure), self.tag)

    def blob_url(self, digest, insecure=False):
        """Where the registry serves a blob of this name's repository."""
        return "%s/blobs/%s" % (self.repository_url(insecure), digest)

    def repository_url(self, insecure=False):
        """As the server reaches it: HTTPS, or plain HTTP with insecure, whatever scheme the name was written with."""
        return "%s://%s/v2/%s/%s" % ("http" if insecure else "https", self.host, self.namespace, self.model)

    @property
    def scope(self):
        """The Distribution token scope to pull this repository."""
        return "repository:%s/%s:pull" % (self.namespace, self.model)


def go_trim_space(value):
    start, end = 0, len(value)
    while start < end and value[start] in _GO_SPACE:
        start += 1
    while end > start and value[end - 1] in _GO_SPACE:
        end -= 1
    return value[start:end]


def _ascii_lower(value):
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in value)


# -- step 1: internal/modelref --------------------------------------------------------------------------------

LOCAL, CLOUD = "local", "cloud"


def _source_suffix(raw):
    """(base, source or None) as modelref.parseSourceSuffix reads the last ':' part."""
    idx = raw.rfind(":")
    if idx >= 0:
        suffix_raw = go_trim_space(raw[idx + 1:])
        suffix = _ascii_lower(suffix_raw)  # only ASCII letters can lower-case into "cloud" or "local"
        if suffix == CLOUD:
            return raw[:idx], CLOUD
        if suffix == LOCAL:
            return raw[:idx], LOCAL
        if "/" not in suffix_raw and suffix.endswith("-cloud"):
            return raw[:idx + 1] + suffix_raw[:-len("-cloud")], CLOUD
    return raw, None


def normalize_pull_name(raw, original=None):
    """What the server's pull and delete parse after modelref (modelref.NormalizePullName). Raises InvalidModelName."""
    original = raw if original is None else original
    raw = go_trim_space(raw)
    if not raw:
        raise InvalidModelName("invalid model name '%s': give a name such as 'llama3.2' or 'llama3.2:3b'" % original)
    base, source = _source_suffix(raw)
    if source is not None and _source_suffix(base)[1] is not None:
        raise InvalidModelName("invalid model name '%s': use either :local or :cloud, not both" % original)
    if source != CLOUD:
        return base
    explicit_tag = base.rfind(":") > base.rfind("/")
    return base + ("-cloud" if explicit_tag else ":cloud")


# -- step 2: types/model/name.go ------------------------------------------------------------------------------

def _cut_promised(value, sep):
    """cutPromised: split at the last `sep`; an empty side becomes MISSING. (before, after, found)."""
    idx = value.rfind(sep)
    if idx < 0:
        return value, MISSING, False
    return value[:idx], value[idx + len(sep):], True


def parse_bare(value):
    """ParseNameBare: (scheme, host, namespace, model, tag), None for a part not written."""
    scheme = host = namespace = tag = None
    if value.rfind(":") > value.rfind("/"):
        value, tag, _found = _cut_promised(value, ":")
    value, model, promised = _cut_promised(value, "/")
    if not promised:
        return scheme, host, namespace, value, tag
    value, namespace, promised = _cut_promised(value, "/")
    if not promised:
        return scheme, host, value, model, tag
    if "://" in value:
        scheme, value = value.split("://", 1)
    return scheme, value, namespace, model, tag


def _check_part(kind, value, original):
    if not value:
        raise InvalidModelName("invalid model name '%s': the %s is empty" % (original, kind))
    if len(value.encode("utf-8")) > _LIMITS[kind]:
        raise InvalidModelName("invalid model name '%s': the %s is longer than %d characters"
                               % (original, kind, _LIMITS[kind]))
    for i, ch in enumerate(value):
        ok = ch.isascii() and (ch.isalnum() or ch == "_")
        if i > 0 and not ok:
            ok = ch in "_-" or (ch == "." and kind != "namespace") or (ch == ":" and kind == "host")
        if not ok:
            where = "start with" if i == 0 else "contain"
            allowed = "letters, digits and _" if i == 0 else {
                "namespace": "letters, digits, _ and -",
                "host": "letters, digits, _, -, . and :",
            }.get(kind, "letters, digits, _, - and .")
            raise InvalidModelName(
                "invalid model name '%s': the %s '%s' may not %s %r (allowed: %s)"
                % (original, kind, value, where, ch, allowed))


def parse_listed_name(name, original=None):
    """Parse a name as types/model ParseName does, without modelref (names the server lists, store paths)."""
    original = name if original is None else original
    scheme, host, namespace, model, tag = parse_bare(name)
    if host is None and namespace is not None and (":" in namespace or "." in namespace) and model:
        raise InvalidModelName(
            "invalid model name '%s': '%s' looks like a registry host, and a registry name needs a namespace "
            "too: write it as '%s/<namespace>/%s:%s'" % (original, namespace, namespace, model, tag or DEFAULT_TAG))
    parsed = ModelName(DEFAULT_HOST if host is None else host, DEFAULT_NAMESPACE if namespace is None else namespace,
                       model, DEFAULT_TAG if tag is None else tag, scheme or "")
    try:
        for kind in ("host", "namespace", "model", "tag"):
            _check_part(kind, getattr(parsed, kind), original)
    except InvalidModelName as exc:
        if "@" in name:
            raise InvalidModelName("invalid model name '%s': pulling by digest (@sha256:...) is not supported; "
                                   "use a tag such as 'model:tag'" % original)
        if "://" in name:
            raise InvalidModelName("%s; a scheme is read only in front of a registry host, as in "
                                   "'host:5000/namespace/model:tag', and Ollama ignores it" % exc)
        raise
    return parsed


def parse_model_name(name):
    """Parse `name` as the server's pull and delete do (modelref, then ParseName), or raise InvalidModelName."""
    if not isinstance(name, str):
        raise InvalidModelName("invalid model name %r: a model name is a string such as 'llama3.2:3b'" % (name,))
    return parse_listed_name(normalize_pull_name(name), original=name)


def existing_name(parsed, names):
    """The name the server stores a pull of `parsed` under, given the ModelNames it has (getExistingName).

    A name that matches one it has (case-insensitively) is that one; otherwise the host, namespace and model take
    the casing of the model it has that shares the longest prefix with it (host, then namespace, then model), and
    the tag stays as written.
    """
    best, best_len = None, 0
    for have in names:
        if have.key == parsed.key:
            return have
        length = 0
        if have.host.lower() == parsed.host.lower():
            length = 1
            if have.namespace.lower() == parsed.namespace.lower():
                length = 2
                if have.model.lower() == parsed.model.lower():
                    length = 3
        if length > best_len:
            best, best_len = have, length
    if best_len == 3:
        return parsed._replace(host=best.host, namespace=best.namespace, model=best.model)
    if best_len == 2:
        return parsed._replace(host=best.host, namespace=best.namespace)
    if best_len == 1:
        return parsed._replace(host=best.host)
    return parsed


STATES = ("present", "absent", "latest")
ITEM_KEYS = ("name", "state", "digest")  # digest: the manifest digest the model is pinned to (_lock.py reads it)


def parse_model_list(items, default_state):
    """[(given name, ModelName, state)] from a list of names or {name, state} dictionaries.

    Raises InvalidModelName listing every bad item (invalid names, unknown keys or states, a model listed twice
    with different states), so nothing is done for a list with a mistake in it.
    """
    errors, seen, wanted, pairs = [], {}, [], []
    for item in items:
        if isinstance(item, dict):
            unknown = sorted(set(str(k) for k in item) - set(ITEM_KEYS))
            state = item.get("state", default_state)
            if unknown or "name" not in item or not isinstance(state, str) or state not in STATES:
                errors.append("models item %r: give 'name' and optionally 'state' (one of %s) and 'digest'%s"
                              % (item, ", ".join(STATES), "; unknown keys: %s" % ", ".join(unknown) if unknown else ""))
                continue
            pairs.append((item["name"], state))
        else:
            pairs.append((item, default_state))
    for given, state in pairs:
        try:
            parsed = parse_model_name(given)
        except InvalidModelName as exc:
            errors.append(str(exc))
            continue
        if parsed.key in seen:
            if seen[parsed.key] != state:
                errors.append("model '%s' is listed twice, as %s and as %s: keep one" % (given, seen[parsed.key], state))
            continue
        seen[parsed.key] = state
        wanted.append((go_trim_space(given), parsed, state))
    if errors:
        raise InvalidModelName("; ".join(errors))
    return wanted
