"""Fixtures of the codex role's tests: the pinned Codex CLI, and a real HTTP server that records what Codex sends."""
import pytest

from tests.integration.codex_run import Capture
from tests.lab import codex_cli


@pytest.fixture(scope="module")
def codex():
    return codex_cli.ensure()


@pytest.fixture(scope="module")
def capture():
    server = Capture()
    yield server
    server.stop()
