"""The hardware section, fed with real tool outputs and sysfs trees (tests/unit/fixtures/gpu, sources in its README).

No GPU is available to these tests: every GPU figure here was printed by nvidia-smi, rocm-smi or the kernel on
someone's real machine, except the trees named `constructed_*` (built for the tests; the README says from what).
CPU, memory and disk are read from this machine itself.
"""
import os

import pytest

from ansible_collections.llmops.ollama.plugins.module_utils import _hardware as hw
from ansible_collections.llmops.ollama.tests.unit.fixtures.gpu.recorded import Tools, text, tree

TRITON = text("nvidia/triton-8070_two-gpus.csv")
RTX2080_LINE = text("nvidia/gpu-utils-83_rtx2080-driver-440_noheader.csv")
RTX2080_FIELDS = ("power.limit,power.min_limit,power.max_limit,memory.total,vbios_version,driver_version,name,gpu_uuid,"
                  "power.draw,temperature.gpu,temperature.memory,clocks.current.graphics,clocks.sm,clocks.mem,"
                  "utilization.gpu,utilization.memory,fan.speed,pcie.link.width.current,pstate").split(",")
NOT_VALID = text("nvidia/inference-snaps-128_compute-cap-not-valid.txt")
NOT_LOADED = text("nvidia/nvidia-docker-988_driver-not-loaded.txt")
ROCM_RX7900 = text("amd/marimo-9237_rocm-smi_rx7900xt.json")
ROCM_MI250X = text("amd/rocm-smi-lib-159_mi250x.json")
ROCM_NO_DRIVER = text("amd/legacy-rocm-build-2767_driver-not-initialized.txt")
NAVI31 = "navi31_kfd-recorded-ollama-2411_drm-constructed"


def gather(root, tools):
    return hw.gather(str(root), tools.run, tools.which, root=str(root))


# -- nvidia-smi ----------------------------------------------------------------------------------------

def test_two_different_cards_parsed_by_header():
    gpus = hw.parse_nvidia_smi(TRITON)
    assert [(g["index"], g["name"], g["compute_capability"], g["driver_version"]) for g in gpus] == [
        (0, "NVIDIA TITAN V", "7.0", "570.86.15"), (1, "NVIDIA RTX 5880 Ada Generation", "8.9", "570.86.15")]
    assert all(g["vram_total_bytes"] is None for g in gpus)  # the sample has no memory columns
    assert gpus[0]["sources"]["compute_capability"] == "nvidia-smi --query-gpu"
    assert "vram_total_bytes" not in gpus[0]["sources"]


def test_noheader_output_with_the_queried_fields():
    (gpu,) = hw.parse_nvidia_smi(RTX2080_LINE, fields=RTX2080_FIELDS)
    assert gpu["name"] == "GeForce RTX 2080"
    assert gpu["uuid"] == "GPU-22b2c6ac-2d49-4863-197c-9c469071178a"
    assert gpu["vram_total_bytes"] == 7979 * 1024 * 1024  # nounits: MiB
    assert gpu["driver_version"] == "440.64"
    assert gpu["compute_capability"] is None


def test_values_with_units_and_na():
    # the triton sample's layout with its units, and the memory columns as nvidia-smi prints them without nounits
    out = "name, memory.total [MiB], memory.free [MiB], compute_cap\nNVIDIA TITAN V, 12288 MiB, [N/A], 7.0\n"
    (gpu,) = hw.parse_nvidia_smi(out)
    assert gpu["vram_total_bytes"] == 12288 * 1024 * 1024 and gpu["vram_free_bytes"] is None


def test_nvidia_smi_query_and_state(tmp_path):
    tools = Tools(nvidia_smi=(0, TRITON, ""))
    gpus, state = hw.nvidia_gpus(tools.run, tools.which, str(tmp_path))
    assert tools.calls == [["/usr/bin/nvidia-smi", "--query-gpu=" + ",".join(hw.NVIDIA_FIELDS), "--format=csv,nounits"]]
    assert len(gpus) == 2
    assert state["tool_working"] and state["hardware_present"] and state["driver_version"] == "570.86.15"


