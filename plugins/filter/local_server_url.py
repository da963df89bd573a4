# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``local_server_url`` filter: where a client on the host reaches a server listening on a host and port
(documentation in local_server_url.yml). The server role waits for its server there, and the models role manages
that server when it is given no other address: one expression for both."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

# Addresses that mean "every address": a client on the host reaches the server on loopback.
ANY = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "[::1]", "[::]": "[::1]"}


def local_server_url(host, port=11434):
    """``0.0.0.0``, 11434 -> ``http://127.0.0.1:11434``; ``::`` -> ``http://[::1]:11434``; ``fe80::1`` ->
    ``http://[fe80::1]:11434``; any other host as it is."""
    host = "" if host is None else str(host).strip()
    try:
        number = int(str(port).strip())
    except ValueError:
        number = -1
    if not 0 < number < 65536:
        raise AnsibleFilterError("local_server_url: the port %r is not a port number (1 to 65535)" % (port,))
    if any(c.isspace() or c in "/?#@" for c in host):
        raise AnsibleFilterError("local_server_url: %r is not a host name or address (give it without a scheme, a "
                                 "port or a path, as ollama_server_host takes it)" % host)
    if host in ANY:
        return "http://%s:%d" % (ANY[host], number)
    if ":" in host and not host.startswith("["):
        host = "[%s]" % host
    return "http://%s:%d" % (host, number)


class FilterModule(object):
    def filters(self):
        return {"local_server_url": local_server_url}
