# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``server_context_dropins`` filter: the drop-in that holds each server instance's OLLAMA_CONTEXT_LENGTH when
the server role's ``ollama_server_context_length`` is ``auto`` (documentation in server_context_dropins.yml). The
role's look declares them from it, its context tasks write them from it and read back the value: one description."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib

from ansible.errors import AnsibleFilterError
from ansible_collections.llmops.ollama.plugins.filter.server_instances import UNITS
from ansible_collections.llmops.ollama.plugins.module_utils._systemd import environment

CONTEXT_DROPIN = "40-context.conf"  # after 10-environment.conf and 15-instance.conf
SIZED_FOR = "# sized for: "
VARIABLE = "OLLAMA_CONTEXT_LENGTH"


def _count(value, what, default):
    if value is None or str(value).strip().lower() in ("", "none", "null"):
        return default
    if isinstance(value, bool):
        raise AnsibleFilterError("server_context_dropins: %s is %r, not a number" % (what, value))
    try:
        return int(str(value).strip())
    except ValueError:
        raise AnsibleFilterError("server_context_dropins: %s is %r, not a number" % (what, value))


def sized_for(model, min_context, num_parallel, kv_cache_type, gpus):
    """The line naming what an instance's context was sized for: the look compares it (a change sizes again)."""
    return "%smodel=%s min_context=%d num_parallel=%d kv_cache_type=%s gpus=%s" % (
        SIZED_FOR, model, min_context, num_parallel, kv_cache_type, ",".join(gpus) or "all")


def context_value(text):
    """The OLLAMA_CONTEXT_LENGTH a drop-in's text sets, as systemd reads it (the last assignment); None if none, or
    not a positive whole number."""
    if not isinstance(text, str):
        return None
    value = environment(text).get(VARIABLE, "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def dropin_text(instance, line, context):
    return "".join([
        "# Managed by Ansible (llmops.ollama.server, tasks/context.yml): ollama_server_context_length is auto, and this\n"
        "# is the context of %s (instance %d), the largest that fitted its free memory when it was sized,\n"
        "# kept while it still fits. Remove this file to size it again.\n" % (instance["unit"], instance["index"]),
        line + "\n",
        "[Service]\n",
        'Environment="%s=%d"\n' % (VARIABLE, context)])


def server_context_dropins(endpoints, model, min_context=65536, num_parallel=None, kv_cache_type="", found=None,
                           fits=None):
    """[{name, unit, index, url, gpus, path, sized_for, declared, absent, current, context, kept, differs, text}] for the
    server's instances. `found`: what a look read (found.paths); `fits`: the largest context that fits each instance
    now, by name (ollama_context's answer). An instance keeps its current context while that still fits (at least the
    minimum, at most what fits), so that a re-run, with the model loaded or other models in memory, changes nothing;
    else it gets the largest."""
    if not isinstance(endpoints, list) or not all(isinstance(e, dict) and e.get("unit") for e in endpoints):
        raise AnsibleFilterError("server_context_dropins: give the server role's ollama_server_endpoints (a list of "
                                 "its instances, each with its unit)")
    model = "" if model is None else str(model).strip()  # the role requires one (tasks/context.yml)
    minimum = _count(min_context, "min_context", 65536)
    if minimum < 1:
        raise AnsibleFilterError("server_context_dropins: min_context is %d, not a positive number of tokens" % minimum)
    parallel = max(_count(num_parallel, "num_parallel", 1), 1)  # 0 is 1, as Ollama reads it
    cache = str(kv_cache_type or "f16").strip() or "f16"
    found = found if isinstance(found, dict) else {}
    fits = fits if isinstance(fits, dict) else {}
    out = []
    for instance in endpoints:
        path = "%s/%s.d/%s" % (UNITS, instance["unit"], CONTEXT_DROPIN)
        gpus = [str(g) for g in instance.get("gpus") or []]
        line = sized_for(model, minimum, parallel, cache, gpus)
        seen = found.get(path) if isinstance(found.get(path), dict) else {}
        item = dict(name=instance.get("name"), unit=instance["unit"], index=instance.get("index", 0),
                    url=instance.get("url"), gpus=gpus, path=path, sized_for=line,
                    current=context_value(seen.get("text")),
                    declared=dict(path=path, owner="root", group="root", mode="0644",
                                  lines=[dict(prefix=SIZED_FOR, sha256=hashlib.sha256(line.encode("utf-8")).hexdigest())]),
                    absent=dict(path=path, type="absent"))
        largest = _count(fits.get(item["name"]), "the context that fits %s" % item["name"], None)
        if largest is not None:
            current = item["current"]
            item["kept"] = current is not None and minimum <= current <= largest
            item["context"] = current if item["kept"] else largest
            item["differs"] = item["context"] != current  # the instance restarts to take it
            item["text"] = dropin_text(item, line, item["context"])
        out.append(item)
    return out


class FilterModule(object):
    def filters(self):
        return {"server_context_dropins": server_context_dropins}
