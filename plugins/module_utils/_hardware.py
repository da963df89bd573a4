# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a host has for running models: CPU, memory, disk where models live, GPUs.

Every section says where its figures came from (``source``). psutil is used when installed; on Linux the
same figures come from /proc and statvfs without it, so a managed host needs nothing but Python. GPU tools
are run through a `run_command(argv) -> (rc, stdout, stderr)` callable so tests can feed recorded outputs.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import platform

try:
    import psutil

    HAS_PSUTIL = True
except ImportError:
    psutil = None
    HAS_PSUTIL = False

PSUTIL_HINT = "install psutil on the managed host (apt-get install python3-psutil, or pip install psutil)"
NVIDIA_QUERY = "name,uuid,memory.total,memory.free,driver_version,compute_cap"
MIB = 1024 * 1024


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except (IOError, OSError):
        return None


def cpu_info():
    info = dict(cores=None, threads=os.cpu_count(), model=platform.processor() or None, flags={}, source="os")
    text = _read("/proc/cpuinfo")
    if text:
        physical, flags = set(), set()
        for line in text.splitlines():
            key, _sep, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "model name" and not info.get("cpuinfo_model"):
                info["cpuinfo_model"] = value
            elif key == "flags" and not flags:
                flags = set(value.split())
            elif key in ("physical id", "core id"):
                physical.add((key, value))
        if info.get("cpuinfo_model"):
            info["model"] = info.pop("cpuinfo_model")
        info["flags"] = dict(avx="avx" in flags, avx2="avx2" in flags, avx512="avx512f" in flags)
        info["source"] = "/proc/cpuinfo"
    if HAS_PSUTIL:
        info["cores"] = psutil.cpu_count(logical=False)
    if not info["cores"]:
        info["cores"] = info["threads"]
    return info


def memory_info():
    if HAS_PSUTIL:
        vm, sw = psutil.virtual_memory(), psutil.swap_memory()
        return dict(total_bytes=vm.total, available_bytes=vm.available, swap_total_bytes=sw.total,
                    swap_free_bytes=sw.free, source="psutil")
    text = _read("/proc/meminfo")
    if text is None:
        return dict(error="cannot read memory figures: " + PSUTIL_HINT)
    values = {}
    for line in text.splitlines():
        key, _sep, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key] = int(parts[0]) * 1024
    return dict(total_bytes=values.get("MemTotal"), available_bytes=values.get("MemAvailable", values.get("MemFree")),
                swap_total_bytes=values.get("SwapTotal"), swap_free_bytes=values.get("SwapFree"),
                source="/proc/meminfo")


def disk_info(path):
    """Disk figures for `path`, or for its nearest existing parent when it does not exist yet."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe) and probe != os.path.dirname(probe):
        probe = os.path.dirname(probe)
    try:
        st = os.statvfs(probe)
    except (OSError, AttributeError) as exc:
        return dict(path=path, error="cannot read disk figures for %s: %s" % (path, exc))
    return dict(path=path, measured_at=probe, total_bytes=st.f_blocks * st.f_frsize,
                free_bytes=st.f_bavail * st.f_frsize, source="statvfs")


def _number(text):
    text = text.strip()
    try:
        return float(text) if "." in text else int(text)
    except ValueError:
        return None


def parse_nvidia_smi(output):
    """Parse `nvidia-smi --query-gpu=NVIDIA_QUERY --format=csv,noheader,nounits` output."""
    gpus = []
    for line in output.splitlines():
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 6:
            continue
        total, free = _number(fields[2]), _number(fields[3])
        gpus.append(dict(
            vendor="nvidia", name=fields[0], uuid=fields[1],
            vram_total_bytes=int(total * MIB) if isinstance(total, (int, float)) else None,
            vram_free_bytes=int(free * MIB) if isinstance(free, (int, float)) else None,
            driver_version=fields[4], compute_capability=fields[5] if fields[5] not in ("[N/A]", "") else None,
            source="nvidia-smi"))
    return gpus


def nvidia_gpus(run_command, which):
    """(gpus, state) where state says whether the driver tool is there and working."""
    tool = which("nvidia-smi")
    if not tool:
        return [], dict(tool="nvidia-smi", present=False)
    rc, out, err = run_command([tool, "--query-gpu=" + NVIDIA_QUERY, "--format=csv,noheader,nounits"])
    if rc != 0:
        return [], dict(tool="nvidia-smi", present=True, working=False,
                        error=(err or out or "exit code %d" % rc).strip()[:300])
    return parse_nvidia_smi(out), dict(tool="nvidia-smi", present=True, working=True)


def amd_gpus_sysfs(drm_root="/sys/class/drm"):
    """AMD GPUs from sysfs (amdgpu driver): name, VRAM total/used, gfx target where exposed."""
    gpus = []
    try:
        cards = sorted(c for c in os.listdir(drm_root) if c.startswith("card") and "-" not in c)
    except OSError:
        return gpus
    for card in cards:
        dev = os.path.join(drm_root, card, "device")
        if (_read(os.path.join(dev, "vendor")) or "").strip() != "0x1002":
            continue
        total = _number(_read(os.path.join(dev, "mem_info_vram_total")) or "")
        used = _number(_read(os.path.join(dev, "mem_info_vram_used")) or "")
        gpus.append(dict(
            vendor="amd", name=(_read(os.path.join(dev, "product_name")) or "").strip() or card,
            uuid=(_read(os.path.join(dev, "unique_id")) or "").strip() or None,
            vram_total_bytes=total, vram_free_bytes=(total - used) if total is not None and used is not None else None,
            driver_version=None, compute_capability=None, source=os.path.join(drm_root, card)))
    return gpus


def gather(models_path, run_command, which):
    gpus, nvidia_state = nvidia_gpus(run_command, which)
    gpus.extend(amd_gpus_sysfs())
    return dict(cpu=cpu_info(), memory=memory_info(), disk=disk_info(models_path), gpus=gpus,
                gpu_tools=[nvidia_state], psutil=HAS_PSUTIL)
