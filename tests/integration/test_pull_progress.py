"""Progress of long pulls on the controller, as a user watching ansible-playbook sees it.

A real `ollama serve` pulls a 40 MB synthetic model from the lab registry, whose front is throttled to 1.6 MB/s
(its `rate` knob), so the pull takes about 25 s. ansible-playbook's output is read line by line as it comes, with
the time each line arrived: the progress lines must come at least every 10 s, from at most 10 s after the task
starts, with a percentage that only grows, the model's size as the registry has it, a rate and a time left. A run
with nothing to pull, and check mode, print no progress line; a pull that fails fails with the module's message.
"""
import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.lab import faults, models
from tests.lab.ansible_run import ansible_env
from tests.lab.ollama_server import OllamaServer
from tests.lab.paths import REPO

MB = 1000 * 1000
SIZE = 40 * MB  # model layer: about 25 s at RATE
RATE = 1.6 * MB
UNITS = {"B": 1, "KB": 1000, "MB": MB, "GB": 1000 * MB, "TB": 1000 * 1000 * MB}
SIZE_TEXT = r"[0-9.]+ (?:B|KB|MB|GB|TB)"
PROGRESS = re.compile(r"^localhost: pulling (?P<model>\S+) (?P<percent>\d+)%% (?P<done>%s)/(?P<total>%s) "
                      r"(?P<rate>%s)/s ETA (?P<eta>\S+)$" % (SIZE_TEXT, SIZE_TEXT, SIZE_TEXT))
PULLED = re.compile(r"^localhost: pulled (?P<model>\S+) 100%% (?P<size>%s) in \d+:\d\d, (?P<rate>%s)/s$"
                    % (SIZE_TEXT, SIZE_TEXT))
ANY_PROGRESS = re.compile(r"^localhost: pull(ing|ed) ")

PLAY = """---
- name: A model on the server
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Pull
      llmops.ollama.ollama_model:
        base_url: "{{ url }}"
        name: "{{ model }}"
        insecure: true
        progress_interval: "{{ interval | default(omit) }}"
"""

# the module's internal options, which only the action plugin sets, set by hand
BY_HAND_PLAY = PLAY + """        _progress_file: "{{ progress_file }}"
        _registry_unread: "{{ {model: 'made up by hand'} }}"
"""


def size_of(text):
    number, unit = text.split()
    return float(number) * UNITS[unit]


# Ansible's async directory of these runs: their own, so runs of other tests on the machine do not show in it
ASYNC_DIR = Path(tempfile.mkdtemp(prefix="progress-async-"))


class Run:
    """ansible-playbook, its output read line by line as it is printed, each line with the second it arrived."""

    def __init__(self, play, extra_vars, args=()):
        cmd = ["ansible-playbook", "-i", "localhost,", "-c", "local", "-e",
               "ansible_python_interpreter=%s" % sys.executable, "-e", json.dumps(extra_vars), str(play)] + list(args)
        self.started = time.time()
        self.proc = subprocess.Popen(cmd, cwd=str(REPO), env=ansible_env({"ANSIBLE_ASYNC_DIR": str(ASYNC_DIR)}),
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, universal_newlines=True, bufsize=1)
        self.lines = []  # (seconds since start, line)

    def lines_until(self, pattern, timeout=60):
        """Read until a line matches `pattern`; returns its arrival time."""
        deadline = time.time() + timeout
        for line in self.proc.stdout:
            self.lines.append((time.time() - self.started, line.rstrip("\n")))
            if re.search(pattern, line):
                return self.lines[-1][0]
            assert time.time() < deadline, self.output
        raise AssertionError("no %r in:\n%s" % (pattern, self.output))

    def finish(self, timeout=120):
        for line in self.proc.stdout:
            self.lines.append((time.time() - self.started, line.rstrip("\n")))
        self.rc = self.proc.wait(timeout)
        return self

    @property
    def output(self):
        return "\n".join("%6.2f %s" % (t, line) for t, line in self.lines)

    def recap(self):
        from tests.lab.ansible_run import recap
        return recap("\n".join(line for _t, line in self.lines))["localhost"]

    def task_started(self):
        return [t for t, line in self.lines if line.startswith("TASK [Pull]")][0]

    def progress(self):
        return [(t, line) for t, line in self.lines if ANY_PROGRESS.match(line)]


@pytest.fixture(scope="module")
def play(tmp_path_factory):
    path = tmp_path_factory.mktemp("progress") / "pull.yml"
    path.write_text(PLAY)
    return path


