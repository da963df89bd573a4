"""A GPU server shared by a team, safely: Ollama on loopback, nginx in front with TLS and bearer tokens, and a
workstation's Codex using it (the proxy and codex roles, on lab2 and lab1).

lab2 is converged with the gpu_servers playbook (the lab gives it a token for the workstations); lab1 gets the
codex role with the remote provider, the token and the proxy's CA. After test_site.py (which converges both) the
fixtures' runs change nothing; on bare hosts they converge them. Everything is checked as a user sees it: curl and
the real Codex CLI on the workstation, files and logs on both hosts.
"""
import json
import secrets
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.lab.ansible_run import run_playbook
from tests.lab.paths import REPO

SERVER, CLIENT, STRANGER = "lab2", "lab1", "lab3"
PROXY_ONLY = REPO / "tests" / "fleet" / "playbooks" / "proxy.yml"
PORT = 11443
CONF = "/etc/nginx/conf.d/llmops-ollama-proxy.conf"
LOG = "/var/log/nginx/ollama-proxy.access.log"


CONTROLLER_PLAY = """---
- name: The GPU server's models, managed from the controller through the proxy
  hosts: localhost
  connection: local
  gather_facts: false
  module_defaults:
    group/llmops.ollama.ollama:
      base_url: "{{ proxy_url }}"
      api_token: "{{ proxy_token }}"
      ca_path: "{{ proxy_ca }}"
  tasks:
    - name: Read the server
      llmops.ollama.ollama_facts:
        gather: [server]
    - name: Put the model in place, or take it away
      llmops.ollama.ollama_model:
        name: "{{ model }}"
        state: "{{ wanted }}"
        insecure: true
"""


@pytest.fixture(scope="module")
def token(lab):
    return (Path(lab.inventory).parent / "group_vars" / "all" / "lab.yml").read_text().split(
        "lab_proxy_token: ")[1].split("\n")[0].strip('"')


@pytest.fixture(scope="module")
def server(lab):
    run = lab.playbook("gpu_servers.yml", limit=SERVER, args=["-v"])
    assert run.rc == 0, run.output[-5000:]
    return run


@pytest.fixture(scope="module")
def client(lab, server, token):
    run = lab.playbook("codex.yml", limit=CLIENT, extra_vars=remote_vars(lab, token), args=["-v"])
    assert run.rc == 0, run.output[-5000:]
    return run


def remote_vars(lab, token, **extra):
    return dict({"codex_provider": "remote", "codex_remote_url": "https://%s:%d" % (lab.ips[SERVER], PORT),
                 "codex_remote_token": token, "codex_remote_ca_host": SERVER}, **extra)


def curl(lab, path, token=None, method="GET", data=None, host=CLIENT, cacert=True):
    """HTTP status and body of a request from the workstation to the proxy."""
    cmd = "curl -sS -m 20 -o /tmp/body -w '%%{http_code}' -X %s" % method
    if cacert:
        cmd += " --cacert /usr/local/share/ca-certificates/llmops-ollama-ollama-remote.crt"
    if token is not None:
        cmd += " -H 'Authorization: Bearer %s'" % token
    if data is not None:
        cmd += " -d '%s'" % json.dumps(data)
    cmd += " https://%s:%d%s 2>/tmp/body; echo; cat /tmp/body" % (lab.ips[SERVER], PORT, path)
    out = lab.ssh(host, cmd, check=False)
    status, body = out.split("\n", 1) if "\n" in out else (out, "")
    return status.strip(), body


def test_request_without_a_valid_token_is_refused(lab, client, token):
    assert curl(lab, "/v1/models")[0] == "401"
    assert curl(lab, "/api/tags", token="x" * 40)[0] == "401"
    assert curl(lab, "/api/tags", token=token[:-1])[0] == "401"
    status, body = curl(lab, "/api/tags", token=token)
    assert status == "200", body
    assert "lab/small:latest" in body


