"""The site playbook on the lab fleet (server, models and codex roles): check mode, drift, bad archives,
upgrade/rollback, uninstall: what Molecule does not express. Each role's converge, idempotence, verify (the real
Codex CLI included) and removal are its Molecule scenario (extensions/molecule); the site's second run changing
nothing is test_site_runner.py's second job.

Tests run in file order and share lab1-lab3, re-created bare first; the destructive ones use lab3 only.
"""
import hashlib
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.lab import models, ollama_build
from tests.lab.paths import LAB_CACHE, LAB_STATE

NEW, OLD = ollama_build.VERSIONS
VICTIM = "lab3"
SITE = ["lab1", "lab2", "lab3"]  # the other lab hosts belong to other test files
LIMIT = ",".join(SITE)


def record(line):
    """Keep the figures the closing note reports (converge/re-run times, changed counts)."""
    with open(LAB_STATE / "measurements.txt", "a") as f:
        f.write(line + "\n")


def server_state(lab, host):
    """What a user sees on the host: the version the API answers, the current link, the models."""
    return dict(version=lab.api(host, "/api/version")["version"],
                current=lab.ssh(host, "readlink /opt/ollama/current").strip(),
                models=sorted(m["name"] for m in lab.api(host, "/api/tags")["models"]))


# What the roles could write on a host: each path with its mode, owner and group, and each file's size and time
# (Ansible's own temporary folder left out, which also changes the time of /root), as one digest per host.
TREE = ("find /etc /opt /usr/local /usr/share /var/cache /root /home -xdev -path /root/.ansible -prune"
        " -o -type d -printf '%p %m %u %g\\n' -o -printf '%p %m %u %g %s %T@\\n' 2>/dev/null | sort | sha256sum")


@pytest.fixture(scope="module")
def converged(lab):
    """The site on bare hosts: first a preview (check mode, as docs/awx.md recommends for a first job), then the run."""
    lab.fresh(SITE)
    before = dict((host, lab.ssh(host, TREE)) for host in SITE)
    preview = lab.playbook("site.yml", limit=LIMIT, check=True, diff=True)
    record("check mode of site.yml on %d bare hosts: %.1fs, changed=%s" % (len(SITE), preview.seconds,
                                                                           preview.changed()))
    assert preview.rc == 0, preview.output[-5000:]
    assert all(preview.changed()[host] > 0 for host in SITE), preview.changed()
    assert dict((host, lab.ssh(host, TREE)) for host in SITE) == before, "check mode changed a bare host"
    run = lab.playbook("site.yml", limit=LIMIT)
    record("converge site.yml on %d bare hosts: %.1fs, changed=%s" % (len(SITE), run.seconds, run.changed()))
    assert run.rc == 0, run.output[-5000:]
    assert all(run.changed()[host] > 0 for host in SITE), run.changed()
    return run


def codex_answer(lab, host, oss_model=None):
    """What `codex exec` (or `codex exec --oss -m MODEL`) prints on the host, as root, non-interactively; its transcript
    when it fails."""
    oss = "--oss -m '%s' " % oss_model if oss_model else ""
    out = lab.ssh(host, "cd && timeout 120 codex exec %s--skip-git-repo-check 'Say hello.' </dev/null 2>/tmp/codex.err"
                  % oss, check=False)
    return out.strip() or "(no answer) " + lab.ssh(host, "tail -n 20 /tmp/codex.err", check=False)


def generate(lab, host, model):
    """The model's answer through the server's own API on the host."""
    out = lab.ssh(host, "curl -fsS http://127.0.0.1:11434/api/generate -d '%s'"
                  % json.dumps({"model": model, "prompt": "Say hello.", "stream": False}))
    return json.loads(out)["response"]


def test_codex_prints_the_models_answer_on_every_workstation(lab, converged):
    """The product's point: on a bare host the site playbook ends with a working Codex on the built-in local provider
    and the server's real model, with no step by hand: `codex exec` with the written config, and `codex exec --oss`
    given the model (with --oss Codex asks for gpt-oss:20b unless -m says otherwise)."""
    tiny = "%s/lab/tiny:latest" % lab.site["registry"]
    for host in ("lab1", "lab3"):  # workstations
        assert 'model_provider = "ollama"' in lab.ssh(host, "cat /etc/codex/config.toml")
        started = time.time()
        assert codex_answer(lab, host) == models.reply("lab/tiny", "latest").strip(), host
        record("codex exec on %s: answered in %.1fs" % (host, time.time() - started))
        # the role's model catalog names the server's model: Codex does not warn it knows nothing of it
        assert "Model metadata" not in lab.ssh(host, "cat /tmp/codex.err"), host
        assert 'model_catalog_json = "/etc/codex/ollama-models.json"' in lab.ssh(host, "cat /etc/codex/config.toml")
        assert codex_answer(lab, host, oss_model=tiny) == models.reply("lab/tiny", "latest").strip(), host


