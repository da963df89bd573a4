"""The fit check before a pull, through ansible-playbook against a real `ollama serve` and a real registry.

How "a model larger than the host's RAM" is made testable, honestly: the check's only view of a model before
it is pulled is its registry manifest, whose layer sizes say what the pull would fetch and load. The lab's
registry stores a manifest as given, after checking that the blobs it names exist (it does not compare their
sizes: a push of such a manifest was tried and accepted). So the test pushes a synthetic model whose manifest
declares a 1 TiB model layer (the blob behind it is 1 MiB; a pull of it would fail Ollama's own verification,
which is beside the point because nothing may be pulled at all). The host's RAM, GPUs and disk are this
machine's real ones, read by the module as on any host; 1 TiB is more than any test machine has. No option
lowers what the check sees: the module is run exactly as a user runs it.

The scenarios and their assertions are in targets/fit_check/tasks/main.yml: the refusal in check mode and for
real (with a model that fits listed beside it: the task pulls neither), the registry's blob counter and the
server's store unchanged, the same verdict from ollama_facts, fit_check warn and off, and a small real model
that fits being pulled with fit_check fail.
"""
import json

from tests.lab import models
from tests.lab.paths import REPO

TARGET = REPO / "tests" / "integration" / "targets" / "fit_check" / "playbook.yml"
TIB = 1 << 40


def push_claiming_model(registry_url, repo, tag, claimed_size):
    """Push a synthetic model whose manifest declares `claimed_size` bytes for its (1 MiB) model layer."""
    manifest, blobs = models.build("%s:%s" % (repo, tag), 1, 1 << 20)
    data = json.loads(manifest)
    layer = data["layers"][0]
    assert layer["mediaType"] == "application/vnd.ollama.image.model"
    layer["size"] = claimed_size
    models.push(registry_url, repo, tag, json.dumps(data, separators=(",", ":")).encode(), blobs)
    return layer["digest"]


def test_fit_check_refuses_a_model_larger_than_the_host(ollama_server, registry, playbook):
    claim_layer = push_claiming_model(registry.url, "fit/claims-1tib", "latest", TIB)
    models.push_model(registry.url, "fit/small", "latest", 1, 2 << 20)
    run = playbook(TARGET, extra_vars={
        "ollama_url": ollama_server.url,
        "registry_url": registry.url,
        "claim": "%s/fit/claims-1tib:latest" % registry.address,
        "claim_layer": claim_layer,
        "small": "%s/fit/small:latest" % registry.address,
    })
    assert run.rc == 0, run.output[-6000:]
    assert run.stats["localhost"]["failed"] == 0
    assert run.output.count("All assertions passed") == 2, run.output[-3000:]
