# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Can this host run Ollama, on which GPU, and will a given model fit? Plain-language answers.

``check_host(hardware, requirements)`` turns what ``_hardware.gather`` found into results, each with a
status (pass, warn or fail) and a message that says what to do. ``fit_model(size, ...)`` decides where a
model of a given size would run: in GPU memory (vram), split between GPU and RAM (split), from RAM on the
CPU (ram), or not at all (none).

The GPU minimums are Ollama's (its docs/gpu.mdx): NVIDIA compute capability 5.0 or newer with driver 550 or newer,
and driver 570 or newer for compute capability 5.0 to 6.2; AMD through ROCm v7 on the LLVM targets Ollama's Linux
ROCm build is compiled for (AMD_GFX_TARGETS), unless HSA_OVERRIDE_GFX_VERSION makes ROCm treat a GPU as one of them.
The RAM and disk minimums are this collection's defaults: change them in ``requirements``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

GIB = 1024 ** 3

# The LLVM targets Ollama's Linux ROCm build is compiled for: AMDGPU_TARGETS of the configure preset rocm_v7_2_linux in
# llama/server/CMakePresets.json (the preset its Dockerfile builds the rocm archive's llama-server with), read from
# Ollama v0.34.4, the release the server role installs (v0.32.15, the other release the lab tests, has the same list).
# gfx908:xnack- and gfx90a:xnack+/- there are the targets gfx908 and gfx90a. docs/gpu.mdx lists the same twelve.
# On a GPU of another target (gfx1010, gfx1012 or gfx1103, say) models run on the CPU, ROCm installed or not.
AMD_GFX_TARGETS = ("gfx908", "gfx90a", "gfx942", "gfx950", "gfx1030", "gfx1100", "gfx1101", "gfx1102", "gfx1150",
                   "gfx1151", "gfx1200", "gfx1201")
# A close target for HSA_OVERRIDE_GFX_VERSION, by the GPU's family (RDNA2, RDNA3), as Ollama's docs/gpu.mdx suggests.
AMD_OVERRIDE_HINTS = (("gfx103", "10.3.0"), ("gfx110", "11.0.0"))

DEFAULTS = dict(
    min_memory_gib=4.0,
    min_disk_free_gib=10.0,
    min_vram_gib=0.0,
    require_gpu=False,
    use_gpu=True,
    nvidia_min_compute_capability="5.0",
    nvidia_min_driver="550",
    nvidia_legacy_max_compute_capability="6.2",
    nvidia_legacy_min_driver="570",
    amd_gfx_targets=list(AMD_GFX_TARGETS),
    amd_gfx_override="",
    fit_margin_percent=20,
)

NVIDIA_INSTALL = ("install the NVIDIA driver {min} or newer with its nvidia-smi (Debian: the nvidia-driver package "
                  "from non-free, or cuda-drivers from NVIDIA's CUDA repository; Ubuntu: 'ubuntu-drivers install' "
                  "or nvidia-driver-{min}), reboot, and run again")
AMD_INSTALL = ("Ollama needs the amdgpu kernel driver with ROCm v7 support: install the firmware "
               "(Debian: firmware-amd-graphics) or AMD's driver ('amdgpu-install --usecase=dkms' from "
               "https://rocm.docs.amd.com/projects/install-on-linux/), reboot, and run again")


def override_target(value):
    """The LLVM target an HSA_OVERRIDE_GFX_VERSION value stands for, as Ollama reads it (discover/amd.go,
    rocmGFXTargetOverride): "10.3.0" -> gfx1030, "9.0.10" -> gfx90a, "gfx1100" as it is; None when Ollama would not
    read it (three decimal numbers of at most 15 each, or a gfx target)."""
    value = (value or "").strip()
    if value.startswith("gfx"):
        return value if re.match(r"^gfx[0-9a-f]{3,}$", value) else None
    parts = value.split(".")
    if len(parts) != 3 or not all(re.match(r"^[0-9]+$", p) and int(p) <= 15 for p in parts):
        return None
    return "gfx%d%x%x" % tuple(int(p) for p in parts)


