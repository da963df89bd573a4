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
# Permission profiles, as Codex 0.171.0 reads them: its built-in ones (two of which a profile may extend), the keys
# of a [permissions.<name>] table (it ignores any other without a word, even with --strict-config), and the access a
# filesystem entry may give ("none" is read as "deny").
BUILTIN_PROFILES = (":read-only", ":workspace", ":danger-full-access")
EXTENDABLE = (":read-only", ":workspace")
PROFILE_KEYS = ("extends", "workspace_roots", "filesystem", "network")
ACCESS = ("read", "write", "deny", "none")
SANDBOX_OF = {":read-only": "read-only", ":workspace": "workspace-write", ":danger-full-access": "danger-full-access"}


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


def _profile_problem(name, profile, names, managed):
    """What Codex would reject (or silently misread) in one profile of codex_permissions, or None."""
    where = "codex_permissions: %s" % _json(name)
    if not ID.match(str(name)):
        return ("%s: profile names may hold letters, digits, _ and - only (Codex keeps names that start with ':' for "
                "its built-in profiles, %s)." % (where, ", ".join(BUILTIN_PROFILES)))
    if managed and name == "network":
        return ("%s: with codex_allowed_permission_profiles set the profiles are written to requirements.toml, where "
                "Codex keeps permissions.network for its network constraints and does not start; rename the profile "
                "(e.g. network-access)." % where)
    if not isinstance(profile, Mapping):
        return ("%s: a profile is a mapping (extends, workspace_roots, filesystem, network), got %s."
                % (where, _json(profile)))
    unknown = sorted(str(k) for k in profile if k not in PROFILE_KEYS)
    if unknown:
        return ("%s: unknown keys %s (a profile takes %s); Codex ignores them without a word, so the profile would not "
                "be what it says." % (where, ", ".join(unknown), ", ".join(PROFILE_KEYS)))
    if "extends" in profile:
        base = profile["extends"]
        if not isinstance(base, str) or not (base in EXTENDABLE or (base in names and base != name)):
            return ("%s: extends %s: a profile extends %s or another profile of codex_permissions (Codex refuses "
                    "anything else, :danger-full-access included)." % (where, _json(base), " or ".join(EXTENDABLE)))
    filesystem = profile.get("filesystem", {})
    values = []
    for access in filesystem.values() if isinstance(filesystem, Mapping) else [None]:
        values.extend(access.values() if isinstance(access, Mapping) else [access])
    if [v for v in values if isinstance(v, Mapping) or v not in ACCESS]:
        return ("%s: filesystem maps a path (or :root, :minimal, :tmpdir, :workspace_roots, ~/path) to one of %s, or "
                "to a table of sub-paths and their access; Codex does not start with anything else."
                % (where, ", ".join(ACCESS)))
    for key in ("workspace_roots", "network"):
        if key in profile and not isinstance(profile[key], Mapping):
            return "%s: %s must be a mapping, got %s." % (where, key, _json(profile[key]))
    domains = (profile.get("network") or {}).get("domains", {})
    if not isinstance(domains, Mapping) or [v for v in domains.values() if v not in ("allow", "deny")]:
        return "%s: network.domains maps each domain to allow or deny." % where
    return None


def _writes(name, permissions, seen=()):
    """The sandbox mode Codex counts a profile as, for allowed_sandbox_modes: :danger-full-access as itself, a
    profile that may write anything (it extends :workspace, or gives write somewhere) as workspace-write, else
    read-only."""
    if name in SANDBOX_OF:
        return SANDBOX_OF[name]
    profile = permissions.get(name) or {}
    if name in seen or not isinstance(profile, Mapping):
        return "read-only"
    values = []
    for access in (profile.get("filesystem") or {}).values():
        values.extend(access.values() if isinstance(access, Mapping) else [access])
    if "write" in values:
        return "workspace-write"
    base = profile.get("extends")
    return _writes(base, permissions, seen + (name,)) if isinstance(base, str) else "read-only"


