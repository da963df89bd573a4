# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Model manifests (Docker v2 manifests of Ollama images) and their blobs: the one place that reads them.

A manifest is trusted no more than Ollama trusts it: it must be a JSON object of schema version 2 with at least one
layer (an Ollama model has its weights in one), and every blob it names must have a digest of the form
``sha256:<64 hex>`` (manifest/paths.go accepts ``^sha256[:-][0-9a-fA-F]{64}$`` and refuses
anything else) and a size that is a whole number of bytes. A digest is used in file names and URLs, so one such as
``../../x`` must never get that far.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import re

DIGEST = re.compile(r"^sha256[:-][0-9a-fA-F]{64}$")
MANIFEST_DIGEST = re.compile(r"^(?:sha256[:-])?([0-9a-fA-F]{64})$")
MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


class InvalidManifest(ValueError):
    """A manifest (or a digest) Ollama would refuse; the message says what is wrong."""


def check_digest(digest, what="blob"):
    """`digest` if it is a valid sha256 digest, else InvalidManifest."""
    if not isinstance(digest, str) or not DIGEST.match(digest):
        raise InvalidManifest("the %s digest %s is not sha256:<64 hex digits>" % (what, _show(digest)))
    return digest


def manifest_digest(value):
    """The hex form (as /api/tags shows it) of a manifest digest given as ``<64 hex>`` or ``sha256:<64 hex>``;
    InvalidManifest saying what a digest looks like for anything else."""
    match = MANIFEST_DIGEST.match(value.strip()) if isinstance(value, str) else None
    if not match:
        raise InvalidManifest("the digest %s is not a manifest digest: give the 64 hex digits /api/tags shows (or "
                              "sha256:<64 hex digits>)" % _show(value))
    return match.group(1).lower()


def blobs(manifest):
    """[(digest, size)] of a parsed manifest's layers, then its config, as Ollama walks them; validated."""
    if not isinstance(manifest, dict):
        raise InvalidManifest("a manifest is a JSON object, not %s" % _kind(manifest))
    if manifest.get("schemaVersion") != 2 or isinstance(manifest.get("schemaVersion"), bool):
        raise InvalidManifest("its schemaVersion is %s, not 2 (a Docker v2 manifest, as Ollama's registries send)"
                              % _show(manifest.get("schemaVersion")))
    layers = manifest.get("layers")
    if not isinstance(layers, list) or not layers:
        raise InvalidManifest("its layers are %s, not a list of at least one layer" % _kind(layers))
    found = []
    for i, layer in enumerate(layers):
        found.append(_blob(layer, "layer %d" % (i + 1)))
    config = manifest.get("config")
    if config not in (None, {}):
        if not isinstance(config, dict):
            raise InvalidManifest("its config is %s, not an object" % _kind(config))
        if config.get("digest"):
            found.append(_blob(config, "config"))
    return found


def _blob(entry, what):
    if not isinstance(entry, dict):
        raise InvalidManifest("its %s is %s, not an object" % (what, _kind(entry)))
    digest = check_digest(entry.get("digest"), what)
    size = entry.get("size", 0)
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise InvalidManifest("its %s has the size %s, not a number of bytes" % (what, _show(size)))
    return digest, size


def size(manifest):
    """Bytes of all its blobs."""
    return sum(s for _d, s in blobs(manifest))


def parse(raw):
    """(hex sha256 of the bytes, parsed manifest) of manifest bytes; InvalidManifest when Ollama would refuse it."""
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeError):
        raise InvalidManifest("it is not JSON (%r...)" % raw[:60])
    blobs(manifest)
    return hashlib.sha256(raw).hexdigest(), manifest


def _kind(value):
    if value == []:
        return "an empty list"
    return {dict: "an object", list: "a list", str: "a string", type(None): "null", bool: "a boolean"}.get(
        type(value), "a number")


def _show(value):
    text = json.dumps(value) if isinstance(value, (str, int, float, bool, type(None))) else _kind(value)
    return text if len(text) <= 80 else text[:77] + "..."
