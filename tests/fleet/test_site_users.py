"""Root among users (lab1, a workstation, and lab2, the GPU server behind the proxy): nothing a user of the host
places can steer the roles, and no secret reaches anyone who does not need it.

- Plants: a user listed in codex_users (ann, made here) places, before site.yml runs, at each path the roles write in
  her home (her Codex home; her configuration, .env and profile in it), a symlink to a root-owned target, a hard link
  to a root-owned file, a FIFO, or a directory where a file goes: each of the four at each file. After each run:
  nothing under /etc, /usr/local, /opt, /srv or /var/lib changed owner, mode or content (their stats, and the hashes
  of the files under /etc, before and after), the run failed naming each planted path, and root's own files were
  still written. Once she removes the plants, the next run converges and the one after changes
  nothing.
- Secrets: after site.yml with lab1's Codex using lab2's proxy (its token in root's and ann's .env), every file
  holding the proxy's token or a TLS key is readable by its owner alone; none is in the output of a run at -vvv that
  writes them again, in a unit's Environment= (every user reads it with systemctl show), or on a command line.

Runs after test_site.py (converged lab1-lab3; on bare hosts the fixture converges them) and leaves lab1's Codex as
the site configures it.
"""
import json
import re
import shlex
from pathlib import Path

import pytest

SITE = "lab1,lab2,lab3"
USER = "ann"
HOME = "/home/ann"
CODEX = HOME + "/.codex"
DECOY_DIR = "/etc/llmops-decoy.d"
DECOY = "/etc/llmops-decoy"
DECOY_HARD = "/etc/llmops-decoy-hard"
TREES = ["/etc", "/usr/local", "/opt", "/srv", "/var/lib"]
# what changes on its own under those trees while a play runs (systemd's own state), whoever runs it
VOLATILE = ("/var/lib/systemd/timers/", "/var/lib/systemd/random-seed", "/var/lib/systemd/timesync/",
            "/var/lib/private/", "/var/lib/logrotate/")

# One line of Python on the host: {path: [type and mode, uid, gid, size, inode, ctime, sha256 under /etc]} of every
# entry of TREES, links not followed (a change of owner, mode or content changes the ctime).
SNAPSHOT = r"""
import hashlib, json, os, stat, sys
out = {}
for top in sys.argv[1:]:
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            p = os.path.join(folder, name)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            digest = ""
            if p.startswith("/etc/") and stat.S_ISREG(st.st_mode):
                try:
                    with open(p, "rb") as f:
                        digest = hashlib.sha256(f.read()).hexdigest()
                except OSError:
                    digest = "unreadable"
            out[p] = [st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_ino, st.st_ctime_ns, digest]
print(json.dumps(out))
"""


def snapshot(lab, host):
    text = lab.ssh(host, "python3 -c %s %s" % (shlex.quote(SNAPSHOT), " ".join(TREES)))
    return json.loads(text)


def escapes(before, after):
    """Entries outside the user's home that appeared, went or changed (volatile state left out)."""
    changed = [p for p in set(before) | set(after) if before.get(p) != after.get(p)]
    return sorted(p for p in changed if not p.startswith(VOLATILE))


@pytest.fixture(scope="module")
def site(lab):
    run = lab.playbook("site.yml", limit=SITE)
    assert run.rc == 0, run.output[-5000:]
    token = (Path(lab.inventory).parent / "group_vars" / "all" / "lab.yml").read_text().split(
        "lab_proxy_token: ")[1].split("\n")[0].strip('"')
    remote = {"codex_provider": "remote", "codex_remote_url": "https://%s:11443" % lab.ips["lab2"],
              "codex_remote_token": token, "codex_remote_ca": lab.ssh("lab2", "cat /etc/ollama-proxy/tls/ca.crt"),
              "codex_users": [{"name": "root"},
                              {"name": USER, "profiles": {"fast": {"model_reasoning_effort": "low"}}}]}
    lab.ssh("lab1", "id -u %s >/dev/null 2>&1 || useradd -m -s /bin/bash %s" % (USER, USER))
    lab.ssh("lab1", "mkdir -p %s && echo decoy > %s && echo decoy > %s && chmod 0644 %s %s"
            % (DECOY_DIR, DECOY, DECOY_HARD, DECOY, DECOY_HARD))
    # lab1's Codex on lab2's proxy, for root alone: what the rounds below change outside the homes is then only
    # what a plant would make the roles change
    run = lab.playbook("codex.yml", limit="lab1", extra_vars=dict(remote, codex_users=[{"name": "root"}]))
    assert run.rc == 0, run.output[-4000:]
    yield lab, token, remote
    lab.ssh("lab1", "userdel -r %s; rm -rf %s %s %s" % (USER, DECOY_DIR, DECOY, DECOY_HARD), check=False)
    run = lab.playbook("codex.yml", limit="lab1")  # the site's own settings again
    assert run.rc == 0, run.output[-4000:]


