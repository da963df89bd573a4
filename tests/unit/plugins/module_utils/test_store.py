"""The store layout and manifests, as Ollama reads them (found by the bad-input property test, issue 13)."""
import json

import pytest

from ansible_collections.llmops.ollama.plugins.module_utils._manifest import InvalidManifest, blobs, check_digest
from ansible_collections.llmops.ollama.plugins.module_utils._names import parse_model_name
from ansible_collections.llmops.ollama.plugins.module_utils._store import blob_path, bundle_index, find_manifest

DIGEST = "sha256:" + "a" * 64


def test_every_casing_on_disk_is_looked_at(tmp_path):
    """A stray manifests/h/Lab/Tiny/ beside manifests/h/lab/small/ hid lab/small (only the first casing was read)."""
    (tmp_path / "manifests" / "h" / "Lab" / "Tiny").mkdir(parents=True)
    (tmp_path / "manifests" / "h" / "Lab" / "Tiny" / "latest").write_text("{}")
    (tmp_path / "manifests" / "h" / "lab" / "small").mkdir(parents=True)
    (tmp_path / "manifests" / "h" / "lab" / "small" / "latest").write_text("{}")
    assert find_manifest(str(tmp_path), parse_model_name("h/ns/x")) is None
    assert find_manifest(str(tmp_path), parse_model_name("h/LAB/small")).endswith("/h/lab/small/latest")
    assert find_manifest(str(tmp_path), parse_model_name("h/lab/tiny")).endswith("/h/Lab/Tiny/latest")


@pytest.mark.parametrize("manifest, says", [
    ({"sha256:" + "0" * 64: [1, 2]}, "schemaVersion is null, not 2"),
    ({"schemaVersion": 2}, "not a list of at least one layer"),
    ({"schemaVersion": 2, "layers": []}, "an empty list"),
    ({"schemaVersion": True, "layers": [{"digest": DIGEST}]}, "schemaVersion is true"),
    ({"schemaVersion": 2, "layers": [{"digest": DIGEST, "size": -1}]}, "not a number of bytes"),
    ({"schemaVersion": 2, "layers": [{"digest": DIGEST, "size": 1.5}]}, "not a number of bytes"),
    ({"schemaVersion": 2, "layers": [DIGEST]}, "layer 1 is a string, not an object"),
    ({"schemaVersion": 2, "layers": [{"digest": DIGEST}], "config": [1]}, "config is a list, not an object"),
])
def test_manifests_ollama_would_refuse(manifest, says):
    with pytest.raises(InvalidManifest) as err:
        blobs(manifest)
    assert says in str(err.value)


def test_the_blobs_of_a_manifest_layers_then_config():
    manifest = {"schemaVersion": 2, "config": {"digest": "sha256-" + "c" * 64, "size": 2},
                "layers": [{"digest": DIGEST, "size": 3}]}
    assert blobs(manifest) == [(DIGEST, 3), ("sha256-" + "c" * 64, 2)]


@pytest.mark.parametrize("digest", ["../../x", "sha256:" + "a" * 63, "sha256:" + "g" * 64, "sha512:" + "a" * 64, None])
def test_a_blob_path_needs_a_digest(tmp_path, digest):
    with pytest.raises(InvalidManifest):
        blob_path(str(tmp_path), digest)
    with pytest.raises(InvalidManifest):
        check_digest(digest)


def test_a_store_with_stray_files_is_indexed_as_ollama_lists_it(tmp_path):
    good = json.dumps({"schemaVersion": 2, "layers": [{"digest": DIGEST, "size": 3}]})
    for rel, text in (("manifests/.DS_Store", "x"), ("manifests/h/.DS_Store", "x"), ("manifests/h/ns/m/.hidden", good),
                      ("manifests/h/ns/m/latest", good), ("manifests/h/ns/m/broken", "{"), ("manifests/h/ns/file", "x")):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert sorted(bundle_index(str(tmp_path))["models"]) == ["h/ns/m:latest"]
