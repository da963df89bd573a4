"""The server_instances filter: the Ollama servers a host runs for ollama_server_instances, pinned to its GPUs.

The GPUs are as ollama_facts reads them from the recorded nvidia-smi and sysfs samples (tests/unit/plugins/fixtures),
so the pinning is checked against what the real tools print on multi-GPU hosts."""
import hashlib

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.ollama.plugins.filter.server_instances import server_instances
from ansible_collections.llmops.ollama.plugins.module_utils import _hardware
from ansible_collections.llmops.ollama.tests.unit.fixtures.gpu.recorded import Tools, text

NVIDIA_4 = [dict(vendor="nvidia", index=i, uuid="GPU-%d%d%d%d-aaaa" % (i, i, i, i), name="NVIDIA L4")
            for i in range(4)]
AMD_2 = [dict(vendor="amd", index=i, uuid=None, name="AMD Instinct MI210") for i in range(2)]


def test_one_instance_is_ollama_service_unpinned():
    found = server_instances(1, NVIDIA_4, "127.0.0.1", 11434)
    assert [(i["name"], i["url"], i["env"]) for i in found] == [("ollama", "http://127.0.0.1:11434", {})]


def test_auto_is_one_instance_per_gpu_pinned_by_uuid_on_consecutive_ports():
    found = server_instances("auto", NVIDIA_4, "0.0.0.0", 11434)
    assert [i["unit"] for i in found] == ["ollama.service", "ollama@1.service", "ollama@2.service", "ollama@3.service"]
    assert [i["url"] for i in found] == ["http://127.0.0.1:%d" % p for p in range(11434, 11438)]
    assert [i["listen"] for i in found] == ["0.0.0.0:%d" % p for p in range(11434, 11438)]
    assert [i["env"] for i in found] == [{"CUDA_VISIBLE_DEVICES": g["uuid"]} for g in NVIDIA_4]
    text = found[2]["dropin_text"]
    assert 'Environment="OLLAMA_HOST=0.0.0.0:11436"\n' in text
    assert 'Environment="CUDA_VISIBLE_DEVICES=GPU-2222-aaaa"\n' in text
    # only instance 0 prunes the shared store when it starts
    assert 'Environment="OLLAMA_NOPRUNE=true"\n' in text and "dropin_text" not in found[0]
    assert found[2]["dropin_path"] == "/etc/systemd/system/ollama@2.service.d/15-instance.conf"
    declared = found[2]["declared"][1]
    assert declared["sha256"] == hashlib.sha256(text.encode()).hexdigest()


def test_a_count_splits_the_gpus_in_order():
    found = server_instances(3, NVIDIA_4 + [dict(NVIDIA_4[0], index=4, uuid="GPU-4")], "127.0.0.1", 11434)
    assert [i["gpus"] for i in found] == [["GPU-0000-aaaa", "GPU-1111-aaaa"], ["GPU-2222-aaaa", "GPU-3333-aaaa"],
                                          ["GPU-4"]]
    assert found[0]["env"] == {"CUDA_VISIBLE_DEVICES": "GPU-0000-aaaa,GPU-1111-aaaa"}


def test_a_count_on_a_host_without_gpus_runs_that_many_unpinned():
    found = server_instances("2", [], "127.0.0.1", 11500)
    assert [(i["name"], i["port"], i["env"]) for i in found] == [("ollama", 11500, {}), ("ollama@1", 11501, {})]


def test_amd_gpus_are_pinned_by_index_with_rocr():
    found = server_instances("auto", AMD_2, "127.0.0.1", 11434)
    assert [i["env"] for i in found] == [{"ROCR_VISIBLE_DEVICES": "0"}, {"ROCR_VISIBLE_DEVICES": "1"}]


def test_a_list_names_each_instances_gpus_by_uuid_or_index():
    found = server_instances([["GPU-3333-aaaa", 0], "1"], NVIDIA_4, "127.0.0.1", 11434)
    assert [i["env"]["CUDA_VISIBLE_DEVICES"] for i in found] == ["GPU-3333-aaaa,GPU-0000-aaaa", "GPU-1111-aaaa"]
    # one instance given its GPU by name is pinned too
    assert server_instances(["GPU-2222-aaaa"], NVIDIA_4)[0]["env"] == {"CUDA_VISIBLE_DEVICES": "GPU-2222-aaaa"}


def test_jetson_and_cpu_only_gpus_are_not_counted():
    jetson = [dict(vendor="nvidia-jetson", index=0, uuid=None, name="Orin")]
    assert len(server_instances("auto", jetson)) == 1


@pytest.mark.parametrize("spec, gpus, words", [
    (5, NVIDIA_4, "ollama_server_instances is 5 but the host has 4 GPUs"),
    (0, [], "give 1 to 64"),
    ("many", [], "give a count"),
    (True, [], "give a count"),
    ([["GPU-9"]], NVIDIA_4, "names GPU GPU-9, which the host does not have; its GPUs: GPU-0000-aaaa"),
    ([["GPU-1111-aaaa"], [1]], NVIDIA_4, "GPU 1 is in instances 0 and 1"),
    ([], NVIDIA_4, "lists 0 instances"),
    ([{"gpu": 1}], NVIDIA_4, "instance 0 of ollama_server_instances is"),
])
def test_what_cannot_run_is_refused_with_what_to_do(spec, gpus, words):
    with pytest.raises(AnsibleFilterError, match="server_instances: ") as raised:
        server_instances(spec, gpus)
    assert words in str(raised.value)


def test_recorded_two_gpu_nvidia_smi_gives_one_pinned_instance_per_gpu(tmp_path):
    """The GPUs as ollama_facts reads a recorded nvidia-smi of a host with two cards: one instance per GPU."""
    tools = Tools(nvidia_smi=(0, text("nvidia/triton-8070_two-gpus.csv"), ""))
    gpus, _state = _hardware.nvidia_gpus(tools.run, tools.which, str(tmp_path))
    found = server_instances("auto", gpus, "127.0.0.1", 11434)
    # the sample has no uuid column: the instances are pinned by the index nvidia-smi gives
    assert [(i["unit"], i["env"]) for i in found] == [("ollama.service", {"CUDA_VISIBLE_DEVICES": "0"}),
                                                      ("ollama@1.service", {"CUDA_VISIBLE_DEVICES": "1"})]


def test_recorded_uuid_is_what_pins(tmp_path):
    sample = text("nvidia/gpu-utils-83_rtx2080-driver-440_noheader.csv")
    fields = ("power.limit,power.min_limit,power.max_limit,memory.total,vbios_version,driver_version,name,gpu_uuid,"
              "power.draw,temperature.gpu,temperature.memory,clocks.current.graphics,clocks.sm,clocks.mem,"
              "utilization.gpu,utilization.memory,fan.speed,pcie.link.width.current,pstate").split(",")
    (gpu,) = _hardware.parse_nvidia_smi(sample, fields=fields)
    found = server_instances([[gpu["uuid"]]], [gpu])
    assert found[0]["env"] == {"CUDA_VISIBLE_DEVICES": "GPU-22b2c6ac-2d49-4863-197c-9c469071178a"}
