#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: user_file
short_description: Write a file in a user's home, as root, without going through anything the user placed there
version_added: 0.3.0
description:
  - Writes one file, owned by a user, in that user's home (or another directory the user controls), as root, the way
    no link, hard link, FIFO, socket or device the user placed there can turn into a write (or a read) elsewhere.
  - The path is walked from C(/) one directory at a time. Above O(root), a symbolic link is followed only when
    root owns it and the directory holding it, which no one else can write (the system's own links, such as
    C(/home) to C(/var/home)). From O(root) down, every directory is opened relative to the one before with
    C(O_NOFOLLOW) and C(O_DIRECTORY), so no link is ever followed; each must be owned by O(owner) or root (the
    file's own directory may be anyone's when O(dir_mode) gives it to the owner).
  - A missing directory from O(root) down is made relative to its parent, and given its owner and mode through a
    descriptor opened without following a link; nothing is ever changed by path.
  - The file is refused when it is a symbolic link, a directory, a FIFO, a socket, a device, or a regular file with
    more than one link (a hard link). A FIFO is never opened; a regular file is opened with C(O_NOFOLLOW) and
    C(O_NONBLOCK) and checked again on its descriptor before it is read.
  - The file is replaced atomically. A new file is made (C(O_EXCL)) in the same directory, given its owner, group and
    mode, synced, and renamed over the old one, which is never written to. Nothing changes when the content, owner,
    group and mode already match.
  - A refusal names the path and what was found there, and says what to do. With O(refusal=report) it is returned
    (RV(refused), RV(msg)) instead of failing the task, so that a loop over several users writes the others' files.
requirements:
  - Python 3.9 or newer on the managed host, running as root (or as O(owner)).
author:
  - llmops.ollama maintainers (@llmops)
extends_documentation_fragment:
  - llmops.ollama.attributes
attributes:
  check_mode:
    support: full
    details: Walks and reads the same way, makes and writes nothing, and says exactly whether the real run changes.
  diff_mode:
    support: full
    details:
      - The file's content before and after, and the owner, group and mode of the file and its directory.
      - Never the content of a O(secret) file, of a user's own file left alone, or any line of a O(key) file; for a
        O(key) file only whether its line is added or changed, without the value.
  idempotent:
    support: full
options:
  path:
    description: The file, an absolute path.
    type: path
    required: true
  root:
    description:
      - The directory from which nothing is followed, a real directory (not a link) owned by O(owner) or root; made
        when it is missing (the directories above it must exist).
      - When O(path) is not below it, the file's own directory is taken instead.
      - Defaults to O(owner)'s home in the passwd database.
    type: path
  owner:
    description: The user who owns the file (a name, or a uid).
    type: str
    required: true
  group:
    description: The file's group (a name, or a gid). Defaults to O(owner)'s primary group.
    type: str
  mode:
    description: The file's mode, in octal (V("0600")).
    type: raw
    default: "0600"
  dir_mode:
    description:
      - The mode of the file's directory, in octal (V("0700")). The directory is then given O(owner), O(group) and
        this mode whoever owns it (through its descriptor), and any directory made gets them too.
      - Not given, the file's directory is left as it is (it must be owned by O(owner) or root), and a directory
        that is made gets mode V("0700").
    type: raw
  content:
    description: The whole content of the file.
    type: str
  key:
    description:
      - Instead of O(content), one C(KEY=value) line in a C(.env)-style file, with this key; the file's other lines
        are kept. The last line starting with C(KEY=) is replaced, and other lines with that key are removed; with
        none, the line is added at the end.
      - The lines already there are kept only when the file belongs to O(owner) (or O(owner) is root); another
        account's file is refused, as its lines would be copied into the owner's.
    type: str
  value:
    description: The value of O(key). It never appears in the result, the diff or the log. No line break.
    type: str
  marker:
    description:
      - What the first line of a file written by this module's caller starts with. An existing file that does not
        start with it is the user's own; it is left alone (RV(kept)), unless O(force), and then the old file is kept
        as a backup beside it, as with O(backup).
    type: str
  force:
    description: Replace a user's own file (one that does not start with O(marker)).
    type: bool
    default: false
  backup:
    description:
      - Keep the old file when its content changes, as C(<name>.<pid>.<date>@<time>~) beside it (a hard link to
        it, so it keeps its owner, mode and content).
    type: bool
    default: false
  secret:
    description: The content is secret; it is left out of the diff and of the result (where Ansible shows the
      arguments it was given, it is masked).
    type: bool
    default: false
  refusal:
    description:
      - What a refusal does. V(fail) fails the task. V(report) returns RV(refused) and RV(msg) without failing, so
        the caller can write what it can and fail once at the end, naming every path refused.
    type: str
    choices: [fail, report]
    default: fail
