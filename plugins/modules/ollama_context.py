#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ollama_context
short_description: Find the largest context a model can run with on a host, from its shape and the host's memory
version_added: 0.3.0
description:
  - Reads the model's shape from the server (C(/api/show), the GGUF header's layers, attention heads, KV heads, key
    and value widths, sliding window and its own context limit) and its size (C(/api/tags)), and works out what each
    token of context costs in KV cache with the server's E(OLLAMA_NUM_PARALLEL) and E(OLLAMA_KV_CACHE_TYPE).
  - Returns the largest context, in steps of 1024 tokens and not above the model's own limit, that fits in the memory
    free for the model (free VRAM of the usable GPUs, or the RAM available on a host without one) with the weights,
    the compute buffers Ollama counts and the 1 GiB per GPU llama-server keeps free. That is the value for the
    server's E(OLLAMA_CONTEXT_LENGTH) and for Codex's model catalog.
  - Fails, naming the figures (what the minimum needs, split into KV cache, weights, compute and margin, and what is
    free) and what would make it fit, when a context of O(min_context) does not fit, or the model's own limit is
    below it. A host where the minimum cannot fit is never silently given less.
  - Only reads; it changes nothing, in check mode or not.
requirements:
  - Python 3.9 or newer on the managed host, and the server at O(base_url) with the model pulled.
author:
  - llmops.ollama maintainers (@llmops)
extends_documentation_fragment:
  - llmops.ollama.api
  - llmops.ollama.api.attributes
  - llmops.ollama.attributes
  - llmops.ollama.attributes.info_module
