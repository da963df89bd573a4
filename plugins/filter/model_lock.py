# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``model_lock`` and ``lock_drift`` filters: a models list with the digests a lock pins, and the pinned models a
server does not have at their digest (documentation in model_lock.yml and lock_drift.yml)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.ollama.plugins.module_utils._lock import InvalidLock, apply_lock, drift


def model_lock(models, *locks, **kwargs):
    """``ollama_models | model_lock(lock_from_file, ollama_models_lock)``: each locked model gets its digest."""
    unlisted = kwargs.pop("unlisted", "ignore")
    if kwargs:
        raise AnsibleFilterError("model_lock: unknown option %s; the only option is unlisted" % ", ".join(sorted(kwargs)))
    try:
        return apply_lock(models, list(locks), unlisted=unlisted)
    except InvalidLock as exc:
        raise AnsibleFilterError("model_lock: %s" % exc) from None


def lock_drift(models, server_models):
    """``pinned_models | lock_drift(ansible_facts.ollama.models)``: [{name, model, digest, locked}] that differ."""
    try:
        return drift(models or [], server_models or [])
    except InvalidLock as exc:
        raise AnsibleFilterError("lock_drift: %s" % exc) from None


class FilterModule(object):
    def filters(self):
        return {"model_lock": model_lock, "lock_drift": lock_drift}
