"""ollama_server_context_length auto in the roles, rendered by Ansible on the controller for stand-in hosts: the server
role's one declaration (its `declaration` entry point, as its look takes it), the context its `answer` tasks publish
from what a look read (a host that matches ends its play before the sizing), and the context the codex role puts in
Codex's catalog. The sizing itself needs a server: tests/fleet/test_site_context.py runs it on a lab host.

With auto, OLLAMA_CONTEXT_LENGTH leaves the environment every instance shares for a drop-in per instance, which the
look counts as the role's own and declares (root's, 0644, sized for the settings as they are now); without it, the
drop-ins are declared absent, so that the role's steps remove them. Codex's catalog never gets the word auto."""
import json
import sys
from pathlib import Path

import pytest

from ansible_collections.llmops.ollama.plugins.filter.server_context import server_context_dropins
from ansible_collections.llmops.ollama.plugins.filter.server_instances import server_instances
from ansible_collections.llmops.ollama.tests.lab.ansible_run import run_playbook
from ansible_collections.llmops.ollama.tests.unit.roles.server.declared import render

ROOT = Path(__file__).resolve().parents[4]
ZERO = "/etc/systemd/system/ollama.service.d/40-context.conf"
FIRST = "/etc/systemd/system/ollama@1.service.d/40-context.conf"
NVIDIA_2 = [dict(vendor="nvidia", index=i, uuid="GPU-%d%d%d%d-aaaa" % (i, i, i, i), name="NVIDIA L4")
            for i in range(2)]
GPU = {"vendors": ["nvidia"], "gpus": ["NVIDIA L4", "NVIDIA L4"], "devices": NVIDIA_2, "compute": "gpu",
       "summary": "", "problems": [], "archive": "none", "device_allow": [], "supplementary_groups": []}
HOSTS = {
    "auto": {"ollama_server_context_length": "auto", "codex_model": "qwen3-coder:30b",
             "ollama_server_num_parallel": 2},
    "auto_two_gpus": {"ollama_server_context_length": "auto", "ollama_server_context_model": "gpt-oss:20b",
                      "ollama_server_context_min": 32768, "ollama_server_instances": "auto",
                      "ollama_server_kv_cache_type": "q8_0", "ollama_server_gpu": GPU},
    "fixed": {"ollama_server_context_length": 8192, "codex_model": "qwen3-coder:30b"},
    "unset": {},
}

CONTENT = """{'context': ollama_server_declaration.context,
              'own': ollama_server_declaration.service.units[0].dropins.own,
              'environment': ollama_server_declaration.service.units[0].dropins.environment}"""


@pytest.fixture(scope="module")
def declared(tmp_path_factory):
    return render(tmp_path_factory.mktemp("declared"), HOSTS, CONTENT)


def test_auto_takes_the_context_out_of_the_shared_environment(declared):
    assert "OLLAMA_CONTEXT_LENGTH" not in declared["auto"]["environment"]
    assert 'Environment="OLLAMA_NUM_PARALLEL=2"\n' in declared["auto"]["environment"]
    assert 'Environment="OLLAMA_CONTEXT_LENGTH=8192"\n' in declared["fixed"]["environment"]
    assert "OLLAMA_CONTEXT_LENGTH" not in declared["unset"]["environment"]


@pytest.mark.parametrize("host", list(HOSTS))
def test_the_context_drop_in_is_the_roles_own(declared, host):
    # not someone else's drop-in setting what the role sets (the takeover check), auto or not
    assert ZERO in declared[host]["own"]


def test_auto_declares_each_drop_in_sized_for_the_settings_now_and_reads_it(declared):
    # codex_model by default; the role's OLLAMA_NUM_PARALLEL; f16 for an empty OLLAMA_KV_CACHE_TYPE
    expected = server_context_dropins(server_instances(1), "qwen3-coder:30b", 65536, 2, "")
    assert declared["auto"]["context"] == {"paths": [expected[0]["declared"]], "read": [ZERO]}
    assert expected[0]["sized_for"] == ("# sized for: model=qwen3-coder:30b min_context=65536 num_parallel=2 "
                                        "kv_cache_type=f16 gpus=all")
    expected = server_context_dropins(server_instances("auto", NVIDIA_2), "gpt-oss:20b", 32768, None, "q8_0")
    assert declared["auto_two_gpus"]["context"] == {"paths": [e["declared"] for e in expected], "read": [ZERO, FIRST]}


