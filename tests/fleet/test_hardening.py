"""The server's systemd sandbox (roles/server/templates/hardening.conf.j2, docs/hardening.md) on lab6: the exposure
score before and after, a hardened server that still answers and pulls into its store, writes refused outside the
home and the model store (tried as the service user inside the running server's own mount namespace), and the GPU
variant of the drop-in (simulated GPU facts: the lab has no GPU) plus per-directive overrides.

The lab's nspawn containers accept every directive the role writes, but do not enforce the BPF-based ones
(DevicePolicy=/DeviceAllow=, IPAddressDeny=; RestrictFileSystems= is skipped with "LSM BPF not supported"):
the device policy is checked as configured, not as enforced.
"""
import re
import time

import pytest

from tests.lab.paths import LAB_STATE

HOST = "lab6"  # the other lab hosts belong to other test files
DROPIN = "/etc/systemd/system/ollama.service.d/20-hardening.conf"
# Measured on lab6 (Debian 13, systemd 257): 9.2 without the drop-in, 1.2 with it (no GPU), 1.6 with GPU devices.
BOUND_CPU = 1.5
BOUND_GPU = 2.0
FAKE_GPU = {"vendors": ["nvidia", "amd"], "gpus": ["simulated"], "compute": "cpu", "summary": "simulated GPUs",
            "problems": [], "archive": "none", "device_allow": ["char-nvidia* rw", "char-drm rw", "char-kfd rw"],
            "supplementary_groups": ["render", "video"]}


def record(line):
    with open(LAB_STATE / "measurements.txt", "a") as f:
        f.write(line + "\n")


def converge(lab, **extra_vars):
    run = lab.playbook("servers.yml", limit=HOST, extra_vars=extra_vars or None)
    assert run.rc == 0, run.output[-5000:]
    return run


def score(lab):
    out = lab.ssh(HOST, "systemd-analyze security ollama.service --no-pager")
    return float(re.search(r"Overall exposure level for ollama\.service: ([0-9.]+)", out).group(1))


def show(lab, *props):
    out = lab.ssh(HOST, "systemctl show ollama " + " ".join("-p " + p for p in props))
    values = {}
    for line in out.splitlines():
        name, _sep, value = line.partition("=")
        values.setdefault(name, []).append(value)
    return {k: " ".join(v) for k, v in values.items()}


def answers(lab):
    return lab.api(HOST, "/api/version")["version"]


@pytest.fixture(scope="module")
def hardened(lab):
    start = time.monotonic()
    converge(lab, ollama_server_hardening=False)
    before = score(lab)
    answers(lab)
    run = converge(lab)
    after = score(lab)
    record("hardening on %s: exposure %.1f before, %.1f after (converge %.1fs)" % (HOST, before, after, run.seconds))
    yield dict(before=before, after=after)
    record("test_hardening on %s: %.1fs" % (HOST, time.monotonic() - start))