def rocm_smi_spelling(target):
    """How rocm-smi prints an LLVM target: its stepping in decimal, so gfx90a is 'gfx9010' (gfx1100 stays)."""
    match = re.match(r"^gfx([0-9]+)([0-9a-f])([0-9a-f])$", target.lower())
    if not match:
        return target
    return "gfx%d%d%d" % (int(match.group(1)), int(match.group(2), 16), int(match.group(3), 16))


def merge(requirements):
    """The defaults with `requirements` over them (None values keep the default)."""
    merged = dict(DEFAULTS)
    for key, value in (requirements or {}).items():
        if value is not None:
            merged[key] = value
    return merged


def version_tuple(text):
    """'570.86.15' -> (570, 86, 15); '8.9' -> (8, 9); None or garbage -> None."""
    parts = re.findall(r"\d+", str(text or ""))
    return tuple(int(p) for p in parts) if parts else None


def human(size):
    if size is None:
        return "?"
    size = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return ("%d %s" % (size, unit)) if unit == "B" else ("%.1f %s" % (size, unit))
        size /= 1024
    return "?"


def _result(results, check, status, message, category="host"):
    results.append(dict(check=check, status=status, message=message, category=category))


def _gpu_label(gpu):
    bits = [gpu.get("name") or "GPU %s" % gpu.get("index")]
    if gpu.get("vram_total_bytes"):
        bits.append(human(gpu["vram_total_bytes"]))
    return " ".join(bits)


def _check_nvidia(state, gpus, req, results):
    """Results for the NVIDIA driver and GPUs; returns the GPUs Ollama can use."""
    if not state:
        return []
    if not state.get("hardware_present"):
        if state.get("tool_present") and state.get("tool_working") is False:
            _result(results, "nvidia_driver", "warn", "nvidia-smi is installed but fails (%s), and no NVIDIA GPU is on "
                    "the PCI bus: models run on the CPU." % state.get("error"), "gpu")
        return []
    where = ", ".join(d["slot"] for d in state.get("pci_devices") or []) or ", ".join(state.get("device_nodes") or [])
    min_driver = req["nvidia_min_driver"]
    if not state.get("tool_present"):
        kernel = state.get("kernel_driver_version")
        _result(results, "nvidia_driver", "fail",
                "NVIDIA GPU found (%s) but nvidia-smi is not installed%s: %s. This collection does not install "
                "drivers." % (where or "PCI", " (kernel module %s is loaded)" % kernel if kernel else
                              ", so the NVIDIA driver is missing", NVIDIA_INSTALL.format(min=min_driver)), "driver")
        return []
    if not state.get("tool_working"):
        _result(results, "nvidia_driver", "fail",
                "nvidia-smi fails: %s. The NVIDIA driver is installed but not working (often the kernel module does "
                "not match the running kernel after an upgrade): reboot, or reinstall the driver for this kernel "
                "(dkms), then run again." % state.get("error"), "driver")
        return []
    usable = []
    min_cc = version_tuple(req["nvidia_min_compute_capability"])
    legacy_cc = version_tuple(req["nvidia_legacy_max_compute_capability"])
    for gpu in gpus:
        label = _gpu_label(gpu)
        driver = version_tuple(gpu.get("driver_version") or state.get("driver_version"))
        cc = version_tuple(gpu.get("compute_capability"))
        need = min_driver
        if cc and legacy_cc and cc <= legacy_cc:
            need = max(min_driver, req["nvidia_legacy_min_driver"], key=lambda v: version_tuple(v) or (0,))
        if cc and min_cc and cc < min_cc:
            _result(results, "nvidia_gpu", "warn",
                    "%s has compute capability %s; Ollama needs %s or newer, so it runs models on the CPU."
                    % (label, gpu["compute_capability"], req["nvidia_min_compute_capability"]), "gpu")
            continue
        if not driver or driver < version_tuple(need):
            why = " (compute capability %s needs %s)" % (gpu["compute_capability"], need) if need != min_driver else ""
            _result(results, "nvidia_driver", "fail",
                    "%s: NVIDIA driver %s is too old; Ollama needs %s or newer%s. Upgrade: %s."
                    % (label, gpu.get("driver_version") or state.get("driver_version") or "(unknown)", need, why,
                       NVIDIA_INSTALL.format(min=need).replace(", and run again", "")), "driver")
            continue
        if not cc:
            note = (" (this driver cannot report compute capability)" if state.get("compute_cap_query") is False
                    else " (compute capability not reported)")
            _result(results, "nvidia_gpu", "warn", "%s, driver %s: usable if its compute capability is %s or newer%s."
                    % (label, gpu.get("driver_version"), req["nvidia_min_compute_capability"], note), "gpu")
        else:
            _result(results, "nvidia_gpu", "pass", "%s, driver %s, compute capability %s: usable by Ollama (CUDA)."
                    % (label, gpu.get("driver_version"), gpu["compute_capability"]), "gpu")
        usable.append(gpu)
    return usable


