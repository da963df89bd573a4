"""GPU servers on the lab fleet: the role's GPU branch, its early failure, the report, the fit check, the ROCm archive.

The lab has no GPU. The NVIDIA "GPU" of these tests is a RECORDED-OUTPUT STAND-IN for nvidia-smi: a shell
script installed on lab2 as /usr/local/bin/nvidia-smi for one test and removed after it, which prints what
the real nvidia-smi printed on a real machine (tests/unit/fixtures/gpu/nvidia/, sources in its README):
two cards with compute capability 7.0 and 8.9 on driver 570.86.15, or a driver that is not loaded (with a
/dev/nvidia0 stand-in file, so that the GPU counts as present). Everything else is real: the role, the
module, the hosts, systemd, the mirror and the registry.

Only lab2 (a gpu_servers host) is changed; lab1 is only read (ollama_facts, and the role's GPU tasks in check
mode). Each test leaves lab2 as it found it.
"""
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from tests.integration.test_fit_check import TIB, push_claiming_model
from tests.lab import ollama_build
from tests.lab.ansible_run import ansible_env
from tests.lab.paths import LAB_CACHE, REPO

HOST = "lab2"
CPU_HOST = "lab1"
NEW, OLD = ollama_build.VERSIONS
FIXTURES = REPO / "tests" / "unit" / "fixtures" / "gpu" / "nvidia"
STANDIN = "/usr/local/bin/nvidia-smi"


def sh(lab, host, command, check=True):
    """Run a shell command on a lab host; returns its output."""
    return lab.ssh(host, command, check=check)


def standin_script(sample, rc):
    return ("#!/bin/sh\n"
            "# RECORDED-OUTPUT STAND-IN for nvidia-smi, installed by tests/fleet/test_gpu.py: not an NVIDIA tool.\n"
            "# It prints tests/unit/fixtures/gpu/nvidia/%s (a real nvidia-smi output; source in the README there).\n"
            "cat <<'RECORDED'\n%sRECORDED\nexit %d\n" % (sample, (FIXTURES / sample).read_text(), rc))


class NvidiaStandIn:
    """Install the stand-in (and optionally a /dev/nvidia0 stand-in file) on lab2 for the duration of a block."""

    def __init__(self, lab, sample, rc=0, device_node=False):
        self.lab, self.sample, self.rc, self.device_node = lab, sample, rc, device_node

    def __enter__(self):
        sh(self.lab, HOST, "test ! -e %s && test ! -e /dev/nvidia0" % STANDIN)  # never replace a real one
        script = standin_script(self.sample, self.rc)
        sh(self.lab, HOST, "cat > %s <<'SCRIPT'\n%sSCRIPT\nchmod 755 %s" % (STANDIN, script, STANDIN))
        if self.device_node:
            sh(self.lab, HOST, "touch /dev/nvidia0")
        return self

    def __exit__(self, *exc):
        sh(self.lab, HOST, "rm -f %s%s" % (STANDIN, " /dev/nvidia0" if self.device_node else ""), check=False)


def report_lines(run, host):
    """The fleet report's lines for `host`: its line and the indented lines under it."""
    start = run.output.index('"msg": [')
    lines = json.loads(run.output[start + len('"msg": '):run.output.index("\n    ]", start) + 6])
    out, mine = [], False
    for line in lines:
        if not line.startswith(" "):
            mine = line.split()[0] == host
        if mine:
            out.append(line)
    return out


def test_gpu_branch_with_recorded_nvidia_smi(lab):
    with NvidiaStandIn(lab, "triton-8070_two-gpus.csv"):
        run = lab.playbook("gpu_servers.yml", limit=HOST)
        report = lab.playbook("report.yml", limit="%s,localhost" % HOST)
    assert run.rc == 0, run.output[-6000:]
    assert "PASS: " in run.output and "GPU: NVIDIA TITAN V, NVIDIA RTX 5880 Ada Generation" in run.output
    assert ("GPU branch: nvidia; Ollama computes on GPU (NVIDIA TITAN V, NVIDIA RTX 5880 Ada Generation); "
            "GPU archive: none.") in run.output
    assert run.stats[HOST]["failed"] == 0
    assert report.rc == 0, report.output[-4000:]
    lines = report_lines(report, HOST)
    assert lines[0].split()[:4] == [HOST, NEW, "pass", "2"] and " gpu x2 " in lines[0]
    assert "gpu 0: NVIDIA TITAN V, vram not reported, compute 7.0, driver 570.86.15" in lines[1]
    assert "gpu 1: NVIDIA RTX 5880 Ada Generation, vram not reported, compute 8.9, driver 570.86.15" in lines[2]


