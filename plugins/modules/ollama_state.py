#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ollama_state
short_description: Tell, in one call, which parts of a host differ from the state the roles would make
version_added: 0.2.0
description:
  - Reads, in one module run, everything one of the collection's roles manages on a host (files with their sha256,
    owner, group and mode, links, systemd units, users and groups, packages, the Ollama server's version and models
    with their digests) and compares it with the wanted state the controller computed (templates rendered there).
  - Returns the parts that differ, each with the reasons. The roles run their task files only for those parts, so a
    host that matches runs nothing else; a part that differs runs exactly as it would without this check.
  - Read-only. It changes nothing, in check mode or not, and so always returns C(changed=false).
  - A part is said to differ whenever its state cannot be read (a file that cannot be opened, a server that does not
    answer, a registry that cannot be reached for a C(latest) model); the role then decides, as it always did.
requirements:
  - Python 3.9 or newer on the managed host; systemd's C(systemctl) for O(parts) with C(units); C(dpkg-query) for
    C(packages); C(openssl) for C(cert_valid_for).
author:
  - llmops.ollama maintainers (@llmops)
extends_documentation_fragment:
  - llmops.ollama.api
  - llmops.ollama.api.attributes
  - llmops.ollama.registry
  - llmops.ollama.attributes
  - llmops.ollama.attributes.facts
attributes:
  check_mode:
    support: full
    details: Reads the same things in check mode; it never changes anything.
  diff_mode:
    support: N/A
    details: It changes nothing, so there is nothing to show; RV(drift) says what differs.
  idempotent:
    support: full
  facts:
    support: full
    details: Only with O(facts=true).
