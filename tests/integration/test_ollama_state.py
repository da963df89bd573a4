"""llmops.ollama.ollama_state against real files, a real `ollama serve` and the lab registry (no mocks): what it
says differs is exactly what the roles' steps would change. The module runs in-process (tests/lab/module_run.py),
in check mode too, where it must say the same (it only reads). The server's models are compared with what
ollama_model's check mode says it would do, model list by model list: the look and the step must agree, or a role
would skip a pull it needs or run one it does not.
"""
import hashlib
import json
import os
import subprocess
import urllib.request

import pytest

from ansible_collections.llmops.ollama.plugins.modules import ollama_model, ollama_state
from tests.lab import models
from tests.lab.module_run import assert_clear_failure, run_module
from tests.lab.net import free_port
from tests.lab.ollama_server import OllamaServer
from tests.conftest import lab_setup


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


def look(parts, check=False, **args):
    code, result = run_module(ollama_state, dict(args, parts=parts, _ansible_check_mode=check))
    assert code == 0, result
    assert result["changed"] is False and result["converged"] == (not result["drift"]), result
    return result


def both_modes(parts, **args):
    """The drift, which must be the same in check mode."""
    real, check = look(parts, **args), look(parts, check=True, **args)
    assert real["drift"] == check["drift"], (real, check)
    return real["drift"]


def test_files_links_and_modes(tmp_path):
    conf = tmp_path / "app.conf"
    conf.write_text("a = 1\nTOKEN=s3cret\n")
    os.chmod(conf, 0o640)
    link = tmp_path / "current"
    link.symlink_to(tmp_path / "v1")
    want = {"config": {"paths": [
        {"path": str(conf), "sha256": sha("a = 1\nTOKEN=s3cret\n"), "mode": "0640", "owner": "root", "group": "~"},
        {"path": str(link), "type": "link", "target": str(tmp_path / "v1")},
        {"path": str(tmp_path / "gone"), "type": "absent"},
        {"path": str(tmp_path), "type": "directory"}]},
        "token": {"paths": [{"path": str(conf), "lines": [{"prefix": "TOKEN=", "sha256": sha("TOKEN=s3cret")}]}]}}
    assert both_modes(want) == {}

    conf.write_text("a = 2\nTOKEN=wrong\n")
    os.chmod(conf, 0o644)
    link.unlink()
    link.symlink_to("/bin/true")
    (tmp_path / "gone").write_text("")
    drift = both_modes(want)
    assert drift == {
        "config": ["%s: mode is 0644, not 0640" % conf, "%s: its content differs" % conf,
                   "%s: points to /bin/true, not %s" % (link, tmp_path / "v1"),
                   "%s: it is there (a file) and should not be" % (tmp_path / "gone")],
        "token": ["%s: its TOKEN= line differs" % conf]}, drift
    # a file that differs in content only is found by its sha256, whatever its size and time
    assert look(want)["found"]["paths"][str(conf)]["mode"] == "0644"


def _certificate(folder, days):
    """A self-signed certificate valid for `days` days, made with openssl as the proxy role makes its own."""
    cert, key = folder / ("cert-%d.pem" % days), folder / ("key-%d.pem" % days)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", str(days), "-subj", "/CN=lab"], check=True, capture_output=True)
    return cert


def test_a_certificate_inside_its_renewal_window_differs_whatever_else_is_given(tmp_path):
    """The proxy's generated certificate is declared by its validity alone (its content is new at each renewal):
    one that expires within the window differs, with no sha256 or lines beside it. Before the fix the validity was
    read only when sha256 or lines were also given, and a certificate about to expire read as converged."""
    cert = _certificate(tmp_path, 10)
    week, month = 7 * 86400, 30 * 86400
    assert both_modes({"tls": {"paths": [{"path": str(cert), "cert_valid_for": week}]}}) == {}
    drift = both_modes({"tls": {"paths": [{"path": str(cert), "cert_valid_for": month, "mode": "0600"}]}})
    assert drift == {"tls": ["%s: mode is 0644, not 0600" % cert,
                             "%s: expires within %d s, or is not a certificate" % (cert, month)]}, drift
    # a file that is no certificate at all differs too
    junk = tmp_path / "junk.crt"
    junk.write_text("not a certificate\n")
    assert both_modes({"tls": {"paths": [{"path": str(junk), "cert_valid_for": week}]}}) == {
        "tls": ["%s: expires within %d s, or is not a certificate" % (junk, week)]}


