"""A host that ran Ollama before the role (lab4, re-created bare first and again after): Ollama's install.sh (its
user, /usr/local/bin/ollama and /usr/local/lib/ollama, its unit), then `systemctl edit ollama` as Ollama's docs say
(override.conf: another port and another models folder), and a model pulled there. The server role:

1. refuses, changing nothing, and names override.conf, what it sets and the role variables that take it over;
2. told to set it aside but not where the models are, refuses again: the models would seem gone;
3. told both (and to remove install.sh's libraries), runs its own release on its own port, serving the same models,
   with override.conf renamed (systemd no longer reads it) and install.sh's libraries gone; the next run changes
   nothing, and going back to the older release (the version kept for rollback) keeps the models;
4. on that converged host, a drop-in added later is seen by the role's one look and refused by name.
"""
import json
import shlex
from pathlib import Path

import pytest

from tests.lab import models, ollama_build

HOST = "lab4"
SERVER = Path(__file__).parent / "playbooks" / "server.yml"  # the server role alone
NEW, OLD = ollama_build.VERSIONS
DROPINS = "/etc/systemd/system/ollama.service.d"
OVERRIDE = DROPINS + "/override.conf"
STORE = "/srv/ollama-models"
PORT = 11500
# install.sh's unit (scripts/install.sh, configure_systemd), with the PATH it writes
INSTALL_SH_UNIT = """[Unit]
Description=Ollama Service
After=network-online.target

[Service]
ExecStart=/usr/local/bin/ollama serve
User=ollama
Group=ollama
Restart=always
RestartSec=3
Environment="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

[Install]
WantedBy=default.target
"""


def messages(run):
    """The messages of the failed items of looped tasks ("failed: [host] (item=...) => {...}")."""
    return [json.loads(line.split(" => ", 1)[1]).get("msg", "") for line in run.output.splitlines()
            if line.startswith("failed: [%s] (item=" % HOST) and " => {" in line]


def api(lab, path, port=11434):
    return json.loads(lab.ssh(HOST, "curl -fsS -m 10 http://127.0.0.1:%d%s" % (port, path)))


def wait_api(lab, port):
    lab.ssh(HOST, "for i in $(seq 60); do curl -fsS -m 2 http://127.0.0.1:%d/api/version && exit 0; sleep 1; done;"
                  " exit 1" % port)


def installed_by_install_sh(lab, tiny):
    """lab4 as install.sh and `systemctl edit ollama` leave a host, with the tiny model pulled into its store."""
    lab.fresh([HOST])
    lab.ssh(HOST, "useradd -r -s /bin/false -U -m -d /usr/share/ollama ollama")
    lab.ssh(HOST, "curl -fsS %s/v%s/ollama-linux-amd64.tar.zst | zstd -dc | tar x -C /usr/local"
            % (lab.site["mirror_url"], OLD))
    lab.ssh(HOST, "printf %%s %s > /etc/systemd/system/ollama.service" % shlex.quote(INSTALL_SH_UNIT))
    lab.ssh(HOST, "mkdir -p %s && printf '[Service]\\nEnvironment=\"OLLAMA_HOST=127.0.0.1:%d\"\\n"
                  "Environment=\"OLLAMA_MODELS=%s\"\\n' > %s" % (DROPINS, PORT, STORE, OVERRIDE))
    lab.ssh(HOST, "install -d -o ollama -g ollama %s && systemctl daemon-reload && systemctl enable --now ollama"
            % STORE)
    wait_api(lab, PORT)
    lab.ssh(HOST, "curl -fsS http://127.0.0.1:%d/api/pull -d '%s' | tail -n 1"
            % (PORT, json.dumps({"model": tiny, "insecure": True, "stream": False})))
    return sorted(m["name"] for m in api(lab, "/api/tags", PORT)["models"])


def as_before(lab, models_before):
    """What install.sh's server still is: its version on its port with its models, nothing of the role's."""
    assert api(lab, "/api/version", PORT)["version"] == OLD
    assert sorted(m["name"] for m in api(lab, "/api/tags", PORT)["models"]) == models_before
    assert lab.ssh(HOST, "ls %s; test -e /opt/ollama && echo role; readlink /usr/local/bin/ollama; true"
                   % DROPINS).split() == ["override.conf"]