def test_tokens_are_compared_exactly(lab, client, token):
    """Issue 13 item 5: nginx compares a map's string keys ignoring case, so the token upper- or lower-cased was
    accepted too (200 for both on a lab GPU server). The scheme word may be written in any case (RFC 9110)."""
    assert token.upper() != token and token.lower() != token, "the lab's token has no letters to change"
    assert curl(lab, "/api/tags", token=token.upper())[0] == "401"
    assert curl(lab, "/api/tags", token=token.lower())[0] == "401"
    assert curl(lab, "/api/tags", token=token.swapcase())[0] == "401"
    assert curl(lab, "/api/tags", token=token + "x")[0] == "401"
    assert curl(lab, "/api/tags", token=" " + token)[0] == "401"
    status, body = curl(lab, "/api/tags", token=token)
    assert status == "200", body
    assert lab.ssh(CLIENT, "curl -sS -m 20 -o /dev/null -w '%%{http_code}' --cacert "
                   "/usr/local/share/ca-certificates/llmops-ollama-ollama-remote.crt -H 'Authorization: bearer %s' "
                   "https://%s:%d/api/tags" % (token, lab.ips[SERVER], PORT)) == "200"


def test_use_token_runs_models_but_cannot_manage_them(lab, client, token):
    model = "%s/lab/small:latest" % lab.site["registry"]
    assert curl(lab, "/api/show", token=token, method="POST", data={"model": model})[0] == "200"
    status, body = curl(lab, "/api/delete", token=token, method="DELETE", data={"model": model})
    assert status == "403", body
    assert curl(lab, "/api/pull", token=token, method="POST", data={"model": model})[0] == "403"
    assert model in [m["name"] for m in lab.api(SERVER, "/api/tags")["models"]]


# The server's routes to ollama.com and its accounts, and Ollama 0.34's /api/codex/ (to chatgpt.com and OpenAI), each
# with the method the server answers it on (server/routes.go).
CLOUD_ROUTES = [("POST", "/api/experimental/web_search", {"query": "ollama"}),
                ("POST", "/api/experimental/web_fetch", {"url": "https://ollama.com"}),
                ("POST", "/api/me", {}), ("POST", "/api/signout", {}),
                ("DELETE", "/api/user/keys/c3NoLWVkMjU1MTkgQUFBQQ", None),
                ("POST", "/api/codex/v1/responses", {"model": "gpt-5", "input": "hi"}),
                ("GET", "/api/codex/v1/models", None)]
ON_SITE = "this server stays on site"


def test_the_server_stays_on_site(lab, client, token):
    """Issue 12 item 3: the server role turns ollama.com's cloud off (its /api/status says so, as ollama_facts reads
    it); the proxy refuses the routes that reach ollama.com, its accounts or OpenAI for every token, admin too,
    unless ollama_proxy_allow_cloud_routes; inference still works."""
    assert lab.api(SERVER, "/api/status")["cloud"] == {"disabled": True, "source": "env"}
    assert "OLLAMA_NO_CLOUD=true" in lab.ssh(SERVER, "cat /etc/systemd/system/ollama.service.d/10-environment.conf")
    for method, path, data in CLOUD_ROUTES:
        assert curl(lab, path, method=method, data=data)[0] == "401", path  # no token: still the token's 401
        status, body = curl(lab, path, token=token, method=method, data=data)
        assert (status, ON_SITE in body) == ("403", True), (path, status, body)
    status, body = curl(lab, "/v1/chat/completions", token=token, method="POST", data={
        "model": "%s/lab/tiny:latest" % lab.site["registry"], "messages": [{"role": "user", "content": "hi"}]})
    assert status == "200" and "Hello from tiny!" in body, body
    admin = secrets.token_urlsafe(32)
    tokens = {"ollama_proxy_tokens": [{"name": "workstations", "token": token},
                                      {"name": "ci", "token": admin, "scope": "admin"}]}
    try:
        assert lab.playbook(PROXY_ONLY, limit=SERVER, extra_vars=tokens).rc == 0
        for method, path, data in CLOUD_ROUTES:
            status, body = curl(lab, path, token=admin, method=method, data=data)
            assert (status, ON_SITE in body) == ("403", True), (path, status, body)
        # the admin token still manages models (a delete of a model that is not there reaches the server: 404)
        assert curl(lab, "/api/delete", token=admin, method="DELETE", data={"model": "nothing:here"})[0] == "404"
        # allowed: the request reaches the server, which answers it itself; web search is off there too, by
        # OLLAMA_NO_CLOUD (/api/me and /api/codex/ would go out whatever OLLAMA_NO_CLOUD says: only the proxy stops them)
        run = lab.playbook(PROXY_ONLY, limit=SERVER, extra_vars=dict(tokens, ollama_proxy_allow_cloud_routes=True))
        assert run.rc == 0, run.output[-3000:]
        status, body = curl(lab, "/api/experimental/web_search", token=admin, method="POST", data={"query": "x"})
        assert status == "403" and ON_SITE not in body and "web search is unavailable" in body, (status, body)
    finally:
        assert lab.playbook(PROXY_ONLY, limit=SERVER).rc == 0
    assert curl(lab, "/api/me", token=token, method="POST", data={})[0] == "403"