def test_exposure_score_drops_below_the_measured_bound(lab, hardened):
    assert hardened["before"] >= 9.0, hardened  # the plain unit: "UNSAFE"
    assert hardened["after"] <= BOUND_CPU, hardened
    assert answers(lab)
    props = show(lab, "ActiveState", "NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp",
                 "PrivateDevices", "ReadWritePaths", "RestrictAddressFamilies", "CapabilityBoundingSet")
    assert props["ActiveState"] == "active"
    assert props["NoNewPrivileges"] == "yes" and props["PrivateTmp"] == "yes" and props["PrivateDevices"] == "yes"
    assert props["ProtectSystem"] == "strict" and props["ProtectHome"] == "yes"
    assert set(props["ReadWritePaths"].split()) == {"/usr/share/ollama", "/usr/share/ollama/.ollama/models"}
    assert set(props["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert props["CapabilityBoundingSet"] == ""


def test_second_run_changes_nothing(lab, hardened):
    run = converge(lab)
    assert run.stats[HOST]["changed"] == 0, run.output[-3000:]


def test_hardened_server_pulls_a_model_into_its_store(lab, hardened):
    model = "%s/lab/tiny:latest" % lab.site["registry"]
    lab.ssh(HOST, "curl -fsS -X DELETE http://127.0.0.1:11434/api/delete -d '{\"model\": \"%s\"}' || true" % model)
    assert model not in [m["name"] for m in lab.api(HOST, "/api/tags")["models"]]
    out = lab.ssh(HOST, "curl -fsS http://127.0.0.1:11434/api/pull -d '{\"model\": \"%s\", \"insecure\": true}'" % model)
    assert out.strip().splitlines()[-1] == '{"status":"success"}', out[-2000:]
    assert model in [m["name"] for m in lab.api(HOST, "/api/tags")["models"]]
    digest = lab.site["digests"]["lab/tiny:latest"]
    manifest = "/usr/share/ollama/.ollama/models/manifests/%s/lab/tiny/latest" % lab.site["registry"]
    assert lab.ssh(HOST, "stat -c %%U %s && sha256sum %s" % (manifest, manifest)).split()[:2] == \
        ["ollama", digest.split(":")[1]]
    # the key the server writes at start is in its (writable) home
    assert lab.ssh(HOST, "stat -c %U /usr/share/ollama/.ollama/id_ed25519").strip() == "ollama"


def test_server_cannot_write_outside_its_paths(lab, hardened):
    """Writes tried as the service user in the running server's mount namespace (nsenter -m): what the server
    itself would see."""
    pid = show(lab, "MainPID")["MainPID"]
    status = lab.ssh(HOST, "grep -E '^(NoNewPrivs|Seccomp|CapEff|CapBnd):' /proc/%s/status" % pid)
    assert re.search(r"NoNewPrivs:\s+1", status) and re.search(r"Seccomp:\s+2", status)
    assert re.search(r"CapEff:\s+0+\n", status) and re.search(r"CapBnd:\s+0+\n", status), status
    as_unit = "nsenter -t %s -m -S $(id -u ollama) -G $(id -g ollama) " % pid
    script = "; ".join("%s touch %s/.hardening-probe 2>&1 && echo 'WROTE %s'" % (as_unit, d, d)
                       for d in ["/etc", "/opt/ollama", "/usr/local/bin", "/var/lib", "/root", "/home",
                                 "/usr/share/ollama", "/usr/share/ollama/.ollama/models", "/tmp"])
    out = lab.ssh(HOST, script, check=False)
    wrote = set(re.findall(r"WROTE (\S+)", out))
    assert wrote == {"/usr/share/ollama", "/usr/share/ollama/.ollama/models", "/tmp"}, out
    assert "/etc/.hardening-probe': Read-only file system" in out, out
    # its /tmp is its own: the probe is not in the host's /tmp
    assert lab.ssh(HOST, "ls /tmp/.hardening-probe", check=False) == ""
    lab.ssh(HOST, "rm -f /usr/share/ollama/.hardening-probe /usr/share/ollama/.ollama/models/.hardening-probe")


def test_gpu_host_keeps_its_devices_and_directives_can_be_turned_off(lab, hardened):
    """With GPUs found (simulated: extra vars win over the role's set_fact) /dev stays, closed to all but the GPU
    devices; ollama_server_hardening_extra drops or changes single directives. The GPU guard's wait for the driver is
    turned off: lab6 has no driver to wait for (test_gpu.py tests the wait, with a stand-in driver tree)."""
    try:
        converge(lab, ollama_server_gpu=FAKE_GPU, ollama_server_gpu_wait=False,
                 ollama_server_hardening_extra={"ProtectProc": None, "UMask": "0077"})
        dropin = lab.ssh(HOST, "cat %s" % DROPIN)
        assert "ProtectProc" not in dropin and "UMask=0077" in dropin
        for line in ["DevicePolicy=closed", "DeviceAllow=char-nvidia* rw", "DeviceAllow=char-drm rw",
                     "DeviceAllow=char-kfd rw", "PrivateDevices=no", "PrivateUsers=no", "MemoryDenyWriteExecute=no"]:
            assert line in dropin.splitlines(), (line, dropin)
        props = show(lab, "ActiveState", "DevicePolicy", "PrivateDevices", "ProtectProc")
        assert props == {"ActiveState": "active", "DevicePolicy": "closed", "PrivateDevices": "no",
                         "ProtectProc": "default"}, props
        assert answers(lab)
        gpu = score(lab)
        record("hardening on %s with GPU devices: exposure %.1f" % (HOST, gpu))
        assert gpu <= BOUND_GPU
    finally:
        converge(lab)
    assert score(lab) == hardened["after"]
