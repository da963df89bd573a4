# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``bundle_waves`` filter: which host fetches a bundle's blobs from which, wave by wave (documentation in
bundle_waves.yml).

One seed sending every host its copy takes N copy times. Here the seed sends one copy, to the first host (wave 0);
from then on every host that has the blobs sends one copy per wave to a host that lacks them, so the number of sources
doubles each wave: host i of wave k fetches from host i - 2**(k-1), and N hosts take 1 + ceil(log2 N) waves. The
first host sends the most copies, one per later wave (ceil(log2 N)); ``max_copies`` caps that (each host then serves
at most that many, and the waves grow more slowly).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError


def _pairs(hosts):
    """[(host, group)] in order from a list of host names (one group) or a mapping host -> group."""
    if isinstance(hosts, dict):
        pairs = list(hosts.items())
    elif isinstance(hosts, (list, tuple)):
        pairs = [(h, "all") for h in hosts]
    else:
        raise AnsibleFilterError("bundle_waves: expected a list of host names or a mapping of host names to groups, "
                                 "got %s" % type(hosts).__name__)
    seen = set()
    for host, _group in pairs:
        if not isinstance(host, str) or not host:
            raise AnsibleFilterError("bundle_waves: %r is not a host name" % (host,))
        if host in seen:
            raise AnsibleFilterError("bundle_waves: host %s is listed twice" % host)
        seen.add(host)
    return pairs


def _groups(pairs):
    """{group: [hosts in order]}; a host whose group is empty or None has nothing to fetch and is left out."""
    groups = {}
    for host, group in pairs:
        if group not in (None, ""):
            groups.setdefault(group if isinstance(group, str) else repr(group), []).append(host)
    return groups


def _group_plan(hosts, max_copies):
    """[(host, wave, source)] for one group: the first host from the seed (source None), then in each wave every host
    that has the blobs (and has not sent max_copies yet) sends them to the next host that lacks them."""
    plan = [(hosts[0], 0, None)]
    sent = {hosts[0]: 0}
    active = [hosts[0]]  # hosts that may still serve, oldest first
    wave = 0
    while len(plan) < len(hosts):
        wave += 1
        fetching = hosts[len(plan):len(plan) + len(active)]
        for target, source in zip(fetching, active):
            plan.append((target, wave, source))
            sent[source] += 1
            sent[target] = 0
        active = [h for h in active if not max_copies or sent[h] < max_copies] + list(fetching)
    return plan


def bundle_waves(hosts, max_copies=0):
    """The wave plan (see bundle_waves.yml): {waves, hosts: {host: {wave, source, serves}}, seed_copies}."""
    try:
        max_copies = int(max_copies)
    except (TypeError, ValueError):
        raise AnsibleFilterError("bundle_waves: max_copies must be a whole number (0: no cap), got %r" % (max_copies,))
    if max_copies < 0:
        raise AnsibleFilterError("bundle_waves: max_copies must be 0 (no cap) or more, got %d" % max_copies)
    pairs = _pairs(hosts)
    groups = _groups(pairs)
    planned, waves = {}, 0
    for members in groups.values():
        for host, wave, source in _group_plan(members, max_copies):
            planned[host] = {"wave": wave, "source": source, "serves": 0}
            if source is not None:
                planned[source]["serves"] += 1
            waves = max(waves, wave + 1)
    return {"waves": waves, "hosts": dict((h, planned[h]) for h, _g in pairs if h in planned),
            "seed_copies": len(groups)}


class FilterModule(object):
    def filters(self):
        return {"bundle_waves": bundle_waves}
