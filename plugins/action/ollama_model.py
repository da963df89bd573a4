# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action of llmops.ollama.ollama_model: the module, plus progress lines on the controller while it pulls.

1. Check mode, `async` on the task, progress_interval 0, or a connection that cannot run a module in the
   background: the module runs once, as the normal action runs it.
2. Otherwise the module first runs in check mode (the probe). When it would change nothing, its result is the
   task's result; when it would only remove models, the module runs again for real, as in 1. When the probe
   failed, its failure is the task's result (a real run fails the same way, and a second run would wait out the
   same timeouts again), except when it failed because this host could not read a model's registry, which a real
   run leaves to the server: then the module runs for real, as in 4 (the pull's size is not known here), told what
   the probe could not read (_registry_unread), so that it does not wait for that registry again.
3. When it would pull only a little (under SMALL_PULL bytes in all, as the probe read them from the registry), the
   module runs again for real, as in 1: such a pull ends within seconds, before a progress line would be due, and
   the async path costs a few seconds of its own.
4. When it would pull more, the module runs through Ansible's async wrapper with a progress file to write
   (_progress_file). The controller reads that file (and whether the job ended) with one cheap command every second
   or two, prints one line per host every progress_interval seconds, then takes the module's result with
   async_status and removes the job and progress files.
The module's options _progress_file and _registry_unread are this plugin's alone: a task that sets them gets a
warning, and the values are not passed on.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import secrets
import shlex
import time

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible.utils.vars import merge_hash

from ansible_collections.llmops.ollama.plugins.module_utils._progress import (
    done_line,
    progress_line,
    waiting_line,
)

display = Display()

ASYNC_LIMIT = 7 * 86400  # the module fails on its own when the server is silent for `timeout`; this is a backstop
DEFAULT_INTERVAL = 5
MAX_INTERVAL = 10
MAX_POLL_ERRORS = 60  # reads of the host's files that may fail in a row (a second apart) before the task fails
POLL_EVERY = 2.0  # at most this long between two reads of the host's files
PULL_ACTIONS = ("pulled", "updated")
ASYNC_KEYS = ("ansible_job_id", "finished", "started", "results_file")
MARK = "--llmops-ollama-progress--"
SMALL_PULL = 8 << 20  # bytes to download in all under which a pull runs without progress lines
# the module's options that only this plugin sets (undocumented): a value given in the task is not passed on
INTERNAL_OPTIONS = ("_progress_file", "_registry_unread")


class ActionModule(ActionBase):

    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        self._args = self._task_args()
        interval = self._interval()
        if (self._task.check_mode or self._task.async_val or not interval or self._connection.has_native_async
                or self._connection.always_pipeline_modules):
            return self._plain(result, task_vars)

        probe = self._run_module(task_vars, check_mode=True)
        if probe.get("failed"):
            unread = probe.get("registry_unread")
            if isinstance(unread, dict) and unread:
                # this host cannot read the registry, the server may: it pulls, of a size not known here
                args = dict(self._args, _registry_unread=unread)
                return merge_hash(result, self._with_progress(task_vars, interval, sorted(unread), args))
            self._remove_tmp_path(self._connection._shell.tmpdir)
            return merge_hash(result, probe)
        steps = [m for m in probe.get("models") or [] if m.get("action") in PULL_ACTIONS]
        sizes = [m.get("bytes") for m in steps]
        if steps and all(isinstance(n, int) for n in sizes) and sum(sizes) < SMALL_PULL:
            return self._plain(result, task_vars)
        if steps:
            return merge_hash(result, self._with_progress(task_vars, interval, [m.get("name") for m in steps]))
        if probe.get("changed"):
            return self._plain(result, task_vars)  # removals only: quick, no progress to show
        self._remove_tmp_path(self._connection._shell.tmpdir)
        return merge_hash(result, probe)  # what a real run would return: nothing to do

    # -- the two ways to run the module ------------------------------------------------------------------------
    def _task_args(self):
        """The task's arguments for the module, without the options only this plugin sets."""
        given = sorted(k for k in self._task.args if k in INTERNAL_OPTIONS)
        if given:
            display.warning("ollama_model: %s: set by the collection's action plugin only, not by a task; ignored"
                            % ", ".join(given))
        return dict((k, v) for k, v in self._task.args.items() if k not in INTERNAL_OPTIONS)

    def _interval(self):
        """progress_interval from the task, or None when it is not valid (the module then says why)."""
        value = self._task.args.get("progress_interval", DEFAULT_INTERVAL)
        try:
            value = int(value)
        except (TypeError, ValueError):
            return None
        return value if 0 <= value <= MAX_INTERVAL else None

    def _run_module(self, task_vars, check_mode=None, module_args=None, wrap_async=False):
        saved = self._task.check_mode
        if check_mode is not None:
            self._task.check_mode = check_mode
        try:
            return self._execute_module(module_name=self._task.action, task_vars=task_vars,
                                        module_args=dict(self._args if module_args is None else module_args),
                                        wrap_async=wrap_async)
        finally:
            self._task.check_mode = saved

    def _plain(self, result, task_vars, module_args=None):
        """The module run once, as the normal action runs a module (async included)."""
        wrap_async = bool(self._task.async_val) and not self._connection.has_native_async
        result = merge_hash(result, self._run_module(task_vars, module_args=module_args, wrap_async=wrap_async))
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result

    def _with_progress(self, task_vars, interval, pulls, module_args=None):
        host = task_vars.get("inventory_hostname") or self._play_context.remote_addr or "host"
        async_dir = self.get_shell_option("async_dir", default="~/.ansible_async")
        name = "llmops-ollama-pull-%s.json" % secrets.token_hex(8)
        args = dict(self._args if module_args is None else module_args)
        args["_progress_file"] = "%s/%s" % (async_dir.rstrip("/"), name)
        saved = self._task.async_val
        self._task.async_val = ASYNC_LIMIT  # what the async wrapper is given as its time limit
        try:
            started = self._run_module(task_vars, module_args=args, wrap_async=True)
        finally:
            self._task.async_val = saved
        jid, job = started.get("ansible_job_id"), started.get("results_file")
        if started.get("failed") or not jid or not job:
            return started
        job_dir = job.rsplit("/", 1)[0]
        progress = "%s/%s" % (job_dir, name)  # _progress_file, with the async directory as the host expanded it
        # if this is interrupted, the module goes on to its end on the host (or is stopped with it), and removes
        # its progress file; only Ansible's job file is left, as for any async task given up on
        self._follow(host, job, progress, interval, pulls)
        result = self._execute_module(module_name="ansible.legacy.async_status", task_vars=task_vars,
                                      module_args=dict(jid=jid, _async_dir=job_dir))
        self._low_level_execute_command("rm -f %s %s" % (shlex.quote(job), shlex.quote(progress)))
        self._remove_tmp_path(self._connection._shell.tmpdir)
        ended = result.get("finished")
        for key in ASYNC_KEYS:
            result.pop(key, None)
        if not ended or (result.get("failed") and "models" not in result):
            # not the module's answer: it was killed (a reboot, the OOM killer), or its output could not be read
            why = (result.get("msg") or "").strip().splitlines()[-1:] or ["its process is gone"]
            result = dict(failed=True, changed=False, module_stderr=result.get("stderr") or result.get("data") or "",
                          msg="the ollama_model module on %s ended without a result (%s). The server's store stays "
                              "consistent: run the task again to finish the pull." % (host, why[0]))
        for step in result.get("models") or []:
            if step.get("changed") and step.get("action") in PULL_ACTIONS:
                display.display(done_line(host, step))
        return result

    # -- following the job -------------------------------------------------------------------------------------
    def _follow(self, host, job, progress, interval, pulls):
        """Print a line every `interval` seconds until the job's file says it ended."""
        begun = time.time()
        next_line = begun + min(interval, 2)
        pid, dead, errors, seen = None, 0, 0, False
        while True:
            wait = max(0.0, min(POLL_EVERY, next_line - time.time()))
            try:
                running, state, alive = self._poll(job, progress, wait, pid)
                errors = 0
            except AnsibleError as exc:
                # a connection that bounces during a long pull is not the pull's failure: try again for a while
                errors += 1
                if errors > MAX_POLL_ERRORS:
                    raise
                display.vvvv("ollama_model: reading the progress on %s failed, retrying: %s" % (host, exc))
                time.sleep(1)
                continue
            if not running:
                return
            now = time.time()
            if state:
                pid, seen = state.get("pid"), True
            elif seen:  # the module removed its progress file: its pulls are over, it is ending
                next_line = max(next_line, now + interval / 2.0)
                continue
            dead = dead + 1 if alive is False else 0
            if dead >= 3:  # the module is gone, and nothing wrote its result: async_status will say what it found
                return
            if now >= next_line - 0.05:
                display.display(progress_line(host, state) if state else waiting_line(host, pulls, now - begun))
                next_line = max(next_line + interval, now + interval / 2.0)

    def _poll(self, job, progress, wait, pid):
        """One command on the host: wait up to `wait` seconds for the job to end, then read the progress file.

        Returns (running, progress state or None, whether the module's process is alive or None when unknown).
        """
        job_q, progress_q = shlex.quote(job), shlex.quote(progress)
        # the async wrapper's job file while the module runs: "finished": false (ansible-core 2.19 and later) or
        # "finished": 0 (2.16 to 2.18); then the module's result replaces it
        running = "grep -qE '\"finished\": (false|0)([^0-9]|$)' %s 2>/dev/null" % job_q
        steps = int(wait / 0.25)
        cmd = ("i=0; while [ $i -lt %d ] && %s; do sleep 0.25 2>/dev/null || sleep 1; i=$((i+1)); done; "
               "if %s; then echo running; else echo ended; fi; echo %s; " % (steps, running, running, MARK))
        if pid:
            cmd += "kill -0 %d 2>/dev/null && echo alive || echo gone; " % int(pid)
        cmd += "echo %s; cat %s 2>/dev/null; true" % (MARK, progress_q)
        res = self._low_level_execute_command(cmd, sudoable=True)
        # over SSH with a tty (become) lines end in \r\n
        parts = (res.get("stdout") or "").replace("\r\n", "\n").split(MARK + "\n")
        if res.get("rc") != 0 or len(parts) != 3:
            raise AnsibleError("unexpected answer to the progress read: %r" % res)
        alive = {"alive": True, "gone": False}.get(parts[1].strip())
        try:
            state = json.loads(parts[2]) if parts[2].strip() else None
        except ValueError:
            state = None  # never half-written (it is renamed into place); this is not our file then
        return parts[0].strip().endswith("running"), state if isinstance(state, dict) else None, alive
