"""The models role spreading a bundle in waves (ollama_models_bundle_spread: waves) on lab1-lab3: the seed (the
controller's bundle, served over HTTP by the lab mirror on the machine) sends the blobs to lab1 only (wave 0); lab1
then serves them to lab2 (wave 1) and to lab3 (wave 2). The kernel's interface counters of each host's veth and of the
bridge say who sent the bytes (HTTP is not compressed, as Ansible's SSH is); the registry front says who pulled. Each
peer serves only the rollout's blobs, over TLS, to the holders of its password for the rollout; it does so over IPv6
too, on the lab's IPv6 network (given to lab1-lab3 here: tests.lab.fleet.add_ipv6).

Runs after test_site.py, on its converged lab1-lab3 (on bare hosts it installs the server first), with models of its
own that it removes at the end.
"""
import base64
import glob
import json
import os
import shutil
import tempfile
import urllib.request

import pytest

from tests.lab import fleet, models
from tests.lab.paths import LAB_CACHE, REPO
from tests.lab.pki import LabCA

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
    # each peer asked for its password (tests/unit/roles/models/test_serve_blobs.py: nothing without it), over TLS,
    # which the run's output never shows, nor any key; the controller's CA for the rollout is gone
    assert "peer:" not in run.output.replace("https://peer:********@", ""), run.output[-4000:]
    assert "-----BEGIN" not in run.output, run.output[-4000:]
    assert glob.glob(os.path.join(tempfile.gettempdir(), "ollama-peer-ca*")) == []
    # lab1 served both later waves; lab2 and lab3 served nobody; the machine sent lab1 its copy (the seed), and
    # Ansible's own traffic (modules over SSH), far less than a second copy: one seed serving every host sends three
    assert sent["lab1"] >= 2 * copy, sent
    assert sent["lab2"] < copy / 4 and sent["lab3"] < copy / 4, sent
    assert copy <= sent["machine"] < 1.5 * copy, sent

    again = lab.playbook(PLAYBOOK, extra_vars=extra)
    assert again.rc == 0, again.output[-3000:]
    assert again.changed() == dict((h, 0) for h in HOSTS), again.output[-3000:]


def _remove(lab, hosts, names):
    for host in hosts:
        lab.ssh(host, " ; ".join("ollama rm %s" % name for name in names), check=False)


def test_waves_over_ipv6_each_host_served_by_a_peer(waves):
    """The same rollout with the peers reaching each other at IPv6 addresses: lab2 and lab3 lack the models again
    (lab1, which has them, takes no part): the seed sends lab2 its copy, and lab2 serves lab3 over IPv6."""
    lab, digests, extra = waves
    addresses = fleet.add_ipv6(HOSTS)
    _remove(lab, HOSTS[1:], digests)
    sent_before = fleet.bytes_sent(HOSTS)
    run = lab.playbook(PLAYBOOK, extra_vars=dict(extra, waves_addresses=addresses))
    assert run.rc == 0, run.output[-4000:]
    sent = dict((k, v - sent_before[k]) for k, v in fleet.bytes_sent(HOSTS).items())
    for host in HOSTS:
        tags = dict((m["name"], m["digest"]) for m in lab.api(host, "/api/tags")["models"])
        assert dict((n, tags.get(n)) for n in digests) == dict((n, d.split(":")[1]) for n, d in digests.items()), host
    # lab2 served lab3: its certificate for the rollout names its IPv6 address alone, which lab3 verified, so lab3
    # reached it there (https://peer:...@[fd42:199::12]:11480)
    copy = sum(SIZES.values())
    assert sent["lab2"] >= copy and sent["lab1"] < copy / 4 and sent["lab3"] < copy / 4, sent


PROBE = """curl -sS -o /tmp/probe.out -w '%%{http_code}' --cacert /tmp/peer-ca.pem %s 'https://%s[%s]:%d/blobs/%s'; echo " rc=$?" """