options:
  parts:
    description:
      - The wanted state, by part. A part is a name (C(config), C(service), ...) mapped to what it holds, under these
        keys, all optional.
      - C(paths), a list of C(path) with its wanted state. C(type) is V(file) (the default), V(directory), V(link) or
        V(absent);
        V(file) may give C(sha256) (of the whole file), C(lines) (a list of C(prefix) and C(sha256); the last line
        starting with the prefix has that sha256, without its line break) and C(cert_valid_for) (seconds the
        certificate in the file must stay valid); V(link) gives C(target); any type but V(absent) may give C(owner),
        C(group) (names; V(~) is the owner's primary group) and C(mode) (octal, as V("0644")). A path starting with C(~user/) is in that user's home.
        C(under) (a directory, such as V(~user)) reads the path as M(llmops.ollama.user_file) writes it, from
        there without following any link. A link on the way, a hard link, a FIFO, socket or device, or a directory
        owned by another account than C(owner) or root, differs (the reason names it), and nothing is read through
        it.
      - C(units), a list of systemd units, each C(name) with C(active) and C(enabled) (booleans), and C(dropins), with
        C(own) (the unit's drop-ins that the caller writes, the one holding its environment first), C(environment)
        (that drop-in's text as the caller writes it), C(user) and C(group). A drop-in of someone else's that sets
        one of those environment variables to another value where systemd applies it after the caller's (by file
        name), through C(EnvironmentFile=) anywhere, or another C(User=) or C(Group=), differs; the reason names the
        drop-in and what it sets, and RV(found) gives them under the unit's C(takeovers).
      - C(users), a list of users, each C(name) with C(group), C(home), C(shell), C(comment), and C(groups)
        (supplementary groups the user must be in, among those the host has).
      - C(groups), a list of group names the host must have.
      - C(packages), a list of Debian packages that must be installed.
      - C(server), the Ollama server, with C(url) (default O(base_url), as M(llmops.ollama.ollama_model) reads it, with the
        other connection options), C(version) (the version it must answer), C(models) (as the C(models)
        option of M(llmops.ollama.ollama_model), names or C(name) and C(state) with V(present), V(latest) or V(absent),
        and C(digest) for a model pinned to a manifest digest), C(purge) (no other model), C(insecure) (plain-HTTP
        registries, for V(latest)), C(timeout) (seconds), C(show) (also read each model's C(/api/show) answer,
        returned in RV(found); the part differs when one cannot be read).
      - C(read), a list of files whose text is returned in RV(found) (public files only, such as a CA certificate,
        or files whose wanted content the controller can only tell afterwards).
      - C(always), a sentence saying why the part differs on every run (a part whose steps check for themselves each
        time, such as models copied from a bundle).
      - C(gpu), a dictionary with C(requirements) (as the requirements option of M(llmops.ollama.ollama_facts)); the
        part holds on a host without GPUs whose check against those requirements has no GPU or driver failure (a host
        with GPUs runs the GPU checks every time). The check's C(compute), C(summary) and C(problems) are in
        RV(found).
    type: dict
    default: {}
  roles:
    description:
      - The wanted state of several roles at once, role name to its O(parts), compared in the same single run (a
        playbook looks once for all its roles; each role takes its answer from RV(roles)).
    type: dict
    default: {}
  facts:
    description:
      - Also return the facts the roles read (the C(platform), C(distribution) and C(service_mgr) subsets of
        C(ansible.builtin.setup)) as C(ansible_facts), so a play can leave C(gather_facts) off.
    type: bool
    default: false
seealso:
  - module: llmops.ollama.ollama_model
  - module: llmops.ollama.ollama_facts
notes:
  - The roles of this collection call it as their first task; see each role's C(tasks/state.yml) and the wanted state in its C(vars/main.yml).
"""

EXAMPLES = r"""
- name: Is the unit file as the template renders it, and is the server running?
  llmops.ollama.ollama_state:
    parts:
      config:
        paths:
          - path: /etc/systemd/system/ollama.service
            sha256: "{{ lookup('ansible.builtin.template', 'ollama.service.j2') | hash('sha256') }}"
            owner: root
            group: root
            mode: "0644"
      service:
        units:
          - {name: ollama, active: true, enabled: true}
        server:
          url: http://127.0.0.1:11434
          version: 0.34.4
          models: [llama3.2:3b, {name: qwen2.5-coder:7b, state: latest}]
  register: found

- name: Rewrite the unit only when it differs
  ansible.builtin.template:
    src: ollama.service.j2
    dest: /etc/systemd/system/ollama.service
    mode: "0644"
  when: "'config' in found.drift"
"""

RETURN = r"""
drift:
  description: The parts that differ, each with the reasons, one sentence each. Empty when the host matches.
  returned: always
  type: dict
  sample: {"config": ["/etc/systemd/system/ollama.service.d/10-environment.conf: its content differs"]}
converged:
  description: Whether every part matches (RV(drift) is empty).
  returned: always
  type: bool
found:
  description:
    - What was read, by kind (C(paths), C(units), C(server), C(users)), for the messages and for facts the roles
      publish.
    - C(paths) entries hold C(type), C(owner), C(group), C(mode), C(target) and, for files a part lists in C(read),
      C(text); for a path read C(under) a directory, C(unsafe) says what was not gone through.
    - C(server) holds, by URL, the C(version), the C(models) the server lists and the C(error) reading it; with
      C(show), also C(show), each model's C(capabilities), C(details), C(parameters) and the C(model_info) keys that
      give its architecture and trained context length.
    - C(users) holds, by name, each user a path (C(~user/)) or a part's C(users) named, with C(home), C(uid),
      C(gid), C(group), C(shell) and C(comment), or null for a user the host does not have.
    - C(units) holds, by name, systemd's C(LoadState), C(ActiveState), C(UnitFileState) and C(DropInPaths), and for a
      unit with C(dropins), C(takeovers), the drop-ins of someone else's that set what was declared, each with
      C(path), C(settings) (the names) and C(shown) (the values of only C(OLLAMA_HOST), C(OLLAMA_MODELS), C(User) and
      C(Group); no other value, which could be a secret, is returned).
  returned: always
  type: dict
roles:
  description: For each role of O(roles), its C(drift) and C(converged), as RV(drift) and RV(converged) are for O(parts).
  returned: always
  type: dict
  sample: {"server": {"drift": {}, "converged": true}}
ansible_facts:
  description: The C(platform), C(distribution) and C(service_mgr) facts, when O(facts) is true.
  returned: when O(facts) is true
  type: dict
"""

import grp
import hashlib
import os
import pwd
import stat

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.llmops.ollama.plugins.module_utils._http import OllamaError
from ansible_collections.llmops.ollama.plugins.module_utils._ollama_client import api_argument_spec, client_from_params
from ansible_collections.llmops.ollama.plugins.module_utils._registry_client import (
    registry_argument_spec,
    registry_client_from_params,
)
from ansible_collections.llmops.ollama.plugins.module_utils._lock import InvalidLock, pins
from ansible_collections.llmops.ollama.plugins.module_utils import _user_path as user_path
from ansible_collections.llmops.ollama.plugins.module_utils._names import InvalidModelName, parse_model_list
from ansible_collections.llmops.ollama.plugins.module_utils._systemd import environment, takeovers

PATH_KEYS = ("path", "type", "sha256", "lines", "owner", "group", "mode", "target", "cert_valid_for", "under")
PART_KEYS = ("paths", "units", "users", "groups", "packages", "server", "gpu", "read", "always")
TYPES = ("file", "directory", "link", "absent")


class Reader(object):
    """Reads each thing once, however many parts ask for it."""

    def __init__(self, module):
        self.module = module
        self.paths = {}
        self.units = {}
        self.servers = {}
        self.registries = {}
        self.gpu = None
        self.read = set()
        self.accounts = {}

    # -- files -------------------------------------------------------------------------------------------------
    def expand(self, path):
        """A path as given, with ~user/ resolved; None when that user does not exist."""
        if path.startswith("~"):
            user = path[1:].split("/", 1)[0]
            account = self.account(user)
            if account is None:
                return None
            return account["home"].rstrip("/") + path[1 + len(user):]
        return path

    def account(self, name):
        """The user `name` as passwd has it (home, uid, gid and primary group), or None; in RV(found) as users."""
        if name not in self.accounts:
            try:
                entry = pwd.getpwnam(name)
                self.accounts[name] = dict(home=entry.pw_dir, uid=entry.pw_uid, gid=entry.pw_gid,
                                           group=_name(grp.getgrgid, entry.pw_gid, "gr_name"), shell=entry.pw_shell,
                                           comment=entry.pw_gecos)
            except KeyError:
                self.accounts[name] = None
        return self.accounts[name]

    def path(self, path, under=None, owner=None):
        """What is at `path` (type, owner, group, mode, link target); with `under`, reached as user_file reaches it."""
        if (path, under) in self.paths:
            return self.paths[(path, under)]
        if under is not None:
            entry = self.paths[(path, under)] = self.walked(path, under, owner)
            return entry
        real = self.expand(path)
        entry = dict(path=real)
        try:
            st = os.lstat(real) if real else None
        except OSError:
            st = None
        if st is None:
            entry["type"] = "absent"
        else:
            entry["type"] = ("link" if stat.S_ISLNK(st.st_mode) else "directory" if stat.S_ISDIR(st.st_mode)
                             else "file" if stat.S_ISREG(st.st_mode) else "other")
            entry["owner"] = _name(pwd.getpwuid, st.st_uid, "pw_name")
            entry["group"] = _name(grp.getgrgid, st.st_gid, "gr_name")
            entry["mode"] = "%04o" % stat.S_IMODE(st.st_mode)
            if entry["type"] == "link":
                entry["target"] = os.readlink(real)
        self.paths[(path, None)] = entry
        return entry

    def walked(self, path, under, owner):
        """A path in a user's directory, reached from `under` without following a link (module_utils/_user_path,
        as user_file writes it): a link, hard link or special file on the way, or a directory of another account,
        is `unsafe` (said to differ) and nothing is read through it. A regular file's content is read here."""
        real, anchor = self.expand(path), self.expand(under)
        entry = dict(path=real)
        if real is None or anchor is None:
            entry.update(path=None, type="absent")
            return entry
        user = str(owner) if owner is not None else (under[1:].split("/", 1)[0] if under.startswith("~") else "root")
        account = self.account(user)
        parent = None
        try:
            parent = user_path.walk(real, anchor, account["uid"] if account else 0, -1)
            st = user_path.lstat(parent)
            if st is None:
                entry["type"] = "absent"
                return entry
            entry.update(user_path.attributes(st), type=user_path.type_name(st.st_mode))
            if stat.S_ISLNK(st.st_mode):
                entry["target"] = os.readlink(parent.name, dir_fd=parent.fd)
            elif stat.S_ISREG(st.st_mode):
                entry["bytes"] = user_path.read(parent)[1]
            elif not stat.S_ISDIR(st.st_mode):
                entry["unsafe"] = "%s is %s: nothing is read through it" % (real, user_path.kind(st.st_mode))
        except user_path.Refused as exc:
            entry["unsafe"] = "%s: nothing is read through it" % exc
        except (IOError, OSError, ValueError) as exc:
            entry["unsafe"] = "cannot be read (%s)" % exc
        finally:
            if parent is not None:
                parent.close()
        return entry

    def content(self, path, under=None, owner=None):
        entry = self.path(path, under, owner)
        if "bytes" not in entry:
            try:
                with open(entry["path"], "rb") as f:
                    entry["bytes"] = f.read()
            except (IOError, OSError, TypeError) as exc:
                entry["bytes"] = None
                entry["error"] = str(exc)
        return entry["bytes"]

    # -- systemd, packages --------------------------------------------------------------------------------------
    def unit(self, name):
        if name not in self.units:
            rc, out, err = self.module.run_command(["systemctl", "show", "-p", "LoadState", "-p", "ActiveState",
                                                    "-p", "UnitFileState", "-p", "DropInPaths", "--", name])
            props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line) if rc == 0 else {}
            said = "; ".join(line.strip() for line in (err or out).splitlines() if line.strip())
            self.units[name] = props or dict(error=said or "systemctl failed")
        return self.units[name]

    def package_installed(self, name):
        rc, out, _err = self.module.run_command(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}", "--", name])
        return rc == 0 and out.startswith("ii")

    # -- the Ollama server ---------------------------------------------------------------------------------------
    def server(self, url, timeout):
        """The server at `url` (None: the module's base_url, else as ollama_model finds it), read once."""
        if url not in self.servers:
            entry = dict(client=None, version=None, index=None, error=None, show=None)
            try:
                entry["client"] = client = client_from_params(dict(
                    self.module.params, base_url=url or self.module.params["base_url"],
                    timeout=timeout or self.module.params["timeout"]))
                entry["version"] = client.version()
                entry["index"] = client.models()
            except OllamaError as exc:
                entry["error"] = exc.msg
            self.servers[url] = entry
        return self.servers[url]

    def shows(self, url, timeout):
        """The /api/show answer of each model the server at `url` lists, with what describes the model (capabilities,
        details, parameters, and model_info's architecture and context length); None when one cannot be read."""
        entry = self.server(url, timeout)
        if entry["show"] is None and entry["error"] is None:
            shows = {}
            try:
                for model in sorted(set(e.get("name") or e.get("model") for e in entry["index"].entries.values())):
                    shows[model] = _described(entry["client"].show(model))
            except OllamaError as exc:
                entry["error"] = "cannot read %s: %s" % (model, exc.msg)
                return None
            entry["show"] = shows
        return entry["show"]

    def registry(self, timeout):
        """The registry client (as ollama_model reads a registry: from this host, with its own TLS settings)."""
        if timeout not in self.registries:
            self.registries[timeout] = registry_client_from_params(self.module.params, timeout=timeout)
        return self.registries[timeout]


