"""The server role's one declaration rendered by Ansible on the controller for stand-in hosts: the role's
`declaration` entry point, as its look and tests/fleet/playbooks/declarations.yml take it, then `content` (a Jinja
expression of the host's variables, ollama_server_declaration among them) written per host as JSON."""
import json
import sys

from ansible_collections.llmops.ollama.tests.lab.ansible_run import run_playbook

PLAYBOOK = """
- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: llmops.ollama.server
        tasks_from: declaration
        public: true
    - ansible.builtin.copy:
        dest: "{{ out }}/{{ inventory_hostname }}.json"
        mode: "0600"
        content: "{{ %s | to_json }}"
      delegate_to: localhost
"""


def render(folder, hosts, content, extra_vars=None):
    """{host: the value of `content` on it} for `hosts` ({name: hostvars}), rendered in `folder`."""
    inventory = dict((name, dict(hostvars, ansible_connection="local", ansible_python_interpreter=sys.executable))
                     for name, hostvars in hosts.items())
    (folder / "inventory.json").write_text(json.dumps({"all": {"hosts": inventory}}))
    (folder / "declared.yml").write_text(PLAYBOOK % " ".join(content.split()))
    run = run_playbook(folder / "declared.yml", inventory=folder / "inventory.json",
                       extra_vars=dict(extra_vars or {}, out=str(folder)))
    assert run.rc == 0, run.output[-4000:]
    return dict((name, json.loads((folder / ("%s.json" % name)).read_text())) for name in hosts)
