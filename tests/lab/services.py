"""The lab's site services on the machine's bridge address, where the fleet's hosts reach them.

- a release mirror: LAB_CACHE/mirror over HTTP, laid out like the official download path
  (`/v<version>/ollama-linux-amd64.tar.zst` beside `sha256sum.txt`), plus anything else put there;
- the model registry (Debian's docker-registry behind the Location-fixing front), seeded with the
  synthetic catalogue; LAB_UPLINK_MBPS limits the blob bytes it sends all hosts together (a site's uplink).

    python3 -m tests.lab.services start|stop|status     # background, pid in LAB_STATE/services.pid
    python3 -m tests.lab.services serve                 # foreground
"""
import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

from tests.lab import models
from tests.lab.errors import LabError
from tests.lab.net import wait_http
from tests.lab.paths import GATEWAY_IP, LAB_CACHE, LAB_STATE, REPO
from tests.lab.registry import Registry, mbps_to_rate

MIRROR_PORT = int(os.environ.get("LAB_MIRROR_PORT", "8080"))
REGISTRY_PORT = int(os.environ.get("LAB_REGISTRY_PORT", "5000"))
PIDFILE = LAB_STATE / "services.pid"
INFO = LAB_STATE / "services.json"


def info():
    """Where the services answer, as the fleet sees them."""
    return dict(mirror_url="http://%s:%d" % (GATEWAY_IP, MIRROR_PORT),
                registry="%s:%d" % (GATEWAY_IP, REGISTRY_PORT),
                registry_url="http://%s:%d" % (GATEWAY_IP, REGISTRY_PORT))


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve():
    mirror_root = LAB_CACHE / "mirror"
    mirror_root.mkdir(parents=True, exist_ok=True)
    handler = functools.partial(QuietHandler, directory=str(mirror_root))
    mirror = ThreadingHTTPServer((GATEWAY_IP, MIRROR_PORT), handler)
    mirror.daemon_threads = True
    threading.Thread(target=mirror.serve_forever, daemon=True).start()
    registry = Registry(LAB_STATE / "registry", (GATEWAY_IP, REGISTRY_PORT), log_dir=LAB_STATE).start()
    # the site's uplink: blob bytes to all hosts together (bench/rollout.py sets it at run time instead)
    registry.set_rate(mbps_to_rate(os.environ.get("LAB_UPLINK_MBPS") or 0))
    digests = models.seed(registry.url)
    INFO.write_text(json.dumps(dict(info(), digests=digests), indent=2))
    print("mirror %s, registry %s" % (info()["mirror_url"], registry.url), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    stop.wait()
    registry.stop()
    mirror.shutdown()


def _running_pid():
    try:
        pid = int(PIDFILE.read_text())
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            if b"tests.lab.services" in f.read():
                return pid
    except (OSError, ValueError):
        pass
    return None


def start():
    if _running_pid():
        return info()
    LAB_STATE.mkdir(parents=True, exist_ok=True)
    if INFO.exists():
        INFO.unlink()
    log = open(LAB_STATE / "services.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "tests.lab.services", "serve"], stdout=log, stderr=log,
                            start_new_session=True, cwd=str(REPO), env=dict(os.environ, PYTHONPATH=str(REPO)))
    PIDFILE.write_text(str(proc.pid))
    deadline = time.time() + 60
    while not INFO.exists() or json.loads(INFO.read_text() or "{}").get("digests") is None:
        if proc.poll() is not None or time.time() > deadline:
            tail = (LAB_STATE / "services.log").read_text(errors="replace").strip().splitlines()[-1:] or [""]
            raise LabError("the lab's mirror and registry did not start (%s); see %s"
                           % (tail[0][:200], LAB_STATE / "services.log"))
        time.sleep(0.2)
    wait_http(info()["mirror_url"] + "/")
    return info()


def stop():
    pid = _running_pid()
    if pid:
        os.kill(pid, signal.SIGTERM)
        for _attempt in range(100):
            if not os.path.exists("/proc/%d" % pid):
                break
            time.sleep(0.1)
    for path in (PIDFILE, INFO):
        if path.exists():
            path.unlink()


def main(argv):
    cmd = argv[0] if argv else "status"
    if cmd == "serve":
        serve()
    elif cmd == "start":
        print(json.dumps(start(), indent=2))
    elif cmd == "stop":
        stop()
    else:
        print("running" if _running_pid() else "stopped")


if __name__ == "__main__":
    main(sys.argv[1:])