@pytest.fixture(scope="module")
def adopted(lab):
    yield lab
    lab.fresh([HOST])  # the air-gap test takes lab4 bare


def test_a_host_that_ran_ollama_is_refused_then_adopted_keeping_its_models(adopted):
    lab = adopted
    tiny = "%s/lab/tiny:latest" % lab.site["registry"]
    models_before = installed_by_install_sh(lab, tiny)
    assert models_before == [tiny]

    run = lab.playbook(SERVER, limit=HOST)
    assert run.rc != 0, run.output[-4000:]
    msgs = messages(run)
    said = ("OLLAMA_HOST, OLLAMA_MODELS", "ollama_server_host and ollama_server_port", "ollama_server_models_dir",
            "Nothing was changed")
    assert any(OVERRIDE in m and all(s in m for s in said) for m in msgs), run.output[-4000:]
    as_before(lab, models_before)

    run = lab.playbook(SERVER, limit=HOST, extra_vars={"ollama_server_foreign_dropins": "disable"})
    assert run.rc != 0, run.output[-4000:]
    msgs = messages(run)
    said = ("Set ollama_server_models_dir: %s" % STORE, "Nothing was changed")
    assert any(all(s in m for s in said) for m in msgs), run.output[-4000:]
    as_before(lab, models_before)

    told = {"ollama_server_foreign_dropins": "disable", "ollama_server_models_dir": STORE,
            "ollama_server_install_sh_files": "remove"}
    run = lab.playbook(SERVER, limit=HOST, extra_vars=told)
    assert run.rc == 0, run.output[-6000:]
    assert api(lab, "/api/version")["version"] == NEW
    assert sorted(m["name"] for m in api(lab, "/api/tags")["models"]) == models_before
    answer = json.loads(lab.ssh(HOST, "curl -fsS http://127.0.0.1:11434/api/generate -d '%s'" % json.dumps(
        {"model": tiny, "prompt": "Say hello.", "stream": False})))["response"]
    assert answer.strip() == models.reply("lab/tiny", "latest").strip()
    assert lab.ssh(HOST, "ls %s" % DROPINS).split() == [
        "10-environment.conf", "20-hardening.conf", "override.conf.disabled-by-llmops-ollama"]
    assert lab.ssh(HOST, "systemctl show -p DropInPaths --value ollama").split() == [
        DROPINS + "/10-environment.conf", DROPINS + "/20-hardening.conf"]
    assert lab.ssh(HOST, "test -e /usr/local/lib/ollama || echo gone; readlink /usr/local/bin/ollama").split() == [
        "gone", "/opt/ollama/current/bin/ollama"]
    lab.ssh(HOST, "! curl -fsS -m 2 http://127.0.0.1:%d/api/version" % PORT)

    again = lab.playbook(SERVER, limit=HOST, extra_vars=told)
    assert again.rc == 0 and again.changed() == {HOST: 0}, again.output[-4000:]

    back = lab.playbook(SERVER, limit=HOST, extra_vars=dict(told, ollama_server_version=OLD))
    assert back.rc == 0, back.output[-4000:]
    assert api(lab, "/api/version")["version"] == OLD
    assert sorted(m["name"] for m in api(lab, "/api/tags")["models"]) == models_before

    # an administrator's `systemctl edit ollama` on the converged host: the look sees it, the role names it
    lab.ssh(HOST, "printf '[Service]\\nEnvironment=\"OLLAMA_HOST=0.0.0.0:11434\"\\nLimitNOFILE=65536\\n' > %s"
                  " && systemctl daemon-reload" % OVERRIDE)
    refusing = dict(told, ollama_server_version=OLD, ollama_server_foreign_dropins="refuse")
    later = lab.playbook(SERVER, limit=HOST, extra_vars=refusing)
    assert later.rc != 0, later.output[-4000:]
    msgs = messages(later)
    assert any(OVERRIDE in m and "sets OLLAMA_HOST," in m for m in msgs), later.output[-4000:]
