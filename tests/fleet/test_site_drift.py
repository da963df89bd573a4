"""Drift on a converged fleet: each kind of drift is found by the one look per host (llmops.ollama.ollama_state), on
that host only; check mode predicts exactly the changes the real run then makes; the real run repairs it running
only the drifted part's steps; the run after changes nothing. A host that matches runs none of the roles' steps.

Runs after test_site.py on lab1-lab3 (converged there, or here on bare hosts). lab1 and lab3 are workstations, lab2
the GPU server behind the proxy; for the token file, lab1's Codex is pointed at lab2's proxy (as test_site_proxy.py
does) and put back to the site's settings at the end.
"""
import json
from pathlib import Path

import pytest

SITE = ["lab1", "lab2", "lab3"]
LIMIT = ",".join(SITE)
ENV = "/etc/systemd/system/ollama.service.d/10-environment.conf"
PROXY_CONF = "/etc/nginx/conf.d/llmops-ollama-proxy.conf"
# task names that show which steps ran (the play's look and the roles' own looks always do); the version's is the
# install routine's (roles/_install), which links the ollama command even where the version is unpacked
SERVER_STEPS = {"user": "Create the service group", "config": "Write the server's environment",
                "service": "Keep the servers enabled and running", "version": "Link the commands"}
MODELS_STEP = "Put the listed models on the server in one call"
SERVER_ANSWER = "Publish what differs from the settings, and the GPU facts of a host without GPUs"
PROXY_ANSWER = "Publish what differs from the settings, and the proxy's URL and CA"


@pytest.fixture(scope="module")
def site(lab):
    run = lab.playbook("site.yml", limit=LIMIT)
    assert run.rc == 0, run.output[-5000:]
    return lab


def tasks_run(run, host):
    """Names of the tasks that ran on `host` (ok or changed), in order."""
    names, task = [], None
    for line in run.output.splitlines():
        if line.startswith("TASK ["):
            task = line[6:].split("]")[0].split(" : ", 1)[-1]
        elif task and line.startswith(("ok: [%s]" % host, "changed: [%s]" % host)):
            if not names or names[-1] != task:
                names.append(task)
    return names


def check_then_repair(lab, playbook, hosts, limit=LIMIT, extra=None):
    """Check mode, then the real run, then a run that must change nothing; returns the real run. `hosts` (a host or
    a list) are the ones that drifted: they change, the others do not."""
    hosts = [hosts] if isinstance(hosts, str) else hosts
    check = lab.playbook(playbook, limit=limit, extra_vars=extra, check=True)
    assert check.rc == 0, check.output[-4000:]
    run = lab.playbook(playbook, limit=limit, extra_vars=extra)
    assert run.rc == 0, run.output[-4000:]
    others = dict((h, 0) for h in limit.split(",") if h not in hosts)
    assert all(run.changed()[host] > 0 for host in hosts), run.output[-4000:]
    assert dict((h, c) for h, c in run.changed().items() if h not in hosts) == others, run.output[-4000:]
    # check mode names the hosts that change (a real run counts a few more steps: backups it removes after a restart)
    assert dict((h, c > 0) for h, c in check.changed().items()) == dict((h, c > 0) for h, c in run.changed().items()), \
        "check mode predicted %s, the run changed %s" % (check.changed(), run.changed())
    again = lab.playbook(playbook, limit=limit, extra_vars=extra)
    assert again.rc == 0 and again.changed() == dict((h, 0) for h in limit.split(",")), again.output[-4000:]
    return run