def test_a_missing_file_a_missing_user_and_a_unit_that_is_not_there(tmp_path):
    drift = both_modes({"p": {"paths": [{"path": str(tmp_path / "none"), "sha256": sha("")},
                                        {"path": "~no-such-user-here/.codex", "type": "directory"}],
                              "users": [{"name": "no-such-user-here"}], "groups": ["no-such-group-here"],
                              "units": [{"name": "no-such-unit-here.service", "active": True}]}})
    paths, unit, users = drift["p"][:2], drift["p"][2], drift["p"][3:]
    assert paths == ["%s: missing, not a file" % (tmp_path / "none"),
                     "~no-such-user-here/.codex: the user no-such-user-here does not exist"], drift
    # not loaded where systemd runs; where it does not (a container), cannot be read, in one line
    assert unit.startswith("unit no-such-unit-here.service: ") and "\n" not in unit, drift
    assert users == ["user no-such-user-here: missing", "group no-such-group-here: missing"], drift


@pytest.fixture(scope="module")
def server(registry):
    """A server of this test's own (the session's is shared), with one model pulled."""
    with lab_setup():
        srv = OllamaServer().start()
    name = "%s/state/moving:latest" % registry.address
    models.push_model(registry.url, "state/moving", "latest", 1, 1 << 16)
    code, result = run_module(ollama_model, dict(base_url=srv.url, name=[name], insecure=True))
    assert code == 0 and result["changed"], result
    yield srv, name
    srv.cleanup()


def model_step_would_change(srv, wanted, purge=False):
    code, result = run_module(ollama_model, dict(base_url=srv.url, models=wanted, purge=purge, insecure=True,
                                                 allow_purge_all=True, _ansible_check_mode=True))
    assert code == 0, result
    return result["changed"]


def test_models_agree_with_ollama_models_check_mode(server, registry):
    srv, name = server
    other = "%s/lab/tiny:1b" % registry.address
    cases = [([name], False), ([{"name": name, "state": "latest"}], False), ([name.upper()], False),
             ([name.replace(":latest", "")], False), ([other], False), ([{"name": name, "state": "absent"}], False),
             ([{"name": other, "state": "absent"}], False), ([other], True), ([name], True), ([], True)]
    for wanted, purge in cases:
        part = {"models": {"server": {"url": srv.url, "models": wanted, "purge": purge, "insecure": True}}}
        drift = both_modes(part)
        assert ("models" in drift) == model_step_would_change(srv, wanted, purge), (wanted, purge, drift)

    # the tag moves in the registry: latest differs, present does not
    models.push_model(registry.url, "state/moving", "latest", 2, 1 << 16)
    latest = {"models": {"server": {"url": srv.url, "models": [{"name": name, "state": "latest"}], "insecure": True}}}
    assert both_modes(latest) == {"models": ["model %s: the registry has a newer build" % name]}
    assert model_step_would_change(srv, [{"name": name, "state": "latest"}])
    assert both_modes({"models": {"server": {"url": srv.url, "models": [name]}}}) == {}


def test_the_server_version_and_a_server_that_does_not_answer(server):
    srv, _name = server
    assert both_modes({"service": {"server": {"url": srv.url, "version": srv.version}}}) == {}
    assert both_modes({"service": {"server": {"url": srv.url, "version": "0.0.1"}}}) == {
        "service": ["server %s: answers version %s, not 0.0.1" % (srv.url, srv.version)]}
    closed = "http://127.0.0.1:%d" % free_port()
    drift = both_modes({"service": {"server": {"url": closed, "version": "0.0.1"}}})
    assert drift["service"][0].startswith("server %s: could not reach the Ollama server" % closed), drift


def test_roles_are_compared_in_one_run_and_facts_come_with_it(server, tmp_path):
    srv, name = server
    result = look({}, roles={"server": {"service": {"server": {"url": srv.url, "version": "0.0.1"}}},
                             "models": {"models": {"server": {"url": srv.url, "models": [name]}}}}, facts=True)
    assert result["roles"]["models"] == {"drift": {}, "converged": True}
    assert list(result["roles"]["server"]["drift"]) == ["service"] and not result["roles"]["server"]["converged"]
    assert result["found"]["server"][srv.url]["models"] == [name]
    facts = result["ansible_facts"]
    assert facts["ansible_service_mgr"] and facts["ansible_architecture"] and facts["ansible_distribution"]