def _described(show):
    """What of a /api/show answer describes the model (the rest, such as the template and license, is left out)."""
    info = show.get("model_info") or {}
    arch = info.get("general.architecture")
    kept = dict((key, info[key]) for key in ("general.architecture", "%s.context_length" % arch) if key in info)
    return dict(capabilities=show.get("capabilities") or [], details=show.get("details") or {},
                parameters=show.get("parameters") or "", model_info=kept)


def _name(lookup, number, attr):
    try:
        return getattr(lookup(number), attr)
    except KeyError:
        return str(number)


def check_path(reader, path, want, reasons):
    kind = want.get("type", "file")
    have = reader.path(path, want.get("under"), want.get("owner"))
    if have["path"] is None:
        missing = path if path.startswith("~") else want.get("under")
        reasons.append("%s: the user %s does not exist" % (path, missing[1:].split("/", 1)[0]))
        return
    if have.get("unsafe"):
        reasons.append("%s: %s" % (path, have["unsafe"]))
        return
    if kind == "absent":
        if have["type"] != "absent":
            reasons.append("%s: it is there (a %s) and should not be" % (path, have["type"]))
        return
    if have["type"] != kind:
        found = "missing" if have["type"] == "absent" else "a " + have["type"]
        reasons.append("%s: %s, not a %s" % (path, found, kind))
        return
    wanted = dict(owner=want.get("owner"), group=want.get("group"))
    if wanted["group"] == "~" and wanted["owner"] is not None:  # the owner's primary group
        try:
            wanted["group"] = _name(grp.getgrgid, pwd.getpwnam(str(wanted["owner"])).pw_gid, "gr_name")
        except KeyError:
            wanted["group"] = None  # no such user: the owner differs anyway
    for key in ("owner", "group"):
        if wanted[key] is not None and have.get(key) != str(wanted[key]):
            reasons.append("%s: %s is %s, not %s" % (path, key, have.get(key), wanted[key]))
    if want.get("mode") is not None and int(str(want["mode"]), 8) != int(have["mode"], 8):
        reasons.append("%s: mode is %s, not %s" % (path, have["mode"], want["mode"]))
    if kind == "link" and want.get("target") is not None and have.get("target") != want["target"]:
        reasons.append("%s: points to %s, not %s" % (path, have.get("target"), want["target"]))
    if kind != "file":
        return
    if want.get("sha256") or want.get("lines"):
        check_content(reader, path, want, reasons)
    if want.get("cert_valid_for") is not None:
        rc, _out, _err = reader.module.run_command(["openssl", "x509", "-noout", "-checkend",
                                                    str(int(want["cert_valid_for"])), "-in", have["path"]])
        if rc != 0:
            reasons.append("%s: expires within %s s, or is not a certificate" % (path, want["cert_valid_for"]))


