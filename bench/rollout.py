"""Rollout benchmark on the lab fleet: this collection against the plain alternative, in the same run, at the limit of
the site's links.

    python3 -m bench.rollout [--hosts 8] [--models 3] [--size-mb 16] [--uplink-mbps N | --lan-ratio 10]

The lab's registry front limits the blob bytes it sends to all its clients together, as a site's uplink does (one
tenth of the LAN's speed unless --uplink-mbps says otherwise; the LAN's is measured first: what one host alone takes
in from a seed on the LAN the role's way, one ollama_import of the models from the mirror on the machine). Plain: one
`command: ollama pull` task per model, each host pulling from the registry through that uplink. Ours: the models role
with the bundle source (the controller fetches each model once, through the uplink; each host gets only the blobs its
server lacks), spread on the LAN by SSH copies from the controller, by a seed serving the bundle over HTTP (here the
lab mirror), or in waves (the seed sends one copy, then each host that has the blobs serves the next ones). Measured:
bytes the registry served ("WAN", counted by the front per client), bytes each machine sent on the lab network (the
kernel's counters of each host's veth and of the bridge), wall time of the rollout and of a no-op re-run, and per-host
time of a no-op ollama_model call and of ollama_facts. Prints the figures, with what 10,000 hosts take on paper, and
writes bench/results.md. The bench uses hosts lab7.. so it never touches the hosts the tests use.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from bench.report import machine, write_section
from tests.lab import fleet, services
from tests.lab import models as lab_models
from tests.lab.__main__ import up as lab_up
from tests.lab.ansible_run import ansible_env, collections_path, run_playbook
from tests.lab.fleet import inventory_path
from tests.lab.paths import LAB_CACHE, REPO
from tests.lab.registry import set_uplink

FIRST_HOST = 7
HERE = REPO / "bench"


def stats(site):
    with urllib.request.urlopen(site["registry_url"] + "/_lab/stats") as resp:
        return json.loads(resp.read())


def wan_bytes(before, after):
    return sum(after.get(c, {}).get("blob_bytes", 0) - before.get(c, {}).get("blob_bytes", 0) for c in after)


def playbook(name, extra, forks=10):
    run = run_playbook(HERE / name, inventory_path(), extra_vars=extra, env={"ANSIBLE_FORKS": str(forks)})
    if run.rc != 0:
        raise SystemExit("%s failed:\n%s" % (name, run.output[-3000:]))
    return run


def rollout_and_noop(site, hosts, name, extra):
    """Run a rollout playbook twice: wall time, registry bytes and bytes sent per machine of the rollout, then wall
    time and registry bytes of the no-op re-run."""
    before, sent_before = stats(site), fleet.bytes_sent(hosts)
    first = playbook(name, extra)
    middle, sent_after = stats(site), fleet.bytes_sent(hosts)
    again = playbook(name, extra)
    return dict(rollout=first.seconds, wan=wan_bytes(before, middle), noop=again.seconds,
                noop_wan=wan_bytes(middle, stats(site)), noop_changed=sum(again.changed().values()),
                sent=dict((k, sent_after[k] - sent_before[k]) for k in sent_after),
                waves=len(set(re.findall(r"\(item=wave (\d+)\)", first.output))))


def lan_rate(site, host, names, size):
    """Bytes per second one host takes in from a seed on the LAN, the role's way (download, verify, upload into its
    server): one ollama_import of the models from the lab mirror, less the same call with nothing to do."""
    bundle = LAB_CACHE / "mirror" / "bench-lan"
    shutil.rmtree(str(bundle), ignore_errors=True)
    try:
        adhoc(["localhost"], "llmops.ollama.ollama_bundle",
              json.dumps({"path": str(bundle), "models": names, "insecure": True}), 1, become=False)
        index = json.loads((bundle / "index.json").read_text())
        args = json.dumps({"models": names, "index": index, "bundle_url": site["mirror_url"] + "/bench-lan"})
        adhoc([host], "llmops.ollama.ollama_model", json.dumps({"name": names, "state": "absent"}), 1)
        first = adhoc([host], "llmops.ollama.ollama_import", args, 1)
        again = adhoc([host], "llmops.ollama.ollama_import", args, 1)
        adhoc([host], "llmops.ollama.ollama_model", json.dumps({"name": names, "state": "absent"}), 1)
    finally:
        shutil.rmtree(str(bundle), ignore_errors=True)
    return size / max(first - again, 0.05)


def wave_plan(hosts, max_copies=0):
    """The models role's plan (the llmops.ollama.bundle_waves filter)."""
    sys.path.insert(0, str(collections_path()))
    from ansible_collections.llmops.ollama.plugins.filter.bundle_waves import bundle_waves

    return bundle_waves(hosts, max_copies)