def test_each_models_show_answer_and_the_users_come_back_for_the_controller(server):
    """What the codex role's catalog is made from (the server's /api/show of each model, as the real server answers
    it) and the users' entries, read in the same one run."""
    srv, name = server
    result = look({"catalog": {"server": {"url": srv.url, "show": True}},
                   "accounts": {"users": [{"name": "root"}, {"name": "no-such-user-here"}]}})
    assert result["drift"] == {"accounts": ["user no-such-user-here: missing"]}, result["drift"]
    show = result["found"]["server"][srv.url]["show"]
    assert list(show) == [name], show
    with urllib.request.urlopen(urllib.request.Request(srv.url + "/api/show", data=json.dumps(
            {"model": name}).encode(), method="POST"), timeout=30) as answer:
        real = json.load(answer)
    assert show[name]["capabilities"] == real["capabilities"] and show[name]["details"] == real["details"]
    assert set(show[name]) == {"capabilities", "details", "parameters", "model_info"}
    assert "completion" in show[name]["capabilities"] and show[name]["details"]["format"] == "gguf", show
    assert set(show[name]["model_info"]) <= {"general.architecture", "%s.context_length"
                                             % show[name]["model_info"].get("general.architecture")}
    users = result["found"]["users"]
    assert users["no-such-user-here"] is None
    assert users["root"]["home"] == "/root" and users["root"]["gid"] == 0 and users["root"]["group"] == "root"
    # a server that does not answer: the part differs, and says why
    closed = "http://127.0.0.1:%d" % free_port()
    drift = both_modes({"catalog": {"server": {"url": closed, "show": True}}})
    assert drift["catalog"][0].startswith("server %s: could not reach the Ollama server" % closed), drift


def test_a_part_that_differs_on_every_run_says_why_beside_what_else_differs(tmp_path):
    reason = "a bundle's models are checked on every run"
    drift = both_modes({"models": {"always": reason}, "cli": {"always": reason, "paths": [{"path": str(tmp_path / "x")}]},
                        "none": {"always": ""}})
    assert drift == {"models": [reason], "cli": [reason, "%s: missing, not a file" % (tmp_path / "x")]}, drift


@pytest.mark.parametrize("parts, says", [
    ({"p": []}, "parts: p must be a dictionary of paths, units"),
    ({"p": {"files": []}}, "parts: p has unknown keys files; the keys are paths"),
    ({"p": {"paths": ["/etc/x"]}}, "parts: p: paths must be a list of dictionaries, each with its path"),
    ({"p": {"paths": [{"path": "/x", "type": "socket"}]}}, "and type is one of file, directory, link, absent"),
    ({"p": {"paths": [{"path": "/x", "mode": "rw"}]}}, "mode rw is not octal"),
    # each of these raised a Python error out of the module before it checked them
    ({"p": {"server": "http://127.0.0.1:11434"}}, "parts: p: server must be a dictionary of url, version"),
    ({"p": {"server": {"timeout": "soon"}}}, "parts: p: server timeout soon is not a number of seconds"),
    ({"p": {"server": {"adress": "x"}}}, "parts: p: server has unknown keys adress"),
    ({"p": {"server": {"models": "llama3.2"}}}, "parts: p: server models must be a list"),
    ({"p": {"paths": [{"path": "/x", "lines": [{"sha256": "0" * 64}]}]}},
     "parts: p: paths: /x: lines must be a list of dictionaries, each with its prefix and sha256"),
    ({"p": {"paths": [{"path": "/x", "lines": "TOKEN="}]}}, "lines must be a list of dictionaries"),
    ({"p": {"paths": [{"path": "/x", "cert_valid_for": "a week"}]}}, "cert_valid_for a week is not a number of seconds"),
    ({"p": {"paths": [{"path": "/x", "sha256": ["0" * 64]}]}}, "parts: p: paths: /x: sha256 must be a string, not list"),
    ({"p": {"groups": "ollama"}}, "parts: p: groups must be a list of names"),
    ({"p": {"read": [None]}}, "parts: p: read must be a list of names"),
    ({"p": {"gpu": ["nvidia"]}}, "parts: p: gpu must be a dictionary"),
    ({"p": {"always": True}}, "parts: p: always must be a sentence"),
])
def test_a_wanted_state_that_is_not_one_is_a_clear_failure(parts, says):
    code, result = run_module(ollama_state, dict(parts=parts))
    assert_clear_failure(code, result)
    assert says in result["msg"], result["msg"]
    code, result = run_module(ollama_state, dict(roles={"server": parts}))
    assert_clear_failure(code, result)
    assert result["msg"].startswith("roles: server: ") and says in result["msg"], result["msg"]
