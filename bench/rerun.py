"""No-op re-run benchmark on the lab fleet: the plain way, the roles before the one look per host, and now.

    python3 -m bench.rerun [--hosts 1,3,8] [--runs 5] [--before REV]

On converged hosts (server + 2 models, no proxy), each way re-runs with nothing to do, alternated (the order turns
each round), `--runs` times per fleet size. Printed and written to bench/results.md: the median wall time per host,
the controller's CPU seconds per host (user + system of ansible-playbook and everything it started: its workers, ssh),
the ratios, and from them, on paper, what 10,000 hosts take. The ways:

- plain: bench/plain_servers.yml (facts, one task per step, `ollama pull` per model), a server of its own beside ours;
- before: playbooks/servers.yml of the tree before llmops.ollama.ollama_state (REV, from git: the parent of the commit
  that added the module), run as an installed collection;
- now: playbooks/servers.yml of this tree;
- limit: one `ping` task per host (bench/ping.yml), the floor of any playbook that reaches the host.

The bench uses hosts lab7.. so it never touches the hosts the tests use.
"""
import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import time

from bench.report import machine, write_section
from tests.lab.__main__ import up as lab_up
from tests.lab.ansible_run import run_playbook
from tests.lab.fleet import inventory_path
from tests.lab.paths import LAB_STATE, REPO

FIRST_HOST = 7
HERE = REPO / "bench"
WAYS = ("plain", "before", "now", "limit")
FORKS = 50  # the forks of the on-paper figures
WINDOW = 600  # seconds: "a re-run in 10 minutes"
FLEET = 10000


def before_rev():
    """The commit before the one that added ollama_state."""
    added = subprocess.run(["git", "log", "--format=%H", "--diff-filter=A", "-1", "--",
                            "plugins/modules/ollama_state.py"], cwd=str(REPO), check=True,
                           stdout=subprocess.PIPE, universal_newlines=True).stdout.strip()
    if not added:
        raise SystemExit("plugins/modules/ollama_state.py is not in this branch's history: give --before REV")
    return added + "^"


def export_tree(rev):
    """The collection at `rev`, as an installed collection; returns its ANSIBLE_COLLECTIONS_PATH."""
    root = LAB_STATE / "bench-before"
    shutil.rmtree(root, ignore_errors=True)
    dest = root / "ansible_collections" / "llmops" / "ollama"
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev], cwd=str(REPO), check=True, stdout=subprocess.PIPE).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return root, dest


def timed(playbook, hosts, extra, env=None):
    """(wall seconds, controller CPU seconds, changed tasks) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = run_playbook(playbook, inventory_path(), extra_vars=extra, args=["--limit", ",".join(hosts)], env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if run.rc != 0:
        raise SystemExit("%s failed:\n%s" % (playbook, run.output[-3000:]))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return run.seconds, cpu, sum(run.changed().values())


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m bench.rerun")
    parser.add_argument("--hosts", default="1,3", help="fleet sizes, comma-separated")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--before", help="the tree to compare with (default: before ollama_state)")
    parser.add_argument("--output", default=str(HERE / "results.md"))
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.hosts.split(",")]

    lab_up(FIRST_HOST - 1 + max(sizes))
    site = json.loads((REPO / ".lab" / "services.json").read_text())
    models = ["%s/lab/tiny:latest" % site["registry"], "%s/lab/tiny:1b" % site["registry"]]
    extra = {"ollama_models": models, "ollama_proxy_tokens": []}
    rev = args.before or before_rev()
    before_path, before_tree = export_tree(rev)
    playbooks = {"plain": (HERE / "plain_servers.yml", None),
                 "before": (before_tree / "playbooks" / "servers.yml", {"ANSIBLE_COLLECTIONS_PATH": str(before_path)}),
                 "now": (REPO / "playbooks" / "servers.yml", None),
                 "limit": (HERE / "ping.yml", None)}

    figures = {}
    for size in sizes:
        hosts = ["lab%d" % i for i in range(FIRST_HOST, FIRST_HOST + size)]
        run_extra = dict(extra, bench_hosts=",".join(hosts))
        print("%d host(s): converging each way once..." % size, flush=True)
        for way in WAYS:
            timed(playbooks[way][0], hosts, run_extra, playbooks[way][1])
        samples = dict((way, []) for way in WAYS)
        for i in range(args.runs):
            order = WAYS[i % len(WAYS):] + WAYS[:i % len(WAYS)]
            for way in order:
                wall, cpu, changed = timed(playbooks[way][0], hosts, run_extra, playbooks[way][1])
                samples[way].append((wall, cpu, changed))
                print("  %-6s run %d: %.1f s, %.1f CPU s, changed=%d" % (way, i + 1, wall, cpu, changed), flush=True)
        figures[size] = dict((way, dict(wall=statistics.median(s[0] for s in samples[way]) / size,
                                        cpu=statistics.median(s[1] for s in samples[way]) / size,
                                        changed=max(s[2] for s in samples[way]))) for way in WAYS)
    text = report(args, sizes, rev, figures)
    print(text)
    write_section(args.output, "rerun", text)


def on_paper(figure, cores):
    """Hosts one controller re-runs in WINDOW with FORKS forks, from a way's per-host figures at one host."""
    by_cpu = WINDOW * cores / figure["cpu"]
    by_wall = WINDOW * FORKS / figure["wall"]
    return min(by_cpu, by_wall), "CPU" if by_cpu < by_wall else "forks"


