# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Models pinned by digest: the ``digest`` of a models item, and locks (model name -> manifest digest).

A digest is the sha256 of the model's manifest as the server stores it, which is the ``digest`` /api/tags shows and
the registry's manifest digest for the tag (Ollama stores the manifest exactly as fetched). It is kept in the hex form
/api/tags shows; ``sha256:<hex>`` is read as well.

A lock is a mapping of model names to digests (a YAML file written by playbooks/lock.yml). Its names are matched the
way Ollama matches names (``lab/tiny`` is ``lab/tiny:latest``, case-insensitive). One lock serves a fleet: applied to
one host's list, the entries for models that host does not list are left out (``unlisted="ignore"``), or refused
(``unlisted="fail"``, for a single call where every entry must be for a listed model).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.llmops.ollama.plugins.module_utils._manifest import InvalidManifest, blobs, manifest_digest
from ansible_collections.llmops.ollama.plugins.module_utils._names import InvalidModelName, parse_model_name
from ansible_collections.llmops.ollama.plugins.module_utils._ollama_client import ModelIndex
from ansible_collections.llmops.ollama.plugins.module_utils._staging import UnsafeStaging, open_blob, staging_dir
from ansible_collections.llmops.ollama.plugins.module_utils._store import (
    atomic_write,
    find_manifest,
    manifest_path,
    old_blobs,
    prune_layers,
)

UNLISTED = ("ignore", "fail")


class InvalidLock(ValueError):
    """A lock or a pinned digest that cannot be used; the message says what is wrong and what to do."""


def _digest(value, where):
    try:
        return manifest_digest(value)
    except InvalidManifest as exc:
        raise InvalidLock("%s: %s" % (where, exc))


def read_lock(lock, where="the lock"):
    """{model key: (name as written, hex digest)} of a lock mapping; None is an empty lock. Raises InvalidLock."""
    if lock is None:
        return {}
    if not isinstance(lock, dict):
        raise InvalidLock("%s is %s, not a mapping of model names to digests (name: <64 hex digits>)"
                          % (where, _kind(lock)))
    found = {}
    for name, digest in lock.items():
        entry = "%s: the entry %r" % (where, name)
        if not isinstance(name, str):
            raise InvalidLock("%s is not a model name (a string such as 'llama3.2:3b')" % entry)
        try:
            parsed = parse_model_name(name)
        except InvalidModelName as exc:
            raise InvalidLock("%s: %s" % (entry, exc))
        hexdigest = _digest(digest, entry)
        if parsed.key in found and found[parsed.key][1] != hexdigest:
            raise InvalidLock("%s names the same model as the entry %r with another digest (%s, %s): keep one"
                              % (entry, found[parsed.key][0], hexdigest, found[parsed.key][1]))
        found[parsed.key] = (name, hexdigest)
    return found


def _item(item):
    """(name, state or None, digest or None) of a models item (a name, or a dictionary)."""
    if isinstance(item, dict):
        return item.get("name"), item.get("state"), item.get("digest")
    return item, None, None


def pins(items, default_state="present"):
    """{model key: hex digest} of the items that give a digest; InvalidLock for a bad digest, or a digest on an
    item whose state is absent. Names are the caller's to check (parse_model_list); a bad one is skipped here."""
    found = {}
    for item in items or []:
        name, state, digest = _item(item)
        if digest is None:
            continue
        try:
            parsed = parse_model_name(name)
        except InvalidModelName:
            continue
        where = "models item %r" % (name,)
        hexdigest = _digest(digest, where)
        if (state or default_state) == "absent":
            raise InvalidLock("%s is listed as absent and pinned to digest %s: a removed model has no digest; drop "
                              "the digest (or the model's entry in the lock)" % (where, hexdigest))
        if parsed.key in found and found[parsed.key] != hexdigest:
            raise InvalidLock("%s is pinned twice, to %s and to %s: keep one" % (where, found[parsed.key], hexdigest))
        found[parsed.key] = hexdigest
    return found


def apply_lock(items, locks, unlisted="ignore", where="the lock"):
    """The models items with the digest of each locked model set (a name becomes {name, digest}).

    `locks` is one lock or a list of them; a later lock's entry wins over an earlier one's for the same model. An
    item with a digest of its own must agree with the lock. `unlisted`: what an entry for a model that is not among
    the items (or only as absent) does: "ignore" leaves it out, "fail" refuses it. Raises InvalidLock.
    """
    if unlisted not in UNLISTED:
        raise InvalidLock("unlisted must be one of %s, not %r" % (", ".join(UNLISTED), unlisted))
    merged = {}
    for i, lock in enumerate(locks if isinstance(locks, list) else [locks]):
        merged.update(read_lock(lock, where if not isinstance(locks, list) or len(locks) == 1
                                else "%s %d" % (where, i + 1)))
    if items is None:
        items = []
    if not isinstance(items, list):
        raise InvalidLock("the models are %s, not a list of names or dictionaries" % _kind(items))
    out, used = [], set()
    for item in items:
        name, state, digest = _item(item)
        try:
            key = parse_model_name(name).key
        except InvalidModelName:
            out.append(item)  # the module that gets the list says what is wrong with it
            continue
        if key not in merged:
            out.append(item)
            continue
        written, locked = merged[key]
        if state == "absent":
            if unlisted == "fail":
                raise InvalidLock("%s pins %r, which the models list as absent: drop its entry from the lock, or list "
                                  "the model as present" % (where, written))
            out.append(item)
            continue
        if digest is not None and _digest(digest, "models item %r" % (name,)) != locked:
            raise InvalidLock("models item %r is pinned to %s, and %s pins it to %s: keep one"
                              % (name, manifest_digest(digest), where, locked))
        used.add(key)
        pinned = dict(item) if isinstance(item, dict) else dict(name=item)
        pinned["digest"] = locked
        out.append(pinned)
    if unlisted == "fail":
        extra = sorted(written for key, (written, _d) in merged.items() if key not in used)
        if extra:
            raise InvalidLock("%s pins %s, which %s not among the models listed: list %s, or drop %s from the lock"
                              % (where, ", ".join(repr(e) for e in extra), "is" if len(extra) == 1 else "are",
                                 "it" if len(extra) == 1 else "them", "it" if len(extra) == 1 else "them"))
    return out


