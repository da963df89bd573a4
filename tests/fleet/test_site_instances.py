"""A server per GPU behind the proxy (ollama_server_instances, docs/instances.md), on the lab's GPU server (lab2).

The lab has no GPU, so lab2 runs two instances on its CPU: ollama.service on 11434 and ollama@1.service on 11435,
one store, and nginx balancing across them. What a team sees is checked: requests through the proxy answered by
both (counted in nginx's log, which names the server of each request), every request answered while one instance is
stopped in the middle, the next run starting it again, a re-run changing nothing, the facts naming both, and fewer
instances stopping and removing the others. The pinning to GPUs is checked with recorded nvidia-smi samples
(tests/unit/plugins/filter/test_server_instances.py); what needs real GPUs is said so in docs/instances.md.
"""
import json
from pathlib import Path

import pytest

from tests.lab.ansible_run import recap

SERVER = "lab2"
LOG = "/var/log/nginx/ollama-proxy.access.log"
CA = "/etc/ollama-proxy/tls/ca.crt"


@pytest.fixture(scope="module")
def token(lab):
    return (Path(lab.inventory).parent / "group_vars" / "all" / "lab.yml").read_text().split(
        "lab_proxy_token: ")[1].split("\n")[0].strip('"')


def converge(lab, instances, check=False, sized=True, **extra):
    """gpu_servers.yml on lab2 with `instances` servers, each with its context sized for the tiny model (`sized`)."""
    if sized:
        extra = dict(extra, ollama_server_context_length="auto", ollama_server_context_min=16384,
                     ollama_server_context_model="%s/lab/tiny:latest" % lab.site["registry"])
    run = lab.playbook("gpu_servers.yml", limit=SERVER, extra_vars=dict(extra, ollama_server_instances=instances),
                       check=check)
    assert run.rc == 0, run.output[-5000:]
    return recap(run.output)[SERVER]


@pytest.fixture(scope="module")
def two(lab):
    # the models role loads the models into each server's memory (its own GPU) with keep_alive: the lab's tiny GGUF
    # (its "small" model is not a loadable one). The first run sizes each server's context once the models are in
    # place, and restarts the servers with it; the second has nothing to change there and loads the models.
    keep = dict(ollama_models_keep_alive="30m", ollama_models=["%s/lab/tiny:latest" % lab.site["registry"]])
    converge(lab, 2, **keep)
    return converge(lab, 2, **keep)


def requests(lab, token, count, parallel=1, during=""):
    """`count` generate requests through the proxy (`parallel` at once, `during` run on the server after the
    third); returns the HTTP status of each and the upstream of each as nginx logged it."""
    model = "%s/lab/tiny:latest" % lab.site["registry"]
    body = json.dumps({"model": model, "prompt": "hi", "stream": False, "options": {"num_predict": 8}})
    one = ("curl -s -m 60 -o /dev/null -w '%%{http_code}\\n' --cacert %s -H 'Authorization: Bearer %s' "
           "https://%s:11443/api/generate -d '%s'" % (CA, token, lab.ips[SERVER], body))
    script = "truncate -s 0 %s; " % LOG
    if during:
        script += "(for i in $(seq %d); do %s; done) > /tmp/statuses & " % (count, one)
        script += "until [ $(wc -l < /tmp/statuses) -ge 3 ]; do sleep 0.1; done; %s; wait; " % during
    else:
        script += "seq %d | xargs -P %d -I{} sh -c %s > /tmp/statuses; " % (count, parallel, _quote(one))
    script += "cat /tmp/statuses; echo ---; cat %s" % LOG
    out = lab.ssh(SERVER, script)
    statuses, log = out.split("---\n", 1)
    upstreams = [line.rsplit("upstream=", 1)[1].strip() for line in log.splitlines() if "upstream=" in line]
    return statuses.split(), upstreams


def _quote(text):
    return "'" + text.replace("'", "'\\''") + "'"


