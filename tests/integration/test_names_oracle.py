"""_names.py against Ollama itself: a few hundred names parsed by Ollama's own Go packages (types/model and
internal/modelref, built by tests/lab/names_oracle.py from the Go module the lab's server is built from) must parse
to the same parts here, or be refused by both."""
import pytest

from ansible_collections.llmops.ollama.plugins.module_utils._names import (
    InvalidModelName,
    parse_listed_name,
    parse_model_name,
)
from tests.lab import names_oracle

ANSWERS = names_oracle.expected()


def parts(name):
    return dict(host=name.host, namespace=name.namespace, model=name.model, tag=name.tag, short=name.short)


def ours(parse, given):
    try:
        return True, parse(given)
    except InvalidModelName as exc:
        assert "invalid model name" in str(exc), exc
        return False, None


def theirs(answer):
    return {k: answer.get(k) for k in ("host", "namespace", "model", "tag", "short")}


def test_enough_names_were_compared():
    assert len(ANSWERS) >= 300
    # both kinds are there, with the cases the review found wrong among them
    assert sum(a["pull"]["valid"] for a in ANSWERS) > 100 and sum(not a["pull"]["valid"] for a in ANSWERS) > 100
    by_input = {a["input"]: a for a in ANSWERS}
    assert by_input["qwen3:local"]["pull"]["tag"] == "latest"
    assert by_input["gpt-oss:20b:cloud"]["pull"]["tag"] == "20b-cloud"
    assert by_input["ftp://h/ns/m"]["pull"]["valid"] and not by_input["http://model"]["pull"]["valid"]


@pytest.mark.parametrize("answer", ANSWERS, ids=lambda a: repr(a["input"])[1:-1][:60])
def test_pull_and_delete_parse_as_ollama_does(answer):
    ok, name = ours(parse_model_name, answer["input"])
    assert ok == answer["pull"]["valid"], answer
    if ok:
        assert parts(name) == theirs(answer["pull"]), answer


@pytest.mark.parametrize("answer", ANSWERS, ids=lambda a: repr(a["input"])[1:-1][:60])
def test_listed_names_parse_as_ollama_does(answer):
    ok, name = ours(parse_listed_name, answer["input"])
    assert ok == answer["plain"]["valid"], answer
    if ok:
        assert parts(name) == theirs(answer["plain"]), answer
        assert (name.scheme or "https") == answer["plain"]["scheme"], answer
