"""Running the real Codex CLI in the integration tests, and a real HTTP server that records what it sends.

Shared by the codex role's tests (test_codex_role.py, test_codex_policy.py, test_codex_catalog.py). Every codex
process gets a dead loopback proxy for anything but loopback, so nothing leaves the machine; the system layer
(/etc/codex) is a rendered folder bind-mounted there inside a private mount namespace, over a private overlay of
/etc, so the machine's own /etc is never touched.
"""
import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.lab import codex_cli, ollama_build

LOOPBACK_ONLY = {  # a dead proxy for everything but loopback
    "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "ALL_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost,::1",
}
PLAYBOOK_ENV = {"ANSIBLE_PIPELINING": "1"}


def run_codex(cli, args, home, env=None, system_dir=None, ollama_on_11434=None, cwd=None, timeout=90):
    """Run `codex ARGS` with HOME=home (and CODEX_HOME unset unless env sets it); return CompletedProcess.

    system_dir: bind-mounted over /etc/codex in a private mount namespace.
    ollama_on_11434: a directory; a real `ollama serve` is started on 127.0.0.1:11434 in a private network
    namespace (Codex's built-in `ollama` provider's address), with its state there.
    """
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CODEX_", "OPENAI_", "OLLAMA_"))}
    full_env.update(HOME=str(home), RUST_BACKTRACE="0", LANG="C.UTF-8", **LOOPBACK_ONLY)
    full_env.update(env or {})
    command = [str(cli.binary)] + list(args)
    if system_dir or ollama_on_11434:
        lines = ["set -e"]
        if system_dir:
            overlay = Path(system_dir).parent / ".etc-overlay"
            for sub in ("upper", "work"):
                (overlay / sub).mkdir(parents=True, exist_ok=True)
            lines += ["mount -t overlay overlay -o lowerdir=/etc,upperdir={0}/upper,workdir={0}/work /etc".format(overlay),
                      "mkdir -p /etc/codex",
                      "mount --bind %s /etc/codex" % system_dir]
        if ollama_on_11434:
            lines += ["ip link set lo up",
                      "HOME={0} OLLAMA_HOST=127.0.0.1:11434 OLLAMA_MODELS={0}/models {1} serve >{0}/serve.log 2>&1 &"
                      .format(ollama_on_11434, ollama_build.binary_path(ollama_build.VERSIONS[0])),
                      "serve=$!",
                      "trap 'kill $serve; wait $serve' EXIT",
                      "for i in $(seq 150); do curl -sf --noproxy '*' http://127.0.0.1:11434/api/version >/dev/null"
                      " && break; sleep 0.1; done"]
        lines += ["set +e", '"$@"']
        command = (["unshare", "--mount", "--propagation", "private"] + (["--net"] if ollama_on_11434 else [])
                   + ["bash", "-c", "\n".join(lines), "codex"] + command)
    return subprocess.run(command, env=full_env, cwd=str(cwd or home), stdin=subprocess.DEVNULL, check=False,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout)


def doctor(cli, home, **kwargs):
    """`codex doctor --json`: the report's checks, by id."""
    proc = run_codex(cli, ["doctor", "--json"], home, **kwargs)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError("codex doctor printed no JSON (rc %s):\n%s\n%s"
                             % (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:]))
    assert report["codexVersion"] == codex_cli.VERSION
    return report["checks"]


def exec_header(cli, home, profile=None, env=None):
    """`codex [--profile P] exec --strict-config`: the `key: value` lines it prints before the turn, and the output."""
    args = (["--profile", profile] if profile else []) + ["exec", "--skip-git-repo-check", "--strict-config", "hi"]
    proc = run_codex(cli, args, home, env=env)
    out = proc.stdout + proc.stderr
    header = dict(line.split(": ", 1) for line in out.splitlines()
                  if line.split(":", 1)[0] in ("model", "provider", "approval", "sandbox", "reasoning effort"))
    return header, out


def loaded(checks):
    """The config.load check must be ok: loaded, nothing ignored. Returns its details."""
    load = checks["config.load"]
    assert load["status"] == "ok", json.dumps(load, indent=1)
    assert "startup warning" not in load["details"], load["details"]
    return load["details"]


class Capture:
    def __init__(self):
        self.requests = []
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status, doc):
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._answer(200, {"object": "list", "data": []})

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                capture.requests.append((self.path, self.headers, body))
                self._answer(400, {"error": {"message": "recorded by the test", "type": "invalid_request_error"}})

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
