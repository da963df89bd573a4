# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``codex_look`` filter: what the codex role's one look at a host (llmops.ollama.ollama_state, its
tasks/state.yml) means for the role's steps. Documentation in codex_look.yml."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError
from ansible_collections.llmops.ollama.plugins.filter.codex_catalog import codex_model_catalog

# Parts of the look that are read for the controller, not steps of the role.
READ_ONLY = ("catalog_read", "accounts")
# Parts whose files name the catalog (model_catalog_json), and the system folder, which may hold it.
NAMING = ("system", "users", "sysdir")


def _catalog_text(catalog):
    """The catalog file as the role writes it: what to_nice_json(indent=2) makes of it, and a line break."""
    return json.dumps(catalog, indent=2, sort_keys=True, separators=(",", ": ")) + "\n"


def codex_look(result, server="", catalog="", policy="", policy_set=False, marker="", server_context_length=None,
               base_instructions=""):
    """What the look found, for the role: {looked, drift, accounts, catalog_read, model_answers, catalog,
    catalog_text, catalog_in_use, catalog_exists, catalog_error}; {looked: false} when it did not answer."""
    if not isinstance(result, Mapping):
        raise AnsibleFilterError("codex_look: give the registered result of the role's ollama_state look, not %s"
                                 % type(result).__name__)
    if not isinstance(result.get("drift"), Mapping) or not isinstance(result.get("found"), Mapping):
        return dict(looked=False)
    found = result["found"]
    paths = found.get("paths") or {}
    seen = (found.get("server") or {}).get(server) or {} if catalog else {}
    answers = seen.get("show")
    read = isinstance(answers, Mapping)
    document = codex_model_catalog(answers if read else {}, server_context_length=server_context_length,
                                   base_instructions=base_instructions)
    written = paths.get(catalog) or {} if catalog else {}
    exists = written.get("type", "absent") != "absent"
    in_use = bool(document["models"]) if read else exists

    drift = dict((part, list(reasons)) for part, reasons in result["drift"].items() if part not in READ_ONLY)
    # The look rendered the files as if the catalog were in use and written (when codex_model_catalog is on).
    if in_use != bool(catalog):
        why = "the catalog is %sin use: the files name it accordingly" % ("" if in_use else "not ")
        for part in NAMING:
            drift.setdefault(part, []).append(why)
    elif (in_use and read) != bool(catalog):
        drift.setdefault("sysdir", []).append("the catalog is not written on this run")
    text = _catalog_text(document)
    if catalog and read:
        if in_use and (written.get("text") != text
                       or [written.get(k) for k in ("owner", "group", "mode")] != ["root", "root", "0644"]):
            drift.setdefault("catalog", []).append("%s: differs from the server's models" % catalog)
        elif not in_use and exists:
            drift.setdefault("catalog", []).append("%s: the server has no model Codex can use" % catalog)
    policy_text = (paths.get(policy) or {}).get("text") if policy else None
    if not policy_set and isinstance(policy_text, str) and policy_text.startswith("# " + marker):
        drift.setdefault("policy", []).append("%s: no policy is set, and the role wrote this one" % policy)
    return dict(looked=True, drift=drift, accounts=dict(found.get("users") or {}), catalog_read=read,
                model_answers=dict(answers) if read else {}, catalog=document, catalog_text=text, catalog_in_use=in_use,
                catalog_exists=exists, catalog_error=seen.get("error") or ("" if read else "no answer"))


class FilterModule(object):
    def filters(self):
        return {"codex_look": codex_look}