def test_a_converged_fleet_runs_no_step(site):
    run = site.playbook("site.yml", limit=LIMIT)
    assert run.rc == 0 and run.changed() == dict((h, 0) for h in SITE), run.output[-3000:]
    for host in SITE:
        ran = tasks_run(run, host)
        assert not set(ran) & set(SERVER_STEPS.values()) and MODELS_STEP not in ran, (host, ran)
        assert "Write the system configuration" not in ran, (host, ran)
    # every host ends the servers' play after its one look and the roles' answers to it (lab2's proxy publishing its
    # URL and CA there): none goes through the roles, where the server's answer would run a second time
    for host in SITE:
        ran = tasks_run(run, host)
        assert ran.count(SERVER_ANSWER) == 1, (host, ran)
        assert ran.count(PROXY_ANSWER) == (1 if host == "lab2" else 0), (host, ran)
        assert "Say what differs from the settings (the role's steps run for these parts)" not in ran, (host, ran)


def test_a_look_that_fails_runs_every_step_and_repairs_only_the_drift(site):
    """Every role's look at the host fails (forced: tests/fleet/playbooks/look_fails.yml): each role runs all its
    steps on every host, the drifted drop-in on lab1 is repaired, nothing changes on the converged hosts, and the
    site's own run then finds nothing to do."""
    site.ssh("lab1", "sed -i 's/OLLAMA_HOST=/OLLAMA_HOST=0.0.0.0:1/' %s" % ENV)
    run = site.playbook(Path(__file__).parent / "playbooks" / "look_fails.yml", limit=LIMIT)
    assert run.rc == 0, run.output[-5000:]
    for host in SITE:
        ran = tasks_run(run, host)
        assert set(SERVER_STEPS.values()) <= set(ran) and MODELS_STEP in ran, (host, ran)
        assert "Look up the users" in ran, (host, ran)  # the codex role's reads of its own
    assert run.changed()["lab1"] > 0 and run.changed()["lab2"] == run.changed()["lab3"] == 0, run.output[-5000:]
    assert "OLLAMA_HOST=127.0.0.1:11434" in site.ssh("lab1", "cat %s" % ENV)
    again = site.playbook("site.yml", limit=LIMIT)
    assert again.rc == 0 and again.changed() == dict((h, 0) for h in SITE), again.output[-4000:]


def test_each_host_repairs_its_drifted_part_alone(site):
    """One drift per host, at once: an edited drop-in (lab1), the proxy's site edited (lab2), a deleted model (lab3).
    Check mode names the hosts, and each runs only the steps of its drifted part."""
    tiny_1b = "%s/lab/tiny:1b" % site.site["registry"]
    site.ssh("lab1", "sed -i 's/OLLAMA_HOST=/OLLAMA_HOST=0.0.0.0:1/' %s" % ENV)
    site.ssh("lab2", "sed -i 's/proxy_read_timeout [0-9]*s/proxy_read_timeout 1s/' %s" % PROXY_CONF)
    site.ssh("lab3", "curl -fsS -X DELETE http://127.0.0.1:11434/api/delete -d '%s'" % json.dumps({"model": tiny_1b}))
    proxy_before = site.ssh("lab2", "sha256sum %s" % PROXY_CONF)
    run = check_then_repair(site, "servers.yml", SITE)

    ran = tasks_run(run, "lab1")
    assert SERVER_STEPS["config"] in ran and SERVER_STEPS["user"] not in ran and MODELS_STEP not in ran, ran
    assert "OLLAMA_HOST=127.0.0.1:11434" in site.ssh("lab1", "cat %s" % ENV)
    assert site.api("lab1", "/api/version")["version"]

    ran = tasks_run(run, "lab2")
    assert "Write the proxy's site (it holds the tokens)" in ran and "Install nginx from the distribution" not in ran
    assert "Make the CA" not in ran and SERVER_STEPS["config"] not in ran and MODELS_STEP not in ran, ran
    assert site.ssh("lab2", "sha256sum %s" % PROXY_CONF) != proxy_before

    ran = tasks_run(run, "lab3")
    assert MODELS_STEP in ran and not set(ran) & set(SERVER_STEPS.values()), ran
    assert tiny_1b in [m["name"] for m in site.api("lab3", "/api/tags")["models"]]