@pytest.fixture(scope="module")
def server():
    """A server of this module's own, with an empty store."""
    srv = OllamaServer().start()
    yield srv
    srv.cleanup()


@pytest.fixture(scope="module")
def big(registry):
    """(name to pull, manifest digest hex, size of all its blobs as the registry has them)."""
    manifest, blobs = models.build("progress/big:latest", 1, SIZE)
    digest = models.push(registry.url, "progress/big", "latest", manifest, blobs)
    return "%s/progress/big:latest" % registry.address, digest.split(":", 1)[1], sum(len(b) for b in blobs.values())


def set_knobs(registry, **knobs):
    req = urllib.request.Request(registry.url + "/_lab/stats", data=json.dumps(knobs).encode(), method="PUT")
    urllib.request.urlopen(req, timeout=10).close()


@pytest.fixture
def throttle(registry):
    """Slow the registry's blobs to RATE for this test only."""
    set_knobs(registry, rate=RATE)
    yield RATE
    set_knobs(registry, rate=0)


def tags(srv):
    return {m["name"]: m["digest"] for m in faults.http_tags(srv.url)()}


def async_dir_files():
    return sorted(p.name for p in ASYNC_DIR.glob("*"))


def test_a_long_pull_shows_its_progress(server, big, throttle, play):
    name, digest, size = big
    jobs_before = async_dir_files()
    run = Run(play, dict(url=server.url, model=name)).finish()
    assert run.rc == 0, run.output
    assert run.recap()["changed"] == 1, run.output
    assert tags(server)[name] == digest

    start = run.task_started()
    shown = run.progress()
    lines = [(t, PROGRESS.match(line)) for t, line in shown if PROGRESS.match(line)]
    record = "progress lines at %s s after the task began" % ", ".join("%.1f" % (t - start) for t, _l in shown)
    assert len(lines) >= 3, run.output
    assert shown[-1][0] - shown[0][0] >= 15, "the throttle did not slow the pull: " + record
    # while it pulls, a line at least every 5 s (the interval, and the time of one read of the progress file); the
    # last line comes after the module's end and an async_status run, which a busy machine makes seconds longer
    while_pulling = shown[:-1]
    gaps = [b[0] - a[0] for a, b in zip(while_pulling, while_pulling[1:])]
    assert max(gaps) <= 10, record
    assert all(m.group("model") == name for _t, m in lines), run.output
    percents = [int(m.group("percent")) for _t, m in lines]
    # only growing, from the first half of the pull (the first line comes early in it, whatever the time two module
    # runs took before it began) to its last seconds (at most 16 MB, 10 s, short of the end)
    assert percents == sorted(percents) and percents[0] < 50 and percents[-1] >= 60, percents
    for _t, m in lines:
        # the registry's size of the whole model (its three blobs), from the first line on
        assert abs(size_of(m.group("total")) - size) <= 0.05 * MB, (m.group(0), size)
        assert size_of(m.group("done")) <= size_of(m.group("total"))
    # the rate is the throttle's: the typical line's (a busy machine may stall the stream for a moment, and a line
    # after a stall shows a burst), and the mean of the whole pull, which the throttle bounds whatever the load;
    # each ETA is what is left at the rate shown
    rates = sorted(size_of(m.group("rate")) for _t, m in lines[1:])
    assert rates[-1] <= 2 * RATE and 0.5 * RATE <= rates[len(rates) // 2] <= 1.5 * RATE, record
    for _t, m in lines[1:]:
        assert re.match(r"^\d+:\d\d$", m.group("eta")), m.group(0)
        eta = int(m.group("eta").split(":")[0]) * 60 + int(m.group("eta").split(":")[1])
        left = (size_of(m.group("total")) - size_of(m.group("done"))) / size_of(m.group("rate"))
        assert abs(eta - left) <= 2 + 0.1 * left, m.group(0)
    done = PULLED.match(shown[-1][1])  # and the last line says 100%, when the pull is over
    assert done and done.group("model") == name, run.output
    assert abs(size_of(done.group("size")) - size) <= 0.05 * MB
    assert 0.3 * RATE <= size_of(done.group("rate")) <= 1.05 * RATE, done.group(0)
    # nothing left behind in Ansible's async directory: neither the job's file nor the progress file
    assert async_dir_files() == jobs_before

    again = Run(play, dict(url=server.url, model=name)).finish()
    assert again.rc == 0 and again.recap()["changed"] == 0, again.output
    assert again.progress() == [], again.output

    check = Run(play, dict(url=server.url, model=name), args=["--check"]).finish()
    assert check.rc == 0 and check.recap()["changed"] == 0, check.output
    assert check.progress() == [], check.output


def test_check_mode_and_interval_zero_print_no_progress(server, registry, play):
    small = "%s/lab/small:latest" % registry.address
    check = Run(play, dict(url=server.url, model=small), args=["--check"]).finish()
    assert check.rc == 0 and check.recap()["changed"] == 1, check.output  # a pull is due, and not done
    assert check.progress() == [], check.output
    assert small not in tags(server)

    quiet = Run(play, dict(url=server.url, model=small, interval=0)).finish()
    assert quiet.rc == 0 and quiet.recap()["changed"] == 1, quiet.output
    assert quiet.progress() == [], quiet.output
    assert small in tags(server)

    wrong = Run(play, dict(url=server.url, model=small, interval=11)).finish()
    assert wrong.rc != 0
    (_host, failure), = faults.failed_results("\n".join(line for _t, line in wrong.lines))
    assert failure["msg"] == "progress_interval must be from 0 (no progress lines) to 10 seconds, got 11"


def test_a_failing_pull_fails_with_the_modules_message(server, big, registry, throttle, play):
    """The server dies in the middle of the pull (the module runs as an async job), or the model is not in the
    registry (the probe fails, and its failure is the task's, as a real run's would be): the task fails with the
    module's own message, as it did without progress lines."""
    name, _digest, _size = big
    with OllamaServer() as srv:
        run = Run(play, dict(url=srv.url, model=name))
        run.lines_until(PROGRESS.pattern)
        srv.proc.kill()
        srv.proc.wait()
        run.finish()
    text = "\n".join(line for _t, line in run.lines)
    assert run.rc != 0
    (_host, failure), = faults.failed_results(text)
    assert failure["msg"].startswith("pulling %s: " % name), failure["msg"]
    assert "run again to finish the pull" in failure["msg"], failure["msg"]
    # issue 13 item 7: a failed pull is no pull (this line used to assert action == "pulled")
    assert failure["changed"] is False and failure["models"][0]["action"] == "none", failure
    assert failure["models"][0]["digest_after"] is None and "run again" in failure["models"][0]["error"], failure
    assert "async" not in failure["msg"].lower() and "Traceback" not in text, text

    missing = "%s/lab/nope:1" % registry.address
    run = Run(play, dict(url=server.url, model=missing)).finish()
    text = "\n".join(line for _t, line in run.lines)
    (_host, failure), = faults.failed_results(text)
    assert failure["msg"].startswith("model '%s' is not in its registry" % missing), failure["msg"]
    assert "async" not in failure["msg"].lower() and "Traceback" not in text, text


def test_internal_options_set_by_hand_are_ignored(big, tmp_path):
    """_progress_file and _registry_unread are the action plugin's: a task that sets them gets a warning, the pull
    runs as without them (its own progress file, the registry read), and the file named is left as it was."""
    name, digest, _size = big
    kept = tmp_path / "not-a-progress-file.txt"
    kept.write_text("keep")
    play = tmp_path / "by-hand.yml"
    play.write_text(BY_HAND_PLAY)
    jobs_before = async_dir_files()
    with OllamaServer() as srv:
        run = Run(play, dict(url=srv.url, model=name, interval=1, progress_file=str(kept))).finish()
        assert run.rc == 0 and run.recap()["changed"] == 1, run.output
        assert tags(srv)[name] == digest
        check = Run(play, dict(url=srv.url, model=name, progress_file=str(kept)), args=["--check"]).finish()
        assert check.rc == 0 and check.recap()["changed"] == 0, check.output
    text = " ".join(" ".join(line for _t, line in run.lines).split())  # warnings may be wrapped before 2.19
    assert "ollama_model: _progress_file, _registry_unread: set by the collection's action plugin only, not by a " \
           "task; ignored" in text, run.output
    assert "made up by hand" not in text and "could not read the registry" not in text, run.output
    assert [line for _t, line in run.lines if PULLED.match(line)], run.output
    assert kept.read_text() == "keep" and sorted(p.name for p in tmp_path.iterdir()) == [
        "by-hand.yml", "not-a-progress-file.txt"]
    assert async_dir_files() == jobs_before
