"""Run the real `ollama serve` (a lab build, which runs models) on a free loopback port with its own model store."""
import json
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tests.lab import ollama_build
from tests.lab.net import free_port, wait_http


class OllamaServer:
    def __init__(self, version=ollama_build.VERSIONS[0], models_dir=None, port=None, env=None):
        self.version = version
        self.port = port or free_port()
        self.home = Path(tempfile.mkdtemp(prefix="ollama-home-"))
        self.models_dir = Path(models_dir) if models_dir else self.home / "models"
        self.extra_env = env or {}
        self.proc = None

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self):
        ollama_build.build(self.version)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, HOME=str(self.home), OLLAMA_HOST="127.0.0.1:%d" % self.port,
                   OLLAMA_MODELS=str(self.models_dir), OLLAMA_CONTEXT_LENGTH="8192")
        env.update(self.extra_env)
        self.log = self.home / "serve.log"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([str(ollama_build.binary_path(self.version)), "serve"], env=env,
                                         stdout=log, stderr=log, start_new_session=True)
        wait_http(self.url + "/api/version", proc=self.proc)
        return self

    def pull(self, name, insecure=False, timeout=120):
        """The server's own pull of `name` (/api/pull, not streamed): (whether it succeeded, the error it gave)."""
        body = json.dumps({"model": name, "insecure": insecure, "stream": False}).encode()
        request = urllib.request.Request(self.url + "/api/pull", data=body, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                result = json.load(answer)
        except urllib.error.HTTPError as exc:
            result = json.load(exc)
        return result.get("status") == "success", result.get("error", "")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()
