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
  - With the hardware it checks the host against O(requirements) (RAM, disk, CPU, GPU drivers and GPUs Ollama can use)
    and, for the O(models) given, whether each would fit in GPU memory, in RAM, or not at all. Every result is a
    sentence saying what was found and what to do. The module reports; it does not fail for a failed check.
requirements:
  - Python 3.9 or newer on the managed host; nothing else to install.
  - psutil on the managed host is used when present; without it the same figures come from C(/proc) and C(statvfs).
author:
  - llmops.ollama maintainers (@llmops)
extends_documentation_fragment:
  - llmops.ollama.api
  - llmops.ollama.api.attributes
  - llmops.ollama.registry
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
      - What to gather. V(server) is the version, the cloud state, models and running models; V(hardware) is CPU,
        memory, disk and GPUs.
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
  models:
    description:
      - Models to check for fit, such as C(llama3.2:3b) or C(registry.example.com:5000/site/coder:7b).
      - The size comes from the server when it has the model, else from the model's manifest in its registry (read
        from the managed host, before anything is pulled).
      - Each model gets a result in C(check.models), and a model that cannot fit (memory or disk) fails the check.
      - Needs V(hardware) in O(gather).
    type: list
    elements: str
    default: []
  insecure:
    description:
      - Read manifests of O(models) from registries over plain HTTP (as the server's C(insecure) pull does).
    type: bool
    default: false
  requirements:
    description:
      - What the host must have, as a dictionary; a key that is not given keeps its default. The GPU minimums are
        Ollama's; the RAM and disk minimums are this collection's defaults. Keys (type, default)
      - C(min_memory_gib) (float, 4.0) RAM (total) the host must have, in GiB.
      - C(min_disk_free_gib) (float, 10.0) free disk space where models are stored (O(models_path)), in GiB.
      - C(min_vram_gib) (float, 0.0) free memory the usable GPUs must have together, in GiB, when there are usable GPUs.
      - C(require_gpu) (bool, false) fail when no GPU is usable (GPU servers, where CPU inference is not acceptable).
      - C(use_gpu) (bool, true) V(false) when the server runs on the CPU on purpose (E(CUDA_VISIBLE_DEVICES=-1)), which
        skips the GPU and driver checks and fits models in RAM.
      - C(nvidia_min_compute_capability) (str, C(5.0)) lowest NVIDIA compute capability Ollama supports.
      - C(nvidia_min_driver) (str, C(550)) lowest NVIDIA driver version Ollama supports.
      - C(nvidia_legacy_max_compute_capability) (str, C(6.2)) NVIDIA GPUs up to this compute capability need
        C(nvidia_legacy_min_driver).
      - C(nvidia_legacy_min_driver) (str, C(570)) lowest NVIDIA driver for those GPUs.
      - C(amd_gfx_targets) (list of str, the targets Ollama 0.34.4's Linux ROCm build is compiled for, from the preset
        C(rocm_v7_2_linux) of its C(llama/server/CMakePresets.json), C(gfx908), C(gfx90a), C(gfx942), C(gfx950),
        C(gfx1030), C(gfx1100), C(gfx1101), C(gfx1102), C(gfx1150), C(gfx1151), C(gfx1200), C(gfx1201)) AMD LLVM
        targets Ollama computes on through ROCm; on an AMD GPU of another target (C(gfx1010), C(gfx1012), C(gfx1103))
        models run on the CPU. Give a longer list for a ROCm build of Ollama of your own.
      - C(amd_gfx_override) (str, empty) the E(HSA_OVERRIDE_GFX_VERSION) the server runs with, such as C(10.3.0); AMD
        GPUs then count as usable when it names one of C(amd_gfx_targets) (C(10.3.0) is C(gfx1030), as
        Ollama reads it).
      - C(fit_margin_percent) (int, 20) memory a model needs beyond its size, in percent of its size (context cache
        and compute buffers).
      - Unknown keys and values of the wrong type fail the task.
    type: dict
    default: {}
notes:
  - Memory and disk figures come from psutil when it is installed, else from C(/proc) and C(statvfs) on Linux.
  - NVIDIA GPUs are read with C(nvidia-smi); without it the PCI bus, C(/dev/nvidia*) and C(/proc/driver/nvidia/version)
    still show that a GPU and which kernel driver are there.
  - AMD GPUs are read from the amdgpu driver's sysfs (KFD topology and C(/sys/class/drm)), as Ollama reads them, with
    C(rocm-smi) adding names when installed.
  - The fit test compares a model's size (plus C(fit_margin_percent) of O(requirements)) with the free memory of the usable
    GPUs and the RAM available now; a model that fits only split between them runs partly on the CPU.
  - See C(docs/hardware.md) in the collection for what each check means.
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

- name: Check a GPU server, and whether two models would fit, before pulling them
  llmops.ollama.ollama_facts:
    models:
      - gpt-oss:20b
      - qwen2.5-coder:32b
    requirements:
      require_gpu: true
      min_vram_gib: 16

- name: Say what is wrong, per host
  ansible.builtin.assert:
    that: ansible_facts.ollama.check.passed
    fail_msg: "{{ ansible_facts.ollama.check.reasons }}"
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
        cloud:
          description:
            - Whether the server has ollama.com's cloud features turned off (cloud models, web search), from its
              C(/api/status). C(disabled) is a bool; C(source) says what turned them off, V(env) (C(OLLAMA_NO_CLOUD)),
              V(config) (C(disable_ollama_cloud) in the service user's C(~/.ollama/server.json)), V(both) or V(none).
            - Null when V(server) was not gathered, the server did not answer, its release has no C(/api/status), or a
              proxy in front refuses it to the token (the llmops.ollama.proxy role lets only admin tokens read it).
          type: dict
          sample: {disabled: true, source: env}
        models:
          description: Models on the server (name, model, digest, size, modified_at, details).
          type: list
          elements: dict
        running:
          description: Models loaded in memory (name, size, size_vram, expires_at, context_length).
          type: list
          elements: dict
        instances:
          description:
            - Every Ollama server systemd runs on the host (C(ollama.service) and the instances of C(ollama@.service)
              the P(llmops.ollama.server#role) role writes for C(ollama_server_instances)), each with C(unit),
              C(active), C(url) (from its E(OLLAMA_HOST)), C(reachable), C(version), C(running) (the models it has
              loaded, with name, size and size_vram) and C(error).
            - Gathered with V(server) when O(base_url) is on this host; empty otherwise, or without systemd.
          type: list
          elements: dict
        hardware:
          description:
            - C(cpu) (model, cores, threads, architecture, flags avx/avx2/avx512/fma/f16c/asimd), C(memory) (total, available,
              swap), C(disk) (where models are stored), C(gpus) and C(gpu_drivers).
            - Each section, and each GPU, has C(sources) saying where each figure was read.
            - A GPU has vendor, index, name, uuid, pci_bus_id, vram_total_bytes, vram_free_bytes, driver_version,
              compute_capability (NVIDIA) and gfx_target (AMD).
            - C(gpu_drivers) has one entry per vendor (nvidia, amd; nvidia-jetson on Jetson boards) with whether GPU hardware
              is present (PCI, device nodes), the kernel driver and its version, and whether the tool is installed and works.
            - Null when V(hardware) was not gathered.
          type: dict
        check:
          description: The host checked against O(requirements), and the fit of O(models). Null without V(hardware).
          type: dict
          contains:
            status:
              description: V(pass), or V(fail) when any result failed.
              type: str
              sample: fail
            passed:
              description: Whether no result failed.
              type: bool
            compute:
              description: Where Ollama would run models on this host.
              type: str
              choices: [gpu, cpu]
            gpu_summary:
              description: The usable GPUs in a few words, or C(CPU only).
              type: str
              sample: NVIDIA GeForce RTX 3090 24.0 GiB
            usable_vram_bytes:
              description: Free memory of the usable GPUs together.
              type: int
            reasons:
              description: The messages of failed and warning results, in plain words.
              type: list
              elements: str
              sample: ["NVIDIA GeForce RTX 2080 7.8 GiB: NVIDIA driver 440.64 is too old; Ollama needs 550 or newer..."]
            driver_problems:
              description: Failed driver results (a GPU is there but its driver is missing, broken or too old).
              type: list
              elements: str
            results:
              description: Every check with C(check), C(status) (pass, warn, fail), C(category) and C(message).
              type: list
              elements: dict
            models:
              description:
                - One entry per model in O(models) with C(name), C(size_bytes), C(size_from) (server or registry),
                  C(fits) (V(vram), V(split), V(ram) or V(none)), C(ok), C(message), or C(error) when it could not be checked.
              type: list
              elements: dict
"""

import re

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.llmops.ollama.plugins.module_utils._http import HTTPStatusError, OllamaError
from ansible_collections.llmops.ollama.plugins.module_utils._manifest import blobs as manifest_blobs
from ansible_collections.llmops.ollama.plugins.module_utils._ollama_client import (
    ModelIndex,
    OllamaClient,
    api_argument_spec,
    client_from_params,
    normalize_base_url,
)
from ansible_collections.llmops.ollama.plugins.module_utils._registry_client import (
    registry_argument_spec,
    registry_client_from_params,
)
from ansible_collections.llmops.ollama.plugins.module_utils._store import default_models_dir
from ansible_collections.llmops.ollama.plugins.module_utils._systemd import server_units
from ansible_collections.llmops.ollama.plugins.module_utils._hardware import gather as gather_hardware
from ansible_collections.llmops.ollama.plugins.module_utils._names import InvalidModelName, parse_model_name
from ansible_collections.llmops.ollama.plugins.module_utils._requirements import (
    DEFAULTS,
    add_model_results,
    check_host,
    fit_model,
)

MODEL_KEYS = ("name", "model", "digest", "size", "modified_at", "details")
RUNNING_KEYS = ("name", "model", "digest", "size", "size_vram", "expires_at", "context_length", "details")


def server_facts(client):
    facts = dict(reachable=False, error=None, base_url=client.base_url, version=None, cloud=None, models=[],
                 running=[])
    try:
        facts["version"] = client.version()
        facts["reachable"] = True
        facts["models"] = [dict((k, m.get(k)) for k in MODEL_KEYS) for m in client.tags()]
        facts["running"] = [dict((k, m.get(k)) for k in RUNNING_KEYS) for m in client.ps()]
        try:
            facts["cloud"] = client.cloud()
        except HTTPStatusError:  # a proxy that does not let this token read /api/status: the rest still stands
            facts["cloud"] = None
    except OllamaError as exc:
        facts["error"] = exc.msg
    return facts


def instance_facts(module, client):
    """Each server systemd runs here, asked for its version and loaded models (one client per instance)."""
    found = []
    for unit in server_units(module.run_command):
        entry = dict(unit=unit["unit"], active=unit["active"], url=None, reachable=False, version=None,
                     running=[], error=None)
        try:
            # its OLLAMA_HOST as the server reads it (0.0.0.0 is reached on loopback; unset is the default address)
            entry["url"] = normalize_base_url(unit["host"])
            other = OllamaClient(base_url=entry["url"], timeout=client.timeout)
            entry["version"] = other.version()
            entry["reachable"] = True
            entry["running"] = [dict((k, m.get(k)) for k in ("name", "size", "size_vram")) for m in other.ps()]
        except OllamaError as exc:
            entry["error"] = exc.msg
        found.append(entry)
    return found


def requirements_spec():
    types = dict(min_memory_gib="float", min_disk_free_gib="float", min_vram_gib="float", require_gpu="bool",
                 use_gpu="bool", nvidia_min_compute_capability="str", nvidia_min_driver="str",
                 nvidia_legacy_max_compute_capability="str", nvidia_legacy_min_driver="str", amd_gfx_targets="list",
                 amd_gfx_override="str", fit_margin_percent="int")
    spec = {}
    for key, kind in types.items():
        spec[key] = dict(type=kind, default=DEFAULTS[key])
        if kind == "list":
            spec[key]["elements"] = "str"
    return spec


def plain_error(message):
    """'argument 'x' is of type str and we were unable to convert to float: ...' -> 'x must be a float, not str'."""
    match = re.match(r"argument '([^']+)' is of type (\w+) and we were unable to convert to (\w+)", message)
    if match:
        return "%s must be a %s, not %s" % (match.group(1), match.group(3), match.group(2))
    return re.sub(r"<class '(\w+)'>", r"\1", message)


def model_fits(client, registry, facts, hardware, check, names, insecure):
    """Fit results for `names`: sizes from the server when it has the model, else from the registry manifest."""
    index = ModelIndex(facts.get("models") or [])
    fits, reserved = [], 0
    for name in names:
        fit = dict(name=name)
        try:
            parsed = parse_model_name(name)
            have = index.get(parsed)
            if have and isinstance(have.get("size"), int) and have["size"] > 0:
                fit.update(size_from="server", **fit_model(int(have["size"]), hardware, check, download_bytes=0))
            else:
                _digest, manifest = registry.manifest(index.stored(parsed), insecure or parsed.scheme.lower() == "http")
                walked = manifest_blobs(manifest)
                size = sum(s for _d, s in walked)
                download = client.missing_bytes(walked) if facts.get("reachable") else size
                fit.update(size_from="registry", **fit_model(size, hardware, check, download, reserved))
                reserved += download if fit["ok"] else 0  # what the pulls that can happen would take
        except (InvalidModelName, OllamaError) as exc:
            fit.update(size_bytes=None, fits=None, ok=None, error=str(exc))
        fits.append(fit)
    return fits


def main():
    argument_spec = api_argument_spec()
    argument_spec.update(
        gather=dict(type="list", elements="str", choices=["server", "hardware"], default=["server", "hardware"]),
        models_path=dict(type="path"),
        models=dict(type="list", elements="str", default=[]),
        insecure=dict(type="bool", default=False),
        requirements=dict(type="dict", default={}),
    )
    argument_spec.update(registry_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    # Validated here rather than as suboptions: ansible-core's suboption validation raises a TypeError when the
    # option itself is not a dictionary, where this gives a clear failure.
    spec = requirements_spec()
    given = dict((k, v) for k, v in module.params["requirements"].items() if v is not None)  # null keeps the default
    validated = ArgumentSpecValidator(spec).validate(given)
    if validated.unsupported_parameters:
        module.fail_json(msg="requirements: unknown key %s; the keys are %s"
                         % (", ".join(sorted(str(k) for k in validated.unsupported_parameters)), ", ".join(sorted(spec))))
    if validated.error_messages:
        module.fail_json(msg="requirements: %s" % "; ".join(plain_error(m) for m in validated.error_messages))
    requirements = validated.validated_parameters
    try:  # bad connection options fail; an unreachable server does not
        client = client_from_params(module.params)
        registry = registry_client_from_params(module.params)
    except OllamaError as exc:
        module.fail_json(msg=exc.msg)
    facts = dict(reachable=None, error=None, base_url=client.base_url, version=None, cloud=None, models=[],
                 running=[], instances=[], hardware=None, check=None)
    if "server" in module.params["gather"]:
        facts.update(server_facts(client))
        facts["instances"] = instance_facts(module, client) if client.on_this_host else []
    if "hardware" in module.params["gather"]:
        hardware = gather_hardware(module.params["models_path"] or default_models_dir(), module.run_command,
                                   module.get_bin_path)
        facts["hardware"] = hardware
        check = check_host(hardware, requirements)
        if module.params["models"]:
            check = add_model_results(check, model_fits(client, registry, facts, hardware, check,
                                                        module.params["models"], module.params["insecure"]))
        facts["check"] = check
    elif module.params["models"]:
        module.fail_json(msg="models needs the hardware: add hardware to gather")
    module.exit_json(changed=False, ansible_facts=dict(ollama=facts))


if __name__ == "__main__":
    main()
