# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a host has for running models: CPU, memory, disk where models live, GPUs and their drivers.

Every section has ``sources``: for each figure, where it was read (a file, ``statvfs``, ``psutil`` or a
tool's command line). Nothing needs installing on the managed host: psutil is used when it is there, else
the same figures come from /proc and statvfs.

GPUs are found the way Ollama finds them, without needing Ollama:

- NVIDIA: ``nvidia-smi --query-gpu=... --format=csv,nounits``, parsed by its header (so output with any
  column order or subset parses); drivers that do not know ``compute_cap`` are asked again without it.
  When nvidia-smi is missing or fails, the PCI bus (vendor 0x10de, display class), the ``/dev/nvidia*``
  nodes and ``/proc/driver/nvidia/version`` still tell that a GPU is there and which kernel driver runs.
- AMD: the amdgpu driver's sysfs, as Ollama reads it: KFD topology nodes
  (``/sys/class/kfd/kfd/topology/nodes/*/properties``: gfx target, PCI location, render node) joined to
  ``/sys/class/drm/renderD<minor>/device`` (``mem_info_vram_total``/``mem_info_vram_used``).
  ``rocm-smi --json`` adds the marketing name, and stands in for sysfs when sysfs cannot be read.

Tools run through a ``run_command(argv) -> (rc, stdout, stderr)`` callable and files are read below
``root``, so tests feed recorded tool outputs and recorded sysfs trees through the same code.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import csv
import glob
import json
import os
import platform
import re

try:
    import psutil

    HAS_PSUTIL = True
except ImportError:
    psutil = None
    HAS_PSUTIL = False

PSUTIL_HINT = "install psutil on the managed host (apt-get install python3-psutil, or pip install psutil)"
MIB = 1024 * 1024
UNITS = {"B": 1, "KIB": 1024, "MIB": MIB, "GIB": 1024 * MIB}

# Asked of nvidia-smi. The output is parsed by its header, so the order here does not matter.
NVIDIA_FIELDS = ("index", "name", "uuid", "pci.bus_id", "memory.total", "memory.free", "driver_version", "compute_cap")
NVIDIA_FIELD_ALIASES = {"gpu_name": "name", "gpu_uuid": "uuid", "gpu_bus_id": "pci.bus_id"}
NVIDIA_NA = ("", "n/a", "[n/a]", "[not supported]", "not supported", "[unknown error]", "[insufficient permissions]")
ROCM_SMI_ARGS = ("--showproductname", "--showmeminfo", "vram", "--json")

PCI_VENDORS = {"0x10de": "nvidia", "0x1002": "amd"}
KFD_NODES = "sys/class/kfd/kfd/topology/nodes"


def _path(root, path):
    return os.path.join(root or "/", path.lstrip("/"))


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except (IOError, OSError, UnicodeDecodeError):
        return None


def _int(text, base=10):
    if text is None:
        return None
    text = text.strip()
    try:
        return int(text, 16 if text.lower().startswith("0x") else base)
    except ValueError:
        return None


# -- CPU, memory, disk ---------------------------------------------------------------------------------

def parse_cpuinfo(text):
    """Model, physical cores, logical CPUs and the SIMD flags Ollama's CPU backends use, from /proc/cpuinfo."""
    model, flags, cores, logical = None, set(), set(), 0
    physical_id = None
    for line in text.splitlines():
        key, _sep, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key == "processor":
            logical += 1
            physical_id = None
        elif key == "model name" and not model:
            model = value
        elif key in ("flags", "features") and not flags:  # x86 "flags", arm64 "Features"
            flags = set(value.split())
        elif key == "physical id":
            physical_id = value
        elif key == "core id":
            cores.add((physical_id, value))
    info = dict(model=model, threads=logical or None, cores=len(cores) or None,
                flags=dict(avx="avx" in flags, avx2="avx2" in flags, avx512="avx512f" in flags,
                           fma="fma" in flags, f16c="f16c" in flags, asimd="asimd" in flags))
    return info


def cpu_info(root="/"):
    text = _read(_path(root, "/proc/cpuinfo"))
    info = parse_cpuinfo(text) if text else dict(model=None, threads=None, cores=None, flags={})
    src = "/proc/cpuinfo" if text else None
    sources = dict(model=src, threads=src, cores=src if info["cores"] else None, flags=src)
    info["architecture"] = platform.machine() or None
    sources["architecture"] = "uname"
    if not info["model"]:
        info["model"] = platform.processor() or None
        sources["model"] = "uname" if info["model"] else None
    if HAS_PSUTIL and root in (None, "/"):
        info["cores"] = psutil.cpu_count(logical=False) or info["cores"]
        sources["cores"] = "psutil"
    if not info["threads"]:
        info["threads"] = os.cpu_count()
        sources["threads"] = "os.cpu_count"
    if not info["cores"]:  # containers and arm64 often show no core ids: count logical CPUs
        info["cores"] = info["threads"]
        sources["cores"] = sources["threads"] + " (logical CPUs; no core ids shown)" if sources["threads"] else None
    info["sources"] = sources
    return info


def parse_meminfo(text):
    values = {}
    for line in text.splitlines():
        key, _sep, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key.strip()] = int(parts[0]) * (1024 if parts[1:2] == ["kB"] else 1)
    return values


def memory_info(root="/"):
    if HAS_PSUTIL and root in (None, "/"):
        vm, sw = psutil.virtual_memory(), psutil.swap_memory()
        info = dict(total_bytes=vm.total, available_bytes=vm.available, swap_total_bytes=sw.total,
                    swap_free_bytes=sw.free)
        info["sources"] = dict((k, "psutil") for k in info)
        return info
    text = _read(_path(root, "/proc/meminfo"))
    if text is None:
        return dict(total_bytes=None, available_bytes=None, swap_total_bytes=None, swap_free_bytes=None, sources={},
                    error="cannot read memory figures: " + PSUTIL_HINT)
    values = parse_meminfo(text)
    available_key = "MemAvailable" if "MemAvailable" in values else "MemFree"
    info = dict(total_bytes=values.get("MemTotal"), available_bytes=values.get(available_key),
                swap_total_bytes=values.get("SwapTotal"), swap_free_bytes=values.get("SwapFree"))
    info["sources"] = dict(total_bytes="/proc/meminfo MemTotal", available_bytes="/proc/meminfo " + available_key,
                           swap_total_bytes="/proc/meminfo SwapTotal", swap_free_bytes="/proc/meminfo SwapFree")
    return info


def disk_info(path):
    """Disk figures for `path`, or for its nearest existing parent when it does not exist yet."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe) and probe != os.path.dirname(probe):
        probe = os.path.dirname(probe)
    try:
        st = os.statvfs(probe)
    except (OSError, AttributeError) as exc:
        return dict(path=path, total_bytes=None, free_bytes=None, sources={},
                    error="cannot read disk figures for %s: %s" % (path, exc))
    source = "statvfs(%s)" % probe
    return dict(path=path, measured_at=probe, total_bytes=st.f_blocks * st.f_frsize,
                free_bytes=st.f_bavail * st.f_frsize, sources=dict(total_bytes=source, free_bytes=source))


# -- PCI ------------------------------------------------------------------------------------------------

def pci_display_devices(root="/"):
    """Display controllers (PCI class 0x03xxxx) of NVIDIA and AMD on the bus: {vendor: [device, ...]}."""
    found = {}
    for dev in sorted(glob.glob(_path(root, "/sys/bus/pci/devices/*"))):
        vendor = (_read(os.path.join(dev, "vendor")) or "").strip().lower()
        pci_class = (_read(os.path.join(dev, "class")) or "").strip().lower()
        if vendor not in PCI_VENDORS or not pci_class.startswith("0x03"):
            continue
        driver = os.path.join(dev, "driver")
        found.setdefault(PCI_VENDORS[vendor], []).append(dict(
            slot=os.path.basename(dev), vendor_id=vendor, device_id=(_read(os.path.join(dev, "device")) or "").strip(),
            pci_class=pci_class, kernel_driver=os.path.basename(os.path.realpath(driver)) if os.path.lexists(driver)
            else None, source=dev[len(root.rstrip("/")):] if root not in (None, "/") else dev))
    return found


# -- NVIDIA ---------------------------------------------------------------------------------------------

def _nvidia_value(text):
    text = (text or "").strip()
    return None if text.lower() in NVIDIA_NA else text


def _nvidia_bytes(text, unit):
    """'24576' with a [MiB] header, or '24576 MiB' from a query without nounits."""
    text = _nvidia_value(text)
    if text is None:
        return None
    match = re.match(r"^([0-9.]+)\s*([A-Za-z]*)$", text)
    if not match:
        return None
    factor = UNITS.get((match.group(2) or unit or "MiB").upper())
    if factor is None:
        return None
    return int(float(match.group(1)) * factor)


def _nvidia_key(column):
    match = re.match(r"^\s*([^\[]+?)\s*(?:\[([^\]]+)\])?\s*$", column)
    name = match.group(1).strip().lower() if match else column.strip().lower()
    return NVIDIA_FIELD_ALIASES.get(name, name), (match.group(2) if match else None)


def parse_nvidia_smi(output, fields=None):
    """Parse ``nvidia-smi --query-gpu=... --format=csv[,noheader][,nounits]`` output.

    With a header (the default here) columns are found by name, whatever was asked and in any order. For
    output recorded with ``noheader``, give the queried `fields` in order.
    """
    rows = list(csv.reader([line for line in output.splitlines() if line.strip()], skipinitialspace=True))
    if not rows:
        return []
    if fields is None:
        columns = [_nvidia_key(c) for c in rows.pop(0)]
    else:
        columns = [(NVIDIA_FIELD_ALIASES.get(f, f), None) for f in fields]
    gpus = []
    for row in rows:
        if len(row) < len(columns):
            continue
        values = dict((key, (value, unit)) for (key, unit), value in zip(columns, row))

        def text(key):
            return _nvidia_value(values.get(key, ("", None))[0])

        def size(key):
            value, unit = values.get(key, ("", None))
            return _nvidia_bytes(value, unit)

        index = text("index")
        gpu = dict(vendor="nvidia", index=int(index) if index and index.isdigit() else len(gpus), name=text("name"),
                   uuid=text("uuid"), pci_bus_id=text("pci.bus_id"), vram_total_bytes=size("memory.total"),
                   vram_free_bytes=size("memory.free"), driver_version=text("driver_version"),
                   compute_capability=text("compute_cap"), gfx_target=None)
        reported = ("name", "uuid", "pci_bus_id", "vram_total_bytes", "vram_free_bytes", "driver_version",
                    "compute_capability")
        gpu["sources"] = dict((k, "nvidia-smi --query-gpu") for k in reported if gpu[k] is not None)
        gpus.append(gpu)
    return gpus


def nvidia_query(tool, fields=NVIDIA_FIELDS):
    return [tool, "--query-gpu=" + ",".join(fields), "--format=csv,nounits"]


def _nvidia_kernel_version(root):
    """'550.54.14' from /proc/driver/nvidia/version (the kernel module, whether or not nvidia-smi is there)."""
    text = _read(_path(root, "/proc/driver/nvidia/version")) or ""
    match = re.search(r"Kernel Module(?: for [^ ]+)?\s+([0-9]+(?:\.[0-9]+)+)", text)
    return match.group(1) if match else None


def nvidia_gpus(run_command, which, root="/", pci=None):
    """(gpus, state): what nvidia-smi reports, and whether the hardware, kernel driver and tool are there."""
    pci = pci if pci is not None else pci_display_devices(root).get("nvidia", [])
    devices = sorted(p[len(root.rstrip("/")):] if root not in (None, "/") else p
                     for p in glob.glob(_path(root, "/dev/nvidia[0-9]*")))
    tool = which("nvidia-smi")
    state = dict(vendor="nvidia", pci_devices=pci, device_nodes=devices,
                 kernel_driver_version=_nvidia_kernel_version(root), tool="nvidia-smi", tool_path=tool,
                 tool_present=bool(tool), tool_working=None, compute_cap_query=None, driver_version=None,
                 error=None, sources=dict(pci_devices="/sys/bus/pci/devices", device_nodes="/dev/nvidia*",
                                          kernel_driver_version="/proc/driver/nvidia/version"))
    state["hardware_present"] = bool(pci or devices)
    if not tool:
        state["driver_version"] = state["kernel_driver_version"]
        return [], state
    fields = NVIDIA_FIELDS
    rc, out, err = run_command(nvidia_query(tool, fields))
    state["compute_cap_query"] = True
    if rc != 0 and "compute_cap" in (out or "") + (err or "") and "not a valid field" in (out or "") + (err or ""):
        # Drivers before compute_cap was added (R510) reject the field: ask again without it.
        state["compute_cap_query"] = False
        fields = tuple(f for f in NVIDIA_FIELDS if f != "compute_cap")
        rc, out, err = run_command(nvidia_query(tool, fields))
    if rc != 0:
        state.update(tool_working=False, driver_version=state["kernel_driver_version"],
                     error="%s (exit code %d)" % (" ".join((err or out or "").split())[:300] or "no output", rc))
        return [], state
    gpus = parse_nvidia_smi(out)
    state["tool_working"] = True
    state["hardware_present"] = state["hardware_present"] or bool(gpus)
    versions = [g["driver_version"] for g in gpus if g["driver_version"]]
    state["driver_version"] = versions[0] if versions else state["kernel_driver_version"]
    state["sources"]["driver_version"] = "nvidia-smi --query-gpu" if versions else "/proc/driver/nvidia/version"
    return gpus, state


# -- AMD ------------------------------------------------------------------------------------------------

def gfx_target(version):
    """KFD's gfx_target_version (major*10000 + minor*100 + stepping) as an LLVM target: 90010 -> gfx90a."""
    if not version:
        return None
    return "gfx%d%x%x" % (version // 10000, (version // 100) % 100, version % 100)


def parse_kfd_properties(text):
    values = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            number = _int(parts[1])
            if number is not None:
                values[parts[0]] = number
    return values


def _pci_slot(props):
    location = props.get("location_id")
    if not location:
        return None
    return "%04x:%02x:%02x.%x" % (props.get("domain", 0), location >> 8, (location >> 3) & 0x1f, location & 0x7)


def _drm_device_dir(root, props):
    """The DRM device directory of a KFD node: through its render node, else by PCI ids as Ollama matches."""
    minor = props.get("drm_render_minor")
    if minor:
        candidate = _path(root, "/sys/class/drm/renderD%d/device" % minor)
        if os.path.isdir(candidate):
            return candidate
    for dev in sorted(glob.glob(_path(root, "/sys/class/drm/card*/device"))):
        ids = (("vendor", props.get("vendor_id")), ("device", props.get("device_id")),
               ("unique_id", props.get("unique_id")))
        if all(want is None or want == 0 or _int(_read(os.path.join(dev, name)), 16) == want for name, want in ids):
            return dev
    return None


def amd_gpus_sysfs(root="/"):
    """AMD GPUs from the KFD topology and DRM sysfs: gfx target, VRAM total/free, PCI slot, render node."""
    gpus = []
    nodes = glob.glob(_path(root, KFD_NODES + "/*/properties"))
    for props_path in sorted(nodes, key=lambda p: _int(os.path.basename(os.path.dirname(p))) or 0):
        props = parse_kfd_properties(_read(props_path))
        if not props.get("gfx_target_version") or not props.get("simd_count"):
            continue  # a CPU node
        node = os.path.basename(os.path.dirname(props_path))
        rel = "/" + KFD_NODES + "/" + node + "/properties"
        dev = _drm_device_dir(root, props)
        total = used = name = None
        drm_rel = None
        if dev:
            drm_rel = "/" + os.path.relpath(dev, root or "/")
            total = _int(_read(os.path.join(dev, "mem_info_vram_total")))
            used = _int(_read(os.path.join(dev, "mem_info_vram_used")))
            name = ((_read(os.path.join(dev, "product_name")) or "").strip() or None)
        gpu = dict(vendor="amd", index=len(gpus), kfd_node=int(node) if node.isdigit() else node, name=name,
                   uuid=None, pci_bus_id=_pci_slot(props), vram_total_bytes=total,
                   vram_free_bytes=(total - used) if total is not None and used is not None else None,
                   driver_version=None, compute_capability=None, gfx_target=gfx_target(props["gfx_target_version"]),
                   render_node="/dev/dri/renderD%d" % props["drm_render_minor"] if props.get("drm_render_minor")
                   else None)
        if not gpu["name"] and props.get("vendor_id") and props.get("device_id"):
            gpu["name"] = "AMD GPU %04x:%04x" % (props["vendor_id"], props["device_id"])
        gpu["sources"] = dict(gfx_target=rel + " gfx_target_version", pci_bus_id=rel + " location_id")
        if drm_rel:
            gpu["sources"].update(vram_total_bytes=drm_rel + "/mem_info_vram_total",
                                  vram_free_bytes=drm_rel + "/mem_info_vram_total - mem_info_vram_used",
                                  name=drm_rel + "/product_name" if name else rel + " vendor_id/device_id")
        gpus.append(gpu)
    return gpus


def parse_rocm_smi(output):
    """Cards from ``rocm-smi --showproductname --showmeminfo vram --json``: [{card, node, name, gfx, vram...}]."""
    try:
        data = json.loads(output)
    except ValueError:
        return []
    cards = []
    for card, fields in sorted((data or {}).items()):
        if not card.startswith("card") or not isinstance(fields, dict):
            continue
        total = _int(fields.get("VRAM Total Memory (B)"))
        used = _int(fields.get("VRAM Total Used Memory (B)"))
        gfx = (fields.get("GFX Version") or "").strip() or None
        cards.append(dict(card=card, node=_int(fields.get("Node ID")),
                          name=(fields.get("Card Series") or fields.get("Device Name") or "").strip() or None,
                          gfx_target=gfx if gfx and gfx != "N/A" else None, vram_total_bytes=total,
                          vram_free_bytes=(total - used) if total is not None and used is not None else None))
    return cards


def amd_gpus(run_command, which, root="/", pci=None):
    """(gpus, state): AMD GPUs from sysfs (and rocm-smi), and whether amdgpu and /dev/kfd are there."""
    pci = pci if pci is not None else pci_display_devices(root).get("amd", [])
    module_dir = _path(root, "/sys/module/amdgpu")
    state = dict(vendor="amd", pci_devices=pci, kernel_driver_loaded=os.path.isdir(module_dir),
                 driver_version=((_read(os.path.join(module_dir, "version")) or "").strip() or None),
                 kfd_present=os.path.exists(_path(root, "/dev/kfd")), tool="rocm-smi", tool_path=which("rocm-smi"),
                 tool_working=None, error=None,
                 sources=dict(pci_devices="/sys/bus/pci/devices", kernel_driver_loaded="/sys/module/amdgpu",
                              driver_version="/sys/module/amdgpu/version (AMD's packaged driver only)",
                              kfd_present="/dev/kfd"))
    state["tool_present"] = bool(state["tool_path"])
    gpus = amd_gpus_sysfs(root)
    if state["tool_path"]:
        rc, out, err = run_command([state["tool_path"]] + list(ROCM_SMI_ARGS))
        cards = parse_rocm_smi(out) if rc == 0 else []
        state["tool_working"] = bool(cards)
        if not cards:
            state["error"] = "%s (exit code %d)" % (" ".join((err or out or "").split())[:300] or "no cards", rc)
        by_node = dict((c["node"], c) for c in cards if c["node"] is not None)
        if not gpus:  # sysfs unreadable (a container): rocm-smi alone
            for card in cards:
                gpus.append(dict(vendor="amd", index=len(gpus), kfd_node=card["node"], name=card["name"], uuid=None,
                                 pci_bus_id=None, vram_total_bytes=card["vram_total_bytes"],
                                 vram_free_bytes=card["vram_free_bytes"], driver_version=None, compute_capability=None,
                                 gfx_target=card["gfx_target"], render_node=None,
                                 sources=dict((k, "rocm-smi --json") for k in ("name", "vram_total_bytes",
                                                                               "vram_free_bytes", "gfx_target"))))
        else:
            for pos, gpu in enumerate(gpus):
                card = by_node.get(gpu["kfd_node"]) or (cards[pos] if len(cards) == len(gpus) else None)
                if not card:
                    continue
                for key in ("name", "vram_total_bytes", "vram_free_bytes", "gfx_target"):
                    sysfs_name = key == "name" and (gpu["name"] or "").startswith("AMD GPU ")
                    if card[key] is not None and (gpu[key] is None or sysfs_name):
                        gpu[key] = card[key]
                        gpu["sources"][key] = "rocm-smi --json"
    for gpu in gpus:
        gpu["driver_version"] = state["driver_version"]
    if not state["kernel_driver_loaded"] and (any(d.get("kernel_driver") == "amdgpu" for d in pci)
                                              or any(g.get("sources", {}).get("gfx_target", "").startswith("/sys")
                                                     for g in gpus)):
        # amdgpu built into the kernel without parameters has no /sys/module entry, but binds devices and feeds KFD
        state["kernel_driver_loaded"] = True
        state["sources"]["kernel_driver_loaded"] = "PCI driver binding / KFD topology"
    state["hardware_present"] = bool(pci or gpus or state["kfd_present"])
    return gpus, state


def jetson_state(root="/"):
    """NVIDIA Jetson (L4T) release from /etc/nv_tegra_release, for the JetPack archives; None elsewhere."""
    text = _read(_path(root, "/etc/nv_tegra_release"))
    if not text:
        return None
    match = re.search(r"#\s*R(\d+)\s*\(release\)", text)
    major = int(match.group(1)) if match else None
    jetpack = {35: 5, 36: 6}.get(major)
    return dict(vendor="nvidia-jetson", l4t_release=major, jetpack=jetpack, hardware_present=True,
                sources=dict(l4t_release="/etc/nv_tegra_release"))


def gather(models_path, run_command, which, root="/"):
    pci = pci_display_devices(root)
    nvidia, nvidia_state = nvidia_gpus(run_command, which, root, pci.get("nvidia", []))
    amd, amd_state = amd_gpus(run_command, which, root, pci.get("amd", []))
    drivers = [nvidia_state, amd_state]
    jetson = jetson_state(root)
    if jetson:
        drivers.append(jetson)
    return dict(cpu=cpu_info(root), memory=memory_info(root), disk=disk_info(models_path), gpus=nvidia + amd,
                gpu_drivers=drivers, psutil=HAS_PSUTIL)
