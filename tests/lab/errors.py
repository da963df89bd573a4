"""The lab's one kind of expected failure, and the checks that turn a missing tool or a full disk into one.

A LabError is shown to the user as one line that says what failed and what to do, never as a traceback: the
entry points (`python3 -m tests.lab ...`) print it, and the test fixtures fail with it.
"""
import errno
import os
import shutil


class LabError(Exception):
    """An expected failure of the lab's set-up, with what to do about it."""


def need_tools(*tools):
    """Fail unless every (command, Debian package) is on PATH."""
    missing = [(cmd, pkg) for cmd, pkg in tools if not shutil.which(cmd)]
    if missing:
        raise LabError("%s not found: install %s (apt-get install %s), or run `make deps`"
                       % (", ".join(c for c, _p in missing), "the package" if len(missing) == 1 else "the packages",
                          " ".join(sorted({p for _c, p in missing}))))


def need_space(path, needed, what):
    """Fail unless the file system holding `path` has `needed` bytes free for `what`."""
    probe = path
    while not os.path.exists(probe):
        probe = os.path.dirname(probe) or "/"
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise LabError("%s needs about %.1f GB free in %s, but only %.1f GB are: free some space there, or point "
                       "LAB_CACHE at a bigger disk" % (what, needed / 1e9, probe, free / 1e9))


def disk_full(exc, where, what):
    """A LabError for an OSError that is a full disk (else None)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return LabError("%s: the disk holding %s is full. Free some space there (or point LAB_CACHE at a bigger "
                        "disk) and run again; nothing half-made is kept" % (what, where))
    return None
