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
    details: Reads the registry's manifests to report what would be downloaded; writes nothing.
  diff_mode:
    support: full
    details: The bundle's model list before and after.
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
        (V(present), V(latest) or V(absent)).
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
    description: Seconds to wait for the registry to answer.
    type: int
    default: 60
  validate_certs:
    description: Verify registries' TLS certificates.
    type: bool
    default: true
  ca_path:
    description: PEM file of the CA of a site registry.
    type: path
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
      description: Bytes downloaded from the registry for this model (in check mode, that would be).
      type: int
bytes:
  description: Bytes downloaded from the registry in all.
  returned: always
  type: int
index:
  description: Path of the bundle's C(index.json).
  returned: always
  type: str
"""

import hashlib
import json
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.ollama.plugins.module_utils._client import (
    OllamaClient,
    OllamaError,
    OllamaNotFound,
    manifest_blobs,
    manifest_size,
)
from ansible_collections.llmops.ollama.plugins.module_utils._names import (
    InvalidModelName,
    parse_model_list,
    parse_model_name,
)
from ansible_collections.llmops.ollama.plugins.module_utils._store import (
    atomic_write,
    blob_path,
    bundle_index,
    find_manifest,
    manifest_path,
    read_manifest,
)


def merged(items):
    """One item per model from several hosts' lists: latest wins over present, absent items are dropped."""
    states, order = {}, []
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
    return [dict(name=name, state=states[key]) for key, name in order]


def complete(root, manifest):
    """Whether every blob of `manifest` is in the bundle with its size."""
    for blob in manifest_blobs(manifest):
        path = blob_path(root, blob["digest"])
        if not os.path.isfile(path) or os.path.getsize(path) != int(blob.get("size") or 0):
            return False
    return True


def missing_bytes(root, manifest, planned):
    """Bytes of `manifest`'s blobs neither in the bundle nor already planned for an earlier model (shared layers)."""
    total = 0
    for blob in manifest_blobs(manifest):
        if blob["digest"] not in planned and not os.path.isfile(blob_path(root, blob["digest"])):
            planned.add(blob["digest"])
            total += int(blob.get("size") or 0)
    return total


def prune_blobs(root):
    """Remove blobs no manifest in the bundle refers to; returns how many."""
    used = set()
    for entry in bundle_index(root)["models"].values():
        used.update(entry["blobs"])
    removed = 0
    blobs_dir = os.path.join(root, "blobs")
    for name in os.listdir(blobs_dir) if os.path.isdir(blobs_dir) else []:
        if name.replace("-", ":", 1) not in used:
            os.unlink(os.path.join(blobs_dir, name))
            removed += 1
    return removed


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            models=dict(type="list", elements="raw", default=[]),
            merge=dict(type="bool", default=False),
            insecure=dict(type="bool", default=False),
            timeout=dict(type="int", default=60),
            validate_certs=dict(type="bool", default=True),
            ca_path=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    root = module.params["path"]
    if module.params["timeout"] <= 0:
        module.fail_json(msg="timeout must be a positive number of seconds")
    client = OllamaClient(timeout=module.params["timeout"], validate_certs=module.params["validate_certs"],
                          ca_path=module.params["ca_path"])
    insecure = module.params["insecure"]
    try:
        items = module.params["models"]
        if module.params["merge"]:
            items = merged(items)
        wanted = parse_model_list(items, "present")
    except InvalidModelName as exc:
        module.fail_json(msg=str(exc))
    if os.path.exists(root) and not os.path.isdir(root):
        module.fail_json(msg="%s exists and is not a directory; give a directory for the bundle" % root)

    before = sorted(bundle_index(root)["models"]) if os.path.isdir(root) else []
    results, planned = [], set()
    for given, name, state in wanted:
        local = find_manifest(root, name)
        digest, manifest = read_manifest(local) if local else (None, None)
        result = dict(name=given, model=name.short, state=state, action="none", digest=digest,
                      size=manifest_size(manifest) if manifest else None, bytes=0)
        results.append(result)
        try:
            if state == "absent":
                if local:
                    result.update(action="removed", digest=None)
                    if not module.check_mode:
                        os.unlink(local)
                continue
            if state == "present" and manifest and complete(root, manifest):
                continue
            if name.scheme == "http" and not insecure:
                raise OllamaError("'%s' names a plain-HTTP registry: set insecure: true to fetch from it" % given)
            raw = client.registry_manifest_bytes(name, insecure)
            remote = json.loads(raw.decode("utf-8"))
            remote_digest = hashlib.sha256(raw).hexdigest()
            if remote_digest == digest and complete(root, manifest):
                continue
            result.update(action="updated" if manifest else "fetched", digest=remote_digest,
                          size=manifest_size(remote), bytes=missing_bytes(root, remote, planned))
            if module.check_mode:
                continue
            os.makedirs(os.path.join(root, "blobs"), exist_ok=True)
            for blob in manifest_blobs(remote):
                path = blob_path(root, blob["digest"])
                if not os.path.isfile(path) or os.path.getsize(path) != int(blob.get("size") or 0):
                    client.fetch_blob(name, blob["digest"], path, insecure)
            target = local or manifest_path(root, name)
            atomic_write(target, raw)
        except OllamaNotFound as exc:
            module.fail_json(msg="model '%s' is not in its registry (%s)" % (given, exc.msg), models=results)
        except (OllamaError, ValueError) as exc:
            module.fail_json(msg="fetching '%s' into %s: %s" % (given, root, getattr(exc, "msg", exc)),
                             models=results)
        except (IOError, OSError) as exc:
            module.fail_json(msg="writing the bundle at %s failed: %s (check the disk and permissions)" % (root, exc),
                             models=results)
    total = sum(r["bytes"] for r in results)
    changed = any(r["action"] != "none" for r in results)
    index_path = os.path.join(root, "index.json")
    if not module.check_mode:
        try:
            os.makedirs(root, exist_ok=True)
            if any(r["action"] == "removed" for r in results):
                prune_blobs(root)
            text = json.dumps(bundle_index(root), indent=1, sort_keys=True).encode("utf-8")
            old = open(index_path, "rb").read() if os.path.isfile(index_path) else None
            if text != old:
                atomic_write(index_path, text)
                changed = True
        except (IOError, OSError) as exc:
            module.fail_json(msg="writing the bundle index at %s failed: %s" % (index_path, exc), models=results)
    after = set(before)
    after.difference_update(r["model"] for r in results if r["action"] == "removed")
    after.update(r["model"] for r in results if r["action"] in ("fetched", "updated"))
    result = dict(changed=changed, models=results, bytes=total, index=index_path)
    if module._diff:
        result["diff"] = dict(before="".join(m + "\n" for m in before), after="".join(m + "\n" for m in sorted(after)))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