def check_content(reader, path, want, reasons):
    """The file's sha256, and the sha256 of the lines that start with each given prefix."""
    data = reader.content(path, want.get("under"), want.get("owner"))
    if data is None:
        reasons.append("%s: cannot be read (%s)" % (path, reader.path(path, want.get("under"), want.get("owner"))
                                                    .get("error")))
        return
    if want.get("sha256") and hashlib.sha256(data).hexdigest() != want["sha256"].lower():
        reasons.append("%s: its content differs" % path)
    for line in want.get("lines") or []:
        found = [text for text in data.decode("utf-8", "replace").splitlines() if text.startswith(line["prefix"])]
        if not found or hashlib.sha256(found[-1].encode("utf-8")).hexdigest() != line["sha256"].lower():
            reasons.append("%s: its %s line differs" % (path, line["prefix"]))


def check_unit(reader, name, want, reasons):
    have = reader.unit(name)
    if "error" in have:
        reasons.append("unit %s: cannot be read (%s)" % (name, have["error"]))
        return
    if have.get("LoadState") != "loaded":
        reasons.append("unit %s: %s" % (name, have.get("LoadState") or "not loaded"))
        return
    if "active" in want and (have.get("ActiveState") == "active") != boolean(want["active"]):
        reasons.append("unit %s: %s" % (name, have.get("ActiveState")))
    if "enabled" in want and (have.get("UnitFileState") == "enabled") != boolean(want["enabled"]):
        reasons.append("unit %s: %s at boot" % (name, have.get("UnitFileState")))
    if want.get("dropins") is not None:
        declared = want["dropins"]
        found = takeovers(have.get("DropInPaths", "").split(), declared.get("own") or [],
                          environment(declared.get("environment") or ""), declared.get("user"), declared.get("group"))
        have["takeovers"] = found
        for entry in found:
            reasons.append("unit %s: the drop-in %s sets %s over the declared value%s" % (
                name, entry["path"], ", ".join(entry["settings"]), "s" if len(entry["settings"]) > 1 else ""))


