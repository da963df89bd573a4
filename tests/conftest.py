"""Shared pytest fixtures: the collection on the import path, and the real lab parts (Ollama, registry).

Fixtures start real processes: `ollama serve` from a lab build of the Go module and Debian's docker-registry
behind the lab's front. Nothing here is a mock.
"""
import subprocess
import sys
import tempfile
from pathlib import Path

import contextlib

import pytest

from tests.lab.ansible_run import collections_path, run_playbook
from tests.lab.errors import LabError


COLLECTIONS = collections_path()
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))


@contextlib.contextmanager
def lab_setup():
    """A set-up failure of the lab (missing tool, failed build, full disk) fails the test with its one-line message."""
    try:
        yield
    except LabError as exc:
        pytest.fail("lab set-up: %s" % exc, pytrace=False)


@pytest.fixture(scope="session")
def registry():
    """The lab registry on loopback, seeded with the synthetic catalogue."""
    from tests.lab import models
    from tests.lab.registry import Registry

    storage = Path(tempfile.mkdtemp(prefix="registry-"))
    with lab_setup():
        reg = Registry(storage / "store", log_dir=storage).start()
        reg.digests = models.seed(reg.url)
    yield reg
    reg.stop()
    subprocess.call(["rm", "-rf", str(storage)])


@pytest.fixture(scope="session")
def ollama_server():
    from tests.lab.ollama_server import OllamaServer

    with lab_setup():
        server = OllamaServer().start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def playbook():
    return run_playbook
