#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ollama_import
short_description: Put models from a bundle into an Ollama server, with no registry
version_added: 0.1.0
description:
  - Makes the server have the listed models exactly as a bundle made by M(llmops.ollama.ollama_bundle) holds them,
    for hosts that cannot (or should not) reach a registry.
  - In check mode it reports which blobs the server lacks (RV(missing_blobs)); copy those from the bundle into
    O(staging_dir) and run it again to import them. The P(llmops.ollama.models#role) role does both steps.
  - A staged blob is used only when its sha256 is its digest. A damaged one is listed in RV(missing_blobs) again (so
    it is copied again), and a run that finds one removes it and fails saying so; from O(bundle_url) it is fetched
    again.
  - Blobs are uploaded through the server's own API, which verifies each sha256 before keeping it; the manifest is
    written last, atomically, with the bundle's exact bytes, so the server lists the model (same digest as a pull
    from the registry) without a restart. An interrupted import leaves no half-written model.
requirements:
  - Python 3.9 or newer on the server's host; nothing else to install.
  - It runs on the host of the server it imports into, reads the staged blobs from O(staging_dir) and writes the
    manifests into the server's store (O(models_dir)), so it needs write access there (become root or the service
    user).
author:
  - llmops.ollama maintainers (@llmops)
extends_documentation_fragment:
  - llmops.ollama.api
  - llmops.ollama.api.attributes
  - llmops.ollama.registry
  - llmops.ollama.attributes
attributes:
  check_mode:
    support: full
    details: Reports the models that would be imported and the blobs to stage.
  diff_mode:
    support: full
    details: The server's model list before and after.
  idempotent:
    support: full