def check_user(reader, name, want, reasons):
    entry = reader.account(name)
    if entry is None:
        reasons.append("user %s: missing" % name)
        return
    group = entry["group"]
    for key in ("group", "home", "shell", "comment"):
        have = entry[key]
        if want.get(key) is not None and have != str(want[key]):
            reasons.append("user %s: %s is %s, not %s" % (name, key, have, want[key]))
    member_of = set(g.gr_name for g in grp.getgrall() if name in g.gr_mem)
    for extra in want.get("groups") or []:
        if _group_exists(extra) and extra not in member_of and extra != group:
            reasons.append("user %s: not in group %s" % (name, extra))


def _group_exists(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def check_server(reader, want, reasons):
    timeout = int(want.get("timeout") or 0) or None
    have = reader.server(want.get("url") or None, timeout)
    url = have["client"].base_url if have["client"] else want.get("url")
    if have["error"]:
        reasons.append("server %s: %s" % (url, have["error"]))
        return
    if want.get("version") and have["version"] != str(want["version"]):
        reasons.append("server %s: answers version %s, not %s" % (url, have["version"], want["version"]))
    if boolean(want.get("show") or False) and reader.shows(want.get("url") or None, timeout) is None:
        reasons.append("server %s: %s" % (url, have["error"]))
    models = want.get("models")
    if models is None:
        return
    try:
        wanted = parse_model_list(models, "present")
        pinned = pins(models, "present")
    except (InvalidModelName, InvalidLock) as exc:
        reasons.append("models: %s" % exc)
        return
    index = have["index"]
    insecure = boolean(want.get("insecure") or False)
    for given, parsed, state in wanted:
        local = index.get(parsed)
        locked = pinned.get(parsed.key)
        if state == "absent":
            if local:
                reasons.append("model %s: on the server, and listed as absent" % given)
        elif not local:
            reasons.append("model %s: not on the server" % given)
        elif locked:
            if local.get("digest") != locked:
                reasons.append("model %s: has digest %s, not the locked %s" % (given, local.get("digest"), locked))
        elif state == "latest":
            try:  # the name as the server stores it, which is what it asks the registry for (as ollama_model does)
                digest = reader.registry(timeout or reader.module.params["timeout"]).manifest(
                    index.stored(parsed), insecure)[0]
            except OllamaError as exc:
                reasons.append("model %s: cannot tell whether it is the latest (%s)" % (given, exc.msg))
                continue
            if digest != local.get("digest"):
                reasons.append("model %s: the registry has a newer build" % given)
    if boolean(want.get("purge") or False):
        listed = set(parsed.key for _g, parsed, _state in wanted)
        for key, local in index.items():
            if key not in listed:
                reasons.append("model %s: on the server, not listed (purge)" % local.get("name"))


def _gpu_check():
    """The hardware check's parts, imported only for a part that asks for it (most looks do not)."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    from ansible_collections.llmops.ollama.plugins.module_utils._hardware import gather
    from ansible_collections.llmops.ollama.plugins.module_utils._requirements import DEFAULTS, check_host

    return ArgumentSpecValidator, gather, DEFAULTS, check_host


def _spec_type(value):
    """The argument spec type of a default requirement's value."""
    for kind, name in ((bool, "bool"), (int, "int"), (float, "float"), (list, "list"), (dict, "dict")):
        if isinstance(value, kind):
            return name
    return "str"


def check_gpu(reader, want, reasons):
    """The gpu key: holds on a host without GPUs whose check (as ollama_facts makes it) has no GPU failure."""
    ArgumentSpecValidator, gather_hardware, DEFAULTS, check_host = _gpu_check()
    given = dict((k, v) for k, v in (want.get("requirements") or {}).items() if v is not None)
    types = dict((key, _spec_type(value)) for key, value in DEFAULTS.items())
    spec = dict((key, dict(type=kind, elements="str") if kind == "list" else dict(type=kind)) for key, kind in types.items())
    validated = ArgumentSpecValidator(spec).validate(given)
    if validated.error_messages or validated.unsupported_parameters:
        reasons.append("GPU check: the requirements are not valid (ollama_facts says why)")
        return
    hardware = gather_hardware("/", reader.module.run_command, reader.module.get_bin_path)
    check = check_host(hardware, validated.validated_parameters)
    reader.gpu = dict(compute=check["compute"], summary=check.get("gpu_summary"), problems=check["reasons"])
    vendors = sorted(set([str(d.get("vendor")) for d in hardware["gpu_drivers"] if d.get("hardware_present")]
                         + [str(g.get("vendor")) for g in hardware["gpus"]]))
    if vendors:
        reasons.append("GPUs present (%s): the GPU checks run on every run" % ", ".join(vendors))
    failed = [r["message"] for r in check["results"] if r["status"] == "fail" and r["category"] in ("driver", "gpu")]
    if failed:
        reasons.append("GPU check: %s" % " ".join(failed))


def check_part(reader, part, reasons):
    if part.get("always"):
        reasons.append(part["always"])
    for want in part.get("paths") or []:
        check_path(reader, want["path"], want, reasons)
    for want in part.get("units") or []:
        check_unit(reader, want["name"], want, reasons)
    for want in part.get("users") or []:
        check_user(reader, want["name"], want, reasons)
    for name in part.get("groups") or []:
        if not _group_exists(name):
            reasons.append("group %s: missing" % name)
    for name in part.get("packages") or []:
        if not reader.package_installed(name):
            reasons.append("package %s: not installed" % name)
    if part.get("server"):
        check_server(reader, part["server"], reasons)
    if part.get("gpu") is not None:
        check_gpu(reader, part["gpu"] or {}, reasons)
    for path in part.get("read") or []:
        reader.read.add(path)
        reader.content(path)


SERVER_KEYS = ("url", "version", "models", "purge", "insecure", "timeout", "show")


def _is_number(value):
    """Whether a value reads as a whole number of seconds (as int() reads a YAML number or its string)."""
    try:
        int(str(value).strip())
        return True
    except ValueError:
        return False


def validate_path(name, want):
    """The first problem of one paths entry, or None."""
    where = "parts: %s: paths: %s: " % (name, want["path"])
    if set(want) - set(PATH_KEYS) or want.get("type", "file") not in TYPES:
        return where + "the keys are %s, and type is one of %s" % (", ".join(PATH_KEYS), ", ".join(TYPES))
    for key in ("path", "sha256", "target", "owner", "group", "under"):
        if want.get(key) is not None and not isinstance(want[key], (str, int)):
            return where + "%s must be a string, not %s" % (key, type(want[key]).__name__)
    if want.get("mode") is not None:
        try:
            int(str(want["mode"]), 8)
        except ValueError:
            return where + "mode %s is not octal (\"0644\")" % want["mode"]
    if want.get("cert_valid_for") is not None and not _is_number(want["cert_valid_for"]):
        return where + "cert_valid_for %s is not a number of seconds" % want["cert_valid_for"]
    lines = want.get("lines") or []
    if not isinstance(lines, list) or not all(isinstance(line, dict) and isinstance(line.get("prefix"), str)
                                              and isinstance(line.get("sha256"), str) for line in lines):
        return where + "lines must be a list of dictionaries, each with its prefix and sha256"
    return None


def validate_server(name, server):
    """The first problem of a part's server, or None."""
    where = "parts: %s: server " % name
    if not isinstance(server, dict):
        return where + "must be a dictionary of %s, not %s" % (", ".join(SERVER_KEYS), type(server).__name__)
    unknown = sorted(set(server) - set(SERVER_KEYS))
    if unknown:
        return where + "has unknown keys %s; the keys are %s" % (", ".join(unknown), ", ".join(SERVER_KEYS))
    if server.get("timeout") is not None and not _is_number(server["timeout"]):
        return where + "timeout %s is not a number of seconds" % server["timeout"]
    if server.get("models") is not None and not isinstance(server["models"], list):
        return where + "models must be a list of names or of dictionaries with name and state"
    return None


def validate(parts):
    """What a wanted state must look like; returns the first problem or None."""
    for name, part in parts.items():
        if not isinstance(part, dict):
            return "parts: %s must be a dictionary of %s, not %s" % (name, ", ".join(PART_KEYS), type(part).__name__)
        unknown = sorted(set(part) - set(PART_KEYS))
        if unknown:
            return "parts: %s has unknown keys %s; the keys are %s" % (name, ", ".join(unknown), ", ".join(PART_KEYS))
        for key in ("paths", "units", "users"):
            items = part.get(key) or []
            field = "path" if key == "paths" else "name"
            if not isinstance(items, list) or not all(isinstance(i, dict) and i.get(field) for i in items):
                return "parts: %s: %s must be a list of dictionaries, each with its %s" % (name, key, field)
        for want in part.get("units") or []:
            dropins = want.get("dropins")
            if dropins is not None and not (isinstance(dropins, dict) and isinstance(dropins.get("own") or [], list)
                                            and isinstance(dropins.get("environment") or "", str)):
                return ("parts: %s: units: %s: dropins must be a dictionary with own (a list of paths), environment "
                        "(a drop-in's text), user and group" % (name, want["name"]))
        for key in ("groups", "packages", "read"):
            items = part.get(key) or []
            if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
                return "parts: %s: %s must be a list of names" % (name, key)
        for want in part.get("paths") or []:
            problem = validate_path(name, want)
            if problem:
                return problem
        if part.get("server") is not None:
            problem = validate_server(name, part["server"])
            if problem:
                return problem
        if part.get("always") is not None and not isinstance(part["always"], str):
            return "parts: %s: always must be a sentence (why the part's steps run on every run)" % name
        if part.get("gpu") is not None and not (isinstance(part["gpu"], dict)
                                                and isinstance(part["gpu"].get("requirements") or {}, dict)):
            return "parts: %s: gpu must be a dictionary, with requirements a dictionary" % name
    return None


def gather_facts(module):
    """The facts setup's platform, distribution and service_mgr subsets give, gathered the way setup gathers them."""
    from ansible.module_utils.facts import ansible_collector
    from ansible.module_utils.facts.namespace import PrefixFactNamespace
    from ansible.module_utils.facts.system.distribution import DistributionFactCollector
    from ansible.module_utils.facts.system.platform import PlatformFactCollector
    from ansible.module_utils.facts.system.service_mgr import ServiceMgrFactCollector

    collector = ansible_collector.get_ansible_collector(
        all_collector_classes=[PlatformFactCollector, DistributionFactCollector, ServiceMgrFactCollector],
        namespace=PrefixFactNamespace("ansible", "ansible_"), filter_spec=[], gather_subset=["!all"], gather_timeout=10,
        minimal_gather_subset=frozenset(["platform", "distribution", "service_mgr"]))
    facts = collector.collect(module=module)
    for key in ("module_setup", "gather_subset"):  # not setup's run: a play with gathering=smart still gathers
        facts.pop(key, None)
    return facts


def compare(reader, parts):
    """{part: [reasons]} for the parts that differ."""
    drift = {}
    for name, part in sorted(parts.items()):
        reasons = []
        check_part(reader, part, reasons)
        if reasons:
            drift[name] = reasons
    return drift


def main():
    argument_spec = api_argument_spec()
    argument_spec.update(registry_argument_spec())
    argument_spec.update(parts=dict(type="dict", default={}), roles=dict(type="dict", default={}),
                         facts=dict(type="bool", default=False))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    roles = module.params["roles"]
    for name, parts in [("", module.params["parts"])] + sorted(roles.items()):
        problem = validate(parts) if isinstance(parts, dict) else "roles: %s must be a dictionary of parts" % name
        if problem:
            module.fail_json(msg="%s%s" % ("roles: %s: " % name if name else "", problem))
    reader = Reader(module)
    drift = compare(reader, module.params["parts"])
    by_role = dict((name, compare(reader, parts)) for name, parts in roles.items())
    found = dict(paths=dict((p, dict((k, v) for k, v in e.items() if k not in ("bytes", "error")))
                            for (p, _under), e in reader.paths.items()),
                 units=reader.units,
                 server=dict((str(u), dict(version=e["version"], error=e["error"],
                                           models=e["index"].listed() if e["index"] is not None else [],
                                           **(dict(show=e["show"]) if e["show"] is not None else {})))
                             for u, e in reader.servers.items()),
                 users=reader.accounts,
                 gpu=reader.gpu)
    for (path, under), entry in reader.paths.items():
        if "bytes" in entry and path in reader.read and under is None:
            found["paths"][path]["text"] = entry["bytes"].decode("utf-8", "replace") if entry["bytes"] is not None else None
    result = dict(changed=False, converged=not drift, drift=drift, found=found,
                  roles=dict((name, dict(drift=d, converged=not d)) for name, d in by_role.items()))
    if module.params["facts"]:
        result["ansible_facts"] = gather_facts(module)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
