"""ollama_bundle resumes an interrupted blob download: the next run asks the registry (Range) only for the bytes still
missing, and the blob verifies whole.

Real parts: the lab's Distribution registry behind its front, which counts the blob bytes it serves (`/_lab/stats`);
the link that drops mid-blob is the lab's fault proxy (tests/lab/faults.py FaultProxy, a TCP proxy forwarding bytes
unchanged to the real registry, cutting the connection after K bytes). Through the public registry (TLS, token auth,
307 to a CDN) the resume follows the redirect with its Range. The module runs in-process (tests/lab/module_run.py)."""
import hashlib

import pytest

from ansible_collections.llmops.ollama.plugins.modules import ollama_bundle
from tests.lab import faults, models
from tests.lab.registry import front_stats, settled
from tests.lab.module_run import assert_clear_failure, run_module

MIB = 1 << 20
SIZE = 6 * MIB
DROP_AFTER = int(2.5 * MIB)


@pytest.fixture(scope="module")
def pushed(registry):
    """A model of this test's own with a 6 MiB layer: (repo:tag, manifest digest hex, {digest: blob bytes})."""
    manifest, blobs = models.build("resume/big:latest", 1, SIZE)
    digest = models.push(registry.url, "resume/big", "latest", manifest, blobs)
    return "resume/big:latest", digest.split(":", 1)[1], blobs


def blob_file(bundle, digest):
    return bundle / "blobs" / digest.replace(":", "-")


def test_an_interrupted_bundle_download_resumes_with_only_the_missing_bytes(registry, pushed, tmp_path):
    repo, digest, blobs = pushed
    layer = max(blobs, key=lambda d: len(blobs[d]))
    size = len(blobs[layer])
    bundle = tmp_path / "bundle"
    host, port = registry.address.rsplit(":", 1)
    with faults.FaultProxy((host, int(port))) as proxy:
        name = "%s/%s" % (proxy.address, repo)
        args = dict(path=str(bundle), models=[name], insecure=True, timeout=30)
        proxy.drop_after, proxy.drops = DROP_AFTER, 1  # the link drops once, mid-layer
        code, first = run_module(ollama_bundle, args)
        assert_clear_failure(code, first)
        assert proxy.dropped == 1
        partial = blob_file(bundle, layer).with_name(blob_file(bundle, layer).name + ".partial")
        kept = partial.stat().st_size
        assert 0 < kept < size
        assert partial.read_bytes() == blobs[layer][:kept]
        assert "failed after %d bytes" % kept in first["msg"], first["msg"]
        assert "kept in %s, and the next run continues from there" % partial in first["msg"], first["msg"]
        assert not blob_file(bundle, layer).exists()
        stored = [d for d in blobs if blob_file(bundle, d).exists()]  # the small blobs it fetched before the layer

        proxy.reset()
        settled(registry.url)
        front_stats(registry.url, "DELETE")
        code, second = run_module(ollama_bundle, args)
        served = sum(s["blob_bytes"] for s in front_stats(registry.url).values())
    assert code == 0 and second["changed"], second
    model = second["models"][0]
    assert model["action"] == "fetched" and model["digest"] == digest
    assert second["resumed_bytes"] == model["resumed_bytes"] == kept
    missing = sum(len(b) for d, b in blobs.items() if d not in stored) - kept
    assert second["bytes"] == model["bytes"] == missing  # the layer's rest, and the blobs the first run had not reached
    assert served == missing  # what the registry served: only those bytes
    assert "sha256:" + hashlib.sha256(blob_file(bundle, layer).read_bytes()).hexdigest() == layer
    assert not partial.exists()
    print("resumed: fetched %d of %d bytes (%d kept from the interrupted run)" % (size - kept, size, kept))
    print("the registry served %d blob bytes in the second run, of the model's %d"
          % (served, sum(len(b) for b in blobs.values())))

    # the same blobs under the registry's own address: all in the bundle, nothing downloaded nor resumed
    code, again = run_module(ollama_bundle, dict(args, models=["%s/%s" % (registry.address, repo)]))
    assert code == 0 and again["bytes"] == 0 and again["resumed_bytes"] == 0, again


def test_a_resume_from_the_public_registry_goes_to_its_cdn_with_the_range(public_registry, lab_ca, pushed, tmp_path):
    """The public registry (TLS, token auth, blob GETs sent to a CDN with 307): the partial file an interrupted run
    left is resumed there, the Range going with the redirect to the CDN, which answers 206."""
    repo, _digest, blobs = pushed
    layer = max(blobs, key=lambda d: len(blobs[d]))
    kept = len(blobs[layer]) // 3
    bundle = tmp_path / "bundle"
    (bundle / "blobs").mkdir(parents=True)
    partial = bundle / "blobs" / (layer.replace(":", "-") + ".partial")
    partial.write_bytes(blobs[layer][:kept])  # what an interrupted run kept
    since = len(public_registry.requests)
    code, result = run_module(ollama_bundle, dict(path=str(bundle), models=["%s/%s" % (public_registry.address, repo)],
                                                  registry_ca_path=str(lab_ca.cert)))
    assert code == 0 and result["changed"], result
    assert result["resumed_bytes"] == kept
    assert result["bytes"] == sum(len(b) for b in blobs.values()) - kept
    cdn = [r for r in public_registry.requests[since:] if r["where"] == "cdn" and layer in r["path"]]
    assert [r["headers"].get("Range") for r in cdn] == ["bytes=%d-" % kept], cdn
    assert "sha256:" + hashlib.sha256(blob_file(bundle, layer).read_bytes()).hexdigest() == layer
    print("resumed through the CDN: fetched %d of %d bytes (%d kept from the interrupted run)"
          % (len(blobs[layer]) - kept, len(blobs[layer]), kept))