def as_user(lab, command):
    lab.ssh("lab1", "runuser -u %s -- sh -c %s" % (USER, shlex.quote(command)))


# Each round: what ann plants (as herself; the hard links as root, as fs.protected_hardlinks forbids her), and the
# paths the run must refuse, naming them. Her Codex home is a link in the first round; in the others each file the
# roles write there (her configuration, her .env and her profile) gets each of the four plants once: a link to a
# root-owned file, a hard link to one, a FIFO and a folder.
CONFIG, ENV, PROFILE = CODEX + "/config.toml", CODEX + "/.env", CODEX + "/fast.config.toml"
HOME_DIR = "mkdir -m 0700 %s" % CODEX
ROUNDS = [
    ("her Codex home a link to a root-owned folder", ["ln -s %s %s" % (DECOY_DIR, CODEX)], [], [CODEX]),
    ("links to a root-owned file; a hard link; a FIFO",
     [HOME_DIR, "ln -s %s %s" % (DECOY, CONFIG), "mkfifo %s" % PROFILE], ["ln %s %s" % (DECOY_HARD, ENV)],
     [CONFIG, ENV, PROFILE]),
    ("a FIFO; a folder; a link to a root-owned file",
     [HOME_DIR, "mkfifo %s" % CONFIG, "mkdir %s" % ENV, "ln -s %s %s" % (DECOY, PROFILE)], [],
     [CONFIG, ENV, PROFILE]),
    ("a hard link; a link to a root-owned file; a folder",
     [HOME_DIR, "ln -s %s %s" % (DECOY, ENV), "mkdir %s" % PROFILE], ["ln %s %s" % (DECOY_HARD, CONFIG)],
     [CONFIG, ENV, PROFILE]),
    ("a folder; a FIFO; a hard link",
     [HOME_DIR, "mkdir %s" % CONFIG, "mkfifo %s" % ENV], ["ln %s %s" % (DECOY_HARD, PROFILE)],
     [CONFIG, ENV, PROFILE]),
]


def test_what_a_listed_user_plants_in_her_home_is_refused_and_nothing_outside_it_changes(site):
    lab, token, remote = site
    plants = refused = 0
    found = []
    for what, user_cmds, root_cmds, paths in ROUNDS:
        lab.ssh("lab1", "rm -rf %s" % CODEX)
        for command in user_cmds:
            as_user(lab, command)
        for command in root_cmds:
            lab.ssh("lab1", command)
        plants += len(paths)
        before = snapshot(lab, "lab1")
        run = lab.playbook("site.yml", limit="lab1", extra_vars=remote)
        after = snapshot(lab, "lab1")
        found += ["%s: %s" % (what, p) for p in escapes(before, after)]
        assert run.rc != 0 and run.stats["lab1"].get("failed", 0) == 1, (what, run.output[-4000:])
        named = [p for p in paths if p in run.output]
        assert named == paths, (what, run.output[-4000:])
        refused += len(named)
        # the decoys are as they were, and root's own configuration was written all the same
        assert lab.ssh("lab1", "cat %s %s; ls -A %s" % (DECOY, DECOY_HARD, DECOY_DIR)) == "decoy\ndecoy\n", what
        assert "OLLAMA_REMOTE_TOKEN=%s" % token in lab.ssh("lab1", "cat /root/.codex/.env"), what
    print("%d plants, %d refused or written as the user, %d escapes" % (plants, refused, len(found)))
    assert found == [] and refused == plants

    # the plants removed, the next run writes her files (hers, for her alone), and the one after changes nothing
    lab.ssh("lab1", "rm -rf %s" % CODEX)
    run = lab.playbook("site.yml", limit="lab1", extra_vars=remote)
    assert run.rc == 0, run.output[-4000:]
    stats = lab.ssh("lab1", "stat -c '%%n %%U %%a' %s %s %s %s" % (CODEX, CONFIG, ENV, PROFILE)).splitlines()
    assert stats == ["%s ann 700" % CODEX] + ["%s ann 600" % p for p in (CONFIG, ENV, PROFILE)], stats
    again = lab.playbook("site.yml", limit="lab1", extra_vars=remote)
    assert again.rc == 0 and again.changed() == {"lab1": 0}, again.output[-4000:]


