"""The codex role writes into users' homes as root: what a listed user plants there, before the role runs, at each
path the role writes, must never turn into a write (or a read) outside that home.

Real unprivileged users are made for the test (useradd; removed after), with their homes in a temporary folder. As
each user, the test plants at the role's paths (~/.codex, its config.toml, the profile's fast.config.toml, .env) a
symbolic link to a root-owned folder or file, a FIFO, a socket, a folder where a file goes, a file where a folder
goes; and a hard link to a root-owned file, which root makes here (fs.protected_hardlinks=1 keeps a user from
linking a file of root's; where it is 0, a user can make the same link). Each set of plants is in the home of a user
of its own (five users, all listed), so one run meets them all:

- the role runs (in check mode too, and once with its look failing): the host fails at the end of the role, with
  one message naming every planted path and what was found there; the other listed user's files are written;
- the root-owned targets keep their owner, mode, link count and content, and nothing outside the homes becomes a
  user's;
- the plants removed (by the users), the next run writes every user's files, and the run after that changes nothing.

The role renders into temporary roots only (codex_system_config_dir, the homes); no server is read (no catalog).
"""
import hashlib
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.integration.codex_run import PLAYBOOK_ENV
from tests.lab.paths import REPO

TARGET = REPO / "tests" / "integration" / "targets" / "codex"
MARKER = "# Managed by Ansible (llmops.ollama.codex)"
TOKEN = "plant-test-token-9f3a"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="makes a user and writes as root")


class User:
    """One unprivileged user made for the test, with its home in the test's folder."""

    def __init__(self, base, name):
        self.name = name
        self.home = base / name
        subprocess.run(["useradd", "--create-home", "--home-dir", str(self.home), "--user-group",
                        "--shell", "/usr/sbin/nologin", name], check=True, capture_output=True)
        entry = pwd.getpwnam(name)
        self.uid, self.gid = entry.pw_uid, entry.pw_gid
        self.codex = self.home / ".codex"

    def as_user(self, *argv):
        subprocess.run(list(argv), check=True, user=self.uid, group=self.gid, extra_groups=[], cwd="/")

    def socket_at(self, path):
        code = "import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])"
        self.as_user("python3", "-c", code, str(path))

    def remove(self, path):
        self.as_user("rm", "-rf", str(path))


class Lab:
    """The users (one per set of plants), the other listed user's home and the root-owned targets, in one temporary
    folder."""

    def __init__(self, count):
        self.base = Path(tempfile.mkdtemp(prefix="codex-user-paths-"))
        os.chmod(str(self.base), 0o755)  # the users reach their homes through it
        self.users = []
        try:
            for index in range(count):
                self.users.append(User(self.base, "cxplant%d-%d" % (os.getpid() % 100000, index)))
        except subprocess.CalledProcessError:
            self.cleanup()
            raise
        self.other_home = self.base / "other"
        self.other_home.mkdir()
        # what the plants point at: root's, outside every home
        self.targets = self.base / "root-owned"
        (self.targets / "cron.d").mkdir(parents=True)
        (self.targets / "cron.d" / "job").write_text("* * * * * root true\n")
        for name, text in (("secret", "ROOT_ONLY=1\n"), ("linked", "root's file\n"), ("dotenv", "ROOT=1\n")):
            (self.targets / name).write_text(text)
            os.chmod(str(self.targets / name), 0o600)
        self.variables = {
            "codex_provider": "remote", "codex_remote_url": "http://127.0.0.1:9", "codex_remote_token": TOKEN,
            "codex_system_config_dir": str(self.base / "etc-codex"), "codex_model_catalog": False,
            "codex_profiles": {"fast": {"model": "small:1b"}},
            "codex_users": [{"name": u.name} for u in self.users] + [{"name": "nobody", "home": str(self.other_home)}],
        }

    def snapshot(self):
        """Owner, group, mode, links and sha256 of everything outside the users' homes (not following links)."""
        homes = [u.home for u in self.users]
        seen = {}
        for folder, dirs, files in os.walk(str(self.base)):
            if any(Path(folder) == h or h in Path(folder).parents for h in homes):
                continue
            for path in [folder] + [os.path.join(folder, n) for n in dirs + files]:
                if Path(path) in homes:
                    continue
                st = os.lstat(path)
                digest = None
                if stat.S_ISREG(st.st_mode):
                    with open(path, "rb") as f:
                        digest = hashlib.sha256(f.read()).hexdigest()
                links = None if stat.S_ISDIR(st.st_mode) else st.st_nlink
                seen[path] = (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), links, digest)
        return seen

    def cleanup(self):
        for user in self.users:
            subprocess.run(["userdel", user.name], check=False, capture_output=True)
        shutil.rmtree(str(self.base), ignore_errors=True)


@pytest.fixture(scope="module")
def lab():
    made = Lab(len(SETS))
    yield made
    made.cleanup()


def run(lab, check=False, playbook="render.yml"):
    from tests.conftest import run_playbook

    result = run_playbook(TARGET / playbook, extra_vars=lab.variables, check=check, env=PLAYBOOK_ENV)
    assert TOKEN not in result.output
    return result


