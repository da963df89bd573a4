#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ollama_model
short_description: Pull, update and remove models on an Ollama server
version_added: 0.1.0
description:
  - Makes the models on an Ollama server match what you list, in one call for any number of models.
  - V(present) pulls a model only when the server does not have it; V(latest) reads the registry's manifest for the tag
    and pulls only when it differs from the one the server has; V(absent) removes it.
  - Model names are compared the way Ollama compares them (default tag C(latest), namespace C(library), host
    C(registry.ollama.ai), case-insensitive), so C(llama3.2) is present only when C(llama3.2:latest) is, never because
    C(llama3.2:1b) is.
  - A pull is successful only when the server's stream ends with C(success). A failed or interrupted pull leaves the
    server's store consistent (Ollama writes the manifest last); running the task again finishes it.
  - Names are read as the server reads them for a pull or a delete, C(:local) and C(:cloud) suffixes included
    (C(qwen3:local) is C(qwen3:latest), C(gpt-oss:20b:cloud) is C(gpt-oss:20b-cloud)). A scheme in front of a registry
    host is ignored, as the server ignores it; the server pulls over HTTPS unless O(insecure) is set.
  - For V(latest), and to check in check mode that a model exists, the module reads the registry from the host it runs
    on, with its own settings (see O(registry_ca_path)), never with the server's O(api_token), O(headers) or certificates.
  - After a run that changed something (or tried to), the module reads the server's model list again and reports what
    the server has, so a failed or interrupted pull is never reported as a change.
requirements:
  - Python 3.9 or newer on the managed host; nothing else to install.
  - An Ollama server it reaches at O(base_url); for V(latest) and in check mode also the models' registry, from the same host.
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
    details: >-
      Reports exactly what a real run would change, without downloading or deleting. For each model to pull it reads
      the registry's manifest and asks for the first byte of the smallest blob the server lacks, following redirects
      as the server's pull does, so a registry whose downloads the server would not follow fails the check too.
  diff_mode:
    support: full
    details: The server's model list before and after, pinned models with their digest.
  idempotent:
    support: full
