"""Rollout benchmark on the lab fleet: this collection against the plain alternative, in the same run.

    python3 -m bench.rollout [--hosts 8] [--models 3] [--size-mb 16]

Plain: one `command: ollama pull` task per model, each host pulling from the registry. Ours: the models role with the
bundle source (the controller fetches each model once; each host gets only the blobs its server lacks). Measured:
bytes the registry served ("WAN", counted by the lab registry front per client), wall time of the rollout and of a
no-op re-run, and per-host time of a no-op ollama_model call and of ollama_facts. Prints the figures and writes
bench/results.md. The bench uses hosts lab7.. so it never touches the hosts the tests use.
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
import urllib.request

from bench.report import write_section
from tests.lab import models as lab_models
from tests.lab.__main__ import up as lab_up
from tests.lab.ansible_run import ansible_env, run_playbook
from tests.lab.fleet import inventory_path
from tests.lab.paths import LAB_CACHE, REPO

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


def rollout_and_noop(site, name, extra):
    """Run a rollout playbook twice: wall time and registry bytes of the rollout, then of the no-op re-run."""
    before = stats(site)
    first = playbook(name, extra)
    middle = stats(site)
    again = playbook(name, extra)
    return dict(rollout=first.seconds, wan=wan_bytes(before, middle), noop=again.seconds,
                noop_wan=wan_bytes(middle, stats(site)), noop_changed=sum(again.changed().values()))


def adhoc(hosts, module, args, forks):
    """Seconds for one ad-hoc module call on every host, run `forks` at a time."""
    started = time.time()
    proc = subprocess.run(["ansible", ",".join(hosts), "-i", str(inventory_path()), "-m", module, "-a", args,
                           "--forks", str(forks), "-b"], env=ansible_env(), cwd=str(REPO), check=False,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if proc.returncode != 0:
        raise SystemExit("ansible -m %s failed:\n%s" % (module, proc.stdout[-3000:]))
    return time.time() - started


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m bench.rollout")
    parser.add_argument("--hosts", type=int, default=8)
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--size-mb", type=int, default=16, help="size of the first model; the next ones grow by it")
    parser.add_argument("--output", default=str(HERE / "results.md"))
    args = parser.parse_args(argv)

    lab_up(FIRST_HOST - 1 + args.hosts)
    site = json.loads((REPO / ".lab" / "services.json").read_text())
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
    figures = {}
    playbook("reset.yml", extra)

    figures["plain"] = rollout_and_noop(site, "plain.yml", extra)

    playbook("reset.yml", extra)
    bundle = tempfile.mkdtemp(prefix="bench-bundle-")
    figures["ours"] = rollout_and_noop(site, "ours.yml", dict(extra, bench_bundle_dir=bundle, ollama_models=names))
    shutil.rmtree(bundle)

    # the same, with the bundle served over HTTP by a seed on the LAN (here the lab mirror) instead of SSH copies
    playbook("reset.yml", extra)
    seed_dir = LAB_CACHE / "mirror" / "bench-bundle"
    shutil.rmtree(seed_dir, ignore_errors=True)
    figures["http"] = rollout_and_noop(site, "ours.yml", dict(
        extra, bench_bundle_dir=str(seed_dir), ollama_models=names,
        ollama_models_bundle_url=site["mirror_url"] + "/bench-bundle"))
    shutil.rmtree(seed_dir)

    model_args = "name=%s insecure=true" % ",".join(names)
    figures["per_host"] = dict(
        ollama_model_noop=adhoc(hosts, "llmops.ollama.ollama_model", model_args, 1) / len(hosts),
        ollama_facts=adhoc(hosts, "llmops.ollama.ollama_facts", "", 1) / len(hosts),
        cli_pull_noop=adhoc(hosts, "ansible.builtin.command", "ollama pull --insecure %s" % names[0], 1) / len(hosts),
    )
    report(args, hosts, names, model_bytes, figures)


def report(args, hosts, names, model_bytes, f):
    p, o, w, h = f["plain"], f["ours"], f["http"], f["per_host"]

    def row(label, key, fmt):
        return (label, fmt(p[key]), fmt(o[key]), fmt(w[key]),
                "%.3f / %.3f" % (o[key] / p[key], w[key] / p[key]) if p[key] else "")

    rows = [
        row("registry (WAN) bytes, rollout", "wan", lambda v: "%.1f MB (%.2fx models)" % (v / 1e6, v / model_bytes)),
        row("rollout wall time", "rollout", lambda v: "%.1f s" % v),
        row("no-op re-run wall time", "noop", lambda v: "%.1f s" % v),
        row("no-op re-run: tasks reported changed", "noop_changed", str),
        row("no-op re-run: registry bytes", "noop_wan", str),
        ("per host, no-op call for all models", "%.2f s (`ollama pull`, 1 model)" % h["cli_pull_noop"],
         "%.2f s (ollama_model, %d models)" % (h["ollama_model_noop"], len(names)), "", ""),
        ("per host, ollama_facts", "", "%.2f s" % h["ollama_facts"], "", ""),
    ]
    lines = [
        "## Rollouts",
        "",
        "`python3 -m bench.rollout --hosts %d --models %d --size-mb %d` on %s, %d cores, %.0f GiB; lab fleet of %d Debian "
        "hosts (systemd-nspawn, SSH, forks 10); %d models, %.1f MB in all; %s." % (
            args.hosts, args.models, args.size_mb, platform.node() and "the CI machine", os.cpu_count(),
            os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30, len(hosts), len(names),
            model_bytes / 1e6, time.strftime("%Y-%m-%d")),
        "",
        "Plain: one `command: ollama pull` task per model, each host pulling from the registry. Ours: the `models` role "
        "with `ollama_models_source: bundle` (fetched once on the controller; each host gets only the blobs its server "
        "lacks), copied over SSH, or fetched by the hosts from a seed serving the bundle over HTTP on the LAN. In the lab "
        "the \"WAN\" is as fast as the LAN, so bytes are the figure that carries over to a real site.",
        "",
        "| figure | plain | ours (SSH copy) | ours (LAN seed, HTTP) | ours / plain |",
        "| --- | --- | --- | --- | --- |",
    ] + ["| %s | %s | %s | %s | %s |" % r for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    write_section(args.output, "rollout", text)


if __name__ == "__main__":
    main()
