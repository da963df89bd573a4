"""The lab in one command: real Ollama builds, a release mirror, a registry and a fleet of systemd hosts.

    python3 -m tests.lab prepare [--hosts N] # build/fetch what is missing (Ollama, root filesystems, Codex), timed
    python3 -m tests.lab up [--hosts N]      # prepare, boot the fleet, start the services
    python3 -m tests.lab demo [--hosts N]    # up, run playbooks/site.yml on the fleet, print the fleet report
    python3 -m tests.lab down                # stop everything the lab started
"""
import argparse
import concurrent.futures
import os
import secrets
import sys
import time

from tests.lab import codex_cli, fleet, ollama_build, services
from tests.lab.errors import LabError
from tests.lab.ansible_run import collections_path, run_playbook
from tests.lab.paths import LAB_STATE, REPO

GROUP_VARS = REPO / "tests" / "lab" / "group_vars"


def _write_group_vars(site, cli):
    """Lab facts in group_vars/all/lab.yml beside the inventory; the lab's site settings linked from the repo."""
    gv = LAB_STATE / "group_vars"
    (gv / "all").mkdir(parents=True, exist_ok=True)
    lines = ["---", "# Written by `python3 -m tests.lab up`.",
             "lab_mirror_url: %s" % site["mirror_url"],
             "lab_registry: \"%s\"" % site["registry"],
             "lab_ollama_versions: [%s]" % ", ".join('"%s"' % v for v in ollama_build.VERSIONS),
             "lab_codex_tarball: %s" % cli.tarball,
             "lab_codex_checksum: \"%s\"" % codex_cli.sri_digest(cli.tarball),
             "# the GPU servers' proxy token of the workstations (a site keeps its tokens in Ansible Vault)",
             "lab_proxy_token: \"%s\"" % _proxy_token()]
    path = gv / "all" / "lab.yml"
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text("\n".join(lines) + "\n")
    for src in GROUP_VARS.glob("*.yml"):
        dest = gv / "all" / "site.yml" if src.name == "all.yml" else gv / src.name
        if dest.is_symlink() or dest.exists():
            dest.unlink()
        dest.symlink_to(src)


def _proxy_token():
    """The lab's bearer token for the GPU servers' proxy: made once, kept with the lab's state (mode 0600)."""
    path = LAB_STATE / "proxy-token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def _timed(what, func, *args):
    started = time.time()
    result = func(*args)
    return result, "%s %.0fs" % (what, time.time() - started)


def prepare(n_hosts=3):
    """Make what the lab needs and does not have yet, each part at once: the Ollama builds (CPU), the root
    filesystems (debootstrap, mostly network) and the Codex CLI (npm). Returns the Codex CLI."""
    releases = sorted({h["release"] for h in fleet.plan(n_hosts)}, key=fleet.RELEASES.index)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        jobs = [pool.submit(_timed, "Ollama %s" % ", ".join(ollama_build.VERSIONS),
                            lambda: [ollama_build.build(v) for v in ollama_build.VERSIONS]),
                pool.submit(_timed, "root filesystems", fleet.ensure_rootfs, releases),
                pool.submit(_timed, "Codex CLI", codex_cli.ensure)]
        results = [job.result() for job in jobs]  # the first failure is raised here, after the others ended
    print("lab: ready: %s" % ", ".join(took for _result, took in results), flush=True)
    return results[2][0]


def up(n_hosts=3):
    started = time.time()
    cli = prepare(n_hosts)
    hosts = fleet.up(n_hosts)
    site = services.start()
    _write_group_vars(site, cli)
    collections_path()
    print("lab up: %d hosts in %.0fs; inventory %s" % (len(hosts), time.time() - started, fleet.inventory_path()))
    return hosts


def down():
    services.stop()
    fleet.down()


def playbook(name, *args):
    run = run_playbook(REPO / "playbooks" / name, fleet.inventory_path(), args=args, capture=False)
    return run.rc


def demo(n_hosts=3):
    up(n_hosts)
    started = time.time()
    rc = playbook("site.yml")
    print("site playbook: exit %d in %.0fs" % (rc, time.time() - started))
    if rc != 0:
        return rc
    return playbook("report.yml")


def main(argv):
    parser = argparse.ArgumentParser(prog="python3 -m tests.lab")
    parser.add_argument("command", choices=["prepare", "up", "down", "demo"])
    parser.add_argument("--hosts", type=int, default=int(os.environ.get("LAB_HOSTS", "3")))
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("the lab boots containers and network namespaces: run it as root")
    try:
        if args.command == "prepare":
            prepare(args.hosts)
        elif args.command == "up":
            up(args.hosts)
        elif args.command == "down":
            down()
        else:
            sys.exit(demo(args.hosts))
    except LabError as exc:
        sys.exit("lab: error: %s" % exc)
    except KeyboardInterrupt:
        sys.exit("lab: interrupted; `python3 -m tests.lab down` stops what was started")


if __name__ == "__main__":
    main(sys.argv[1:])
