# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Warm models: loading the models a task keeps on a server into its memory (ollama_model's keep_alive)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.llmops.ollama.plugins.module_utils._http import OllamaError, OllamaUnreachable
from ansible_collections.llmops.ollama.plugins.module_utils._ollama_client import ModelIndex

# A Go duration, as the server's api.Duration reads a string (time.ParseDuration): "30m", "1h30m", "-1m", "2.5h".
_UNIT = r"([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)"
DURATION = re.compile(r"^[-+]?(%s)+$" % _UNIT)
SECONDS = re.compile(r"^[-+]?[0-9]+$")


class InvalidKeepAlive(ValueError):
    pass


def keep_alive_value(value):
    """keep_alive as the server reads it (a number of seconds or a duration string), or None when it is not set.

    A negative value keeps the model in memory for ever. 0 would unload it, which is not what a warm model is.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidKeepAlive("keep_alive must be a number of seconds or a duration such as 30m, 2h or -1 (for ever),"
                               " not %s" % type(value).__name__)
    text = str(value).strip()
    if SECONDS.match(text):
        server_value = int(text)
        zero = server_value == 0
    elif isinstance(value, float):
        server_value = value
        zero = value == 0
    elif DURATION.match(text):
        server_value = text
        zero = not re.search(r"[1-9]", text)
    else:
        raise InvalidKeepAlive("keep_alive '%s' is neither a number of seconds nor a duration such as 30m, 2h or -1 "
                               "(for ever)" % text)
    if zero:
        raise InvalidKeepAlive("keep_alive 0 would unload the models at once; give how long they stay in memory "
                               "(30m, 2h, -1 for ever), or leave keep_alive unset not to load them")
    return server_value


def _digest(value):
    text = value if isinstance(value, str) else ""
    return text[len("sha256:"):] if text.startswith("sha256:") else text


def warm(client, steps, keep_alive, check_mode, failures):
    """Load each model the steps keep on the server that is not in its memory with the digest it has now.

    Sets step["loaded"] (this task loaded it, or in check mode would) and step["changed"]; appends an error message
    per model that could not be loaded to `failures`. A model already in memory is left as it is.
    """
    wanted = [s for s in steps if s.get("parsed") is not None and s["state"] != "absent"]
    for step in wanted:
        step["loaded"] = False
    if not wanted:
        return
    try:
        running = client.running()
    except OllamaError as exc:
        failures.append("could not read which models are in memory: %s" % exc.msg)
        return
    for step in wanted:
        if step.get("error") or not step["digest_after"]:
            continue  # not on the server (a failed pull): nothing to load
        entry = running.get(step["parsed"])
        if entry is not None and _digest(entry.get("digest")) == _digest(step["digest_after"]):
            continue
        if not check_mode:
            try:
                client.load(step["model"], keep_alive)
            except OllamaUnreachable as exc:
                failures.append("'%s' is on the server but was not loaded into memory: %s" % (step["name"], exc.msg))
                return
            except OllamaError as exc:
                failures.append("'%s' is on the server but could not be loaded into memory: %s"
                                % (step["name"], exc.msg))
                continue
        step.update(loaded=True, changed=True)


def on_instances(clients, steps, keep_alive, check_mode, failures):
    """The other servers that share this server's store (ollama_server_instances): each must list every model the
    steps keep, at the digest this one has (a server that does not shares another store, and would not serve it),
    and, with keep_alive, gets it loaded into its own memory too (its own GPU). Sets step["loaded_on"], the URLs of
    the servers this task loaded the model into (or would, in check mode), and step["changed"] when there are some."""
    kept = [s for s in steps if s.get("parsed") is not None and s["state"] != "absent" and not s.get("error")]
    for client in clients:
        if not check_mode:
            try:
                listed = ModelIndex(client.tags())
            except OllamaError as exc:
                failures.append("the server at %s (another instance on this host) could not be read: %s"
                                % (client.base_url, exc.msg))
                continue
            for step in kept:
                have = listed.get(step["parsed"])
                if step["digest_after"] and (have is None or _digest(have.get("digest")) != _digest(step["digest_after"])):
                    failures.append("the server at %s does not list '%s'%s: it does not share the store of %s "
                                    "(OLLAMA_MODELS), so it would not serve the model; give each instance the same "
                                    "OLLAMA_MODELS" % (client.base_url, step["name"],
                                                       "" if have is None else " at the same digest", "the first"))
        if keep_alive is None:
            continue
        copies = [dict(s) for s in kept]
        warm(client, copies, keep_alive, check_mode, failures)
        for step, copy in zip(kept, copies):
            if copy.get("loaded"):
                step.setdefault("loaded_on", []).append(client.base_url)
                step["changed"] = True
