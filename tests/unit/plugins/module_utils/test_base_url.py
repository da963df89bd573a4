"""Base URLs normalise to one server root, following OLLAMA_HOST's rules and Codex's /v1 base URLs.

Until issue 13 this file asserted that 'http://:11434' was refused; the Ollama CLI takes it (and ':31434') as this
host, so they are accepted now."""
import pytest

from ansible_collections.llmops.ollama.plugins.module_utils._ollama_client import InvalidBaseURL, normalize_base_url


@pytest.mark.parametrize("given, root", [
    ("http://h:11434", "http://h:11434"),
    ("http://h:11434/", "http://h:11434"),
    ("http://h:11434/v1", "http://h:11434"),
    ("http://h:11434/v1/", "http://h:11434"),
    ("h", "http://h:11434"),
    ("h:8080", "http://h:8080"),
    ("http://h", "http://h:80"),
    ("https://proxy.example.com", "https://proxy.example.com:443"),
    ("https://proxy.example.com/ollama/v1", "https://proxy.example.com:443/ollama"),
    ("0.0.0.0", "http://127.0.0.1:11434"),
    ("0.0.0.0:11500", "http://127.0.0.1:11500"),
    ("[::]:11434", "http://[::1]:11434"),
    ("[fe80::1]:99", "http://[fe80::1]:99"),
    ("HTTP://H:1", "http://h:1"),
    ("", "http://127.0.0.1:11434"),
    # issue 13 item 11: as envconfig.Host (and the Ollama CLI) reads OLLAMA_HOST
    (":31434", "http://127.0.0.1:31434"),
    ("http://:11434", "http://127.0.0.1:11434"),
    ("ollama.com", "https://ollama.com:443"),
    (" ollama.com ", "https://ollama.com:443"),
    ("ollama.com:11434", "http://ollama.com:11434"),
    ("http://ollama.com", "http://ollama.com:80"),
    # a path as a request line carries it (a raw non-ASCII byte here made http.client fail with "ordinal not in
    # range(128)"); what is encoded already stays as it is
    ("A/\x80", "http://a:11434/%C2%80"),
    ("https://h/gw/ü/v1", "https://h:443/gw/%C3%BC"),
    ("http://h:1/a b", "http://h:1/a%20b"),
    ("http://h:1/a%20b", "http://h:1/a%20b"),
])
def test_forms_of_one_server(given, root):
    assert normalize_base_url(given) == root


def test_default_comes_from_ollama_host(monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", "0.0.0.0:12345")
    assert normalize_base_url(None) == "http://127.0.0.1:12345"
    monkeypatch.delenv("OLLAMA_HOST")
    assert normalize_base_url(None) == "http://127.0.0.1:11434"


@pytest.mark.parametrize("given, says", [
    ("ftp://h", "use http:// or https://"),
    ("h:port", "invalid Ollama URL"),
    ("h:99999", "invalid Ollama URL"),
    ("http://user:pw@h:1", "api_token"),
    ("http://:", "no host name"),
    ("http://user@h:1", "api_token"),
])
def test_bad_urls_say_what_to_do(given, says):
    with pytest.raises(InvalidBaseURL) as err:
        normalize_base_url(given)
    assert says in err.value.msg
