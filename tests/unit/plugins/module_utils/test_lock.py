"""The model lock's reading and applying (module_utils/_lock.py): names matched as Ollama matches them, digests in
either form, and a clear InvalidLock for each kind of bad lock."""
import pytest

from ansible_collections.llmops.ollama.plugins.module_utils._lock import (
    InvalidLock,
    apply_lock,
    drift,
    moved_message,
    pins,
    read_lock,
)

D1 = "a" * 64
D2 = "b" * 64


def test_a_lock_matches_names_as_ollama_does_and_reads_both_digest_forms():
    items = ["llama3.2", {"name": "Team/Coder:7B", "state": "latest"}, "other:1b"]
    out = apply_lock(items, {"llama3.2:latest": "sha256:" + D1.upper(), "team/coder:7b": D2})
    assert out == [{"name": "llama3.2", "digest": D1}, {"name": "Team/Coder:7B", "state": "latest", "digest": D2},
                   "other:1b"]
    assert pins(out) == {"registry.ollama.ai/library/llama3.2/latest": D1,
                         "registry.ollama.ai/team/coder/7b": D2}


def test_a_later_lock_wins_and_unlisted_entries_are_left_out_or_refused():
    assert apply_lock(["m"], [{"m": D1, "x": D1}, {"m:latest": D2}]) == [{"name": "m", "digest": D2}]
    with pytest.raises(InvalidLock, match=r"pins 'x', which is not among the models listed"):
        apply_lock(["m"], {"m": D1, "x": D1}, unlisted="fail")


@pytest.mark.parametrize("lock, message", [
    (["m"], "is a list, not a mapping of model names to digests"),
    ({"m": "sha256:1234"}, r"the digest \"sha256:1234\" is not a manifest digest"),
    ({"m": None}, "the digest null is not a manifest digest"),
    ({"bad name!": D1}, "invalid model name"),
    ({"m": D1, "M:latest": D2}, "names the same model as the entry 'm' with another digest"),
])
def test_bad_locks_are_refused_saying_what_is_wrong(lock, message):
    with pytest.raises(InvalidLock, match=message):
        read_lock(lock)


def test_item_digests_conflicts_and_absent():
    with pytest.raises(InvalidLock, match="is pinned to %s, and the lock pins it to %s" % (D1, D2)):
        apply_lock([{"name": "m", "digest": D1}], {"m": D2})
    with pytest.raises(InvalidLock, match="is listed as absent and pinned"):
        pins([{"name": "m", "state": "absent", "digest": D1}])
    with pytest.raises(InvalidLock, match="which the models list as absent"):
        apply_lock([{"name": "m", "state": "absent"}], {"m": D1}, unlisted="fail")
    assert apply_lock([{"name": "m", "state": "absent"}], {"m": D1}) == [{"name": "m", "state": "absent"}]


def test_drift_names_the_pinned_models_not_at_their_digest():
    server = [{"name": "m:latest", "digest": D2}, {"name": "n:latest", "digest": D1}]
    items = [{"name": "m", "digest": D1}, {"name": "n", "digest": D1}, {"name": "gone", "digest": D1}, "free"]
    assert drift(items, server) == [{"name": "gone", "model": "gone:latest", "digest": None, "locked": D1},
                                    {"name": "m", "model": "m:latest", "digest": D2, "locked": D1}]


def test_the_moved_message_says_to_what_and_what_to_do():
    text = moved_message("m", D1, D2, "the registry no longer serves sha256:%s" % D1)
    assert text.startswith("'m' is locked to sha256:%s, but its tag moved: the registry has sha256:%s" % (D1, D2))
    assert "playbooks/lock.yml" in text
    assert "no longer has the tag" in moved_message("m", D1, None, "x")