def test_the_release_archive_runs_on_a_host_whose_umask_is_027(lab, converged):
    """lab2 is hardened as many servers are (login.defs' UMASK 027: Ansible's SSH sessions make folders 0750), and the
    lab's archive is packed as the release workflow packs Ollama's (no directory entries for bin/ and lib/ollama/):
    the folders still come out 0755, so the server's own user runs the binary and reads its libraries."""
    assert lab.ssh("lab2", "umask").strip() == "0027"
    members = subprocess.run("zstd -dc %s | tar t" % ollama_build.archive_path(NEW), shell=True, check=True,
                             stdout=subprocess.PIPE, universal_newlines=True).stdout.split()
    assert "bin/ollama" in members and not [m for m in members if m.endswith("/")], members
    folders = " ".join("/opt/ollama/versions/%s/%s" % (NEW, sub) for sub in ("bin", "lib", "lib/ollama"))
    modes = lab.ssh("lab2", "stat -c '%%a %%U' %s" % folders).split()
    assert modes == ["755", "root"] * 3, modes
    assert lab.api("lab2", "/api/version")["version"] == NEW
    tiny = "%s/lab/tiny:latest" % lab.site["registry"]
    assert generate(lab, "lab2", tiny).strip() == models.reply("lab/tiny", "latest").strip()


def test_check_mode_on_converged_fleet_predicts_no_change(lab, converged):
    run = lab.playbook("site.yml", limit=LIMIT, check=True, diff=True)
    assert run.rc == 0, run.output[-3000:]
    assert run.changed() == {host: 0 for host in SITE}, run.output[-3000:]


def test_drift_is_seen_and_repaired_on_that_host_only(lab, converged):
    """The idempotence checks (Molecule's, the ansible-runner job's) can fail: a host that drifted reports changes,
    the others none."""
    registry = lab.site["registry"]
    lab.ssh("lab1", "sed -i 's/OLLAMA_HOST=/OLLAMA_HOST=0.0.0.0:1/' /etc/systemd/system/ollama.service.d/10-environment.conf"
            " && curl -fsS -X DELETE http://127.0.0.1:11434/api/delete -d '{\"model\": \"%s/lab/tiny:1b\"}'" % registry)
    check = lab.playbook("servers.yml", limit=LIMIT, check=True)
    assert check.changed()["lab1"] >= 2 and check.changed()["lab2"] == 0, check.output[-3000:]
    run = lab.playbook("servers.yml", limit=LIMIT)
    assert run.rc == 0, run.output[-3000:]
    assert run.changed()["lab1"] >= 2 and run.changed()["lab2"] == 0
    assert "%s/lab/tiny:1b" % registry in server_state(lab, "lab1")["models"]
    assert lab.playbook("servers.yml", limit="lab1").changed() == {"lab1": 0}


def _bad_mirror(name, mutate):
    """A copy of the lab mirror for OLD with the archive changed by `mutate(bytes) -> bytes`."""
    root = LAB_CACHE / "mirror" / name
    shutil.rmtree(root, ignore_errors=True)
    (root / ("v" + OLD)).mkdir(parents=True)
    good = ollama_build.archive_path(OLD)
    shutil.copy(good.parent / "sha256sum.txt", root / ("v" + OLD) / "sha256sum.txt")
    (root / ("v" + OLD) / ollama_build.ASSET).write_bytes(mutate(good.read_bytes()))
    return root


