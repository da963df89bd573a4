# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reaching a file in a user's directory, as root, without going through anything the user placed there.

The walk starts at /. Above the anchor (the user's home, or the file's own directory when the file is not under
the home), a symbolic link is followed only when root owns it and the directory that holds it, and no one else can
write that directory (the system's own links, such as /home -> /var/home). From the anchor down, each directory is
opened relative to the one before with O_NOFOLLOW | O_DIRECTORY: no link is ever followed there. Every directory
on the way must be owned by the user or by root, but the file's own directory, which the caller checks or gives to
the user. A missing directory from the anchor down is made with mkdir relative to its parent, then given its owner
and mode through a descriptor opened with O_NOFOLLOW, never by path.

The file itself is examined with lstat relative to its directory, and opened (O_NOFOLLOW | O_NONBLOCK, so that a
FIFO never blocks) only when it is a regular file with a single link, and checked again on the descriptor. It is
replaced atomically: a new file made with O_EXCL in the same directory, given its owner and mode on its descriptor,
synced, then renamed over the old one, which is never written to.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import errno
import grp
import os
import pwd
import stat

CLOEXEC = getattr(os, "O_CLOEXEC", 0)
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | CLOEXEC
NEW_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | CLOEXEC
MAX_HOPS = 40


class Refused(Exception):
    """A path the walk does not go through: `path` is `found` (a phrase such as "a symbolic link (to /etc)")."""

    def __init__(self, path, found, advice="remove it", placed=True):
        super(Refused, self).__init__("%s is %s" % (path, found))
        self.path, self.found, self.advice, self.placed = path, found, advice, placed


def account_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_name(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def kind(mode):
    """What a stat mode is, as a phrase."""
    for test, phrase in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"), (stat.S_ISREG, "a file"),
                         (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                         (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return phrase
    return "not a file"


def type_name(mode):
    """The type as ollama_state names it: file, directory, link or other."""
    return ("link" if stat.S_ISLNK(mode) else "directory" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode)
            else "other")


def described(dir_fd, name, st):
    """A phrase for what is at `name`: its kind, and where a link points."""
    if stat.S_ISLNK(st.st_mode):
        try:
            return "a symbolic link (to %s)" % os.readlink(name, dir_fd=dir_fd)
        except OSError:
            return "a symbolic link"
    return kind(st.st_mode)


def join(folder, name):
    return folder.rstrip("/") + "/" + name


def components(path):
    return [part for part in path.split("/") if part]


def normalized(path):
    """An absolute path without . or .. or doubled slashes (its text only: nothing is resolved)."""
    if not path.startswith("/"):
        raise ValueError("%s is not an absolute path" % path)
    return "/" + "/".join(components(os.path.normpath(path)))


def anchor_of(path, root):
    """The directory the strict walk starts from: `root` when `path` is below it, else the path's own directory."""
    path, root = normalized(path), normalized(root)
    if path != root and (root == "/" or path.startswith(root + "/")):
        return root
    return os.path.dirname(path)


def _trusted_link(dir_st, link_st):
    """A link above the anchor is followed only when root owns it and its directory, which only root can write."""
    return link_st.st_uid == 0 and dir_st.st_uid == 0 and not dir_st.st_mode & 0o022


class Parent(object):
    """The directory a file is in, as reached: `fd` (None when it is missing and was not made), `path`, `name` (the
    file's name in it), `stat` (the directory's), `made` (directories made) and `missing` (directories that would
    be made)."""

    def __init__(self):
        self.fd, self.path, self.name, self.stat, self.made, self.missing = None, "/", None, None, [], []

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _close(fd):
    if fd is not None:
        os.close(fd)


def owned(where, st, uid):
    """Refused unless the directory at `where` (stat `st`) is owned by uid or root."""
    if st.st_uid not in (0, uid):
        raise Refused(where, "owned by %s, not by %s or root" % (account_name(st.st_uid), account_name(uid)),
                      "give it to %s or remove it" % account_name(uid), placed=False)


def _above(todo, uid):
    """Walk the directories above the anchor from /; returns (fd, path) of the last."""
    fd, where, hops = os.open("/", DIR_FLAGS), "/", 0
    try:
        while todo:
            name = todo.pop(0)
            if name in ("", "."):
                continue
            if name == "..":
                up = os.open("..", DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd, where = up, os.path.dirname(where) or "/"
                continue
            here = join(where, name)
            try:
                nfd = os.open(name, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    raise Refused(here, "missing", "make it (the directories above a user's home are not made here)",
                                  placed=False)
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if not (stat.S_ISLNK(st.st_mode) and _trusted_link(os.fstat(fd), st)):
                    raise Refused(here, described(fd, name, st) if stat.S_ISLNK(st.st_mode) else
                                  "%s, not a directory" % described(fd, name, st))
                hops += 1
                if hops > MAX_HOPS:
                    raise Refused(here, "a chain of more than %d links" % MAX_HOPS)
                target = os.readlink(name, dir_fd=fd)
                if target.startswith("/"):
                    top = os.open("/", DIR_FLAGS)
                    os.close(fd)
                    fd, where = top, "/"
                todo[:0] = target.split("/")
                continue
            try:
                owned(here, os.fstat(nfd), uid)
            except Refused:
                os.close(nfd)
                raise
            os.close(fd)
            fd, where = nfd, here
        return fd, where
    except BaseException:
        os.close(fd)
        raise


def walk(path, root, uid, gid, make_mode=None, made=None):
    """Reach the directory of `path` (see the module's docstring). `make_mode`: make missing directories from the
    anchor down, owned by uid:gid with that mode; None: make nothing (check mode, a look), and return the Parent
    with `fd` None and the directories that would be made in `missing`. Refused for anything unsafe on the way;
    the directories made before are in `made` (a list the caller gives). The caller closes the Parent."""
    path = normalized(path)
    anchor = anchor_of(path, root)
    parts = components(anchor)
    strict = parts[-1:] + components(path)[len(parts):-1]
    parent = Parent()
    parent.name = os.path.basename(path)
    if made is not None:
        parent.made = made
    fd, where = _above(parts[:-1], uid)
    try:
        if not strict:  # the anchor is /
            parent.fd, parent.path, parent.stat, fd = fd, "/", os.fstat(fd), None
            return parent
        for index, name in enumerate(strict):
            here = join(where, name)
            fresh = False
            try:
                nfd = os.open(name, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    if make_mode is None:
                        parent.missing = [join(where, "/".join(strict[index:j + 1])) for j in range(index, len(strict))]
                        parent.path = join(where, "/".join(strict[index:]))
                        return parent
                    nfd, fresh = _make(fd, name, here, uid, gid, make_mode)
                    if fresh:
                        parent.made.append(here)
                elif exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    found = described(fd, name, st)
                    raise Refused(here, found if stat.S_ISLNK(st.st_mode) else "%s, not a directory" % found)
                else:
                    raise
            st = os.fstat(nfd)
            if not fresh and index < len(strict) - 1:
                try:
                    owned(here, st, uid)
                except Refused:
                    os.close(nfd)
                    raise
            os.close(fd)
            fd, where = nfd, here
        parent.fd, parent.path, parent.stat, fd = fd, where, os.fstat(fd), None
        return parent
    finally:
        _close(fd)


def _make(fd, name, here, uid, gid, mode):
    """mkdir relative to `fd`, then owner and mode on a descriptor opened without following a link. Returns (fd,
    made): what was there already (put there meanwhile) is opened, and left as it is, not given to uid."""
    try:
        os.mkdir(name, 0o700, dir_fd=fd)
        made = True
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise
        made = False
    try:
        nfd = os.open(name, DIR_FLAGS, dir_fd=fd)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        raise Refused(here, "%s, put there while it was being made" % described(
            fd, name, os.stat(name, dir_fd=fd, follow_symlinks=False)))
    if made and os.fstat(nfd).st_uid == os.geteuid():  # the folder this walk made, not one put there meanwhile
        try:
            os.fchown(nfd, uid, gid)
            os.fchmod(nfd, mode)
        except BaseException:
            os.close(nfd)
            raise
        return nfd, True
    return nfd, False


def attributes(st):
    return dict(owner=account_name(st.st_uid), group=group_name(st.st_gid), mode="%04o" % stat.S_IMODE(st.st_mode))


def lstat(parent):
    """The lstat of the file in its directory, or None when it is not there (or its directory is missing)."""
    if parent.fd is None:
        return None
    try:
        return os.stat(parent.name, dir_fd=parent.fd, follow_symlinks=False)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise


def read(parent):
    """(stat, content) of the file, or None when it is not there. Refused for anything but a regular file with one
    link; a FIFO, socket or device is never opened, and the descriptor is checked to be what lstat saw."""
    st = lstat(parent)
    if st is None:
        return None
    path = join(parent.path, parent.name)
    if not stat.S_ISREG(st.st_mode):
        raise Refused(path, described(parent.fd, parent.name, st))
    if st.st_nlink > 1:
        raise Refused(path, "a hard link (the same file has %d names)" % st.st_nlink)
    fd = os.open(parent.name, FILE_FLAGS, dir_fd=parent.fd)
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(now.st_mode) or now.st_nlink > 1:
            raise Refused(path, "replaced while it was being read")
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
        return now, b"".join(chunks)
    finally:
        os.close(fd)


def replace(parent, data, uid, gid, mode, backup=None, old=None):
    """Write `data` as the file, atomically, owned by uid:gid with `mode`. With `backup` (a name in the same
    directory), the old file (whose stat is `old`) is first linked there, so it keeps its owner, mode and content."""
    tmp = ".%s.%s.tmp" % (parent.name, binascii.hexlify(os.urandom(6)).decode("ascii"))
    fd = os.open(tmp, NEW_FLAGS, 0o600, dir_fd=parent.fd)
    try:
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if backup:
            os.link(parent.name, backup, src_dir_fd=parent.fd, dst_dir_fd=parent.fd, follow_symlinks=False)
            kept = os.stat(backup, dir_fd=parent.fd, follow_symlinks=False)
            if old is None or (kept.st_dev, kept.st_ino) != (old.st_dev, old.st_ino):
                os.unlink(backup, dir_fd=parent.fd)
                raise Refused(join(parent.path, parent.name), "replaced while it was being read")
        os.rename(tmp, parent.name, src_dir_fd=parent.fd, dst_dir_fd=parent.fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=parent.fd)
        except OSError:
            pass
        raise
    os.fsync(parent.fd)


def fix_directory(parent, uid, gid, mode, write):
    """Give the file's directory uid:gid and `mode` (through its descriptor); returns its attributes before, or None
    when they already match."""
    st = parent.stat
    if (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, gid, mode):
        return None
    if write:
        os.fchown(parent.fd, uid, gid)
        os.fchmod(parent.fd, mode)
    return attributes(st)
