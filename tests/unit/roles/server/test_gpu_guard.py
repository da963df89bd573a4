"""The server role's GPU guard (docs/hardware.md): the wait for the GPU driver (roles/server/files/ollama-gpu-wait,
run by the unit as ExecStartPre=) and the systemd-sleep hook (templates/sleep-hook.sh.j2), run here as systemd runs
them, with /bin/sh.

The wait reads the trees of tests/unit/fixtures/gpu/sysfs (recorded and constructed, sources in the README there)
below OLLAMA_GPU_WAIT_ROOT, and asks a stand-in nvidia-smi on PATH that prints a recorded or constructed output
(fixtures/gpu/nvidia). No GPU and no driver: what needs them (a driver loading late, the unit's device list, a real
suspend) is for a GPU host (docs/hardware.md says which)."""
import os
import shutil
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path

import jinja2
import pytest

from ansible_collections.llmops.ollama.tests.unit.fixtures.gpu.recorded import FIXTURES, tree

ROLE = Path(__file__).resolve().parents[4] / "roles" / "server"
WAIT = ROLE / "files" / "ollama-gpu-wait"
SYSTEM_PATH = "/usr/bin:/bin"

pytestmark = pytest.mark.skipif(shutil.which("nvidia-smi", path=SYSTEM_PATH) is not None,
                                reason="a real nvidia-smi is installed here")


