"""Small network helpers shared by the lab's services and fixtures."""
import socket
import time
import urllib.request


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_http(url, timeout=30, proc=None):
    """Wait until `url` answers any HTTP request; fail early when `proc` (a Popen) has exited."""
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answered
        except Exception as exc:  # noqa: BLE001 - anything else means "not yet"
            if proc is not None and proc.poll() is not None:
                raise RuntimeError("%s exited with %s before %s answered" % (proc.args[0], proc.returncode, url))
            if time.time() > deadline:
                raise RuntimeError("%s did not answer within %ss: %s" % (url, timeout, exc))
            time.sleep(0.1)
