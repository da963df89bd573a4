#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ollama_ready
short_description: Prove that an Ollama server's model answers a real chat, with a tool call, in time
version_added: 0.3.0
description:
  - A readiness gate. A server answers C(/) and C(/api/version) while generation may hang or fail (a model that cannot
    load, a context that does not fit); this module asks the model a real question instead and fails the task when no
    good answer comes back.
  - It sends one chat to O(model) through C(/api/chat), at the context O(num_ctx), offering one tool (a function
    C(report_ready) with no arguments) when O(tool_call) is true, and waits at most O(timeout) seconds for the whole
    answer. Then it reads C(/api/ps) for where the model was loaded (GPU, CPU or split) and at which context.
  - It fails, with a message saying what was asked, what came back and what to do, when the server does not answer,
    does not have the model, answers the chat with an error (the server's words are quoted), does not answer within
    O(timeout), answers without calling the tool when O(tool_call) is true, runs the model at a smaller context than
    O(num_ctx), generates more slowly than O(min_tokens_per_second), or runs it on the CPU when O(require_gpu) is true.
  - It changes nothing in the configuration, but the chat loads the model into the server's memory (as any first
    request does), where the server keeps it for its keep-alive time; a model loaded at another context is loaded
    again at O(num_ctx).
author:
  - llmops.ollama maintainers (@llmops)
extends_documentation_fragment:
  - llmops.ollama.api
  - llmops.ollama.api.attributes
  - llmops.ollama.attributes
attributes:
  check_mode:
    support: full
    details:
      - Runs in check mode too, and does the same there, since it changes no setting; but its chat is a real request,
        which loads the model into the server's memory.
  diff_mode:
    support: none
    details: Nothing to compare; it changes nothing.
  idempotent:
    support: full
    details: Always V(changed=false).
