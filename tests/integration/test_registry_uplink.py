"""The lab registry front's uplink (tests/lab/registry.py): one budget of blob bytes per second for all its clients
together, as a site's uplink, which bench/rollout.py measures rollouts under. Two clients fetching at once share it:
together they take as long as one fetching both blobs, and one alone gets all of it."""
import concurrent.futures
import json
import time
import urllib.request

from tests.lab import models
from tests.lab.registry import set_uplink

MB = 1000 * 1000
SIZE = 3 * MB
MBPS = 16  # 2 MB/s: 1.5 s per blob alone, 3 s for two at once


def fetch(url):
    started = time.time()
    with urllib.request.urlopen(url, timeout=60) as resp:
        size = len(resp.read())
    return size, time.time() - started


def test_two_clients_share_the_uplink(registry):
    urls = []
    for name in ("uplink/a", "uplink/b"):
        manifest, blobs = models.build(name + ":latest", 1, SIZE)
        models.push(registry.url, name, "latest", manifest, blobs)
        layer = json.loads(manifest)["layers"][0]["digest"]
        urls.append("%s/v2/%s/blobs/%s" % (registry.url, name, layer))
    set_uplink(registry.url, MBPS)
    try:
        size, alone = fetch(urls[0])
        assert size >= SIZE
        assert 0.85 * SIZE / (MBPS * MB / 8) <= alone <= 2 * SIZE / (MBPS * MB / 8), alone
        started = time.time()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            results = list(pool.map(fetch, urls))
        both = time.time() - started
        assert [s for s, _t in results] == [size, size]
        # the two together get the budget of one: about twice the time one takes alone, not the same time
        assert both >= 0.85 * 2 * SIZE / (MBPS * MB / 8), (alone, both)
        # and neither gets it alone first: even the first to end took well over one blob's time at the full budget
        assert min(t for _s, t in results) >= 1.3 * SIZE / (MBPS * MB / 8), (alone, results)
    finally:
        set_uplink(registry.url, 0)
    _size, free = fetch(urls[0])
    assert free < 0.85 * SIZE / (MBPS * MB / 8), (free, alone)  # lifted: faster than the budget allows