seealso:
  - name: The ansible.builtin.copy module
    description: Writes files where no other user can place anything (it follows links at the destination).
    link: https://docs.ansible.com/ansible/latest/collections/ansible/builtin/copy_module.html
notes:
  - M(llmops.ollama.ollama_state) reads such files the same way when a path gives C(under).
  - The P(llmops.ollama.codex#role) role writes each listed user's Codex files with it.
"""

EXAMPLES = r"""
- name: Write a user's configuration, left alone when it is their own
  llmops.ollama.user_file:
    path: /home/ann/.codex/config.toml
    owner: ann
    mode: "0600"
    dir_mode: "0700"
    content: "{{ lookup('ansible.builtin.template', 'config.toml.j2') }}"
    marker: "# Managed by Ansible"

- name: Keep one token line in a user's .env
  llmops.ollama.user_file:
    path: /home/ann/.codex/.env
    owner: ann
    key: OLLAMA_REMOTE_TOKEN
    value: "{{ vault_ann_token }}"
    refusal: report
  register: written
  no_log: true
"""

RETURN = r"""
file:
  description:
    - The file, as a normalized path. (Not C(path), which would make Ansible add the attributes of whatever the path
      leads to, following links.)
  returned: always
  type: str
changed:
  description: Whether the file, or its directory, changed (or would, in check mode).
  returned: always
  type: bool
kept:
  description: The file is the user's own (it does not start with O(marker)) and was left alone.
  returned: always
  type: bool
users_own:
  description: The file was there and does not start with O(marker).
  returned: always
  type: bool
made:
  description: The directories made (in check mode, that would be made).
  returned: always
  type: list
  elements: str
backup_file:
  description: The backup of the old file.
  returned: when one was made
  type: str
refused:
  description: Whether the path was refused (with O(refusal=report); the task fails otherwise).
  returned: always
  type: bool
msg:
  description: Why the path was refused, naming it and what was found there.
  returned: when refused
  type: str
  sample: >-
    /home/ann/.codex is a symbolic link (to /etc/cron.d): a file in a user's directory is not written through a
    link, hard link or special file placed there; remove it, and the next run writes the file
"""

import grp
import os
import pwd
import re
import stat
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.ollama.plugins.module_utils import _user_path as up

KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HIDDEN = "(hidden)"


def _mode(value, name):
    if value is None:
        return None
    try:
        mode = value if isinstance(value, int) else int(str(value), 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise ValueError("%s %s is not an octal mode (\"0600\")" % (name, value))
    return mode


def _account(owner, group):
    """(uid, gid, home) of the owner, the group given or the owner's primary one."""
    try:
        entry = pwd.getpwnam(owner)
        uid, gid, home = entry.pw_uid, entry.pw_gid, entry.pw_dir
    except KeyError:
        if not owner.isdigit():
            raise ValueError("owner %s is not a user on this host" % owner)
        uid, gid, home = int(owner), None, None
    if group is not None and str(group) != "":
        try:
            gid = grp.getgrnam(str(group)).gr_gid
        except KeyError:
            if not str(group).isdigit():
                raise ValueError("group %s is not a group on this host" % group)
            gid = int(group)
    if gid is None:
        raise ValueError("owner %s has no passwd entry: give its group" % owner)
    return uid, gid, home


def with_line(old, key, value):
    """The file's bytes with one KEY=value line: the last line with the key replaced, the others with it removed."""
    line = ("%s=%s\n" % (key, value)).encode("utf-8")
    lines = re.findall(b"[^\n]*\n|[^\n]+$", old or b"")
    prefix = ("%s=" % key).encode("utf-8")
    hits = [i for i, text in enumerate(lines) if text.startswith(prefix)]
    if not hits:
        if lines and not lines[-1].endswith(b"\n"):
            lines[-1] += b"\n"
        return b"".join(lines) + line
    return b"".join(line if i == hits[-1] else text for i, text in enumerate(lines) if i == hits[-1] or i not in hits)


def _attrs_text(attrs):
    return "owner: %(owner)s\ngroup: %(group)s\nmode: %(mode)s\n" % attrs


class Writer(object):
    def __init__(self, module):
        self.module = module
        p = module.params
        self.path = up.normalized(p["path"])
        self.uid, self.gid, home = _account(p["owner"], p["group"])
        root = p["root"] or home
        if not root:
            raise ValueError("owner %s has no home in the passwd database: give root" % p["owner"])
        self.root = up.normalized(root)
        self.mode = _mode(p["mode"], "mode")
        self.dir_mode = _mode(p["dir_mode"], "dir_mode")
        self.write = not module.check_mode
        self.diff = []
        self.result = dict(changed=False, file=self.path, kept=False, users_own=False, made=[], refused=False)

    def want(self, old):
        """The new content, given the old one (None when there is none)."""
        p = self.module.params
        if p["key"] is None:
            return p["content"].encode("utf-8")
        return with_line(old, p["key"], p["value"])

    def run(self):
        """The result; Refused (with the directories made before, in self.result) for an unsafe path."""
        parent = up.walk(self.path, self.root, self.uid, self.gid, made=self.result["made"],
                         make_mode=(self.dir_mode if self.dir_mode is not None else 0o700) if self.write else None)
        try:
            self.result["made"] = parent.made or parent.missing
            made = dict(owner=up.account_name(self.uid), group=up.group_name(self.gid),
                        mode="%04o" % (0o700 if self.dir_mode is None else self.dir_mode))
            for folder in self.result["made"]:
                self.diff.append(dict(before_header=folder, after_header=folder, before="state: absent\n",
                                      after="state: directory\n" + _attrs_text(made)))
            if parent.fd is not None:
                self.directory(parent)
            self.file(parent)
        finally:
            parent.close()
        self.result["changed"] = bool(self.result["made"]) or self.result["changed"]
        return self.result

    def directory(self, parent):
        if self.dir_mode is None:
            if parent.path not in parent.made:
                up.owned(parent.path, parent.stat, self.uid)
            return
        before = up.fix_directory(parent, self.uid, self.gid, self.dir_mode, self.write)
        if before:
            self.result["changed"] = True
            after = dict(owner=up.account_name(self.uid), group=up.group_name(self.gid), mode="%04o" % self.dir_mode)
            self.diff.append(dict(before_header=parent.path, after_header=parent.path, before=_attrs_text(before),
                                  after=_attrs_text(after)))

    def file(self, parent):
        p = self.module.params
        found = up.read(parent) if parent.fd is not None else None
        old_st, old = found if found else (None, None)
        if old is not None and p["key"] is not None and old_st.st_uid != self.uid and self.uid != 0:
            raise up.Refused(self.path, "owned by %s, not by %s: its lines are not copied into %s's file"
                             % (up.account_name(old_st.st_uid), up.account_name(self.uid), up.account_name(self.uid)),
                             "give it to %s or remove it" % up.account_name(self.uid))
        own = old is not None and p["marker"] is not None and not old.startswith(p["marker"].encode("utf-8"))
        self.result["users_own"] = own
        if own and not p["force"]:
            self.result["kept"] = True
            return
        new = self.want(old)
        same = (old == new and (old_st.st_uid, old_st.st_gid, stat.S_IMODE(old_st.st_mode))
                == (self.uid, self.gid, self.mode)) if old is not None else False
        if same:
            return
        self.result["changed"] = True
        self.diff_file(old_st, old, new)
        if not self.write:
            return
        backup = None
        if old is not None and old != new and (p["backup"] or own):
            backup = "%s.%d.%s~" % (parent.name, os.getpid(), time.strftime("%Y-%m-%d@%H:%M:%S"))
        up.replace(parent, new, self.uid, self.gid, self.mode, backup=backup, old=old_st)
        if backup:
            self.result["backup_file"] = up.join(parent.path, backup)

    def diff_file(self, old_st, old, new):
        p = self.module.params
        after_attrs = dict(owner=up.account_name(self.uid), group=up.group_name(self.gid), mode="%04o" % self.mode)
        if old_st is not None and up.attributes(old_st) != after_attrs:
            self.diff.append(dict(before_header=self.path, after_header=self.path,
                                  before=_attrs_text(up.attributes(old_st)), after=_attrs_text(after_attrs)))
        if old == new:
            return
        if p["key"] is not None:
            prefix = ("%s=" % p["key"]).encode("utf-8")
            had = old is not None and any(line.startswith(prefix) for line in old.split(b"\n"))
            before = ("%s=%s\n" % (p["key"], HIDDEN)) if had else ""
            after = "%s=%s (%s)\n" % (p["key"], HIDDEN, "changed" if had else "added")
        elif p["secret"]:
            before, after = ("" if old is None else "%s\n" % HIDDEN), "%s (changed)\n" % HIDDEN
        else:
            before = "" if old is None else old.decode("utf-8", "replace")
            after = new.decode("utf-8", "replace")
        self.diff.append(dict(before_header=self.path, after_header=self.path, before=before, after=after))


def advice(refused):
    """The refusal's message: the path, what it is, and what to do (the same for every file a plant stops)."""
    what = ("a file in a user's directory is not written through a link, hard link or special file placed there; "
            if refused.placed else "")
    return "%s: %s%s, and the next run writes the file" % (refused, what, refused.advice)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            root=dict(type="path"),
            owner=dict(type="str", required=True),
            group=dict(type="str"),
            mode=dict(type="raw", default="0600"),
            dir_mode=dict(type="raw"),
            content=dict(type="str"),
            key=dict(type="str", no_log=False),
            value=dict(type="str", no_log=True),
            marker=dict(type="str"),
            force=dict(type="bool", default=False),
            backup=dict(type="bool", default=False),
            secret=dict(type="bool", default=False, no_log=False),
            refusal=dict(type="str", choices=["fail", "report"], default="fail"),
        ),
        required_one_of=[("content", "key")],
        mutually_exclusive=[("content", "key")],
        required_together=[("key", "value")],
        supports_check_mode=True,
    )
    p = module.params
    if p["secret"] and p["content"]:
        module.no_log_values.add(p["content"])  # out of the invocation too
    if p["key"] is not None and not KEY.match(p["key"]):
        module.fail_json(msg="key %s is not a variable name (letters, digits and _, not starting with a digit)"
                         % p["key"])
    if p["value"] is not None and re.search(r"[\r\n\0]", p["value"]):
        module.fail_json(msg="value holds a line break or a NUL character; it must be one line")
    try:
        writer = Writer(module)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    try:
        result = writer.run()
    except up.Refused as exc:
        msg, made = advice(exc), writer.result["made"]
        if p["refusal"] == "fail":
            module.fail_json(msg=msg, file=writer.path, refused=True, changed=bool(made), made=made)
        module.exit_json(msg=msg, file=writer.path, refused=True, changed=bool(made), kept=False, users_own=False,
                         made=made)
    except (IOError, OSError) as exc:
        module.fail_json(msg="%s: %s" % (writer.path, exc), file=writer.path, refused=False, changed=False)
    if module._diff and writer.diff:
        result["diff"] = writer.diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