def test_broken_driver_stops_the_role_before_installing(lab):
    before = sh(lab, HOST, "ls /opt/ollama/versions; readlink /opt/ollama/current; systemctl show -p MainPID ollama")
    with NvidiaStandIn(lab, "nvidia-docker-988_driver-not-loaded.txt", rc=9, device_node=True):
        run = lab.playbook("servers.yml", limit=HOST)
        report = lab.playbook("report.yml", limit="%s,localhost" % HOST)
    assert run.rc != 0 and run.stats[HOST]["failed"] == 1
    assert "Stop when a GPU is present but Ollama cannot use it" in run.output
    assert ("nvidia-smi fails: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
            "Make sure that the latest NVIDIA driver is installed and running. (exit code 9)") in run.output
    assert "llmops.ollama._install : " not in run.output  # stopped before the install routine fetched anything
    assert sh(lab, HOST, "ls /opt/ollama/versions; readlink /opt/ollama/current; "
                         "systemctl show -p MainPID ollama") == before
    lines = report_lines(report, HOST)
    assert lines[0].split()[2] == "fail"
    assert any("nvidia-smi fails: NVIDIA-SMI has failed" in line for line in lines[1:])


def test_cpu_only_host_is_read_only_and_passes(lab):
    cmd = ["ansible", CPU_HOST, "-i", str(lab.inventory), "-b", "-m", "llmops.ollama.ollama_facts",
           "-a", "gather=hardware", "-o"]
    proc = subprocess.run(cmd, env=ansible_env(), cwd=str(REPO), capture_output=True, text=True, check=False,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    facts = json.loads(proc.stdout.split(" => ", 1)[1])["ansible_facts"]["ollama"]
    assert facts["hardware"]["gpus"] == []
    assert [d["hardware_present"] for d in facts["hardware"]["gpu_drivers"]] == [False, False]
    assert facts["check"]["status"] == "pass" and facts["check"]["compute"] == "cpu"
    playbook = Path(tempfile.mkdtemp()) / "gpu_tasks.yml"
    playbook.write_text("- hosts: %s\n  become: true\n  gather_facts: true\n  gather_subset: [min]\n  tasks:\n"
                        "    - ansible.builtin.include_role:\n        name: llmops.ollama.server\n"
                        "        tasks_from: gpu.yml\n" % CPU_HOST)
    run = lab.playbook(str(playbook), limit=CPU_HOST, check=True)
    shutil.rmtree(playbook.parent)
    assert run.rc == 0, run.output[-4000:]
    assert "GPU branch: no GPU; Ollama computes on CPU (CPU only); GPU archive: none." in run.output
    assert run.stats[CPU_HOST]["changed"] == 0 and run.stats[CPU_HOST]["failed"] == 0


def test_model_larger_than_the_host_is_refused_and_nothing_downloaded(lab):
    """A model whose manifest declares a 1 TiB layer (see tests/integration/test_fit_check.py for why that is
    an honest 'larger than RAM'), pushed to the lab registry, on lab2 whose real RAM is far smaller."""
    layer = push_claiming_model(lab.site["registry_url"], "gputest/claims-1tib", "latest", TIB)
    claim = "%s/gputest/claims-1tib:latest" % lab.site["registry"]
    playbook = Path(tempfile.mkdtemp()) / "fit.yml"
    playbook.write_text(
        "- hosts: %s\n  become: true\n  gather_facts: false\n  tasks:\n"
        "    - llmops.ollama.ollama_model:\n        name: %s\n        insecure: true\n        fit_check: fail\n"
        "      register: refused\n      ignore_errors: true\n"
        "    - ansible.builtin.assert:\n        that:\n          - refused is failed\n"
        "          - \"'refusing to pull (fit_check: fail)' in refused.msg\"\n"
        "          - refused.models[0].fit.fits == 'none'\n" % (HOST, claim))
    run = lab.playbook(str(playbook), limit=HOST)
    shutil.rmtree(playbook.parent)
    assert run.rc == 0, run.output[-4000:]
    assert "does not fit: needs about 1.2 TiB of memory" in run.output
    tags = json.loads(sh(lab, HOST, "curl -fsS http://127.0.0.1:11434/api/tags"))
    assert not [m for m in tags["models"] if "claims-1tib" in m["name"]]
    assert sh(lab, HOST, "curl -s -o /dev/null -w '%%{http_code}' -I http://127.0.0.1:11434/api/blobs/%s" % layer,
              check=False) == "404"
    # the GPU servers playbook says so per host, before installing anything
    with NvidiaStandIn(lab, "triton-8070_two-gpus.csv"):
        check = lab.playbook("gpu_servers.yml", limit=HOST, extra_vars={"ollama_models": [claim]})
    assert check.rc != 0 and "FAIL: " in check.output
    assert ("%s (1.0 TiB): does not fit: needs about 1.2 TiB of memory" % claim) in check.output
    assert check.stats[HOST]["failed"] == 1
    assert "llmops.ollama.server : " not in check.output  # lab2 did not reach the roles


def _rocm_standin_mirror(versions):
    """A mirror directory with the real release archives and a ROCm archive STAND-IN (official layout,
    lib/ollama/rocm/, holding only a note: not ROCm), all listed in its sha256sum.txt."""
    name = "gputest-%d" % os.getpid()
    root = LAB_CACHE / "mirror" / name
    for version in versions:
        vdir = root / ("v" + version)
        vdir.mkdir(parents=True, exist_ok=True)
        main = vdir / ollama_build.ASSET
        if not main.exists():
            os.link(ollama_build.archive_path(version), main)
        with tempfile.TemporaryDirectory() as tmp:
            note = Path(tmp) / "lib" / "ollama" / "rocm" / "STAND-IN.txt"
            note.parent.mkdir(parents=True)
            note.write_text("Stand-in for the ROCm libraries of Ollama %s, made by tests/fleet/test_gpu.py: not ROCm.\n"
                            % version)
            with tarfile.open(Path(tmp) / "rocm.tar", "w") as t:
                t.add(Path(tmp) / "lib", arcname="lib")
            subprocess.run(["zstd", "-q", "-f", str(Path(tmp) / "rocm.tar"), "-o",
                            str(vdir / "ollama-linux-amd64-rocm.tar.zst")], check=True)
        sums = "".join("%s  %s\n" % (hashlib.sha256(p.read_bytes()).hexdigest(), p.name)
                       for p in sorted(vdir.glob("*.tar.zst")))
        (vdir / "sha256sum.txt").write_text(sums)
    return name, root


def _main_pid(lab):
    return sh(lab, HOST, "systemctl show -p MainPID --value ollama").strip()


@pytest.fixture
def rocm_mirror(lab):
    name, root = _rocm_standin_mirror([NEW, OLD])
    yield "%s/%s" % (lab.site["mirror_url"], name)
    # leave lab2 as found: the version in use without the stand-in, no OLD version, no cached stand-ins
    restore = lab.playbook("servers.yml", limit=HOST)
    sh(lab, HOST, "rm -rf /opt/ollama/versions/%s/lib/ollama/rocm /opt/ollama/versions/%s/.ollama-linux-amd64-rocm.tar.zst.sha256 "
                  "/opt/ollama/versions/%s /var/cache/ollama-archives/*/ollama-linux-amd64-rocm.tar.zst; "
                  "rmdir /var/cache/ollama-archives/%s 2>/dev/null" % (NEW, NEW, OLD, OLD), check=False)
    shutil.rmtree(root, ignore_errors=True)
    assert restore.rc == 0, restore.output[-4000:]


def test_rocm_archive_added_to_the_version_directory(lab, rocm_mirror):
    """ROCm forced on (ollama_server_gpu_archive: rocm), as on an AMD host: lab2 has no AMD GPU."""
    common = {"ollama_server_download_base_url": rocm_mirror, "ollama_server_gpu_archive": "rocm"}
    pid = _main_pid(lab)
    run = lab.playbook("servers.yml", limit=HOST, extra_vars=common)
    assert run.rc == 0, run.output[-6000:]
    vdir = "/opt/ollama/versions/%s" % NEW
    assert "not ROCm" in sh(lab, HOST, "cat %s/lib/ollama/rocm/STAND-IN.txt" % vdir)
    sums = sh(lab, HOST, "curl -fsS %s/v%s/sha256sum.txt" % (rocm_mirror, NEW))
    assert sh(lab, HOST, "cat %s/.ollama-linux-amd64-rocm.tar.zst.sha256" % vdir).strip() in sums
    assert _main_pid(lab) != pid  # the running version was restarted on its new libraries
    assert json.loads(sh(lab, HOST, "curl -fsS http://127.0.0.1:11434/api/version"))["version"] == NEW

    again = lab.playbook("servers.yml", limit=HOST, extra_vars=common)
    assert again.rc == 0 and again.stats[HOST]["changed"] == 0, again.output[-4000:]

    # a new version: unpacked by the role, then the ROCm archive added, before it is switched to
    fresh = lab.playbook("servers.yml", limit=HOST, extra_vars=dict(
        common, ollama_server_version=OLD, ollama_server_hsa_override_gfx_version="11.0.0"))
    assert fresh.rc == 0, fresh.output[-6000:]
    assert "not ROCm" in sh(lab, HOST, "cat /opt/ollama/versions/%s/lib/ollama/rocm/STAND-IN.txt" % OLD)
    assert sh(lab, HOST, "readlink /opt/ollama/current").strip() == "/opt/ollama/versions/%s" % OLD
    assert "HSA_OVERRIDE_GFX_VERSION=11.0.0" in sh(lab, HOST, "cat /etc/systemd/system/ollama.service.d/10-environment.conf")
    assert json.loads(sh(lab, HOST, "curl -fsS http://127.0.0.1:11434/api/version"))["version"] == OLD
