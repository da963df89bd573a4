"""The GPU guard in the server role's one declaration (vars/main.yml, ollama_server_declaration): rendered by Ansible
on the controller (the role's `declaration` entry point, as its look and tests/fleet/playbooks/declarations.yml take
it) for stand-in hosts given the fact the GPU part publishes (ollama_server_gpu, tasks/gpu.yml) and the options.
The wait and the sleep hook are declared, with the sha256 of what the steps write, only on hosts with NVIDIA or AMD
GPUs and with their options on; everywhere else they are declared absent, so that the steps remove them."""
import hashlib
from pathlib import Path

import pytest

from ansible_collections.llmops.ollama.tests.unit.roles.server.declared import render

ROLE = Path(__file__).resolve().parents[4] / "roles" / "server"

GPU = {"gpus": [], "compute": "gpu", "summary": "", "problems": [], "archive": "none", "device_allow": [],
       "supplementary_groups": []}
HOSTS = {
    "nvidia": {"ollama_server_gpu": dict(GPU, vendors=["nvidia"])},
    "amd": {"ollama_server_gpu": dict(GPU, vendors=["amd"]), "ollama_server_gpu_wait_seconds": 30},
    "both": {"ollama_server_gpu": dict(GPU, vendors=["amd", "nvidia"])},
    "cpu": {"ollama_server_gpu": dict(GPU, vendors=[], compute="cpu")},
    "look": {},  # before the GPU part has run: as a host without GPUs
    "jetson": {"ollama_server_gpu": dict(GPU, vendors=["nvidia-jetson"])},
    "cpu_on_purpose": {"ollama_server_gpu": dict(GPU, vendors=["nvidia"]), "ollama_server_cuda_visible_devices": "-1"},
    "wait_off": {"ollama_server_gpu": dict(GPU, vendors=["nvidia"]), "ollama_server_gpu_wait": False},
    "resume_off": {"ollama_server_gpu": dict(GPU, vendors=["nvidia"]), "ollama_server_gpu_resume_restart": False},
}
SCRIPT, DROPIN = "/opt/ollama/bin/ollama-gpu-wait", "/etc/systemd/system/ollama.service.d/30-gpu-wait.conf"
HOOK = "/usr/lib/systemd/system-sleep/ollama"

CONTENT = """{'gpu': ollama_server_declaration.gpu,
              'dropin': lookup('ansible.builtin.template', templates ~ '/gpu-wait.conf.j2')
                        if ollama_server_declaration.gpu.paths | selectattr('path', 'eq', dropin)
                           | rejectattr('type', 'defined') | list else none}"""


@pytest.fixture(scope="module")
def declared(tmp_path_factory):
    return render(tmp_path_factory.mktemp("declared"), HOSTS, CONTENT,
                  {"templates": str(ROLE / "templates"), "dropin": DROPIN})


def paths(found):
    return dict((p["path"], p) for p in found["gpu"]["paths"])


@pytest.mark.parametrize("host", ["nvidia", "amd", "both"])
def test_gpu_hosts_declare_the_wait_and_the_hook(declared, host):
    found = paths(declared[host])
    assert set(found) == {"/opt/ollama/bin", SCRIPT, DROPIN, HOOK}
    assert found["/opt/ollama/bin"] == {"path": "/opt/ollama/bin", "type": "directory", "owner": "root",
                                        "group": "root", "mode": "0755"}
    script = (ROLE / "files" / "ollama-gpu-wait").read_bytes()
    assert found[SCRIPT]["sha256"] == hashlib.sha256(script).hexdigest() and found[SCRIPT]["mode"] == "0755"
    assert found[DROPIN]["sha256"] == hashlib.sha256(declared[host]["dropin"].encode()).hexdigest()
    assert (found[DROPIN]["owner"], found[DROPIN]["mode"], found[HOOK]["owner"], found[HOOK]["mode"]) == (
        "root", "0644", "root", "0755")
    assert "requirements" in declared[host]["gpu"]["gpu"]  # the GPU checks stay in the part


def test_the_dropin_runs_the_wait_for_the_vendors_found(declared):
    lines = dict((h, [line for line in declared[h]["dropin"].splitlines() if not line.startswith("#")])
                 for h in ("nvidia", "amd", "both"))
    assert lines["nvidia"] == ["[Unit]", "StartLimitIntervalSec=60", "StartLimitBurst=10", "", "[Service]",
                               "ExecStartPre=%s 90 nvidia" % SCRIPT, "TimeoutStartSec=150"]
    assert "ExecStartPre=%s 30 amd" % SCRIPT in lines["amd"] and "TimeoutStartSec=90" in lines["amd"]
    assert "ExecStartPre=%s 90 amd nvidia" % SCRIPT in lines["both"]


@pytest.mark.parametrize("host", ["cpu", "look", "jetson", "cpu_on_purpose"])
def test_other_hosts_declare_them_absent(declared, host):
    assert declared[host]["gpu"]["paths"] == [{"path": SCRIPT, "type": "absent"}, {"path": DROPIN, "type": "absent"},
                                              {"path": HOOK, "type": "absent"}]
    assert declared[host]["dropin"] is None


def test_each_option_off_declares_its_part_absent(declared):
    off = paths(declared["wait_off"])
    assert off[SCRIPT] == {"path": SCRIPT, "type": "absent"} and off[DROPIN] == {"path": DROPIN, "type": "absent"}
    assert off[HOOK]["sha256"] and "/opt/ollama/bin" not in off
    off = paths(declared["resume_off"])
    assert off[HOOK] == {"path": HOOK, "type": "absent"} and off[DROPIN]["sha256"] and off[SCRIPT]["sha256"]
