"""ollama_model's locked installs by digest (the tag moved, the registry still serves the locked manifest by digest)
download into staging_dir, not into the server's store, and resume an interrupted blob download: the next run asks
the registry (Range) only for the bytes still missing, uploads the blob through the server's API and removes it.

Real parts: `ollama serve` (a lab build, with a store of its own), the lab's Distribution registry behind its front,
which counts the blob bytes it serves (`/_lab/stats`), and the lab's fault proxy (tests/lab/faults.py FaultProxy, a
TCP proxy forwarding bytes unchanged to the real registry) as the link: cut after K bytes (a link that drops mid-blob),
or slowed down while ansible-playbook runs the task and is killed with SIGKILL, the module with it (faults.Playbook:
the controller dies mid-download). The other runs of the module are in-process (tests/lab/module_run.py)."""
import json
import os
import time
from pathlib import Path

import pytest

from ansible_collections.llmops.ollama.plugins.module_utils._names import parse_model_name
from ansible_collections.llmops.ollama.plugins.module_utils._ollama_client import OllamaClient
from ansible_collections.llmops.ollama.plugins.modules import ollama_model
from tests.conftest import lab_setup
from tests.lab import faults, models
from tests.lab.registry import front_stats, settled
from tests.lab.module_run import assert_clear_failure, run_module
from tests.lab.ollama_server import OllamaServer

MIB = 1 << 20
SIZE = 6 * MIB
DROP_AFTER = int(2.5 * MIB)


@pytest.fixture(scope="module")
def server():
    with lab_setup():
        srv = OllamaServer().start()
    try:
        yield srv
    finally:
        srv.cleanup()


def moved(registry, repo):
    """Version 1 of repo:latest (a 6 MiB layer) pushed, then version 2 over its tag: a lock on version 1 is then
    served by digest only. Returns (version 1's hex digest, {digest: bytes} of its blobs, its largest blob)."""
    manifest, blobs = models.build("%s:latest" % repo, 1, SIZE)
    v1 = models.push(registry.url, repo, "latest", manifest, blobs).split(":", 1)[1]
    models.push(registry.url, repo, "latest", *models.build("%s:latest" % repo, 2, SIZE))
    return v1, blobs, max(blobs, key=lambda d: len(blobs[d]))


def lock_args(server, name, v1, staging):
    return dict(base_url=server.url, models=[dict(name=name, digest=v1)], insecure=True,
                models_dir=str(server.models_dir), staging_dir=str(staging), fit_check="off", progress_interval=0,
                timeout=30)


def leftovers(models_dir):
    """What an install may leave in the server's store and must not: hidden entries (a staging folder of the old
    install, a temporary file), partial downloads."""
    return sorted(str(p.relative_to(models_dir)) for p in Path(models_dir).rglob("*")
                  if p.name.startswith(".") or "partial" in p.name)


def served_blob_bytes(registry):
    return sum(s["blob_bytes"] for s in front_stats(registry.url).values())


def resume_and_check(server, registry, args, name, v1, blobs, layer, kept, staging):
    """The run after the interruption: only the missing bytes are downloaded, the server has the locked build, and
    nothing is left in the staging directory or the store. Returns (bytes downloaded, bytes the registry served)."""
    client = OllamaClient(server.url)
    on_server = [d for d in blobs if client.has_blob(d)]  # what the first run uploaded before the layer
    settled(registry.url)
    front_stats(registry.url, "DELETE")
    code, second = run_module(ollama_model, args)
    served = served_blob_bytes(registry)
    assert code == 0 and second["changed"], second
    model = second["models"][0]
    assert (model["source"], model["action"], model["digest_after"]) == ("digest", "pulled", v1), model
    missing = sum(len(b) for d, b in blobs.items() if d not in on_server) - kept
    assert model["resumed_bytes"] == kept, model
    assert model["bytes"] == missing, model  # the layer's rest, and the blobs the first run had not reached
    assert served == missing  # what the registry served: only those bytes
    assert client.models().get(parse_model_name(name)).get("digest") == v1
    assert all(client.has_blob(d) for d in blobs)
    assert os.listdir(str(staging)) == []  # each blob removed once the server had it
    assert leftovers(server.models_dir) == []
    print("resumed: fetched %d of the layer's %d bytes (%d kept from the interrupted run)"
          % (len(blobs[layer]) - kept, len(blobs[layer]), kept))
    print("the registry served %d blob bytes in the second run, of the model's %d"
          % (served, sum(len(b) for b in blobs.values())))
    code, again = run_module(ollama_model, args)
    assert code == 0 and not again["changed"], again
    return model["bytes"], served