def test_a_peer_on_a_lab_host_serves_the_rollouts_blobs_only_over_tls_and_ipv6(waves, tmp_path):
    """The peer server (roles/models/files/serve_blobs.py) run on lab1 as the role runs it (a transient unit, its
    files root's alone, serving as the store's owner), asked from lab2 over IPv6: a blob of the rollout comes whole;
    a blob the store has that is not in the rollout gets 404, a wrong password 401, plain HTTP no answer."""
    lab, digests, extra = waves
    addresses = fleet.add_ipv6(HOSTS)
    store = "/usr/share/ollama/.ollama/models/blobs"
    blobs = lab.ssh("lab1", "ls %s" % store).split()
    listed, unlisted = blobs[0], blobs[1]
    ca = LabCA(tmp_path / "ca", name="rollout CA")
    cert, key = ca.issue("lab1", ips=(addresses["lab1"],))
    files = {"password": "r0llout-s3cret\n", "digests": "sha256:%s\n" % listed[len("sha256-"):],
             "tls.pem": key.read_text() + cert.read_text()}
    setup = ["rm -rf /run/test-peer", "mkdir -m 0700 /run/test-peer"] + [
        "echo %s | base64 -d > /run/test-peer/%s && chmod 0400 /run/test-peer/%s"
        % (base64.b64encode(text.encode()).decode(), name, name) for name, text in files.items()]
    lab.ssh("lab1", " && ".join(setup))
    script = (REPO / "roles" / "models" / "files" / "serve_blobs.py").read_text()
    lab.ssh("lab1", "echo %s | base64 -d > /run/test-peer/serve_blobs.py" % base64.b64encode(script.encode()).decode())
    lab.ssh("lab2", "echo %s | base64 -d > /tmp/peer-ca.pem" % base64.b64encode(ca.cert.read_bytes()).decode())
    lab.ssh("lab1", "systemd-run --unit test-peer --property RuntimeMaxSec=600 /usr/bin/python3 /run/test-peer/serve_blobs.py"
                    " --directory %s --port %d --password-file /run/test-peer/password --digests-file"
                    " /run/test-peer/digests --tls-file /run/test-peer/tls.pem --user ollama" % (store, PEER_PORT))
    try:
        lab.ssh("lab2", "for i in $(seq 50); do curl -s -o /dev/null --cacert /tmp/peer-ca.pem 'https://[%s]:%d/' "
                        "&& break; sleep 0.2; done" % (addresses["lab1"], PEER_PORT), check=False)

        def probe(blob, login="peer:r0llout-s3cret@", scheme_args=""):
            return lab.ssh("lab2", PROBE % (scheme_args, login, addresses["lab1"], PEER_PORT, blob), check=False).strip()

        assert probe(listed) == "200 rc=0"
        assert lab.ssh("lab2", "sha256sum /tmp/probe.out").split()[0] == listed[len("sha256-"):]
        assert probe(unlisted) == "404 rc=0"
        assert probe(listed, login="peer:wrong@") == "401 rc=0"
        plain = lab.ssh("lab2", "curl -sS -m 5 -o /dev/null -w '%%{http_code}' 'http://[%s]:%d/blobs/%s'; echo \" rc=$?\""
                        % (addresses["lab1"], PEER_PORT, listed), check=False).strip()
        assert plain.startswith("000") and "rc=0" not in plain, plain
        # it serves as the store's owner, and nothing secret is on its command line
        pid = lab.ssh("lab1", "systemctl show -p MainPID --value test-peer").strip()
        assert lab.ssh("lab1", "stat -c %%U /proc/%s" % pid).strip() == "ollama"
        assert "r0llout" not in lab.ssh("lab1", "tr '\\0' ' ' < /proc/%s/cmdline" % pid)
    finally:
        lab.ssh("lab1", "systemctl stop test-peer; rm -rf /run/test-peer", check=False)
        lab.ssh("lab2", "rm -f /tmp/peer-ca.pem /tmp/probe.out", check=False)