def _check_amd(state, gpus, req, results):
    if not state or not state.get("hardware_present"):
        return []
    where = ", ".join(d["slot"] for d in state.get("pci_devices") or []) or "sysfs"
    if not state.get("kernel_driver_loaded"):
        _result(results, "amd_driver", "fail", "AMD GPU found (%s) but the amdgpu kernel driver is not loaded. %s. "
                "This collection does not install drivers." % (where, AMD_INSTALL), "driver")
        return []
    if not state.get("kfd_present"):
        _result(results, "amd_driver", "fail", "AMD GPU found (%s) and amdgpu is loaded, but /dev/kfd is missing, so "
                "ROCm cannot compute on it (a kernel without HSA_AMD, or a container without the device). %s."
                % (where, AMD_INSTALL), "driver")
        return []
    usable = []
    override = (req.get("amd_gfx_override") or "").strip()
    forced = override_target(override)
    built = [str(t).lower() for t in req["amd_gfx_targets"]]
    targets = dict((t, t) for t in built)
    targets.update((rocm_smi_spelling(t), t) for t in built)
    for gpu in gpus:
        label = _gpu_label(gpu)
        gfx = gpu.get("gfx_target")
        if gfx and gfx.lower() in targets and targets[gfx.lower()] != gfx.lower():
            gfx = "%s, shown by rocm-smi as %s" % (targets[gfx.lower()], gpu["gfx_target"])
            gpu = dict(gpu, gfx_target=targets[gpu["gfx_target"].lower()])
        own = (gpu.get("gfx_target") or "").lower()
        if override and forced in targets:
            _result(results, "amd_gpu", "pass", "%s (%s): HSA_OVERRIDE_GFX_VERSION=%s makes ROCm treat it as %s, a "
                    "target Ollama's ROCm build is compiled for." % (label, gfx or "target unknown", override, forced),
                    "gpu")
        elif override:
            why = ("makes ROCm treat it as %s, which Ollama's ROCm build is not compiled for either" % forced if forced
                   else "is not a version Ollama reads (three numbers such as 10.3.0, or a target such as gfx1030)")
            message = ("%s (%s): HSA_OVERRIDE_GFX_VERSION=%s %s, so models run on the CPU. Ollama's ROCm build is "
                       "compiled for %s." % (label, gfx or "target unknown", override, why, ", ".join(built)))
            _result(results, "amd_gpu", "warn", message, "gpu")
            continue
        elif own in targets:
            _result(results, "amd_gpu", "pass", "%s (%s): usable by Ollama (ROCm)." % (label, gfx), "gpu")
        else:
            hint = [v for prefix, v in AMD_OVERRIDE_HINTS if own.startswith(prefix)]
            close = ("e.g. %s for this family" % hint[0]) if hint else "e.g. 10.3.0 for RDNA2 cards, 11.0.0 for RDNA3"
            message = ("%s (%s) is not a target Ollama's ROCm build is compiled for (%s), so models run on the CPU, "
                       "ROCm installed or not (Ollama's Vulkan backend may use the GPU where the host has a Vulkan "
                       "driver for it). HSA_OVERRIDE_GFX_VERSION (ollama_server_hsa_override_gfx_version) makes ROCm "
                       "treat it as a close target of that list, %s; Ollama's docs call that an experiment."
                       % (label, gfx or "target unknown", ", ".join(built), close))
            _result(results, "amd_gpu", "warn", message, "gpu")
            continue
        usable.append(gpu)
    return usable


