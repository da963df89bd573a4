"""Faults of issue 6 part 3 on the lab fleet, where systemd runs the server: lab5 and lab6 only.

- lab5: an upgrade to a deliberately broken build (its `serve` exits) is rolled back by the server role, and the
  role says so truthfully when even the old version cannot start; the server killed (SIGKILL, restarted by
  systemd) in the middle of a pull; the models disk filling up during a pull.
- lab6: ansible-playbook SIGKILLed during the server role's first converge of a bare host, then again during a pull;
  the next run converges with no manual step and the one after changes nothing.

A refused, hanging or slow registry, a link dropping mid-blob and two plays pulling one model at once are the same
faults on loopback, where they are faster to prove: tests/integration/test_faults_local.py. (They ran here too, and
passed, until the fleet part grew past its four minutes; see this file's history.)

Slow pulls go through tests/lab/faults.py's proxy in front of a registry of this module's own (on the lab bridge, so
the hosts reach it), with a model made for this session, so no host has its blobs yet and no other test's registry
or models are touched. On a lab of fewer than 6 hosts, lab4 to lab6 are booted for this module and stopped after it.
"""
import json
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from tests.fleet.conftest import PLAYBOOKS, Lab
from tests.lab import faults, fleet, models, ollama_build
from tests.lab.__main__ import up as lab_up
from tests.lab.paths import GATEWAY_IP, LAB_STATE
from tests.lab.registry import Registry

NEW, _OLD = ollama_build.VERSIONS
BROKEN = "0.32.99"  # the version number of the deliberately broken build
MIB = 1 << 20
BIG_SIZE = 8 * MIB
RATE = 2 * MIB
MODELS_DIR = "/usr/share/ollama/.ollama/models"

PULL_PLAY = """---
- name: A model on the host's server
  hosts: all
  gather_facts: false
  tasks:
    - name: Pull it
      llmops.ollama.ollama_model:
        name: "{{ model }}"
        insecure: true
        timeout: 30
"""


def record(line):
    with open(LAB_STATE / "measurements.txt", "a") as f:
        f.write(line + "\n")


@pytest.fixture(scope="module")
def hosts(lab):
    """The lab with lab5 and lab6. A smaller lab (CI's 3 hosts) gets them booted here and stopped again after this
    module, with the inventory as it was, so the other fleet tests find the fleet they expect."""
    if {"lab5", "lab6"} <= set(lab.names):
        yield lab
        return
    running = {h["name"]: h["index"] for h in fleet.status() if h["up"]}
    hosts_up = lab_up(6)
    booted = [h["name"] for h in hosts_up if h["name"] not in running]
    try:
        yield Lab(hosts_up)
    finally:
        fleet.reset(booted)
        fleet.up(max(running.values()))  # boots nothing; writes the inventory of the hosts still running