@pytest.mark.parametrize("case", ["truncated", "flipped-byte", "wrong-checksum"])
def test_bad_archive_fails_before_anything_changes(lab, converged, case):
    before = server_state(lab, VICTIM)
    extra = {"ollama_server_version": OLD}
    if case == "wrong-checksum":
        extra["ollama_server_checksum"] = "sha256:" + "0" * 64
    else:
        mutate = (lambda b: b[: len(b) // 2]) if case == "truncated" else (lambda b: b[:1000] + bytes([b[1000] ^ 1]) + b[1001:])
        _bad_mirror("bad-" + case, mutate)
        extra["ollama_server_download_base_url"] = "%s/bad-%s" % (lab.site["mirror_url"], case)
    run = lab.playbook("servers.yml", limit=VICTIM, extra_vars=extra)
    assert run.rc != 0
    assert "(checksum mismatch). Nothing was installed; the running version is unchanged." in run.output
    assert run.stats[VICTIM]["changed"] == 0, run.output[-3000:]
    assert server_state(lab, VICTIM) == before
    assert lab.ssh(VICTIM, "ls /opt/ollama/versions").split() == [NEW]


def test_archive_from_the_controller_is_verified_there(lab, converged):
    tmp = Path(tempfile.mkdtemp())
    bad = tmp / ollama_build.ASSET
    bad.write_bytes(b"not an archive")
    before = server_state(lab, VICTIM)
    good_sum = (ollama_build.archive_path(OLD).parent / "sha256sum.txt").read_text().split()[0]
    run = lab.playbook("servers.yml", limit=VICTIM, extra_vars={
        "ollama_server_version": OLD, "ollama_server_archive_src": str(bad),
        "ollama_server_checksum": "sha256:" + good_sum})
    assert run.rc != 0
    assert "has sha256 %s, expected %s" % (hashlib.sha256(b"not an archive").hexdigest(), good_sum) in run.output
    assert run.stats[VICTIM]["changed"] == 0
    assert server_state(lab, VICTIM) == before
    shutil.rmtree(tmp)


def test_a_moved_tag_is_pulled_by_latest_and_codex_answers_with_it(lab, converged):
    """The registry's tag moves; `state: latest` pulls the new build and the next `codex exec` answers with its
    reply. On lab1, with lab/moving as its Codex model; put back afterwards."""
    registry, url = lab.site["registry"], lab.site["registry_url"]
    moving = "%s/lab/moving" % registry
    extra = {"ollama_models": [{"name": moving, "state": "latest"}], "codex_model": moving}
    try:
        run = lab.playbook("site.yml", limit="lab1", extra_vars=extra)
        assert run.rc == 0, run.output[-3000:]
        assert codex_answer(lab, "lab1") == models.reply("lab/moving", "latest").strip()
        models.push_model(url, "lab/moving", "latest", version=2, real=True)
        check = lab.playbook("site.yml", limit="lab1", extra_vars=extra, check=True)
        assert check.changed()["lab1"] >= 1, check.output[-3000:]
        run = lab.playbook("site.yml", limit="lab1", extra_vars=extra)
        assert run.rc == 0 and run.changed()["lab1"] >= 1, run.output[-3000:]
        assert codex_answer(lab, "lab1") == models.reply("lab/moving", "latest", version=2).strip()
    finally:
        models.push_model(url, "lab/moving", "latest", version=1, real=True)
        lab.ssh("lab1", "curl -s -X DELETE http://127.0.0.1:11434/api/delete -d '{\"model\": \"%s\"}'" % moving,
                check=False)
        assert lab.playbook("site.yml", limit="lab1").rc == 0


def test_upgrade_and_roll_back_keep_models(lab, converged):
    before = server_state(lab, VICTIM)
    tiny = "%s/lab/tiny:latest" % lab.site["registry"]
    reply = models.reply("lab/tiny", "latest")
    assert generate(lab, VICTIM, tiny) == reply
    to_old = lab.playbook("servers.yml", limit=VICTIM, extra_vars={"ollama_server_version": OLD})
    assert to_old.rc == 0, to_old.output[-3000:]
    after_switch = server_state(lab, VICTIM)
    assert after_switch["version"] == OLD
    assert after_switch["current"] == "/opt/ollama/versions/%s" % OLD
    assert after_switch["models"] == before["models"]
    assert generate(lab, VICTIM, tiny) == reply  # the models still answer on the other release
    assert codex_answer(lab, VICTIM) == reply.strip()
    again = lab.playbook("servers.yml", limit=VICTIM, extra_vars={"ollama_server_version": OLD})
    assert again.changed() == {VICTIM: 0}, again.output[-3000:]

    back = lab.playbook("servers.yml", limit=VICTIM)
    assert back.rc == 0, back.output[-3000:]
    # rolling back is a switch of the link: both versions stay unpacked, nothing is downloaded again
    assert server_state(lab, VICTIM) == before
    assert generate(lab, VICTIM, tiny) == reply
    assert sorted(lab.ssh(VICTIM, "ls /opt/ollama/versions").split()) == sorted([NEW, OLD])
    record("upgrade/rollback on %s: %.1fs / %.1fs" % (VICTIM, to_old.seconds, back.seconds))


def test_uninstall_keeps_models_unless_asked_and_changes_nothing_twice(lab, converged):
    """What the Molecule server scenario's cleanup does not say (it checks the unit, binary and user are gone)."""
    run = lab.playbook("servers.yml", limit=VICTIM, extra_vars={"ollama_server_state": "absent", "ollama_models": []})
    assert run.rc == 0, run.output[-3000:]
    assert lab.ssh(VICTIM, "systemctl is-active ollama", check=False).strip() == "inactive"
    assert lab.ssh(VICTIM, "ls /usr/share/ollama/.ollama/models/manifests").strip()
    again = lab.playbook("servers.yml", limit=VICTIM, extra_vars={"ollama_server_state": "absent", "ollama_models": []})
    assert again.changed() == {VICTIM: 0}, again.output[-3000:]
