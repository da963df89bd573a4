# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``codex_answer`` filter: what a ``codex exec`` run answered, or why it did not, in plain words.

Documentation in codex_answer.yml. The patterns are what Codex (0.171) and Ollama (0.34) print; tests in
tests/unit/plugins/filter/test_codex_answer.py hold the real outputs they were read from.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible.errors import AnsibleFilterError

# (pattern in Codex's output, reason) in order: the first that matches says why the run failed.
REASONS = (
    (r"No running Ollama server detected|Connection refused|error sending request|connection closed before",
     "server down: no Ollama server answered at the configured address; start it (systemctl start ollama) or "
     "check the address"),
    (r"Pulling model .*(Pull failed|Error)|model '[^']*' not found|pull model manifest",
     "model missing: the server does not have the model and Codex could not pull it; list it in ollama_models "
     "and run the models role"),
    (r"does not support tools",
     "template without tools: the model's template does not render .Tools, which Codex sends; use a model whose "
     "template handles tools"),
    (r"Missing environment variable",
     "no token: the provider's token variable is not set; the codex role writes it to the user's ~/.codex/.env "
     "(codex_remote_token)"),
    (r"\b401\b|Unauthorized|unauthorized",
     "unauthorized (401): the server refused the token; check the token in the user's ~/.codex/.env"),
    (r"\b403\b|Forbidden",
     "forbidden (403): the token may not use this route"),
    (r"certificate|UnknownIssuer|tls handshake|TLS",
     "TLS: the server's certificate is not trusted on this host; give the proxy's CA (codex_remote_ca)"),
    (r"input length exceeds the context length|context window|context_length_exceeded",
     "context too small: the prompt does not fit the model's context; raise ollama_server_context_length"),
)
TIMEOUT_RC = 124  # timeout(1)


def codex_answer(result, timeout=None):
    """{ok, answer, reason} from a registered command result of `codex exec`."""
    if not isinstance(result, dict):
        raise AnsibleFilterError("codex_answer: give the registered result of a codex exec command, not %s"
                                 % type(result).__name__)
    rc = result.get("rc")
    out = (result.get("stdout") or "").strip()
    err = result.get("stderr") or ""
    if rc == 0 and out:
        return dict(ok=True, answer=out, reason="")
    if result.get("skipped"):
        return dict(ok=False, answer="", reason="not run")
    if rc == TIMEOUT_RC:
        return dict(ok=False, answer="", reason="timed out%s: the model did not answer in time"
                    % (" after %ss" % timeout if timeout else ""))
    if rc in (126, 127) or "No such file" in (result.get("msg") or ""):
        return dict(ok=False, answer="", reason="Codex is not installed for this user (codex not on PATH)")
    text = "\n".join((err, out, result.get("msg") or ""))
    for pattern, reason in REASONS:
        if re.search(pattern, text):
            return dict(ok=False, answer="", reason=reason)
    errors = [line.strip() for line in text.splitlines() if re.match(r"\s*(ERROR|Error)\b", line)]
    if rc == 0:
        return dict(ok=False, answer="", reason="empty answer: Codex ended without printing one")
    return dict(ok=False, answer="", reason=(errors[-1] if errors else "codex exec failed (exit %s)" % rc)[:300])


class FilterModule(object):
    def filters(self):
        return {"codex_answer": codex_answer}
