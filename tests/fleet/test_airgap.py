"""An air-gapped host (lab4): no route to the registry or the release mirror, yet it gets the server from an archive
on the controller and its models from a bundle the controller fetched once. The registry front counts the blob
bytes it serves per client address, so the test sees what crossed the "WAN" and from where."""
import json
import shutil
import subprocess
import tempfile
import urllib.request

import pytest

from tests.lab import ollama_build

HOST = "lab4"
NS = "llmlab-" + HOST


def nft(*args):
    subprocess.run(["ip", "netns", "exec", NS, "nft"] + list(args), check=True)


@pytest.fixture(scope="module")
def airgapped(lab):
    """Cut lab4 off from the registry (:5000) and the mirror (:8080); SSH from the controller still works."""
    gateway = lab.site["mirror_url"].split("//")[1].split(":")[0]
    nft("add", "table", "inet", "airgap")
    nft("add", "chain", "inet", "airgap", "out", "{ type filter hook output priority 0 ; }")
    nft("add", "rule", "inet", "airgap", "out", "ip", "daddr", gateway, "tcp", "dport", "{ 5000, 8080 }", "reject")
    yield lab
    nft("delete", "table", "inet", "airgap")


def registry_stats(lab):
    with urllib.request.urlopen(lab.site["registry_url"] + "/_lab/stats") as resp:
        return json.loads(resp.read())


def test_airgapped_host_converges_from_controller_sources(airgapped):
    lab = airgapped
    probe = lab.ssh(HOST, "curl -sS -m 5 %s/v2/ 2>&1; echo rc=$?" % lab.site["registry_url"], check=False)
    assert "rc=0" not in probe, "the host still reaches the registry: " + probe
    bundle = tempfile.mkdtemp(prefix="bundle-")
    ip = lab.ips[HOST]
    before = registry_stats(lab).get(ip, {}).get("blob_bytes", 0)
    extra = {
        "ollama_server_archive_src": str(ollama_build.archive_path(ollama_build.VERSIONS[0])),
        "ollama_models_source": "bundle",
        "ollama_models_bundle_dir": bundle,
    }
    try:
        run = lab.playbook("servers.yml", limit=HOST, extra_vars=extra)
        assert run.rc == 0, run.output[-4000:]
        tags = {m["name"]: m["digest"] for m in lab.api(HOST, "/api/tags")["models"]}
        registry = lab.site["registry"]
        assert tags == {
            "%s/lab/tiny:latest" % registry: lab.site["digests"]["lab/tiny:latest"].split(":")[1],
            "%s/lab/small:latest" % registry: lab.site["digests"]["lab/small:latest"].split(":")[1],
        }
        assert lab.api(HOST, "/api/version")["version"] == ollama_build.VERSIONS[0]
        assert registry_stats(lab).get(ip, {}).get("blob_bytes", 0) == before  # nothing came from the registry
        again = lab.playbook("servers.yml", limit=HOST, extra_vars=extra)
        assert again.changed() == {HOST: 0}, again.output[-3000:]
    finally:
        shutil.rmtree(bundle)
