"""The requirements check and the fit check: plain-language results from recorded hardware.

GPU figures come from the recorded tool outputs and sysfs trees of tests/unit/fixtures/gpu (sources in its
README), read through the real parsing code. Where a test needs a figure no recording has (a GPU with compute
capability 6.1, an amount of RAM), it builds the hardware dict itself and says so.
"""
import copy

import pytest

from ansible_collections.llmops.ollama.plugins.module_utils import _hardware as hw
from ansible_collections.llmops.ollama.plugins.module_utils import _requirements as rq
from ansible_collections.llmops.ollama.tests.unit.fixtures.gpu.recorded import Tools, text, tree

GIB = 1024 ** 3
NAVI31 = "navi31_kfd-recorded-ollama-2411_drm-constructed"


def host(gpus=(), drivers=None, ram_gib=64.0, available_gib=60.0, disk_free_gib=500.0, flags=None):
    """A hardware dict as _hardware.gather returns it, with the given figures (built by the test)."""
    return dict(cpu=dict(model="test CPU", cores=8, threads=16, architecture="x86_64",
                         flags=flags if flags is not None else dict(avx=True, avx2=True, avx512=False)),
                memory=dict(total_bytes=int(ram_gib * GIB), available_bytes=int(available_gib * GIB)),
                disk=dict(path="/models", free_bytes=int(disk_free_gib * GIB)),
                gpus=list(gpus), gpu_drivers=drivers or [])


def recorded(root, tools):
    """gather() on a recorded tree and tool outputs, with this test's CPU/RAM/disk figures."""
    found = hw.gather(str(root), tools.run, tools.which, root=str(root))
    return host(found["gpus"], found["gpu_drivers"])


def by_check(result, name):
    return [r for r in result["results"] if r["check"] == name]


def test_cpu_only_host_passes():
    result = rq.check_host(host())
    assert result["passed"] and result["status"] == "pass" and result["compute"] == "cpu"
    assert by_check(result, "gpu")[0]["message"] == "no GPU: models run on the CPU."
    assert result["gpu_summary"] == "CPU only" and result["reasons"] == []


def test_minimums_fail_with_what_to_change():
    result = rq.check_host(host(ram_gib=2, available_gib=1, disk_free_gib=3))
    assert not result["passed"]
    assert by_check(result, "memory")[0]["message"] == (
        "only 2.0 GiB of RAM; at least 4.0 GiB is needed (requirements.min_memory_gib).")
    assert "only 3.0 GiB free at /models" in by_check(result, "disk")[0]["message"]
    assert rq.check_host(host(ram_gib=2), dict(min_memory_gib=1, min_disk_free_gib=None))["passed"]


def test_cpu_without_avx2_is_a_warning():
    result = rq.check_host(host(flags=dict(avx=True, avx2=False)))
    assert result["passed"]
    assert result["reasons"] == ["test CPU has no AVX2: models that run on the CPU will be slow."]


def test_two_recorded_nvidia_cards_are_usable(tmp_path):
    hardware = recorded(tmp_path, Tools(nvidia_smi=(0, text("nvidia/triton-8070_two-gpus.csv"), "")))
    result = rq.check_host(hardware)
    assert result["passed"] and result["compute"] == "gpu" and result["usable_gpus"] == [0, 1]
    assert by_check(result, "nvidia_gpu")[0]["message"] == (
        "NVIDIA TITAN V, driver 570.86.15, compute capability 7.0: usable by Ollama (CUDA).")
    assert result["gpu_summary"] == "NVIDIA TITAN V, NVIDIA RTX 5880 Ada Generation"