@pytest.mark.parametrize("host", ["fixed", "unset"])
def test_without_auto_the_drop_ins_are_declared_absent(declared, host):
    assert declared[host]["context"] == {"paths": [{"path": ZERO, "type": "absent"}], "read": []}


ANSWER = """
- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: llmops.ollama.server
        tasks_from: answer
      vars:
        ollama_look:
          roles: {server: {drift: {}, converged: true}}
          found: {paths: "{{ read }}", gpu: {compute: cpu, summary: no GPU, problems: []}}
    - ansible.builtin.copy:
        dest: "{{ out }}/{{ inventory_hostname }}.json"
        mode: "0600"
        content: "{{ {'context': ollama_server_context | default('unset')} | to_json }}"
      delegate_to: localhost
"""


def dropin(context, model="gpt-oss:20b", min_context=32768, parallel=None, cache="q8_0", index=0):
    items = server_context_dropins(server_instances("auto", NVIDIA_2), model, min_context, parallel, cache,
                                   fits={"ollama": context, "ollama@1": context})
    return items[index]["text"]


@pytest.mark.parametrize("read, published", [
    ({ZERO: {"text": dropin(90112)}, FIRST: {"text": dropin(65536, index=1)}}, 65536),  # the smallest
    ({ZERO: {"text": dropin(90112)}, FIRST: {"text": None, "type": "absent"}}, "unset"),  # not sized yet
    ({}, "unset"),
])
def test_a_host_that_matches_publishes_the_context_its_drop_ins_set(tmp_path, read, published):
    hosts = {"auto_two_gpus": dict(HOSTS["auto_two_gpus"], ansible_connection="local", read=read,
                                   ansible_python_interpreter=sys.executable)}
    (tmp_path / "inventory.json").write_text(json.dumps({"all": {"hosts": hosts}}))
    (tmp_path / "answer.yml").write_text(ANSWER)
    run = run_playbook(tmp_path / "answer.yml", inventory=tmp_path / "inventory.json", extra_vars={"out": str(tmp_path)})
    assert run.rc == 0, run.output[-4000:]
    found = json.loads((tmp_path / "auto_two_gpus.json").read_text())["context"]
    # ansible-core before 2.19 templates to text ("65536"); the catalog's filter reads it as a number either way
    assert (int(found) if str(found).isdigit() else found) == published


CODEX = """
- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.include_vars: {file: "%s/roles/codex/vars/main.yml"}
    - ansible.builtin.copy:
        dest: "{{ out }}/{{ inventory_hostname }}.json"
        mode: "0600"
        content: "{{ {'context': __codex_server_context_length} | to_json }}"
      delegate_to: localhost
""" % ROOT

CODEX_HOSTS = {
    "sized_in_the_run": ({"ollama_server_context_length": "auto", "ollama_server_context": 90112}, 90112),
    "sized_before": ({"ollama_server_context_length": "AUTO", "__codex_context_running": 65536}, 65536),
    "not_sized": ({"ollama_server_context_length": "auto"}, None),
    "given": ({"ollama_server_context_length": "auto", "ollama_server_context": 90112,
               "codex_server_context_length": 32768}, 32768),
    "fixed": ({"ollama_server_context_length": 8192, "ollama_server_context": 90112}, 8192),
    "unset": ({}, None),
}


def test_codex_gets_a_number_never_auto(tmp_path):
    hosts = dict((name, dict(hostvars, ansible_connection="local", ansible_python_interpreter=sys.executable))
                 for name, (hostvars, _expected) in CODEX_HOSTS.items())
    (tmp_path / "inventory.json").write_text(json.dumps({"all": {"hosts": hosts}}))
    (tmp_path / "codex.yml").write_text(CODEX)
    run = run_playbook(tmp_path / "codex.yml", inventory=tmp_path / "inventory.json", extra_vars={"out": str(tmp_path)})
    assert run.rc == 0, run.output[-4000:]
    found = dict((name, json.loads((tmp_path / ("%s.json" % name)).read_text())["context"]) for name in CODEX_HOSTS)
    # before 2.19, text ("32768", or "" for none), which the codex role reads as a number (or none, with `or none`);
    # never the word auto
    found = dict((name, int(value) if str(value).isdigit() else (value or None)) for name, value in found.items())
    assert found == dict((name, expected) for name, (_hostvars, expected) in CODEX_HOSTS.items())
