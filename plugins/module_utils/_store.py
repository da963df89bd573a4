# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ollama's on-disk store layout, which is also the layout of a model bundle.

``<root>/manifests/<host>/<namespace>/<model>/<tag>`` holds a manifest exactly as the registry served it, and
``<root>/blobs/sha256-<hex>`` each blob. Any server's OLLAMA_MODELS directory is a bundle, and a bundle can be
carried into an air-gapped site as a plain directory.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import pwd
import re
import tempfile

from ansible_collections.llmops.ollama.plugins.module_utils._manifest import (
    InvalidManifest,
    blobs,
    check_digest,
    parse,
)
from ansible_collections.llmops.ollama.plugins.module_utils._names import InvalidModelName, parse_listed_name

BLOB_FILE = re.compile(r"^sha256-[0-9a-fA-F]{64}$")  # a blob's file name in a store or bundle


def default_models_dir():
    """The server's store on this host: OLLAMA_MODELS, else the service user's (when it exists), else ~/.ollama/models."""
    if os.environ.get("OLLAMA_MODELS"):
        return os.environ["OLLAMA_MODELS"]
    service_store = "/usr/share/ollama/.ollama/models"
    if os.path.isdir(service_store):
        return service_store
    return os.path.join(pwd.getpwuid(os.getuid()).pw_dir, ".ollama", "models")


def manifest_path(root, name):
    """Path of a parsed ModelName's manifest under `root` (host, namespace, model, tag as written in the name)."""
    return os.path.join(root, "manifests", name.host, name.namespace, name.model, name.tag)


def find_manifest(root, name):
    """The existing manifest file of `name` under `root`, matched case-insensitively as Ollama does, or None.

    Every casing on disk is looked at (``Lab/`` and ``lab/`` may both be there), the first in sorted order wins."""
    paths = [os.path.join(root, "manifests")]
    for part in (name.host, name.namespace, name.model, name.tag):
        wanted, found = part.lower(), []
        for path in paths:
            try:
                entries = sorted(os.listdir(path)) if os.path.isdir(path) else []
            except OSError:
                entries = []
            found.extend(os.path.join(path, e) for e in entries if e.lower() == wanted)
        paths = found
    files = [p for p in paths if os.path.isfile(p)]
    return files[0] if files else None


def blob_path(root, digest):
    """Path of blob `digest` under `root`; InvalidManifest for a digest that is not sha256:<64 hex>."""
    return os.path.join(root, "blobs", check_digest(digest).replace(":", "-"))


def sha256_file(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(path):
    """(hex digest of the bytes, parsed manifest) of a manifest file; InvalidManifest if Ollama would refuse it."""
    with open(path, "rb") as f:
        return parse(f.read())


def atomic_write(path, data, owner_of=None):
    """Write `data` to `path` through a temporary file in the same directory and a rename.

    With `owner_of`, the new file and any directory made get that path's owner and group.
    """
    directory = os.path.dirname(path)
    made = []
    probe = directory
    while not os.path.isdir(probe):
        made.append(probe)
        probe = os.path.dirname(probe)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        if owner_of:
            st = os.stat(owner_of)
            for entry in made + [tmp]:
                os.chown(entry, st.st_uid, st.st_gid)
        os.rename(tmp, path)
    except Exception:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _dirs(path):
    """Sub-directories of `path`, sorted; files (a .DS_Store) and unreadable entries are not models."""
    try:
        return sorted(e for e in os.listdir(path) if os.path.isdir(os.path.join(path, e)))
    except OSError:
        return []


def stored_manifests(root):
    """[(ModelName, path)] of the manifests under `root`, as Ollama finds them (manifest.Manifests): files four
    levels down, named by a valid host/namespace/model/tag; anything else (stray files, folders, bad names) is
    skipped, as Ollama skips it."""
    found = []
    top = os.path.join(root, "manifests")
    for host in _dirs(top):
        for namespace in _dirs(os.path.join(top, host)):
            for model in _dirs(os.path.join(top, host, namespace)):
                folder = os.path.join(top, host, namespace, model)
                try:
                    tags = sorted(os.listdir(folder))
                except OSError:
                    continue
                for tag in tags:
                    path = os.path.join(folder, tag)
                    if not os.path.isfile(path):
                        continue
                    try:
                        name = parse_listed_name("%s/%s/%s:%s" % (host, namespace, model, tag))
                    except InvalidModelName:
                        continue
                    if (name.host, name.namespace, name.model, name.tag) == (host, namespace, model, tag):
                        found.append((name, path))
    return found


def index_entry(raw):
    """The index entry of the manifest bytes `raw`: {digest, size, blobs, manifest}; InvalidManifest or UnicodeError
    for a manifest Ollama would refuse."""
    digest, manifest = parse(raw)
    text = raw.decode("utf-8")
    walked = blobs(manifest)
    return dict(digest=digest, blobs=[d for d, _s in walked], manifest=text, size=sum(s for _d, s in walked))


def bundle_index(root):
    """What a store or bundle holds: {"models": {short name: {digest, size, blobs, manifest}}}.

    `manifest` is the manifest text exactly as stored, so a host can write the same bytes (and digest). Manifests
    Ollama would refuse (not JSON, bad digests) are left out, as Ollama leaves them out of its list.
    """
    models = {}
    for name, path in stored_manifests(root):
        try:
            with open(path, "rb") as f:
                models[name.short] = index_entry(f.read())
        except (InvalidManifest, OSError, UnicodeError):
            continue
    return dict(models=models)


def listed_name(root, path):
    """The short name Ollama lists the manifest file `path` under `root` as (see stored_manifests), or None when it
    would not list it."""
    parts = os.path.relpath(path, os.path.join(root, "manifests")).split(os.sep)
    if len(parts) != 4:
        return None
    try:
        name = parse_listed_name("%s/%s/%s:%s" % tuple(parts))
    except InvalidModelName:
        return None
    return name.short if (name.host, name.namespace, name.model, name.tag) == tuple(parts) else None


def unused_blobs(root, used):
    """[(digest, size)] of the blob files under `root` whose digest is not in `used` (digests as manifests give
    them), sorted. Only files named as blobs are looked at (not .partial files, nor stray ones)."""
    used = set(d.replace(":", "-") for d in used)
    folder = os.path.join(root, "blobs")
    try:
        names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    except OSError:
        return []
    found = []
    for name in names:
        path = os.path.join(folder, name)
        if name in used or not BLOB_FILE.match(name) or not os.path.isfile(path):
            continue
        found.append((name.replace("-", ":", 1), os.path.getsize(path)))
    return found


def prune_layers(models_dir, replaced):
    """Remove the blobs of a replaced manifest that no manifest in the store uses any more, as Ollama's pull does
    (deleteUnusedLayers). Returns how many were removed."""
    unused = set(d for d, _s in replaced)
    for _name, path in stored_manifests(models_dir):
        try:
            with open(path, "rb") as f:
                manifest = json.loads(f.read().decode("utf-8"))
            unused.difference_update(d for d, _s in blobs(manifest))
        except (ValueError, UnicodeError, InvalidManifest, OSError):
            continue  # as Ollama, a broken manifest does not keep layers alive
    removed = 0
    for digest in unused:
        path = blob_path(models_dir, digest)
        if os.path.isfile(path):
            os.unlink(path)
            removed += 1
    return removed


def old_blobs(path):
    """[(digest, size)] of the manifest file at `path`, or [] when it cannot be read (nothing to keep alive)."""
    try:
        with open(path, "rb") as f:
            return blobs(json.loads(f.read().decode("utf-8")))
    except (ValueError, UnicodeError, InvalidManifest, OSError):
        return []
