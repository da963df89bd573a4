"""Shared pytest fixtures: the collection on the import path, and the real lab parts (Ollama, registries).

Fixtures start real processes: `ollama serve` from a lab build of the Go module and Debian's docker-registry
behind the lab's front. Nothing here is a mock. Two registries share one store: `registry` (plain HTTP, where tests
push) and `public_registry`, which answers as public registries do (TLS from the lab's own CA, Distribution's token
auth, blobs redirected to a CDN host; tests/lab/registry.py). The session's `ollama_server` trusts the lab's CA
(SSL_CERT_FILE), as a server pulling from a site registry with its own CA must.
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
def lab_ca():
    """The lab's own CA (tests/lab/pki.py): what a site registry's CA is to its clients."""
    from tests.lab.pki import LabCA

    folder = Path(tempfile.mkdtemp(prefix="lab-ca-"))
    yield LabCA(folder)
    subprocess.call(["rm", "-rf", str(folder)])


@pytest.fixture(scope="session")
def public_registry(registry, lab_ca):
    """The registry's store behind a front that answers as public registries do (TLS, token auth, a CDN)."""
    from tests.lab.registry import Registry

    reg = Registry(registry.storage, log_dir=registry.log_dir, public=True, ca=lab_ca).start()
    reg.digests = registry.digests
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def ollama_server(lab_ca):
    from tests.lab.ollama_server import OllamaServer

    with lab_setup():
        server = OllamaServer(env={"SSL_CERT_FILE": str(lab_ca.cert)}).start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def playbook():
    return run_playbook