def test_two_instances_share_the_store_and_the_load(lab, two, token):
    units = lab.ssh(SERVER, "systemctl is-active ollama.service ollama@1.service").split()
    assert units == ["active", "active"]
    # one store: what the models role pulled through the first is served by the second
    first = sorted(m["name"] for m in lab.api(SERVER, "/api/tags")["models"])
    second = sorted(m["name"] for m in json.loads(lab.ssh(SERVER, "curl -fsS http://127.0.0.1:11435/api/tags"))["models"])
    assert first and second == first
    # and each has the models the models role keeps in its memory (ollama_model's instances, with keep_alive), with
    # the context sized for it on that server (ollama_server_context_length auto: the tiny model's own limit)
    tiny = "%s/lab/tiny:latest" % lab.site["registry"]
    for port in (11434, 11435):
        loaded = json.loads(lab.ssh(SERVER, "curl -fsS http://127.0.0.1:%d/api/ps" % port))["models"]
        assert [(m["name"], m["context_length"]) for m in loaded] == [(tiny, 32768)], (port, loaded)
    dropins = lab.ssh(SERVER, "grep -h OLLAMA_CONTEXT_LENGTH /etc/systemd/system/ollama.service.d/40-context.conf "
                              "/etc/systemd/system/ollama@1.service.d/40-context.conf")
    assert dropins.split() == ['Environment="OLLAMA_CONTEXT_LENGTH=32768"'] * 2, dropins
    # the second instance has the shared environment and sandbox, and its own address
    shown = lab.ssh(SERVER, "systemctl show ollama@1.service -p Environment -p ProtectSystem")
    assert "OLLAMA_HOST=127.0.0.1:11435" in shown and "OLLAMA_NUM_PARALLEL=2" in shown
    assert "ProtectSystem=strict" in shown
    statuses, upstreams = requests(lab, token, 12, parallel=4)
    assert statuses == ["200"] * 12
    counts = dict((u, upstreams.count(u)) for u in set(upstreams))
    print("requests per instance through the proxy: %s" % counts)
    assert set(counts) == {"127.0.0.1:11434", "127.0.0.1:11435"} and min(counts.values()) >= 3, counts


def test_every_request_is_answered_while_an_instance_is_killed_and_the_next_run_starts_it(lab, two, token):
    # killed (SIGKILL, as a crash), and kept down (systemd would start it again after RestartSec)
    statuses, upstreams = requests(lab, token, 12, during="systemctl kill -s KILL ollama@1.service; "
                                                          "systemctl stop ollama@1.service")
    assert statuses == ["200"] * 12, (statuses, upstreams)
    # a request nginx sent to the stopped instance went on to the first ("11435, 11434" in the log), and the last
    # ones were all answered by the first
    assert all(u.split(", ")[-1] == "127.0.0.1:11434" for u in upstreams[-3:]), upstreams
    assert lab.ssh(SERVER, "systemctl is-active ollama@1.service", check=False).strip() == "inactive"
    again = converge(lab, 2)
    assert again["changed"] > 0
    assert lab.ssh(SERVER, "systemctl is-active ollama@1.service").strip() == "active"
    assert converge(lab, 2)["changed"] == 0


def test_the_facts_and_the_report_name_every_instance(lab, two):
    lab.ssh(SERVER, "systemctl stop ollama@1.service")  # the report says which one is down
    report = lab.playbook("report.yml", limit="%s,localhost" % SERVER)
    assert report.rc == 0, report.output[-3000:]
    assert "instances: 1 of 2 answer (ollama.service :11434 up, ollama@1.service :11435 DOWN)" in report.output
    play = Path(lab.inventory).parent / "facts-instances.yml"
    play.write_text("- hosts: %s\n  gather_facts: false\n  become: true\n  tasks:\n"
                    "    - llmops.ollama.ollama_facts: {gather: [server]}\n"
                    "    - ansible.builtin.debug: {var: ansible_facts.ollama.instances}\n" % SERVER)
    assert converge(lab, 2)["changed"] > 0  # started again
    run = lab.playbook(str(play))
    assert run.rc == 0, run.output[-3000:]
    found = json.loads(run.output.split('"ansible_facts.ollama.instances": ', 1)[1].split("\n}", 1)[0])
    assert [(i["unit"], i["url"], i["active"], i["reachable"]) for i in found] == [
        ("ollama.service", "http://127.0.0.1:11434", True, True),
        ("ollama@1.service", "http://127.0.0.1:11435", True, True)]
    assert found[0]["version"] == found[1]["version"]


def test_fewer_instances_stop_and_remove_the_others(lab, two):
    """Back to one server and the lab's own settings (the context of the lab's group_vars), as the later tests
    expect lab2."""
    check = converge(lab, 1, check=True, sized=False)
    assert check["changed"] > 0
    assert lab.ssh(SERVER, "systemctl is-active ollama@1.service").strip() == "active"  # check mode changed nothing
    assert converge(lab, 1, sized=False)["changed"] > 0
    assert lab.ssh(SERVER, "systemctl is-active ollama@1.service", check=False).strip() != "active"
    left = lab.ssh(SERVER, "ls -d /etc/systemd/system/ollama@* 2>/dev/null; grep -c 'server 127' "
                   "/etc/nginx/conf.d/llmops-ollama-proxy.conf", check=False).split()
    assert left == ["1"], left
    assert "OLLAMA_CONTEXT_LENGTH=8192" in lab.ssh(SERVER, "systemctl show ollama.service -p Environment")
    assert converge(lab, 1, sized=False)["changed"] == 0