@pytest.fixture(scope="module")
def site(hosts):
    """A registry of this module's own on the lab bridge, a fault proxy in front of it, and this session's model."""
    storage = Path(tempfile.mkdtemp(prefix="fault-registry-"))
    reg = Registry(storage / "store", (GATEWAY_IP, 0), log_dir=storage).start()
    host, port = reg.address.rsplit(":", 1)
    proxy = faults.FaultProxy((host, int(port)), listen=(GATEWAY_IP, 0))
    manifest, blobs = models.build("faults/big:latest", int(time.time()), BIG_SIZE)  # new bytes each session
    digest = models.push(reg.url, "faults/big", "latest", manifest, blobs).split(":", 1)[1]
    play = storage / "pull.yml"
    play.write_text(PULL_PLAY)
    yield dict(registry=reg, proxy=proxy, big="%s/faults/big:latest" % proxy.address, digest=digest, play=play,
               blobs=sorted(d.replace(":", "-") for d in blobs))
    proxy.close()
    reg.stop()
    shutil.rmtree(storage, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_fault_left(request):
    yield
    if "site" in request.fixturenames:
        request.getfixturevalue("site")["proxy"].reset()


def state(lab, host):
    return dict(version=lab.api(host, "/api/version")["version"],
                current=lab.ssh(host, "readlink /opt/ollama/current").strip(),
                models={m["name"]: m["digest"] for m in lab.api(host, "/api/tags")["models"]},
                active=lab.ssh(host, "systemctl is-active ollama", check=False).strip())


def delete_model(lab, host, name):
    """Leave the host as found: remove this session's model (its blobs go with it)."""
    out = lab.ssh(host, "curl -sS -w ' HTTP %%{http_code}' -X DELETE http://127.0.0.1:11434/api/delete -d %s"
                  % json.dumps(json.dumps({"model": name})))
    assert out.endswith("HTTP 200"), out
    assert name not in state(lab, host)["models"]


def wait_for_bytes(proxy, run, n, timeout=90):
    deadline = time.time() + timeout
    while proxy.bytes_to_client < n:
        assert run.proc.poll() is None, "the play ended before the pull was under way:\n" + run.output[-3000:]
        assert time.time() < deadline, "the pull did not start:\n" + run.output[-3000:]
        time.sleep(0.05)


@pytest.fixture(scope="module")
def lab5(hosts):
    run = hosts.playbook("servers.yml", limit="lab5")
    record("faults: converge servers.yml on lab5: %.1fs, changed=%s" % (run.seconds, run.changed()))
    assert run.rc == 0, run.output[-4000:]
    return hosts


def test_upgrade_to_a_server_that_does_not_start_is_rolled_back(lab5):
    """A deliberately broken build passes the checksum and `--version` but its `serve` exits: the play fails saying
    so, and when it ends the old version is current and answering, with its models; the next run changes nothing.

    Then the same upgrade together with a setting that breaks any version (OLLAMA_HOST on an address the host does
    not have): the version and the unit's environment are both rolled back, and the old server answers when the
    play ends. Then that setting alone, with no upgrade: the previous environment is put back and the server keeps
    answering. No backup file is left beside the unit."""
    lab = lab5
    before = state(lab, "lab5")
    faults.broken_release("faults-broken-serve", BROKEN)
    broken = {"ollama_server_version": BROKEN, "ollama_server_wait_timeout": 4,
              "ollama_server_download_base_url": "%s/faults-broken-serve" % lab.site["mirror_url"]}
    run = lab.playbook("servers.yml", limit="lab5", extra_vars=broken)
    after = state(lab, "lab5")  # right when the play ends, no waiting
    record("faults: broken upgrade rolled back on lab5: %.1fs" % run.seconds)
    assert run.rc != 0
    failed = faults.failed_results(run.output)
    # the wait for the new version fails (rescued), then the rescue's own message ends the play
    assert [host for host, _r in failed] == ["lab5", "lab5"], run.output[-4000:]
    # the first failure, rescued: the wait for the new version (ollama_server_wait_timeout 4 s: 2 tries, 2 s apart;
    # the old version is then given 30 s, and answers at once),
    # or, when systemd sees the broken serve exit before its start job ends (a busy host), the restart itself
    first = failed[0][1]
    assert first.get("attempts") == 2 or "Unable to restart service ollama" in first.get("msg", ""), failed[0]
    msg = failed[-1][1]["msg"]
    assert msg.startswith("Ollama %s did not start or did not answer on http://127.0.0.1:11434 within 4s" % BROKEN), msg
    assert "Rolled back to %s, which is running again." % NEW in msg, msg
    assert "deliberately broken test build %s: 'serve' exits without serving" % BROKEN in msg, msg  # from its log
    assert after == before, (before, after)
    again = lab.playbook("servers.yml", limit="lab5")
    assert again.rc == 0 and again.changed() == {"lab5": 0}, again.output[-3000:]

    env = "/etc/systemd/system/ollama.service.d/10-environment.conf"
    env_before = lab.ssh("lab5", "cat %s" % env)
    bad_host = {"ollama_server_wait_timeout": 2, "ollama_server_environment": {"OLLAMA_HOST": "10.9.9.9:11434"}}
    worse = lab.playbook("servers.yml", limit="lab5", extra_vars=dict(broken, **bad_host))
    after = state(lab, "lab5")
    assert worse.rc != 0
    msg = faults.failed_results(worse.output)[-1][1]["msg"]
    assert "Rolled back to %s with the unit and environment it ran with, which is running again." % NEW in msg, msg
    assert after == before and lab.ssh("lab5", "cat %s" % env) == env_before

    config_only = lab.playbook("servers.yml", limit="lab5", extra_vars=bad_host)
    after = state(lab, "lab5")
    assert config_only.rc != 0
    msg = faults.failed_results(config_only.output)[-1][1]["msg"]
    assert "Put back the unit and environment the server ran with; it is running again." in msg, msg
    assert after == before and lab.ssh("lab5", "cat %s" % env) == env_before
    assert lab.ssh("lab5", "ls /etc/systemd/system/ollama.service.d/ /etc/systemd/system/ | grep -c '~$'; true").strip() == "0"
    again = lab.playbook("servers.yml", limit="lab5")
    assert again.rc == 0 and again.changed() == {"lab5": 0}, again.output[-3000:]
    lab.ssh("lab5", "rm -rf /opt/ollama/versions/%s /var/cache/ollama-archives/%s-*" % (BROKEN, BROKEN))


def test_an_upgrade_that_does_not_start_rolls_back_every_instance(lab5):
    """Two servers on the host (ollama_server_instances: 2, one binary): the broken build is rolled back for both,
    and when the play ends both answer with the previous version. Back to one server, the second is gone."""
    lab = lab5
    two = {"ollama_server_instances": 2}
    run = lab.playbook("servers.yml", limit="lab5", extra_vars=two)
    assert run.rc == 0, run.output[-3000:]
    before = state(lab, "lab5")
    faults.broken_release("faults-broken-serve", BROKEN)
    broken = dict(two, ollama_server_version=BROKEN, ollama_server_wait_timeout=4,
                  ollama_server_download_base_url="%s/faults-broken-serve" % lab.site["mirror_url"])
    run = lab.playbook("servers.yml", limit="lab5", extra_vars=broken)
    second = json.loads(lab.ssh("lab5", "curl -fsS -m 5 http://127.0.0.1:11435/api/version"))["version"]
    assert run.rc != 0
    msg = faults.failed_results(run.output)[-1][1]["msg"]
    assert "Rolled back to %s, which is running again." % NEW in msg, msg
    assert "did not answer on http://127.0.0.1:11434" in msg, msg
    assert state(lab, "lab5") == before and second == NEW
    run = lab.playbook("servers.yml", limit="lab5")
    assert run.rc == 0, run.output[-3000:]
    assert lab.ssh("lab5", "systemctl is-active ollama@1.service", check=False).strip() != "active"
    lab.ssh("lab5", "rm -rf /opt/ollama/versions/%s /var/cache/ollama-archives/%s-*" % (BROKEN, BROKEN))


def test_a_previous_server_slower_than_the_wait_is_waited_for(lab5):
    """A setting that breaks the server, with a short ollama_server_wait_timeout (2 s), on a host whose server takes
    8 s to answer after each start (an administrator's drop-in of its own, kept by the role): the role puts the
    previous environment back and waits for that server, which ran before, at least 30 s, so the play says it is
    running again, not that it does not answer either."""
    lab = lab5
    before = state(lab, "lab5")
    slow = "/etc/systemd/system/ollama.service.d/50-slow-start.conf"
    lab.ssh("lab5", "printf '[Service]\\nExecStart=\\nExecStart=/bin/sh -c \"sleep 8; exec /opt/ollama/current/bin/ollama"
                    " serve\"\\n' > %s && systemctl daemon-reload" % slow)
    try:
        bad_host = {"ollama_server_wait_timeout": 2, "ollama_server_environment": {"OLLAMA_HOST": "10.9.9.9:11434"}}
        run = lab.playbook("servers.yml", limit="lab5", extra_vars=bad_host)
        assert run.rc != 0
        msg = faults.failed_results(run.output)[-1][1]["msg"]
        assert msg.startswith("Ollama %s did not start or did not answer on http://127.0.0.1:11434 within 2s" % NEW), msg
        assert "Put back the unit and environment the server ran with; it is running again." in msg, msg
        assert state(lab, "lab5") == before
    finally:
        lab.ssh("lab5", "rm -f %s && systemctl daemon-reload && systemctl restart ollama" % slow)
    wait_for_server(lab, "lab5")
    assert state(lab, "lab5") == before


def test_server_killed_mid_pull_then_restarted_by_systemd(lab5, site):
    lab, proxy = lab5, site["proxy"]
    name = site["big"]
    before = state(lab, "lab5")
    proxy.rate = RATE
    watcher = faults.TagWatcher(faults.netns_tags(fleet.NETNS_PREFIX + "lab5"))
    run = faults.Playbook(site["play"], lab.inventory, extra_vars={"model": name}, args=["--limit", "lab5"])
    try:
        wait_for_bytes(proxy, run, 2 * MIB)
        proxy.rate = 64 * 1024  # the rest would take 90 s now: the kill lands mid-pull however long ssh takes
        # SIGKILL to the server's process (systemctl kill would also signal the whole cgroup, which nspawn's
        # cgroup tree refuses with EIO); systemd sees it die and restarts it (Restart=always)
        lab.ssh("lab5", "kill -KILL $(systemctl show -p MainPID --value ollama)")
        run.wait(120)
    finally:
        run.cleanup()
    assert run.rc != 0
    (_host, failure), = faults.failed_results(run.output)
    assert failure["msg"].startswith("pulling %s: " % name) and "run again to finish the pull" in failure["msg"], failure
    # systemd brings the server back; it lists what it had, not the half-pulled model
    wait_for_server(lab, "lab5")
    assert state(lab, "lab5")["models"] == before["models"]
    proxy.rate = None
    again = lab.playbook(site["play"], limit="lab5", extra_vars={"model": name})
    seen = watcher.stop()
    assert again.rc == 0 and again.changed() == {"lab5": 1}, again.output[-3000:]
    assert state(lab, "lab5")["models"] == dict(before["models"], **{name: site["digest"]})
    assert any(listed is None for _t, listed in seen), "the watcher never saw the server down"
    for _t, listed in seen:
        if listed and name in listed:
            assert listed[name] == site["digest"], "a half-written model was listed"
    assert partials(lab, "lab5", site) == []
    delete_model(lab, "lab5", name)


def partials(lab, host, site):
    """Partial downloads of this session's model left in the host's store."""
    listing = lab.ssh(host, "ls %s/blobs" % MODELS_DIR).split()
    return [f for f in listing if "-partial" in f and f.split("-partial")[0] in site["blobs"]]


def restart_server(lab, host):
    lab.ssh(host, "systemctl restart ollama")
    wait_for_server(lab, host)


def wait_for_server(lab, host, timeout=30):
    deadline = time.time() + timeout
    while lab.ssh(host, "curl -fsS http://127.0.0.1:11434/api/version", check=False) == "":
        assert time.time() < deadline, "the server on %s did not answer within %ss" % (host, timeout)
        time.sleep(0.3)


def test_models_disk_full(lab5, site):
    """The disk of the models store fills during a pull: the task says so, and the server keeps serving what it had.
    The store is copied onto a tmpfs with 3 MiB free, mounted over it, and the server restarted onto it (its
    unit may give it a mount namespace of its own, which would not see a mount made afterwards)."""
    lab = lab5
    before = state(lab, "lab5")
    had = sorted(before["models"])[0]
    # copied onto a roomy tmpfs first, then shrunk to what the copy uses (sparse partial files included) + 3 MiB
    lab.ssh("lab5", "set -e; M=%s; T=$(mktemp -d); cp -a $M/. $T/;"
                    " mount -t tmpfs -o size=256m,mode=0755 faults-small-disk $M; cp -a $T/. $M/; rm -rf $T;"
                    " chown ollama:ollama $M; used=$(df --block-size=1 --output=used $M | tail -1);"
                    " mount -o remount,size=$((used + 3145728)) $M" % MODELS_DIR)
    try:
        restart_server(lab, "lab5")
        assert state(lab, "lab5") == before
        run = lab.playbook(site["play"], limit="lab5", extra_vars={"model": site["big"]})
        assert run.rc != 0
        (_host, failure), = faults.failed_results(run.output)
        msg = failure["msg"]
        assert msg.startswith("pulling %s failed: write %s/blobs/sha256-" % (site["big"], MODELS_DIR)), msg
        assert msg.endswith("no space left on device. The disk holding the server's models is full: free space "
                            "there, or move the models (OLLAMA_MODELS) to a bigger disk, then run again"), msg
        # still serving what it had, from the full disk
        assert state(lab, "lab5") == before
        shown = json.loads(lab.ssh("lab5", "curl -fsS http://127.0.0.1:11434/api/show -d %s"
                                   % json.dumps(json.dumps({"model": had}))))
        assert shown["details"]["format"] == "gguf"
    finally:
        lab.ssh("lab5", "umount %s" % MODELS_DIR, check=False)
        restart_server(lab, "lab5")
    assert state(lab, "lab5") == before


BARE = ("systemctl disable --now ollama 2>/dev/null; rm -rf /opt/ollama /etc/systemd/system/ollama.service "
        "/etc/systemd/system/ollama.service.d /usr/local/bin/ollama /var/cache/ollama-archives /usr/share/ollama; "
        "userdel ollama 2>/dev/null; groupdel ollama 2>/dev/null; systemctl daemon-reload; systemctl reset-failed; true")


def test_playbook_killed_mid_run_converges_on_the_next(hosts, site):
    """SIGKILL of ansible-playbook (and every process under it) during the first converge of a bare host, while the
    release unpacks; again during the models' pull; the third run converges, the fourth changes nothing."""
    lab, proxy = hosts, site["proxy"]
    lab.ssh("lab6", BARE)
    wanted = ["%s/lab/tiny:latest" % lab.site["registry"], site["big"]]
    extra = {"ollama_models": wanted}
    times = []

    first = faults.Playbook(PLAYBOOKS / "servers.yml", lab.inventory, extra_vars=extra, args=["--limit", "lab6"])
    try:
        first.wait_for(r"TASK \[llmops\.ollama\._install : Unpack the archive into the staging directory\]")
        time.sleep(0.5)
        first.kill()
    finally:
        first.cleanup()
    times.append(first.killed_after)
    left = lab.ssh("lab6", "ls -a /opt/ollama/versions /var/cache/ollama-archives 2>&1 | tr '\\n' ' '", check=False)
    assert lab.ssh("lab6", "test -e /opt/ollama/current || echo no-current").strip() == "no-current"

    proxy.rate = RATE
    second = faults.Playbook(PLAYBOOKS / "servers.yml", lab.inventory, extra_vars=extra, args=["--limit", "lab6"])
    try:
        second.wait_for(r"TASK \[llmops\.ollama\.models : Put the listed models on the server in one call\]")
        wait_for_bytes(proxy, second, 2 * MIB)
        second.kill()
    finally:
        second.cleanup()
    times.append(second.killed_after)
    proxy.rate = None

    third = lab.playbook("servers.yml", limit="lab6", extra_vars=extra)
    assert third.rc == 0, third.output[-4000:]
    fourth = lab.playbook("servers.yml", limit="lab6", extra_vars=extra)
    assert fourth.rc == 0 and fourth.changed() == {"lab6": 0}, fourth.output[-4000:]
    now = state(lab, "lab6")
    assert now["version"] == NEW and now["current"] == "/opt/ollama/versions/%s" % NEW and now["active"] == "active"
    assert set(now["models"]) == set(wanted) and now["models"][site["big"]] == site["digest"]
    assert lab.ssh("lab6", "ls /opt/ollama/versions").split() == [NEW]  # no half-unpacked version left
    assert partials(lab, "lab6", site) == []
    record("faults: lab6 killed at %.1fs (unpack; left: %s) and %.1fs (pull), then converged in %.1fs, re-run %.1fs "
           "changed=0" % (times[0], left.strip(), times[1], third.seconds, fourth.seconds))
    delete_model(lab, "lab6", site["big"])
