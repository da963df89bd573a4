"""The modules and a real `ollama serve` against a registry that answers as public ones do (tests/lab/registry.py,
`public_registry`): TLS from the lab's own CA, Distribution's own token auth (401 Bearer challenge, a realm on the
registry's address, RS256 tokens Distribution verifies), and blob GETs redirected to a CDN on another host name.

Issue 13: registry reads use the registry's own TLS settings, never the server's ca_path, client certificate,
validate_certs, api_token or headers (item 1); the bearer challenge is answered as Ollama answers it, so state
latest and check mode work, and a refused token is explained without the api_token hint (item 6); the CDN gets no
token (item 2); a bundle's damaged blob is fetched again and check mode predicts the index write (item 14); stray
files in a bundle are ignored (item 16). The playbooks run with ansible-playbook; what the registry, its token
service and its CDN saw is read from the front's request log.
"""
import hashlib
import json
import os

import pytest

from tests.lab import models
from tests.lab.ollama_server import OllamaServer
from tests.lab.pki import LabCA

API_TOKEN = "server-only-token-5c1e"
TEAM_HEADER = "server-only-header-9d2b"


@pytest.fixture(scope="module")
def pushed(registry):
    """Models of this test's own, pushed through the plain registry (the public one serves the same store)."""
    return {repo: models.push_model(registry.url, repo, "latest", 1, size).split(":", 1)[1]
            for repo, size in (("pub/tiny", 1 << 20), ("pub/small", 2 << 20), ("pub/bundled", 1 << 20))}


@pytest.fixture(scope="module")
def server(lab_ca):
    """A server of this module's own that trusts the lab's CA, as a server pulling from a site registry must."""
    with OllamaServer(env={"SSL_CERT_FILE": str(lab_ca.cert)}) as srv:
        yield srv


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory, lab_ca):
    """Connection options meant for a proxy in front of the server: another CA, and a client certificate the
    registry would accept (issued by its CA), so a test can see that the registry is never shown it."""
    other = LabCA(tmp_path_factory.mktemp("proxy-ca"), name="a proxy's CA")
    cert, key = lab_ca.issue("proxy-client", client=True)
    return dict(ca_path=str(other.cert), client_cert=str(cert), client_key=str(key), validate_certs=False,
                api_token=API_TOKEN, headers={"X-Team": TEAM_HEADER})


def play(tmp_path, tasks, names):
    """A playbook of `tasks` whose registered results `names` are written to results.json; returns its path."""
    path = tmp_path / "play.yml"
    out = tmp_path / "results.json"
    saved = ", ".join("'%s': %s" % (n, n) for n in names)
    path.write_text("""---
- name: Against the public registry
  hosts: localhost
  gather_facts: false
  tasks:
%s
    - name: Keep the results
      ansible.builtin.copy:
        content: "{{ {%s} | to_json }}"
        dest: %s
        mode: "0600"
""" % (tasks, saved, out))
    return path, out


def results(run, out):
    assert run.rc == 0, run.output[-6000:]
    return json.loads(out.read_text())


def nothing_of_the_server_reached(public_registry, since):
    seen = public_registry.requests[since:]
    assert seen, "the registry saw nothing"
    for request in seen:
        assert not request["client_cert"], request
        values = json.dumps(request["headers"])
        assert API_TOKEN not in values and TEAM_HEADER not in values and "X-Team" not in values, request
    for request in seen:
        if request["where"] == "cdn":
            assert "Authorization" not in request["headers"], request
    return seen


