"""The site playbook through ansible-runner, the engine AWX and Automation Platform run jobs with (docs/awx.md):
the same project, inventory and extra variables a job template would hand it, and the result read from
ansible-runner's own status and events.

A bare host (lab3, re-created) converges next to two converged ones (lab1, lab2, left so by test_site.py, or
converged here first); a second job changes nothing on any of them.
"""
import json
import shutil

import ansible_runner
import pytest

from tests.lab.ansible_run import ansible_env
from tests.lab.paths import REPO

SITE = ["lab1", "lab2", "lab3"]
BARE = "lab3"


def job(lab, private_dir):
    """One ansible-runner job of playbooks/site.yml on the lab's inventory; returns the Runner."""
    env = {k: v for k, v in ansible_env().items() if k.startswith("ANSIBLE_")}
    return ansible_runner.run(private_data_dir=str(private_dir), project_dir=str(REPO / "playbooks"),
                              playbook="site.yml", inventory=str(lab.inventory), limit=",".join(SITE),
                              envvars=env, quiet=True, settings={"suppress_ansible_output": True})


def failures(runner):
    return [e["event_data"].get("res", {}).get("msg") for e in runner.events
            if e.get("event") == "runner_on_failed"][:5]


@pytest.fixture(scope="module")
def private_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("runner")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_site_through_ansible_runner_converges_and_then_changes_nothing(lab, private_dir):
    lab.fresh([BARE])
    first = job(lab, private_dir)
    assert first.status == "successful" and first.rc == 0, failures(first)
    assert first.stats["changed"].get(BARE, 0) > 0 and not first.stats["failures"], json.dumps(first.stats)
    version = lab.api(BARE, "/api/version")["version"]
    assert version == lab.ssh(BARE, "readlink /opt/ollama/current").strip().rsplit("/", 1)[-1]

    second = job(lab, private_dir)
    assert second.status == "successful" and second.rc == 0, failures(second)
    assert {h: second.stats["changed"].get(h, 0) for h in SITE} == {h: 0 for h in SITE}, json.dumps(second.stats)
    assert set(second.stats["ok"]) == set(SITE)
