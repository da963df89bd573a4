"""The codex_address filter on its own: the base URL agrees with the modules' reading of an address (as OLLAMA_HOST),
and an address that is not one gets the message the codex role refuses it with (tests/integration/test_codex_role.py
refuses each through the role)."""
import pytest

from ansible_collections.llmops.ollama.plugins.filter.codex_address import codex_address
from ansible_collections.llmops.ollama.plugins.module_utils._ollama_client import normalize_base_url


@pytest.mark.parametrize("url", ["gpu1", "http://gpu1:11434/", "http://gpu1:11434/v1/", "  gpu1:8080  ",
                                 "HTTPS://ai.example.com/ollama/v1", "http://10.0.0.5", "0.0.0.0", "http://[::]:11434",
                                 "GPU-1.lab.example.com:443/v1", "https://h", "[fe80::1]:9000/a/b/", "ollama.com",
                                 ":31434", "http://:8080/v1"])
def test_the_base_url_is_the_modules_reading_with_one_v1(url):
    got = codex_address(url, provider="remote")
    assert got["base_url"] == normalize_base_url(url) + "/v1"
    assert got["problem"] == ""


def test_the_provider_is_named_by_its_host():
    assert codex_address("HTTP://GPU1:8080", provider="remote")["name"] == "Ollama (gpu1)"
    assert codex_address("0.0.0.0", provider="remote")["name"] == "Ollama (127.0.0.1)"
    assert codex_address("[fe80::1]:9000/a", provider="remote")["name"] == "Ollama ([fe80::1])"
    assert codex_address(":31434", provider="remote")["name"] == "Ollama (127.0.0.1)"


def test_ollama_com_alone_is_the_hosted_api_over_https_as_ollama_reads_it():
    assert codex_address("ollama.com", provider="remote")["base_url"] == "https://ollama.com:443/v1"
    assert codex_address("ollama.com:11434", provider="remote")["base_url"] == "http://ollama.com:11434/v1"


@pytest.mark.parametrize("port, base_url", [(11434, "http://127.0.0.1:11434/v1"), ("8080", "http://127.0.0.1:8080/v1"),
                                            (8080.0, "http://127.0.0.1:8080/v1")])
def test_a_local_provider_uses_the_local_port_whatever_the_remote_address(port, base_url):
    assert codex_address("htp://junk", provider="local", local_port=port) == dict(
        base_url=base_url, name="Ollama (local)", problem="")


@pytest.mark.parametrize("url, says", [
    ("", "it is empty, and codex_provider is remote"),
    ("   ", "it is empty, and codex_provider is remote"),
    ("htp://gpu1:11434", "the scheme 'htp' is neither http nor https"),
    ("http//gpu1:11434", "expected [http(s)://]HOST[:PORT][/PATH][/v1], with no credentials, query or spaces"),
    ("http:gpu1", "expected [http(s)://]HOST[:PORT][/PATH][/v1]"),
    ("https", "'://' is missing after 'https'"),
    ("http://gpu1:11434/v1/v1", "it ends in /v1 twice (the role adds exactly one /v1)"),
    ("gpu1:114340", "port 114340 is not between 1 and 65535"),
    ("gpu1:0", "port 0 is not between 1 and 65535"),
    ("http://admin:pw@gpu1:11434", "with no credentials"),
    ("http://gpu1/?q=1", "with no credentials, query or spaces"),
    ("[1.2.3]:80", "'1.2.3' does not appear to be an IPv4 or IPv6 address"),  # refused by normalize_base_url
])
def test_an_address_that_is_not_one_is_refused_naming_the_variable(url, says):
    got = codex_address(url, provider="remote")
    assert got["base_url"] == ""
    assert got["problem"].startswith("codex_remote_url '%s' is not an Ollama address: " % url)
    assert says in got["problem"]
    assert got["problem"].endswith("Examples: gpu1, gpu1:11434, http://gpu1:11434, http://gpu1:11434/v1, "
                                   "https://ai.example.com/ollama.")
