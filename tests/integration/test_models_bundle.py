"""The models role's bundle source as a play runs it (tests/integration/targets/models_bundle/playbook.yml), against a
real `ollama serve` with a store of its own and the lab registry: check mode plans what the real run then does (a
bundle not made yet, a model new to the list, ollama_models_keep_alive on a host that cannot reach the registry), a
damaged staged blob is copied again, the bundle prunes what an update replaced, OLLAMA_NOPRUNE is honoured, and the
role finds the server the server role set up. The registry-only parts (ollama_bundle, the lock's install) run the
module code in-process against the same real registry and server."""
import hashlib
import json

from ansible_collections.llmops.ollama.plugins.module_utils._names import parse_model_name
from ansible_collections.llmops.ollama.plugins.module_utils._ollama_client import OllamaClient
from ansible_collections.llmops.ollama.plugins.modules import ollama_bundle, ollama_facts, ollama_model
from tests.lab import models
from tests.lab.module_run import run_module
from tests.lab.net import free_port
from tests.lab.ollama_server import OllamaServer
from tests.lab.paths import REPO

TARGET = REPO / "tests" / "integration" / "targets" / "models_bundle" / "playbook.yml"


def role(playbook, server, tmp_path, check=False, **variables):
    """Run the models role on `server` with `variables`; return (the run, what the server shows after it, or None
    when the play failed)."""
    results = tmp_path / "results.json"
    if results.exists():
        results.unlink()
    extra = dict(server_url=server.url, results_file=str(results), ollama_models_insecure=True,
                 ollama_models_store_dir=str(server.models_dir), ollama_models_staging_dir=str(tmp_path / "staging"))
    extra.update(variables)
    run = playbook(TARGET, extra_vars=extra, check=check)
    return run, (json.loads(results.read_text()) if results.exists() else None)


def bundle_vars(server, bundle, **more):
    return dict(dict(ollama_models_source="bundle", ollama_models_bundle_dir=str(bundle),
                     ollama_models_base_url=server.url), **more)


def listed(shown):
    return {m["name"]: m["digest"] for m in shown["models"]}


def store_blobs(server):
    return {p.name.replace("-", ":", 1) for p in (server.models_dir / "blobs").iterdir()}


def check_then_real(playbook, server, tmp_path, variables, before, after, unchanged=lambda: True):
    """Run the role in check mode, then for real: check mode exits 0, changes nothing (the server's models, and
    `unchanged()` after it), and reports as many changes as the real run, which brings the server from `before` to
    `after` ({name: digest}). Returns the real run."""
    check, shown = role(playbook, server, tmp_path, check=True, **variables)
    assert check.rc == 0, check.output[-4000:]
    assert listed(shown) == before, shown
    assert unchanged()
    real, shown = role(playbook, server, tmp_path, **variables)
    assert real.rc == 0, real.output[-4000:]
    assert listed(shown) == after, shown
    assert check.changed() == real.changed(), (check.changed(), real.changed(), check.output[-6000:])
    return real


def test_check_mode_with_a_bundle_not_made_yet(registry, playbook, tmp_path):
    name = "%s/rolebundle/new:latest" % registry.address
    digest = models.push_model(registry.url, "rolebundle/new", "latest", 1, 1 << 20).split(":", 1)[1]
    bundle = tmp_path / "bundle"  # not there: the first run makes it
    with OllamaServer() as server:
        variables = bundle_vars(server, bundle, ollama_models=[name])
        real = check_then_real(playbook, server, tmp_path, variables, {}, {name: digest},
                               unchanged=lambda: not bundle.exists())
        assert real.changed()["localhost"] >= 4, real.output[-4000:]  # fetch, plan, copy, import at least
        again, shown = role(playbook, server, tmp_path, check=True, **variables)
        assert again.rc == 0 and again.changed() == {"localhost": 0}, again.output[-4000:]


def test_check_mode_with_a_model_new_to_the_list(registry, playbook, tmp_path):
    first, second = ("%s/rolebundle/first:latest" % registry.address, "%s/rolebundle/second:latest" % registry.address)
    digests = {first: models.push_model(registry.url, "rolebundle/first", "latest", 1, 1 << 20).split(":", 1)[1],
               second: models.push_model(registry.url, "rolebundle/second", "latest", 1, 2 << 20).split(":", 1)[1]}
    bundle = tmp_path / "bundle"
    with OllamaServer() as server:
        real, shown = role(playbook, server, tmp_path, **bundle_vars(server, bundle, ollama_models=[first]))
        assert real.rc == 0 and listed(shown) == {first: digests[first]}, real.output[-4000:]
        # the list grows: the bundle does not have the new model yet, the real run fetches it first
        variables = bundle_vars(server, bundle, ollama_models=[first, second])
        check_then_real(playbook, server, tmp_path, variables, {first: digests[first]}, digests)
        again, shown = role(playbook, server, tmp_path, check=True, **variables)
        assert again.rc == 0 and again.changed() == {"localhost": 0}, again.output[-4000:]


