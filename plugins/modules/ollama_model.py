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
  - For V(latest), and to check in check mode that a model exists, the module reads the registry from the host it runs on.
requirements:
  - Python 3.9 or newer on the managed host; nothing else to install.
  - An Ollama server it reaches at O(base_url); for V(latest) and in check mode also the models' registry, from the same host.
author:
  - llmops.ollama maintainers (@llmops)
extends_documentation_fragment:
  - llmops.ollama.api
  - llmops.ollama.api.attributes
  - llmops.ollama.attributes
attributes:
  check_mode:
    support: full
    details: Reports exactly what a real run would change, without downloading or deleting; checks the registry for models to pull.
  diff_mode:
    support: full
    details: The server's model list before and after.
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
        (V(present), V(latest) or V(absent); default O(state)).
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
      - Allow pulling from registries over plain HTTP (for a site registry without TLS).
    type: bool
    default: false
  purge:
    description:
      - Also remove every model on the server that is not listed in O(name) or O(models).
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
  progress_file:
    description:
      - File on the managed host where the module keeps the state of the pull in progress (JSON, replaced about
        once a second, mode 0600, removed when the module ends).
      - Set by the collection's action plugin, which reads it to show the progress; leave it unset.
    type: path
seealso:
  - module: llmops.ollama.ollama_facts
notes:
  - The server does the download; this module only asks it to, so the managed host needs only Python.
  - While models are pulled, ansible-playbook shows a progress line per host every O(progress_interval) seconds.
    To do that the task first runs the module in check mode; when it would pull nothing, that result is the task's
    result (a task with nothing to do still costs one module call). When it would pull, the module runs
    asynchronously and the controller reads its progress file. Tasks in check mode, tasks with C(async), and
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

- name: Pull a big model quietly (no progress lines)
  llmops.ollama.ollama_model:
    name: gpt-oss:120b
    progress_interval: 0

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
      description: The name as the server lists it.
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
    size:
      description: Size of the model in bytes (after, or before when removed).
      type: int
      sample: 2019393189
    bytes:
      description:
        - Bytes the server downloaded (in check mode, would download) for this model, from the registry manifest and
          the blobs the server already had. 0 when nothing was pulled or every layer was there.
      type: int
    seconds:
      description: Time the pull took.
      type: float
    rate:
      description: Download rate of the pull in bytes per second.
      type: int
    fit:
      description:
        - For models to pull, when O(fit_check) ran. C(fits) is V(vram), V(split), V(ram) or V(none); C(ok) is false
          when the model cannot fit in memory or on disk; C(message) says why.
      type: dict
      returned: when O(fit_check) checked the model
      sample: {"fits": "none", "ok": false, "message": "does not fit: needs about 1.2 TiB of memory, ..."}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.six.moves.urllib.parse import urlsplit

from ansible_collections.llmops.ollama.plugins.module_utils._client import (
    OllamaError,
    OllamaNotFound,
    OllamaUnreachable,
    api_argument_spec,
    client_from_params,
    manifest_size,
)
from ansible_collections.llmops.ollama.plugins.module_utils._progress import ProgressFile
from ansible_collections.llmops.ollama.plugins.module_utils._store import default_models_dir
from ansible_collections.llmops.ollama.plugins.module_utils._hardware import gather as gather_hardware
from ansible_collections.llmops.ollama.plugins.module_utils._names import (
    STATES,
    InvalidModelName,
    parse_model_list,
    parse_model_name,
)
from ansible_collections.llmops.ollama.plugins.module_utils._requirements import check_host, fit_model, human


MAX_PROGRESS_INTERVAL = 10


def wanted_models(params):
    """[(given name, ModelName, state)] from name/models; fails early on invalid names or conflicts."""
    items = params["models"] if params["models"] is not None else params["name"] or []
    return parse_model_list(items, params["state"])


def local_models(client):
    """{key: tags entry} of what the server has."""
    found = {}
    for entry in client.tags():
        try:
            found[parse_model_name(entry.get("name") or entry.get("model") or "").key] = entry
        except InvalidModelName:
            continue  # a name this version cannot parse cannot be one we were asked for
    return found


def plan(module, client, wanted, local):
    """Decide per model what to do, reading the registry where that is needed. Returns (plan, warnings)."""
    steps, warnings, planned = [], [], set()
    insecure = module.params["insecure"]
    for given, parsed, state in wanted:
        have = local.get(parsed.key)
        step = dict(name=given, model=parsed.short, state=state, action="none", changed=False,
                    digest_before=have and have.get("digest"), digest_after=have and have.get("digest"),
                    size=have and have.get("size"), bytes=0, seconds=0.0, rate=0, parsed=parsed)
        if state == "absent":
            if have:
                step.update(action="removed", changed=True, digest_after=None)
        elif state == "latest" or not have:
            if parsed.scheme == "http" and not insecure:
                raise OllamaError("'%s' names a plain-HTTP registry: set insecure: true to pull from it" % given)
            remote = None
            try:
                remote = client.registry_manifest(parsed, insecure)
            except OllamaNotFound as exc:
                raise OllamaError("model '%s' is not in its registry (%s)" % (given, exc.msg))
            except OllamaError as exc:
                if state == "latest":
                    raise OllamaError("cannot tell whether '%s' is the latest: %s" % (given, exc.msg))
                if module.check_mode:
                    raise OllamaError("cannot check that '%s' can be pulled: %s" % (given, exc.msg))
                warnings.append("could not read the registry for '%s' from this host (%s); "
                                "the server will try when it pulls" % (given, exc.msg))
            if remote and have and remote[0] == have.get("digest"):
                pass  # latest already
            else:
                step.update(action="updated" if have else "pulled", changed=True,
                            digest_after=remote[0] if remote else None,
                            size=manifest_size(remote[1]) if remote else None,
                            bytes=client.missing_bytes(remote[1], planned) if remote else None)
        steps.append(step)
    if module.params["purge"]:
        keep = set(p.key for _g, p, s in wanted if s != "absent")
        listed = set(p.key for _g, p, _s in wanted)
        for key, entry in sorted(local.items()):
            if key not in keep and key not in listed:
                steps.append(dict(name=entry.get("name"), model=entry.get("name"), state="absent", action="removed",
                                  changed=True, digest_before=entry.get("digest"), digest_after=None,
                                  size=entry.get("size"), bytes=0, seconds=0.0, rate=0, parsed=None))
    return steps, warnings


