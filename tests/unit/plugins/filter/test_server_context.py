"""The server_context_dropins filter: each server instance's context drop-in for ollama_server_context_length auto,
what the look declares of it, the value read back, and the choice between the context an instance has and the largest
that fits now (roles/server/tasks/context.yml)."""
import hashlib

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.ollama.plugins.filter.server_context import server_context_dropins
from ansible_collections.llmops.ollama.plugins.filter.server_instances import server_instances
from ansible_collections.llmops.ollama.plugins.module_utils._systemd import environment

NVIDIA_2 = [dict(vendor="nvidia", index=i, uuid="GPU-%d%d%d%d-aaaa" % (i, i, i, i), name="NVIDIA L4")
            for i in range(2)]
ONE = server_instances(1, [], "127.0.0.1", 11434)
TWO = server_instances("auto", NVIDIA_2, "127.0.0.1", 11434)
ZERO = "/etc/systemd/system/ollama.service.d/40-context.conf"
FIRST = "/etc/systemd/system/ollama@1.service.d/40-context.conf"


def sha(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_one_instance_keeps_its_context_beside_the_shared_environment():
    (item,) = server_context_dropins(ONE, "qwen3-coder:30b", 65536, None, "")
    assert (item["name"], item["unit"], item["url"], item["gpus"]) == (
        "ollama", "ollama.service", "http://127.0.0.1:11434", [])
    assert item["path"] == ZERO  # sorts after 10-environment.conf (and an instance's 15-instance.conf): it wins
    # what it was sized for: Ollama's defaults for an empty OLLAMA_NUM_PARALLEL and OLLAMA_KV_CACHE_TYPE, every GPU
    assert item["sized_for"] == ("# sized for: model=qwen3-coder:30b min_context=65536 num_parallel=1 "
                                 "kv_cache_type=f16 gpus=all")
    assert item["declared"] == dict(path=ZERO, owner="root", group="root", mode="0644",
                                    lines=[dict(prefix="# sized for: ", sha256=sha(item["sized_for"]))])
    assert item["absent"] == dict(path=ZERO, type="absent")
    assert item["current"] is None and "text" not in item and "context" not in item


def test_each_instance_has_its_own_drop_in_naming_its_gpus():
    items = server_context_dropins(TWO, "gpt-oss:20b", "32768", "2", "q8_0")
    assert [i["path"] for i in items] == [ZERO, FIRST]
    assert [i["sized_for"].split(" gpus=")[1] for i in items] == ["GPU-0000-aaaa", "GPU-1111-aaaa"]
    assert items[1]["sized_for"].startswith("# sized for: model=gpt-oss:20b min_context=32768 num_parallel=2 "
                                            "kv_cache_type=q8_0 ")
    assert items[0]["declared"]["lines"][0]["sha256"] != items[1]["declared"]["lines"][0]["sha256"]


@pytest.mark.parametrize("changed", [dict(model="gpt-oss:20b"), dict(min_context=32768), dict(num_parallel=2),
                                     dict(kv_cache_type="q4_0")])
def test_a_change_of_what_it_was_sized_for_changes_the_declared_line(changed):
    base = dict(model="qwen3-coder:30b", min_context=65536, num_parallel=1, kv_cache_type="f16")
    before = server_context_dropins(ONE, **base)[0]["declared"]
    after = server_context_dropins(ONE, **dict(base, **changed))[0]["declared"]
    assert before != after


def test_ollama_reads_an_empty_or_zero_parallel_as_one():
    lines = set(server_context_dropins(ONE, "m:1b", 65536, value, "")[0]["sized_for"]
                for value in (None, "", "None", 0, "0", 1, "1"))
    assert lines == {"# sized for: model=m:1b min_context=65536 num_parallel=1 kv_cache_type=f16 gpus=all"}


def test_the_text_sets_the_chosen_context_and_names_what_it_was_sized_for():
    (item,) = server_context_dropins(ONE, "qwen3-coder:30b", 65536, 1, "f16", fits={"ollama": 90112})
    assert (item["context"], item["kept"], item["differs"]) == (90112, False, True)
    text = item["text"]
    assert text.startswith("# Managed by Ansible (llmops.ollama.server, tasks/context.yml)")
    assert "\n%s\n[Service]\n" % item["sized_for"] in text
    assert text.endswith('[Service]\nEnvironment="OLLAMA_CONTEXT_LENGTH=90112"\n')
    assert environment(text) == {"OLLAMA_CONTEXT_LENGTH": "90112"}  # as systemd reads it
    # what the look compares: the last line with the prefix
    (line,) = [t for t in text.splitlines() if t.startswith(item["declared"]["lines"][0]["prefix"])]
    assert sha(line) == item["declared"]["lines"][0]["sha256"]


def written(context, **settings):
    args = dict(dict(model="qwen3-coder:30b", min_context=65536, num_parallel=1, kv_cache_type="f16"), **settings)
    return server_context_dropins(ONE, fits={"ollama": context}, **args)[0]["text"]


@pytest.mark.parametrize("current, fits, chosen, kept, differs", [
    (None, 90112, 90112, False, True),  # no drop-in yet: the largest
    (90112, 90112, 90112, True, False),  # a re-run
    (90112, 96256, 90112, True, False),  # more fits now (another model unloaded): kept, no restart
    (90112, 88064, 88064, False, True),  # less fits now: the largest that does
    (90112, 131072, 90112, True, False),
    (32768, 90112, 90112, False, True),  # below the minimum (raised since): the largest
    (32768, 32768, 32768, False, False),  # below it, and no more fits (the module fails first): no restart either
])
def test_an_instance_keeps_its_context_while_it_still_fits(current, fits, chosen, kept, differs):
    found = {ZERO: {"type": "file", "text": written(current) if current else None}}
    (item,) = server_context_dropins(ONE, "qwen3-coder:30b", 65536, 1, "f16", found=found, fits={"ollama": fits})
    assert (item["current"], item["context"], item["kept"], item["differs"]) == (current, chosen, kept, differs)
    if kept:
        assert item["text"] == found[ZERO]["text"]  # the same file: nothing to write


def test_a_kept_context_sized_for_other_settings_keeps_its_value_with_the_new_line():
    found = {ZERO: {"text": written(65536, model="gpt-oss:20b")}}
    (item,) = server_context_dropins(ONE, "qwen3-coder:30b", 65536, 1, "f16", found=found, fits={"ollama": 70656})
    assert (item["context"], item["kept"], item["differs"]) == (65536, True, False)  # rewritten, not restarted
    assert item["text"] != found[ZERO]["text"] and item["text"] == written(65536)


@pytest.mark.parametrize("text", [None, "", "[Service]\n", '[Service]\nEnvironment="OLLAMA_CONTEXT_LENGTH=auto"\n',
                                  '[Service]\nEnvironment="OLLAMA_CONTEXT_LENGTH=0"\n',
                                  '[Unit]\nEnvironment="OLLAMA_CONTEXT_LENGTH=8192"\n'])
def test_a_drop_in_without_a_context_reads_as_none(text):
    (item,) = server_context_dropins(ONE, "m:1b", found={ZERO: {"text": text}})
    assert item["current"] is None


def test_the_last_assignment_wins_as_systemd_reads_it():
    text = '[Service]\nEnvironment="OLLAMA_CONTEXT_LENGTH=8192"\nEnvironment=OLLAMA_CONTEXT_LENGTH=16384 A=1\n'
    assert server_context_dropins(ONE, "m:1b", found={ZERO: {"text": text}})[0]["current"] == 16384


@pytest.mark.parametrize("endpoints, args, says", [
    ("ollama", dict(model="m:1b"), "give the server role's ollama_server_endpoints"),
    ([{"name": "ollama"}], dict(model="m:1b"), "give the server role's ollama_server_endpoints"),
    (ONE, dict(model="m:1b", min_context="lots"), "min_context is 'lots', not a number"),
    (ONE, dict(model="m:1b", min_context=0), "min_context is 0, not a positive number of tokens"),
    (ONE, dict(model="m:1b", num_parallel=True), "num_parallel is True, not a number"),
])
def test_bad_input_is_a_clear_failure(endpoints, args, says):
    with pytest.raises(AnsibleFilterError, match="server_context_dropins: ") as raised:
        server_context_dropins(endpoints, **args)
    assert says in str(raised.value)