options:
  model:
    description:
      - The model, as the server has it, such as C(qwen3-coder:30b) or C(registry.example.com:5000/site/coder:7b).
    type: str
    required: true
  min_context:
    description:
      - The smallest context, in tokens, the model must get. Ollama recommends at least 64k (65536) for Codex, whose
        tool calls fail at 4k.
    type: int
    default: 65536
  num_parallel:
    description:
      - The server's E(OLLAMA_NUM_PARALLEL), the requests it runs at once per model; each has its own context, so the
        KV cache is held that many times. 0 is 1, as Ollama reads it.
      - Ollama runs some architectures (qwen3next, qwen35, lfm2, nemotron_h, the vision ones such as qwen3vl) and
        embedding models with one at a time whatever it says; the figures then count one and say why.
    type: int
    default: 1
  kv_cache_type:
    description:
      - The server's E(OLLAMA_KV_CACHE_TYPE). Empty is V(f16), llama.cpp's default. V(q8_0) takes about half the
        memory of V(f16) and V(q4_0) about a quarter; both need flash attention.
    type: str
    choices: ['', f16, q8_0, q4_0]
    default: f16
  memory:
    description:
      - The memory free for the model, in bytes, or V(auto).
      - V(auto) reads the managed host's hardware as M(llmops.ollama.ollama_facts) does. With a GPU Ollama can use, it
        is the free VRAM of the usable GPUs (or of those in O(gpus)) together, plus what this server's loaded copy of
        the model holds there (a reload frees it). Without one it is the RAM available (C(MemAvailable)), plus the
        memory a loaded copy holds beyond its weights.
      - A number is taken as it is, as the free memory of one GPU (one 1 GiB margin).
    type: raw
    default: auto
  gpus:
    description:
      - With O(memory=auto), the GPUs the server uses, by index (as C(nvidia-smi) numbers NVIDIA GPUs, and AMD GPUs
        in KFD order) or UUID; for an instance that E(CUDA_VISIBLE_DEVICES) or E(ROCR_VISIBLE_DEVICES) pins to some of
        them. Empty uses every usable GPU.
    type: list
    elements: str
    default: []
  use_gpu:
    description:
      - V(false) when the server runs models on the CPU on purpose (E(CUDA_VISIBLE_DEVICES=-1)); O(memory=auto) then
        reads the RAM even on a host with a usable GPU.
    type: bool
    default: true
  amd_gfx_override:
    description:
      - The server's E(HSA_OVERRIDE_GFX_VERSION), such as C(10.3.0), for O(memory=auto) to count an AMD GPU of a
        target Ollama's ROCm build lacks as usable, as the server does.
    type: str
    default: ''
  fail_below_min:
    description:
      - Fail when a context of O(min_context) does not fit (or the model's own limit is below it). V(false) returns the
        largest context that fits, smaller, with a warning saying why.
    type: bool
    default: true
notes:
  - The KV cache is sized as llama.cpp's C(llama-server) allocates it for the options Ollama starts it with; the
    compute buffers as Ollama's scheduler counts them (2 GiB for the batch of 2048 it takes for long contexts, less
    when memory is short); 1 GiB per GPU is left free as llama-server leaves it when it places layers. A context that
    needs more does not fail in Ollama; layers move to the CPU and the model runs slower.
  - Other models the server holds in memory count as used; only the VRAM of this model's own loaded copy is added back.
  - Assumes flash attention on or automatic (Ollama's default). See C(docs/codex.md) in the collection.
seealso:
  - module: llmops.ollama.ollama_facts
  - module: llmops.ollama.ollama_model
"""

EXAMPLES = r"""
- name: The context for Codex on this GPU server
  llmops.ollama.ollama_context:
    model: qwen3-coder:30b
    num_parallel: 2
    kv_cache_type: q8_0
  register: sized

- name: Show it
  ansible.builtin.debug:
    msg: "{{ sized.context }} tokens ({{ sized.figures.kv_bytes_per_token }} bytes of KV cache per token)"

- name: A second instance pinned to GPU 1
  llmops.ollama.ollama_context:
    base_url: http://127.0.0.1:11435
    model: gpt-oss:20b
    gpus: ['1']

- name: What 24 GiB would give, without failing below 64k
  llmops.ollama.ollama_context:
    model: llama3.1:8b
    memory: 25769803776
    fail_below_min: false
"""

RETURN = r"""
context:
  description:
    - The largest context, in tokens per request, that fits (a multiple of 1024, or the model's own limit).
    - Null when not even 1024 tokens fit (the weights alone do not). Smaller than O(min_context) only with
      O(fail_below_min=false).
  returned: always
  type: int
  sample: 90112
fits_min:
  description: Whether a context of O(min_context) fits, within the model's own limit.
  returned: always
  type: bool
figures:
  description:
    - Every figure behind the choice. Sizes are in bytes.
    - C(kv_bytes_per_token) (KV cache per token of one request's context, over the layers with full attention),
      C(weights_bytes), C(kv_bytes), C(compute_bytes), C(margin_bytes), C(overhead_bytes) (compute and margin) and
      C(need_bytes) at the chosen context; C(need_at_min_bytes), C(kv_at_min_bytes) and C(overhead_at_min_bytes) at
      O(min_context); C(available_bytes) and C(memory_from) (where it was read); C(context), C(min_context),
      C(model_context_length), C(limited_by) (V(model) or V(memory)).
    - The shape, C(architecture), C(layers), C(attention_layers), C(sliding_window_layers), C(sliding_window),
      C(kv_heads), C(key_length), C(value_length); the settings, C(kv_cache_type), C(num_parallel) (what Ollama
      runs), C(num_parallel_asked), C(num_parallel_note), C(batch), C(devices).
    - C(alternatives), when the minimum does not fit in memory, lists what it would need with one request at a time
      or a smaller KV cache (C(change), C(need_bytes), C(fits)).
  returned: always
  type: dict
  sample:
    architecture: qwen3moe
    kv_bytes_per_token: 98304
    weights_bytes: 18556700761
    available_bytes: 21430202368
    context: 13312
    min_context: 65536
    fits_min: false
message:
  description:
    - Why a context of O(min_context) does not fit, with the figures and what to do (the task's failure, or its
      warning with O(fail_below_min=false)); null when it fits.
  returned: always
  type: str
  sample: "gpu1 (http://127.0.0.1:11434): llama3.1:8b needs 21.56 GiB for a 65536 context with 2 parallel (KV f16:
    16.00 GiB, weights 4.56 GiB, compute and margin 1.00 GiB) but 19.96 GiB are free; 58368 tokens would fit. ..."
model:
  description: The model as the server lists it.
  returned: always
  type: str
  sample: qwen3-coder:30b
"""

import socket

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.ollama.plugins.module_utils._context import (
    MIN_CONTEXT,
    ShapeError,
    failure_message,
    plan,
)
from ansible_collections.llmops.ollama.plugins.module_utils._hardware import gather as gather_hardware
from ansible_collections.llmops.ollama.plugins.module_utils._http import OllamaError, OllamaNotFound
from ansible_collections.llmops.ollama.plugins.module_utils._names import InvalidModelName, parse_model_name
from ansible_collections.llmops.ollama.plugins.module_utils._ollama_client import api_argument_spec, client_from_params
from ansible_collections.llmops.ollama.plugins.module_utils._requirements import check_host, free_vram, human
from ansible_collections.llmops.ollama.plugins.module_utils._store import default_models_dir


class MemoryUnknown(Exception):
    """The memory free for the model cannot be known."""


def given_memory(value):
    """memory as given: 'auto', or a positive whole number of bytes (an int, or a string of digits)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    if isinstance(value, bool):
        raise MemoryUnknown("memory must be auto or a number of bytes, not a boolean")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or value <= 0:
        raise MemoryUnknown("memory must be auto or a positive number of bytes (such as 25769803776 for 24 GiB), "
                            "not %r" % (value,))
    return value


def _gpu_label(gpu):
    return gpu.get("name") or "GPU %s" % gpu.get("index")


def host_memory(hardware, use_gpu, amd_gfx_override, gpus):
    """(bytes free for the model, devices, where it was read, whether on GPUs) from _hardware.gather's result."""
    check = check_host(hardware, dict(use_gpu=use_gpu, amd_gfx_override=amd_gfx_override or ""))
    usable = [g for g in hardware.get("gpus") or [] if g.get("index") in check["usable_gpus"]]
    if gpus:
        wanted = set(str(g) for g in gpus)
        known = [g for g in hardware.get("gpus") or [] if str(g.get("index")) in wanted or g.get("uuid") in wanted]
        if len(known) < len(wanted):
            raise MemoryUnknown("gpus: %s not among this host's GPUs (%s)" % (
                ", ".join(sorted(wanted - set(str(g.get("index")) for g in known) - set(g.get("uuid") for g in known))),
                ", ".join("%s %s" % (g.get("index"), _gpu_label(g)) for g in hardware.get("gpus") or []) or "none"))
        unusable = [g for g in known if g not in usable]
        if unusable:
            raise MemoryUnknown("gpus: %s cannot be used by Ollama on this host: %s" % (
                ", ".join(_gpu_label(g) for g in unusable), "; ".join(check["reasons"]) or "see ollama_facts' check"))
        usable = known
    if usable:
        unknown = [g for g in usable if free_vram(g) is None]
        if unknown:
            raise MemoryUnknown("%s report%s no memory figure (nvidia-smi or the amdgpu driver gave none; an APU "
                                "shares the RAM), so the memory free for the model is unknown: give memory in bytes"
                                % (", ".join(_gpu_label(g) for g in unknown), "s" if len(unknown) == 1 else ""))
        where = "free VRAM of %s" % ", ".join("%s (%s)" % (_gpu_label(g), human(free_vram(g))) for g in usable)
        return sum(free_vram(g) for g in usable), len(usable), where, True
    memory = hardware.get("memory") or {}
    available = memory.get("available_bytes")
    if not available:
        raise MemoryUnknown("the RAM available on this host is unknown (%s): give memory in bytes"
                            % (memory.get("error") or "not reported"))
    why = "no GPU Ollama can use" if use_gpu else "use_gpu is false"
    return available, 1, "RAM available (%s; %s)" % (human(available), why), False


def _digest(value):
    text = value if isinstance(value, str) else ""
    return text[len("sha256:"):] if text.startswith("sha256:") else text


def loaded_copy(client, parsed, entry, weights, on_gpu):
    """What this server's loaded copy of the model holds that a reload with another context frees: its VRAM on a
    GPU host; on a CPU host what it holds beyond its weights (the weights are file pages MemAvailable counts)."""
    try:
        running = client.running().get(parsed)
    except OllamaError:  # a proxy that refuses /api/ps: count nothing back
        return 0
    if running is None or _digest(running.get("digest")) not in ("", _digest(entry.get("digest"))):
        return 0  # not loaded, or another build under the name
    vram = running.get("size_vram") if isinstance(running.get("size_vram"), int) else 0
    size = running.get("size") if isinstance(running.get("size"), int) else 0
    return max(vram, 0) if on_gpu else max(size - vram - weights, 0)


def main():
    argument_spec = api_argument_spec()
    argument_spec.update(
        model=dict(type="str", required=True),
        min_context=dict(type="int", default=MIN_CONTEXT),
        num_parallel=dict(type="int", default=1),
        kv_cache_type=dict(type="str", default="f16", choices=["", "f16", "q8_0", "q4_0"]),
        memory=dict(type="raw", default="auto"),
        gpus=dict(type="list", elements="str", default=[]),
        use_gpu=dict(type="bool", default=True),
        amd_gfx_override=dict(type="str", default=""),
        fail_below_min=dict(type="bool", default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    result = dict(changed=False, context=None, fits_min=False, figures={}, model=params["model"], message=None)
    if params["min_context"] < 1:
        module.fail_json(msg="min_context must be a positive number of tokens, not %d" % params["min_context"],
                         **result)
    if params["num_parallel"] < 0:
        module.fail_json(msg="num_parallel must be 0 or more (0 is 1, as Ollama reads it), not %d"
                         % params["num_parallel"], **result)
    try:
        memory = given_memory(params["memory"])
        parsed = parse_model_name(params["model"])
        client = client_from_params(params)
    except (MemoryUnknown, InvalidModelName, OllamaError) as exc:
        module.fail_json(msg=str(exc), **result)
    try:
        index = client.models()
        entry = index.get(parsed)
        if entry is None:
            have = ", ".join(index.listed()) or "no models"
            module.fail_json(msg="'%s' is not on the server at %s: pull it first (llmops.ollama.ollama_model, or the "
                             "models role); it has %s" % (params["model"], client.base_url, have), **result)
        name = entry.get("name") or entry.get("model") or index.stored_name(parsed)
        result["model"] = name
        shown = client.show(name)
    except OllamaNotFound as exc:
        module.fail_json(msg="'%s' is not on the server at %s (%s): pull it first" % (params["model"],
                                                                                      client.base_url, exc.msg),
                         **result)
    except OllamaError as exc:
        module.fail_json(msg=exc.msg, **result)
    weights = entry.get("size")
    if isinstance(weights, bool) or not isinstance(weights, int) or weights <= 0:
        module.fail_json(msg="the server at %s lists '%s' without its size (%r), which the weights are counted by"
                         % (client.base_url, name, weights), **result)
    if memory == "auto":
        try:
            hardware = gather_hardware(default_models_dir(), module.run_command, module.get_bin_path)
            available, devices, memory_from, on_gpu = host_memory(hardware, params["use_gpu"],
                                                                  params["amd_gfx_override"], params["gpus"])
        except MemoryUnknown as exc:
            module.fail_json(msg=str(exc), **result)
        held = loaded_copy(client, parsed, entry, weights, on_gpu)
        if held:
            available += held
            memory_from += ", and the %s %s holds now (a reload frees it)" % (human(held), name)
    else:
        available, devices, memory_from = memory, 1, "given (memory)"
    try:
        figures = plan(shown.get("model_info"), weights, available, params["num_parallel"], params["kv_cache_type"],
                       params["min_context"], devices,
                       capabilities=shown.get("capabilities") if isinstance(shown.get("capabilities"), list) else None)
    except ShapeError as exc:
        module.fail_json(msg="cannot size the context of '%s' from what the server at %s shows: %s"
                         % (name, client.base_url, exc), **result)
    except ValueError as exc:
        module.fail_json(msg=str(exc), **result)
    figures["memory_from"] = memory_from
    message = failure_message("%s (%s)" % (socket.gethostname(), client.base_url), name, figures)
    result.update(context=figures["context"], fits_min=figures["fits_min"], figures=figures, message=message)
    if message and params["fail_below_min"]:
        module.fail_json(msg=message, **result)
    if message:
        module.warn(message)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
