"""The server role's preflight (roles/server/tasks/preflight.yml) through ansible-playbook on this machine: which
versions and download sources it takes, and what it says when it refuses.

A pre-release (`-rcN`) is refused where the role would fetch it from Ollama's own release downloads: Ollama's release
workflow (.github/workflows/release.yaml) keeps one release per X.Y.Z and moves it, with new assets, to each next
tag, so the pre-release's URLs answer 404 later. From a site mirror or a file on the controller it is taken.

Nothing is downloaded: the preflight only reads the settings and the host's facts. After the version checks it
checks that the host runs systemd; where this machine does not, a run the version checks let through stops there.
"""
import json
import re

import pytest

from tests.lab.ansible_run import run_playbook
from tests.lab.paths import REPO

PLAYBOOK = REPO / "tests" / "integration" / "targets" / "server_preflight" / "preflight.yml"
OFFICIAL = "https://github.com/ollama/ollama/releases/download"
VERSION_TASK = "Require a valid version"
RELEASE_TASK = "Require a final release from Ollama's own downloads"
NEXT_TASK = "Require systemd on the host"


def preflight(**settings):
    """(failed task or None, its message, the run's output)."""
    run = run_playbook(PLAYBOOK, extra_vars=settings)
    failed, message = None, ""
    lines = run.output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("fatal: [localhost]: FAILED! => "):
            title = [t for t in lines[:i] if t.startswith("TASK [")][-1]
            failed = title[len("TASK ["):].rstrip("* ").rstrip("]").split(" : ", 1)[-1]
            message = json.loads(line[len("fatal: [localhost]: FAILED! => "):])["msg"]
            break
    assert failed is not None or run.rc == 0, run.output[-3000:]
    return failed, message, run.output


def passed_the_version_checks(failed, output):
    """Both version checks ran and passed; the run ended, or stopped at the host checks (this machine)."""
    assert failed in (None, NEXT_TASK), output[-3000:]
    for task in (VERSION_TASK, RELEASE_TASK):
        assert re.search(r"TASK \[llmops\.ollama\.server : %s\] \**\nok: \[localhost\]" % re.escape(task), output), \
            output[-3000:]
    return True


def test_a_release_from_ollamas_downloads_passes():
    failed, _msg, output = preflight(ollama_server_version="0.34.4")
    assert passed_the_version_checks(failed, output)


@pytest.mark.parametrize("version", ["0.34.0-rc2", "0.35.0-rc0", "0.34.4-beta.1"])
def test_a_pre_release_from_ollamas_downloads_is_refused_with_why_and_what_to_set(version):
    failed, msg, _output = preflight(ollama_server_version=version)
    final = version.split("-")[0]
    assert failed == RELEASE_TASK
    assert msg.startswith("ollama_server_version %s is a pre-release, and the role would fetch it from Ollama's own "
                          "release downloads (%s/v%s/ollama-linux-" % (version, OFFICIAL, version)), msg
    assert "%s/v%s/sha256sum.txt)" % (OFFICIAL, version) in msg, msg
    assert "the pre-release's URLs then answer 404" in msg, msg
    assert "Set ollama_server_version to the final release (%s, once it is out)" % final in msg, msg
    assert "ollama_server_download_base_url" in msg and "ollama_server_archive_src" in msg, msg


@pytest.mark.parametrize("settings", [
    {"ollama_server_download_base_url": "https://mirror.example.com/ollama"},
    {"ollama_server_archive_url": "https://mirror.example.com/ollama-0.34.0-rc2.tar.zst",
     "ollama_server_checksum": "sha256:" + "a" * 64},
    {"ollama_server_archive_src": "/srv/files/ollama-linux-amd64.tar.zst"},
], ids=["mirror", "archive-url-with-checksum", "controller-file"])
def test_a_pre_release_from_a_mirror_or_the_controller_passes(settings):
    failed, _msg, output = preflight(ollama_server_version="0.34.0-rc2", **settings)
    assert passed_the_version_checks(failed, output)


def test_a_mirrored_archive_whose_checksum_list_is_still_ollamas_is_refused():
    """ollama_server_archive_url on a mirror, no checksum: the list would be read from Ollama's downloads."""
    failed, msg, _output = preflight(ollama_server_version="0.34.0-rc2",
                                     ollama_server_archive_url="https://mirror.example.com/ollama.tar.zst")
    assert failed == RELEASE_TASK
    assert "Ollama's own release downloads (%s/v0.34.0-rc2/sha256sum.txt)." % OFFICIAL in msg, msg


@pytest.mark.parametrize("version", ["v0.34.4", "0.34", "0.34.4-", "0.34.4-rc1/../x", "latest"])
def test_a_version_that_is_not_one_is_refused(version):
    failed, msg, _output = preflight(ollama_server_version=version)
    assert failed == VERSION_TASK
    assert msg == ("ollama_server_version must be a release such as 0.34.4 (no leading v; a pre-release such as "
                   "0.35.0-rc1 only from a site mirror or a file on the controller), not '%s'." % version), msg


GPU_TASK = "Require a final release for the GPU archive from Ollama's own downloads"
# The GPU part (tasks/gpu.yml) for the ROCm archive on this machine (no GPU needed: the archive is asked for), with
# the release archive from a mirror and the version unpacked already (nothing in ollama_server_drift).
GPU = dict(server_tasks="gpu", ollama_server_gpu_archive="rocm", ollama_server_drift=[],
           ollama_server_version="0.34.0-rc2", ollama_server_archive_url="https://mirror.example.com/ollama.tar.zst",
           ollama_server_checksum="sha256:" + "a" * 64)


def test_a_pre_release_whose_gpu_archive_would_come_from_ollamas_downloads_is_refused():
    failed, msg, _output = preflight(**GPU)
    assert failed == GPU_TASK
    assert msg.startswith("ollama_server_version 0.34.0-rc2 is a pre-release, and the role would fetch its GPU "
                          "archive from Ollama's own release downloads (%s/v0.34.0-rc2/ollama-linux-amd64-rocm.tar.zst, "
                          "%s/v0.34.0-rc2/sha256sum.txt)." % (OFFICIAL, OFFICIAL)), msg
    assert "ollama_server_gpu_archive_url with ollama_server_gpu_archive_checksum" in msg, msg


def test_a_pre_release_whose_gpu_archive_is_on_the_controller_passes(tmp_path):
    missing = tmp_path / "ollama-linux-amd64-rocm.tar.zst"
    failed, msg, output = preflight(ollama_server_gpu_archive_src=str(missing),
                                    ollama_server_gpu_archive_checksum="sha256:" + "b" * 64, **GPU)
    assert re.search(r"TASK \[llmops\.ollama\.server : %s\] \**\nok: \[localhost\]" % re.escape(GPU_TASK), output), \
        output[-3000:]
    # and it goes on to install it: from the controller, where the test left no file
    assert "%s does not exist on the controller" % missing in msg, (failed, msg)
