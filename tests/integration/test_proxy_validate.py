"""The proxy role's `validate` entry point (what the site playbooks run before the server role changes a host):
its argument spec refuses wrong types, missing keys and unknown scopes; its tasks refuse what a spec cannot say.
Every refusal says what to fix and never shows a token."""
import secrets

import pytest

from tests.lab.paths import REPO

PLAYBOOK = REPO / "tests" / "integration" / "targets" / "proxy_validate" / "playbook.yml"
TOKEN = secrets.token_urlsafe(32)
OTHER = secrets.token_urlsafe(32)
SHORT = "short-" + secrets.token_hex(4)
CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@pytest.mark.parametrize("variables, expected", [
    ({"ollama_proxy_tokens": [{"name": "ci", "token": TOKEN, "scope": "root"}]},
     ["Validation of arguments failed", "value of scope must be one of: use, admin, got: root",
      "found in ollama_proxy_tokens"]),
    ({"ollama_proxy_tokens": [{"name": "ci"}]},
     ["Validation of arguments failed", "missing required arguments: token found in ollama_proxy_tokens"]),
    ({"ollama_proxy_tokens": "ci"},
     ["Validation of arguments failed", "ollama_proxy_tokens"]),
    ({"ollama_proxy_tokens": []}, ["The proxy cannot be set up", "ollama_proxy_tokens is empty"]),
    ({"ollama_proxy_tokens": [{"name": "team a", "token": SHORT}, {"name": "ci", "token": TOKEN}]},
     ["The proxy cannot be set up", "these token names are not plain names", "team a",
      "the tokens of team a are not 24 to 200 characters", "Nothing was changed"]),
    ({"ollama_proxy_tokens": [{"name": "a", "token": TOKEN}, {"name": "b", "token": TOKEN}]},
     ["two holders share one token"]),
    ({"ollama_proxy_tokens": [{"name": "a", "token": TOKEN}], "ollama_proxy_tls_cert": CERT},
     ["ollama_proxy_tls_cert and ollama_proxy_tls_key go together"]),
    ({"ollama_proxy_tokens": [{"name": "a", "token": TOKEN}], "ollama_server_host": "0.0.0.0"},
     ["ollama_server_host is '0.0.0.0': behind a proxy the server must listen on loopback only"]),
], ids=["scope", "missing-token", "not-a-list", "empty", "name-and-short-token", "shared-token", "cert-without-key",
        "exposed-server"])
def test_bad_settings_are_refused_with_what_to_fix(playbook, variables, expected):
    run = playbook(PLAYBOOK, extra_vars=variables)
    assert run.rc != 0, run.output[-3000:]
    for text in expected:
        assert text in run.output, (text, run.output[-3000:])
    for secret in (TOKEN, SHORT):
        assert secret not in run.output
    assert "Traceback" not in run.output


def test_good_settings_pass(playbook):
    run = playbook(PLAYBOOK, extra_vars={"ollama_proxy_tokens": [
        {"name": "ml-team", "token": TOKEN}, {"name": "ci", "token": OTHER, "scope": "admin"}]})
    assert run.rc == 0 and run.changed() == {"localhost": 0}, run.output[-3000:]
    assert TOKEN not in run.output and OTHER not in run.output
