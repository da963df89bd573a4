"""The models role spreading a bundle in waves (ollama_models_bundle_spread: waves) on lab1-lab3: the seed (the
controller's bundle, served over HTTP by the lab mirror on the machine) sends the blobs to lab1 only (wave 0); lab1
then serves them to lab2 (wave 1) and to lab3 (wave 2). The kernel's interface counters of each host's veth and of the
bridge say who sent the bytes (HTTP is not compressed, as Ansible's SSH is); the registry front says who pulled. Each
peer serves only to the holders of its password for the rollout.

Runs after test_site.py, on its converged lab1-lab3 (on bare hosts it installs the server first), with models of its
own that it removes at the end.
"""
import json
import shutil
import urllib.request

import pytest

from tests.lab import fleet, models
from tests.lab.paths import LAB_CACHE, REPO

HOSTS = ["lab1", "lab2", "lab3"]
MB = 1000 * 1000
SIZES = {"waves/a": 6 * MB, "waves/b": 9 * MB}
PEER_PORT = 11480
PLAYBOOK = REPO / "tests" / "fleet" / "playbooks" / "bundle_waves.yml"


def registry_bytes(lab):
    with urllib.request.urlopen(lab.site["registry_url"] + "/_lab/stats") as resp:
        stats = json.loads(resp.read())
    return dict((h, stats.get(lab.ips[h], {}).get("blob_bytes", 0)) for h in HOSTS)


@pytest.fixture(scope="module")
def waves(lab):
    digests = {}
    for repo, size in SIZES.items():
        digests["%s/%s:latest" % (lab.site["registry"], repo)] = models.push_model(
            lab.site["registry_url"], repo, "latest", 1, size)
    for host in HOSTS:
        if lab.ssh(host, "curl -fsS http://127.0.0.1:11434/api/version", check=False) == "":
            assert lab.playbook("servers.yml", limit=",".join(HOSTS), extra_vars={"ollama_models": []}).rc == 0
            break
    bundle = LAB_CACHE / "mirror" / "test-waves-bundle"  # the mirror serves it as the seed
    shutil.rmtree(str(bundle), ignore_errors=True)
    extra = {"waves_hosts": ",".join(HOSTS), "waves_bundle_dir": str(bundle), "ollama_models": sorted(digests),
             "ollama_models_bundle_url": lab.site["mirror_url"] + "/test-waves-bundle"}
    yield lab, digests, extra
    for host in HOSTS:
        lab.ssh(host, " ; ".join("ollama rm %s" % name for name in digests), check=False)
    shutil.rmtree(str(bundle))


def test_waves_put_the_models_on_every_host_each_served_by_a_peer(waves):
    lab, digests, extra = waves
    sent_before, pulled_before = fleet.bytes_sent(HOSTS), registry_bytes(lab)
    jobs_before = dict((h, lab.ssh(h, "ls /root/.ansible_async 2>/dev/null | sort", check=False)) for h in HOSTS)
    run = lab.playbook(PLAYBOOK, extra_vars=extra)
    assert run.rc == 0, run.output[-4000:]
    sent = dict((k, v - sent_before[k]) for k, v in fleet.bytes_sent(HOSTS).items())
    copy = sum(SIZES.values())
    for host in HOSTS:
        # the import jobs' status files are gone from the host
        assert lab.ssh(host, "ls /root/.ansible_async 2>/dev/null | sort", check=False) == jobs_before[host], host
        tags = dict((m["name"], m["digest"]) for m in lab.api(host, "/api/tags")["models"])
        assert dict((n, tags.get(n)) for n in digests) == dict((n, d.split(":")[1]) for n, d in digests.items()), host
        # no peer server is left running, its port is closed, and its password is gone from the host
        assert lab.ssh(host, "systemctl is-active ollama-bundle-peer.service", check=False).strip() != "active"
        assert lab.ssh(host, "test -e /run/ollama-bundle-peer && echo left", check=False).strip() == "", host
        probe = lab.ssh(host, "curl -sS -m 5 -o /dev/null http://127.0.0.1:%d/; echo rc=$?" % PEER_PORT, check=False)
        assert "rc=0" not in probe, host
    assert registry_bytes(lab) == pulled_before  # no host pulled from the registry
    # each peer asked for its password (tests/unit/roles/models/test_serve_blobs.py: nothing without it), which the
    # run's output never shows
    assert "http://peer:" not in run.output.replace("http://peer:********@", ""), run.output[-4000:]
    # lab1 served both later waves; lab2 and lab3 served nobody; the machine sent lab1 its copy (the seed), and
    # Ansible's own traffic (modules over SSH), far less than a second copy: one seed serving every host sends three
    assert sent["lab1"] >= 2 * copy, sent
    assert sent["lab2"] < copy / 4 and sent["lab3"] < copy / 4, sent
    assert copy <= sent["machine"] < 1.5 * copy, sent

    again = lab.playbook(PLAYBOOK, extra_vars=extra)
    assert again.rc == 0, again.output[-3000:]
    assert again.changed() == dict((h, 0) for h in HOSTS), again.output[-3000:]