def _permissions(s):
    permissions = s["permissions"]
    default = s["default_permissions"]
    allowed = s["allowed_permission_profiles"]
    managed = len(allowed) > 0
    if not isinstance(permissions, Mapping):
        return "codex_permissions must be a mapping of profile names to their tables, got %s." % _json(permissions)
    names = set(str(k) for k in permissions)
    for name, profile in permissions.items():
        problem = _profile_problem(str(name), profile, names, managed)
        if problem:
            return problem
    for name in permissions:  # a chain of extends that comes back to where it started
        seen, current = [], str(name)
        while current in names and current not in seen:
            seen.append(current)
            current = (permissions[current] or {}).get("extends")
        if current in seen:
            return ("codex_permissions: %s extends itself through %s; Codex cannot resolve it."
                    % (_json(str(name)), " -> ".join(seen + [current])))
    known = list(BUILTIN_PROFILES) + sorted(names)
    if default and default not in known:
        return ("codex_default_permissions %s is neither one of Codex's built-in profiles (%s) nor a profile of "
                "codex_permissions; Codex does not start with it." % (_json(default), ", ".join(BUILTIN_PROFILES)))
    unknown = [n for n in allowed if n not in known]
    if unknown:
        verb = "is" if len(unknown) == 1 else "are"
        return ("codex_allowed_permission_profiles: %s %s neither built-in (%s) nor in codex_permissions; Codex does not "
                "start for a user whose configuration does not define every profile allowed (\"allowed_permission_"
                "profiles refers to undefined profile\")." % (", ".join(unknown), verb, ", ".join(BUILTIN_PROFILES)))
    if managed and default and default not in allowed:
        return ("codex_default_permissions %s is not in codex_allowed_permission_profiles %s; Codex does not start "
                "(\"default_permissions must be allowed by allowed_permission_profiles\"). Allow it, or choose an "
                "allowed one." % (_json(default), _json(allowed)))
    if managed and not default and not (":read-only" in allowed and ":workspace" in allowed):
        return ("codex_allowed_permission_profiles %s: set codex_default_permissions to one of them, the profile Codex "
                "falls back to for a choice the policy does not allow; Codex does not start without one unless both "
                ":read-only and :workspace are allowed (it then falls back to :workspace)." % _json(allowed))
    modes = s["allowed_sandbox_modes"]
    if default and modes and _writes(default, permissions) not in modes:
        return ("codex_default_permissions %s counts as sandbox mode %s, which codex_allowed_sandbox_modes %s does not "
                "allow: Codex applies that list to permission profiles too, and would replace the profile with "
                ":read-only and a warning on every run." % (_json(default), _writes(default, permissions),
                                                            _json(modes)))
    return None


def _profile_layers(s):
    """Where a sandbox_mode would be set beside permission profiles: the role's shared settings (with the system
    layer's), each user's config.toml (the shared settings with the user's merged over them), and every profile file."""
    layers = [("codex_sandbox_mode / codex_default_permissions / codex_extra_settings", s["config"])]
    layers += [("codex_profiles: %s" % k, v) for k, v in s["profiles"].items()]
    for user in s["users"]:
        settings = dict(s["config"], **(user.get("settings") or {}))
        layers.append(("codex_users: %s: settings" % user.get("name"), settings))
        layers += [("codex_users: %s: profiles: %s" % (user.get("name"), k), v)
                   for k, v in (user.get("profiles") or {}).items()]
    return [(where, doc) for where, doc in layers if isinstance(doc, Mapping)]


