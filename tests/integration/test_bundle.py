"""ollama_bundle and ollama_import: models fetched once into a bundle, then imported into a server that never
talks to the registry. Real registry, real `ollama serve`; the assertions are in targets/bundle/tasks/*.yml."""
import shutil
import tempfile
from pathlib import Path

from tests.lab.ollama_server import OllamaServer
from tests.lab.paths import REPO

TARGET = REPO / "tests" / "integration" / "targets" / "bundle" / "playbook.yml"


def test_bundle_then_import(registry, playbook):
    work = Path(tempfile.mkdtemp(prefix="bundle-"))
    (work / "staging").mkdir()
    with OllamaServer() as server:  # its own store: it has never pulled anything
        run = playbook(TARGET, extra_vars={
            "ollama_url": server.url, "models_dir": str(server.models_dir),
            "registry": registry.address, "registry_url": registry.url, "repo_root": str(REPO),
            "bundle_dir": str(work / "bundle"), "staging_dir": str(work / "staging"),
            "lab_digests": {k: v.split(":", 1)[1] for k, v in registry.digests.items()},
        })
    shutil.rmtree(work)
    assert run.rc == 0, run.output[-6000:]
    assert run.output.count("All assertions passed") == 3, run.output[-3000:]