def adhoc(hosts, module, args, forks, become=True):
    """Seconds for one ad-hoc module call on every host, run `forks` at a time."""
    started = time.time()
    proc = subprocess.run(["ansible", ",".join(hosts), "-i", str(inventory_path()), "-m", module, "-a", args,
                           "--forks", str(forks)] + (["-b"] if become else []), env=ansible_env(), cwd=str(REPO),
                          check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if proc.returncode != 0:
        raise SystemExit("ansible -m %s failed:\n%s" % (module, proc.stdout[-3000:]))
    return time.time() - started


GB, GBIT = 1e9, 1e9 / 8  # bytes, and bytes per second of 1 Gb/s
PAPER = dict(hosts=10000, model=20 * GB, host_link=10 * GBIT, uplink=1 * GBIT)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m bench.rollout")
    parser.add_argument("--hosts", type=int, default=8)
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--size-mb", type=int, default=16, help="size of the first model; the next ones grow by it")
    parser.add_argument("--uplink-mbps", type=float, default=0,
                        help="the site's uplink (the registry front's limit for all clients together), Mb/s; "
                             "default: the LAN's measured speed / --lan-ratio")
    parser.add_argument("--lan-ratio", type=float, default=10, help="LAN speed / uplink speed (default 10)")
    parser.add_argument("--output", default=str(HERE / "results.md"))
    args = parser.parse_args(argv)

    lab_up(FIRST_HOST - 1 + args.hosts)
    site = json.loads(services.INFO.read_text())
    hosts = ["lab%d" % i for i in range(FIRST_HOST, FIRST_HOST + args.hosts)]
    names = []
    for i in range(args.models):
        lab_models.push_model(site["registry_url"], "bench/m%d" % i, "latest", 1, (i + 1) * args.size_mb << 20)
        names.append("%s/bench/m%d:latest" % (site["registry"], i))
    model_bytes = sum((i + 1) * args.size_mb << 20 for i in range(args.models))
    extra = {"bench_hosts": ",".join(hosts), "bench_models": names}
    print("fleet: %d hosts; %d models, %.0f MB in all" % (len(hosts), len(names), model_bytes / 1e6), flush=True)

    print("installing the server on the bench hosts...", flush=True)
    run = run_playbook(REPO / "playbooks" / "servers.yml", inventory_path(), args=["--limit", ",".join(hosts)],
                       extra_vars={"ollama_models": []})
    if run.rc != 0:
        raise SystemExit(run.output[-3000:])
    lan = lan_rate(site, hosts[0], names, model_bytes)
    uplink = args.uplink_mbps * 1e6 / 8 if args.uplink_mbps else lan / args.lan_ratio
    print("LAN: %.0f MB/s (one host importing from a seed); uplink: %.1f MB/s for all hosts together"
          % (lan / 1e6, uplink / 1e6), flush=True)
    figures = dict(lan=lan, uplink=uplink)
    set_uplink(site["registry_url"], uplink * 8 / 1e6)
    try:
        playbook("reset.yml", extra)
        figures["plain"] = rollout_and_noop(site, hosts, "plain.yml", extra)

        playbook("reset.yml", extra)
        bundle = tempfile.mkdtemp(prefix="bench-bundle-")
        figures["ours"] = rollout_and_noop(site, hosts, "ours.yml",
                                           dict(extra, bench_bundle_dir=bundle, ollama_models=names))
        shutil.rmtree(bundle)

        # the bundle served over HTTP by a seed on the LAN (here the lab mirror), to every host or in waves
        seed_dir = LAB_CACHE / "mirror" / "bench-bundle"
        for key, spread in (("http", "seed"), ("waves", "waves")):
            playbook("reset.yml", extra)
            shutil.rmtree(seed_dir, ignore_errors=True)
            figures[key] = rollout_and_noop(site, hosts, "ours.yml", dict(
                extra, bench_bundle_dir=str(seed_dir), ollama_models=names, ollama_models_bundle_spread=spread,
                ollama_models_bundle_url=site["mirror_url"] + "/bench-bundle"))
            shutil.rmtree(seed_dir)
    finally:
        set_uplink(site["registry_url"], 0)

    model_args = "name=%s insecure=true" % ",".join(names)
    figures["per_host"] = dict(
        ollama_model_noop=adhoc(hosts, "llmops.ollama.ollama_model", model_args, 1) / len(hosts),
        ollama_facts=adhoc(hosts, "llmops.ollama.ollama_facts", "", 1) / len(hosts),
        cli_pull_noop=adhoc(hosts, "ansible.builtin.command", "ollama pull --insecure %s" % names[0], 1) / len(hosts),
    )
    report(args, hosts, names, model_bytes, figures)


def duration(seconds):
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return "%.1f %s" % (seconds / size, unit)
    return "%.0f s" % seconds


def on_paper():
    """What 10,000 hosts x 20 GB take on the links: every host pulling through the uplink, one seed sending every host
    its copy, and the waves (the role's own plan; a wave's hosts fetch at once)."""
    n, size, link, uplink = PAPER["hosts"], PAPER["model"], PAPER["host_link"], PAPER["uplink"]
    copy, wan = size / link, size / uplink
    rows = [("plain: every host pulls through the uplink", "%.0f TB" % (n * size / 1e12), duration(n * wan), "",
             duration(n * wan), "%d (the registry)" % n),
            ("one seed sends every host its copy", "%.0f GB" % (size / 1e9), duration(wan), duration(n * copy),
             duration(wan + n * copy), "%d (the seed)" % n)]
    for cap in (0, 3):
        plan = wave_plan(["h%d" % i for i in range(n)], cap)
        most = max(e["serves"] for e in plan["hosts"].values())
        label = "waves: %d%s" % (plan["waves"], ", at most %d copies per host" % cap if cap else "")
        rows.append((label, "%.0f GB" % (size / 1e9), duration(wan), duration(plan["waves"] * copy),
                     duration(wan + plan["waves"] * copy),
                     "%d (%sthe seed 1)" % (most, "" if cap else "the first host; ")))
    return rows


def report(args, hosts, names, model_bytes, f):
    p, o, w, v, h = f["plain"], f["ours"], f["http"], f["waves"], f["per_host"]
    ours = (o, w, v)

    def row(label, key, fmt):
        return (label, fmt(p[key])) + tuple(fmt(x[key]) for x in ours) + (
            " / ".join("%.3f" % (x[key] / p[key]) for x in ours) if p[key] else "",)

    rows = [
        row("registry (WAN) bytes, rollout", "wan", lambda v: "%.1f MB (%.2fx models)" % (v / 1e6, v / model_bytes)),
        row("rollout wall time", "rollout", lambda v: "%.1f s" % v),
        row("no-op re-run wall time", "noop", lambda v: "%.1f s" % v),
        row("no-op re-run: tasks reported changed", "noop_changed", str),
        row("no-op re-run: registry bytes", "noop_wan", str),
        ("per host, no-op call for all models", "%.2f s (`ollama pull`, 1 model)" % h["cli_pull_noop"],
         "%.2f s (ollama_model, %d models)" % (h["ollama_model_noop"], len(names)), "", "", ""),
        ("per host, ollama_facts", "", "%.2f s" % h["ollama_facts"], "", "", ""),
    ]
    plan = wave_plan(hosts)

    def copies(x, who):
        return "%.2f" % (x["sent"][who] / model_bytes)

    sent_rows = [("the machine (registry, mirror, controller)",) + tuple(copies(x, "machine") for x in (p,) + ours)]
    sent_rows += [(host,) + tuple(copies(x, host) for x in (p,) + ours) for host in hosts]
    sent_rows += [("waves (measured / the plan)", "", "", "", "%d / %d" % (v["waves"], plan["waves"]))]
    ratio = f["lan"] / f["uplink"]
    lines = [
        "## Rollouts",
        "",
        "`python3 -m bench.rollout --hosts %d --models %d --size-mb %d%s` on %s; lab fleet of %d Debian hosts "
        "(systemd-nspawn, SSH, forks 10); %d models, %.1f MB in all; %s." % (
            args.hosts, args.models, args.size_mb, " --uplink-mbps %g" % args.uplink_mbps if args.uplink_mbps else "",
            machine(), len(hosts), len(names), model_bytes / 1e6, time.strftime("%Y-%m-%d")),
        "",
        "The site's uplink: the lab's registry front sends blob bytes at %.1f MB/s (%.0f Mb/s) for all its clients "
        "together, 1/%.3g of the LAN's %.0f MB/s (what one host alone takes in from a seed on the LAN the role's way: "
        "download, verify, upload into its server; one import of the models from the mirror on the machine). "
        "Plain: one `command: ollama pull` task per model, each host pulling from the registry. Ours: the "
        "`models` role with `ollama_models_source: bundle` (fetched once on the controller, through the uplink; each "
        "host gets only the blobs its server lacks), copied from the controller over SSH, fetched from a seed serving "
        "the bundle over HTTP on the LAN (the lab mirror), or spread in waves (`ollama_models_bundle_spread: waves`: "
        "the seed sends one copy, then each host that has the blobs serves the next ones)." % (
            f["uplink"] / 1e6, f["uplink"] * 8 / 1e6, ratio, f["lan"] / 1e6),
        "",
        "| figure | plain | ours (SSH copy) | ours (LAN seed, HTTP) | ours (waves) | ours / plain |",
        "| --- | --- | --- | --- | --- | --- |",
    ] + ["| %s | %s | %s | %s | %s | %s |" % r for r in rows] + [
        "",
        "Bytes each machine sent on the lab network during the rollout, in copies of the models (%.1f MB; the "
        "kernel's counters of each host's veth and of the bridge, so SSH, Ansible's modules and HTTP headers count "
        "too; Ansible's SSH compresses, and the lab's synthetic models compress well, so SSH copies count far fewer "
        "bytes than a real model's would). All hosts share the machine's %d cores, so the lab's LAN carries about "
        "the same bytes per second whoever sends them: here the waves show in who sends, not in wall "
        "time." % (model_bytes / 1e6, os.cpu_count()),
        "",
        "| machine | plain | ours (SSH copy) | ours (LAN seed, HTTP) | ours (waves) |",
        "| --- | --- | --- | --- | --- |",
    ] + ["| %s | %s | %s | %s | %s |" % r for r in sent_rows] + [
        "",
        "On paper: %d hosts, %.0f GB of models each, %.0f Gb/s host links, a %.0f Gb/s site uplink (one copy takes "
        "%.0f s on a host link and %.0f s through the uplink). The waves are the role's own plan "
        "(`llmops.ollama.bundle_waves`), each one copy time: a wave's hosts fetch at once (an async job each). This is "
        "the links' part; the controller's part (starting and waiting for one job per host, forks at a time, and the "
        "role's other tasks) is what any run of the role on 10,000 hosts costs: see the no-op re-runs below for one "
        "controller's rate, and split a fleet that size across controllers." % (
            PAPER["hosts"], PAPER["model"] / 1e9, PAPER["host_link"] * 8 / 1e9, PAPER["uplink"] * 8 / 1e9,
            PAPER["model"] / PAPER["host_link"], PAPER["model"] / PAPER["uplink"]),
        "",
        "| way | WAN bytes | WAN time | LAN time | rollout | most copies one machine sends |",
        "| --- | --- | --- | --- | --- | --- |",
    ] + ["| %s | %s | %s | %s | %s | %s |" % r for r in on_paper()]
    text = "\n".join(lines) + "\n"
    print(text)
    write_section(args.output, "rollout", text)


if __name__ == "__main__":
    main()
