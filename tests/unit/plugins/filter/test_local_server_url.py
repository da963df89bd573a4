"""The local_server_url filter: where a client on the host reaches the server the server role set up."""
import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.ollama.plugins.filter.local_server_url import local_server_url


@pytest.mark.parametrize("host, port, url", [
    ("127.0.0.1", 11434, "http://127.0.0.1:11434"),
    ("0.0.0.0", "11435", "http://127.0.0.1:11435"),
    ("", 11434, "http://127.0.0.1:11434"),
    (None, 11434, "http://127.0.0.1:11434"),
    ("::", 11434, "http://[::1]:11434"),
    ("::1", 8080, "http://[::1]:8080"),
    ("fd00::5", 11434, "http://[fd00::5]:11434"),
    ("[fd00::5]", 11434, "http://[fd00::5]:11434"),
    ("10.0.0.7", 11434, "http://10.0.0.7:11434"),
    ("gpu1.example.com", 443, "http://gpu1.example.com:443"),
])
def test_the_address_a_client_on_the_host_uses(host, port, url):
    assert local_server_url(host, port) == url


@pytest.mark.parametrize("host, port, says", [
    ("127.0.0.1", "eleven", "is not a port number"),
    ("127.0.0.1", 0, "is not a port number"),
    ("127.0.0.1", 70000, "is not a port number"),
    ("http://gpu1", 11434, "is not a host name or address"),
    ("gpu1/api", 11434, "is not a host name or address"),
])
def test_what_is_not_a_host_and_port_is_said_so(host, port, says):
    with pytest.raises(AnsibleFilterError, match=says):
        local_server_url(host, port)