def test_recorded_driver_440_is_too_old(tmp_path):
    # gpu-utils#83's RTX 2080 (driver 440.64), as parsed from its recorded line
    fields = ("power.limit,power.min_limit,power.max_limit,memory.total,vbios_version,driver_version,name,gpu_uuid,"
              "power.draw,temperature.gpu,temperature.memory,clocks.current.graphics,clocks.sm,clocks.mem,"
              "utilization.gpu,utilization.memory,fan.speed,pcie.link.width.current,pstate").split(",")
    gpus = hw.parse_nvidia_smi(text("nvidia/gpu-utils-83_rtx2080-driver-440_noheader.csv"), fields=fields)
    state = dict(vendor="nvidia", hardware_present=True, tool_present=True, tool_working=True, driver_version="440.64")
    result = rq.check_host(host(gpus, [state]))
    assert not result["passed"] and result["compute"] == "cpu"
    (problem,) = result["driver_problems"]
    assert problem.startswith("GeForce RTX 2080 7.8 GiB: NVIDIA driver 440.64 is too old; Ollama needs 550 or newer.")
    assert "install the NVIDIA driver 550 or newer" in problem


def test_old_pascal_card_needs_570():
    # constructed: a compute capability 6.1 card (no recording has one) on driver 550
    gpu = dict(vendor="nvidia", index=0, name="GTX 1080", compute_capability="6.1", driver_version="550.54.14",
               vram_total_bytes=8 * GIB, vram_free_bytes=8 * GIB)
    state = dict(vendor="nvidia", hardware_present=True, tool_present=True, tool_working=True)
    result = rq.check_host(host([gpu], [state]))
    assert "needs 570 or newer (compute capability 6.1 needs 570)" in result["driver_problems"][0]
    assert rq.check_host(host([dict(gpu, driver_version="570.124")], [state]))["passed"]
    too_old = rq.check_host(host([dict(gpu, compute_capability="3.5", driver_version="570.1")], [state]))
    assert too_old["passed"] and too_old["compute"] == "cpu"
    assert "compute capability 3.5; Ollama needs 5.0 or newer" in too_old["reasons"][0]


def test_nvidia_smi_not_working(tmp_path):
    tools = Tools(nvidia_smi=[(9, text("nvidia/nvidia-docker-988_driver-not-loaded.txt"), "")])
    result = rq.check_host(recorded(tree("constructed_nvidia-no-driver", tmp_path), tools))
    (problem,) = result["driver_problems"]
    assert problem.startswith("nvidia-smi fails: NVIDIA-SMI has failed because it couldn't communicate")
    assert "reboot, or reinstall the driver for this kernel" in problem


def test_nvidia_smi_failing_without_a_gpu_is_a_warning(tmp_path):
    tools = Tools(nvidia_smi=[(9, text("nvidia/nvidia-docker-988_driver-not-loaded.txt"), "")])
    result = rq.check_host(recorded(tmp_path, tools))
    assert result["passed"] and result["compute"] == "cpu"
    assert result["reasons"][0].startswith("nvidia-smi is installed but fails (NVIDIA-SMI has failed")


def test_gpu_present_driver_missing(tmp_path):
    result = rq.check_host(recorded(tree("constructed_nvidia-no-driver", tmp_path), Tools()))
    (problem,) = result["driver_problems"]
    assert problem.startswith("NVIDIA GPU found (0000:05:00.0) but nvidia-smi is not installed, so the NVIDIA driver "
                              "is missing: install the NVIDIA driver 550 or newer")
    assert problem.endswith("This collection does not install drivers.")


def test_kernel_module_but_no_nvidia_smi(tmp_path):
    result = rq.check_host(recorded(tree("constructed_nvidia-module-without-smi", tmp_path), Tools()))
    assert "nvidia-smi is not installed (kernel module 384.98 is loaded)" in result["driver_problems"][0]


def test_gpu_checks_off_when_the_server_runs_on_the_cpu(tmp_path):
    hardware = recorded(tree("constructed_nvidia-no-driver", tmp_path), Tools())
    result = rq.check_host(hardware, dict(use_gpu=False))
    assert result["passed"] and result["compute"] == "cpu"


def test_recorded_navi31_is_usable(tmp_path):
    hardware = recorded(tree(NAVI31, tmp_path), Tools(rocm_smi=(0, text("amd/marimo-9237_rocm-smi_rx7900xt.json"), "")))
    result = rq.check_host(hardware, dict(require_gpu=True, min_vram_gib=16))
    assert result["passed"] and result["compute"] == "gpu"
    assert by_check(result, "amd_gpu")[0]["message"] == "Radeon RX 7900 XT 20.0 GiB (gfx1100): usable by Ollama (ROCm)."
    assert result["usable_vram_bytes"] == 21458059264 - 27856896
    assert not rq.check_host(hardware, dict(min_vram_gib=32))["passed"]