def check_host(hardware, requirements=None):
    """Check `hardware` (from _hardware.gather) against `requirements`; see the module docstring."""
    req = merge(requirements)
    results = []
    memory, disk, cpu = hardware.get("memory") or {}, hardware.get("disk") or {}, hardware.get("cpu") or {}
    total = memory.get("total_bytes")
    if total is None:
        _result(results, "memory", "warn", "RAM size unknown: %s." % memory.get("error", "not reported"))
    elif total < req["min_memory_gib"] * GIB:
        _result(results, "memory", "fail", "only %s of RAM; at least %s is needed (requirements.min_memory_gib)."
                % (human(total), human(req["min_memory_gib"] * GIB)))
    else:
        _result(results, "memory", "pass", "%s RAM, %s available." % (human(total), human(memory.get("available_bytes"))))
    free = disk.get("free_bytes")
    if free is None:
        _result(results, "disk", "warn", "free disk space unknown at %s: %s." % (disk.get("path"), disk.get("error")))
    elif free < req["min_disk_free_gib"] * GIB:
        _result(results, "disk", "fail", "only %s free at %s where models are stored; at least %s is needed "
                "(requirements.min_disk_free_gib)." % (human(free), disk.get("path"), human(req["min_disk_free_gib"] * GIB)))
    else:
        _result(results, "disk", "pass", "%s free at %s." % (human(free), disk.get("path")))
    flags = cpu.get("flags") or {}
    if flags and (cpu.get("architecture") or "x86_64") in ("x86_64", "amd64", "i686"):
        if flags.get("avx2"):
            _result(results, "cpu", "pass", "%s, %s cores, AVX2%s."
                    % (cpu.get("model"), cpu.get("cores"), "/AVX-512" if flags.get("avx512") else ""))
        else:
            _result(results, "cpu", "warn", "%s has no %s: models that run on the CPU will be slow."
                    % (cpu.get("model"), "AVX2" if flags.get("avx") else "AVX"))
    elif cpu:
        _result(results, "cpu", "pass", "%s, %s cores." % (cpu.get("model"), cpu.get("cores")))

    states = dict((s.get("vendor"), s) for s in hardware.get("gpu_drivers") or [])
    gpus = hardware.get("gpus") or []
    usable = []
    if req.get("use_gpu", True):
        usable += _check_nvidia(states.get("nvidia"), [g for g in gpus if g.get("vendor") == "nvidia"], req, results)
        usable += _check_amd(states.get("amd"), [g for g in gpus if g.get("vendor") == "amd"], req, results)
    vram = sum(free_vram(g) or 0 for g in usable)
    if req.get("require_gpu") and not usable:
        _result(results, "gpu", "fail", "no usable GPU: Ollama would run every model on the CPU (requirements.require_gpu).",
                "gpu")
    elif usable and req.get("min_vram_gib") and vram < req["min_vram_gib"] * GIB:
        _result(results, "gpu", "fail", "usable GPUs have %s of memory free; at least %s is needed "
                "(requirements.min_vram_gib)." % (human(vram), human(req["min_vram_gib"] * GIB)), "gpu")
    elif not usable and not any(r["category"] in ("gpu", "driver") for r in results):
        _result(results, "gpu", "pass", "no GPU: models run on the CPU.", "gpu")
    return summarize(dict(results=results, usable_gpus=[g.get("index") for g in usable], usable_vram_bytes=vram,
                          compute="gpu" if usable else "cpu", requirements=req, models=[]), usable)