def stand_in(folder, name, sample=None, rc=0):
    """A stand-in `name` in `folder` that records its arguments and prints a fixture (not a real tool)."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / name
    printed = "cat '%s'\n" % (FIXTURES / sample) if sample else ""
    script.write_text("#!/bin/sh\necho \"$*\" >> '%s.calls'\n%sexit %d\n" % (script, printed, rc))
    script.chmod(0o755)
    return script


def wait(root, *args, path=None, timeout=30):
    env = dict(os.environ, PATH=("%s:%s" % (path, SYSTEM_PATH)) if path else SYSTEM_PATH,
               OLLAMA_GPU_WAIT_ROOT=str(root), OLLAMA_GPU_WAIT_INTERVAL="0.2")
    started = time.monotonic()
    proc = subprocess.run(["/bin/sh", str(WAIT)] + [str(a) for a in args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    return proc, time.monotonic() - started


def test_the_script_is_executable_and_posix():
    assert WAIT.stat().st_mode & stat.S_IXOTH
    assert WAIT.read_text().startswith("#!/bin/sh\n")
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", "-s", "sh", str(WAIT)], check=True)


def test_nvidia_ready_without_nvidia_smi(tmp_path):
    root = tree("constructed_nvidia-loaded-with-dev-nodes", tmp_path)
    proc, took = wait(root, 5, "nvidia")
    assert proc.returncode == 0 and took < 2, proc.stderr
    assert proc.stderr == ""


def test_nvidia_ready_with_nvidia_smi_listing_the_gpus(tmp_path):
    root = tree("constructed_nvidia-loaded-with-dev-nodes", tmp_path / "root")
    smi = stand_in(tmp_path / "bin", "nvidia-smi", "nvidia/constructed_nvidia-smi-L_two-gpus.txt")
    proc, took = wait(root, 5, "nvidia", path=smi.parent)
    assert proc.returncode == 0 and took < 2, proc.stderr
    assert Path(str(smi) + ".calls").read_text() == "-L\n"


def test_nvidia_smi_without_the_driver_is_waited_for_then_named(tmp_path):
    root = tree("constructed_nvidia-loaded-with-dev-nodes", tmp_path / "root")
    smi = stand_in(tmp_path / "bin", "nvidia-smi", "nvidia/nvidia-docker-988_driver-not-loaded.txt", rc=9)
    proc, took = wait(root, 2, "nvidia", path=smi.parent)
    assert proc.returncode == 1 and 1 <= took < 6, proc.stderr  # whole seconds (date +%s)
    assert "waiting up to 2s for the GPU driver (nvidia)" in proc.stderr
    assert ("missing nvidia: a GPU in 'nvidia-smi -L' (exit code 9: NVIDIA-SMI has failed because it couldn't "
            "communicate with the NVIDIA driver.") in proc.stderr
    assert "The server does not start (it would run models on the CPU)" in proc.stderr


def test_driver_not_loaded_times_out_naming_what_is_missing(tmp_path):
    root = tree("constructed_nvidia-no-driver", tmp_path)
    proc, took = wait(root, 2, "nvidia")
    assert proc.returncode == 1 and 1 <= took < 6, proc.stderr  # whole seconds (date +%s)
    assert ("gave up after 2s: the GPU driver is not ready, missing nvidia: %s/proc/driver/nvidia/version "
            "(the nvidia kernel module is not loaded)." % root) in proc.stderr


def test_driver_module_without_device_nodes_or_nvidia_smi(tmp_path):
    root = tree("constructed_nvidia-module-without-smi", tmp_path)
    proc, _took = wait(root, 1, "nvidia")
    assert proc.returncode == 1
    assert "missing nvidia: %s/dev/nvidia[0-9]* (no GPU device node; nvidia-smi is not installed)" % root in proc.stderr


def test_driver_that_comes_up_during_the_wait(tmp_path):
    root = Path(tree("constructed_nvidia-no-driver", tmp_path))
    (root / "dev").mkdir()
    (root / "dev" / "nvidia0").write_text("")

    def load():
        time.sleep(1)
        (root / "proc" / "driver" / "nvidia").mkdir(parents=True)
        (root / "proc" / "driver" / "nvidia" / "version").write_text(
            (FIXTURES / "nvidia" / "neofetch-876_proc-driver-nvidia-version.txt").read_text())

    loader = threading.Thread(target=load)
    loader.start()
    proc, took = wait(root, 10, "nvidia")
    loader.join()
    assert proc.returncode == 0 and 1 <= took < 5, proc.stderr
    assert "waiting up to 10s for the GPU driver (nvidia)" in proc.stderr
    assert "GPU driver ready (nvidia) after " in proc.stderr


def test_a_late_driver_whose_device_cannot_be_opened_fails_the_start(tmp_path):
    """On a host the unit's device list (made when it started) would refuse the node; here a socket, which cannot be
    opened either, stands for it."""
    root = Path(tree("constructed_nvidia-no-driver", tmp_path))
    (root / "dev").mkdir()
    (root / "dev" / "nvidia0").write_text("")
    here = os.getcwd()
    os.chdir(str(root / "dev"))
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind("nvidiactl")  # relative: a socket path is short
    finally:
        os.chdir(here)

    def load():
        time.sleep(1)
        (root / "proc" / "driver" / "nvidia").mkdir(parents=True)
        (root / "proc" / "driver" / "nvidia" / "version").write_text("NVRM version: stand-in\n")

    loader = threading.Thread(target=load)
    loader.start()
    try:
        proc, took = wait(root, 10, "nvidia")
    finally:
        loader.join()
        sock.close()
    assert proc.returncode == 1 and took < 5, proc.stderr
    assert ("nvidia: the driver came up after the unit started and %s/dev/nvidiactl cannot be opened" % root
            in proc.stderr)
    assert "exiting so that systemd starts the unit again (Restart=)" in proc.stderr


def test_amd_ready_with_the_recorded_kfd_topology(tmp_path):
    root = tree("navi31_kfd-recorded-ollama-2411_drm-constructed", tmp_path)
    proc, took = wait(root, 5, "amd")
    assert proc.returncode == 0 and took < 2, proc.stderr


def test_amd_apu_node_counts_as_a_gpu(tmp_path):
    root = Path(tree("strix-halo-apu_kfd-recorded-lemonade-419", tmp_path))
    (root / "dev").mkdir()
    (root / "dev" / "kfd").write_text("")
    proc, _took = wait(root, 5, "amd")
    assert proc.returncode == 0, proc.stderr


def test_amd_cpu_node_only_is_not_a_gpu(tmp_path):
    """The recorded CPU node of the Navi 31 host alone (simd_count 0), with /dev/kfd: the driver has no GPU yet."""
    root = Path(tree("navi31_kfd-recorded-ollama-2411_drm-constructed", tmp_path))
    shutil.rmtree(str(root / "sys" / "class" / "kfd" / "kfd" / "topology" / "nodes" / "1"))
    proc, _took = wait(root, 1, "amd")
    assert proc.returncode == 1
    assert ("missing amd: a GPU node in %s/sys/class/kfd/kfd/topology/nodes (simd_count and drm_render_minor above 0)"
            % root) in proc.stderr


def test_amd_without_amdgpu_names_dev_kfd(tmp_path):
    root = tree("constructed_amd-no-amdgpu", tmp_path)
    proc, _took = wait(root, 1, "amd")
    assert proc.returncode == 1
    assert "missing amd: %s/dev/kfd (the amdgpu driver has not made it)" % root in proc.stderr


def test_both_vendors_must_be_ready(tmp_path):
    root = tree("navi31_kfd-recorded-ollama-2411_drm-constructed", tmp_path)
    proc, _took = wait(root, 1, "amd", "nvidia")
    assert proc.returncode == 1
    assert "missing nvidia: %s/proc/driver/nvidia/version" % root in proc.stderr and "amd:" not in proc.stderr


@pytest.mark.parametrize("args", [[], ["x", "nvidia"], ["5"], ["5", "intel"]])
def test_usage(tmp_path, args):
    proc, _took = wait(tmp_path, *args)
    assert proc.returncode == 2 and proc.stderr.startswith("ollama-gpu-wait: ")


# -- the sleep hook ---------------------------------------------------------------------------------------------------
def hook(tmp_path):
    env = jinja2.Environment(keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    text = env.from_string((ROLE / "templates" / "sleep-hook.sh.j2").read_text()).render(
        ansible_managed="Ansible managed", __ollama_server_service="ollama.service")
    script = tmp_path / "ollama"
    script.write_text(text)
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("when", ["pre", "post"])
@pytest.mark.parametrize("kind", ["suspend", "hibernate"])
def test_sleep_hook_restarts_the_server_after_a_resume_only(tmp_path, when, kind):
    systemctl = stand_in(tmp_path / "bin", "systemctl")
    proc = subprocess.run([str(hook(tmp_path)), when, kind], capture_output=True, text=True, check=False,
                          env=dict(os.environ, PATH="%s:%s" % (systemctl.parent, SYSTEM_PATH)), timeout=10)
    assert proc.returncode == 0
    calls = Path(str(systemctl) + ".calls")
    if when == "pre":
        assert not calls.exists() and proc.stderr == ""
    else:
        # the other instances of ollama@.service too (ollama_server_instances): systemctl expands the pattern
        assert calls.read_text() == "--no-block try-restart ollama.service ollama@*.service\n"
        assert proc.stderr == ("ollama: resumed from %s: restarting ollama.service and its other instances so that "
                               "it finds the GPU again\n" % kind)


def test_sleep_hook_says_when_the_restart_fails(tmp_path):
    systemctl = stand_in(tmp_path / "bin", "systemctl", rc=5)
    proc = subprocess.run([str(hook(tmp_path)), "post", "suspend"], capture_output=True, text=True, check=False,
                          env=dict(os.environ, PATH="%s:%s" % (systemctl.parent, SYSTEM_PATH)), timeout=10)
    assert proc.returncode == 0
    assert proc.stderr.endswith("ollama: systemctl try-restart ollama.service failed\n")
