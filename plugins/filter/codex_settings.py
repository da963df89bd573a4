# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``codex_settings_problem`` filter: the first of the codex role's settings that Codex would reject (or silently
misread), as a message naming the variable to fix; empty when there is none. The role's tasks/validate.yml refuses
it before anything on the host is read or changed. Documentation in codex_settings_problem.yml."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re
from collections.abc import Mapping, Sequence

from ansible.errors import AnsibleFilterError
from ansible_collections.llmops.ollama.plugins.filter.model_name import model_name

ID = re.compile(r"^[A-Za-z0-9_-]+\Z")
VERSION = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?\Z")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
V1_END = re.compile(r"/v1/?\Z")
AUTH_KEYS = ("command", "args", "timeout_ms", "refresh_interval_ms")


def _json(value):
    """As Ansible's to_json writes a value in a message."""
    return json.dumps(value)


def _is_list(value):
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _where(item):
    return item["where"] if "where" in item else "codex_users: %s" % item.get("name")


def _documents(item):
    """A layer's settings and its profiles' settings."""
    return [item.get("settings") or {}] + list((item.get("profiles") or {}).values())


def _integer(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _provider_id(s):
    if s["builtin_local"]:
        return None
    name = "codex_remote_provider_id" if s["provider"] == "remote" else "codex_local_provider_id"
    given = s["remote_provider_id"] if s["provider"] == "remote" else s["local_provider_id"]
    given = str(given)
    if given in s["reserved_ids"]:
        return ("%s '%s' cannot be used: it is one of Codex's built-in provider ids (%s), which a configuration may "
                "not redefine; pick another id, e.g. ollama-gpu." % (name, given, ", ".join(s["reserved_ids"])))
    if not ID.match(given):
        return "%s '%s' cannot be used: use letters, digits, _ and - only." % (name, given)
    return None


def _port(s):
    if s["provider"] != "local":
        return None
    try:
        ok = 1 <= int(s["local_port"]) <= 65535
    except (TypeError, ValueError):
        ok = False
    return None if ok else "codex_local_port '%s' is not a port number (1-65535)." % s["local_port"]


def _model(s):
    if not s["model"]:
        return None
    try:
        model_name(s["model"])
    except AnsibleFilterError as exc:
        return str(getattr(exc, "message", None) or exc)
    return None


def _version(s):
    if s["cli_install"] and not VERSION.match(str(s["cli_version"])):
        return "codex_cli_version '%s' is not a Codex CLI version (e.g. 0.171.0)." % s["cli_version"]
    return None


def _user_entries(s):
    for user in s["users"]:
        profiles = user.get("profiles") or {}
        if not (user.get("name") and str(user.get("name"))) \
                or ("home" in user and not str(user["home"]).startswith("/")) \
                or ("codex_home" in user and not str(user["codex_home"]).startswith("/")) \
                or [k for k in profiles if not ID.match(str(k))]:
            return ("codex_users: each entry needs a name, home and codex_home must be absolute paths, and profile "
                    "names may hold letters, digits, _ and - only (%s)." % (user,))
    return None


def _profiles_and_twice(s):
    bad = [k for k in s["profiles"] if not ID.match(str(k))]
    if bad:
        return ("Profile names become file names (<name>.config.toml): use letters, digits, _ and - only, not %s."
                % ", ".join(bad))
    names = [u.get("name") for u in s["users"]]
    if len(set(names)) != len(names):
        return "codex_users lists a user twice."
    return None


def _tables(s):
    layers = [dict(where="codex_extra_settings / codex_profiles", settings=s["extra_settings"],
                   profiles=s["profiles"])] + list(s["users"])
    for item in layers:
        tables = []
        for doc in _documents(item):
            tables.extend(((doc or {}).get("model_providers") or {}).items())
        reserved = [k for k, _v in tables if k in s["reserved_ids"]]
        chat = [k for k, v in tables if isinstance(v, Mapping) and "wire_api" in v and v["wire_api"] != "responses"]
        no_v1 = [k for k, v in tables if isinstance(v, Mapping) and "base_url" in v
                 and not V1_END.search(str(v["base_url"]))]
        if reserved:
            return ("%s: model_providers %s: built-in provider ids cannot be redefined (%s); use another id, e.g. "
                    "ollama-gpu." % (_where(item), ", ".join(reserved), ", ".join(s["reserved_ids"])))
        if chat:
            return ('%s: model_providers %s: wire_api must be "responses" (Codex no longer supports "chat").'
                    % (_where(item), ", ".join(chat)))
        if no_v1:
            return ("%s: model_providers %s: base_url must end in /v1 (e.g. http://gpu1:11434/v1), or Codex calls "
                    "/responses, which Ollama does not serve." % (_where(item), ", ".join(no_v1)))
    return None


def _token_and_ca(s):
    auth = s["auth"] or {}
    env_key = s["env_key"]
    ca_given = bool(s["remote_ca"]) or bool(s["remote_ca_host"])
    remote = s["provider"] == "remote"
    times = [v for k, v in auth.items() if k in ("timeout_ms", "refresh_interval_ms")] if isinstance(auth, Mapping) else []
    unknown = sorted(set(auth) - set(AUTH_KEYS)) if isinstance(auth, Mapping) else []
    command = auth.get("command", "") if isinstance(auth, Mapping) else ""
    args_given = isinstance(auth, Mapping) and "args" in auth
    args = auth.get("args") if args_given else None
    if not remote and (s["remote_token"] or s["user_tokens"]):
        return "a token (codex_remote_token or a user's token) is given, but codex_provider is not remote."
    if env_key and not ENV_NAME.match(env_key):
        return ("codex_env_key %s is not an environment variable name (letters, digits and _, not starting with a "
                "digit)." % env_key)
    if s["tokens_given"] and env_key.upper().startswith("CODEX_"):  # Codex compares the names upper-cased
        return ("codex_env_key %s starts with CODEX_ (in any case): Codex does not read such variables from its .env "
                "file; pick another name." % env_key)
    if auth and not remote:
        return "codex_remote_auth_command is given, but codex_provider is not remote."
    if auth and (s["tokens_given"] or s["env_key_given"]):
        return ("codex_remote_auth_command and a token (codex_remote_token, a user's token or codex_env_key) are both "
                "given: Codex takes the token from one of them; keep one.")
    if unknown:
        return ("codex_remote_auth_command has keys Codex does not know: %s (it takes command, args, timeout_ms, "
                "refresh_interval_ms)." % ", ".join(unknown))
    if auth and (not isinstance(command, str) or not command.strip()):
        return "codex_remote_auth_command needs a command: the program that prints the token."
    if args_given and (not _is_list(args) or [a for a in args if not isinstance(a, str)]):
        return "codex_remote_auth_command args must be a list of strings (each one argument, no shell)."
    if [t for t in times if not _integer(t) or t <= 0]:
        return ("codex_remote_auth_command timeout_ms and refresh_interval_ms must be whole numbers of milliseconds "
                "above 0.")
    if s["remote_ca"] and "-----BEGIN CERTIFICATE-----" not in s["remote_ca"]:
        return "codex_remote_ca is not a PEM certificate (-----BEGIN CERTIFICATE-----)."
    if s["remote_ca_host"] and not s["remote_ca_host_known"]:
        return "codex_remote_ca_host %s is not in the inventory." % s["remote_ca_host"]
    if ca_given and not remote:
        return "a CA for the remote server is given, but codex_provider is not remote."
    return None


def _sandbox(s):
    modes = s["allowed_sandbox_modes"]
    if modes and "read-only" not in modes:
        return ("codex_allowed_sandbox_modes %s must include read-only: Codex falls back to read-only for a mode that "
                "is not allowed, and does not start with a list that lacks it." % _json(modes))
    return None


def _mcp(s):
    for key, value in (s["allowed_mcp_servers"] or {}).items():
        ok = (ID.match(str(key)) and isinstance(value, Mapping) and list(value.keys()) in (["command"], ["url"])
              and isinstance(list(value.values())[0], str) and len(list(value.values())[0]) > 0)
        if not ok:
            return ("codex_allowed_mcp_servers: %s: each entry is a name (letters, digits, _ and -) with exactly one of "
                    "{command: PROGRAM} or {url: URL}, got %s." % (_json(key), _json(value)))
    return None


def _policy_clash(s):
    allowed = dict(approval_policy=s["allowed_approval_policies"], sandbox_mode=s["allowed_sandbox_modes"],
                   web_search=(s["allowed_web_search_modes"] + ["disabled"]) if s["allowed_web_search_modes"] else [])
    layers = [dict(where="codex_approval_policy / codex_sandbox_mode / codex_extra_settings / codex_profiles",
                   settings=s["config"], profiles=s["profiles"])] + list(s["users"])
    for item in layers:
        clash = []
        for key in ("approval_policy", "sandbox_mode", "web_search"):
            if not allowed[key]:
                continue
            clash.extend("%s %s" % (key, doc[key]) for doc in _documents(item)
                         if isinstance(doc, Mapping) and isinstance(doc.get(key), str) and doc[key] not in allowed[key])
        unique = list(dict.fromkeys(clash))
        if unique:
            one = len(unique) == 1
            return ("%s: %s %s outside the host's policy (codex_allowed_approval_policies %s, "
                    "codex_allowed_sandbox_modes %s, codex_allowed_web_search_modes %s); Codex would replace %s with "
                    "a warning on every run. Choose an allowed value, or allow it."
                    % (_where(item), ", ".join(unique), "is" if one else "are", _json(s["allowed_approval_policies"]),
                       _json(s["allowed_sandbox_modes"]), _json(s["allowed_web_search_modes"]),
                       "it" if one else "them"))
    return None


CHECKS = (_provider_id, _port, _model, _version, _user_entries, _profiles_and_twice, _tables, _token_and_ca,
          _sandbox, _mcp, _policy_clash)
KEYS = ("provider", "remote_provider_id", "local_provider_id", "builtin_local", "reserved_ids", "local_port", "model",
        "cli_install", "cli_version", "users", "profiles", "extra_settings", "config", "remote_token", "user_tokens",
        "env_key", "env_key_given", "tokens_given", "auth", "remote_ca", "remote_ca_host", "remote_ca_host_known",
        "allowed_approval_policies", "allowed_sandbox_modes", "allowed_web_search_modes", "allowed_mcp_servers")


def codex_settings_problem(settings):
    """The first problem with the codex role's settings, or ''."""
    if not isinstance(settings, Mapping) or set(KEYS) - set(settings):
        raise AnsibleFilterError("codex_settings_problem: give a mapping with %s" % ", ".join(KEYS))
    for check in CHECKS:
        problem = check(settings)
        if problem:
            return problem
    return ""


class FilterModule(object):
    def filters(self):
        return {"codex_settings_problem": codex_settings_problem}
