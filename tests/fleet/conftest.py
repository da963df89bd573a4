"""Fixtures for tests on the lab fleet: real Debian hosts booted with systemd in systemd-nspawn, reached over SSH.

The lab (fleet, release mirror, registry) is brought up once per session and taken down at the end, unless it
was already up when the session started (then it is left as found).
"""
import json
import os

import pytest

from tests.lab import fleet, services
from tests.lab.__main__ import down as lab_down
from tests.lab.__main__ import up as lab_up
from tests.lab.ansible_run import run_playbook
from tests.lab.paths import REPO
from tests.conftest import lab_setup

PLAYBOOKS = REPO / "playbooks"


class Lab:
    def __init__(self, hosts):
        self.hosts = hosts
        self.names = [h["name"] for h in hosts]
        self.ips = {h["name"]: h["ip"] for h in hosts}
        self.inventory = fleet.inventory_path()
        self.site = json.loads(services.INFO.read_text())

    def fresh(self, names):
        """Re-create the named hosts as bare Debian hosts (a test that needs a first converge asks for this)."""
        fleet.reset(names)
        lab_up(len(self.hosts))

    def playbook(self, name, limit=None, extra_vars=None, check=False, diff=False, args=()):
        path = name if os.path.isabs(str(name)) else PLAYBOOKS / name
        extra = list(args) + (["--limit", limit] if limit else [])
        return run_playbook(path, self.inventory, extra_vars=extra_vars, check=check, diff=diff, args=extra)

    def ssh(self, host, command, check=True):
        """Run a shell command on a lab host; returns stdout (fails the test on a non-zero exit when check)."""
        proc = fleet.ssh(self.ips[host], command, timeout=120)  # ssh hands the string to the remote shell
        if check:
            assert proc.returncode == 0, "%s: %s\n%s%s" % (host, command, proc.stdout, proc.stderr)
        return proc.stdout

    def api(self, host, path):
        return json.loads(self.ssh(host, "curl -fsS http://127.0.0.1:11434%s" % path))


@pytest.fixture(scope="session")
def lab():
    if os.geteuid() != 0:
        pytest.fail("the fleet tests boot containers: run them as root")
    was_up = any(h["up"] for h in fleet.status()) and services.INFO.exists()
    # lab1-lab3 converge the site; lab4 is air-gapped; lab5 and lab6 take the fault tests
    with lab_setup():
        hosts = lab_up(int(os.environ.get("LAB_HOSTS", "6")))
    yield Lab(hosts)
    if not was_up and not os.environ.get("LAB_KEEP"):
        lab_down()
