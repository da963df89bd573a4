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


UNANSWERED = "the look at the host did not answer: every step runs"


def _catalog(answers, exists, server_context_length, base_instructions):
    """Codex's catalog of the server's models: from their /api/show answers (a dict; None when the server could
    not be read, and the catalog written before, if it exists, is then kept in use)."""
    read = isinstance(answers, Mapping)
    document = codex_model_catalog(answers if read else {}, server_context_length=server_context_length,
                                   base_instructions=base_instructions)
    return dict(catalog_read=read, model_answers=dict(answers) if read else {}, catalog=document,
                catalog_text=_catalog_text(document), catalog_in_use=bool(document["models"]) if read else exists,
                catalog_exists=exists)


def _unanswered(read, server_context_length, base_instructions):
    """What tasks/look_failed.yml read instead of the look: every part differs."""
    if not isinstance(read, Mapping) or not isinstance(read.get("parts"), (list, tuple)):
        raise AnsibleFilterError("codex_look: read_instead must be a dict with the list of the look's parts (parts), "
                                 "not %s" % type(read).__name__)
    parts = [part for part in read["parts"] if part not in READ_ONLY] + ["catalog", "policy"]
    out = dict(looked=False, drift=dict((part, [UNANSWERED]) for part in parts),
               accounts=dict(read.get("accounts") or {}), catalog_error=read.get("error") or "no answer")
    out.update(_catalog(read.get("answers"), bool(read.get("exists")), server_context_length, base_instructions))
    return out


def codex_look(result, server="", catalog="", policy="", policy_set=False, marker="", server_context_length=None,
               base_instructions="", read_instead=None, catalog_file=None):
    """What the look found, for the role: {looked, drift, accounts, catalog_read, model_answers, catalog,
    catalog_text, catalog_in_use, catalog_exists, catalog_error}. When the look did not answer: {looked: false},
    or, given what was read instead (read_instead), every part differing and the catalog from what was read."""
    if not isinstance(result, Mapping):
        raise AnsibleFilterError("codex_look: give the registered result of the role's ollama_state look, not %s"
                                 % type(result).__name__)
    if not isinstance(result.get("drift"), Mapping) or not isinstance(result.get("found"), Mapping):
        if read_instead is None:
            return dict(looked=False)
        return _unanswered(read_instead, server_context_length, base_instructions)
    found = result["found"]
    paths = found.get("paths") or {}
    seen = (found.get("server") or {}).get(server) or {} if catalog else {}
    written = paths.get(catalog) or {} if catalog else {}
    fields = _catalog(seen.get("show"), written.get("type", "absent") != "absent", server_context_length,
                      base_instructions)
    read, in_use, exists = fields["catalog_read"], fields["catalog_in_use"], fields["catalog_exists"]

    drift = dict((part, list(reasons)) for part, reasons in result["drift"].items() if part not in READ_ONLY)
    # The look rendered the files as if the catalog were in use and written (when codex_model_catalog is on).
    if in_use != bool(catalog):
        why = "the catalog is %sin use: the files name it accordingly" % ("" if in_use else "not ")
        for part in NAMING:
            drift.setdefault(part, []).append(why)
    elif (in_use and read) != bool(catalog):
        drift.setdefault("sysdir", []).append("the catalog is not written on this run")
    if catalog and read:
        if in_use and (written.get("text") != fields["catalog_text"]
                       or any(str(value) != str(written.get(key)) for key, value in (catalog_file or {}).items())):
            drift.setdefault("catalog", []).append("%s: differs from the server's models" % catalog)
        elif not in_use and exists:
            drift.setdefault("catalog", []).append("%s: the server has no model Codex can use" % catalog)
    policy_text = (paths.get(policy) or {}).get("text") if policy else None
    if not policy_set and isinstance(policy_text, str) and policy_text.startswith("# " + marker):
        drift.setdefault("policy", []).append("%s: no policy is set, and the role wrote this one" % policy)
    out = dict(looked=True, drift=drift, accounts=dict(found.get("users") or {}),
               catalog_error=seen.get("error") or ("" if read else "no answer"))
    out.update(fields)
    return out


class FilterModule(object):
    def filters(self):
        return {"codex_look": codex_look}
