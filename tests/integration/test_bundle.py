"""ollama_bundle and ollama_import: models fetched once into a bundle, then imported into a server that never
talks to the registry. Real registry, real `ollama serve`; the assertions are in targets/bundle/tasks/*.yml."""
import functools
import shutil
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.lab import models
from tests.lab.ollama_server import OllamaServer
from tests.lab.paths import REPO

TARGET = REPO / "tests" / "integration" / "targets" / "bundle" / "playbook.yml"


def test_bundle_then_import(registry, playbook):
    # repositories of its own: the latest scenario moves a tag, which must not disturb other tests' expectations
    digests = {"bundle/tiny:latest": models.push_model(registry.url, "bundle/tiny", "latest", 1, 1 << 20),
               "bundle/small:latest": models.push_model(registry.url, "bundle/small", "latest", 1, 3 << 20)}
    work = Path(tempfile.mkdtemp(prefix="bundle-"))
    (work / "staging").mkdir()
    (work / "bundle").mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(work / "bundle"))
    handler.log_message = lambda *a: None
    seed = ThreadingHTTPServer(("127.0.0.1", 0), handler)  # a seed host serving the bundle on the LAN
    threading.Thread(target=seed.serve_forever, daemon=True).start()
    # servers with their own stores: they never pull anything
    with OllamaServer() as server, OllamaServer() as second:
        run = playbook(TARGET, extra_vars={
            "ollama_url": server.url, "models_dir": str(server.models_dir),
            "second_ollama_url": second.url, "second_models_dir": str(second.models_dir),
            "bundle_url": "http://127.0.0.1:%d" % seed.server_address[1],
            "registry": registry.address, "registry_url": registry.url, "repo_root": str(REPO),
            "bundle_dir": str(work / "bundle"), "staging_dir": str(work / "staging"),
            "lab_digests": {k: v.split(":", 1)[1] for k, v in digests.items()},
        })
    seed.shutdown()
    seed.server_close()
    shutil.rmtree(work)
    assert run.rc == 0, run.output[-6000:]
    assert run.output.count("All assertions passed") == 4, run.output[-3000:]
