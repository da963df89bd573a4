"""Pull progress on the controller for a fleet: two lab hosts pull over SSH (with become) at once, and each gets
its own lines while the pull runs (the integration test covers the figures in detail on a local server).

Runs after test_site.py, on its converged lab1 and lab2; on bare hosts it converges them first.
"""
import json
import re
import subprocess
import time
import urllib.request

import pytest

from tests.lab import models
from tests.lab.ansible_run import ansible_env
from tests.lab.paths import REPO

HOSTS = ["lab1", "lab2"]
MB = 1000 * 1000
SIZE = 24 * MB
RATE = 3 * MB  # shared by both hosts: about 16 s for the two pulls

PLAY = """---
- name: One model on two hosts
  hosts: lab1:lab2
  become: true
  gather_facts: false
  tasks:
    - name: Pull
      llmops.ollama.ollama_model:
        name: "{{ model }}"
        state: "{{ wanted | default('present') }}"
        insecure: true
        progress_interval: 2  # a few lines per host even if the two pulls hardly overlap (8 s each then)
"""


@pytest.fixture(scope="module")
def big(lab):
    registry = "http://%s" % lab.site["registry"]
    manifest, blobs = models.build("progress/fleet:latest", 1, SIZE)
    models.push(registry, "progress/fleet", "latest", manifest, blobs)
    for host in HOSTS:
        if lab.ssh(host, "curl -fsS http://127.0.0.1:11434/api/version", check=False) == "":
            assert lab.playbook("servers.yml", limit=",".join(HOSTS)).rc == 0
            break
    return registry, "%s/progress/fleet:latest" % lab.site["registry"]


def set_rate(registry, rate):
    req = urllib.request.Request(registry + "/_lab/stats", data=json.dumps({"rate": rate}).encode(), method="PUT")
    urllib.request.urlopen(req, timeout=10).close()


def run(lab, tmp_path, **extra_vars):
    """ansible-playbook's output lines, each with the second it arrived."""
    play = tmp_path / "pull.yml"
    play.write_text(PLAY)
    cmd = ["ansible-playbook", "-i", str(lab.inventory), "-e", json.dumps(extra_vars), str(play)]
    started = time.time()
    proc = subprocess.Popen(cmd, cwd=str(REPO), env=ansible_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, universal_newlines=True, bufsize=1)
    lines = [(time.time() - started, line.rstrip("\n")) for line in proc.stdout]
    assert proc.wait(60) == 0, "\n".join(line for _t, line in lines)
    return lines


def test_each_host_shows_its_pull_progress(lab, big, tmp_path):
    registry, model = big
    run(lab, tmp_path, model=model, wanted="absent")  # from a store without it, whatever an earlier run left
    set_rate(registry, RATE)
    try:
        lines = run(lab, tmp_path, model=model)
    finally:
        set_rate(registry, 0)
    text = "\n".join("%6.1f %s" % (t, line) for t, line in lines)
    for host in HOSTS:
        shown = [(t, line) for t, line in lines if line.startswith("%s: pull" % host)]
        pulling = [(t, line) for t, line in shown
                   if re.match(r"^%s: pulling %s \d+%% [0-9.]+ [KMG]?B/24\.0 MB [0-9.]+ [KMG]?B/s ETA \d+:\d\d$"
                               % (host, re.escape(model)), line)]
        assert len(pulling) >= 2, text
        # a line every 2 s while it pulls (10 s allowed, on a busy machine); the last comes after the module's end
        # and its async_status run
        while_pulling = shown[:-1]
        assert max(b[0] - a[0] for a, b in zip(while_pulling, while_pulling[1:])) <= 10, text
        assert re.match(r"^%s: pulled %s 100%% 24\.0 MB in " % (host, re.escape(model)), shown[-1][1]), text
        assert model in [m["name"] for m in lab.api(host, "/api/tags")["models"]]

    again = run(lab, tmp_path, model=model)
    assert not [line for _t, line in again if re.match(r"^lab\d: pull", line)]
    assert "changed=0" in "\n".join(line for _t, line in again)
    run(lab, tmp_path, model=model, wanted="absent")