def test_check_mode_with_keep_alive_on_a_host_without_the_registry(playbook, tmp_path):
    # a bundle carried in: its model's registry does not answer anywhere (a free port nothing listens on)
    name = "127.0.0.1:%d/airgap/tiny:latest" % free_port()
    manifest, blobs = models.build("airgap/tiny:latest", answer=models.reply("airgap/tiny", "latest"))
    bundle = tmp_path / "bundle"
    (bundle / "blobs").mkdir(parents=True)
    for digest, data in blobs.items():
        (bundle / "blobs" / digest.replace(":", "-")).write_bytes(data)
    folder = bundle / "manifests" / name.split("/")[0] / "airgap" / "tiny"
    folder.mkdir(parents=True)
    (folder / "latest").write_bytes(manifest)
    code, indexed = run_module(ollama_bundle, {"path": str(bundle), "models": []})  # as docs/airgap.md says
    assert code == 0, indexed
    with OllamaServer() as server:
        variables = bundle_vars(server, bundle, ollama_models=[name], ollama_models_bundle_fetch=False,
                                ollama_models_keep_alive="30m")
        check_then_real(playbook, server, tmp_path, variables, {}, {name: hashlib.sha256(manifest).hexdigest()})
        code, facts = run_module(ollama_facts, {"base_url": server.url, "gather": ["server"]})
        assert [m["name"] for m in facts["ansible_facts"]["ollama"]["running"]] == [name], facts  # loaded
        again, _shown = role(playbook, server, tmp_path, check=True, **variables)
        assert again.rc == 0 and again.changed() == {"localhost": 0}, again.output[-4000:]


def test_a_damaged_staged_blob_is_copied_again(registry, playbook, tmp_path):
    name = "%s/rolebundle/damaged:latest" % registry.address
    digest = models.push_model(registry.url, "rolebundle/damaged", "latest", 1, 1 << 20).split(":", 1)[1]
    bundle = tmp_path / "bundle"
    code, fetched = run_module(ollama_bundle, {"path": str(bundle), "models": [name], "insecure": True})
    assert code == 0, fetched
    layer = max((bundle / "blobs").iterdir(), key=lambda p: p.stat().st_size)  # the model's weights
    whole = layer.read_bytes()
    layer.write_bytes(whole[:1000] + bytes([whole[1000] ^ 0xFF]) + whole[1001:])  # a flipped byte, same size
    staged = tmp_path / "staging" / layer.name
    with OllamaServer() as server:
        variables = bundle_vars(server, bundle, ollama_models=[name])
        # the bundle is damaged and not fetched again: the damaged blob is staged, and refused
        broken, _shown = role(playbook, server, tmp_path, **dict(variables, ollama_models_bundle_fetch=False))
        assert broken.rc != 0, broken.output[-4000:]
        left_staged = staged.exists()
        # the bundle repaired (the fetch finds the damaged blob and fetches it again): the next run imports
        repaired, shown = role(playbook, server, tmp_path, **variables)
        assert repaired.rc == 0, repaired.output[-4000:]
        assert listed(shown) == {name: digest}, shown
        # the failed run said which staged blob was damaged, and removed it
        assert "are damaged (their sha256 is not their digest): sha256:%s" % layer.name[7:] in broken.output, \
            broken.output[-4000:]
        assert not left_staged
        # a blob staged damaged by anything else (a copy cut short, a disk) is copied again, on the first run
        other = "%s/rolebundle/staged:latest" % registry.address
        other_digest = models.push_model(registry.url, "rolebundle/staged", "latest", 1, 2 << 20).split(":", 1)[1]
        code, fetched = run_module(ollama_bundle, {"path": str(bundle), "models": [name, other], "insecure": True})
        assert code == 0, fetched
        other_layer = max((bundle / "blobs").iterdir(), key=lambda p: p.stat().st_size)
        good = other_layer.read_bytes()
        (tmp_path / "staging" / other_layer.name).write_bytes(good[:-1] + bytes([good[-1] ^ 0xFF]))
        variables["ollama_models"] = [name, other]
        run, shown = role(playbook, server, tmp_path, **variables)
        assert run.rc == 0, run.output[-4000:]
        assert listed(shown) == {name: digest, other: other_digest}, shown


