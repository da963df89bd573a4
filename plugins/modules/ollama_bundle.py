#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ollama_bundle
short_description: Fetch models from a registry into a bundle directory, once, for distribution without a registry
version_added: 0.1.0
description:
  - Downloads models' manifests and blobs from their registry into a directory laid out like Ollama's own store
    (C(manifests/<host>/<namespace>/<model>/<tag>), C(blobs/sha256-<hex>)), verifying every blob's sha256, and writes
    C(index.json) describing what the bundle holds.
  - Run it once on the controller (or a seed host) so each model's bytes cross the WAN once; the
    P(llmops.ollama.models#role) role then distributes the bundle to every host with M(llmops.ollama.ollama_import).
  - A bundle is a plain directory, which can be carried into an air-gapped site. Any server's C(OLLAMA_MODELS)
    directory is a valid bundle too (run this module with no models to index it).
  - Blobs are written to C(.partial) files and renamed only when complete and verified; the manifest is written last.
    An interrupted run leaves the bundle consistent and the next run finishes it.
  - A download that was interrupted keeps its C(.partial) file, and the next run resumes it, asking the registry only
    for the bytes still missing (C(Range)); a registry that ignores C(Range) sends the whole blob again. The whole
    blob's sha256 is verified as always, and a blob that does not match is removed. What was resumed is in
    RV(resumed_bytes). A C(.partial) file that is not a regular file of the user the module runs as, with one link
    (a symbolic link, a FIFO), is removed and the download starts over, never opened through.
  - Manifests are checked as Ollama checks them (every digest C(sha256:<64 hex>)) before anything is written.
  - When a model is updated (V(latest), or a new C(digest)) or removed, the blobs that no manifest in the bundle uses
    any more are removed (RV(pruned)), so the bundle does not grow with every new build.
requirements:
  - Python 3.9 or newer where it runs (usually the controller); nothing else to install.
  - HTTPS (or, with O(insecure), HTTP) access from there to the models' registries, and room in O(path) for the models.
author:
  - llmops.ollama maintainers (@llmops)
extends_documentation_fragment:
  - llmops.ollama.attributes
attributes:
  check_mode:
    support: full
    details: Reads the registry's manifests to report what would be downloaded, the blobs that would be pruned and
      the index a real run writes (RV(index_content)); writes nothing.
  diff_mode:
    support: full
    details: The bundle's model list before and after, and the blobs pruned (listed before only).
  idempotent:
    support: full
options:
  path:
    description: The bundle directory (created when missing).
    type: path
    required: true
  models:
    description:
      - Models to have in the bundle; each a name, or a dictionary with C(name) and C(state)
        (V(present), V(latest) or V(absent)), and optionally C(digest).
      - C(digest) pins the model to a manifest digest (as in M(llmops.ollama.ollama_model)). The bundle gets that
        build, from the tag while the tag has it, else from the registry by digest; when the registry no longer serves
        it the task fails saying the tag moved.
    type: list
    elements: raw
    default: []
  merge:
    description:
      - The list gathers many hosts' lists, as the P(llmops.ollama.models#role) role does. A model may appear more than
        once, V(latest) wins over V(present), and V(absent) items are ignored (a bundle serves every host).
    type: bool
    default: false
  insecure:
    description: Allow plain-HTTP registries.
    type: bool
    default: false
  timeout:
    description: Seconds to wait for the registry to answer (at most 86400).
    type: int
    default: 60
  validate_certs:
    description: Verify registries' TLS certificates.
    type: bool
    default: true
  registry_ca_path:
    description:
      - PEM file of the CA of a site registry, trusted in addition to the system's trust store.
    type: path
    aliases: [ca_path]
notes:
  - Registries that ask for a bearer token (C(WWW-Authenticate) C(Bearer realm=...)) get an anonymous token request, as
    Ollama and Docker clients make; blob downloads follow the registry's redirects (to a CDN) without the token.
  - Every blob is checked by its sha256, not only its size, and a damaged one is fetched again. The check is
    remembered in C(.verified.json) in the bundle until the blob's file changes, so a second run does not read every
    byte again.
  - Stray files in the bundle (such as C(.DS_Store)) are ignored, as Ollama ignores them in its store.
"""

EXAMPLES = r"""
- name: Fetch the fleet's models once, on the controller
  llmops.ollama.ollama_bundle:
    path: /srv/ollama-bundle
    models:
      - llama3.2:3b
      - name: gpt-oss:20b
        state: latest
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
models:
  description: One entry per model.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The name as given.
      type: str
    model:
      description: The name as Ollama lists it.
      type: str
    action:
      description: What was done.
      type: str
      choices: [none, fetched, updated, removed]
    digest:
      description: sha256 (hex) of the manifest now in the bundle, or null.
      type: str
    size:
      description: Bytes of the model's blobs.
      type: int
    bytes:
      description:
        - Bytes downloaded from the registry for this model (in check mode, that would be, counting whole blobs).
        - The bytes an interrupted run had kept are not downloaded again, nor counted here
          (RV(models[].resumed_bytes)).
      type: int
    resumed_bytes:
      description:
        - Bytes of this model's blobs that an interrupted earlier run had downloaded and kept (C(.partial) files), which
          were not downloaded again. 0 in check mode.
      type: int
bytes:
  description: Bytes downloaded from the registry in all.
  returned: always
  type: int
resumed_bytes:
  description: Bytes that interrupted earlier runs had downloaded and kept, and that were not downloaded again, in all.
  returned: always
  type: int
index:
  description: Path of the bundle's C(index.json).
  returned: always
  type: str
index_content:
  description:
    - What the bundle's C(index.json) holds after the task (in check mode, what it would hold once the models are
      fetched), for the O(llmops.ollama.ollama_import#module:index) option of M(llmops.ollama.ollama_import).
    - In check mode a model still to be fetched is in it, so the import can be planned before the bundle has it.
  returned: always
  type: dict
  sample: {"models": {"registry.ollama.ai/library/llama3.2:3b": {"digest": "a80c4f17...", "size": 2019393189,
           "blobs": ["sha256:dde5aa3f..."], "manifest": "{\"schemaVersion\":2,...}"}}}
pruned:
  description:
    - Blobs removed from the bundle (in check mode, that would be) because no manifest in it uses them any more,
      after a model was updated or removed.
  returned: always
  type: list
  elements: dict
  contains:
    digest:
      description: The blob's digest, C(sha256:<hex>).
      type: str
    size:
      description: Its bytes.
      type: int
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.ollama.plugins.module_utils._http import OllamaError, OllamaNotFound
from ansible_collections.llmops.ollama.plugins.module_utils._lock import InvalidLock, moved_message, pins
from ansible_collections.llmops.ollama.plugins.module_utils._manifest import InvalidManifest, manifest_digest
from ansible_collections.llmops.ollama.plugins.module_utils._manifest import blobs as manifest_blobs
from ansible_collections.llmops.ollama.plugins.module_utils._manifest import parse as parse_manifest
from ansible_collections.llmops.ollama.plugins.module_utils._names import (
    InvalidModelName,
    parse_model_list,
    parse_model_name,
)
from ansible_collections.llmops.ollama.plugins.module_utils._registry_client import registry_client_from_params
from ansible_collections.llmops.ollama.plugins.module_utils._store import (
    atomic_write,
    blob_path,
    bundle_index,
    find_manifest,
    index_entry,
    listed_name,
    manifest_path,
    read_manifest,
    sha256_file,
    unused_blobs,
)

VERIFIED = ".verified.json"  # blobs whose sha256 was checked, with the file state it was checked in


def merged(items):
    """One item per model from several hosts' lists: latest wins over present, absent items are dropped, a digest
    is kept (two different ones for a model are refused: a bundle holds one build of a name)."""
    states, order, digests = {}, [], {}
    for item in items:
        name, state = (item.get("name"), item.get("state", "present")) if isinstance(item, dict) else (item, "present")
        if state == "absent":
            continue
        try:
            key = parse_model_name(name).key
        except InvalidModelName:
            key = repr(name)  # parse_model_list reports it
        if key not in states:
            order.append((key, name))
        if states.get(key) != "latest":
            states[key] = state
        digest = item.get("digest") if isinstance(item, dict) else None
        if digest is not None:
            if key in digests and _same_digest(digests[key], digest) is False:
                raise InvalidLock("'%s' is pinned to two digests in the hosts' lists (%s and %s); a bundle holds one "
                                  "build of a name: pin it to one" % (name, digests[key], digest))
            digests[key] = digest
    return [dict(dict(name=name, state=states[key]), **({"digest": digests[key]} if key in digests else {}))
            for key, name in order]


def _same_digest(one, other):
    """Whether two digests are the same build; None when one is malformed (pins() then says what is wrong)."""
    try:
        return manifest_digest(one) == manifest_digest(other)
    except InvalidManifest:
        return None


class Blobs(object):
    """The bundle's blobs, each checked by its sha256 (not its size: a flipped byte is a damaged blob).

    A check is remembered in .verified.json with the file's size, inode and modification and change times, so a
    later run reads a blob again only when the file changed.
    """

    def __init__(self, root):
        self.root = root
        self.path = os.path.join(root, VERIFIED)
        self.known = {}
        try:
            with open(self.path) as f:
                known = json.load(f)
            self.known = known if isinstance(known, dict) else {}
        except (OSError, ValueError):
            pass
        self.dirty = False

    @staticmethod
    def _state(st):
        return [st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns]

    def good(self, digest, size):
        path = blob_path(self.root, digest)
        try:
            st = os.stat(path)
        except OSError:
            return False
        if st.st_size != size:
            return False
        if self.known.get(digest) == self._state(st):
            return True
        ok = "sha256:" + sha256_file(path) == digest.replace("-", ":", 1).lower()
        if ok:
            self.known[digest] = self._state(st)
        else:
            self.known.pop(digest, None)
        self.dirty = True
        return ok

    def fetched(self, digest):
        try:
            self.known[digest] = self._state(os.stat(blob_path(self.root, digest)))
            self.dirty = True
        except OSError:
            pass

    def complete(self, manifest):
        """Whether every blob of `manifest` is in the bundle, whole."""
        return all(self.good(d, s) for d, s in manifest_blobs(manifest))

    def save(self):
        if self.dirty and os.path.isdir(self.root):
            present = set(os.listdir(os.path.join(self.root, "blobs"))) if os.path.isdir(
                os.path.join(self.root, "blobs")) else set()
            known = dict((d, v) for d, v in self.known.items() if d.replace(":", "-") in present)
            atomic_write(self.path, json.dumps(known, sort_keys=True).encode("utf-8"))


def missing_bytes(store, manifest, planned):
    """Bytes of `manifest`'s blobs not whole in the bundle nor already planned for an earlier model (shared layers)."""
    total = 0
    for digest, size in manifest_blobs(manifest):
        if digest not in planned and not store.good(digest, size):
            planned.add(digest)
            total += size
    return total


def unused(root, index):
    """[(digest, size)] of the bundle's blobs that no manifest of `index` uses."""
    used = set()
    for entry in index["models"].values():
        used.update(entry["blobs"])
    return unused_blobs(root, used)


def planned_index(root, changes):
    """The index a real run writes: the bundle's as it is, with `changes` ({listed name: entry, or None for a
    manifest removed}) applied. What check mode reports, without writing anything."""
    index = bundle_index(root) if os.path.isdir(root) else dict(models={})
    for key, entry in changes.items():
        if entry is None:
            index["models"].pop(key, None)
        else:
            index["models"][key] = entry
    return index


def planned_entry(raw):
    """The index entry of the manifest `raw` once written; None where the index would leave it out."""
    try:
        return index_entry(raw)
    except (InvalidManifest, UnicodeError):
        return None


def local_manifest(root, name):
    """(path, digest, manifest) of the bundle's manifest of `name`; digest and manifest None when there is none or it
    is one Ollama would refuse (then it is fetched again)."""
    path = find_manifest(root, name)
    if not path:
        return None, None, None
    try:
        digest, manifest = read_manifest(path)
    except (InvalidManifest, OSError):
        return path, None, None
    return path, digest, manifest


def index_text(index):
    return json.dumps(index, indent=1, sort_keys=True).encode("utf-8")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            models=dict(type="list", elements="raw", default=[]),
            merge=dict(type="bool", default=False),
            insecure=dict(type="bool", default=False),
            timeout=dict(type="int", default=60),
            validate_certs=dict(type="bool", default=True),
            registry_ca_path=dict(type="path", aliases=["ca_path"]),
        ),
        supports_check_mode=True,
    )
    root = module.params["path"]
    insecure = module.params["insecure"]
    try:
        registry = registry_client_from_params(module.params, validate_certs=module.params["validate_certs"])
        items = module.params["models"]
        if module.params["merge"]:
            items = merged(items)
        wanted = parse_model_list(items, "present")
        pinned = pins(items)
    except (InvalidModelName, InvalidLock, OllamaError) as exc:
        module.fail_json(msg=str(exc))
    if os.path.exists(root) and not os.path.isdir(root):
        module.fail_json(msg="%s exists and is not a directory; give a directory for the bundle" % root)

    try:
        before = sorted(bundle_index(root)["models"]) if os.path.isdir(root) else []
    except OSError as exc:
        module.fail_json(msg="reading the bundle at %s failed: %s (check its permissions)" % (root, exc))
    store = Blobs(root)
    results, planned = [], set()
    changes = {}  # listed name -> the index entry this run writes (None: removed), for check mode's index
    for given, name, state in wanted:
        result = dict(name=given, model=name.short, state=state, action="none", digest=None, size=None, bytes=0,
                      resumed_bytes=0)
        results.append(result)
        try:
            local, digest, manifest = local_manifest(root, name)
            result.update(digest=digest, size=sum(s for _d, s in manifest_blobs(manifest)) if manifest else None)
            if state == "absent":
                if local:
                    result.update(action="removed", digest=None)
                    changes[listed_name(root, local)] = None
                    if not module.check_mode:
                        os.unlink(local)
                continue
            locked = pinned.get(name.key)
            if locked:
                result["digest_locked"] = locked
            satisfied = locked == digest if locked else state == "present"
            if satisfied and manifest and store.complete(manifest):
                continue
            if name.scheme.lower() == "http" and not insecure:
                raise OllamaError("'%s' asks for plain HTTP, but a scheme in a model name is ignored (as Ollama ignores "
                                  "it) and registries are read over HTTPS unless insecure is set: set insecure: true "
                                  "to fetch from a plain-HTTP registry" % given)
            raw = registry.manifest_bytes(name, insecure)
            try:
                remote_digest, remote = parse_manifest(raw)
            except InvalidManifest as exc:
                raise OllamaError("the registry sent a manifest for %s that Ollama would refuse: %s" % (name.short, exc))
            if locked and remote_digest != locked:
                moved_to = remote_digest
                try:
                    raw, remote = registry.manifest_by_digest(name, locked, insecure)
                except OllamaNotFound:
                    raise OllamaError(moved_message(given, locked, moved_to,
                                                    "the registry no longer serves sha256:%s" % locked))
                remote_digest = locked
            if remote_digest == digest and store.complete(manifest):
                continue
            walked = manifest_blobs(remote)
            result.update(action="updated" if manifest else "fetched", digest=remote_digest,
                          size=sum(s for _d, s in walked), bytes=missing_bytes(store, remote, planned))
            target = local or manifest_path(root, name)
            changes[listed_name(root, target)] = planned_entry(raw)
            if module.check_mode:
                continue
            os.makedirs(os.path.join(root, "blobs"), exist_ok=True)
            result.update(bytes=0, resumed_bytes=0)
            for blob_digest, size in walked:
                if not store.good(blob_digest, size):
                    resumed = registry.resumed_bytes
                    result["bytes"] += registry.fetch_blob(name, blob_digest, blob_path(root, blob_digest), insecure)
                    result["resumed_bytes"] += registry.resumed_bytes - resumed
                    store.fetched(blob_digest)
            atomic_write(target, raw)
        except OllamaNotFound as exc:
            module.fail_json(msg="model '%s' is not in its registry (%s)" % (given, exc.msg), models=results)
        except (OllamaError, ValueError) as exc:
            module.fail_json(msg="fetching '%s' into %s: %s" % (given, root, getattr(exc, "msg", exc)),
                             models=results)
        except (IOError, OSError) as exc:
            module.fail_json(msg="writing the bundle at %s failed: %s (check the disk and permissions)" % (root, exc),
                             models=results)
    changes.pop(None, None)  # a manifest Ollama would not list is not in the index either
    total = sum(r["bytes"] for r in results)
    resumed_total = sum(r["resumed_bytes"] for r in results)
    changed = any(r["action"] != "none" for r in results)
    # a build replaced or a model removed leaves blobs no manifest uses: they go, as Ollama's own pull removes them
    prune = any(r["action"] in ("updated", "removed") for r in results)
    index_path = os.path.join(root, "index.json")
    try:
        old = open(index_path, "rb").read() if os.path.isfile(index_path) else None
        if module.check_mode:
            index = planned_index(root, changes)
            pruned = unused(root, index) if prune else []
        else:
            os.makedirs(root, exist_ok=True)
            index = bundle_index(root)
            pruned = unused(root, index) if prune else []
            for digest, _size in pruned:
                os.unlink(blob_path(root, digest))
        text = index_text(index)
        if text != old:
            changed = True
            if not module.check_mode:
                atomic_write(index_path, text)
        changed = changed or bool(pruned)
        if not module.check_mode:
            store.save()
    except (IOError, OSError) as exc:
        module.fail_json(msg="writing the bundle index at %s failed: %s" % (index_path, exc), models=results)
    after = set(before)
    after.difference_update(r["model"] for r in results if r["action"] == "removed")
    after.update(r["model"] for r in results if r["action"] in ("fetched", "updated"))
    result = dict(changed=changed, models=results, bytes=total, resumed_bytes=resumed_total, index=index_path,
                  index_content=index,
                  pruned=[dict(digest=d, size=s) for d, s in pruned])
    if module._diff:
        result["diff"] = dict(before="".join(m + "\n" for m in before)
                              + "".join("blobs/%s\n" % d.replace(":", "-") for d, _s in pruned),
                              after="".join(m + "\n" for m in sorted(after)))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