def hard_link(user, target, path):
    """A hard link to a root-owned file, in the user's folder (see the module's docstring)."""
    with open("/proc/sys/fs/protected_hardlinks") as f:
        protected = f.read().strip() == "1"
    if protected:
        os.link(str(target), str(path))
    else:
        user.as_user("ln", str(target), str(path))


# Each set of plants, planted in one user's home: (path, what the refusal says it is, how it is made), from the
# user's ~/.codex `c` and the root-owned targets `t`. Every path the role writes gets each kind of plant in one set.
SETS = [
    lambda u, c, t: [(c, "a symbolic link (to %s)" % (t / "cron.d"),
                      lambda: u.as_user("ln", "-s", str(t / "cron.d"), str(c)))],
    lambda u, c, t: [(c, "a file, not a directory", lambda: u.as_user("touch", str(c)))],
    lambda u, c, t: [
        (c / "config.toml", "a symbolic link (to %s)" % (t / "linked"),
         lambda: u.as_user("ln", "-s", str(t / "linked"), str(c / "config.toml"))),
        (c / "fast.config.toml", "a hard link (the same file has 2 names)",
         lambda: hard_link(u, t / "secret", c / "fast.config.toml")),
        (c / ".env", "a symbolic link (to %s)" % (t / "dotenv"),
         lambda: u.as_user("ln", "-s", str(t / "dotenv"), str(c / ".env")))],
    lambda u, c, t: [
        (c / "config.toml", "a directory", lambda: u.as_user("mkdir", str(c / "config.toml"))),
        (c / "fast.config.toml", "a FIFO (named pipe)", lambda: u.as_user("mkfifo", str(c / "fast.config.toml"))),
        (c / ".env", "a hard link (the same file has 2 names)", lambda: hard_link(u, t / "dotenv", c / ".env"))],
    lambda u, c, t: [
        (c / "config.toml", "a socket", lambda: u.socket_at(c / "config.toml")),
        (c / "fast.config.toml", "a symbolic link (to %s)" % (t / "cron.d"),
         lambda: u.as_user("ln", "-s", str(t / "cron.d"), str(c / "fast.config.toml"))),
        (c / ".env", "a FIFO (named pipe)", lambda: u.as_user("mkfifo", str(c / ".env")))],
]


def test_plants_in_a_users_home_are_refused_named_and_escape_nothing(lab):
    plants = []  # (user, path, what it is, how it is made)
    for user, make in zip(lab.users, SETS):
        planted = make(user, user.codex, lab.targets)
        if planted[0][0] != user.codex:  # the plants are in a real ~/.codex of the user's
            user.as_user("mkdir", "-m", "0700", str(user.codex))
        plants.extend((user,) + p for p in planted)
    for _user, _path, _found, plant in plants:
        plant()
    before = lab.snapshot()

    runs = [("check", run(lab, check=True)), ("real", run(lab)), ("look failing", run(lab, playbook="look_fails.yml"))]
    after = lab.snapshot()
    escapes = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p)
                     and not p.startswith((str(lab.other_home), str(lab.base / "etc-codex"))))
    assert escapes == [], dict((p, (before.get(p), after.get(p))) for p in escapes)
    uids = set(u.uid for u in lab.users)
    assert not [p for p, attrs in after.items() if attrs[0] in uids], "a user got something outside its home"
    for label, result in runs:
        assert result.rc != 0, (label, result.output[-4000:])
        assert "Refused %d of the users' paths" % len(plants) in result.output, (label, result.output[-4000:])
        for _user, path, found, _plant in plants:
            assert "%s is %s" % (path, found) in result.output, (label, path, result.output[-4000:])
        # the other user's files were written, and the rest of the role ran
        if label != "check":
            assert (lab.other_home / ".codex" / "config.toml").read_text().startswith(MARKER)
            assert (lab.other_home / ".codex" / ".env").read_text() == "OLLAMA_REMOTE_TOKEN=%s\n" % TOKEN

    for user, path, _found, _plant in plants:
        user.remove(path)
    cleared = lab.snapshot()  # a hard link removed: its root-owned file has one link less
    first = run(lab)
    assert first.rc == 0, first.output[-4000:]
    for user in lab.users:
        for name in ("config.toml", "fast.config.toml"):
            st = os.lstat(str(user.codex / name))
            assert (st.st_uid, stat.S_IMODE(st.st_mode), st.st_nlink) == (user.uid, 0o600, 1), (user.name, name)
            assert (user.codex / name).read_text().startswith(MARKER)
        assert (user.codex / ".env").read_text() == "OLLAMA_REMOTE_TOKEN=%s\n" % TOKEN
        st = os.lstat(str(user.codex))
        assert stat.S_ISDIR(st.st_mode) and (st.st_uid, stat.S_IMODE(st.st_mode)) == (user.uid, 0o700)
    again = run(lab)
    assert again.rc == 0 and again.stats["localhost"]["changed"] == 0, again.output[-4000:]
    assert lab.snapshot() == cleared  # the runs after the plants changed nothing outside the homes either
    print("%d plants in %d users' homes, %d refused, %d escapes"
          % (len(plants), len(lab.users), len(plants), len(escapes)))