def free_vram(gpu):
    """Free memory of a GPU: what it reports (0 is 0: a full GPU), its total only when free is not known; None when
    it reports neither."""
    free = gpu.get("vram_free_bytes")
    if free is None:
        return gpu.get("vram_total_bytes") or None
    return free


def summarize(check, usable=None):
    results = check["results"]
    failed = [r for r in results if r["status"] == "fail"]
    check["passed"] = not failed
    check["status"] = "pass" if not failed else "fail"
    check["reasons"] = [r["message"] for r in results if r["status"] in ("fail", "warn")]
    check["driver_problems"] = [r["message"] for r in failed if r["category"] == "driver"]
    if usable is not None:
        check["gpu_summary"] = ", ".join(_gpu_label(g) for g in usable) if usable else "CPU only"
    return check


def fit_model(size_bytes, hardware, check, download_bytes=None, disk_reserved_bytes=0):
    """Where a model of `size_bytes` would run on this host. Returns a dict with fits and a message.

    `check` is this host's check_host result (its usable GPUs and margin). `download_bytes` is what a pull
    would fetch (the manifest size less blobs the server has); None skips the disk test. `disk_reserved_bytes`
    is taken by earlier pulls in the same task.
    """
    req = check.get("requirements") or DEFAULTS
    need = int(size_bytes * (1 + float(req.get("fit_margin_percent", 20)) / 100.0))
    vram = check.get("usable_vram_bytes") or 0
    memory = hardware.get("memory") or {}
    ram = memory.get("available_bytes") or 0
    gpus = len(check.get("usable_gpus") or [])
    where = "%s on %d GPU%s" % (human(vram), gpus, "" if gpus == 1 else "s")
    if gpus and not vram:  # usable GPUs that did not report their memory (nvidia-smi without memory columns)
        no_vram = "GPU memory not reported, so whether it fits there is unknown"
    else:
        no_vram = "no usable GPU"
    if need <= vram and vram:
        fits, message = "vram", "fits in GPU memory: needs about %s, %s free." % (human(need), where)
    elif vram and need <= vram + ram:
        fits, message = "split", ("fits only split between GPU and CPU (slower): needs about %s, %s free and %s of "
                                  "RAM available." % (human(need), where, human(ram)))
    elif need <= ram:
        fits, message = "ram", "runs on the CPU from RAM: needs about %s, %s of RAM available (%s)." % (
            human(need), human(ram), "GPU memory %s is too small" % where if vram else no_vram)
    else:
        fits, message = "none", "does not fit: needs about %s of memory, the host has %s of RAM available and %s." % (
            human(need), human(ram), where if vram else no_vram)
    result = dict(size_bytes=size_bytes, need_bytes=need, fits=fits, message=message, disk_ok=True)
    disk = hardware.get("disk") or {}
    if download_bytes and disk.get("free_bytes") is not None:
        left = disk["free_bytes"] - disk_reserved_bytes
        if download_bytes > left:
            result["disk_ok"] = False
            result["message"] = "%s And the download (%s) is larger than the %s free at %s." % (
                message, human(download_bytes), human(max(left, 0)), disk.get("path"))
            if fits != "none":
                result["message"] = "does not fit on disk: the download (%s) is larger than the %s free at %s." % (
                    human(download_bytes), human(max(left, 0)), disk.get("path"))
    result["ok"] = fits != "none" and result["disk_ok"]
    return result


def add_model_results(check, fits):
    """Add per-model fit results (dicts with name and fit_model's keys) to a check_host result."""
    for fit in fits:
        check["models"].append(fit)
        if fit.get("error"):
            _result(check["results"], "model", "warn", "%s: cannot check: %s" % (fit["name"], fit["error"]), "model")
            continue
        if not fit["ok"]:
            status = "fail"
        elif fit["fits"] == "split" or (fit["fits"] == "ram" and check.get("compute") == "gpu"):
            status = "warn"
        else:
            status = "pass"
        message = "%s (%s): %s" % (fit["name"], human(fit["size_bytes"]), fit["message"])
        _result(check["results"], "model", status, message, "model")
    return summarize(check)
