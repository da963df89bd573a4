# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The staging directory of ollama_import: where the blobs a server lacks wait (copied there by the models role, or
downloaded from a bundle_url) before they are uploaded to the server, by root, on hosts where others have accounts.

It is used only when nothing another account placed can be on the way to it, or in it:

- every directory from / to it is owned by root or by the account the module runs as (the owner of a directory can
  swap what is in it), and one that its group or others can write is sticky (as /tmp and /var/tmp are), so that no
  one else can rename or replace the next one on the way, which root (or that account) owns;
- a symbolic link on the way is followed only when root (or that account) owns it, in a directory that passed the
  above; the staging directory itself is never a link;
- the staging directory is a directory owned by root (or that account) that neither its group nor others can write.

A missing one is made with mkdir (which follows no link), mode 0700, and then looked at as above, so that anything
put there meanwhile is refused. A staged blob is opened (O_NOFOLLOW | O_NONBLOCK) only when it is a regular file with
one link, and the descriptor is checked to be that file: a link, FIFO, socket, device or hard link named like a blob
is refused by name, and never opened or read.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import stat

from ansible_collections.llmops.ollama.plugins.module_utils._user_path import FILE_FLAGS, MAX_HOPS, account_name, kind

# The models role's default: a directory only root can write, on disk (not a tmpfs), for data fetched again at will.
DEFAULT = "/var/cache/ollama-bundle"
ELSEWHERE = "give staging_dir a directory only root can write (such as %s, which is made root's, mode 0700)" % DEFAULT


class UnsafeStaging(Exception):
    """The staging directory, or an entry in it, is not used; str() says which path, what was found there, and what
    to do."""


def _trusted(uid):
    return uid in (0, os.geteuid())


def _who(st):
    """The owner of lstat `st` and its mode, as "alice (uid 1001, mode 0755)"."""
    name = account_name(st.st_uid)
    return "%s(uid %d, mode %s)" % ("" if name == str(st.st_uid) else name + " ", st.st_uid, _mode(st))


def _mode(st):
    return "%04o" % stat.S_IMODE(st.st_mode)


def _join(folder, name):
    return folder.rstrip("/") + "/" + name