def fit_checks(module, client, steps):
    """Fit each model to pull on this host (fit_check). Returns (refusals, warnings); sets step["fit"]."""
    pulls = [s for s in steps if s["action"] in ("pulled", "updated")]
    if module.params["fit_check"] == "off" or not pulls:
        return [], []
    if urlsplit(client.base_url).hostname not in ("127.0.0.1", "::1", "localhost"):
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


def run_steps(module, client, steps, after, failures, progress=None):
    """Pull and remove as planned (in check mode only predict `after`); collect error messages in `failures`."""
    pulls = len([s for s in steps if s["changed"] and s["action"] in ("pulled", "updated")])
    pulled_so_far = 0
    for step in steps:
        if step["action"] == "removed":
            after.discard(step["model"])
        elif step["action"] in ("pulled", "updated"):
            after.add(step["model"])
        if module.check_mode or not step["changed"]:
            continue
        try:
            if step["action"] == "removed":
                client.delete(step["model"])
            else:
                pulled_so_far += 1
                if progress is not None:
                    progress.start(step["name"], pulled_so_far, pulls, step["size"])
                pulled = client.pull(step["name"], insecure=module.params["insecure"], progress=progress)
                if step["bytes"] is None:  # the manifest was not readable from here: count what the stream showed
                    step["bytes"] = pulled.bytes
                seconds = max(pulled.seconds, 0.001)
                step.update(seconds=round(seconds, 3), rate=int(step["bytes"] / seconds))
        except OllamaUnreachable as exc:
            failures.append(exc.msg)
            break  # the server is gone: nothing else can work
        except OllamaError as exc:
            step["changed"] = False
            step["error"] = exc.msg
            failures.append(exc.msg)


def model_list(names):
    return "".join("%s\n" % n for n in sorted(names))


def main():
    argument_spec = api_argument_spec()
    argument_spec.update(
        name=dict(type="list", elements="str", aliases=["model"]),
        models=dict(type="list", elements="raw"),
        state=dict(type="str", default="present", choices=list(STATES)),
        insecure=dict(type="bool", default=False),
        purge=dict(type="bool", default=False),
        fit_check=dict(type="str", default="warn", choices=["fail", "warn", "off"]),
        progress_interval=dict(type="int", default=5),
        progress_file=dict(type="path"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[("name", "models")], required_one_of=[("name", "models")])
    if not 0 <= module.params["progress_interval"] <= MAX_PROGRESS_INTERVAL:
        module.fail_json(msg="progress_interval must be from 0 (no progress lines) to %d seconds, got %s"
                         % (MAX_PROGRESS_INTERVAL, module.params["progress_interval"]), models=[])
    try:
        wanted = wanted_models(module.params)
        client = client_from_params(module.params)
        local = local_models(client)
        steps, warnings = plan(module, client, wanted, local)
    except (InvalidModelName, OllamaError) as exc:
        module.fail_json(msg=str(exc), models=[])
    refusals, fit_warnings = fit_checks(module, client, steps)
    warnings.extend(fit_warnings)
    if refusals:
        refused = [dict(step, action="none", changed=False, digest_after=step["digest_before"], bytes=0)
                   for step in steps]
        module.fail_json(msg="refusing to pull (fit_check: fail): %s. Nothing was pulled; set fit_check: warn to pull "
                         "anyway." % "; ".join(refusals), changed=False,
                         models=[dict((k, v) for k, v in step.items() if k != "parsed") for step in refused])

    for warning in warnings:
        module.warn(warning)
    before = [e.get("name") for e in local.values()]
    after = set(before)
    failures = []
    progress = ProgressFile(module.params["progress_file"]) if module.params["progress_file"] else None
    try:
        run_steps(module, client, steps, after, failures, progress)
    finally:
        if progress is not None:
            progress.close()
    if progress is not None and progress.error:
        module.warn("could not write the pull's progress to %s: %s" % (module.params["progress_file"], progress.error))

    if not module.check_mode and any(s["changed"] for s in steps):
        try:
            now = local_models(client)
        except OllamaError as exc:
            failures.append(exc.msg)
            now = None
        if now is not None:
            for step in steps:
                entry = now.get(step["parsed"].key) if step["parsed"] else None
                if step["action"] != "removed" and entry:
                    step.update(digest_after=entry.get("digest"), size=entry.get("size"))
            after = set(e.get("name") for e in now.values())

    for step in steps:
        step.pop("parsed")
    result = dict(changed=any(s["changed"] for s in steps), models=steps)
    if module._diff:
        result["diff"] = dict(before=model_list(before), after=model_list(after),
                              before_header="models on %s" % client.base_url,
                              after_header="models on %s" % client.base_url)
    if failures:
        module.fail_json(msg="; ".join(failures), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
