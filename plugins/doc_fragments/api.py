# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # How modules reach the Ollama server; set once for all of them with module_defaults: group/llmops.ollama.ollama
    DOCUMENTATION = r"""
options:
  base_url:
    description:
      - Where the Ollama server answers, as C(http://host:11434), C(host), C(host:port) or C(https://proxy/path).
      - A trailing C(/) or C(/v1) (an OpenAI-style base URL, as Codex uses) is ignored, so all of these name one server.
      - A bare host gets port 11434; C(http://host) gets 80 and C(https://host) 443, as with E(OLLAMA_HOST).
      - When not set, the E(OLLAMA_HOST) of the managed host is used, else C(http://127.0.0.1:11434).
    type: str
    aliases: [host]
  timeout:
    description:
      - Seconds to wait for the server to answer a request.
      - A pull may take longer in total, as long as the server keeps sending progress; it fails only when the server
        stays silent this long.
    type: int
    default: 30
  validate_certs:
    description:
      - Verify the server's TLS certificate (for C(https://) base URLs, such as an Ollama behind a reverse proxy).
      - Applies to the server only; registries are always verified.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file of the CA that signed the server's certificate, when it is not in the system store.
      - Used for the server only; modules that read registries take a registry's CA as C(registry_ca_path).
    type: path
  client_cert:
    description:
      - PEM client certificate for proxies that require mutual TLS. Presented to the server only.
    type: path
  client_key:
    description:
      - PEM private key of O(client_cert).
    type: path
  api_token:
    description:
      - Bearer token sent as C(Authorization) to the server (Ollama itself has no authentication; a reverse proxy in front
        of it may require one). Never sent to model registries, nor after a redirect to another address.
    type: str
  headers:
    description:
      - Extra HTTP headers sent to the server, for proxies that need them. Never sent to model registries, nor after a
        redirect to another address.
      - Their values are kept out of the task's output and logs, as O(api_token) is.
    type: dict
    default: {}
"""

    ATTRIBUTES = r"""
attributes:
  action_group:
    description: Use C(group/llmops.ollama.ollama) in C(module_defaults) to set O(base_url) and the other connection options once.
    support: full
    membership:
      - llmops.ollama.ollama
"""