def drift(items, models):
    """[{name, model, digest, locked}] of the pinned items (see apply_lock) that `models` (/api/tags entries, as
    llmops.ollama.ollama_facts returns them) do not have at their digest; `digest` is None for a missing model."""
    index = ModelIndex(models or [])
    found = []
    for key, locked in sorted(pins(items).items()):
        name = [n for n, _s, d in (_item(i) for i in items) if d is not None and _key(n) == key][0]
        parsed = parse_model_name(name)
        have = index.get(parsed)
        digest = have.get("digest") if have else None
        if digest != locked:
            found.append(dict(name=name, model=index.stored_name(parsed), digest=digest, locked=locked))
    return found


def _key(name):
    try:
        return parse_model_name(name).key
    except InvalidModelName:
        return None


def _kind(value):
    return {list: "a list", str: "a string", type(None): "nothing", bool: "a boolean"}.get(type(value), "a number")


def install_by_digest(client, registry, name, raw, manifest, models_dir, staging, insecure=False, noprune=False):
    """Put the manifest `raw` (fetched by digest) and its blobs on the server whose store is `models_dir` on this
    host, as ollama_import does from a bundle: each blob the server lacks is downloaded from the registry into the
    staging directory `staging` (ollama_model's staging_dir, as given; looked at, and made when missing, by
    _staging.staging_dir only when a blob is to be fetched, never inside the server's store), verified by its sha256,
    uploaded through the server's API (which verifies it again), then removed. The manifest is written last,
    atomically, with the registry's exact bytes. Blobs of the replaced manifest that no model uses any more are
    removed, as a pull removes them, unless `noprune` (the server runs with OLLAMA_NOPRUNE set, and its own pulls keep
    them).

    An interrupted download keeps its ``<blob>.partial`` file there, and the next run asks the registry only for the
    rest (see _registry_client._save). A staged blob the upload did not take (the run stopped, the server failed) stays
    at its name, and the next run verifies it instead of downloading it again (as a partial download that is already
    whole: the registry answers the Range past its end with 416).

    Returns (bytes downloaded, bytes an earlier run had kept and that were not downloaded again).
    Raises UnsafeStaging (the staging directory, or what is in it), OllamaError (registry, server) or OSError (the
    disk)."""
    fetched = resumed = 0
    folder = None
    for digest, _size in blobs(manifest):
        if client.has_blob(digest):
            continue
        if folder is None:
            folder = staging_dir(staging, make=True)[0]
        staged = digest.replace(":", "-")
        path = os.path.join(folder, staged)
        if os.path.lexists(path) and not os.path.lexists(path + ".partial"):
            # a whole blob an earlier run staged and did not upload: verified as a partial download (whatever is not
            # a regular file of this user with one link is removed there, never opened through)
            os.rename(path, path + ".partial")
        before = registry.resumed_bytes
        fetched += registry.fetch_blob(name, digest, path, insecure)
        resumed += registry.resumed_bytes - before
        blob = open_blob(folder, staged)
        if blob is None:
            raise UnsafeStaging("%s was removed from %s before its upload to the server; run again" % (staged, folder))
        with blob:
            client.push_blob(digest, blob)
        os.unlink(path)  # uploaded: the server has it (a failed upload leaves it for the next run, see above)
    existing = find_manifest(models_dir, name)
    replaced = old_blobs(existing) if existing else []
    atomic_write(existing or manifest_path(models_dir, name), raw, owner_of=models_dir)
    if replaced and not noprune:
        prune_layers(models_dir, replaced)
    return fetched, resumed


def moved_message(given, locked, moved_to, why):
    """Why a model cannot be brought to its locked digest: its tag moved (to `moved_to`, None when the tag is gone)
    and `why` the locked manifest cannot be had; and what to do."""
    now = ("the registry has sha256:%s for it now" % moved_to) if moved_to else "the registry no longer has the tag"
    return ("'%s' is locked to sha256:%s, but its tag moved: %s, and %s. Update the lock to what the tag has now "
            "(playbooks/lock.yml, or the model's digest), or pin a tag that still serves the locked build"
            % (given, locked, now, why))
