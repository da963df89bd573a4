"""The AMD targets the requirements check counts as usable are those Ollama's own Linux ROCm build is compiled for,
in every release the lab tests (tests/lab/versions.py), read from the Go module source of that release: the
AMDGPU_TARGETS of the configure preset rocm_v7_2_linux in llama/server/CMakePresets.json, which Ollama's Dockerfile
builds the rocm archive's llama-server with (`cmake -S llama/server --preset rocm_v7_2_linux`). A release that
changes the list fails here, so a version bump brings the list with it."""
import json

import pytest

from ansible_collections.llmops.ollama.plugins.module_utils._requirements import AMD_GFX_TARGETS
from tests.lab.names_oracle import module_source
from tests.lab.versions import OLLAMA_VERSIONS

PRESET = "rocm_v7_2_linux"


def built_targets(version):
    source = module_source(version)
    presets = json.loads((source / "llama" / "server" / "CMakePresets.json").read_text())
    (preset,) = [p for p in presets["configurePresets"] if p["name"] == PRESET]
    assert "cmake -S llama/server --preset %s" % PRESET in (source / "Dockerfile").read_text()
    targets = []
    for target in preset["cacheVariables"]["AMDGPU_TARGETS"].split(";"):
        target = target.split(":")[0]  # gfx90a:xnack+ and gfx90a:xnack- are gfx90a
        if target not in targets:
            targets.append(target)
    return targets


@pytest.mark.parametrize("version", OLLAMA_VERSIONS)
def test_the_amd_targets_are_those_of_ollamas_rocm_build(version):
    assert tuple(built_targets(version)) == AMD_GFX_TARGETS
    assert not {"gfx1010", "gfx1012", "gfx1103"} & set(AMD_GFX_TARGETS)
