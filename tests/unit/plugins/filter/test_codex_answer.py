"""The codex_answer filter on real outputs of `codex exec` (tests/unit/fixtures/codex: the Codex CLI 0.171.0 against
a real Ollama 0.34.4), and on the exit codes of timeout(1) and a missing binary."""
from pathlib import Path

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.llmops.ollama.plugins.filter.codex_answer import codex_answer

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "codex"


def real(name, rc):
    stdout = FIXTURES / (name + ".stdout")
    return {"rc": rc, "stdout": stdout.read_text() if stdout.exists() else "",
            "stderr": (FIXTURES / (name + ".stderr")).read_text()}


def test_an_answer_is_the_final_message():
    assert codex_answer(real("answer", 0)) == {"ok": True, "answer": "Hello from tiny!", "reason": ""}


@pytest.mark.parametrize("name, starts", [
    ("model-missing", "model missing:"),
    ("server-down", "server down:"),
    ("no-tools", "template without tools:"),
])
def test_failures_say_why(name, starts):
    outcome = codex_answer(real(name, 1))
    assert not outcome["ok"] and outcome["answer"] == ""
    assert outcome["reason"].startswith(starts), outcome["reason"]


def test_a_missing_token_is_named():
    # the line Codex 0.171.0 prints when the provider's env_key is set in no environment and no ~/.codex/.env
    out = codex_answer({"rc": 1, "stdout": "", "stderr": "ERROR: Missing environment variable: `OLLAMA_REMOTE_TOKEN`.\n"})
    assert out["reason"].startswith("no token:")


def test_timeout_and_missing_binary():
    assert codex_answer({"rc": 124, "stdout": "", "stderr": ""}, timeout=90)["reason"] == \
        "timed out after 90s: the model did not answer in time"
    assert "not installed" in codex_answer({"rc": 127, "stdout": "", "stderr": "codex: not found"})["reason"]


def test_unknown_failure_keeps_codex_words():
    out = codex_answer({"rc": 1, "stdout": "", "stderr": "noise\nERROR: something new happened\n"})
    assert out == {"ok": False, "answer": "", "reason": "ERROR: something new happened"}


def test_not_a_result():
    with pytest.raises(AnsibleFilterError, match="registered result"):
        codex_answer("Hello")
