"""Faults on demand for the fault-tolerance tests (issue 6 part 3). Each helper makes one real fault.

- FaultProxy: a TCP proxy in front of a registry that can slow blob bytes down (a slow link, so a pull takes long
  enough to interrupt), drop connections after some bytes (a link that drops mid-blob), or accept connections and
  never answer (a registry that hangs). It forwards bytes unchanged, so Ollama talks to the real registry behind it.
- small_disk(): a small tmpfs, to be the models store of a server whose disk fills up.
- broken_release(): a release archive for the server role whose bin/ollama passes `--version` but whose `serve`
  exits at once: a deliberately broken build, to exercise the role's rollback.
- Playbook: ansible-playbook in the background, its output followed, killed with SIGKILL at a chosen moment.
- TagWatcher: polls a server's model list during a fault and keeps every list it saw.
- store(): the blobs, partial downloads and manifests of a models store.

Nothing here is a mock: the faults are real sockets, filesystems, processes and signals.
"""
import hashlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from tests.lab.ansible_run import ansible_env, recap
from tests.lab.paths import LAB_CACHE, REPO


class FaultProxy:
    """Forward TCP connections from `listen` to `upstream`, with faults switched on and off at any time.

    rate        bytes per second per connection from the registry to the client (None: full speed)
    drop_after  close a connection once it has carried this many bytes to the client (None: never) ...
    drops       ... for this many connections, then pass everything (None: every connection)
    hang        accept connections and never answer (`hung` counts the connections held so) ...
    hangs       ... for this many connections, then pass everything (None: every connection)
    pause_on    (bytes, seconds): when the bytes to the client contain `bytes`, send what comes after them only
                `seconds` later (in front of `ollama serve`: a silent checksum step after 'verifying sha256 digest');
                `paused` counts the pauses, and `pause_waits` holds, for each paused connection the client closed,
                the seconds from the start of the pause to that close (how long the client waited in the silence)
    """

    def __init__(self, upstream, listen=("127.0.0.1", 0)):
        self.upstream = upstream
        self.rate = None
        self.drop_after = None
        self.drops = None
        self.hang = False
        self.hangs = None
        self.pause_on = None
        self.paused = 0
        self.pause_waits = []
        self.bytes_to_client = 0
        self.dropped = 0
        self.hung = 0
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(listen)
        self._sock.listen(64)
        self._conns = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self):
        host, port = self._sock.getsockname()[:2]
        return "%s:%d" % (host, port)

    @property
    def url(self):
        return "http://" + self.address

    def reset(self):
        self.rate = self.drop_after = self.drops = self.pause_on = self.hangs = None
        self.hang = False
        self.paused = 0
        self.pause_waits = []
        with self._lock:
            self.bytes_to_client = 0
            self.dropped = 0
            self.hung = 0

    def close(self):
        self._stop.set()
        try:
            self._sock.close()
        except OSError:
            pass
        for conn in list(self._conns):
            _close(conn)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _accept(self):
        while not self._stop.is_set():
            try:
                client, _addr = self._sock.accept()
            except OSError:
                return
            self._conns.append(client)
            if self.hang and (self.hangs is None or self.hung < self.hangs):
                with self._lock:
                    self.hung += 1
                continue  # held open, never answered
            try:
                server = socket.create_connection(self.upstream, timeout=10)
                server.settimeout(None)
            except OSError:
                _close(client)
                continue
            self._conns.append(server)
            pause = {}  # when this connection's pause began
            threading.Thread(target=self._pump, args=(client, server, False, pause), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True, pause), daemon=True).start()

    def _pump(self, src, dst, to_client, pause):
        carried = 0
        try:
            while True:
                data = src.recv(16384)
                if not data:
                    if not to_client and "began" in pause:  # the client closed its side
                        with self._lock:
                            self.pause_waits.append(time.monotonic() - pause["began"])
                    break
                if to_client:
                    drop_after = self.drop_after
                    if drop_after is not None and carried + len(data) > drop_after and self._may_drop():
                        dst.sendall(data[: max(drop_after - carried, 0)])
                        break
                    pause_on = self.pause_on
                    if pause_on is not None and pause_on[0] in data:
                        cut = data.index(pause_on[0]) + len(pause_on[0])
                        cut = data.find(b"\n", cut) + 1 or len(data)  # the whole line, then the silence
                        dst.sendall(data[:cut])
                        pause["began"] = time.monotonic()
                        with self._lock:
                            self.paused += 1
                        time.sleep(pause_on[1])
                        data = data[cut:]
                    for i in range(0, len(data), 4096):
                        rate = self.rate
                        dst.sendall(data[i:i + 4096])
                        if rate:
                            time.sleep(len(data[i:i + 4096]) / float(rate))
                    carried += len(data)
                    with self._lock:
                        self.bytes_to_client += len(data)
                else:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            _close(src)
            _close(dst)

    def _may_drop(self):
        with self._lock:
            if self.drops is not None and self.dropped >= self.drops:
                return False
            self.dropped += 1
            return True


