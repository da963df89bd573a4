# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Progress of a model pull: written on the managed host by ollama_model, read and shown on the controller.

The module feeds every event of Ollama's /api/pull stream to a ProgressFile, which writes the pull's state as JSON
to a file about once a second (atomically: temporary file, then rename; mode 0600). The collection's action plugin
reads that file while the module runs asynchronously and prints progress_line() for each host. Both sides import
this file, so the format is defined once.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import tempfile
import time

WRITE_EVERY = 1.0  # seconds between two writes of the file
RATE_WINDOW = 5.0  # the rate is computed over this many seconds


class ProgressFile(object):
    """The state of the pull in progress, kept in `path` (a JSON object; see state())."""

    def __init__(self, path, clock=time.time):
        self.path = path
        self.clock = clock
        self.error = None  # why the file could not be written; nothing more is tried then
        self.written = False  # whether the file at `path` is this object's: only then is it replaced and removed
        if os.path.lexists(path):
            # the action plugin gives a new name each run: a file already there is someone else's, left as it is
            self.error = "the file exists already, and is left as it is (a progress file is always a new one)"
        self.model = None
        self.index = self.count = 0
        self.size = 0
        self.status = ""
        self.layers = {}
        self.samples = []
        self.started = self.last_write = 0.0

    def start(self, model, index, count, size=None):
        """A new pull begins: model `index` (1-based) of `count`, of `size` bytes when the registry said so."""
        self.model, self.index, self.count, self.size = model, index, count, int(size or 0)
        self.status = "starting"
        self.layers = {}  # digest -> [completed when first seen, total, completed]
        self.started = self.clock()
        self.samples = [(self.started, 0)]
        self.write()

    def __call__(self, event):
        """One event of the pull stream."""
        self.status = event.get("status") or self.status
        digest = event.get("digest")
        if digest and "total" in event:
            total, completed = int(event.get("total") or 0), int(event.get("completed") or 0)
            entry = self.layers.setdefault(digest, [completed, total, completed])
            entry[1], entry[2] = total, max(completed, entry[2])
        if self.clock() - self.last_write >= WRITE_EVERY:
            self.write()

    def state(self):
        now = self.clock()
        seen_total = sum(total for _first, total, _last in self.layers.values())
        completed = sum(min(last, total) for _first, total, last in self.layers.values())
        fetched = sum(max(last - first, 0) for first, _total, last in self.layers.values())
        self.samples.append((now, fetched))
        while len(self.samples) > 2 and now - self.samples[1][0] >= RATE_WINDOW:
            self.samples.pop(0)
        then, fetched_then = self.samples[0]
        rate = int((fetched - fetched_then) / (now - then)) if now - then >= 0.5 else 0
        return dict(model=self.model, index=self.index, count=self.count, status=self.status,
                    completed=completed, total=max(self.size, seen_total), rate=max(rate, 0),
                    started=self.started, time=now, pid=os.getpid())

    def write(self):
        if self.error or not self.model:
            return
        self.last_write = self.clock()
        data = json.dumps(self.state(), sort_keys=True)
        directory = os.path.dirname(self.path) or "."
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=".progress-", dir=directory)  # mode 0600
            with os.fdopen(fd, "w") as f:
                f.write(data)
            os.rename(tmp, self.path)
            self.written = True
        except (OSError, IOError) as exc:
            self.error = str(exc)
            if tmp:
                _unlink(tmp)

    def close(self):
        if self.written:
            _unlink(self.path)


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def human_bytes(size):
    """1000-based, as Ollama and Codex show sizes: 512 B, 1.2 MB, 48.3 GB."""
    size = float(size or 0)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            return ("%d %s" % (size, unit)) if unit == "B" else ("%.1f %s" % (size, unit))
        size /= 1000
    return "?"  # pragma: no cover


def duration(seconds):
    """0:31, 12:05, 1:02:03."""
    seconds = int(round(max(seconds, 0)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return ("%d:%02d:%02d" % (hours, minutes, seconds)) if hours else ("%d:%02d" % (minutes, seconds))


def _which(state):
    if state.get("count", 0) > 1:
        return "%s (%d/%d)" % (state.get("model"), state.get("index", 0), state["count"])
    return str(state.get("model"))


def progress_line(host, state):
    """`lab1: pulling llama3.2:3b 45% 1.2 GB/2.7 GB 48.3 MB/s ETA 0:31` from a state() read back."""
    total, completed, rate = state.get("total") or 0, state.get("completed") or 0, state.get("rate") or 0
    if total <= 0:
        elapsed = max(state.get("time", 0) - state.get("started", 0), 0)
        return "%s: pulling %s: %s (%s)" % (host, _which(state), state.get("status") or "starting", duration(elapsed))
    completed = min(completed, total)
    if completed >= total:
        eta = "0:00"
    elif rate > 0:
        eta = duration((total - completed) / float(rate))
    else:
        eta = "-:--"
    return "%s: pulling %s %d%% %s/%s %s/s ETA %s" % (
        host, _which(state), int(100 * completed // total), human_bytes(completed), human_bytes(total),
        human_bytes(rate), eta)


def waiting_line(host, models, seconds):
    """What is shown before the module reports progress (it is starting, or reading the registry)."""
    return "%s: pulling %s: starting (%s)" % (host, ", ".join(models) or "models", duration(seconds))


def done_line(host, step):
    """`lab1: pulled llama3.2:3b 100% 2.7 GB in 0:56, 48.1 MB/s` from one entry of the module's `models`."""
    size = step.get("size") or step.get("bytes") or 0
    return "%s: %s %s 100%% %s in %s, %s/s" % (host, step.get("action"), step.get("name"), human_bytes(size),
                                               duration(step.get("seconds") or 0), human_bytes(step.get("rate") or 0))
