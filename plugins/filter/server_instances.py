# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``server_instances`` filter: the Ollama servers a host runs for ``ollama_server_instances`` (documentation in
server_instances.yml). The server role writes their units from it, the proxy balances across them, the facts and
the report read each one: one expression for all."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib

from ansible.errors import AnsibleFilterError
from ansible_collections.llmops.ollama.plugins.filter.local_server_url import local_server_url

# The variable that pins a server to some GPUs, by vendor (ollama/ollama docs/gpu.md): NVIDIA GPUs by UUID, AMD ones
# by the index ROCm gives them (sysfs has no UUID for them).
PIN = {"nvidia": "CUDA_VISIBLE_DEVICES", "amd": "ROCR_VISIBLE_DEVICES"}
MAX_INSTANCES = 64
UNITS = "/etc/systemd/system"
INSTANCE_DROPIN = "15-instance.conf"  # after 10-environment.conf: its OLLAMA_HOST wins


def _gpu_id(gpu):
    if gpu.get("vendor") == "nvidia" and gpu.get("uuid"):
        return str(gpu["uuid"])
    return str(gpu.get("index"))


def _usable(gpus):
    return [dict(g) for g in (gpus or []) if isinstance(g, dict) and g.get("vendor") in PIN]


def _groups(spec, gpus):
    """The GPUs of each instance: a list of lists of GPU dicts (empty lists on a host without GPUs)."""
    if isinstance(spec, bool):
        raise AnsibleFilterError("server_instances: ollama_server_instances is %r: give a count, auto, or a list of "
                                 "the GPUs of each instance" % (spec,))
    if spec is None or spec == "" or spec == 1 or spec == "1":
        return [[]]
    if isinstance(spec, str) and spec.strip().lower() == "auto":
        return [[g] for g in gpus] or [[]]
    if isinstance(spec, (int, str)):
        try:
            count = int(str(spec).strip())
        except ValueError:
            raise AnsibleFilterError("server_instances: ollama_server_instances is %r: give a count (1 to %d), auto, "
                                     "or a list of the GPUs of each instance" % (spec, MAX_INSTANCES))
        if not 1 <= count <= MAX_INSTANCES:
            raise AnsibleFilterError("server_instances: ollama_server_instances is %d: give 1 to %d"
                                     % (count, MAX_INSTANCES))
        if not gpus:
            return [[] for _i in range(count)]
        if count > len(gpus):
            raise AnsibleFilterError(
                "server_instances: ollama_server_instances is %d but the host has %d GPU%s (%s): two servers on one "
                "GPU would each try to load models into the same memory. Give at most %d, or auto (one per GPU)."
                % (count, len(gpus), "" if len(gpus) == 1 else "s", ", ".join(_gpu_id(g) for g in gpus), len(gpus)))
        # the GPUs in order, split into `count` groups as even as they go (the first groups take one more)
        size, extra = divmod(len(gpus), count)
        groups, start = [], 0
        for number in range(count):
            end = start + size + (1 if number < extra else 0)
            groups.append(gpus[start:end])
            start = end
        return groups
    if isinstance(spec, (list, tuple)):
        if not spec or len(spec) > MAX_INSTANCES:
            raise AnsibleFilterError("server_instances: ollama_server_instances lists %d instances: give 1 to %d"
                                     % (len(spec), MAX_INSTANCES))
        known = dict((_gpu_id(g), g) for g in gpus)
        known.update((str(g.get("index")), g) for g in gpus)
        groups, taken = [], {}
        for number, item in enumerate(spec):
            ids = [item] if isinstance(item, (str, int)) and not isinstance(item, bool) else item
            if not isinstance(ids, (list, tuple)) or not ids:
                raise AnsibleFilterError("server_instances: instance %d of ollama_server_instances is %r: give a GPU "
                                         "(its UUID or index) or a list of them" % (number, item))
            group = []
            for gpu_id in (str(i).strip() for i in ids):
                if gpu_id not in known:
                    raise AnsibleFilterError(
                        "server_instances: instance %d of ollama_server_instances names GPU %s, which the host does not "
                        "have; its GPUs: %s" % (number, gpu_id, ", ".join(_gpu_id(g) for g in gpus) or "none found"))
                gpu = known[gpu_id]
                if _gpu_id(gpu) in taken:
                    raise AnsibleFilterError(
                        "server_instances: GPU %s is in instances %d and %d of ollama_server_instances: give each GPU "
                        "to one instance" % (gpu_id, taken[_gpu_id(gpu)], number))
                taken[_gpu_id(gpu)] = number
                group.append(gpu)
            groups.append(group)
        return groups
    raise AnsibleFilterError("server_instances: ollama_server_instances is %r: give a count, auto, or a list of the "
                             "GPUs of each instance" % (spec,))


