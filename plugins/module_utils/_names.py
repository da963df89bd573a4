# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ollama model names, parsed and compared exactly as the Ollama server does (types/model/name.go).

A name has up to four parts: ``[scheme://][host[:port]/][namespace/]model[:tag]``. Missing parts take the
defaults ``registry.ollama.ai``, ``library`` and ``latest``. Two names are the same model when all four
parts match case-insensitively, so ``llama3.2`` is ``registry.ollama.ai/library/llama3.2:latest`` and is
*not* ``llama3.2:1b``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from collections import namedtuple

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
MISSING = ""

_LIMITS = {"host": 350, "namespace": 80, "model": 80, "tag": 80}


class InvalidModelName(ValueError):
    """Raised with a message that says what is wrong with the name and what a valid one looks like."""


class ModelName(namedtuple("ModelName", "host namespace model tag scheme")):
    __slots__ = ()

    @property
    def key(self):
        """Case-insensitive identity used to match names against the server's store."""
        return "/".join((self.host, self.namespace, self.model, self.tag)).lower()

    @property
    def short(self):
        """The short form Ollama shows in /api/tags (``llama3.2:latest``, ``host:5000/ns/m:tag``)."""
        if self.host.lower() != DEFAULT_HOST:
            return "%s/%s/%s:%s" % (self.host, self.namespace, self.model, self.tag)
        if self.namespace.lower() != DEFAULT_NAMESPACE:
            return "%s/%s:%s" % (self.namespace, self.model, self.tag)
        return "%s:%s" % (self.model, self.tag)

    def manifest_url(self, insecure=False):
        """Where the registry serves this name's manifest (Docker Distribution v2 protocol)."""
        return "%s/manifests/%s" % (self._repository_url(insecure), self.tag)

    def blob_url(self, digest, insecure=False):
        """Where the registry serves a blob of this name's repository."""
        return "%s/blobs/%s" % (self._repository_url(insecure), digest)

    def _repository_url(self, insecure):
        scheme = "http" if insecure else self.scheme
        return "%s://%s/v2/%s/%s" % (scheme, self.host, self.namespace, self.model)


def _cut_last(value, sep):
    """Split at the last `sep`; an empty side becomes MISSING and is caught by validation."""
    idx = value.rfind(sep)
    if idx < 0:
        return value, None
    return value[:idx], value[idx + len(sep):]


def _check_part(kind, value, original):
    if not value:
        raise InvalidModelName("invalid model name '%s': the %s is empty" % (original, kind))
    if len(value) > _LIMITS[kind]:
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


def parse_model_name(name):
    """Parse `name` into a fully qualified ModelName, or raise InvalidModelName saying why."""
    if not isinstance(name, str):
        raise InvalidModelName("invalid model name %r: a model name is a string such as 'llama3.2:3b'" % (name,))
    original = name
    value = name.strip()
    if not value:
        raise InvalidModelName("invalid model name '': give a name such as 'llama3.2' or 'llama3.2:3b'")
    if "@" in value:
        raise InvalidModelName("invalid model name '%s': pulling by digest (@sha256:...) is not supported; "
                               "use a tag such as 'model:tag'" % original)
    scheme = "https"
    if "://" in value:
        scheme, value = value.split("://", 1)
        if scheme not in ("http", "https"):
            raise InvalidModelName("invalid model name '%s': the registry scheme must be http or https" % original)
    tag = DEFAULT_TAG
    if value.rfind(":") > value.rfind("/"):
        value, tag = _cut_last(value, ":")
    rest, model = _cut_last(value, "/")
    if model is None:
        return _validated(ModelName(DEFAULT_HOST, DEFAULT_NAMESPACE, rest, tag, scheme), original)
    host_part, namespace = _cut_last(rest, "/")
    if namespace is None:
        namespace, host = host_part, DEFAULT_HOST
        if ":" in namespace or "." in namespace:
            raise InvalidModelName(
                "invalid model name '%s': '%s' looks like a registry host, and a registry name needs a "
                "namespace too: write it as '%s/<namespace>/%s:%s'" % (original, namespace, namespace, model, tag))
    else:
        host = host_part
    return _validated(ModelName(host, namespace, model, tag, scheme), original)


def _validated(parsed, original):
    for kind in ("host", "namespace", "model", "tag"):
        _check_part(kind, getattr(parsed, kind), original)
    return parsed


STATES = ("present", "absent", "latest")


def parse_model_list(items, default_state):
    """[(given name, ModelName, state)] from a list of names or {name, state} dictionaries.

    Raises InvalidModelName listing every bad item (invalid names, unknown keys or states, a model listed twice
    with different states), so nothing is done for a list with a mistake in it.
    """
    errors, seen, wanted, pairs = [], {}, [], []
    for item in items:
        if isinstance(item, dict):
            unknown = sorted(set(item) - set(("name", "state")))
            state = item.get("state", default_state)
            if unknown or "name" not in item or state not in STATES:
                errors.append("models item %r: give 'name' and optionally 'state' (one of %s)%s"
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
        wanted.append((given.strip(), parsed, state))
    if errors:
        raise InvalidModelName("; ".join(errors))
    return wanted