def navi31_as(tmp_path, version):
    """The recorded Navi 31 tree with its GPU node's gfx_target_version replaced (a derived tree, for targets no
    recording has)."""
    root = tree(NAVI31, tmp_path)
    props = tmp_path / "sys/class/kfd/kfd/topology/nodes/1/properties"
    props.write_text(props.read_text().replace("gfx_target_version 110000", "gfx_target_version %d" % version))
    return recorded(root, Tools())


BUILT = ("gfx908, gfx90a, gfx942, gfx950, gfx1030, gfx1100, gfx1101, gfx1102, gfx1150, gfx1151, gfx1200, "
         "gfx1201")


def test_the_amd_targets_are_those_of_ollamas_rocm_build():
    """AMDGPU_TARGETS of rocm_v7_2_linux (llama/server/CMakePresets.json, Ollama 0.34.4), feature suffixes dropped;
    tests/integration/test_amd_targets.py compares it with the module source of every release the lab tests."""
    assert ", ".join(rq.AMD_GFX_TARGETS) == BUILT
    assert rq.DEFAULTS["amd_gfx_targets"] == list(rq.AMD_GFX_TARGETS)


@pytest.mark.parametrize("version, target, hint", [
    (100301, "gfx1031", "e.g. 10.3.0 for this family"),  # an RX 6700 XT's target
    (100100, "gfx1010", "e.g. 10.3.0 for RDNA2 cards, 11.0.0 for RDNA3"),  # RX 5700 XT (RDNA1)
    (100102, "gfx1012", "e.g. 10.3.0 for RDNA2 cards, 11.0.0 for RDNA3"),  # RX 5500 (RDNA1)
    (110003, "gfx1103", "e.g. 11.0.0 for this family"),  # Radeon 780M (Phoenix APU)
])
def test_an_amd_gpu_whose_target_ollama_is_not_built_for_runs_on_the_cpu(tmp_path, version, target, hint):
    result = rq.check_host(navi31_as(tmp_path, version))
    assert result["passed"] and result["compute"] == "cpu"
    (check,) = by_check(result, "amd_gpu")
    assert check["status"] == "warn"
    assert check["message"] == (
        "AMD GPU 1002:744c 20.0 GiB (%s) is not a target Ollama's ROCm build is compiled for (%s), so models run on "
        "the CPU, ROCm installed or not (Ollama's Vulkan backend may use the GPU where the host has a Vulkan driver "
        "for it). HSA_OVERRIDE_GFX_VERSION (ollama_server_hsa_override_gfx_version) makes ROCm treat it as a close "
        "target of that list, %s; Ollama's docs call that an experiment." % (target, BUILT, hint))
    assert result["reasons"] == [check["message"]]


def test_an_override_counts_only_when_it_names_a_target_ollama_is_built_for(tmp_path):
    hardware = navi31_as(tmp_path, 100301)
    forced = rq.check_host(hardware, dict(amd_gfx_override="10.3.0"))
    assert forced["compute"] == "gpu"
    assert by_check(forced, "amd_gpu")[0]["message"] == (
        "AMD GPU 1002:744c 20.0 GiB (gfx1031): HSA_OVERRIDE_GFX_VERSION=10.3.0 makes ROCm treat it as gfx1030, a "
        "target Ollama's ROCm build is compiled for.")
    assert rq.check_host(hardware, dict(amd_gfx_override="gfx1030"))["compute"] == "gpu"
    older = rq.check_host(hardware, dict(amd_gfx_override="10.1.0"))
    assert older["compute"] == "cpu"
    assert by_check(older, "amd_gpu")[0]["message"].startswith(
        "AMD GPU 1002:744c 20.0 GiB (gfx1031): HSA_OVERRIDE_GFX_VERSION=10.1.0 makes ROCm treat it as gfx1010, which "
        "Ollama's ROCm build is not compiled for either, so models run on the CPU.")
    garbled = rq.check_host(hardware, dict(amd_gfx_override="10.3"))
    assert garbled["compute"] == "cpu"
    assert "HSA_OVERRIDE_GFX_VERSION=10.3 is not a version Ollama reads (three numbers such as 10.3.0, or a target " \
           "such as gfx1030), so models run on the CPU" in by_check(garbled, "amd_gpu")[0]["message"]


