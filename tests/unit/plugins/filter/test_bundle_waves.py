"""The bundle_waves filter: the plan the models role follows to spread a bundle over a site's LAN in waves."""
import math

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.llmops.ollama.plugins.filter.bundle_waves import bundle_waves


def hosts(n):
    return ["h%d" % i for i in range(n)]


def by_wave(plan):
    waves = {}
    for host, entry in plan["hosts"].items():
        waves.setdefault(entry["wave"], []).append(host)
    return [waves[k] for k in sorted(waves)]


def test_eight_hosts_the_sources_double_each_wave():
    plan = bundle_waves(hosts(8))
    assert by_wave(plan) == [["h0"], ["h1"], ["h2", "h3"], ["h4", "h5", "h6", "h7"]]
    sources = dict((h, e["source"]) for h, e in plan["hosts"].items())
    # host i of wave k fetches from host i - 2**(k-1); the first from the seed
    assert sources == {"h0": None, "h1": "h0", "h2": "h0", "h3": "h1",
                       "h4": "h0", "h5": "h1", "h6": "h2", "h7": "h3"}
    assert dict((h, e["serves"]) for h, e in plan["hosts"].items()) == {
        "h0": 3, "h1": 2, "h2": 1, "h3": 1, "h4": 0, "h5": 0, "h6": 0, "h7": 0}
    assert plan["waves"] == 4 and plan["seed_copies"] == 1


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 100, 1000, 10000])
def test_n_hosts_take_one_plus_log2_waves_and_no_host_sends_more(n):
    plan = bundle_waves(hosts(n))
    assert plan["waves"] == 1 + math.ceil(math.log2(n))
    assert len(plan["hosts"]) == n
    assert max(e["serves"] for e in plan["hosts"].values()) == math.ceil(math.log2(n))
    for host, entry in plan["hosts"].items():
        source = entry["source"]
        if source is None:
            assert entry["wave"] == 0
        else:  # a source has the blobs before the wave it serves in, and serves one host per wave
            assert plan["hosts"][source]["wave"] < entry["wave"]
    per_wave = {}
    for entry in plan["hosts"].values():
        if entry["source"]:
            key = (entry["source"], entry["wave"])
            per_wave[key] = per_wave.get(key, 0) + 1
    assert set(per_wave.values()) <= {1}


# hosts having the blobs after each wave, with a cap of 2: 1, 2, 4, 7, 12, 20, 33, 54, 88, 143 (each new count is the
# sum of the two before it plus one); with 3: 1, 2, 4, 8, 15, 28, 52, 96, 177; with 1: one more per wave
@pytest.mark.parametrize("cap, waves", [(1, 100), (2, 10), (3, 9), (0, 8)])
def test_a_cap_on_copies_holds_and_costs_waves(cap, waves):
    plan = bundle_waves(hosts(100), max_copies=cap)
    assert max(e["serves"] for e in plan["hosts"].values()) == (cap or 7)
    assert plan["waves"] == waves


def test_10000_hosts_with_a_cap_of_3():
    plan = bundle_waves(hosts(10000), max_copies=3)
    assert max(e["serves"] for e in plan["hosts"].values()) == 3
    assert plan["waves"] == 16


def test_groups_are_planned_apart_in_the_same_waves():
    plan = bundle_waves({"a": "m1", "b": "m2", "c": "m1", "d": "", "e": "m1", "f": "m2", "g": None})
    assert list(plan["hosts"]) == ["a", "b", "c", "e", "f"]  # d and g have nothing to fetch
    assert plan["hosts"]["a"]["source"] is None and plan["hosts"]["b"]["source"] is None
    assert plan["hosts"]["c"] == {"wave": 1, "source": "a", "serves": 0}
    assert plan["hosts"]["e"] == {"wave": 2, "source": "a", "serves": 0}
    assert plan["hosts"]["f"] == {"wave": 1, "source": "b", "serves": 0}
    assert plan["waves"] == 3 and plan["seed_copies"] == 2


def test_nothing_to_fetch_is_no_wave():
    assert bundle_waves({"a": "", "b": ""}) == {"waves": 0, "hosts": {}, "seed_copies": 0}
    assert bundle_waves([]) == {"waves": 0, "hosts": {}, "seed_copies": 0}


@pytest.mark.parametrize("value, args, message", [
    ("h1", (), "expected a list of host names or a mapping"),
    (["a", "a"], (), "host a is listed twice"),
    (["a", 3], (), "3 is not a host name"),
    (["a"], (-1,), "max_copies must be 0 (no cap) or more, got -1"),
    (["a"], ("two",), "max_copies must be a whole number"),
])
def test_bad_input_says_what_is_wrong(value, args, message):
    with pytest.raises(AnsibleFilterError) as exc:
        bundle_waves(value, *args)
    assert message in str(exc.value)
