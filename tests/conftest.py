"""Shared pytest fixtures: the collection on the import path, and the real lab parts (Ollama, registry).

Fixtures start real processes: `ollama serve` from a lab build of the Go module and Debian's docker-registry
behind the lab's front. Nothing here is a mock.
"""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.lab.paths import LAB_STATE, REPO


def _collection_root():
    """Expose the work tree as ansible_collections/llmops/ollama (for imports and for ansible-playbook)."""
    root = LAB_STATE / "collections"
    link = root / "ansible_collections" / "llmops" / "ollama"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(".ollama.tmp%d" % os.getpid())
        tmp.symlink_to(REPO)
        os.replace(tmp, link)
    return root


COLLECTIONS = _collection_root()
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))


@pytest.fixture(scope="session")
def registry():
    """The lab registry on loopback, seeded with the synthetic catalogue."""
    from tests.lab import models
    from tests.lab.registry import Registry

    storage = Path(tempfile.mkdtemp(prefix="registry-"))
    reg = Registry(storage / "store", log_dir=storage).start()
    reg.digests = models.seed(reg.url)
    yield reg
    reg.stop()
    subprocess.call(["rm", "-rf", str(storage)])


@pytest.fixture(scope="session")
def ollama_server():
    from tests.lab.ollama_server import OllamaServer

    with OllamaServer() as server:
        yield server


class PlaybookRun:
    def __init__(self, proc, stats):
        self.proc = proc
        self.rc = proc.returncode
        self.output = proc.stdout
        self.stats = stats


def run_playbook(playbook, inventory="localhost,", extra_vars=None, check=False, diff=False, env=None, args=()):
    """Run ansible-playbook with the collection installed from the work tree; return PlaybookRun."""
    cmd = ["ansible-playbook", "-i", inventory, str(playbook)]
    if inventory == "localhost,":
        cmd += ["-c", "local", "-e", "ansible_python_interpreter=%s" % sys.executable]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    cmd += list(args)
    full_env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_NOCOLOR="1",
                    ANSIBLE_FORCE_COLOR="0", ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_HOST_KEY_CHECKING="0",
                    ANSIBLE_STDOUT_CALLBACK="default", **(env or {}))
    proc = subprocess.run(cmd, cwd=REPO, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False)
    return PlaybookRun(proc, _recap(proc.stdout))


def _recap(output):
    """{host: {"ok": n, "changed": n, "failed": n, ...}} from the PLAY RECAP lines."""
    stats, in_recap = {}, False
    for line in output.splitlines():
        if line.startswith("PLAY RECAP"):
            in_recap = True
            continue
        if in_recap and ":" in line and "=" in line:
            host, _sep, rest = line.partition(":")
            stats[host.strip()] = {k: int(v) for k, v in (p.split("=") for p in rest.split())}
    return stats


@pytest.fixture
def playbook():
    return run_playbook