@pytest.mark.parametrize("value, target", [("10.3.0", "gfx1030"), ("9.0.10", "gfx90a"), (" 11.0.0 ", "gfx1100"),
                                           ("gfx1151", "gfx1151"), ("10.3", None), ("10.3.16", None), ("a.b.c", None),
                                           ("", None), ("gfx", None)])
def test_override_values_are_read_as_ollama_reads_them(value, target):
    """discover/amd.go rocmGFXTargetOverride: three decimal numbers of at most 15, the last two written in hex."""
    assert rq.override_target(value) == target


def test_a_target_list_of_ones_own_build_is_taken(tmp_path):
    """requirements.amd_gfx_targets: a site's own ROCm build of Ollama, compiled for more targets."""
    result = rq.check_host(navi31_as(tmp_path, 100100), dict(amd_gfx_targets=list(rq.AMD_GFX_TARGETS) + ["gfx1010"]))
    assert result["compute"] == "gpu"
    assert by_check(result, "amd_gpu")[0]["message"] == "AMD GPU 1002:744c 20.0 GiB (gfx1010): usable by Ollama (ROCm)."


def test_rocm_smi_gfx9010_is_gfx90a(tmp_path):
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/kfd").write_text("")
    (tmp_path / "sys/module/amdgpu").mkdir(parents=True)
    hardware = recorded(tmp_path, Tools(rocm_smi=(0, text("amd/rocm-smi-lib-159_mi250x.json"), "")))
    result = rq.check_host(hardware)
    assert result["compute"] == "gpu"
    assert "(gfx90a, shown by rocm-smi as gfx9010): usable" in by_check(result, "amd_gpu")[0]["message"]
    assert rq.rocm_smi_spelling("gfx90a") == "gfx9010" and rq.rocm_smi_spelling("gfx1100") == "gfx1100"


def test_amd_driver_missing_or_no_kfd(tmp_path):
    result = rq.check_host(recorded(tree("constructed_amd-no-amdgpu", tmp_path / "a"), Tools()))
    assert result["driver_problems"][0].startswith("AMD GPU found (0000:03:00.0) but the amdgpu kernel driver is not "
                                                   "loaded.")
    root = tree(NAVI31, tmp_path / "b")
    (tmp_path / "b/dev/kfd").unlink()
    result = rq.check_host(recorded(root, Tools()))
    assert "/dev/kfd is missing" in result["driver_problems"][0]


def test_require_gpu_on_a_cpu_host():
    result = rq.check_host(host(), dict(require_gpu=True))
    assert not result["passed"]
    assert result["reasons"] == ["no usable GPU: Ollama would run every model on the CPU (requirements.require_gpu)."]


# -- fit ---------------------------------------------------------------------------------------------------

def navi31_check(tmp_path, **figures):
    hardware = recorded(tree(NAVI31, tmp_path), Tools())
    hardware.update(host(hardware["gpus"], hardware["gpu_drivers"], **figures))
    return hardware, rq.check_host(hardware)


@pytest.mark.parametrize("size_gib, fits", [(4, "vram"), (20, "split"), (60, "none")])
def test_fit_on_a_recorded_gpu(tmp_path, size_gib, fits):
    hardware, check = navi31_check(tmp_path, available_gib=30)
    fit = rq.fit_model(int(size_gib * GIB), hardware, check)
    assert fit["fits"] == fits and fit["ok"] == (fits != "none")
    assert fit["need_bytes"] == int(size_gib * GIB * 1.2)