def test_tls_is_verified_with_the_generated_ca(lab, client, token):
    # the workstation trusts the proxy's CA (the codex role added it to the host's CAs); a host that does not, refuses
    assert curl(lab, "/api/version", token=token, cacert=False)[0] == "200"
    status, body = curl(lab, "/api/version", token=token, cacert=False, host=STRANGER)
    assert status == "000" and "certificate" in body, body
    # the CA may only sign the server's own names and addresses
    ca = lab.ssh(SERVER, "openssl x509 -noout -text -in /etc/ollama-proxy/tls/ca.crt")
    assert "Name Constraints: critical" in ca and "IP:%s/255.255.255.255" % lab.ips[SERVER] in ca
    cert = lab.ssh(SERVER, "openssl x509 -noout -ext subjectAltName -in /etc/ollama-proxy/tls/server.crt")
    assert "IP Address:%s" % lab.ips[SERVER] in cert and "DNS:%s" % SERVER in cert


def test_codex_on_the_workstation_reaches_the_server_with_its_token(lab, client, token):
    config = lab.ssh(CLIENT, "cat /etc/codex/config.toml")
    assert 'base_url = "https://%s:%d/v1"' % (lab.ips[SERVER], PORT) in config
    assert 'env_key = "OLLAMA_REMOTE_TOKEN"' in config and token not in config
    assert lab.ssh(CLIENT, "stat -c '%a %U' /root/.codex/.env").split() == ["600", "root"]
    lab.ssh(SERVER, "truncate -s 0 %s" % LOG)
    doctor = json.loads(lab.ssh(CLIENT, "codex doctor --json", check=False))["checks"]
    assert doctor["config.load"]["status"] == "ok", doctor["config.load"]
    reach = doctor["network.provider_reachability"]
    assert reach["status"] == "ok", reach
    assert lab.ips[SERVER] in json.dumps(reach)
    # doctor probes without the token (it counts a 401 as reachable); a real request carries it: Codex reads it from
    # ~/.codex/.env with nothing in the shell's environment, the proxy lets it in over TLS, and the GPU server's
    # model answers
    lab.ssh(SERVER, "truncate -s 0 %s" % LOG)
    answer = lab.ssh(CLIENT, "cd && env -u OLLAMA_REMOTE_TOKEN timeout 120 codex exec --skip-git-repo-check "
                             "'Say hello.' </dev/null 2>/tmp/codex.err", check=False)
    assert answer.strip() == "Hello from tiny!", lab.ssh(CLIENT, "tail -n 30 /tmp/codex.err")
    # the catalog was read from the GPU server through the proxy, with the token: Codex knows the model
    assert "Model metadata" not in lab.ssh(CLIENT, "cat /tmp/codex.err")
    catalog = json.loads(lab.ssh(CLIENT, "cat /etc/codex/ollama-models.json"))
    assert "%s/lab/tiny:latest" % lab.site["registry"] in [m["slug"] for m in catalog["models"]]
    log = lab.ssh(SERVER, "cat %s" % LOG)
    assert ' workstations [' in log and '"POST /v1/responses" 200' in log, log
    assert token not in log