options:
  model:
    description:
      - The model to ask, as the server lists it or as it was pulled, such as C(gpt-oss:20b) or
        C(registry.example.com:5000/site/coder:7b). The server must have it; the module does not pull it.
    type: str
    required: true
  num_ctx:
    description:
      - The context, in tokens, to ask the model for (the chat's C(num_ctx) option), such as the context Codex is
        configured for (the server role's C(ollama_server_context_length)).
      - The task fails when the server runs the model at a smaller context (Ollama lowers a context beyond the model's
        own limit to that limit).
      - When not set, the server's context is used and only reported.
    type: int
  timeout:
    description:
      - Seconds the whole chat may take, loading the model included. The task fails as a timeout beyond it.
      - The reads before and after the chat (the version, the models, the models in memory) wait up to 30 seconds each.
      - A number of seconds, fractions allowed.
    type: float
    default: 120
  tool_call:
    description:
      - Offer the tool C(report_ready) (no arguments) and ask the model to call it; the task fails when the answer has
        no call of it (Codex works through tool calls).
      - V(false) asks for a short answer in words instead, and any answer passes.
    type: bool
    default: true
  require_gpu:
    description:
      - Fail when the loaded model sits entirely on the CPU (C(size_vram) 0 in C(/api/ps)), on a GPU server where CPU
        inference is not acceptable.
      - When V(false), the module warns instead when the host has a GPU (NVIDIA or AMD on its PCI bus) and the server
        is on this host (a loopback O(base_url)).
    type: bool
    default: false
  min_tokens_per_second:
    description:
      - Fail when the model generated fewer tokens per second than this (C(eval_count) / C(eval_duration) of the
        answer).
      - The answer is short, so the figure is rough; use it to catch a model that runs an order of magnitude too slowly
        (on the CPU instead of a GPU, swapping), not to compare hosts closely.
    type: float
notes:
  - The chat's answer is short (a tool call, or a few words) and the prompt a few dozen tokens, so the figures describe
    a small request; a long Codex session at a full context is slower.
  - What Ollama sends back as a tool call depends on the model's template; a model whose template has no tools fails
    with the server's words (it does not support tools).
seealso:
  - module: llmops.ollama.ollama_facts
  - module: llmops.ollama.ollama_model
"""

EXAMPLES = r"""
- name: The model Codex uses answers a tool call at Codex's context within two minutes
  llmops.ollama.ollama_ready:
    model: gpt-oss:20b
    num_ctx: 65536
    timeout: 120

- name: A GPU server must run it on the GPU, and fast enough
  llmops.ollama.ollama_ready:
    base_url: http://gpu1:11434
    model: qwen2.5-coder:32b
    require_gpu: true
    min_tokens_per_second: 10
  register: ready

- name: Show the speed
  ansible.builtin.debug:
    msg: "{{ ready.tokens_per_second | round(1) }} tokens/s on the {{ ready.processor }}, context {{ ready.context }}"

- name: A model without tool support, asked for words only
  llmops.ollama.ollama_ready:
    model: llama3.2:1b
    tool_call: false
"""

RETURN = r"""
model:
  description: The model asked.
  returned: always
  type: str
  sample: gpt-oss:20b
base_url:
  description: The server root used.
  returned: always
  type: str
  sample: http://127.0.0.1:11434
answered:
  description: Whether the chat came back with an answer (also returned, false, with a failure).
  returned: always
  type: bool
  sample: true
tool_called:
  description: Whether the answer called C(report_ready). Null when O(tool_call) is false or nothing came back.
  returned: always
  type: bool
  sample: true
version:
  description: The server's version, when it answered.
  returned: when the server answered
  type: str
  sample: 0.34.4
tool_calls:
  description: The names of the functions the answer called.
  returned: when the chat answered
  type: list
  elements: str
  sample: [report_ready]
content:
  description: The words of the answer (empty for a tool call), at most 200 characters.
  returned: always
  type: str
  sample: ""
eval_count:
  description: Tokens the model generated.
  returned: always
  type: int
  sample: 12
tokens_per_second:
  description: C(eval_count) / C(eval_duration), the generation speed. Null without an answer.
  returned: always
  type: float
  sample: 42.7
load_seconds:
  description: Seconds the server spent loading the model for this chat (0 when it was in memory).
  returned: always
  type: float
  sample: 3.41
total_seconds:
  description: Seconds the server spent on the chat, loading included.
  returned: always
  type: float
  sample: 4.02
context:
  description: The context the server runs the model at, from C(context_length) in C(/api/ps), when the server says.
  returned: always
  type: int
  sample: 65536
size:
  description: Bytes the loaded model takes in memory, from C(/api/ps).
  returned: always
  type: int
  sample: 14892238848
size_vram:
  description: Of those, bytes in GPU memory, from C(/api/ps).
  returned: always
  type: int
  sample: 14892238848
processor:
  description:
    - Where the model runs, from C(size) and C(size_vram) of C(/api/ps), V(gpu) (all in GPU memory), V(cpu) (none),
      V(split) (part of it). Null when the server did not list the model as loaded.
  returned: always
  type: str
  sample: gpu
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.ollama.plugins.module_utils import _hardware
from ansible_collections.llmops.ollama.plugins.module_utils._http import (
    HTTPStatusError,
    OllamaError,
    OllamaNotFound,
    OllamaTimeout,
    check_timeout,
)
from ansible_collections.llmops.ollama.plugins.module_utils._names import InvalidModelName, parse_model_name
from ansible_collections.llmops.ollama.plugins.module_utils._ollama_client import (
    api_argument_spec,
    client_from_params,
)

TOOL = "report_ready"
TOOLS = [{"type": "function", "function": {
    "name": TOOL,
    "description": "Report that you are ready. Call it with no arguments.",
    "parameters": {"type": "object", "properties": {}},
}}]
ASK_TOOL = "Call the tool %s, with no arguments, to report that you are ready." % TOOL
ASK_WORDS = "Say hello in a few words."
READ_TIMEOUT = 30  # the reads around the chat (version, models, models in memory)


class NotReady(Exception):
    pass


def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else None


def _short(text, size=200):
    text = text if isinstance(text, str) else ("" if text is None else str(text))
    return text if len(text) <= size else text[:size] + "..."


def processor(size, size_vram):
    """gpu, cpu or split, from /api/ps' size and size_vram (as `ollama ps` shows it); None without a size."""
    if not size:
        return None
    if not size_vram:
        return "cpu"
    return "gpu" if size_vram >= size else "split"


def gpus_here():
    """NVIDIA or AMD display devices on this host's PCI bus, as 'nvidia x1'; empty when none."""
    try:
        found = _hardware.pci_display_devices()
    except (IOError, OSError):
        return ""
    return ", ".join("%s x%d" % (vendor, len(devices)) for vendor, devices in sorted(found.items()) if devices)


class Gate(object):
    def __init__(self, module, client):
        self.module = module
        self.client = client
        self.params = module.params
        self.model = self.params["model"]
        self.result = dict(changed=False, model=self.model, base_url=client.base_url, answered=False, tool_called=None,
                           content="", eval_count=None, tokens_per_second=None, load_seconds=None,
                           total_seconds=None, context=None, size=None, size_vram=None, processor=None)
        self.warnings = []

    def where(self):
        return "the Ollama server at %s" % self.client.base_url

    def run(self):
        try:
            parsed = parse_model_name(self.model)
        except InvalidModelName as exc:
            raise NotReady("model: %s" % exc)
        try:
            version = self.client.version()
            index = self.client.models()
        except OllamaError as exc:
            raise NotReady("the server does not answer, so no model can: %s" % exc.msg)
        self.result["version"] = version
        if parsed not in index:
            listed = index.listed()
            raise NotReady("%s (version %s) has no model %s (it has %s). Pull it first (llmops.ollama.ollama_model, "
                           "the models role's ollama_models), or set the model the server has."
                           % (self.where(), version, self.model, ", ".join(listed) if listed else "none"))
        name = index.stored_name(parsed)
        self.chat(name)
        self.loaded(parsed)
        self.judge()

    def chat(self, name):
        params = self.params
        limit = params["timeout"]
        asked = "a tool call of %s" % TOOL if params["tool_call"] else "an answer"
        context = " at a context of %d tokens" % params["num_ctx"] if params["num_ctx"] else ""
        options = {"num_ctx": params["num_ctx"]} if params["num_ctx"] else None
        message = ASK_TOOL if params["tool_call"] else ASK_WORDS
        started = time.time()
        try:
            answer = self.client.chat(name, [{"role": "user", "content": message}],
                                      tools=TOOLS if params["tool_call"] else None, options=options, timeout=limit)
        except OllamaTimeout:
            raise NotReady("asked %s for %s%s: no answer within %ss (timeout), the server still loading or generating. "
                           "A model that does not answer in time cannot serve Codex: check the server's log "
                           "(journalctl -u ollama) for a slow load or a hang, or raise timeout for a big model on "
                           "slow disks." % (self.model, asked, context, _seconds(limit)))
        except OllamaNotFound as exc:
            raise NotReady("asked %s for %s%s: the server answered that it has no such model (%s). Pull it first."
                           % (self.model, asked, context, exc.message or exc.msg))
        except HTTPStatusError as exc:
            said = exc.message or exc.msg
            hint = ("its template has no tools: give a model that supports tool calls (Codex needs them), or set "
                    "tool_call false" if "does not support tools" in said else
                    "the server could not run the model: read its log (journalctl -u ollama) for the cause; a "
                    "damaged download is fixed by removing the model and pulling it again, a model too big for the "
                    "memory by a smaller model or context")
            raise NotReady("asked %s for %s%s: the server answered HTTP %s: %s. So %s." % (
                self.model, asked, context, exc.status, said, hint))
        except OllamaError as exc:
            raise NotReady("asked %s for %s%s: %s" % (self.model, asked, context, exc.msg))
        elapsed = time.time() - started
        if elapsed > limit:
            raise NotReady("asked %s for %s%s: the answer took %.1fs, over the limit of %ss. Check the server's load, "
                           "or raise timeout." % (self.model, asked, context, elapsed, _seconds(limit)))
        if answer.get("error"):
            raise NotReady("asked %s for %s%s: the server answered with an error: %s"
                           % (self.model, asked, context, answer.get("error")))
        reply = answer.get("message") if isinstance(answer.get("message"), dict) else {}
        calls = reply.get("tool_calls") if isinstance(reply.get("tool_calls"), list) else []
        names = [c.get("function", {}).get("name") for c in calls
                 if isinstance(c, dict) and isinstance(c.get("function"), dict)]
        eval_count = _number(answer.get("eval_count"))
        eval_ns = _number(answer.get("eval_duration"))
        load_ns = _number(answer.get("load_duration"))
        total_ns = _number(answer.get("total_duration"))
        self.result.update(
            answered=True, content=_short(reply.get("content") or ""), eval_count=eval_count,
            tokens_per_second=round(eval_count / (eval_ns / 1e9), 2) if eval_count and eval_ns else None,
            load_seconds=round(load_ns / 1e9, 3) if load_ns is not None else None,
            total_seconds=round(total_ns / 1e9, 3) if total_ns is not None else round(elapsed, 3),
            tool_called=(TOOL in names) if params["tool_call"] else None, tool_calls=names)
        self.asked = (asked, context)

    def loaded(self, parsed):
        """Where the server holds the model now (/api/ps): size, size_vram, context."""
        try:
            entry = self.client.running().get(parsed)
        except OllamaError as exc:
            self.warnings.append("could not read the models in memory (/api/ps): %s" % exc.msg)
            return
        if entry is None:
            self.warnings.append("%s answered, but the server did not list it in memory after the chat (a keep-alive "
                                 "of 0?): where it runs and its context are unknown" % self.model)
            return
        size, size_vram = _number(entry.get("size")), _number(entry.get("size_vram"))
        context = _number(entry.get("context_length"))
        self.result.update(size=size, size_vram=size_vram, context=context or None,
                           processor=processor(size, size_vram))

    def judge(self):
        params, result = self.params, self.result
        asked, context = self.asked
        said = ("the model answered %r" % result["content"] if result["content"] else
                "the model answered nothing" if not result["tool_calls"] else
                "the model called %s" % ", ".join(str(n) for n in result["tool_calls"]))
        if params["tool_call"] and not result["tool_called"]:
            raise NotReady("no tool call: asked %s for %s%s, offering the tool %s; %s. Codex works through tool calls: "
                           "give a model that makes them (its template must render tools and its answers call them), "
                           "or set tool_call false to check only that it answers."
                           % (self.model, asked, context, TOOL, said))
        if not params["tool_call"] and not result["content"] and not result["tool_calls"] and not result["eval_count"]:
            raise NotReady("asked %s for %s%s: the model answered nothing (no words, no tokens). Check the model."
                           % (self.model, asked, context))
        if params["num_ctx"] and result["context"] and result["context"] < params["num_ctx"]:
            raise NotReady("context too small: asked %s for a context of %s tokens, the server runs it at %s (the "
                           "model's own limit, or what fits in memory). Give a context it can hold (num_ctx, the "
                           "server role's ollama_server_context_length, Codex's context window), or a model made for "
                           "a longer one." % (self.model, params["num_ctx"], result["context"]))
        if result["processor"] == "cpu":
            where = ("the model runs on the CPU: /api/ps shows size_vram 0 of its %d bytes in memory"
                     % result["size"])
            if params["require_gpu"]:
                raise NotReady("%s, and require_gpu is set. The server did not use the GPU: check the driver and "
                               "that the server sees the GPU (its log at start lists it; ollama_facts' check), or that "
                               "the model fits in the GPU's memory." % where)
            gpus = gpus_here() if self.client.on_this_host else ""
            if gpus:
                self.warnings.append("%s, though this host has GPUs (%s): check the driver and the server's log"
                                     % (where, gpus))
        minimum = params["min_tokens_per_second"]
        if minimum is not None and (result["tokens_per_second"] or 0) < minimum:
            raise NotReady("too slow: %s generated %s tokens per second (%s tokens), under the minimum of %s%s. "
                           "Check where it runs (on the GPU?) and what else the host runs."
                           % (self.model, result["tokens_per_second"], result["eval_count"], minimum,
                              ", on the %s" % result["processor"] if result["processor"] else ""))


def _seconds(value):
    return ("%g" % value) if isinstance(value, float) else str(value)


def main():
    argument_spec = api_argument_spec()
    argument_spec.update(
        timeout=dict(type="float", default=120),
        model=dict(type="str", required=True),
        num_ctx=dict(type="int"),
        tool_call=dict(type="bool", default=True),
        require_gpu=dict(type="bool", default=False),
        min_tokens_per_second=dict(type="float", no_log=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    if params["num_ctx"] is not None and params["num_ctx"] <= 0:
        module.fail_json(msg="num_ctx must be a positive number of tokens, got %s" % params["num_ctx"])
    if params["min_tokens_per_second"] is not None and params["min_tokens_per_second"] < 0:
        module.fail_json(msg="min_tokens_per_second must be 0 or more, got %s" % params["min_tokens_per_second"])
    try:
        client = client_from_params(dict(params, timeout=READ_TIMEOUT))
        check_timeout(params["timeout"])
    except OllamaError as exc:
        module.fail_json(msg=exc.msg)
    gate = Gate(module, client)
    try:
        gate.run()
    except NotReady as exc:
        for warning in gate.warnings:
            module.warn(warning)
        module.fail_json(msg=str(exc), **gate.result)
    for warning in gate.warnings:
        module.warn(warning)
    module.exit_json(**gate.result)


if __name__ == "__main__":
    main()