def test_fit_messages(tmp_path):
    hardware, check = navi31_check(tmp_path, available_gib=30)
    assert rq.fit_model(4 * GIB, hardware, check)["message"] == (
        "fits in GPU memory: needs about 4.8 GiB, 20.0 GiB on 1 GPU free.")
    assert rq.fit_model(60 * GIB, hardware, check)["message"] == (
        "does not fit: needs about 72.0 GiB of memory, the host has 30.0 GiB of RAM available and 20.0 GiB on 1 GPU.")
    cpu = host(available_gib=30)
    assert rq.fit_model(10 * GIB, cpu, rq.check_host(cpu))["message"] == (
        "runs on the CPU from RAM: needs about 12.0 GiB, 30.0 GiB of RAM available (no usable GPU).")


def test_fit_with_gpus_that_do_not_report_memory(tmp_path):
    hardware = recorded(tmp_path, Tools(nvidia_smi=(0, text("nvidia/triton-8070_two-gpus.csv"), "")))
    check = rq.check_host(hardware)
    fit = rq.fit_model(4 * GIB, hardware, check)
    assert fit["fits"] == "ram" and fit["ok"]
    assert fit["message"].endswith("(GPU memory not reported, so whether it fits there is unknown).")
    result = rq.add_model_results(check, [dict(name="m", **fit)])
    assert result["passed"] and by_check(result, "model")[0]["status"] == "warn"


def test_fit_counts_the_disk():
    hardware = host(disk_free_gib=5)
    check = rq.check_host(hardware, dict(min_disk_free_gib=1))
    fit = rq.fit_model(2 * GIB, hardware, check, download_bytes=2 * GIB)
    assert fit["ok"]
    fit = rq.fit_model(2 * GIB, hardware, check, download_bytes=2 * GIB, disk_reserved_bytes=4 * GIB)
    assert not fit["ok"] and fit["fits"] == "ram" and not fit["disk_ok"]
    assert fit["message"] == "does not fit on disk: the download (2.0 GiB) is larger than the 1.0 GiB free at /models."


def test_margin_is_configurable():
    hardware = host(available_gib=10)
    assert rq.fit_model(9 * GIB, hardware, rq.check_host(hardware))["fits"] == "none"
    assert rq.fit_model(9 * GIB, hardware, rq.check_host(hardware, dict(fit_margin_percent=5)))["fits"] == "ram"


def test_model_results_in_the_check(tmp_path):
    hardware, check = navi31_check(tmp_path, available_gib=30)
    check = copy.deepcopy(check)
    fits = [dict(name="small", **rq.fit_model(2 * GIB, hardware, check)),
            dict(name="big", **rq.fit_model(30 * GIB, hardware, check)),
            dict(name="huge", **rq.fit_model(1024 * GIB, hardware, check)),
            dict(name="unknown", size_bytes=None, fits=None, ok=None, error="registry unreachable")]
    result = rq.add_model_results(check, fits)
    assert not result["passed"] and result["status"] == "fail"
    statuses = [(r["message"].split(" ")[0], r["status"]) for r in by_check(result, "model")]
    assert statuses == [("small", "pass"), ("big", "warn"), ("huge", "fail"), ("unknown:", "warn")]
    assert [m["name"] for m in result["models"]] == ["small", "big", "huge", "unknown"]


def test_a_gpu_with_no_memory_free_counts_as_full():
    """Issue 13 item 12: 0 bytes free is 0 (it used to count as all free: `free or total`); unknown free is total."""
    gpu = dict(vendor="nvidia", index=0, name="RTX 4090", compute_capability="8.9", driver_version="570.124",
               vram_total_bytes=24 * GIB, vram_free_bytes=0)
    state = dict(vendor="nvidia", hardware_present=True, tool_present=True, tool_working=True)
    full = rq.check_host(host([gpu], [state]), dict(min_vram_gib=1))
    assert full["usable_vram_bytes"] == 0
    assert not full["passed"] and "usable GPUs have 0 B of memory free" in full["reasons"][0]
    fit = rq.fit_model(2 * GIB, host([gpu], [state]), full)
    assert fit["fits"] != "vram", fit
    unknown = rq.check_host(host([dict(gpu, vram_free_bytes=None)], [state]), dict(min_vram_gib=1))
    assert unknown["usable_vram_bytes"] == 24 * GIB and unknown["passed"]