def test_a_lock_download_cut_mid_blob_resumes_with_only_the_missing_bytes(server, registry, tmp_path):
    v1, blobs, layer = moved(registry, "lockresume/drop")
    staging = tmp_path / "staging"
    host, port = registry.address.rsplit(":", 1)
    with faults.FaultProxy((host, int(port))) as proxy:
        name = "%s/lockresume/drop:latest" % proxy.address
        args = lock_args(server, name, v1, staging)
        front_stats(registry.url, "DELETE")
        proxy.drop_after, proxy.drops = DROP_AFTER, 1  # the link drops once, mid-layer
        code, first = run_module(ollama_model, args)
        assert_clear_failure(code, first)
        assert proxy.dropped == 1
        assert not first["changed"] and first["models"][0]["action"] == "none", first
        partial = staging / (layer.replace(":", "-") + ".partial")
        kept = partial.stat().st_size
        assert 0 < kept < len(blobs[layer])
        assert partial.read_bytes() == blobs[layer][:kept]
        assert "failed after %d bytes" % kept in first["msg"], first["msg"]
        assert "kept in %s, and the next run continues from there" % partial in first["msg"], first["msg"]
        assert os.listdir(str(staging)) == [partial.name]
        assert oct(staging.stat().st_mode & 0o777) == "0o700"  # made by the module, root's alone
        assert leftovers(server.models_dir) == []  # nothing of the download in the server's store
        print("first run: the link dropped after %d bytes; the registry sent %d blob bytes, %d were kept"
              % (DROP_AFTER, served_blob_bytes(registry), kept))
        proxy.reset()
        resume_and_check(server, registry, args, name, v1, blobs, layer, kept, staging)


def test_a_lock_download_killed_with_the_run_resumes_with_only_the_missing_bytes(server, registry, tmp_path):
    v1, blobs, layer = moved(registry, "lockresume/killed")
    staging = tmp_path / "staging"
    partial = staging / (layer.replace(":", "-") + ".partial")
    host, port = registry.address.rsplit(":", 1)
    with faults.FaultProxy((host, int(port))) as proxy:
        name = "%s/lockresume/killed:latest" % proxy.address
        args = lock_args(server, name, v1, staging)
        playbook = tmp_path / "lock.yml"
        playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False,
                                         "tasks": [{"llmops.ollama.ollama_model": args}]}]))
        proxy.rate = MIB  # bytes per second: the layer takes 6 s
        run = faults.Playbook(playbook, "localhost,")
        try:
            deadline = time.time() + 120
            while not (partial.exists() and partial.stat().st_size >= 2 * MIB):
                assert run.proc.poll() is None, run.output[-3000:]
                assert time.time() < deadline, run.output[-3000:]
                time.sleep(0.05)
            run.kill()  # ansible-playbook, its workers and the module: the controller dies mid-download
        finally:
            run.cleanup()
        kept = partial.stat().st_size
        assert 0 < kept < len(blobs[layer])
        assert partial.read_bytes() == blobs[layer][:kept]
        assert os.listdir(str(staging)) == [partial.name]
        assert leftovers(server.models_dir) == []
        print("first run: killed after %.1f s, %d bytes kept" % (run.killed_after, kept))
        proxy.reset()
        resume_and_check(server, registry, args, name, v1, blobs, layer, kept, staging)


@pytest.mark.parametrize("plant", ["link", "other-owner"])
def test_an_unsafe_staging_dir_is_refused_naming_it_and_nothing_is_fetched(server, registry, tmp_path, plant):
    v1, blobs, _layer = moved(registry, "lockresume/refused-%s" % plant)
    name = "%s/lockresume/refused-%s:latest" % (registry.address, plant)
    staging, elsewhere = tmp_path / "staging", tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    if plant == "link":
        staging.symlink_to(elsewhere)
        said = "staging_dir %s is a symbolic link (to %s), which is not followed" % (staging, elsewhere)
    else:
        if os.geteuid() != 0:
            pytest.skip("only root can give a directory to another user")
        staging.mkdir(mode=0o700)
        os.chown(str(staging), 65534, 65534)
        said = "staging_dir %s is owned by " % staging
    args = lock_args(server, name, v1, staging)
    store = sorted(str(p) for p in Path(server.models_dir).rglob("*"))
    settled(registry.url)
    front_stats(registry.url, "DELETE")
    code, result = run_module(ollama_model, args)
    assert_clear_failure(code, result)
    assert result["msg"].startswith(said), result["msg"]
    if plant == "other-owner":
        assert "(uid 65534, mode 0700), not by root" in result["msg"], result["msg"]
    assert not result["changed"] and result["models"][0]["action"] == "none", result
    assert served_blob_bytes(registry) == 0  # refused before anything was downloaded
    assert sorted(str(p) for p in Path(server.models_dir).rglob("*")) == store
    assert os.listdir(str(elsewhere)) == [] and (plant == "link" or os.listdir(str(staging)) == [])
    print(result["msg"])

    # check mode does not look at it (as before): it reports what a real run would do
    code, check = run_module(ollama_model, dict(args, _ansible_check_mode=True))
    assert code == 0 and check["changed"] and check["models"][0]["source"] == "digest", check
    assert check["models"][0]["bytes"] == sum(len(b) for d, b in blobs.items()
                                              if not OllamaClient(server.url).has_blob(d))