def test_the_token_can_come_from_a_root_owned_file_through_a_command(lab, client, token):
    """codex_remote_auth_command: no .env and no env_key; Codex runs the command (here cat of a root-only file, as a
    site would read its secret store) and sends what it prints through the proxy, which lets it in."""
    lab.ssh(CLIENT, "install -m 0600 /dev/null /root/ollama-proxy.token && printf %s '" + token
            + "' > /root/ollama-proxy.token")
    auth = remote_vars(lab, "", codex_remote_auth_command={"command": "/bin/cat", "args": ["/root/ollama-proxy.token"]})
    try:
        run = lab.playbook("codex.yml", limit=CLIENT, extra_vars=auth)
        assert run.rc == 0, run.output[-4000:]
        config = lab.ssh(CLIENT, "cat /etc/codex/config.toml")
        assert "env_key" not in config and 'command = "/bin/cat"' in config and token not in config, config
        assert run.changed()[CLIENT] > 0 and token not in run.output
        # the role has no token to read the models with through the proxy: it says so and keeps the catalog
        assert "could not read the models of the server at https://%s:%d" % (lab.ips[SERVER], PORT) in run.output
        assert "the catalog written before is kept" in run.output
        again = lab.playbook("codex.yml", limit=CLIENT, extra_vars=auth)
        assert again.rc == 0 and again.changed() == {CLIENT: 0}, again.output[-3000:]
        lab.ssh(SERVER, "truncate -s 0 %s" % LOG)
        answer = lab.ssh(CLIENT, "cd && env -u OLLAMA_REMOTE_TOKEN timeout 120 codex exec --skip-git-repo-check "
                                 "'Say hello.' </dev/null 2>/tmp/codex.err", check=False)
        assert answer.strip() == "Hello from tiny!", lab.ssh(CLIENT, "tail -n 30 /tmp/codex.err")
        log = lab.ssh(SERVER, "cat %s" % LOG)
        assert ' workstations [' in log and '"POST /v1/responses" 200' in log, log
    finally:
        lab.ssh(CLIENT, "rm -f /root/ollama-proxy.token")
        assert lab.playbook("codex.yml", limit=CLIENT, extra_vars=remote_vars(lab, token)).rc == 0


def codex_without_the_token(lab, token_setup):
    """`codex exec` on the workstation with the token taken away or replaced; returns (exit status, its words)."""
    out = lab.ssh(CLIENT, "cd && mv .codex/.env .codex/.env.saved && %s; "
                          "timeout 120 codex exec --skip-git-repo-check "
                          "-c model_providers.ollama-remote.request_max_retries=0 "
                          "-c model_providers.ollama-remote.stream_max_retries=0 'Say hello.' </dev/null >/tmp/codex.out "
                          "2>&1; echo \"rc=$?\"; mv .codex/.env.saved .codex/.env; cat /tmp/codex.out" % token_setup,
                  check=False)
    first, _sep, rest = out.partition("\n")
    return int(first.split("=")[1]), rest


def test_codex_with_a_wrong_token_fails_with_the_proxys_401(lab, client, token):
    wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
    lab.ssh(SERVER, "truncate -s 0 %s" % LOG)
    rc, words = codex_without_the_token(lab, "printf 'OLLAMA_REMOTE_TOKEN=%s\\n' > .codex/.env" % wrong)
    assert rc != 0, words[-2000:]
    assert "401" in words, words[-2000:]
    assert "Hello from tiny" not in words
    assert '"POST /v1/responses" 401' in lab.ssh(SERVER, "cat %s" % LOG)
    assert lab.ssh(CLIENT, "stat -c '%a' .codex/.env").strip() == "600"


def test_codex_without_a_token_says_so_and_sends_nothing(lab, client, token):
    """With no token at all Codex refuses before any request (the proxy would answer 401)."""
    lab.ssh(SERVER, "truncate -s 0 %s" % LOG)
    rc, words = codex_without_the_token(lab, "true")
    assert rc != 0 and "Missing environment variable: `OLLAMA_REMOTE_TOKEN`" in words, words[-2000:]
    assert "/v1/responses" not in lab.ssh(SERVER, "cat %s" % LOG)


def test_tokens_appear_in_no_output_and_no_world_readable_file(lab, server, client, token):
    assert token not in server.output and token not in client.output
    for host in (SERVER, CLIENT):
        found = lab.ssh(host, "setpriv --reuid=nobody --regid=nogroup --clear-groups grep -rlsF -- '%s' /etc /var/log "
                              "/root /home /tmp /opt; true" % token)
        assert found.strip() == "", (host, found)
    assert lab.ssh(SERVER, "stat -c '%%a %%U' %s" % CONF).split() == ["600", "root"]
    assert lab.ssh(SERVER, "stat -c '%a' /etc/ollama-proxy/tls/ca.key /etc/ollama-proxy/tls/server.key").split() == [
        "600", "600"]


