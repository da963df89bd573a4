"""Models pinned by digest on the lab fleet (lab1, a workstation): playbooks/lock.yml writes the lock from the registry,
the site's servers play enforces it (ollama_models_lock_file). The host then drifts (someone pulls the tag, which has
moved to a new build): check mode reports the host, the fleet report shows the drift, the real run brings the host
back to the locked build (by digest, since the tag has moved), the run after changes nothing, and the report says the
pinned models are at their digest. A lock written from the host (lock_source: host) then has the host's builds."""
import hashlib
import json
import os
import tempfile

import pytest

from tests.lab import models

HOST = "lab1"
REPO = "lock/fleet"


@pytest.fixture(scope="module")
def locked(lab):
    registry = lab.site["registry"]
    v1 = models.push_model(lab.site["registry_url"], REPO, "latest", 1, 1 << 20).split(":", 1)[1]
    v2 = hashlib.sha256(models.build("%s:latest" % REPO, 2, 1 << 20)[0]).hexdigest()
    fd, lock_file = tempfile.mkstemp(prefix="models-", suffix=".lock.yml")
    os.close(fd)
    os.unlink(lock_file)  # the playbook writes it
    wanted = ["%s/lab/tiny:latest" % registry, "%s/lab/tiny:1b" % registry, "%s/%s:latest" % (registry, REPO)]
    yield lab, dict(v1=v1, v2=v2, lock_file=lock_file, name=wanted[2],
                    extra={"ollama_models": wanted, "ollama_models_lock_file": lock_file})
    if os.path.exists(lock_file):
        os.unlink(lock_file)
    lab.ssh(HOST, "curl -fsS -X DELETE http://127.0.0.1:11434/api/delete -d '%s'" % json.dumps({"model": wanted[2]}),
            check=False)


def digests(lab):
    return {m["name"]: m["digest"] for m in lab.api(HOST, "/api/tags")["models"]}


def report_lines(lab, extra):
    run = lab.playbook("report.yml", limit="%s,localhost" % HOST, extra_vars=extra)
    assert run.rc == 0, run.output[-3000:]
    return [line.strip().strip('",') for line in run.output.splitlines()
            if "lock drift:" in line or "pinned model(s)" in line]


def test_lock_drift_check_fix_report(locked):
    lab, case = locked
    extra = case["extra"]
    write = lab.playbook("lock.yml", extra_vars={"lock_file": case["lock_file"], "ollama_models": extra["ollama_models"]})
    assert write.rc == 0, write.output[-3000:]
    text = open(case["lock_file"]).read()
    assert "%s: %s" % (case["name"], case["v1"]) in text, text
    assert text.count(": ") == 3, text  # one entry per model, written from the registry
    rewrite = lab.playbook("lock.yml", extra_vars={"lock_file": case["lock_file"],
                                                   "ollama_models": extra["ollama_models"]})
    assert rewrite.rc == 0 and rewrite.changed() == {"localhost": 0}, rewrite.output[-3000:]

    converge = lab.playbook("servers.yml", limit=HOST, extra_vars=extra)
    assert converge.rc == 0, converge.output[-4000:]
    assert digests(lab)[case["name"]] == case["v1"]

    # the tag moves to a new build, and someone pulls it on the host
    moved = models.push_model(lab.site["registry_url"], REPO, "latest", 2, 1 << 20).split(":", 1)[1]
    assert moved == case["v2"]
    lab.ssh(HOST, "curl -fsS http://127.0.0.1:11434/api/pull -d '%s' >/dev/null"
            % json.dumps({"model": case["name"], "insecure": True, "stream": False}))
    assert digests(lab)[case["name"]] == case["v2"]

    check = lab.playbook("servers.yml", limit=HOST, extra_vars=extra, check=True, diff=True)
    assert check.rc == 0, check.output[-4000:]
    assert check.changed()[HOST] > 0, check.output[-4000:]
    assert "%s sha256:%s" % (case["name"], case["v1"]) in check.output, check.output[-4000:]
    drift = report_lines(lab, extra)
    print("report with drift: %s" % drift)
    expected = "lock drift: %s is at %s, locked %s" % (case["name"], case["v2"][:12], case["v1"][:12])
    assert len(drift) == 1 and expected in drift[0], drift

    run = lab.playbook("servers.yml", limit=HOST, extra_vars=extra)
    assert run.rc == 0, run.output[-4000:]
    assert run.changed()[HOST] > 0
    assert digests(lab)[case["name"]] == case["v1"]  # the locked build, by digest: the tag has v2
    again = lab.playbook("servers.yml", limit=HOST, extra_vars=extra)
    assert again.rc == 0 and again.changed() == {HOST: 0}, again.output[-4000:]
    fixed = report_lines(lab, extra)
    print("report after the run: %s" % fixed)
    assert any("lock: 3 pinned model(s), all at the locked digest" in line for line in fixed), fixed

    from_host = lab.playbook("lock.yml", extra_vars={"lock_file": case["lock_file"], "lock_source": "host",
                                                     "lock_reference_host": HOST,
                                                     "ollama_models": extra["ollama_models"]}, check=True, diff=True)
    assert from_host.rc == 0 and from_host.changed() == {"localhost": 0}, from_host.output[-3000:]
    from_registry = lab.playbook("lock.yml", extra_vars={"lock_file": case["lock_file"],
                                                         "ollama_models": extra["ollama_models"]}, check=True, diff=True)
    assert from_registry.rc == 0 and from_registry.changed() == {"localhost": 1}, from_registry.output[-3000:]
    assert "+%s: %s" % (case["name"], case["v2"]) in from_registry.output, from_registry.output[-3000:]