def _sandbox_beside_profiles(s):
    """A default_permissions that names no profile; a sandbox_mode Codex 0.171.0 would ignore: under a permission profile allow-list it uses profiles only (a
    sandbox_mode, -s and --dangerously-bypass-approvals-and-sandbox are ignored without a word); in a file that also
    sets default_permissions it uses default_permissions. A managed profile a configuration defines again stops Codex."""
    managed = len(s["allowed_permission_profiles"]) > 0
    defined = set(BUILTIN_PROFILES) | set(str(k) for k in s["permissions"]) \
        | set(str(k) for k in (s["config"].get("permissions") or {}))
    for where, doc in _profile_layers(s):
        chosen = doc.get("default_permissions")
        if chosen and chosen not in defined | set(str(k) for k in (doc.get("permissions") or {})):
            return ("%s: default_permissions %s is neither built-in (%s) nor defined (codex_permissions); Codex does not "
                    "start with it." % (where, chosen, ", ".join(BUILTIN_PROFILES)))
        mode = doc.get("sandbox_mode")
        if mode and managed:
            return ("%s: sandbox_mode %s: with codex_allowed_permission_profiles set Codex uses permission profiles "
                    "only and ignores sandbox_mode (and -s) without a word; leave sandbox_mode out and choose a "
                    "profile (codex_default_permissions, or default_permissions)." % (where, mode))
        if mode and doc.get("default_permissions"):
            return ("%s: sandbox_mode %s and default_permissions %s are both set in one file: Codex uses "
                    "default_permissions and ignores sandbox_mode there; keep one (codex_sandbox_mode is the older "
                    "form)." % (where, mode, doc["default_permissions"]))
        again = sorted(set(str(k) for k in (doc.get("permissions") or {})) & set(str(k) for k in s["permissions"]))
        if managed and again:
            return ("%s: permissions %s: with codex_allowed_permission_profiles set these profiles are the host's "
                    "policy (requirements.toml), and Codex does not start when a configuration defines one again "
                    "(\"conflicts with a config-defined profile of the same name\")." % (where, ", ".join(again)))
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
                   web_search=(s["allowed_web_search_modes"] + ["disabled"]) if s["allowed_web_search_modes"] else [],
                   default_permissions=s["allowed_permission_profiles"])
    layers = [dict(where="codex_approval_policy / codex_sandbox_mode / codex_default_permissions / codex_extra_settings / "
                         "codex_profiles",
                   settings=s["config"], profiles=s["profiles"])] + list(s["users"])
    for item in layers:
        clash = []
        for key in ("approval_policy", "sandbox_mode", "web_search", "default_permissions"):
            if not allowed[key]:
                continue
            clash.extend("%s %s" % (key, doc[key]) for doc in _documents(item)
                         if isinstance(doc, Mapping) and isinstance(doc.get(key), str) and doc[key] not in allowed[key])
        unique = list(dict.fromkeys(clash))
        if unique:
            one = len(unique) == 1
            return ("%s: %s %s outside the host's policy (codex_allowed_approval_policies %s, "
                    "codex_allowed_sandbox_modes %s, codex_allowed_web_search_modes %s, "
                    "codex_allowed_permission_profiles %s); Codex would replace %s with a warning on every run. Choose "
                    "an allowed value, or allow it."
                    % (_where(item), ", ".join(unique), "is" if one else "are", _json(s["allowed_approval_policies"]),
                       _json(s["allowed_sandbox_modes"]), _json(s["allowed_web_search_modes"]),
                       _json(s["allowed_permission_profiles"]), "it" if one else "them"))
    return None


CHECKS = (_provider_id, _port, _model, _version, _user_entries, _profiles_and_twice, _tables, _token_and_ca,
          _sandbox, _mcp, _permissions, _policy_clash, _sandbox_beside_profiles)
KEYS = ("provider", "remote_provider_id", "local_provider_id", "builtin_local", "reserved_ids", "local_port", "model",
        "cli_install", "cli_version", "users", "profiles", "extra_settings", "config", "remote_token", "user_tokens",
        "env_key", "env_key_given", "tokens_given", "auth", "remote_ca", "remote_ca_host", "remote_ca_host_known",
        "allowed_approval_policies", "allowed_sandbox_modes", "allowed_web_search_modes", "allowed_mcp_servers",
        "permissions", "default_permissions", "allowed_permission_profiles")


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