def test_driver_without_compute_cap_is_asked_again(tmp_path):
    tools = Tools(nvidia_smi=[(2, NOT_VALID, ""), (9, NOT_LOADED, "")])
    gpus, state = hw.nvidia_gpus(tools.run, tools.which, str(tmp_path))
    assert "compute_cap" in tools.calls[0][1] and "compute_cap" not in tools.calls[1][1]
    assert state["compute_cap_query"] is False
    assert gpus == [] and state["tool_working"] is False
    assert "couldn't communicate with the NVIDIA driver" in state["error"] and "exit code 9" in state["error"]


def test_old_driver_answers_the_second_query(tmp_path):
    # Constructed from the recorded gpu-utils#83 values, laid out as nvidia-smi answers our query without compute_cap.
    fields = [f for f in hw.NVIDIA_FIELDS if f != "compute_cap"]
    values = hw.parse_nvidia_smi(RTX2080_LINE, fields=RTX2080_FIELDS)[0]
    header = ", ".join(f + (" [MiB]" if f.startswith("memory.") else "") for f in fields)
    row = "0, GeForce RTX 2080, %s, 00000000:0A:00.0, 7979, [N/A], 440.64" % values["uuid"]
    tools = Tools(nvidia_smi=[(2, NOT_VALID, ""), (0, header + "\n" + row + "\n", "")])
    gpus, state = hw.nvidia_gpus(tools.run, tools.which, str(tmp_path))
    assert state["compute_cap_query"] is False and state["tool_working"] is True
    assert gpus[0]["driver_version"] == "440.64" and gpus[0]["compute_capability"] is None
    assert gpus[0]["vram_total_bytes"] == 7979 * 1024 * 1024


def test_gpu_on_the_bus_without_driver(tmp_path):
    root = tree("constructed_nvidia-no-driver", tmp_path)
    facts = gather(root, Tools())
    nvidia = facts["gpu_drivers"][0]
    assert nvidia["hardware_present"] and not nvidia["tool_present"]
    assert nvidia["pci_devices"][0]["slot"] == "0000:05:00.0" and nvidia["pci_devices"][0]["device_id"] == "0x2204"
    assert nvidia["pci_devices"][0]["kernel_driver"] is None
    assert nvidia["driver_version"] is None and facts["gpus"] == []


def test_kernel_module_without_nvidia_smi(tmp_path):
    root = tree("constructed_nvidia-module-without-smi", tmp_path)
    nvidia = gather(root, Tools())["gpu_drivers"][0]
    assert nvidia["kernel_driver_version"] == "384.98" and nvidia["driver_version"] == "384.98"
    assert not nvidia["tool_present"]


def test_no_gpu_at_all(tmp_path):
    facts = gather(tmp_path, Tools())
    assert facts["gpus"] == []
    assert [d["hardware_present"] for d in facts["gpu_drivers"]] == [False, False]


# -- AMD: sysfs and rocm-smi ------------------------------------------------------------------------------

@pytest.mark.parametrize("version, target", [(110000, "gfx1100"), (90010, "gfx90a"), (90402, "gfx942"),
                                             (110501, "gfx1151"), (100300, "gfx1030"), (90006, "gfx906"), (0, None)])
def test_gfx_target_from_kfd_version(version, target):
    assert hw.gfx_target(version) == target


def test_navi31_from_kfd_and_drm(tmp_path):
    root = tree(NAVI31, tmp_path)
    facts = gather(root, Tools())
    (gpu,) = facts["gpus"]
    amd = facts["gpu_drivers"][1]
    assert gpu["gfx_target"] == "gfx1100" and gpu["kfd_node"] == 1  # node 0 is the CPU
    assert gpu["pci_bus_id"] == "0000:03:00.0" and gpu["render_node"] == "/dev/dri/renderD128"
    assert gpu["vram_total_bytes"] == 21458059264 and gpu["vram_free_bytes"] == 21458059264 - 27856896
    assert gpu["name"] == "AMD GPU 1002:744c"
    assert gpu["sources"]["gfx_target"] == "/sys/class/kfd/kfd/topology/nodes/1/properties gfx_target_version"
    assert gpu["sources"]["vram_total_bytes"] == "/sys/class/drm/renderD128/device/mem_info_vram_total"
    assert amd["kernel_driver_loaded"] and amd["kfd_present"] and amd["hardware_present"]
    assert amd["pci_devices"][0]["slot"] == "0000:03:00.0"