def report(args, sizes, rev, figures):
    cores = os.cpu_count()
    lines = ["## No-op re-runs", "",
             "`python3 -m bench.rerun --hosts %s --runs %d` on %s; before = `%s`; %s." % (
                 args.hosts, args.runs, machine(), subprocess.run(
                     ["git", "rev-parse", "--short", rev], cwd=str(REPO), stdout=subprocess.PIPE,
                     universal_newlines=True, check=False).stdout.strip() or rev, time.strftime("%Y-%m-%d")),
             "",
             "Converged hosts (server + 2 models, no proxy), nothing to do. plain: `bench/plain_servers.yml` (facts, one "
             "task per step, `ollama pull` per model); before: `playbooks/servers.yml` before `ollama_state`; now: "
             "`playbooks/servers.yml`; limit: one `ping` task. Medians of %d alternated runs, per host (wall time of the "
             "run / hosts); CPU: the controller's user + system seconds (ansible-playbook, its workers, ssh) / hosts." %
             args.runs, "",
             "| hosts | way | wall s / host | CPU s / host | changed | now / way (wall) | now / way (CPU) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for size in sizes:
        f = figures[size]
        for way in WAYS:
            lines.append("| %d | %s | %.2f | %.2f | %d | %.2f | %.2f |" % (
                size, way, f[way]["wall"], f[way]["cpu"], f[way]["changed"], f["now"]["wall"] / f[way]["wall"],
                f["now"]["cpu"] / f[way]["cpu"]))
    one = figures[sizes[0]]
    lines += ["", "On paper, from the %d-host figures, one controller with %d cores and forks=%d, re-running in %d minutes:"
              % (sizes[0], cores, FORKS, WINDOW // 60), "",
              "| way | hosts per %d min (bound) | %d hosts take | controllers (or AWX execution nodes) for %d hosts in %d min |"
              % (WINDOW // 60, FLEET, FLEET, WINDOW // 60), "| --- | --- | --- | --- |"]
    for way in ("plain", "before", "now"):
        hosts, bound = on_paper(one[way], cores)
        seconds = max(FLEET * one[way]["cpu"] / cores, FLEET * one[way]["wall"] / FORKS)
        lines.append("| %s | %d (%s) | %.0f min | %d |" % (way, hosts, bound, seconds / 60, -(-FLEET // int(hosts))))
    lines += ["", "The CPU bound assumes the controller's cores do nothing else, and the forks bound that the hosts and "
              "the network keep each host's time as measured here; a real controller also spends memory per fork "
              "(about 60-100 MB each), which this does not count."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
