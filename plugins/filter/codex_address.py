# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``codex_address`` filter: the Codex provider's base URL from codex_remote_url, read as OLLAMA_HOST is (by the
modules' own normalize_base_url, so the role and the modules never disagree on an address) with exactly one /v1 after
the server root, or the local server's; and, for an address that is not one, the message the codex role refuses it
with. Documentation in codex_address.yml."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
from urllib.parse import urlsplit

from ansible_collections.llmops.ollama.plugins.module_utils._ollama_client import InvalidBaseURL, normalize_base_url

# [http(s)://]host[:port][/prefix][/v1][/]. Groups: 1 scheme, 2 host (name, IPv4 or [IPv6]; none in ':PORT', this
# host, as Ollama reads it), 3 port, 4 path prefix (a reverse proxy's), 5 a trailing /v1.
ADDRESS = re.compile(r"^(?:([A-Za-z][A-Za-z0-9+.-]*)://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+|(?=:))(?::([0-9]+))?"
                     r"((?:/[A-Za-z0-9._~%+-]+)*?)(/v1)?/?\Z")
ADDRESS_FORMS = "gpu1, gpu1:11434, http://gpu1:11434, http://gpu1:11434/v1, https://ai.example.com/ollama"


def _port(value):
    """A port as Ansible's int filter reads it (0 for what is not a number: the settings check refuses it)."""
    for read in (int, lambda v: int(float(v))):
        try:
            return read(value)
        except (TypeError, ValueError, OverflowError):
            continue
    return 0


def _problem(url, match):
    if not url:
        return "it is empty, and codex_provider is remote"
    if not match:
        return "expected [http(s)://]HOST[:PORT][/PATH][/v1], with no credentials, query or spaces"
    scheme, host, port, prefix = match.group(1, 2, 3, 4)
    if scheme is not None and scheme.lower() not in ("http", "https"):
        return "the scheme '%s' is neither http nor https" % scheme
    if scheme is None and host.lower() in ("http", "https"):
        return "'://' is missing after '%s'" % host
    if port is not None and not 1 <= int(port) <= 65535:
        return "port %s is not between 1 and 65535" % port
    if prefix.endswith("/v1"):
        return "it ends in /v1 twice (the role adds exactly one /v1)"
    return ""


def codex_address(remote_url, provider="local", local_port=11434):
    """{base_url, name, problem} for the codex role: the provider's base URL and its default name, and the message
    that refuses a remote address that is not one (empty when it is, or when the provider is local)."""
    if provider != "remote":
        return dict(base_url="http://127.0.0.1:%d/v1" % _port(local_port), name="Ollama (local)", problem="")
    url = str(remote_url).strip()
    problem = _problem(url, ADDRESS.match(url))
    root = ""
    if not problem:
        try:
            root = normalize_base_url(url)
        except InvalidBaseURL as exc:  # what the checks above let through and the modules refuse, in their words
            problem = str(exc).split("': ", 1)[-1]
    if problem:
        return dict(base_url="", name="", problem="codex_remote_url '%s' is not an Ollama address: %s. Examples: %s."
                    % (remote_url, problem, ADDRESS_FORMS))
    # the root always has a port: the host is what comes before it ([IPv6] kept in its brackets)
    return dict(base_url=root + "/v1", name="Ollama (%s)" % urlsplit(root).netloc.rsplit(":", 1)[0], problem="")


class FilterModule(object):
    def filters(self):
        return {"codex_address": codex_address}