def server_instances(spec, gpus=None, host="127.0.0.1", port=11434):
    """[{name, unit, index, port, listen, url, gpus, env}]: instance 0 is ``ollama.service`` on ``port``, instance
    N is ``ollama@N.service`` on ``port + N``."""
    usable = _usable(gpus)
    groups = _groups(spec, usable)
    try:
        base = int(str(port).strip())
    except ValueError:
        raise AnsibleFilterError("server_instances: the port %r is not a port number" % (port,))
    if base + len(groups) - 1 > 65535:
        raise AnsibleFilterError("server_instances: %d instances from port %d go past 65535" % (len(groups), base))
    host = "" if host is None else str(host).strip()
    listen_host = ("[%s]" % host) if ":" in host and not host.startswith("[") else host
    # pin to the GPUs when there are several instances, or one instance was given its GPUs by name
    pin = len(groups) > 1 or isinstance(spec, (list, tuple))
    found = []
    for number, group in enumerate(groups):
        env = {}
        if pin and group:
            for vendor, variable in sorted(PIN.items()):
                ids = [_gpu_id(g) for g in group if g.get("vendor") == vendor]
                if ids:
                    env[variable] = ",".join(ids)
        name = "ollama" if number == 0 else "ollama@%d" % number
        instance = dict(name=name, unit=name + ".service", index=number, port=base + number,
                        listen="%s:%d" % (listen_host, base + number), url=local_server_url(host, base + number),
                        gpus=[_gpu_id(g) for g in group], env=env)
        if number:
            instance.update(_dropin(instance))
        found.append(instance)
    return found


def _quoted(value):
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")


def _dropin(instance):
    """The drop-in of instance N (what differs from the environment every instance shares), and its declaration."""
    folder = "%s/%s.d" % (UNITS, instance["unit"])
    path = "%s/%s" % (folder, INSTANCE_DROPIN)
    # OLLAMA_NOPRUNE: the store is shared, and a server prunes the blobs no manifest names when it starts; an instance
    # starting during a pull through instance 0 would remove that pull's blobs. Instance 0 alone prunes.
    settings = [("OLLAMA_HOST", instance["listen"]), ("OLLAMA_NOPRUNE", "true")] + sorted(instance["env"].items())
    text = "".join(["# Managed by Ansible (llmops.ollama.server): instance %d of ollama_server_instances, what differs "
                    "from the\n# environment every instance shares (ollama.service.d, linked from ollama@.service.d).\n"
                    % instance["index"], "[Service]\n"]
                   + ['Environment="%s=%s"\n' % (name, _quoted(value)) for name, value in settings])
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return dict(dropin_dir=folder, dropin_path=path, dropin_text=text,
                declared_unit=dict(name=instance["name"], active=True, enabled=True),
                declared=[dict(path=folder, type="directory", owner="root", group="root", mode="0755"),
                          dict(path=path, sha256=digest, owner="root", group="root", mode="0644")])


class FilterModule(object):
    def filters(self):
        return {"server_instances": server_instances}
