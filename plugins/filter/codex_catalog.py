# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``codex_model_catalog`` filter: a Codex ``model_catalog_json`` document from an Ollama server's models.

Documentation in codex_model_catalog.yml. The entry's fields are the ones the Codex CLI 0.171.0 requires of a
catalog model (it refuses a file that lacks any of them, naming the field) plus the ones this collection fills from
the server: the context window the server runs the model with, and the input modalities.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

# How Codex truncates tool output for the model; the value Ollama's own `ollama launch codex` writes.
TRUNCATION = {"mode": "bytes", "limit": 10000}
# The /api/show details that describe a model in Codex's model list.
DESCRIBED = ("family", "parameter_size", "quantization_level")
_NUM_CTX = re.compile(r"^num_ctx\s+(\d+)\s*$", re.M)


def context_window(show, server_context_length=None):
    """(tokens, source) the server runs the model with, from its /api/show answer; (None, reason) when unknown.

    Ollama takes the model's own num_ctx parameter, else OLLAMA_CONTEXT_LENGTH (given here as
    ``server_context_length``), else a default it picks by the GPUs' memory; and never more than the context the
    model was trained with (``<architecture>.context_length`` in model_info).
    """
    params = _NUM_CTX.search(show.get("parameters") or "")
    info = show.get("model_info") or {}
    arch = info.get("general.architecture")
    trained = info.get("%s.context_length" % arch) if arch else None
    trained = trained if isinstance(trained, int) and not isinstance(trained, bool) and trained > 0 else None
    if params:
        tokens, source = int(params.group(1)), "num_ctx"
    elif server_context_length:
        tokens, source = int(server_context_length), "server"
    else:
        return None, "the server picks it by GPU memory"
    if trained and tokens > trained:
        return trained, "trained"
    return tokens, source


def _entry(name, show, server_context_length, base_instructions):
    details = show.get("details") or {}
    capabilities = show.get("capabilities") or []
    entry = {
        "slug": name,
        "display_name": name,
        "description": " ".join(["Ollama:"] + [str(details[k]) for k in DESCRIBED if details.get(k)]),
        "shell_type": "default",
        "visibility": "list",
        "supported_in_api": True,
        "priority": 0,
        "base_instructions": base_instructions,
        "supported_reasoning_levels": [],
        "supports_reasoning_summaries": False,
        "support_verbosity": False,
        "supports_parallel_tool_calls": False,
        "truncation_policy": dict(TRUNCATION),
        "experimental_supported_tools": [],
        "input_modalities": ["text", "image"] if "vision" in capabilities else ["text"],
    }
    tokens, _source = context_window(show, server_context_length)
    if tokens:
        entry["context_window"] = tokens
    return entry


def codex_model_catalog(shows, server_context_length=None, base_instructions=""):
    """{"models": [...]} for Codex from {name: /api/show answer}, for the models Codex can use (tools)."""
    if not isinstance(shows, Mapping):
        raise AnsibleFilterError("codex_model_catalog: give a mapping of model names to their /api/show answers, "
                                 "not %s" % type(shows).__name__)
    if server_context_length not in (None, ""):
        try:
            server_context_length = int(server_context_length)
        except (TypeError, ValueError):
            raise AnsibleFilterError("codex_model_catalog: server_context_length %r is not a number of tokens"
                                     % (server_context_length,)) from None
    models = []
    for name in sorted(shows):
        show = shows[name]
        if not isinstance(show, Mapping):
            raise AnsibleFilterError("codex_model_catalog: the /api/show answer for %s is not a mapping" % name)
        capabilities = show.get("capabilities") or []
        if "completion" in capabilities and "tools" in capabilities:
            models.append(_entry(name, show, server_context_length or None, base_instructions or ""))
    return {"models": models}


class FilterModule(object):
    def filters(self):
        return {"codex_model_catalog": codex_model_catalog}
