"""ollama_model and ollama_facts through ansible-playbook, against a real `ollama serve` and the lab registry.

The scenarios and their assertions are in targets/ollama_model/tasks/*.yml (check mode, real, idempotent
check, idempotent real for each change). This test fails when any assertion there fails.
"""
from tests.lab.paths import REPO

TARGET = REPO / "tests" / "integration" / "targets" / "ollama_model" / "playbook.yml"


def test_ollama_model_scenarios(ollama_server, registry, playbook):
    run = playbook(TARGET, extra_vars={
        "ollama_url": ollama_server.url,
        "registry": registry.address,
        "registry_url": registry.url,
        "repo_root": str(REPO),
        "lab_digests": {k: v.split(":", 1)[1] for k, v in registry.digests.items()},
    })
    assert run.rc == 0, run.output[-6000:]
    assert run.stats["localhost"]["failed"] == 0
    # every scenario file ran to its final assert
    assert run.output.count("All assertions passed") == 6, run.output[-3000:]