def test_second_run_changes_nothing(lab, server, client, token):
    if server.changed() != {SERVER: 0}:  # the fixture converged a bare host (after test_site.py it is a re-run)
        server = lab.playbook("gpu_servers.yml", limit=SERVER)
    assert server.rc == 0 and server.changed() == {SERVER: 0}, server.output[-3000:]
    run = lab.playbook("codex.yml", limit=CLIENT, extra_vars=remote_vars(lab, token))
    assert run.rc == 0 and run.changed() == {CLIENT: 0}, run.output[-3000:]


def test_bad_tokens_are_refused_before_anything_changes(lab, client, token):
    before = lab.ssh(SERVER, "sha256sum %s" % CONF)
    secret = "short-" + secrets.token_hex(4)
    bad = [{"name": "team a", "token": secret}, {"name": "ci", "token": token}]
    run = lab.playbook("gpu_servers.yml", limit=SERVER, extra_vars={"ollama_proxy_tokens": bad}, args=["-v"])
    assert run.rc != 0
    assert "The proxy cannot be set up" in run.output
    assert "'team a'" in run.output or '"team a"' in run.output
    assert "the tokens of team a are not 24 to 200 characters" in run.output
    assert secret not in run.output and token not in run.output
    assert lab.ssh(SERVER, "sha256sum %s" % CONF) == before
    assert curl(lab, "/api/version", token=token)[0] == "200"


def test_exposed_server_is_refused(lab, client, token):
    run = lab.playbook("gpu_servers.yml", limit=SERVER, extra_vars={"ollama_server_host": "0.0.0.0"})
    assert run.rc != 0 and "must listen on loopback only" in run.output, run.output[-3000:]
    assert "0.0.0.0:11434" not in lab.ssh(SERVER, "ss -Htln")  # refused before the server role ran


def test_a_site_that_cannot_be_written_leaves_the_working_one(lab, client, token):
    """A full disk where the site lives (a small tmpfs over nginx's conf.d, filled, holding the working site) while a
    new token is added: the write fails, the working site stays as it was and nginx keeps serving it, and the role
    says the site could not be written. Before the fix the role's rescue removed the working site (it took the
    failed write for a site that was new) and said nginx had refused the configuration."""
    conf_d = str(Path(CONF).parent)
    before = lab.ssh(SERVER, "sha256sum %s" % CONF)
    lab.ssh(SERVER, "cp -a %s /tmp/conf.d.saved && mount -t tmpfs -o size=64k,mode=0755 tmpfs %s && cp -a"
                    " /tmp/conf.d.saved/. %s/ && (dd if=/dev/zero of=%s/fill bs=4k 2>/dev/null || true)"
            % (conf_d, conf_d, conf_d, conf_d))
    try:
        more = [{"name": "workstations", "token": token}, {"name": "ci", "token": secrets.token_urlsafe(32)}]
        run = lab.playbook(PROXY_ONLY, limit=SERVER, extra_vars={"ollama_proxy_tokens": more})
        assert run.rc != 0, run.output[-3000:]
        assert lab.ssh(SERVER, "sha256sum %s" % CONF, check=False) == before
        assert "The proxy's site could not be written to %s" % CONF in run.output, run.output[-3000:]
        assert "nginx refused" not in run.output
        assert lab.ssh(SERVER, "ls %s" % conf_d).split() == ["fill", Path(CONF).name]  # no backup left behind
        assert curl(lab, "/api/version", token=token)[0] == "200"
    finally:
        lab.ssh(SERVER, "umount %s && rm -rf /tmp/conf.d.saved" % conf_d)
    assert lab.ssh(SERVER, "sha256sum %s" % CONF) == before
    run = lab.playbook(PROXY_ONLY, limit=SERVER)
    assert run.rc == 0 and run.changed() == {SERVER: 0}, run.output[-3000:]