options:
  models:
    description:
      - Models to import; each a name, or a dictionary with C(name) and C(state). V(present) imports a missing model;
        V(latest) also replaces one whose digest differs from the bundle's. V(absent) items are ignored here (use
        M(llmops.ollama.ollama_model)).
      - A dictionary may give C(digest), the manifest digest the model is pinned to (as in
        M(llmops.ollama.ollama_model)). The bundle must hold that build (else the task fails saying what it holds),
        and a server with another build gets it, whatever the state.
    type: list
    elements: raw
    required: true
  index:
    description:
      - The bundle's C(index.json), as a dictionary (read it on the controller), or the
        RV(llmops.ollama.ollama_bundle#module:index_content) M(llmops.ollama.ollama_bundle) returns (in check mode, the
        index it would write, with the models it would fetch).
      - Every entry is checked before anything is done; an entry whose digest is not the sha256 of its manifest, or
        whose manifest Ollama would refuse, fails the task.
    type: dict
    required: true
  staging_dir:
    description:
      - Directory on the host where the missing blobs have been copied (as C(sha256-<hex>) files), or where they are
        downloaded from O(bundle_url). Made, mode C(0700), when a download needs it.
      - On a host where others have accounts, a directory they could write (such as one in C(/var/tmp)) is a way to
        make root follow their links. So it is used only when it is a directory (not a link) owned by root (or the
        user the module runs as) that neither its group nor others can write, and every directory above it is owned
        by root (or that user) and, when its group or others can write it, sticky. A symbolic link above it is
        followed only when root (or that user) owns it. Anything else fails the task, naming the path and what was
        found there (the link's target, the owner, the mode).
      - A staged blob is read only when it is a regular file with one link; a link, FIFO, socket, device or hard link
        named like a blob fails the task, naming it, and is never opened.
      - The default is in C(/var/cache), which only root can write.
    type: path
    default: /var/cache/ollama-bundle
  bundle_url:
    description:
      - Where the bundle is served over HTTP on the LAN (a seed host or the controller), for example
        C(http://seed.example.com/ollama-bundle). Missing blobs are then downloaded from it by the host itself,
        verified, and imported in the same call, instead of being staged beforehand.
      - A download that is interrupted keeps its C(.partial) file in O(staging_dir), and the next run asks the server
        only for the bytes still missing (C(Range); a server that ignores it sends the whole blob again), then
        verifies the whole blob's sha256 as always (RV(resumed_bytes)).
      - A login for that server goes in O(bundle_username) and O(bundle_password), sent as HTTP basic authentication
        to that server only (not to a server it redirects to).
      - It may also hold the login (C(https://user:password@seed/bundle)), as it did before those options. The module
        keeps that password out of its output and messages, but Ansible itself does not know it is a secret, and
        shows it wherever the task's arguments are shown before the module runs (a failure of their checks, at
        C(-vvv)). Give the password as O(bundle_password) instead.
      - Over C(https://), the server's certificate is checked against the system's trust store and O(registry_ca_path),
        or against O(bundle_ca_path) or O(bundle_ca_pem) alone when one is given. Verification cannot be turned off.
    type: str
  bundle_username:
    description:
      - The user name sent with O(bundle_password) to the server at O(bundle_url) (HTTP basic authentication). None
        sends an empty user name, or the one O(bundle_url) holds (C(https://user@seed/bundle)).
    type: str
    version_added: 0.3.0
  bundle_password:
    description:
      - The password sent to the server at O(bundle_url) (HTTP basic authentication), with O(bundle_username). It is
        kept out of the task's output, messages and invocation, as Ansible keeps any C(no_log) option.
      - Over C(http://) it crosses the network in the clear; prefer C(https://).
    type: str
    version_added: 0.3.0
  bundle_ca_path:
    description:
      - PEM file, on the host, of the CA that signed the certificate of the server at O(bundle_url) (which must then be
        C(https://)). That CA alone is trusted for it, not the system's trust store; the certificate must name the
        host of O(bundle_url) (a name or an IP address).
      - Mutually exclusive with O(bundle_ca_pem).
    type: path
    version_added: 0.3.0
  bundle_ca_pem:
    description:
      - The same CA as O(bundle_ca_path), given as its PEM text (C(-----BEGIN CERTIFICATE-----)), so that nothing has to
        be copied to the host first. The P(llmops.ollama.models#role) role gives its peers' CA this way (the CA the
        controller makes for each rollout spread in waves).
      - Mutually exclusive with O(bundle_ca_path).
    type: str
    version_added: 0.3.0
  models_dir:
    description:
      - The server's model store (E(OLLAMA_MODELS)) on this host, where the manifest is written.
      - Defaults to E(OLLAMA_MODELS), else C(/usr/share/ollama/.ollama/models) when it exists.
    type: path
  noprune:
    description:
      - Keep the blobs of a replaced manifest that no model uses any more, as the server's own pull keeps them when
        it runs with E(OLLAMA_NOPRUNE) set. Give the server's setting (the P(llmops.ollama.models#role) role passes the
        P(llmops.ollama.server#role) role's C(ollama_server_noprune)).
    type: bool
    default: false
    version_added: 0.3.0
notes:
  - Must run on the server's host, as root or the service user, since the manifest is written into its store.
  - When a model is replaced (V(latest)), the blobs of its old manifest that no other model uses are removed from
    the store, as the server's own pull removes them, unless O(noprune) is set.
"""

EXAMPLES = r"""
- name: Fetch the missing blobs from a seed with a CA of its own, and import them
  llmops.ollama.ollama_import:
    models: [llama3.2:3b]
    index: "{{ lookup('ansible.builtin.file', '/srv/ollama-bundle/index.json') | from_json }}"
    bundle_url: https://seed.example.com/ollama-bundle
    bundle_ca_pem: "{{ lookup('ansible.builtin.file', '/srv/pki/seed-ca.pem') }}"

- name: Fetch the missing blobs from a seed that asks for a login, and import them
  llmops.ollama.ollama_import:
    models: [llama3.2:3b]
    index: "{{ lookup('ansible.builtin.file', '/srv/ollama-bundle/index.json') | from_json }}"
    bundle_url: https://seed.example.com/ollama-bundle
    bundle_username: fleet
    bundle_password: "{{ vault_seed_password }}"

- name: Find what the server lacks
  llmops.ollama.ollama_import:
    models: [llama3.2:3b]
    index: "{{ lookup('ansible.builtin.file', '/srv/ollama-bundle/index.json') | from_json }}"
  check_mode: true
  register: plan

- name: Stage the missing blobs from the bundle on the controller
  ansible.builtin.copy:
    src: "/srv/ollama-bundle/blobs/{{ item.digest | replace(':', '-') }}"
    dest: "/var/cache/ollama-bundle/"
    mode: "0644"
  loop: "{{ plan.missing_blobs }}"

- name: Import them
  llmops.ollama.ollama_import:
    models: [llama3.2:3b]
    index: "{{ lookup('ansible.builtin.file', '/srv/ollama-bundle/index.json') | from_json }}"
  when: plan is changed
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
      description: The name as the server lists it.
      type: str
    action:
      description: What was done (or would be, in check mode).
      type: str
      choices: [none, imported, updated]
    digest_before:
      description: Digest the server had, or null.
      type: str
    digest_after:
      description: Digest the server has after the task (the bundle's).
      type: str
missing_blobs:
  description:
    - Blobs the server lacks and that are not staged yet, or staged damaged (digest and size), for the models to
      import.
  returned: always
  type: list
  elements: dict
staged_bytes:
  description: Bytes uploaded to the server from the staging directory.
  returned: always
  type: int
seed_bytes:
  description: Bytes downloaded from O(bundle_url) into the staging directory (0 without it).
  returned: always
  type: int
resumed_bytes:
  description:
    - Bytes of the blobs downloaded from O(bundle_url) that an interrupted earlier run had kept in the staging
      directory (C(.partial) files) and that were not downloaded again, when the bundle server answers C(Range)
      requests (one that does not sends the whole blob again).
  returned: always
  type: int
"""

import hashlib
import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.six.moves.urllib.parse import unquote, urlsplit

from ansible_collections.llmops.ollama.plugins.module_utils._http import OllamaError, redact
from ansible_collections.llmops.ollama.plugins.module_utils._lock import InvalidLock, pins
from ansible_collections.llmops.ollama.plugins.module_utils._manifest import InvalidManifest
from ansible_collections.llmops.ollama.plugins.module_utils._manifest import blobs as manifest_blobs
from ansible_collections.llmops.ollama.plugins.module_utils._manifest import check_digest
from ansible_collections.llmops.ollama.plugins.module_utils._ollama_client import api_argument_spec, client_from_params
from ansible_collections.llmops.ollama.plugins.module_utils._registry_client import (
    registry_argument_spec,
    registry_client_from_params,
    seed_url,
)
from ansible_collections.llmops.ollama.plugins.module_utils._names import (
    InvalidModelName,
    parse_listed_name,
    parse_model_list,
)
from ansible_collections.llmops.ollama.plugins.module_utils._staging import DEFAULT as DEFAULT_STAGING
from ansible_collections.llmops.ollama.plugins.module_utils._staging import UnsafeStaging, open_blob, staging_dir
from ansible_collections.llmops.ollama.plugins.module_utils._store import (
    atomic_write,
    default_models_dir,
    find_manifest,
    manifest_path,
    old_blobs,
    prune_layers,
)


class BadIndex(ValueError):
    pass


def read_index(index):
    """{key: (short name, entry)} of a bundle's index.json, every entry checked: its manifest is one Ollama accepts,
    and its digest is the sha256 of that manifest's bytes. Raises BadIndex saying what is wrong."""
    fix = "rebuild it with llmops.ollama.ollama_bundle (or give the index.json of the bundle, read with from_json)"
    models = index.get("models")
    if not isinstance(models, dict):
        raise BadIndex("the index has no 'models' object (%s): %s" % (_kind(models), fix))
    found = {}
    for short, entry in models.items():
        where = "the index's entry %r" % (short,)
        try:
            name = parse_listed_name(short) if isinstance(short, str) else None
        except InvalidModelName as exc:
            raise BadIndex("%s is not a model name (%s): %s" % (where, exc, fix))
        if name is None:
            raise BadIndex("%s is not a model name: %s" % (where, fix))
        if not isinstance(entry, dict) or not isinstance(entry.get("manifest"), str):
            raise BadIndex("%s has no manifest text: %s" % (where, fix))
        raw = entry["manifest"].encode("utf-8")
        digest = hashlib.sha256(raw).hexdigest()
        if entry.get("digest") != digest:
            raise BadIndex("%s says its digest is %s, but the sha256 of its manifest is %s: the index is damaged or "
                           "was edited; %s" % (where, _show(entry.get("digest")), digest, fix))
        try:
            manifest = json.loads(entry["manifest"])
            walked = manifest_blobs(manifest)
        except (ValueError, InvalidManifest) as exc:
            raise BadIndex("%s has a manifest Ollama would refuse (%s): %s" % (where, exc, fix))
        found[name.key] = (name.short, dict(digest=digest, manifest=entry["manifest"], blobs=walked))
    return found


def _kind(value):
    return {list: "a list", str: "a string", type(None): "nothing"}.get(type(value), "not an object")


def _show(value):
    text = json.dumps(value) if value is None or isinstance(value, (str, int, float, bool)) else _kind(value)
    return text[:80]


def main():
    argument_spec = api_argument_spec()
    argument_spec.update(registry_argument_spec())
    argument_spec.update(
        models=dict(type="list", elements="raw", required=True),
        index=dict(type="dict", required=True),
        staging_dir=dict(type="path", default=DEFAULT_STAGING),
        bundle_url=dict(type="str"),
        bundle_username=dict(type="str"),
        bundle_password=dict(type="str", no_log=True),
        bundle_ca_path=dict(type="path"),
        bundle_ca_pem=dict(type="str"),
        models_dir=dict(type="path"),
        noprune=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[("bundle_ca_path", "bundle_ca_pem")],
                           required_by={"bundle_ca_path": "bundle_url", "bundle_ca_pem": "bundle_url",
                                        "bundle_username": "bundle_url", "bundle_password": "bundle_url"})
    staging = module.params["staging_dir"]
    models_dir = module.params["models_dir"] or default_models_dir()
    seed, seed_headers = None, {}
    try:
        password = urlsplit(module.params["bundle_url"] or "").password
    except ValueError:
        password = None  # seed_url() says what is wrong with it
    if password:
        module.no_log_values.update((password, unquote(password)))  # out of every output, the invocation included
    try:
        if module.params["bundle_url"]:
            seed, seed_headers = seed_url(module.params["bundle_url"], module.params["bundle_username"],
                                          module.params["bundle_password"])
            if (module.params["bundle_ca_path"] or module.params["bundle_ca_pem"]) and not seed.startswith("https:"):
                raise OllamaError("bundle_url %s is not https://: the CA of bundle_ca_path or bundle_ca_pem is for a "
                                  "bundle server that speaks TLS, and nothing is fetched unencrypted from a server "
                                  "given one" % redact(seed))
        wanted = [w for w in parse_model_list(module.params["models"], "present") if w[2] != "absent"]
        pinned = pins(module.params["models"])
        bundle = read_index(module.params["index"])
        client = client_from_params(module.params)
        registry = registry_client_from_params(module.params) if seed else None
        index = client.models()
    except BadIndex as exc:
        module.fail_json(msg="index: %s" % exc)
    except (InvalidModelName, InvalidLock, OllamaError) as exc:
        module.fail_json(msg=str(exc))

    steps, missing, errors = [], {}, []
    for given, name, state in wanted:
        short, entry = bundle.get(name.key, (None, None))
        if entry is None:
            errors.append("'%s' is not in the bundle; add it with llmops.ollama.ollama_bundle" % given)
            continue
        locked = pinned.get(name.key)
        if locked and entry["digest"] != locked:
            errors.append("'%s' is locked to sha256:%s, and the bundle has sha256:%s for it: fetch the locked build "
                          "into the bundle (llmops.ollama.ollama_bundle with the same digest, the models role's "
                          "ollama_models_bundle_fetch), or update the lock (playbooks/lock.yml)"
                          % (given, locked, entry["digest"]))
            continue
        have = index.get(name)
        step = dict(name=given, model=index.stored_name(name), state=state, action="none",
                    digest_before=have and have.get("digest"), digest_after=have and have.get("digest"))
        if locked:
            step["digest_locked"] = locked
        steps.append((step, name, entry))
        if have and ((state == "present" and not locked) or have.get("digest") == entry["digest"]):
            continue
        step.update(action="updated" if have else "imported", digest_after=entry["digest"])
        try:
            for digest, size in entry["blobs"]:
                if digest not in missing and not client.has_blob(digest):
                    missing[digest] = size
        except OllamaError as exc:
            module.fail_json(msg=exc.msg)
    if errors:
        module.fail_json(msg="; ".join(errors))

    # The staging directory, only when blobs are missing (see module_utils/_staging.py): as this host resolves it, or
    # None when it is missing.
    folder = None
    if missing:
        try:
            folder, there = staging_dir(staging)
            folder = folder if there else None
        except UnsafeStaging as exc:
            module.fail_json(msg=str(exc))
        except (IOError, OSError) as exc:
            module.fail_json(msg="staging_dir %s: %s" % (staging, exc))

    def staged(digest):
        return check_digest(digest).replace(":", "-")

    def staged_whole(digest, size):
        """None when `digest` is not staged, else whether the staged file is that blob (its size, then its sha256).
        UnsafeStaging for anything but a regular file with one link."""
        if folder is None:
            return None
        f = open_blob(folder, staged(digest))
        if f is None:
            return None
        with f:
            if os.fstat(f.fileno()).st_size != size:
                return False
            h = hashlib.sha256()
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return "sha256:" + h.hexdigest() == digest.lower()

    try:
        found = dict((d, staged_whole(d, size)) for d, size in missing.items())
    except UnsafeStaging as exc:
        module.fail_json(msg=str(exc))
    except (IOError, OSError) as exc:
        module.fail_json(msg="reading the staged blobs in %s failed: %s (check the disk)" % (staging, exc))
    missing_blobs = [dict(digest=d, size=size) for d, size in missing.items() if not found[d]]
    changed = any(s["action"] != "none" for s, _n, _e in steps)
    uploaded = 0
    if not module.check_mode and changed:
        try:
            if seed and missing_blobs:
                folder = staging_dir(staging, make=True)[0]
                for blob in missing_blobs:
                    registry.download_from_seed(seed, seed_headers, blob["digest"],
                                                os.path.join(folder, staged(blob["digest"])))
                    found[blob["digest"]] = True
                missing_blobs = []
        except UnsafeStaging as exc:
            module.fail_json(msg=str(exc))
        except OllamaError as exc:
            module.fail_json(msg="fetching blobs from the bundle at %s: %s" % (redact(seed), exc.msg))
        except (IOError, OSError) as exc:
            module.fail_json(msg="staging blobs in %s failed: %s (check the disk)" % (staging, exc))
        damaged = [b for b in missing_blobs if found[b["digest"]] is False]
        for blob in damaged:
            try:
                os.unlink(os.path.join(folder, staged(blob["digest"])))  # so that the next run copies it again
            except OSError:
                pass
        if damaged:
            module.fail_json(msg="%d staged blob(s) in %s are damaged (their sha256 is not their digest): %s; they "
                                 "were removed. Check the bundle (llmops.ollama.ollama_bundle fetches a damaged blob "
                                 "again) and copy them again" % (len(damaged), staging,
                                                                 ", ".join(b["digest"] for b in damaged)),
                             missing_blobs=missing_blobs)
        if missing_blobs:
            module.fail_json(msg="%d blob(s) are neither on the server nor staged in %s: copy them from the bundle "
                                 "first (run this module in check mode to list them)" % (len(missing_blobs), staging),
                             missing_blobs=missing_blobs)
        replaced = []
        try:
            for digest in missing:
                blob = open_blob(folder, staged(digest))
                if blob is None:
                    raise UnsafeStaging("%s was removed from %s during the import; run again"
                                        % (staged(digest), folder))
                with blob:
                    uploaded += client.push_blob(digest, blob)
                os.unlink(os.path.join(folder, staged(digest)))
            for step, name, entry in steps:
                if step["action"] == "none":
                    continue
                existing = find_manifest(models_dir, name)
                if existing:
                    replaced.extend(old_blobs(existing))
                target = existing or manifest_path(models_dir, name)
                atomic_write(target, entry["manifest"].encode("utf-8"), owner_of=models_dir)
            if replaced and not module.params["noprune"]:
                prune_layers(models_dir, replaced)
            now = client.models()
        except UnsafeStaging as exc:
            module.fail_json(msg=str(exc))
        except OllamaError as exc:
            module.fail_json(msg="importing into the server at %s: %s" % (client.base_url, exc.msg))
        except (IOError, OSError) as exc:
            module.fail_json(msg="importing into %s failed: %s (check the disk and that models_dir is the server's "
                                 "OLLAMA_MODELS)" % (models_dir, exc))
        for step, name, entry in steps:
            listed = now.get(name)
            if step["action"] != "none" and (not listed or listed.get("digest") != entry["digest"]):
                module.fail_json(msg="the server at %s does not list %s with the bundle's digest after the import: is "
                                     "%s its OLLAMA_MODELS?" % (client.base_url, name.short, models_dir))
            if listed:
                step["model"] = listed.get("name") or step["model"]
    results = [s for s, _n, _e in steps]
    result = dict(changed=changed, models=results, missing_blobs=missing_blobs if module.check_mode else [],
                  staged_bytes=uploaded, seed_bytes=registry.fetched_bytes if registry else 0,
                  resumed_bytes=registry.resumed_bytes if registry else 0)
    if module._diff:
        before = index.listed()
        after = sorted(set(before) | set(s["model"] for s in results if s["action"] != "none"))
        result["diff"] = dict(before="".join(n + "\n" for n in before), after="".join(n + "\n" for n in after))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