options:
  name:
    description:
      - One model name or a list of them, such as C(llama3.2), C(llama3.2:3b), C(myteam/coder:7b) or
        C(registry.example.com:5000/team/model:tag). All take O(state).
      - Either O(name) or O(models) is required.
    type: list
    elements: str
    aliases: [model]
  models:
    description:
      - Models with a state each, to handle a mixed list in one call.
      - Each item is a model name (which takes O(state)) or a dictionary with C(name) and optionally C(state)
        (V(present), V(latest) or V(absent); default O(state)) and C(digest).
      - C(digest) pins the model to a manifest digest, the C(digest) C(/api/tags) shows (64 hex digits, or
        C(sha256:<64 hex>)). The server must have exactly that build (V(present) and V(latest) both mean that digest).
        When the server has another one (or none), the task pulls the tag if the registry's tag still has the locked
        manifest; if the tag moved but the registry still serves the locked manifest by digest, it fetches that
        manifest and the blobs the server lacks and puts them on the server (see O(models_dir) and O(staging_dir));
        if the registry no longer serves it, the task fails saying the tag moved, to what, and what to do. See also
        O(lock).
    type: list
    elements: raw
  state:
    description:
      - V(present) pulls missing models; V(latest) also pulls when the registry has a different manifest for the tag;
        V(absent) removes the models.
    type: str
    choices: [present, absent, latest]
    default: present
  insecure:
    description:
      - Pull from registries over plain HTTP (for a site registry without TLS), as the server's C(insecure) does.
      - A name written with C(http://) needs it; without it the server would use HTTPS, so the task fails instead.
    type: bool
    default: false
  purge:
    description:
      - Also remove every model on the server that is not listed in O(name) or O(models).
      - With no model listed to keep (an empty list, or only V(absent) ones) it would remove every model, which is more
        often an unset variable than a wish, so the task fails unless O(allow_purge_all) is set.
    type: bool
    default: false
  allow_purge_all:
    description:
      - Let O(purge) remove every model on the server when no model is listed to keep.
    type: bool
    default: false
  fit_check:
    description:
      - Before pulling, check that each model to pull fits this host, from its size in the registry manifest plus
        a margin for its context. It must fit in the free memory of the GPUs Ollama can use, split with RAM, or in
        RAM, and its download must fit on the disk where models are stored.
      - V(fail) refuses to pull when a model cannot fit, and then nothing is pulled by the task (nor in check mode);
        V(warn) pulls anyway with a warning; V(off) skips the check.
      - The default is V(warn), so a playbook that pulled before still pulls; GPU servers where a model that cannot
        run is a mistake should set V(fail).
      - The check reads the hardware of the host the module runs on, so it applies when the server is on that host
        (O(base_url) on loopback); for a server elsewhere it is skipped with a warning (run the task on the server
        host with C(delegate_to) to check it). The C(llmops.ollama.ollama_facts) module reports the same fit for any
        host, with configurable requirements.
    type: str
    choices: [fail, warn, 'off']
    default: warn
  progress_interval:
    description:
      - Seconds between two progress lines on the controller while models are pulled, for each host. Each line
        shows the host, the model, the percentage, the bytes done and in all, the download rate and the time left.
      - 'For example: C(lab1: pulling llama3.2:3b 45% 1.2 GB/2.7 GB 48.3 MB/s ETA 0:31).'
      - V(0) turns the progress lines off (the task then runs the module once, as any module).
      - At most 10.
    type: int
    default: 5
  _progress_file:
    description:
      - Internal, set by the collection's action plugin on every run; a value given in a task is dropped with a
        warning.
      - The file on the managed host where the module keeps the state of the pull in progress, for the action plugin
        to show.
    type: path
    version_added: 0.3.0
  _registry_unread:
    description:
      - Internal, set by the collection's action plugin on every run; a value given in a task is dropped with a
        warning.
      - The models whose registry the check-mode run just before could not read, with the reasons, so that a slow
        registry costs one O(timeout), not two.
    type: dict
    version_added: 0.3.0
  keep_alive:
    description:
      - Also load the models kept on the server (state V(present) or V(latest)) into its memory after the pulls, and
        keep them there this long, so the first request does not wait for a load.
      - A number of seconds or a duration as Ollama reads it (C(30m), C(2h), C(1h30m)); a negative value (V(-1))
        keeps them in memory until the server stops. V(0) is refused (it would unload them).
      - A model already in memory with the digest the server has is left as it is (its time in memory is not
        extended); one that is not, or that an update replaced, is loaded, which counts as a change (RV(models[].loaded)).
      - Unset (the default), nothing is loaded. The server's C(OLLAMA_MAX_LOADED_MODELS) and free memory limit how
        many stay loaded at once; the server may unload one to load another.
      - Loading waits for the server for up to O(timeout) seconds per model.
    type: raw
    version_added: 0.2.0
  instances:
    description:
      - The other servers that share this server's model store, as base URLs (C(http://127.0.0.1:11435)), the
        instances of C(ollama_server_instances), which the P(llmops.ollama.models#role) role passes. What this task
        pulls through O(base_url) lands in the shared store.
      - After the pulls, each must list every model kept on the server at the same digest, else the task fails
        saying that server does not share the store; with O(keep_alive) each loads the models into its own memory
        (its own GPU) as O(base_url) does (RV(models[].loaded_on)).
    type: list
    elements: str
    default: []
    version_added: 0.4.0
  lock:
    description:
      - A lock, model name to manifest digest (as C(/api/tags) shows it), that pins the listed models, as a
        C(digest) in each of their O(models) items. Names match as Ollama matches them (C(lab/tiny) is
        C(lab/tiny:latest)).
      - Every entry must be for a model listed in O(name) or O(models), and not as V(absent); an entry for any other
        model fails the task, as does a malformed digest or an item whose own C(digest) differs. For a lock that
        covers a whole fleet, where each host lists some of its models, the P(llmops.ollama.models#role) role applies
        to each host only the entries of the models it lists.
      - C(playbooks/lock.yml) writes a lock file from a reference host or the registry.
    type: dict
    version_added: 0.2.0
  models_dir:
    description:
      - The server's model store (E(OLLAMA_MODELS)) on this host. Used only to put a pinned model's locked manifest on
        the server when its tag has moved and the registry still serves that manifest by digest (Ollama pulls only by
        tag). Its blobs are downloaded into O(staging_dir) and uploaded through the server's API, and the manifest
        is written into this store, as M(llmops.ollama.ollama_import) does. That needs the task to run on the
        server's host (O(base_url) on loopback), as root or the service user.
      - Defaults to E(OLLAMA_MODELS), else C(/usr/share/ollama/.ollama/models) when it exists.
    type: path
    version_added: 0.2.0
  staging_dir:
    description:
      - Directory on this host where the blobs of a pinned model's locked manifest are downloaded when it is put on
        the server by digest (see O(models_dir)), each as C(sha256-<hex>), before it is uploaded through the server's
        API; a blob is removed once the server has it. Looked at, and made (mode C(0700)) when it is missing, only when
        a blob is to be downloaded; in check mode it is not looked at.
      - A download that is interrupted (the link dropped, the run stopped or killed) keeps its C(.partial) file here,
        and the next run asks the registry only for the bytes still missing (C(Range); a registry that ignores it
        sends the whole blob again), then verifies the whole blob's sha256 as always (RV(models[].resumed_bytes)). A
        blob downloaded whole and not yet uploaded is verified by the next run, not downloaded again.
      - It is the staging directory of M(llmops.ollama.ollama_import), with the same checks (see its
        O(llmops.ollama.ollama_import#module:staging_dir)), so that root never writes where another account could
        put links, the server's own store included. A directory (not a link) owned by root (or the user the module
        runs as) that neither its group nor others can write, under directories owned by root (or that user) that
        others cannot write unless they are sticky; anything else fails the task before anything is changed, naming
        the path and what was found there.
      - The default is in C(/var/cache), which only root can write. The P(llmops.ollama.models#role) role passes its
        C(ollama_models_staging_dir).
    type: path
    default: /var/cache/ollama-bundle
    version_added: 0.3.0
  noprune:
    description:
      - When a pinned model's locked manifest is put in place (see O(models_dir)), keep the blobs of the manifest it
        replaces that no model uses any more, as the server's own pull keeps them when it runs with
        E(OLLAMA_NOPRUNE) set. Give the server's setting (the P(llmops.ollama.models#role) role passes the
        P(llmops.ollama.server#role) role's C(ollama_server_noprune)).
    type: bool
    default: false
    version_added: 0.3.0
seealso:
  - module: llmops.ollama.ollama_facts
notes:
  - The server does the download; this module only asks it to, so the managed host needs only Python.
  - While models are pulled, ansible-playbook shows a progress line per host every O(progress_interval) seconds.
    To do that the task first runs the module in check mode; when it would pull nothing, that result is the task's
    result (a task with nothing to do still costs one module call). When it would download less than 8 MiB in all,
    the module runs once more, plainly (such a pull ends before a progress line is due). When it would download more,
    the module runs asynchronously and the controller reads its progress file. Tasks in check mode, tasks with C(async), and
    O(progress_interval=0) run the module once, with no progress lines.
"""

EXAMPLES = r"""
- name: Make sure two models are on the local server
  llmops.ollama.ollama_model:
    name:
      - llama3.2:3b
      - qwen2.5-coder:7b

- name: Keep a model at the newest build of its tag
  llmops.ollama.ollama_model:
    name: gpt-oss:20b
    state: latest

- name: Mixed states in one call, against a GPU server, removing anything not listed
  llmops.ollama.ollama_model:
    base_url: http://gpu1.example.com:11434
    models:
      - llama3.2:3b
      - name: gpt-oss:20b
        state: latest
      - name: mistral
        state: absent
    purge: true

- name: Pull from a site registry without TLS
  llmops.ollama.ollama_model:
    name: registry.example.com:5000/site/llama3.2:3b
    insecure: true

- name: Pull a model and keep it in memory, so Codex's first request does not wait for a load
  llmops.ollama.ollama_model:
    name: gpt-oss:20b
    keep_alive: -1

- name: Pull a big model quietly (no progress lines)
  llmops.ollama.ollama_model:
    name: gpt-oss:120b
    progress_interval: 0

- name: Keep two models at the builds the fleet's lock file pins (written by playbooks/lock.yml)
  llmops.ollama.ollama_model:
    models:
      - llama3.2:3b
      - gpt-oss:20b
    lock: "{{ lookup('ansible.builtin.file', 'models.lock.yml') | from_yaml }}"

- name: Pin one model to a build
  llmops.ollama.ollama_model:
    models:
      - name: llama3.2:3b
        digest: a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72

- name: Set the server once for every module of the collection
  module_defaults:
    group/llmops.ollama.ollama:
      base_url: http://gpu1.example.com:11434
  block:
    - name: Remove a model
      llmops.ollama.ollama_model:
        name: llama2
        state: absent
"""

RETURN = r"""
registry_unread:
  description:
    - In check mode, the model whose registry this host could not read, with the reason, when that is why the task
      failed (a real run would warn and leave the pull to the server).
  returned: when check mode failed for that reason
  type: dict
  sample: {"registry.example.com/team/model:1": "no answer from the registry at https://registry.example.com within 30s (timeout)"}
  version_added: 0.3.0
models:
  description: One entry per model acted on or checked, in the order given (purged models last).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The name as given.
      type: str
      sample: llama3.2
    model:
      description:
        - The name as the server lists it, with the server's casing (a pull of C(LAB/Tiny:v2) when the server has
          C(lab/tiny:v1) is stored as C(lab/tiny:v2)). In check mode, the name it would be listed under.
      type: str
      sample: llama3.2:latest
    state:
      description: The state asked for.
      type: str
      sample: present
    action:
      description: What was done (or, in check mode, would be done).
      type: str
      choices: [none, pulled, updated, removed]
      sample: pulled
    changed:
      description: Whether this model changed.
      type: bool
    digest_before:
      description: Digest (sha256 of the manifest, hex) the server had before, or null.
      type: str
      sample: a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72
    digest_after:
      description: Digest the server has after the task (in check mode, the one it would have), or null.
      type: str
    digest_locked:
      description: The digest the model is pinned to (its C(digest), or O(lock)).
      type: str
      returned: for pinned models
      version_added: 0.2.0
    source:
      description:
        - How a pinned model got (or, in check mode, would get) its locked digest. V(tag) is a pull of its tag, whose
          manifest is the locked one; V(digest) is the locked manifest fetched from the registry by digest, because the
          tag moved, and put on the server with the blobs it lacked.
      type: str
      choices: [tag, digest]
      returned: for pinned models that were (or would be) pulled
      version_added: 0.2.0
    size:
      description: Size of the model in bytes (after, or before when removed).
      type: int
      sample: 2019393189
    bytes:
      description:
        - Bytes the server downloaded (in check mode, would download) for this model, from the registry manifest and
          the blobs the server already had. 0 when nothing was pulled or every layer was there.
        - For a model put on the server by digest (RV(models[].source) V(digest)), the bytes this run downloaded into
          O(staging_dir); what an interrupted earlier run had kept there is in RV(models[].resumed_bytes) (check mode
          counts the whole blobs the server lacks).
      type: int
    resumed_bytes:
      description:
        - Bytes of the blobs of a model put on the server by digest that an interrupted earlier run had kept in
          O(staging_dir) (C(.partial) files, or a blob downloaded whole and not uploaded) and that were not downloaded
          again, when the registry answers C(Range) requests (one that does not sends the whole blob again).
      type: int
      returned: for models put on the server by digest (RV(models[].source) V(digest)), in a real run that did so
      version_added: 0.3.0
    seconds:
      description: Time the pull took.
      type: float
    rate:
      description: Download rate of the pull in bytes per second.
      type: int
    error:
      description: Why this model was not changed as asked (the pull or removal failed, or was not tried).
      type: str
      returned: when it failed
    loaded:
      description:
        - Whether the task loaded this model into the server's memory (in check mode, would load it), because
          O(keep_alive) is set and it was not in memory with the digest the server has.
      type: bool
      returned: when O(keep_alive) is set, for models kept on the server
      version_added: 0.2.0
    loaded_on:
      description:
        - The servers of O(instances) the task loaded this model into (in check mode, would load it into).
      type: list
      elements: str
      returned: when O(keep_alive) and O(instances) are set and the task loaded the model on one of them
      version_added: 0.4.0
    fit:
      description:
        - For models to pull, when O(fit_check) ran. C(fits) is V(vram), V(split), V(ram) or V(none); C(ok) is false
          when the model cannot fit in memory or on disk; C(message) says why.
      type: dict
      returned: when O(fit_check) checked the model
      sample: {"fits": "none", "ok": false, "message": "does not fit: needs about 1.2 TiB of memory, ..."}
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.ollama.plugins.module_utils._http import (
    OllamaError,
    OllamaNotFound,
    OllamaUnreachable,
)
from ansible_collections.llmops.ollama.plugins.module_utils._lock import (
    InvalidLock,
    apply_lock,
    install_by_digest,
    moved_message,
    pins,
)
from ansible_collections.llmops.ollama.plugins.module_utils._manifest import blobs as manifest_blobs
from ansible_collections.llmops.ollama.plugins.module_utils._ollama_client import api_argument_spec, client_from_params
from ansible_collections.llmops.ollama.plugins.module_utils._progress import ProgressFile
from ansible_collections.llmops.ollama.plugins.module_utils._registry_client import (
    registry_argument_spec,
    registry_client_from_params,
)
from ansible_collections.llmops.ollama.plugins.module_utils._staging import DEFAULT as DEFAULT_STAGING
from ansible_collections.llmops.ollama.plugins.module_utils._staging import UnsafeStaging, staging_dir
from ansible_collections.llmops.ollama.plugins.module_utils._store import default_models_dir
from ansible_collections.llmops.ollama.plugins.module_utils._hardware import gather as gather_hardware
from ansible_collections.llmops.ollama.plugins.module_utils._names import STATES, InvalidModelName, parse_model_list
from ansible_collections.llmops.ollama.plugins.module_utils._requirements import check_host, fit_model, human
from ansible_collections.llmops.ollama.plugins.module_utils._warm import (
    InvalidKeepAlive,
    keep_alive_value,
    on_instances,
    warm,
)


MAX_PROGRESS_INTERVAL = 10
PULLS = ("pulled", "updated")
SETTLE_SECONDS = 5  # how long a model just pulled may be missing from the server's list (see settled_models)


def wanted_models(params):
    """([(given name, ModelName, state)], {key: pinned hex digest}) from name/models and lock; fails early on invalid
    names, digests or conflicts."""
    items = params["models"] if params["models"] is not None else params["name"] or []
    if params["lock"] is not None:
        items = apply_lock(items, params["lock"], unlisted="fail", where="lock")
    return parse_model_list(items, params["state"]), pins(items, params["state"])


def plan_pinned(module, registry, client, step, given, stored, locked):
    """What a model pinned to `locked` needs: nothing, a pull of its tag (the tag still has that manifest), or the
    locked manifest fetched by digest (the tag moved, the registry still serves it). Returns the manifest to put on
    the server (None when nothing is to be done); raises OllamaError when the locked build cannot be had."""
    insecure = module.params["insecure"]
    if step["digest_before"] == locked:
        return None
    moved_to = None
    try:
        moved_to, manifest = registry.manifest(stored, insecure)
    except OllamaNotFound:
        pass  # the tag is gone: the manifest may still be served by digest
    except OllamaError as exc:
        raise OllamaError("cannot check '%s' against its locked digest sha256:%s: %s" % (given, locked, exc.msg))
    action = "updated" if step["digest_before"] else "pulled"
    if moved_to == locked:
        step.update(action=action, changed=True, digest_after=locked, source="tag")
        return manifest
    try:
        raw, manifest = registry.manifest_by_digest(stored, locked, insecure)
    except OllamaNotFound:
        raise OllamaError(moved_message(given, locked, moved_to, "the registry no longer serves sha256:%s" % locked))
    except OllamaError as exc:
        raise OllamaError("cannot fetch the locked manifest sha256:%s of '%s' by digest: %s" % (locked, given, exc.msg))
    if not client.on_this_host:
        why = ("the locked manifest, which the registry still serves by digest, can be put on the server only from "
               "its own host (its store is written), and the server at %s is not on this host: run the task there "
               "(delegate_to)" % client.base_url)
        raise OllamaError(moved_message(given, locked, moved_to, why))
    models_dir = module.params["models_dir"] or default_models_dir()
    if not os.path.isdir(models_dir):
        raise OllamaError(moved_message(
            given, locked, moved_to, "the locked manifest, which the registry still serves by digest, is put into the "
            "server's store, and models_dir %s is not a directory on this host: give the server's OLLAMA_MODELS"
            % models_dir))
    step.update(action=action, changed=True, digest_after=locked, source="digest", raw=raw, manifest=manifest,
                parsed_stored=stored)
    return manifest


class UnreadRegistry(OllamaError):
    """Check mode's refusal of a model whose registry this host cannot read, which a real run leaves to the server."""

    def __init__(self, msg, given, reason):
        super(UnreadRegistry, self).__init__(msg)
        self.given, self.reason = given, reason


def plain_http_refusal(given):
    return OllamaError("'%s' asks for plain HTTP, but Ollama ignores a scheme in a model name and pulls over HTTPS "
                       "unless insecure is set: set insecure: true to pull from a plain-HTTP registry" % given)


def read_remote(module, registry, given, stored, state, warnings):
    """The registry's (digest, manifest) of a model to pull, or None where this host cannot read it and a real run
    leaves it to the server (state present). The reason the check-mode run just before gave (_registry_unread) is
    taken instead of waiting for the same registry a second time."""
    unread = (module.params["_registry_unread"] or {}).get(given) if state == "present" else None
    if unread is None:
        try:
            return registry.manifest(stored, module.params["insecure"])
        except OllamaNotFound as exc:
            raise OllamaError("model '%s' is not in its registry (%s)" % (given, exc.msg))
        except OllamaError as exc:
            unread = exc.msg
    if state == "latest":
        raise OllamaError("cannot tell whether '%s' is the latest: %s" % (given, unread))
    if module.check_mode:
        raise UnreadRegistry("cannot check that '%s' can be pulled: %s" % (given, unread), given, unread)
    warnings.append("could not read the registry for '%s' from this host (%s); the server will try when it pulls"
                    % (given, unread))
    return None


def probe_downloads(module, registry, steps):
    """Check mode: for each model to pull (that fits), the smallest blob the server lacks (plan's step["probe"]) is
    asked for (its first byte), as the server's pull downloads it, so that a registry sending downloads where the
    server does not follow (a 301 or 302 to another host) fails the check as it fails the pull. Raises OllamaError."""
    for step in steps:
        if step["action"] not in PULLS or not step.get("probe"):
            continue
        try:
            registry.probe_blob(step["parsed_stored"], step["probe"], module.params["insecure"])
        except OllamaError as exc:
            raise OllamaError("'%s' cannot be pulled: %s" % (step["name"], exc.msg))


def plan(module, registry, client, wanted, index, pinned):
    """Decide per model what to do, reading the registry where that is needed. Returns (plan, warnings)."""
    steps, warnings, planned = [], [], set()
    insecure = module.params["insecure"]
    for given, parsed, state in wanted:
        have = index.get(parsed)
        stored = index.stored(parsed)  # the casing the server uses, for its store and for the registry
        step = dict(name=given, model=stored.short, state=state, action="none", changed=False,
                    digest_before=have and have.get("digest"), digest_after=have and have.get("digest"),
                    size=have and have.get("size"), bytes=0, seconds=0.0, rate=0, parsed=parsed)
        locked = pinned.get(parsed.key)
        if locked:
            step["digest_locked"] = locked
            if parsed.scheme.lower() == "http" and not insecure:
                raise plain_http_refusal(given)
            manifest = plan_pinned(module, registry, client, step, given, stored, locked)
            if manifest is not None:
                walked = manifest_blobs(manifest)
                step.update(size=sum(size for _d, size in walked), bytes=client.missing_bytes(walked, planned))
            steps.append(step)
            continue
        if state == "absent":
            if have:
                step.update(action="removed", changed=True, digest_after=None)
        elif state == "latest" or not have:
            if parsed.scheme.lower() == "http" and not insecure:
                raise plain_http_refusal(given)
            remote = read_remote(module, registry, given, stored, state, warnings)
            if remote and have and remote[0] == have.get("digest"):
                pass  # latest already
            else:
                walked = manifest_blobs(remote[1]) if remote else None
                step.update(action="updated" if have else "pulled", changed=True, parsed_stored=stored,
                            digest_after=remote[0] if remote else None,
                            size=sum(size for _d, size in walked) if remote else None,
                            bytes=client.missing_bytes(walked, planned) if remote else None)
                if remote:  # `planned` now holds every blob the server lacks: the smallest of this model's, if any
                    step["probe"] = min([(size, d) for d, size in walked if d in planned] or [(0, None)])[1]
        steps.append(step)
    if module.params["purge"]:
        keep = set(p.key for _g, p, s in wanted if s != "absent")
        if not keep and not module.params["allow_purge_all"]:
            raise OllamaError("purge: true with no model listed to keep would remove every model on the server at %s; "
                              "list the models to keep (an empty list is often an unset variable), or set "
                              "allow_purge_all: true to remove them all" % client.base_url)
        listed = set(p.key for _g, p, _s in wanted)
        for key, entry in index.items():
            if key not in keep and key not in listed:
                steps.append(dict(name=entry.get("name"), model=entry.get("name"), state="absent", action="removed",
                                  changed=True, digest_before=entry.get("digest"), digest_after=None,
                                  size=entry.get("size"), bytes=0, seconds=0.0, rate=0, parsed=None, key=key))
    return steps, warnings


def fit_checks(module, client, steps):
    """Fit each model to pull on this host (fit_check). Returns (refusals, warnings); sets step["fit"]."""
    pulls = [s for s in steps if s["action"] in PULLS]
    if module.params["fit_check"] == "off" or not pulls:
        return [], []
    if not client.on_this_host:
        return [], ["fit_check skipped: the server at %s is not on this host, whose hardware the check reads; run the "
                    "task on the server host (delegate_to) to check the fit" % client.base_url]
    hardware = gather_hardware(default_models_dir(), module.run_command, module.get_bin_path)
    check = check_host(hardware)
    refusals, warnings, reserved = [], [], 0
    for step in pulls:
        if step["size"] is None:
            warnings.append("fit_check: the size of '%s' is unknown (its registry is not readable from this host)"
                            % step["name"])
            continue
        fit = fit_model(step["size"], hardware, check, step["bytes"], reserved)
        reserved += (step["bytes"] or 0) if fit["ok"] else 0
        step["fit"] = dict(fits=fit["fits"], ok=fit["ok"], message=fit["message"])
        if not fit["ok"]:
            text = "'%s' (%s) %s" % (step["name"], human(step["size"]), fit["message"].rstrip("."))
            (refusals if module.params["fit_check"] == "fail" else warnings).append(text)
    return refusals, warnings


def staging_problem(module, steps):
    """Why staging_dir may not be used (see module_utils/_staging.py), or None: asked before a real run changes
    anything, when a pinned model put on the server by digest needs blobs the server lacks (downloaded there). It is
    made (mode 0700) when it is missing."""
    if module.check_mode or not any(s.get("source") == "digest" and s["bytes"] for s in steps):
        return None
    try:
        staging_dir(module.params["staging_dir"], make=True)
    except UnsafeStaging as exc:
        return str(exc)
    return None


def unchanged(step, error):
    """A step that did not happen: what the server had is what it has."""
    step.update(action="none", changed=False, digest_after=step["digest_before"], bytes=0, error=error)


def finished_check(client, step):
    """Whether the server now lists the model as the pull would leave it (asked after a silent checksum step)."""
    def finished():
        try:
            entry = client.models().get(step["parsed"])
        except OllamaError:
            return False
        if not entry:
            return False
        if step["digest_after"]:
            return entry.get("digest") == step["digest_after"]
        return entry.get("digest") != step["digest_before"]
    return finished


def run_steps(module, client, registry, steps, failures, progress=None):
    """Pull and remove as planned (nothing in check mode); collect error messages in `failures`."""
    if module.check_mode:
        return
    todo = [s for s in steps if s["changed"]]
    pulls = len([s for s in todo if s["action"] in PULLS])
    pulled_so_far = 0
    for i, step in enumerate(todo):
        try:
            if step["action"] == "removed":
                client.delete(step["model"])
            elif step.get("source") == "digest":
                started = time.time()
                models_dir = module.params["models_dir"] or default_models_dir()
                try:
                    fetched, resumed = install_by_digest(client, registry, step["parsed_stored"], step["raw"],
                                                         step["manifest"], models_dir, module.params["staging_dir"],
                                                         module.params["insecure"], noprune=module.params["noprune"])
                except UnsafeStaging as exc:
                    raise OllamaError(str(exc))
                except (IOError, OSError) as exc:
                    raise OllamaError("putting the locked manifest of '%s' on the server failed: %s (check the disk "
                                      "of staging_dir %s and of the server's store %s, and that models_dir is the "
                                      "server's OLLAMA_MODELS)"
                                      % (step["name"], exc, module.params["staging_dir"], models_dir))
                seconds = max(time.time() - started, 0.001)
                step.update(bytes=fetched, resumed_bytes=resumed, seconds=round(seconds, 3),
                            rate=int(fetched / seconds))
            else:
                pulled_so_far += 1
                if progress is not None:
                    progress.start(step["name"], pulled_so_far, pulls, step["size"])
                pulled = client.pull(step["name"], insecure=module.params["insecure"], progress=progress,
                                     finished=finished_check(client, step))
                if step["bytes"] is None:  # the manifest was not readable from here: count what the stream showed
                    step["bytes"] = pulled.bytes
                seconds = max(pulled.seconds, 0.001)
                step.update(seconds=round(seconds, 3), rate=int(step["bytes"] / seconds))
        except OllamaUnreachable as exc:
            failures.append(exc.msg)
            unchanged(step, exc.msg)
            for later in todo[i + 1:]:  # the server is gone: nothing else can work, and nothing else was tried
                unchanged(later, "not tried: the server stopped answering before it")
            return
        except OllamaError as exc:
            unchanged(step, exc.msg)
            failures.append(exc.msg)


def _pulled_unlisted(steps, now):
    return [s for s in steps if s["action"] in PULLS and s["changed"] and s.get("error") is None
            and s.get("parsed") is not None and now.get(s["parsed"]) is None]


def settled_models(client, steps, wait=SETTLE_SECONDS):
    """The server's ModelIndex after the pulls. A model whose pull just succeeded may be missing from it for a
    moment: Ollama rewrites a manifest in place (truncated, then written), so while another pull of the same model
    writes it, /api/tags skips it. Read again, a few times within `wait` seconds, until the pulled models are listed."""
    deadline = time.time() + wait
    now = client.models()
    while _pulled_unlisted(steps, now) and time.time() < deadline:
        time.sleep(0.25)
        now = client.models()
    return now


def unlisted(steps, now, failures):
    """A pull the server said succeeded, of a model it still does not list: the step fails saying so."""
    for step in _pulled_unlisted(steps, now):
        message = ("the server said the pull of '%s' succeeded, but does not list it (%d s later): its manifest may "
                   "have been removed or damaged meanwhile; run again" % (step["name"], SETTLE_SECONDS))
        unchanged(step, message)
        failures.append(message)


def reconcile(steps, now):
    """Make each step say what the server has now (`now`, a ModelIndex read after the run)."""
    for step in steps:
        if step.get("parsed") is None:  # a purged model
            entry = now.entries.get(step["key"])
        else:
            entry = now.get(step["parsed"])
        if step["state"] == "absent":
            gone = entry is None
            step.update(changed=gone and step["digest_before"] is not None,
                        action="removed" if gone and step["digest_before"] is not None else "none",
                        digest_after=None if gone else entry.get("digest"))
            continue
        if entry is not None:
            step.update(model=entry.get("name") or step["model"], digest_after=entry.get("digest"),
                        size=entry.get("size"))
        else:
            step.update(digest_after=None)
        if step["digest_after"] == step["digest_before"]:
            step.update(changed=False, action="none")
            if step.get("error") is None:
                step["bytes"] = 0
        elif step["digest_after"] is not None:
            step.update(changed=True, action="updated" if step["digest_before"] else "pulled")


def model_list(names, digests=None):
    """The diff's text: a model a line; a pinned model with its digest (None: not on the server)."""
    digests = digests or {}
    return "".join("%s%s\n" % (n, (" sha256:%s" % digests[n]) if digests.get(n) else "") for n in sorted(names))


def pinned_digests(steps, key):
    """{listed name: digest} of the pinned models, `key` digest_before or digest_after."""
    return dict((s["model"], s[key]) for s in steps if s.get("digest_locked") and s[key])


def check_pins(steps, failures):
    """After a real run: each pinned model that was pulled has its locked digest, or the run fails saying so."""
    for step in steps:
        if step.get("source") and step.get("error") is None and step["digest_after"] != step["digest_locked"]:
            message = ("'%s' has sha256:%s after the pull, not the locked sha256:%s: its tag moved during the run; run "
                       "again" % (step["name"], step["digest_after"], step["digest_locked"]))
            step["error"] = message
            failures.append(message)


def predicted(before, steps):
    after = set(before)
    for step in steps:
        if step["action"] == "removed":
            after.discard(step["model"])
        elif step["action"] in PULLS:
            after.add(step["model"])
    return after


def public(step):
    return dict((k, v) for k, v in step.items()
                if k not in ("parsed", "key", "raw", "manifest", "parsed_stored", "probe"))


def main():
    argument_spec = api_argument_spec()
    argument_spec.update(registry_argument_spec())
    argument_spec.update(
        name=dict(type="list", elements="str", aliases=["model"]),
        models=dict(type="list", elements="raw"),
        state=dict(type="str", default="present", choices=list(STATES)),
        insecure=dict(type="bool", default=False),
        purge=dict(type="bool", default=False),
        allow_purge_all=dict(type="bool", default=False),
        fit_check=dict(type="str", default="warn", choices=["fail", "warn", "off"]),
        progress_interval=dict(type="int", default=5),
        # set by the collection's action plugin only (plugins/action/ollama_model.py): the file where the module keeps
        # the state of its pull for the controller to read, and what the check-mode run just before could not read
        _progress_file=dict(type="path"),
        _registry_unread=dict(type="dict"),
        keep_alive=dict(type="raw"),
        instances=dict(type="list", elements="str", default=[]),
        lock=dict(type="dict"),
        models_dir=dict(type="path"),
        staging_dir=dict(type="path", default=DEFAULT_STAGING),
        noprune=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[("name", "models")], required_one_of=[("name", "models")])
    if not 0 <= module.params["progress_interval"] <= MAX_PROGRESS_INTERVAL:
        module.fail_json(msg="progress_interval must be from 0 (no progress lines) to %d seconds, got %s"
                         % (MAX_PROGRESS_INTERVAL, module.params["progress_interval"]), models=[])
    try:
        keep_alive = keep_alive_value(module.params["keep_alive"])
    except InvalidKeepAlive as exc:
        module.fail_json(msg=str(exc), models=[])
    try:
        wanted, pinned = wanted_models(module.params)
        client = client_from_params(module.params)
        registry = registry_client_from_params(module.params)
        index = client.models()
        steps, warnings = plan(module, registry, client, wanted, index, pinned)
    except UnreadRegistry as exc:
        module.fail_json(msg=str(exc), models=[], registry_unread={exc.given: exc.reason})
    except (InvalidModelName, InvalidLock, OllamaError) as exc:
        module.fail_json(msg=str(exc), models=[])
    refusals, fit_warnings = fit_checks(module, client, steps)
    warnings.extend(fit_warnings)
    if refusals:
        for step in steps:
            step.update(action="none", changed=False, digest_after=step["digest_before"], bytes=0)
        module.fail_json(msg="refusing to pull (fit_check: fail): %s. Nothing was pulled; set fit_check: warn to pull "
                         "anyway." % "; ".join(refusals), changed=False, models=[public(s) for s in steps])

    if module.check_mode:
        try:
            probe_downloads(module, registry, steps)
        except OllamaError as exc:
            module.fail_json(msg=str(exc), models=[])
    problem = staging_problem(module, steps)
    if problem:
        for step in steps:
            step.update(action="none", changed=False, digest_after=step["digest_before"], bytes=0)
        module.fail_json(msg=problem, changed=False, models=[public(s) for s in steps])

    for warning in warnings:
        module.warn(warning)
    before = index.listed()
    after = predicted(before, steps)
    failures = []
    progress = ProgressFile(module.params["_progress_file"]) if module.params["_progress_file"] else None
    try:
        run_steps(module, client, registry, steps, failures, progress)
    finally:
        if progress is not None:
            progress.close()
    if progress is not None and progress.error:
        module.warn("could not write the pull's progress to %s: %s" % (module.params["_progress_file"], progress.error))

    if not module.check_mode and any(s["changed"] or s.get("error") for s in steps):
        try:
            now = settled_models(client, steps)
        except OllamaError as exc:
            failures.append(exc.msg)
        else:
            unlisted(steps, now, failures)
            reconcile(steps, now)
            after = set(now.listed())
            check_pins(steps, failures)

    if keep_alive is not None:
        warm(client, steps, keep_alive, module.check_mode, failures)
    if module.params["instances"]:
        try:
            others = [client_from_params(dict(module.params, base_url=url)) for url in module.params["instances"]]
        except OllamaError as exc:
            module.fail_json(msg="instances: %s" % exc.msg, models=[public(s) for s in steps])
        on_instances(others, steps, keep_alive, module.check_mode, failures)

    result = dict(changed=any(s["changed"] for s in steps), models=[public(s) for s in steps])
    if module._diff:
        result["diff"] = dict(before=model_list(before, pinned_digests(steps, "digest_before")),
                              after=model_list(after, pinned_digests(steps, "digest_after")),
                              before_header="models on %s" % client.base_url,
                              after_header="models on %s" % client.base_url)
    if failures:
        module.fail_json(msg="; ".join(failures), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