def test_provided_certificate_and_a_new_token(lab, client, token, tmp_path):
    """A certificate from the site's own CA replaces the generated one; a second holder (admin) gets access and
    manages models from the controller with the modules; then back to the generated certificate."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        ip = lab.ips[SERVER]
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", d / "ca.key", "-out", d / "ca.crt", "-days", "2", "-subj", "/CN=Site CA",
                        "-addext", "basicConstraints=critical,CA:TRUE"], check=True, capture_output=True)
        subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", d / "srv.key", "-out", d / "srv.csr", "-subj", "/CN=%s" % ip],
                       check=True, capture_output=True)
        (d / "ext").write_text("subjectAltName=IP:%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n" % ip)
        subprocess.run(["openssl", "x509", "-req", "-in", d / "srv.csr", "-CA", d / "ca.crt", "-CAkey", d / "ca.key",
                        "-CAcreateserial", "-days", "2", "-extfile", d / "ext", "-out", d / "srv.crt"],
                       check=True, capture_output=True)
        site_ca = (d / "ca.crt").read_text()
        ci_token = secrets.token_urlsafe(32)
        provided = {"ollama_proxy_tls_cert": (d / "srv.crt").read_text(), "ollama_proxy_tls_key": (d / "srv.key").read_text(),
                    "ollama_proxy_tls_ca": site_ca,
                    "ollama_proxy_tokens": [{"name": "workstations", "token": token},
                                            {"name": "ci", "token": ci_token, "scope": "admin"}]}
    try:
        run = lab.playbook(PROXY_ONLY, limit=SERVER, extra_vars=provided, args=["-v"])
        assert run.rc == 0, run.output[-3000:]
        assert ci_token not in run.output and "PRIVATE KEY" not in run.output
        with_site_ca = remote_vars(lab, token, codex_remote_ca=site_ca, codex_remote_ca_host="")
        run = lab.playbook("codex.yml", limit=CLIENT, extra_vars=with_site_ca)
        assert run.rc == 0, run.output[-3000:]
        issuer = lab.ssh(CLIENT, "echo | openssl s_client -connect %s:%d 2>/dev/null | openssl x509 -noout -issuer"
                         % (lab.ips[SERVER], PORT))
        assert "Site CA" in issuer
        assert curl(lab, "/api/version", token=token)[0] == "200"
        # the admin token may manage models: a delete of a model that is not there reaches the server (404)
        assert curl(lab, "/api/delete", token=ci_token, method="DELETE", data={"model": "nothing:here"})[0] == "404"
        doctor = json.loads(lab.ssh(CLIENT, "codex doctor --json", check=False))["checks"]
        assert doctor["network.provider_reachability"]["status"] == "ok", doctor["network.provider_reachability"]
        # the modules manage the server from the controller through the proxy (TLS checked with the site CA, the
        # token in the header): the admin token pulls and removes; the use token is refused in the proxy's words
        (tmp_path / "ca.pem").write_text(site_ca)
        (tmp_path / "play.yml").write_text(CONTROLLER_PLAY)
        model = "%s/lab/tiny:1b" % lab.site["registry"]
        common = {"proxy_url": "https://%s:%d" % (lab.ips[SERVER], PORT), "proxy_ca": str(tmp_path / "ca.pem"),
                  "model": model}
        run = run_playbook(tmp_path / "play.yml", extra_vars=dict(common, proxy_token=ci_token, wanted="present"))
        assert run.rc == 0 and run.changed() == {"localhost": 1}, run.output[-3000:]
        assert model in [m["name"] for m in lab.api(SERVER, "/api/tags")["models"]]
        run = run_playbook(tmp_path / "play.yml", extra_vars=dict(common, proxy_token=token, wanted="absent"))
        assert run.rc != 0 and "this token may use models but not manage them" in run.output, run.output[-3000:]
        assert model in [m["name"] for m in lab.api(SERVER, "/api/tags")["models"]]
        run = run_playbook(tmp_path / "play.yml", extra_vars=dict(common, proxy_token=ci_token, wanted="absent"))
        assert run.rc == 0 and run.changed() == {"localhost": 1}, run.output[-3000:]
        assert model not in [m["name"] for m in lab.api(SERVER, "/api/tags")["models"]]
        assert ci_token not in run.output
    finally:
        assert lab.playbook(PROXY_ONLY, limit=SERVER).rc == 0
        assert lab.playbook("codex.yml", limit=CLIENT, extra_vars=remote_vars(lab, token)).rc == 0
    assert curl(lab, "/api/delete", token=ci_token, method="DELETE", data={"model": "nothing:here"})[0] == "401"
