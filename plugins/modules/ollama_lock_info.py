#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ollama_lock_info
short_description: Read the manifest digests of models, from a server or their registry, for a model lock
version_added: 0.2.0
description:
  - Returns a lock, model name to manifest digest (the C(digest) C(/api/tags) shows, the sha256 of the manifest), for
    the models listed, read from an Ollama server (what a reference host has) or from the models' registry (what each
    tag has now). C(playbooks/lock.yml) writes it to a lock file that the P(llmops.ollama.models#role) role and
    M(llmops.ollama.ollama_model) enforce.
  - Read-only; it changes nothing.
  - The registry's digest for a tag equals the server's once the server has pulled it, since Ollama stores the
    manifest exactly as fetched.
requirements:
  - Python 3.9 or newer where it runs; for O(source=server) the server at O(base_url), for O(source=registry) the
    models' registries, from that host.
author:
  - llmops.ollama maintainers (@llmops)
extends_documentation_fragment:
  - llmops.ollama.api
  - llmops.ollama.api.attributes
  - llmops.ollama.registry
  - llmops.ollama.attributes
  - llmops.ollama.attributes.info_module
options:
  models:
    description:
      - The models to lock, as the C(models) option of M(llmops.ollama.ollama_model) takes them (names, or
        dictionaries with C(name)); V(absent) items are left out, and a model listed more than once (several hosts'
        lists put together) is read once.
    type: list
    elements: raw
    required: true
  source:
    description:
      - V(server) reads each model's digest from the server's C(/api/tags); a model the server does not have fails the
        task. V(registry) reads the manifest of each model's tag from its registry.
    type: str
    choices: [server, registry]
    default: server
  insecure:
    description: Read plain-HTTP registries (O(source=registry)).
    type: bool
    default: false
seealso:
  - module: llmops.ollama.ollama_model
"""

EXAMPLES = r"""
- name: What the reference GPU server has
  llmops.ollama.ollama_lock_info:
    models: [llama3.2:3b, gpt-oss:20b]
  delegate_to: gpu1
  register: lock

- name: What the registry's tags have now
  llmops.ollama.ollama_lock_info:
    models: [llama3.2:3b, gpt-oss:20b]
    source: registry
  delegate_to: localhost
  register: lock
"""

RETURN = r"""
lock:
  description: Model name (as the server lists it) to manifest digest (64 hex digits).
  returned: always
  type: dict
  sample: {"llama3.2:3b": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72"}
models:
  description: One entry per model, with C(name) (as given), C(model) (as the server lists it) and C(digest).
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.ollama.plugins.module_utils._http import OllamaError, OllamaNotFound
from ansible_collections.llmops.ollama.plugins.module_utils._names import InvalidModelName, parse_model_list
from ansible_collections.llmops.ollama.plugins.module_utils._ollama_client import (
    ModelIndex,
    api_argument_spec,
    client_from_params,
)
from ansible_collections.llmops.ollama.plugins.module_utils._registry_client import (
    registry_argument_spec,
    registry_client_from_params,
)


def unique(items):
    """The items once per model (the first spelling), absent ones left out; states do not matter here."""
    seen, out = set(), []
    for item in items:
        try:
            (_g, parsed, state), = parse_model_list([item], "present")
        except (InvalidModelName, ValueError):
            out.append(item)  # parse_model_list below says what is wrong
            continue
        if state != "absent" and parsed.key not in seen:
            seen.add(parsed.key)
            out.append(item)
    return out


def main():
    argument_spec = api_argument_spec()
    argument_spec.update(registry_argument_spec())
    argument_spec.update(
        models=dict(type="list", elements="raw", required=True),
        source=dict(type="str", default="server", choices=["server", "registry"]),
        insecure=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        wanted = parse_model_list(unique(module.params["models"]), "present")
        client = client_from_params(module.params)
        registry = registry_client_from_params(module.params)
        index = client.models() if module.params["source"] == "server" else ModelIndex([])
    except (InvalidModelName, OllamaError) as exc:
        module.fail_json(msg=str(exc), lock={}, models=[])
    found, errors = [], []
    for given, parsed, _state in wanted:
        if module.params["source"] == "server":
            have = index.get(parsed)
            if not have or not have.get("digest"):
                errors.append("'%s' is not on the server at %s" % (given, client.base_url))
                continue
            found.append(dict(name=given, model=have.get("name") or index.stored_name(parsed), digest=have["digest"]))
            continue
        if parsed.scheme.lower() == "http" and not module.params["insecure"]:
            errors.append("'%s' asks for plain HTTP: set insecure: true to read a plain-HTTP registry" % given)
            continue
        try:
            digest = registry.manifest(parsed, module.params["insecure"])[0]
        except OllamaNotFound as exc:
            errors.append("'%s' is not in its registry (%s)" % (given, exc.msg))
            continue
        except OllamaError as exc:
            errors.append("cannot read the manifest of '%s': %s" % (given, exc.msg))
            continue
        found.append(dict(name=given, model=parsed.short, digest=digest))
    lock = dict((m["model"], m["digest"]) for m in found)
    if errors:
        module.fail_json(msg="; ".join(errors), lock=lock, models=found)
    module.exit_json(changed=False, lock=lock, models=found)


if __name__ == "__main__":
    main()