def _files_holding(lab, host, secrets):
    """Files on `host` that hold any of `secrets` (text files; the pseudo file systems left out)."""
    patterns = " ".join("-e %s" % shlex.quote(secret) for secret in secrets)
    out = lab.ssh(host, "grep -rlsFI --exclude-dir=proc --exclude-dir=sys %s /etc /opt /srv /usr/local /var /root "
                        "/home /run /tmp; true" % patterns)
    return [line for line in out.splitlines() if line]


def test_secrets_are_readable_only_by_whom_needs_them_and_never_shown(site):
    lab, token, remote = site
    lab.ssh("lab1", "rm -rf %s" % CODEX)
    # a run that writes the secrets again, at -vvv: root's and ann's .env on lab1 (the token), the proxy's site on
    # lab2 (the tokens) and its certificate's key
    lab.ssh("lab1", "sed -i 's/^OLLAMA_REMOTE_TOKEN=.*/OLLAMA_REMOTE_TOKEN=stale/' /root/.codex/.env")
    lab.ssh("lab2", "sed -i 's/proxy_read_timeout [0-9]*s/proxy_read_timeout 1s/' "
                    "/etc/nginx/conf.d/llmops-ollama-proxy.conf; rm -f /etc/ollama-proxy/tls/server.key")
    servers = lab.playbook("servers.yml", limit="lab2", args=["-vvv"])
    assert servers.rc == 0 and servers.changed()["lab2"] > 0, servers.output[-4000:]
    clients = lab.playbook("codex.yml", limit="lab1", extra_vars=remote, args=["-vvv"])
    assert clients.rc == 0 and clients.changed()["lab1"] > 0, clients.output[-4000:]

    # a key is followed by its first line of base64 (64 characters of the key itself)
    keys = dict(("%s on lab2" % name, lab.ssh("lab2", "cat /etc/ollama-proxy/tls/%s" % name).split("\n")[1])
                for name in ("ca.key", "server.key"))
    # the token as the users' .env holds it, and as nginx's site matches it (a regular expression, escaped)
    secrets = dict(keys, **{"the proxy's token": token, "the proxy's token, escaped": re.escape(token)})
    followed, findings = 0, []
    for what, secret in secrets.items():
        for run, name in ((servers, "servers.yml -vvv"), (clients, "codex.yml -vvv")):
            if secret in run.output:
                findings.append("%s in the output of %s" % (what, name))
    for host in ("lab1", "lab2"):
        for path in _files_holding(lab, host, secrets.values()):
            followed += 1
            mode, owner = lab.ssh(host, "stat -c '%%a %%U' %s" % shlex.quote(path)).split()
            home_owner = USER if path.startswith(HOME + "/") else "root"
            if int(mode, 8) & 0o077 or owner != home_owner:
                findings.append("%s: %s is %s %s" % (host, path, owner, mode))
        units = lab.ssh(host, "systemctl show -p Environment '*' 2>/dev/null; systemctl show -p Environment "
                              "ollama.service nginx.service 2>/dev/null; true")
        processes = lab.ssh(host, "ps -eo args")
        for what, secret in secrets.items():
            if secret in units:
                findings.append("%s: %s in a unit's Environment=" % (host, what))
            if secret in processes:
                findings.append("%s: %s on a command line" % (host, what))
    print("%d secrets followed to %d files, %d findings" % (len(secrets), followed, len(findings)))
    assert followed >= 5, followed  # the token in nginx's site and root's and ann's .env; each key in its file
    assert findings == []