def _close(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def set_registry_delay(registry_url, seconds):
    """The lab registry front's knob: wait `seconds` before each answer (a slow registry)."""
    req = urllib.request.Request(registry_url + "/_lab/stats", data=json.dumps({"delay": seconds}).encode(),
                                 method="PUT")
    urllib.request.urlopen(req, timeout=10).close()


@contextmanager
def small_disk(size_bytes, owner=None):
    """A tmpfs of `size_bytes` mounted on a new directory (root only); yields its Path, unmounts after."""
    path = Path(tempfile.mkdtemp(prefix="small-disk-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d,mode=0755" % size_bytes, "tmpfs", str(path)], check=True)
    try:
        if owner:
            shutil.chown(str(path), *owner)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
        shutil.rmtree(path, ignore_errors=True)


# -- the server role's release archives --------------------------------------------------------------------------

BROKEN_SERVE = """#!/bin/sh
# DELIBERATELY BROKEN BUILD made by tests/lab/faults.py for the llmops.ollama fault tests:
# `ollama --version` answers like a real release, `ollama serve` exits at once, so the server never starts.
case "$1" in
  -v|--version) echo "ollama version is %(version)s"; exit 0 ;;
esac
echo "deliberately broken test build %(version)s: '$*' exits without serving" >&2
exit 1
"""


def broken_release(mirror_dir, version, asset="ollama-linux-amd64.tar.zst"):
    """Write LAB_CACHE/mirror/<mirror_dir>/v<version>/<asset> and its sha256sum.txt: a deliberately broken build.

    The archive has the release layout (bin/ollama, lib/ollama/), passes the role's checksum and `--version`
    checks, and its server does not start. Returns the mirror directory (served at <mirror_url>/<mirror_dir>).
    """
    root = LAB_CACHE / "mirror" / mirror_dir
    release = root / ("v" + version)
    shutil.rmtree(root, ignore_errors=True)
    release.mkdir(parents=True)
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        for name, data, mode in (("bin/ollama", (BROKEN_SERVE % {"version": version}).encode(), 0o755),
                                 ("lib/ollama/BROKEN-BUILD", b"deliberately broken test build: serve exits\n", 0o644)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    archive = release / asset
    subprocess.run(["zstd", "-q", "-f", "-o", str(archive)], input=tar_bytes.getvalue(), check=True)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    (release / "sha256sum.txt").write_text("%s  ./%s\n" % (digest, asset))
    return root


# -- ansible-playbook in the background ----------------------------------------------------------------------------

class Playbook:
    """ansible-playbook started in its own session, output to a file, so a test can follow it and SIGKILL it."""

    def __init__(self, playbook, inventory, extra_vars=None, args=(), env=None):
        self.log = tempfile.NamedTemporaryFile(prefix="playbook-", suffix=".log", delete=False)
        cmd = ["ansible-playbook", "-i", str(inventory), str(playbook)]
        if inventory == "localhost,":
            cmd += ["-c", "local", "-e", "ansible_python_interpreter=%s" % sys.executable]
        if extra_vars:
            cmd += ["-e", json.dumps(extra_vars)]
        cmd += list(args)
        self.started = time.time()
        self.proc = subprocess.Popen(cmd, cwd=str(REPO), env=ansible_env(env), stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.killed_after = None
        self._final = None

    @property
    def output(self):
        if self._final is not None:
            return self._final
        return Path(self.log.name).read_text(errors="replace")

    def wait_for(self, pattern, timeout=120):
        """Wait until the output matches `pattern` (a regex); fails when the run ends or the time is up first."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if re.search(pattern, self.output):
                return
            if self.proc.poll() is not None:
                raise AssertionError("the playbook ended (rc %s) before %r:\n%s"
                                     % (self.proc.returncode, pattern, self.output[-3000:]))
            time.sleep(0.05)
        raise AssertionError("no %r within %ss:\n%s" % (pattern, timeout, self.output[-3000:]))

    def kill(self):
        """SIGKILL ansible-playbook and every process under it, as when the controller dies.

        Ansible's workers leave the playbook's session (setsid), so the whole tree is collected first: the workers,
        their ssh clients (the connection to the host drops) or, on localhost, the module processes themselves.
        """
        import psutil

        self.killed_after = time.time() - self.started
        try:
            root = psutil.Process(self.proc.pid)
            tree = [root] + root.children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        for proc in tree:
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        self.proc.wait()
        psutil.wait_procs(tree[1:], timeout=10)

    def wait(self, timeout=600):
        self.proc.wait(timeout)
        self.seconds = time.time() - self.started
        self.rc = self.proc.returncode
        self.stats = recap(self.output)
        return self

    def failures(self):
        return failed_results(self.output)

    def cleanup(self):
        if self.proc.poll() is None:
            self.kill()
        self._final = self.output
        self.log.close()
        os.unlink(self.log.name)


RESULT_LINE = re.compile(r"^(fatal|failed|ok|changed): \[([^\]]+)\](?: \(item=.*?\))?(?: FAILED!)? => (\{.*\})\s*$")


def results(output):
    """[(status, host, result dict)] of every task result the default callback printed as JSON.

    Failures are always printed that way ("fatal: [host]: FAILED! => {...}", "failed: [host] (item=...) => {...}");
    ok and changed results only with -v.
    """
    found = []
    for line in (output or "").splitlines():
        match = RESULT_LINE.match(line.replace("]: FAILED!", "] FAILED!"))
        if match:
            found.append((match.group(1), match.group(2), json.loads(match.group(3))))
    return found


def failed_results(output):
    """[(host, result)] of the failed tasks in a playbook's output."""
    return [(host, result) for status, host, result in results(output) if status in ("fatal", "failed")]


def junit_env(directory):
    """Environment for ansible-playbook to time each task with the built-in junit callback (into `directory`)."""
    return dict(ANSIBLE_CALLBACKS_ENABLED="junit", JUNIT_OUTPUT_DIR=str(directory), JUNIT_HIDE_TASK_ARGUMENTS="true")


def task_seconds(directory):
    """{task name: seconds} from the junit files ansible-playbook wrote into `directory` (see junit_env)."""
    import xml.etree.ElementTree as ET

    times = {}
    for path in sorted(Path(directory).glob("*.xml")):
        for case in ET.parse(str(path)).getroot().iter("testcase"):
            name = re.sub(r"^\[[^\]]+\] [^:]*: ", "", case.get("name", ""))
            times[name] = float(case.get("time") or 0)
    return times


# -- watching a server -------------------------------------------------------------------------------------------

class TagWatcher:
    """Poll `fetch()` (returns /api/tags' models, or raises while the server is down) in a thread.

    `seen` keeps every answer: (seconds since start, {name: digest}) or (seconds, None) when the server did not answer.
    """

    def __init__(self, fetch, interval=0.05):
        self.fetch = fetch
        self.interval = interval
        self.seen = []
        self._stop = threading.Event()
        self._started = time.time()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                models = {m["name"]: m.get("digest") for m in self.fetch()}
            except Exception:  # noqa: BLE001 - the server is down or restarting: that is the point
                models = None
            self.seen.append((time.time() - self._started, models))
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        return self.seen

    def answered(self):
        return [models for _t, models in self.seen if models is not None]


def http_tags(base_url):
    def fetch():
        with urllib.request.urlopen(base_url + "/api/tags", timeout=2) as resp:
            return json.loads(resp.read()).get("models") or []
    return fetch


def netns_tags(netns, port=11434):
    """/api/tags of a lab host's server read from the machine, inside the host's network namespace (no SSH)."""
    def fetch():
        out = subprocess.run(["ip", "netns", "exec", netns, "curl", "-fsS", "-m", "2",
                              "http://127.0.0.1:%d/api/tags" % port], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, check=True, timeout=5).stdout
        return json.loads(out).get("models") or []
    return fetch


def store(models_dir):
    """What a models store holds: complete blobs, partial downloads, and manifest files (relative paths)."""
    models_dir = Path(models_dir)
    blobs_dir = models_dir / "blobs"
    names = sorted(p.name for p in blobs_dir.iterdir()) if blobs_dir.is_dir() else []
    manifests_dir = models_dir / "manifests"
    manifests = sorted(str(p.relative_to(manifests_dir)) for p in manifests_dir.rglob("*") if p.is_file()) \
        if manifests_dir.is_dir() else []
    return dict(blobs=[n for n in names if re.match(r"^sha256-[0-9a-f]{64}$", n)],
                partial=[n for n in names if "-partial" in n], manifests=manifests)
