"""GPU servers on the lab fleet: the role's GPU branch, its early failure, the report, the fit check, the ROCm and
MLX archives.

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
MLX_ARCHIVE = "ollama-linux-amd64-mlx.tar.zst"
FIXTURES = REPO / "tests" / "unit" / "fixtures" / "gpu" / "nvidia"
STANDIN = "/usr/local/bin/nvidia-smi"
LISTED = "constructed_nvidia-smi-L_two-gpus.txt"
# The GPU guard's stand-in driver on lab2 (read by the wait instead of /proc and /dev through OLLAMA_GPU_WAIT_ROOT,
# given to the unit with the role's environment): the recorded /proc/driver/nvidia/version and empty device nodes.
DRIVER_ROOT = "/var/lib/llmops-gpu-standin"
GUARD = {"ollama_server_environment": {"OLLAMA_GPU_WAIT_ROOT": DRIVER_ROOT}, "ollama_server_gpu_wait_seconds": 10}


def sh(lab, host, command, check=True):
    """Run a shell command on a lab host; returns its output."""
    return lab.ssh(host, command, check=check)


def standin_script(sample, rc):
    return ("#!/bin/sh\n"
            "# RECORDED-OUTPUT STAND-IN for nvidia-smi, installed by tests/fleet/test_gpu.py: not an NVIDIA tool.\n"
            "# It prints tests/unit/fixtures/gpu/nvidia/%s (a real nvidia-smi output; source in the README there),\n"
            "# and for -L (the GPU guard's question) %s when that exits 0.\n"
            "if [ \"${1:-}\" = -L ] && [ %d -eq 0 ]; then\ncat <<'LISTED'\n%sLISTED\nexit 0\nfi\n"
            "cat <<'RECORDED'\n%sRECORDED\nexit %d\n"
            % (sample, LISTED, rc, (FIXTURES / LISTED).read_text(), (FIXTURES / sample).read_text(), rc))


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


def _standin_driver(lab):
    version = (FIXTURES / "neofetch-876_proc-driver-nvidia-version.txt").read_text()
    sh(lab, HOST, "mkdir -p %s/proc/driver/nvidia %s/dev && touch %s/dev/nvidia0 %s/dev/nvidiactl && "
                  "cat > %s/proc/driver/nvidia/version <<'RECORDED'\n%sRECORDED\nchmod -R a+rX %s"
                  % ((DRIVER_ROOT,) * 5 + (version, DRIVER_ROOT)))


def _active_with_new_pid(lab, old_pid, seconds=60):
    """Whether the server runs, with a main process other than old_pid, within `seconds`."""
    return sh(lab, HOST, "for i in $(seq %d); do test \"$(systemctl is-active ollama)\" = active && "
                         "test \"$(systemctl show -p MainPID --value ollama)\" != %s && "
                         "curl -fsS http://127.0.0.1:11434/api/version >/dev/null && echo up && exit 0; sleep 1; done"
                         % (seconds, old_pid), check=False).strip() == "up"


def test_gpu_branch_with_recorded_nvidia_smi(lab):
    """The GPU branch, and its GPU guard (docs/hardware.md): the unit waits for the (stand-in) driver before it
    starts, fails with what is missing when it does not come, starts when it does, and the sleep hook restarts it
    after a resume. Then the role, run again without the stand-ins, removes the guard (a host without GPUs)."""
    _standin_driver(lab)
    try:
        with NvidiaStandIn(lab, "triton-8070_two-gpus.csv"):
            run = lab.playbook("gpu_servers.yml", limit=HOST, extra_vars=GUARD)
            report = lab.playbook("report.yml", limit="%s,localhost" % HOST)
            _check_the_gpu_guard(lab)
    finally:
        sh(lab, HOST, "rm -rf %s" % DRIVER_ROOT, check=False)
    after = lab.playbook("servers.yml", limit=HOST)
    assert after.rc == 0, after.output[-6000:]
    assert "ollama-gpu-wait" not in sh(lab, HOST, "systemctl cat ollama")
    assert sh(lab, HOST, "ls /usr/lib/systemd/system-sleep/ollama /opt/ollama/bin/ollama-gpu-wait 2>&1",
              check=False).count("No such file") == 2
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


def _check_the_gpu_guard(lab):
    unit = sh(lab, HOST, "systemctl cat ollama")
    assert "ExecStartPre=/opt/ollama/bin/ollama-gpu-wait 10 nvidia" in unit and "TimeoutStartSec=70" in unit
    assert 'Environment="OLLAMA_GPU_WAIT_ROOT=%s"' % DRIVER_ROOT in unit
    assert sh(lab, HOST, "stat -c '%U %a' /opt/ollama/bin/ollama-gpu-wait /usr/lib/systemd/system-sleep/ollama") == (
        "root 755\nroot 755\n")
    # the driver gone: the start waits 10 s, fails, names what is missing; systemd tries again (Restart=always)
    since = sh(lab, HOST, "date +%s").strip()
    sh(lab, HOST, "mv %s/proc/driver/nvidia/version %s/version.away" % (DRIVER_ROOT, DRIVER_ROOT))
    pid = _main_pid(lab)
    sh(lab, HOST, "systemctl restart ollama", check=False)
    journal = sh(lab, HOST, "journalctl -u ollama --since @%s --no-pager -o cat" % since)
    assert "ollama-gpu-wait: waiting up to 10s for the GPU driver (nvidia)" in journal, journal[-3000:]
    assert "ollama-gpu-wait: gave up after 1" in journal  # 10 or 11 s: whole seconds
    assert ("s: the GPU driver is not ready, missing nvidia: %s/proc/driver/nvidia/version (the nvidia kernel module "
            "is not loaded)." % DRIVER_ROOT) in journal
    assert sh(lab, HOST, "systemctl is-active ollama", check=False).strip() in ("activating", "failed")
    # the driver back: a retry of systemd's starts the server
    sh(lab, HOST, "mv %s/version.away %s/proc/driver/nvidia/version" % (DRIVER_ROOT, DRIVER_ROOT))
    assert _active_with_new_pid(lab, pid, seconds=40), sh(lab, HOST, "systemctl status ollama --no-pager", check=False)
    # a resume: the sleep hook restarts the running server
    pid = _main_pid(lab)
    sh(lab, HOST, "/usr/lib/systemd/system-sleep/ollama pre suspend")
    assert _main_pid(lab) == pid
    sh(lab, HOST, "/usr/lib/systemd/system-sleep/ollama post suspend")
    assert _active_with_new_pid(lab, pid, seconds=30)


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


def _mlx_standin_archive(version, dest):
    """An MLX archive STAND-IN with the layout of Ollama's: its release workflow (.github/workflows/release.yaml) puts
    the lib/ollama/mlx* members of its amd64 build in ollama-linux-amd64-mlx.tar.zst, with `tar c -T <list> --owner 0
    --group 0 | zstd`, and its MLX build installs into lib/ollama/mlx_cuda_v13 (Dockerfile, cmake/mlx/). So: the
    folder lib/ollama/mlx_cuda_v13 and its files, no entries for lib/ or lib/ollama/. Its libmlx.so is a text file, not
    MLX; there is no libmlxc.so, the library Ollama's server loads from lib/ollama/mlx_* when it starts, so the server
    never loads a stand-in (its MLX stays unavailable: these tests are about the role's handling of the archive)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "lib" / "ollama" / "mlx_cuda_v13"
        (folder / "include").mkdir(parents=True)
        note = "Stand-in for the MLX libraries of Ollama %s, made by tests/fleet/test_gpu.py: not MLX.\n" % version
        (folder / "libmlx.so").write_text(note)
        (folder / "include" / "STAND-IN.txt").write_text(note)
        with open(str(dest), "wb") as out:
            tar = subprocess.Popen(["tar", "c", "-T", "-", "--owner", "0", "--group", "0"], cwd=tmp,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            zstd = subprocess.Popen(["zstd", "-q"], stdin=tar.stdout, stdout=out)
            tar.stdout.close()
            tar.communicate(b"lib/ollama/mlx_cuda_v13\n")
            assert zstd.wait() == 0 and tar.returncode == 0


def _rocm_standin_mirror(versions, prefix="gputest", mlx=False):
    """A mirror directory with the real release archives and a ROCm archive STAND-IN (official layout,
    lib/ollama/rocm/, holding only a note: not ROCm), and with mlx an MLX archive STAND-IN, all listed in its
    sha256sum.txt."""
    name = "%s-%d" % (prefix, os.getpid())
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
        if mlx:
            _mlx_standin_archive(version, vdir / MLX_ARCHIVE)
        sums = "".join("%s  %s\n" % (hashlib.sha256(p.read_bytes()).hexdigest(), p.name)
                       for p in sorted(vdir.glob("*.tar.zst")))
        (vdir / "sha256sum.txt").write_text(sums)
    return name, root


def _main_pid(lab):
    return sh(lab, HOST, "systemctl show -p MainPID --value ollama").strip()


def _changed_tasks(output, host):
    """The titles of the tasks and handlers that changed `host`, in the order they ran."""
    titles, title = [], None
    for line in output.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            title = line.split("[", 1)[1].rsplit("]", 1)[0]
        elif line.startswith("changed: [%s]" % host) and title:
            titles.append(title)
    return titles


def _answers(lab):
    """The version the server answers, waiting for it (the role's handler restarts it at the end of the play)."""
    return json.loads(sh(lab, HOST, "curl -fsS --retry 30 --retry-delay 1 --retry-connrefused "
                                    "http://127.0.0.1:11434/api/version"))["version"]


def _version_tree(lab, version):
    """Every file and folder of a version directory, with its inode and mode."""
    return sh(lab, HOST, "cd /opt/ollama/versions/%s && find . -printf '%%p %%i %%m\\n' | sort" % version)


@pytest.fixture
def mlx_mirror(lab):
    """Two stand-in mirrors: `good`, the real release archives with ROCm and MLX archive STAND-INS for both lab
    versions, listed in its sha256sum.txt; `damaged`, the same sha256sum.txt with a damaged MLX archive of NEW."""
    name, root = _rocm_standin_mirror([NEW, OLD], prefix="mlxtest", mlx=True)
    damaged = root.with_name(name + "-damaged") / ("v" + NEW)
    damaged.mkdir(parents=True)
    os.link(str(root / ("v" + NEW) / ollama_build.ASSET), str(damaged / ollama_build.ASSET))
    shutil.copy(str(root / ("v" + NEW) / "sha256sum.txt"), str(damaged / "sha256sum.txt"))
    good = (root / ("v" + NEW) / MLX_ARCHIVE).read_bytes()
    (damaged / MLX_ARCHIVE).write_bytes(good[:-16] + b"\0" * 16)
    base = "%s/%s" % (lab.site["mirror_url"], name)
    yield {"good": base, "damaged": base + "-damaged"}
    # leave lab2 as found: the version in use without the stand-ins, no OLD version, no cached stand-ins
    restore = lab.playbook("servers.yml", limit=HOST)
    sh(lab, HOST, "rm -rf /opt/ollama/versions/{new}/lib/ollama/mlx_cuda_v13 /opt/ollama/versions/{new}/lib/ollama/rocm "
                  "/opt/ollama/versions/{new}/.{mlx}.sha256 /opt/ollama/versions/{new}/.ollama-linux-amd64-rocm.tar.zst.sha256 "
                  "/opt/ollama/versions/{old} /var/cache/ollama-archives/*/{mlx} "
                  "/var/cache/ollama-archives/*/ollama-linux-amd64-rocm.tar.zst; "
                  "rmdir /var/cache/ollama-archives/{new} /var/cache/ollama-archives/{old} 2>/dev/null"
       .format(new=NEW, old=OLD, mlx=MLX_ARCHIVE), check=False)
    shutil.rmtree(str(root), ignore_errors=True)
    shutil.rmtree(str(root.with_name(name + "-damaged")), ignore_errors=True)
    assert restore.rc == 0, restore.output[-4000:]


def test_mlx_and_rocm_archives_added_verified_and_kept_by_each_version(lab, mlx_mirror):
    """ollama_server_mlx on lab2 (x86_64), from STAND-IN mirrors (see _mlx_standin_archive: the archives have the
    real layout and are not MLX), with the ROCm archive forced on (ollama_server_gpu_archive: rocm, as on an AMD
    host: lab2 has no AMD GPU): predicted in check mode, refused when damaged with the running version untouched,
    both added to the version in use (restarted once), a no-op again; both added to the other lab version before the
    switch to it (with HSA_OVERRIDE_GFX_VERSION); a rollback keeps each version's own; turned off, they stay."""
    vdir, odir = "/opt/ollama/versions/%s" % NEW, "/opt/ollama/versions/%s" % OLD
    on = {"ollama_server_mlx": True, "ollama_server_download_base_url": mlx_mirror["good"]}
    both = dict(on, ollama_server_gpu_archive="rocm")
    sums = {v: sh(lab, HOST, "curl -fsS %s/v%s/sha256sum.txt" % (mlx_mirror["good"], v)) for v in (NEW, OLD)}
    before, pid = _version_tree(lab, NEW), _main_pid(lab)
    assert "mlx_cuda_v13" not in before

    check = lab.playbook("servers.yml", limit=HOST, extra_vars=on, check=True)
    assert check.rc == 0 and check.stats[HOST]["changed"] > 0, check.output[-6000:]
    assert "Would add %s %s from %s/v%s/%s" % (MLX_ARCHIVE, NEW, mlx_mirror["good"], NEW, MLX_ARCHIVE) in check.output
    assert _version_tree(lab, NEW) == before and _main_pid(lab) == pid

    damaged = lab.playbook("servers.yml", limit=HOST, extra_vars=dict(
        on, ollama_server_download_base_url=mlx_mirror["damaged"]))
    assert damaged.rc != 0 and damaged.stats[HOST]["failed"] == 1, damaged.output[-6000:]
    assert ("Could not get a verified %s %s from %s/v%s/%s: its sha256 is "
            % (MLX_ARCHIVE, NEW, mlx_mirror["damaged"], NEW, MLX_ARCHIVE)) in damaged.output, damaged.output[-6000:]
    assert "(checksum mismatch). Nothing was installed; the running version is unchanged." in damaged.output
    assert _version_tree(lab, NEW) == before and _main_pid(lab) == pid
    assert sh(lab, HOST, "readlink /opt/ollama/current").strip() == vdir and _answers(lab) == NEW

    run = lab.playbook("servers.yml", limit=HOST, extra_vars=both)
    assert run.rc == 0, run.output[-6000:]
    assert "Ollama %s" % NEW in sh(lab, HOST, "cat %s/lib/ollama/mlx_cuda_v13/libmlx.so" % vdir)
    assert "not ROCm" in sh(lab, HOST, "cat %s/lib/ollama/rocm/STAND-IN.txt" % vdir)
    rocm_marker = sh(lab, HOST, "cat %s/.ollama-linux-amd64-rocm.tar.zst.sha256" % vdir).strip()
    assert "%s  ollama-linux-amd64-rocm.tar.zst\n" % rocm_marker in sums[NEW]
    assert _changed_tasks(run.output, HOST).count("llmops.ollama.server : Restart ollama") == 1
    # lab2 applies umask 027: the archive's folders are opened to the service user all the same
    assert sh(lab, HOST, "stat -c %%a %s/lib/ollama/mlx_cuda_v13 %s/lib/ollama/mlx_cuda_v13/include" % (vdir, vdir)
              ).split() == ["755", "755"]
    marker = sh(lab, HOST, "cat %s/.%s.sha256" % (vdir, MLX_ARCHIVE)).strip()
    assert "%s  %s\n" % (marker, MLX_ARCHIVE) in sums[NEW]
    assert _main_pid(lab) != pid  # the running version was restarted on its new libraries
    assert _answers(lab) == NEW

    again = lab.playbook("servers.yml", limit=HOST, extra_vars=both)
    assert again.rc == 0 and again.stats[HOST]["changed"] == 0, again.output[-4000:]
    assert "llmops.ollama._install : " not in again.output  # the look found the marker: no step ran
    kept = _version_tree(lab, NEW)

    # the other version, with the ROCm archive too: unpacked, both archives added, then switched to (once restarted)
    upgrade = lab.playbook("servers.yml", limit=HOST, extra_vars=dict(
        both, ollama_server_version=OLD, ollama_server_hsa_override_gfx_version="11.0.0"))
    assert upgrade.rc == 0, upgrade.output[-6000:]
    changed = _changed_tasks(upgrade.output, HOST)
    adds = [i for i, title in enumerate(changed) if title == "llmops.ollama._install : Add the files to the directory"]
    assert len(adds) == 2 and max(adds) < changed.index("llmops.ollama.server : Switch the current version"), changed
    assert "llmops.ollama.server : Restart ollama" not in changed, changed  # the handler: never for a version not in use
    assert "Ollama %s" % OLD in sh(lab, HOST, "cat %s/lib/ollama/mlx_cuda_v13/libmlx.so" % odir)
    assert "not ROCm" in sh(lab, HOST, "cat %s/lib/ollama/rocm/STAND-IN.txt" % odir)
    for asset in (MLX_ARCHIVE, "ollama-linux-amd64-rocm.tar.zst"):
        assert "%s  %s\n" % (sh(lab, HOST, "cat %s/.%s.sha256" % (odir, asset)).strip(), asset) in sums[OLD]
    assert sh(lab, HOST, "readlink /opt/ollama/current").strip() == odir and _answers(lab) == OLD
    assert "HSA_OVERRIDE_GFX_VERSION=11.0.0" in sh(lab, HOST, "cat /etc/systemd/system/ollama.service.d/10-environment.conf")
    assert _version_tree(lab, NEW) == kept

    # back to NEW: its own MLX archive, the same files, nothing fetched or added
    back = lab.playbook("servers.yml", limit=HOST, extra_vars=both)
    assert back.rc == 0, back.output[-6000:]
    assert "llmops.ollama._install : Add the files to the directory" not in _changed_tasks(back.output, HOST)
    assert _version_tree(lab, NEW) == kept
    assert sh(lab, HOST, "cat %s/.%s.sha256" % (vdir, MLX_ARCHIVE)).strip() == marker
    assert "Ollama %s" % OLD in sh(lab, HOST, "cat %s/lib/ollama/mlx_cuda_v13/libmlx.so" % odir)
    assert sh(lab, HOST, "readlink /opt/ollama/current").strip() == vdir and _answers(lab) == NEW

    # turned off: nothing to do, the archive stays in the version that has it
    off = lab.playbook("servers.yml", limit=HOST)
    assert off.rc == 0 and off.stats[HOST]["changed"] == 0, off.output[-4000:]
    assert _version_tree(lab, NEW) == kept
