"""Running Ansible against the work tree: the collection on ANSIBLE_COLLECTIONS_PATH, and a playbook runner."""
import json
import os
import subprocess
import sys

from tests.lab.paths import LAB_STATE, REPO


def collections_path():
    """The work tree exposed as ansible_collections/llmops/ollama (for imports and for ansible-playbook)."""
    root = LAB_STATE / "collections"
    link = root / "ansible_collections" / "llmops" / "ollama"
    if not link.is_symlink():
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(".ollama.tmp%d" % os.getpid())
        tmp.symlink_to(REPO)
        os.replace(tmp, link)
    return root


def ansible_env(extra=None):
    """The environment every test runs Ansible with. ANSIBLE_INJECT_FACT_VARS=false, as sites set it: facts exist
    only as ansible_facts[...], so a role or playbook that reads a top-level ansible_<fact> variable fails here."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections_path()), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_HOST_KEY_CHECKING="0",
               ANSIBLE_PIPELINING="1", ANSIBLE_FORKS="10", ANSIBLE_STDOUT_CALLBACK="default",
               ANSIBLE_INJECT_FACT_VARS="false")
    env.update(extra or {})
    return env


class PlaybookRun:
    def __init__(self, proc, seconds):
        self.rc = proc.returncode
        self.output = proc.stdout
        self.seconds = seconds
        self.stats = recap(proc.stdout)

    def changed(self):
        return {host: s.get("changed", 0) for host, s in self.stats.items()}


def run_playbook(playbook, inventory="localhost,", extra_vars=None, check=False, diff=False, env=None, args=(),
                 capture=True, umask=None):
    """Run ansible-playbook with the collection installed from the work tree; return a PlaybookRun. With `umask`
    (0o027, as on a hardened host), ansible-playbook runs under it."""
    import time

    cmd = ["ansible-playbook", "-i", str(inventory), str(playbook)]
    if inventory == "localhost,":
        cmd += ["-c", "local", "-e", "ansible_python_interpreter=%s" % sys.executable]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    cmd += list(args)
    started = time.time()
    proc = subprocess.run(cmd, cwd=str(REPO), env=ansible_env(env), universal_newlines=True, check=False,
                          stdout=subprocess.PIPE if capture else None, stderr=subprocess.STDOUT if capture else None,
                          preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)
    return PlaybookRun(proc, time.time() - started)


def recap(output):
    """{host: {"ok": n, "changed": n, "failed": n, ...}} from the PLAY RECAP lines."""
    stats, in_recap = {}, False
    for line in (output or "").splitlines():
        if line.startswith("PLAY RECAP"):
            in_recap = True
            continue
        if in_recap and ":" in line and "=" in line:
            host, _sep, rest = line.partition(":")
            stats[host.strip()] = {k: int(v) for k, v in (p.split("=") for p in rest.split())}
    return stats