def test_rocm_smi_names_the_card(tmp_path):
    root = tree(NAVI31, tmp_path)
    tools = Tools(rocm_smi=(0, ROCM_RX7900, ""))
    facts = gather(root, tools)
    assert tools.calls == [["/usr/bin/rocm-smi", "--showproductname", "--showmeminfo", "vram", "--json"]]
    (gpu,) = facts["gpus"]
    assert gpu["name"] == "Radeon RX 7900 XT" and gpu["sources"]["name"] == "rocm-smi --json"
    assert gpu["sources"]["vram_total_bytes"].startswith("/sys/")  # sysfs wins where it has the figure
    assert facts["gpu_drivers"][1]["tool_working"] is True


def test_rocm_smi_alone_when_sysfs_is_not_readable(tmp_path):
    tools = Tools(rocm_smi=(0, ROCM_RX7900, ""))
    (gpu,) = gather(tmp_path, tools)["gpus"]
    assert (gpu["name"], gpu["gfx_target"], gpu["vram_total_bytes"]) == ("Radeon RX 7900 XT", "gfx1100", 21458059264)
    assert gpu["sources"]["gfx_target"] == "rocm-smi --json"


def test_rocm_smi_spells_gfx90a_as_gfx9010():
    (card,) = hw.parse_rocm_smi(ROCM_MI250X)
    assert card["gfx_target"] == "gfx9010" and card["node"] == 7 and card["vram_total_bytes"] is None


@pytest.mark.parametrize("rc", [0, 1])
def test_rocm_smi_failing(tmp_path, rc):
    root = tree(NAVI31, tmp_path)
    facts = gather(root, Tools(rocm_smi=(rc, ROCM_NO_DRIVER, "")))
    amd = facts["gpu_drivers"][1]
    assert amd["tool_working"] is False and "Driver not initialized" in amd["error"]
    assert facts["gpus"][0]["gfx_target"] == "gfx1100"  # sysfs still answers


def test_apu_without_drm_files(tmp_path):
    root = tree("strix-halo-apu_kfd-recorded-lemonade-419", tmp_path)
    (gpu,) = gather(root, Tools())["gpus"]
    assert gpu["gfx_target"] == "gfx1151" and gpu["pci_bus_id"] == "0000:c2:00.0"
    assert gpu["vram_total_bytes"] is None and gpu["name"] == "AMD GPU 1002:1586"


def test_amd_gpu_without_amdgpu(tmp_path):
    root = tree("constructed_amd-no-amdgpu", tmp_path)
    facts = gather(root, Tools())
    amd = facts["gpu_drivers"][1]
    assert amd["hardware_present"] and not amd["kernel_driver_loaded"] and not amd["kfd_present"]
    assert facts["gpus"] == []


# -- CPU, memory, disk (this machine) ---------------------------------------------------------------------

def test_cpu_memory_disk_of_this_machine(tmp_path):
    facts = hw.gather(str(tmp_path), lambda argv: (1, "", ""), lambda name: None)
    cpu, memory, disk = facts["cpu"], facts["memory"], facts["disk"]
    assert cpu["threads"] == os.cpu_count() and 1 <= cpu["cores"] <= cpu["threads"]
    assert set(cpu["flags"]) >= {"avx", "avx2", "avx512"} and cpu["sources"]["flags"] == "/proc/cpuinfo"
    assert 0 < memory["available_bytes"] <= memory["total_bytes"]
    assert memory["sources"]["total_bytes"] in ("psutil", "/proc/meminfo MemTotal")
    assert disk["free_bytes"] > 0 and disk["sources"]["free_bytes"].startswith("statvfs(")


def test_meminfo_without_psutil(monkeypatch):
    monkeypatch.setattr(hw, "HAS_PSUTIL", False)
    memory = hw.memory_info()
    with open("/proc/meminfo") as f:
        total_kb = int(f.readline().split()[1])
    assert memory["total_bytes"] == total_kb * 1024
    assert memory["sources"]["available_bytes"] == "/proc/meminfo MemAvailable"


def test_disk_of_a_path_not_made_yet(tmp_path):
    disk = hw.disk_info(str(tmp_path / "not" / "yet"))
    assert disk["measured_at"] == str(tmp_path) and disk["free_bytes"] > 0