def test_pull_check_mode_and_latest_through_token_auth_a_cdn_and_tls(server, public_registry, lab_ca, pushed,
                                                                     server_tls, tmp_path, playbook):
    since = len(public_registry.requests)
    model = "%s/pub/tiny:latest" % public_registry.address
    options = dict(server_tls, base_url=server.url, registry_ca_path=str(lab_ca.cert))
    no_ca = dict(server_tls, base_url=server.url)
    tasks = """
    - name: Pull (check)
      llmops.ollama.ollama_model: &pull
        name: "{{ model }}"
        base_url: "{{ o.base_url }}"
        ca_path: "{{ o.ca_path }}"
        client_cert: "{{ o.client_cert }}"
        client_key: "{{ o.client_key }}"
        validate_certs: "{{ o.validate_certs }}"
        api_token: "{{ o.api_token }}"
        headers: "{{ o.headers }}"
        registry_ca_path: "{{ o.registry_ca_path }}"
      check_mode: true
      register: pull_check
    - name: Pull
      llmops.ollama.ollama_model: *pull
      register: pull_real
    - name: Latest (check)
      llmops.ollama.ollama_model:
        <<: *pull
        state: latest
      check_mode: true
      register: latest_check
    - name: Latest
      llmops.ollama.ollama_model:
        <<: *pull
        state: latest
      register: latest_real
    - name: Latest without the registry's CA, while the server's options say not to verify (check)
      llmops.ollama.ollama_model:
        name: "{{ model }}"
        state: latest
        base_url: "{{ n.base_url }}"
        ca_path: "{{ n.ca_path }}"
        validate_certs: false
        api_token: "{{ n.api_token }}"
      check_mode: true
      register: no_ca
      ignore_errors: true
    - name: A namespace whose pulls need a login (check)
      llmops.ollama.ollama_model:
        name: "{{ registry }}/private/model"
        base_url: "{{ o.base_url }}"
        api_token: "{{ o.api_token }}"
        registry_ca_path: "{{ o.registry_ca_path }}"
      check_mode: true
      register: private
      ignore_errors: true
    - name: The fit of a model not pulled yet, from its manifest
      llmops.ollama.ollama_facts:
        base_url: "{{ o.base_url }}"
        models: ["{{ registry }}/pub/small"]
        registry_ca_path: "{{ o.registry_ca_path }}"
        ca_path: "{{ o.ca_path }}"
      register: facts
"""
    path, out = play(tmp_path, tasks, ["pull_check", "pull_real", "latest_check", "latest_real", "no_ca", "private",
                                       "facts"])
    got = results(playbook(path, extra_vars=dict(model=model, o=options, n=no_ca, registry=public_registry.address)),
                  out)
    digest = pushed["pub/tiny"]
    assert got["pull_check"]["changed"] and got["pull_check"]["models"][0]["action"] == "pulled"
    assert got["pull_check"]["models"][0]["digest_after"] == digest
    assert got["pull_check"]["models"][0]["bytes"] > 1000000
    assert got["pull_real"]["changed"] and got["pull_real"]["models"][0]["digest_after"] == digest
    assert not got["latest_check"]["changed"] and not got["latest_real"]["changed"]
    # the server's own TLS options do not turn the registry's verification off, nor replace its CA
    assert got["no_ca"]["failed"]
    assert got["no_ca"]["msg"].startswith("cannot tell whether '%s' is the latest: TLS verification failed for the "
                                          "registry at https://%s" % (model, public_registry.address)), got["no_ca"]
    assert "registry_ca_path" in got["no_ca"]["msg"] and "SSL_CERT_FILE" in got["no_ca"]["msg"]
    # a namespace the token service refuses: said so, and not blamed on the server's token
    assert got["private"]["failed"]
    assert "refused an anonymous token for repository:private/model:pull" in got["private"]["msg"], got["private"]
    assert "api_token" not in got["private"]["msg"]
    (fit,) = got["facts"]["ansible_facts"]["ollama"]["check"]["models"]
    assert fit["size_from"] == "registry" and fit.get("error") is None, fit
    assert fit["size_bytes"] == sum(len(b) for b in models.build("pub/small:latest", 1, 2 << 20)[1].values())

    seen = nothing_of_the_server_reached(public_registry, since)
    # the real server pulled through the same challenge and CDN: a token fetched, blobs from the CDN
    agents = [r for r in seen if r["headers"].get("User-Agent", "").startswith("ollama/")]
    assert any(r["path"].startswith("/token?") for r in agents), agents
    assert any(r["where"] == "cdn" for r in seen if r["headers"].get("User-Agent", "").startswith("Go-http")), seen
    # and the module fetched its own token, anonymously
    ours = [r for r in seen if r["headers"].get("User-Agent") == "llmops.ollama"]
    assert any(r["path"].startswith("/token?") and "Authorization" not in r["headers"] for r in ours), ours


def blob_file(bundle, digest):
    return bundle / "blobs" / digest.replace(":", "-")


def test_a_bundle_from_the_public_registry(public_registry, lab_ca, pushed, tmp_path, playbook):
    since = len(public_registry.requests)
    bundle = tmp_path / "bundle"
    model = "%s/pub/bundled:latest" % public_registry.address
    tasks = """
    - name: Fetch (check)
      llmops.ollama.ollama_bundle: &fetch
        path: "{{ bundle }}"
        models: ["{{ model }}"]
        registry_ca_path: "{{ ca }}"
      check_mode: true
      register: fetch_check
    - name: Fetch
      llmops.ollama.ollama_bundle: *fetch
      register: fetch_real
    - name: Fetch (idempotent)
      llmops.ollama.ollama_bundle: *fetch
      register: fetch_idem
"""
    path, out = play(tmp_path, tasks, ["fetch_check", "fetch_real", "fetch_idem"])
    extra = dict(bundle=str(bundle), model=model, ca=str(lab_ca.cert))
    got = results(playbook(path, extra_vars=extra), out)
    assert got["fetch_check"]["changed"] and got["fetch_real"]["changed"] and not got["fetch_idem"]["changed"]
    assert got["fetch_real"]["models"][0]["digest"] == pushed["pub/bundled"]
    index = json.loads((bundle / "index.json").read_text())
    assert index["models"][model]["digest"] == pushed["pub/bundled"]
    seen = nothing_of_the_server_reached(public_registry, since)
    cdn = [r for r in seen if r["where"] == "cdn"]
    assert len(cdn) == 3, cdn  # each of the three blobs, from the CDN, without the registry's token

    # item 14: a flipped byte in a blob of the same size is found and fetched again; check mode says so
    manifest = json.loads(index["models"][model]["manifest"])
    layer = manifest["layers"][0]["digest"]
    data = bytearray(blob_file(bundle, layer).read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob_file(bundle, layer).write_bytes(bytes(data))
    # item 16: stray files where Ollama keeps manifests are not models, and no reason to fail
    (bundle / "manifests" / ".DS_Store").write_bytes(b"\0\1")
    (bundle / "manifests" / public_registry.address / ".DS_Store").write_bytes(b"\0\1")
    (bundle / "blobs" / ".DS_Store").write_bytes(b"\0\1")
    got = results(playbook(path, extra_vars=extra), out)
    assert got["fetch_check"]["changed"] and got["fetch_check"]["models"][0]["action"] == "updated", got
    assert got["fetch_check"]["models"][0]["bytes"] == len(data)
    assert got["fetch_real"]["changed"] and not got["fetch_idem"]["changed"], got
    assert "sha256:" + hashlib.sha256(blob_file(bundle, layer).read_bytes()).hexdigest() == layer

    # item 14: check mode predicts that a missing index is written
    os.unlink(bundle / "index.json")
    got = results(playbook(path, extra_vars=extra), out)
    assert got["fetch_check"]["changed"] and got["fetch_check"]["models"][0]["action"] == "none", got
    assert got["fetch_real"]["changed"] and not got["fetch_idem"]["changed"], got
    assert json.loads((bundle / "index.json").read_text()) == index
