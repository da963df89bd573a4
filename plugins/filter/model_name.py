# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``model_name`` filter: a model name as the Ollama server lists it in /api/tags (documentation in model_name.yml).

Codex matches its ``model`` against /api/tags as written, and pulls a name it does not find there from
registry.ollama.ai, which an air-gapped host cannot reach; so the codex role writes the name in the server's form.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.ollama.plugins.module_utils._names import InvalidModelName, parse_model_name


def model_name(name):
    """``llama3.2`` -> ``llama3.2:latest``; ``registry.ollama.ai/library/x:1b`` -> ``x:1b``; others kept whole."""
    try:
        return parse_model_name(name).short
    except InvalidModelName as exc:
        raise AnsibleFilterError("model_name: %s" % exc) from None


class FilterModule(object):
    def filters(self):
        return {"model_name": model_name}
