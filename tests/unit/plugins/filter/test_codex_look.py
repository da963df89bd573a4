"""The codex_look filter: what the codex role's look (ollama_state's answer, in the shape the module returns it;
tests/integration/test_ollama_state.py reads a real server for it) means for the role's steps."""
import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.llmops.ollama.plugins.filter.codex_look import codex_look, _catalog_text
from ansible_collections.llmops.ollama.plugins.filter.codex_catalog import codex_model_catalog

SERVER = "http://127.0.0.1:11434"
CATALOG = "/etc/codex/ollama-models.json"
POLICY = "/etc/codex/requirements.toml"
MARKER = "Managed by Ansible (llmops.ollama.codex)"
TOOLS = {"capabilities": ["completion", "tools"], "details": {"family": "llama"}, "parameters": "num_ctx 4096",
         "model_info": {"general.architecture": "llama", "llama.context_length": 8192}}
PLAIN = dict(TOOLS, capabilities=["completion"])


def result(shows=None, catalog_text=None, drift=None, policy_text=None, error=None, owner="root"):
    server = {"version": "0.34.4", "error": error, "models": sorted(shows or {})}
    if shows is not None:
        server["show"] = shows
    paths = {CATALOG: {"path": CATALOG, "type": "absent"} if catalog_text is None else
             {"path": CATALOG, "type": "file", "owner": owner, "group": "root", "mode": "0644", "text": catalog_text},
             POLICY: {"path": POLICY, "type": "absent" if policy_text is None else "file", "text": policy_text}}
    return {"changed": False, "drift": dict(drift or {}), "found": {
        "paths": paths, "server": {SERVER: server}, "users": {"alice": {"home": "/home/alice", "gid": 1000}}}}


def look(res, **kw):
    args = dict(server=SERVER, catalog=CATALOG, policy=POLICY, marker=MARKER,
                catalog_file={"owner": "root", "group": "root", "mode": "0644"})
    args.update(kw)
    return codex_look(res, **args)


def test_a_converged_host_has_nothing_to_do_and_the_read_only_parts_are_not_steps():
    text = _catalog_text(codex_model_catalog({"tiny:latest": TOOLS}))
    out = look(result({"tiny:latest": TOOLS}, text, drift={"accounts": ["user bob: missing"], "catalog_read": ["x"]}))
    assert out["drift"] == {} and out["looked"] and out["catalog_read"] and out["catalog_in_use"]
    assert out["catalog_text"] == text and out["catalog"]["models"][0]["context_window"] == 4096
    assert out["accounts"] == {"alice": {"home": "/home/alice", "gid": 1000}}


def test_the_catalog_is_written_when_it_differs_from_the_server_or_is_not_roots():
    assert list(look(result({"tiny:latest": TOOLS}, "{}\n"))["drift"]) == ["catalog"]
    text = _catalog_text(codex_model_catalog({"tiny:latest": TOOLS}))
    assert list(look(result({"tiny:latest": TOOLS}, text, owner="alice"))["drift"]) == ["catalog"]
    assert list(look(result({"tiny:latest": TOOLS, "new:latest": TOOLS}, text))["drift"]) == ["catalog"]


def test_a_server_without_a_model_codex_can_use_takes_the_catalog_out_of_the_files():
    out = look(result({"plain:latest": PLAIN}, "{}\n"))
    assert not out["catalog_in_use"] and out["catalog"] == {"models": []}
    assert sorted(out["drift"]) == ["catalog", "sysdir", "system", "users"]
    assert out["drift"]["system"] == ["the catalog is not in use: the files name it accordingly"]
    # and with no catalog file there, nothing to remove
    assert "catalog" not in look(result({"plain:latest": PLAIN}))["drift"]


def test_a_server_that_cannot_be_read_keeps_the_catalog_as_it_was():
    kept = look(result(None, "{\"models\": []}\n", error="could not reach the Ollama server"))
    assert not kept["catalog_read"] and kept["catalog_in_use"] and list(kept["drift"]) == ["sysdir"]
    assert kept["catalog_error"] == "could not reach the Ollama server"
    none = look(result(None, None, error="could not reach the Ollama server"))
    assert not none["catalog_in_use"] and sorted(none["drift"]) == ["sysdir", "system", "users"]


def test_with_the_catalog_off_nothing_of_it_is_read_or_written():
    out = look(result({"tiny:latest": TOOLS}, None), catalog="")
    assert out["drift"] == {} and not out["catalog_read"] and not out["catalog_in_use"]


def test_a_policy_the_role_wrote_goes_when_none_is_set_and_an_administrators_stays():
    ours = "# %s: changes here are replaced on the next run.\n" % MARKER
    text = _catalog_text(codex_model_catalog({"tiny:latest": TOOLS}))
    assert list(look(result({"tiny:latest": TOOLS}, text, policy_text=ours))["drift"]) == ["policy"]
    assert look(result({"tiny:latest": TOOLS}, text, policy_text=ours), policy_set=True)["drift"] == {}
    assert look(result({"tiny:latest": TOOLS}, text, policy_text="allowed_sandbox_modes = []\n"))["drift"] == {}


def test_a_look_that_did_not_answer_says_so_and_bad_input_is_clear():
    assert codex_look({"failed": True, "msg": "no python"}) == {"looked": False}
    with pytest.raises(AnsibleFilterError, match="registered result"):
        codex_look("drift")


def test_a_look_that_did_not_answer_with_what_was_read_instead_runs_every_part():
    read = {"parts": ["system", "users", "sysdir", "catalog_read", "accounts"], "accounts": {"bob": None},
            "answers": {"tiny:latest": TOOLS, "plain:latest": PLAIN}, "exists": False, "error": "OK (120 bytes)"}
    out = codex_look({"failed": True, "msg": "no python"}, read_instead=read)
    assert out["looked"] is False and out["accounts"] == {"bob": None}
    assert sorted(out["drift"]) == ["catalog", "policy", "sysdir", "system", "users"]
    assert all(reasons == ["the look at the host did not answer: every step runs"] for reasons in out["drift"].values())
    # the catalog is what the look's path makes of the same answers
    assert out["catalog"] == codex_model_catalog({"tiny:latest": TOOLS, "plain:latest": PLAIN})
    assert out["catalog_text"] == _catalog_text(out["catalog"])
    assert out["catalog_read"] and out["catalog_in_use"] and not out["catalog_exists"]


def test_a_server_not_read_instead_keeps_the_catalog_written_before_in_use():
    read = {"parts": ["users"], "answers": None, "exists": True, "error": "Status code was -1: refused"}
    out = codex_look({}, read_instead=read)
    assert not out["catalog_read"] and out["catalog_in_use"] and out["catalog_exists"]
    assert out["model_answers"] == {} and out["catalog_error"] == "Status code was -1: refused"
    assert not codex_look({}, read_instead=dict(read, exists=False))["catalog_in_use"]
    with pytest.raises(AnsibleFilterError, match="read_instead must be a dict with the list of the look's parts"):
        codex_look({}, read_instead={"parts": "users"})
