#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ollama_facts
short_description: Gather facts about an Ollama server and the host's hardware
version_added: 0.1.0
description:
  - Sets C(ansible_facts.ollama) with whether the server answers (and why not), its version, its models, the models
    loaded in memory, and the host's CPU, memory, disk where models are stored and GPUs.
  - The hardware is gathered even when the server is down; the module does not fail for an unreachable server.
author:
  - llmops.ollama maintainers (@llmops)
extends_documentation_fragment:
  - llmops.ollama.api
  - llmops.ollama.api.attributes
  - llmops.ollama.attributes
  - llmops.ollama.attributes.facts
attributes:
  check_mode:
    support: full
    details: Only reads.
  diff_mode:
    support: none
  facts:
    support: full
  idempotent:
    support: full
options:
  gather:
    description:
      - What to gather. V(server) is the version, models and running models; V(hardware) is CPU, memory, disk and GPUs.
    type: list
    elements: str
    choices: [server, hardware]
    default: [server, hardware]
  models_path:
    description:
      - Where the server stores models, for the disk figures.
      - Defaults to E(OLLAMA_MODELS) on the managed host, else C(/usr/share/ollama/.ollama/models) (the service user's
        store) when it exists, else C(~/.ollama/models).
    type: path
notes:
  - Memory and disk figures come from psutil when it is installed, else from C(/proc) and C(statvfs) on Linux.
  - GPUs are read with C(nvidia-smi) (NVIDIA) and from C(/sys/class/drm) (AMD) when present.
seealso:
  - module: llmops.ollama.ollama_model
"""

EXAMPLES = r"""
- name: Gather Ollama facts from the local server
  llmops.ollama.ollama_facts:

- name: Show the version and models
  ansible.builtin.debug:
    msg: "{{ ansible_facts.ollama.version }}: {{ ansible_facts.ollama.models | map(attribute='name') | list }}"
  when: ansible_facts.ollama.reachable

- name: Only the hardware (no server needed)
  llmops.ollama.ollama_facts:
    gather: [hardware]
"""

RETURN = r"""
ansible_facts:
  description: Facts to add to ansible_facts.
  returned: always
  type: dict
  contains:
    ollama:
      description: What was gathered.
      type: dict
      contains:
        reachable:
          description: Whether the server answered. Null when V(server) was not gathered.
          type: bool
        error:
          description: Why the server could not be reached, and what to do.
          type: str
          sample: "could not reach the Ollama server at http://127.0.0.1:11434 ...: Connection refused."
        base_url:
          description: The server root used.
          type: str
          sample: http://127.0.0.1:11434
        version:
          description: Server version, or null.
          type: str
          sample: 0.32.15
        models:
          description: Models on the server (name, model, digest, size, modified_at, details).
          type: list
          elements: dict
        running:
          description: Models loaded in memory (name, size, size_vram, expires_at, context_length).
          type: list
          elements: dict
        hardware:
          description: cpu, memory, disk (where models are stored), gpus, gpu_tools; each with its source.
          type: dict
"""

import os
import pwd

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.ollama.plugins.module_utils._client import (
    OllamaError,
    api_argument_spec,
    client_from_params,
)
from ansible_collections.llmops.ollama.plugins.module_utils._hardware import gather as gather_hardware

MODEL_KEYS = ("name", "model", "digest", "size", "modified_at", "details")
RUNNING_KEYS = ("name", "model", "digest", "size", "size_vram", "expires_at", "context_length", "details")


def default_models_path():
    if os.environ.get("OLLAMA_MODELS"):
        return os.environ["OLLAMA_MODELS"]
    service_store = "/usr/share/ollama/.ollama/models"
    if os.path.isdir(service_store):
        return service_store
    return os.path.join(pwd.getpwuid(os.getuid()).pw_dir, ".ollama", "models")


def server_facts(client):
    facts = dict(reachable=False, error=None, base_url=client.base_url, version=None, models=[], running=[])
    try:
        facts["version"] = client.version()
        facts["reachable"] = True
        facts["models"] = [dict((k, m.get(k)) for k in MODEL_KEYS) for m in client.tags()]
        facts["running"] = [dict((k, m.get(k)) for k in RUNNING_KEYS) for m in client.ps()]
    except OllamaError as exc:
        facts["error"] = exc.msg
    return facts


def main():
    argument_spec = api_argument_spec()
    argument_spec.update(
        gather=dict(type="list", elements="str", choices=["server", "hardware"], default=["server", "hardware"]),
        models_path=dict(type="path"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:  # bad connection options fail; an unreachable server does not
        client = client_from_params(module.params)
    except OllamaError as exc:
        module.fail_json(msg=exc.msg)
    facts = dict(reachable=None, error=None, base_url=client.base_url, version=None, models=[], running=[],
                 hardware=None)
    if "server" in module.params["gather"]:
        facts.update(server_facts(client))
    if "hardware" in module.params["gather"]:
        facts["hardware"] = gather_hardware(module.params["models_path"] or default_models_path(),
                                            module.run_command, module.get_bin_path)
    module.exit_json(changed=False, ansible_facts=dict(ollama=facts))


if __name__ == "__main__":
    main()