def _link_target(path):
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def _look(given, path):
    """lstat of `path`, or None when it is missing; UnsafeStaging for any other failure to look."""
    try:
        return os.lstat(path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise UnsafeStaging("staging_dir %s: cannot look at %s (%s); %s" % (given, path, exc.strerror, ELSEWHERE))


def _refuse(given, here, last, st):
    """UnsafeStaging when the directory at `here` (its lstat `st`, not a link) may not be on the way to, or be, the
    staging directory `given` (`last`); None when it may."""
    on_way = "" if last else ", on the way to staging_dir %s," % given
    name = "staging_dir %s" % given if last else here
    if not stat.S_ISDIR(st.st_mode):
        return UnsafeStaging("%s%s is %s, not a directory: remove it, or %s"
                             % (name, on_way, kind(st.st_mode), ELSEWHERE))
    if not _trusted(st.st_uid):
        if last:
            return UnsafeStaging("staging_dir %s is owned by %s, not by root: its owner could put links or FIFOs in "
                                 "it, named like blobs, for root to follow or hang on, so nothing in it is read. "
                                 "Remove it (the module, or the models role, makes it again, root's alone), or %s"
                                 % (given, _who(st), ELSEWHERE))
        return UnsafeStaging("%s%s is owned by %s, who could replace what is in it: %s"
                             % (here, on_way, _who(st), ELSEWHERE))
    if st.st_mode & 0o022:
        if last:
            return UnsafeStaging("staging_dir %s can be written by its group or others (mode %s): anyone who can "
                                 "could put links or FIFOs in it, named like blobs. Take that away (chmod 0700 %s), or "
                                 "%s" % (given, _mode(st), given, ELSEWHERE))
        if not st.st_mode & stat.S_ISVTX:
            return UnsafeStaging("%s%s can be written by its group or others and is not sticky (mode %s): anyone who "
                                 "can could replace the staging directory; %s" % (here, on_way, _mode(st), ELSEWHERE))
    return None


def staging_dir(path, make=False):
    """The staging directory `path` as this host resolves it (each link on the way followed, once checked), after the
    checks of this file's docstring; with `make`, made when it is missing (and any missing directory above it, 0755).
    Returns (that path, whether it exists). Raises UnsafeStaging saying what is wrong and what to do."""
    given = path
    if not path.startswith("/"):
        path = _join(os.getcwd(), path)
    todo = [part for part in path.split("/") if part not in ("", ".")]
    where, hops = "/", 0
    problem = _refuse(given, "/", not todo, os.lstat("/"))
    if problem:
        raise problem
    while todo:
        name = todo.pop(0)
        if name == "..":
            where = os.path.dirname(where) or "/"  # `where` has no link in it: its parent is the real one
            continue
        here, last = _join(where, name), not todo
        st = _look(given, here)
        if st is None:
            if not make:
                return _join(here, "/".join(todo)) if todo else here, False
            try:
                os.mkdir(here, 0o700 if last else 0o755)
            except OSError as exc:
                if exc.errno != errno.EEXIST:  # else put there meanwhile: looked at below like anything found
                    raise UnsafeStaging("staging_dir %s: cannot make %s (%s); check the disk, or %s"
                                        % (given, here, exc.strerror, ELSEWHERE))
            st = _look(given, here)
            if st is None:
                raise UnsafeStaging("staging_dir %s: %s was removed as soon as it was made; run again" % (given, here))
        if stat.S_ISLNK(st.st_mode):
            target = _link_target(here)
            if last:
                raise UnsafeStaging("staging_dir %s is a symbolic link (to %s), which is not followed: whoever put it "
                                    "there would choose where root writes the blobs. Remove the link (the module, or "
                                    "the models role, makes the directory, root's alone), or give staging_dir the "
                                    "directory itself" % (given, target))
            if not _trusted(st.st_uid):
                raise UnsafeStaging("%s, on the way to staging_dir %s, is a symbolic link (to %s) owned by %s, "
                                    "which is not followed (only root's links are): remove it, or %s"
                                    % (here, given, target, _who(st), ELSEWHERE))
            hops += 1
            if hops > MAX_HOPS:
                raise UnsafeStaging("staging_dir %s: more than %d symbolic links on the way (at %s); give staging_dir "
                                    "the directory itself" % (given, MAX_HOPS, here))
            if target.startswith("/"):
                where = "/"
            todo[:0] = [part for part in target.split("/") if part not in ("", ".")]
            if not todo:
                raise UnsafeStaging("staging_dir %s is / once its links are followed: %s" % (given, ELSEWHERE))
            continue
        problem = _refuse(given, here, last, st)
        if problem:
            raise problem
        where = here
    return where, True


def open_blob(folder, name):
    """The staged blob `name` in the staging directory `folder` (checked by staging_dir), opened for reading, or None
    when there is none. Anything but a regular file with one link raises UnsafeStaging and is not opened."""
    path = _join(folder, name)
    try:
        st = os.lstat(path)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    fix = ("a staged blob is a regular file, which this module downloads or the models role copies there; remove it "
           "(the blob is staged again)")
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeStaging("%s is a symbolic link (to %s), not a staged blob, and is not followed: %s"
                            % (path, _link_target(path), fix))
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeStaging("%s is %s, not a staged blob, and is not opened: %s" % (path, kind(st.st_mode), fix))
    if st.st_nlink != 1:
        raise UnsafeStaging("%s is a hard link (the same file has %d names), not a staged blob, and is not read: %s"
                            % (path, st.st_nlink, fix))
    try:
        fd = os.open(path, FILE_FLAGS)
    except OSError as exc:  # a link (ELOOP) or nothing, put there since the lstat
        raise UnsafeStaging("%s was replaced while it was being opened (%s); run again" % (path, exc.strerror))
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(now.st_mode) or now.st_nlink != 1:
            raise UnsafeStaging("%s was replaced while it was being opened; run again" % path)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