def test_stopped_service(site):
    """(No check mode here: a stopped server cannot be started in check mode, so the models role cannot read it.)"""
    site.ssh("lab1", "systemctl stop ollama")
    run = site.playbook("servers.yml", limit=LIMIT)
    assert run.rc == 0 and run.changed() == {"lab1": 1, "lab2": 0, "lab3": 0}, run.output[-4000:]
    ran = tasks_run(run, "lab1")
    assert SERVER_STEPS["service"] in ran and SERVER_STEPS["config"] not in ran and SERVER_STEPS["user"] not in ran, ran
    assert site.ssh("lab1", "systemctl is-active ollama").strip() == "active"
    assert site.playbook("servers.yml", limit=LIMIT).changed() == dict((h, 0) for h in SITE)


def test_other_version_link(site):
    """The ollama command pointed elsewhere: the version part runs, and only it."""
    site.ssh("lab3", "ln -sfn /bin/true /usr/local/bin/ollama")
    run = check_then_repair(site, "servers.yml", "lab3")
    ran = tasks_run(run, "lab3")
    assert SERVER_STEPS["version"] in ran and SERVER_STEPS["config"] not in ran and MODELS_STEP not in ran, ran
    assert site.ssh("lab3", "readlink /usr/local/bin/ollama").strip() == "/opt/ollama/current/bin/ollama"


def test_edited_codex_files(site):
    site.ssh("lab1", "echo 'model = \"other\"' >> /etc/codex/config.toml")
    site.ssh("lab3", "sed -i 's/^model = .*/model = \"other\"/' /root/.codex/config.toml")
    check = site.playbook("codex.yml", limit=LIMIT, check=True)
    run = site.playbook("codex.yml", limit=LIMIT)
    assert run.rc == 0 and run.changed() == {"lab1": 1, "lab2": 0, "lab3": 1}, run.output[-4000:]
    assert dict((h, c > 0) for h, c in check.changed().items()) == {"lab1": True, "lab2": False, "lab3": True}
    assert "Write the system configuration" in tasks_run(run, "lab1")
    assert "Write the system configuration" not in tasks_run(run, "lab3")
    assert "Write each file that is the role's to write" in tasks_run(run, "lab3")
    assert 'model = "other"' not in site.ssh("lab1", "cat /etc/codex/config.toml")
    assert 'model = "other"' not in site.ssh("lab3", "cat /root/.codex/config.toml")
    assert site.playbook("codex.yml", limit=LIMIT).changed() == dict((h, 0) for h in SITE)


@pytest.fixture
def remote_client(site):
    token = (Path(site.inventory).parent / "group_vars" / "all" / "lab.yml").read_text().split(
        "lab_proxy_token: ")[1].split("\n")[0].strip('"')
    extra = {"codex_provider": "remote", "codex_remote_url": "https://%s:11443" % site.ips["lab2"],
             "codex_remote_token": token, "codex_remote_ca": site.ssh("lab2", "cat /etc/ollama-proxy/tls/ca.crt")}
    run = site.playbook("codex.yml", limit="lab1", extra_vars=extra)
    assert run.rc == 0, run.output[-4000:]
    yield extra
    run = site.playbook("codex.yml", limit="lab1")  # the site's own settings again
    assert run.rc == 0, run.output[-4000:]


def test_edited_token_file(site, remote_client):
    site.ssh("lab1", "sed -i 's/^OLLAMA_REMOTE_TOKEN=.*/OLLAMA_REMOTE_TOKEN=wrong/' /root/.codex/.env")
    run = check_then_repair(site, "codex.yml", "lab1", limit="lab1", extra=remote_client)
    ran = tasks_run(run, "lab1")
    assert "Give each user the remote server's token (<CODEX_HOME>/.env, readable by the user only)" in ran, ran
    assert "Write the system configuration" not in ran and "Trust the CA of the remote server" not in ran, ran
    assert site.ssh("lab1", "grep -c '^OLLAMA_REMOTE_TOKEN=%s$' /root/.codex/.env" % remote_client["codex_remote_token"]
                    ).strip() == "1"
