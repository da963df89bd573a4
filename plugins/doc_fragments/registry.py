# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # How modules read registries themselves (the server's own pulls use the server's settings)
    DOCUMENTATION = r"""
options:
  registry_ca_path:
    description:
      - PEM file of the CA of a site registry whose certificate is not signed by a CA in the system's trust store. It is
        trusted in addition to the system's store, only for registries (and a bundle server), never for the Ollama
        server.
      - The module reads registries with its own settings, not the server's (the system's trust store, this CA, no
        client certificate, and none of O(api_token) or O(headers)). A registry that asks for a bearer token (a
        C(WWW-Authenticate) C(Bearer realm=...) challenge) gets an anonymous token request, as Ollama and Docker
        clients make.
      - Redirects and token services are taken as the Ollama server's pull takes them, so that what the module finds
        is what the server's pull finds. A blob download may go to another host only with a 307 (as registry.ollama.ai
        sends it to its CDN); manifests and everything else stay on the registry's host and port (unless C(insecure));
        a token service (the challenge's realm) only on the registry's own host and port. Where the module refuses,
        the server's pull fails too, and the message says what the registry must change.
      - A private model on ollama.com needs the server's own token request, signed with its key, which the module
        cannot make; the message says so.
      - The Ollama server must trust the same CA for its pulls; give it with E(SSL_CERT_FILE) in the server's
        environment (the P(llmops.ollama.server#role) role's C(ollama_server_environment)).
    type: path
"""