def test_the_bundle_prunes_the_blobs_an_update_replaced(registry, tmp_path):
    name, other = "%s/prune/model:latest" % registry.address, "%s/prune/other:latest" % registry.address
    models.push_model(registry.url, "prune/model", "latest", 1, 1 << 20)
    models.push_model(registry.url, "prune/other", "latest", 1, 1 << 20)  # shares the template layer
    bundle = tmp_path / "bundle"
    args = {"path": str(bundle), "insecure": True}
    code, first = run_module(ollama_bundle, dict(args, models=[name, other]))
    assert code == 0, first
    index = json.loads((bundle / "index.json").read_text())
    old = set(index["models"][name]["blobs"]) - set(index["models"][other]["blobs"])
    assert len(old) == 2, index  # the model layer and the config; the template stays, prune/other uses it
    models.push_model(registry.url, "prune/model", "latest", 2, 1 << 20)  # the tag moves
    latest = dict(args, models=[{"name": name, "state": "latest"}, other])

    code, check = run_module(ollama_bundle, dict(latest, _ansible_check_mode=True, _ansible_diff=True))
    assert code == 0 and check["changed"], check
    on_disk = {p.name.replace("-", ":", 1) for p in (bundle / "blobs").iterdir() if p.name.startswith("sha256-")}
    assert old <= on_disk  # check mode removed nothing
    assert {b["digest"] for b in check.get("pruned", [])} == old, check

    code, real = run_module(ollama_bundle, dict(latest, _ansible_diff=True))
    assert code == 0 and real["changed"], real
    on_disk = {p.name.replace("-", ":", 1) for p in (bundle / "blobs").iterdir() if p.name.startswith("sha256-")}
    written = json.loads((bundle / "index.json").read_text())
    used = {d for entry in written["models"].values() for d in entry["blobs"]}
    assert on_disk == used, (sorted(on_disk - used), "left in the bundle though no manifest uses them")
    assert real["pruned"] == check["pruned"], (real, check)
    assert sum(b["size"] for b in real["pruned"]) > 1 << 20
    assert real["index_content"] == check["index_content"] == written
    for digest in old:
        assert "blobs/%s\n" % digest.replace(":", "-") in real["diff"]["before"], real["diff"]
        assert digest.replace(":", "-") not in real["diff"]["after"], real["diff"]

    code, again = run_module(ollama_bundle, latest)
    assert code == 0 and not again["changed"] and again["pruned"] == [], again


def test_noprune_keeps_what_an_import_replaced(registry, playbook, tmp_path):
    name = "%s/noprune/imported:latest" % registry.address
    models.push_model(registry.url, "noprune/imported", "latest", 1, 1 << 20)
    bundle = tmp_path / "bundle"
    with OllamaServer(env={"OLLAMA_NOPRUNE": "1"}) as server:
        # the server role's setting, which the models role passes on
        variables = bundle_vars(server, bundle, ollama_server_noprune=True)
        run, shown = role(playbook, server, tmp_path, **dict(variables, ollama_models=[name]))
        assert run.rc == 0, run.output[-4000:]
        v1 = store_blobs(server)
        v2 = models.push_model(registry.url, "noprune/imported", "latest", 2, 1 << 20).split(":", 1)[1]
        run, shown = role(playbook, server, tmp_path,
                          **dict(variables, ollama_models=[{"name": name, "state": "latest"}]))
        assert run.rc == 0, run.output[-4000:]
        assert listed(shown) == {name: v2}, shown
        assert v1 <= store_blobs(server), ("removed though the server runs with OLLAMA_NOPRUNE",
                                           sorted(v1 - store_blobs(server)))
        client = OllamaClient(server.url)
        assert all(client.has_blob(d) for d in v1)  # the server still has them


def test_noprune_keeps_what_a_lock_replaced(registry, tmp_path):
    """ollama_model puts a pinned model's locked manifest in place when its tag has moved on (install_by_digest);
    with noprune, as the server runs with OLLAMA_NOPRUNE, the blobs of the manifest it replaced stay."""
    name = "%s/noprune/locked:latest" % registry.address
    models.push_model(registry.url, "noprune/locked", "latest", 1, 1 << 20)
    with OllamaServer(env={"OLLAMA_NOPRUNE": "1"}) as server:
        args = {"base_url": server.url, "insecure": True, "fit_check": "off", "progress_interval": 0}
        code, pulled = run_module(ollama_model, dict(args, name=[name]))
        assert code == 0, pulled
        v1 = store_blobs(server)
        v2 = models.push_model(registry.url, "noprune/locked", "latest", 2, 1 << 20)
        models.push_model(registry.url, "noprune/locked", "latest", 3, 1 << 20)  # the tag moves on past the lock
        code, result = run_module(ollama_model, dict(args, models=[{"name": name, "digest": v2}],
                                                     models_dir=str(server.models_dir), noprune=True,
                                                     staging_dir=str(tmp_path / "staging")))
        assert code == 0 and result["changed"], result
        client, parsed = OllamaClient(server.url), parse_model_name(name)
        assert client.models().get(parsed).get("digest") == v2.split(":", 1)[1]
        assert v1 <= store_blobs(server), ("removed though the server runs with OLLAMA_NOPRUNE",
                                           sorted(v1 - store_blobs(server)))


def test_the_role_manages_the_server_the_server_role_set_up(registry, playbook, tmp_path):
    name = "%s/lab/small:latest" % registry.address
    with OllamaServer() as server:
        # no ollama_models_base_url: the server role's address (every address: reached on loopback) and port
        run, shown = role(playbook, server, tmp_path, ollama_models=[name], ollama_server_host="0.0.0.0",
                          ollama_server_port=server.port)
        assert run.rc == 0, run.output[-4000:]
        assert listed(shown) == {name: registry.digests["lab/small:latest"].split(":", 1)[1]}, shown
