"""No-op re-run of the whole site playbook on the lab's demo fleet: this tree against an earlier one.

    python3 -m bench.site_rerun [--hosts 3] [--runs 5] [--before REV]

Boots the fleet `make demo` makes (lab1.., with the demo's settings: servers with models, a GPU server behind the
proxy, workstations with Codex using it), converges it once with this tree's playbooks/site.yml, then re-runs
site.yml with nothing to do, from the tree at REV (default: main) and from this tree, alternated, `--runs` times each. Prints the median wall time of a run, the
controller's CPU seconds (ansible-playbook, its workers and ssh) and the tasks each run reported (ok / changed),
and writes them to bench/results.md. The hosts are the tests' own: run it on a fleet no test is using.
"""
import argparse
import statistics
import subprocess
import time

from bench.report import machine, write_section
from bench.rerun import export_tree, timed
from tests.lab.__main__ import up as lab_up
from tests.lab.paths import REPO

HERE = REPO / "bench"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m bench.site_rerun")
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--before", default="main", help="the tree to compare with (a git revision)")
    parser.add_argument("--output", default=str(HERE / "results.md"))
    args = parser.parse_args(argv)

    lab_up(args.hosts)
    hosts = ["lab%d" % i for i in range(1, args.hosts + 1)]
    before_path, before_tree = export_tree(args.before)
    ways = {"before": (before_tree / "playbooks" / "site.yml", {"ANSIBLE_COLLECTIONS_PATH": str(before_path)}),
            "now": (REPO / "playbooks" / "site.yml", None)}
    print("converging the fleet with this tree's site.yml...", flush=True)
    timed(ways["now"][0], hosts, {})
    samples = dict((way, []) for way in ways)
    for i in range(args.runs):
        for way in (("before", "now") if i % 2 == 0 else ("now", "before")):
            wall, cpu, changed = timed(ways[way][0], hosts, {}, ways[way][1])
            samples[way].append((wall, cpu, changed))
            print("  %-6s run %d: %.1f s, %.1f CPU s, changed=%d" % (way, i + 1, wall, cpu, changed), flush=True)
    rev = subprocess.run(["git", "rev-parse", "--short", args.before], cwd=str(REPO), stdout=subprocess.PIPE,
                         universal_newlines=True, check=False).stdout.strip() or args.before
    lines = ["## No-op re-runs of site.yml", "",
             "`python3 -m bench.site_rerun --hosts %d --runs %d` on %s; before = `%s`; %s." % (
                 args.hosts, args.runs, machine(), rev, time.strftime("%Y-%m-%d")), "",
             "The demo's fleet of %d hosts (servers with their models, one behind the proxy, workstations whose Codex "
             "uses it), converged; `playbooks/site.yml` re-run with nothing to do. Medians of %d alternated runs; CPU: "
             "the controller's user + system seconds." % (args.hosts, args.runs), "",
             "| way | wall s (run) | CPU s (run) | changed | now / way (wall) |", "| --- | --- | --- | --- | --- |"]
    med = dict((way, (statistics.median(s[0] for s in samples[way]), statistics.median(s[1] for s in samples[way]),
                      max(s[2] for s in samples[way]))) for way in ways)
    for way in ways:
        wall, cpu, changed = med[way]
        lines.append("| %s | %.2f | %.2f | %d | %.2f |" % (way, wall, cpu, changed, med["now"][0] / wall))
    text = "\n".join(lines) + "\n"
    print(text)
    write_section(args.output, "site-rerun", text)


if __name__ == "__main__":
    main()
