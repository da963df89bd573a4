"""Models pinned by digest (ollama_model's digest and lock, ollama_state, the model_lock and lock_drift filters)
through ansible-playbook, against a real `ollama serve` with a store of its own and the lab registry: the tag moves
(a new manifest pushed over it) and the old manifest is then deleted from the registry, so it is no longer served.
The assertions are in targets/model_lock/tasks/*.yml."""
import hashlib

from tests.lab import models
from tests.lab.ollama_server import OllamaServer
from tests.lab.paths import REPO

TARGET = REPO / "tests" / "integration" / "targets" / "model_lock" / "playbook.yml"


def test_models_pinned_by_digest(registry, playbook, tmp_path):
    # a repository of its own: the tasks move its tag and delete a manifest
    v1 = models.push_model(registry.url, "lock/pinned", "latest", 1, 2 << 20).split(":", 1)[1]
    v2 = hashlib.sha256(models.build("lock/pinned:latest", 2, 2 << 20)[0]).hexdigest()  # pushed by the tasks
    with OllamaServer() as server:
        run = playbook(TARGET, extra_vars={
            "ollama_url": server.url, "models_dir": str(server.models_dir), "staging_dir": str(tmp_path / "staging"),
            "registry": registry.address, "registry_url": registry.url, "repo_root": str(REPO),
            "v1": v1, "v2": v2,
        })
    assert run.rc == 0, run.output[-6000:]
    assert run.output.count("All assertions passed") == 7, run.output[-3000:]
