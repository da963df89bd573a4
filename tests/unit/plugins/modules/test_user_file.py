"""llmops.ollama.user_file on real directories, as root, with what a user can plant in their own home: a link to a
root-owned folder or file, a hard link to a root-owned file, a FIFO, a directory where the file goes, a folder of
another account. Each is refused with a message that names it, and nothing outside the home changes. The module
runs in-process (main(), real exit_json/fail_json); the user is `nobody`, the other account `daemon`.
"""
import contextlib
import hashlib
import io
import json
import os
import pwd
import signal
import stat

import pytest

from ansible_collections.llmops.ollama.plugins.modules import ollama_state, user_file
from ansible_collections.llmops.ollama.tests.unit.compat import patch_module_args

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="writes files owned by other users: runs as root")

USER = pwd.getpwnam("nobody")
OTHER = pwd.getpwnam("daemon")
MARKER = "# Managed by a test"
SECRET = "s3cret-value-never-shown"


def run(module, args):
    """main() with `args`; (exit code, the result it printed)."""
    out, code = io.StringIO(), None
    with patch_module_args(args), contextlib.redirect_stdout(out):
        try:
            module.main()
        except SystemExit as exc:
            code = exc.code
    return code, json.loads(out.getvalue().strip().splitlines()[-1])


def write(home, name, check=False, diff=False, **args):
    """user_file for nobody at home/name: (exit code, result)."""
    options = dict(path=str(home / name), root=str(home), owner=USER.pw_name, mode="0600", dir_mode="0700",
                   _ansible_check_mode=check, _ansible_diff=diff)
    options.update(args)
    if "content" not in options and "key" not in options:
        options["content"] = MARKER + "\nmodel = \"x\"\n"
    return run(user_file, options)


def snapshot(*paths):
    """Owner, group, mode, link count and sha256 of each path (not following links), and of what is in a folder."""
    seen = {}
    for top in paths:
        for folder, dirs, files in os.walk(str(top)) if os.path.isdir(str(top)) else [(str(top), [], [])]:
            for path in [folder] + [os.path.join(folder, n) for n in dirs + files]:
                st = os.lstat(path)
                digest = None
                if stat.S_ISREG(st.st_mode):
                    with open(path, "rb") as f:
                        digest = hashlib.sha256(f.read()).hexdigest()
                links = st.st_nlink if not stat.S_ISDIR(st.st_mode) else None
                seen[path] = (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), links, st.st_ino, digest)
    return seen


@pytest.fixture
def home(tmp_path):
    """A home of nobody's, and beside it a root-owned folder with a root-owned file (what a plant points at)."""
    folder = tmp_path / "home"
    folder.mkdir()
    os.chmod(str(folder), 0o700)
    os.chown(str(folder), USER.pw_uid, USER.pw_gid)
    root_dir = tmp_path / "root-only"
    root_dir.mkdir(mode=0o755)
    (root_dir / "secret").write_text("root's line\n")
    os.chmod(str(root_dir / "secret"), 0o600)
    return folder


def rooted(home):
    """The root-owned folder beside the home (with its root-owned file, secret)."""
    return home.parent / "root-only"


def refused(code, result, path, found):
    assert code == 1 and result["failed"] and result["refused"], result
    assert result["msg"].startswith("%s is %s" % (path, found)), result["msg"]
    assert "the next run writes" in result["msg"], result["msg"]


# ---------------------------------------------------------------------------------------------------------------
# What a user can plant


def test_a_linked_directory_is_refused_and_its_target_keeps_its_owner(home):
    os.symlink(str(rooted(home)), str(home / ".codex"))
    before = snapshot(rooted(home))
    for check in (True, False):
        code, result = write(home, ".codex/config.toml", check=check)
        refused(code, result, home / ".codex", "a symbolic link (to %s)" % rooted(home))
    assert snapshot(rooted(home)) == before
    assert not (rooted(home) / "config.toml").exists()


def test_a_linked_file_is_refused_and_its_target_unchanged(home):
    (home / ".codex").mkdir()
    os.chown(str(home / ".codex"), USER.pw_uid, USER.pw_gid)
    os.symlink(str(rooted(home) / "secret"), str(home / ".codex" / ".env"))
    before = snapshot(rooted(home))
    code, result = write(home, ".codex/.env", key="TOKEN", value=SECRET)
    refused(code, result, home / ".codex" / ".env", "a symbolic link (to %s)" % (rooted(home) / "secret"))
    assert snapshot(rooted(home)) == before
    assert SECRET not in json.dumps(result)


def test_a_hard_link_to_a_root_file_is_refused_unread(home):
    """fs.protected_hardlinks=1 keeps a user from linking root's file; root makes the link, as a user could where
    the setting is off."""
    (home / ".codex").mkdir()
    os.chown(str(home / ".codex"), USER.pw_uid, USER.pw_gid)
    os.link(str(rooted(home) / "secret"), str(home / ".codex" / ".env"))
    before = snapshot(rooted(home))
    code, result = write(home, ".codex/.env", key="TOKEN", value=SECRET, diff=True)
    refused(code, result, home / ".codex" / ".env", "a hard link (the same file has 2 names)")
    assert snapshot(rooted(home)) == before
    assert "root's line" not in json.dumps(result)


def test_a_fifo_is_refused_without_blocking(home):
    (home / ".codex").mkdir()
    os.mkfifo(str(home / ".codex" / "config.toml"))
    signal.alarm(10)  # a read or write on the FIFO would block for ever
    try:
        code, result = write(home, ".codex/config.toml")
    finally:
        signal.alarm(0)
    refused(code, result, home / ".codex" / "config.toml", "a FIFO (named pipe)")
    assert stat.S_ISFIFO(os.lstat(str(home / ".codex" / "config.toml")).st_mode)


def test_a_directory_where_the_file_goes_is_refused(home):
    (home / ".codex" / "config.toml").mkdir(parents=True)
    code, result = write(home, ".codex/config.toml")
    refused(code, result, home / ".codex" / "config.toml", "a directory")


def test_a_file_where_a_directory_goes_is_refused(home):
    (home / ".codex").write_text("")
    code, result = write(home, ".codex/config.toml")
    refused(code, result, home / ".codex", "a file, not a directory")


def test_a_folder_of_another_account_is_refused(home):
    (home / "work" / ".codex").mkdir(parents=True)
    os.chown(str(home / "work"), OTHER.pw_uid, OTHER.pw_gid)
    code, result = write(home, "work/.codex/config.toml")
    refused(code, result, home / "work", "owned by daemon, not by nobody or root")
    assert os.stat(str(home / "work")).st_uid == OTHER.pw_uid


def test_a_users_link_above_the_home_is_not_followed_but_roots_own_is(home, tmp_path):
    """Above root (the anchor), a link is followed only when root owns it and its folder, which only root writes."""
    system = tmp_path / "system"
    system.mkdir(mode=0o755)
    os.symlink(str(tmp_path), str(system / "homes"))  # the system's own link, as /home -> /var/home
    code, result = run(user_file, dict(path=str(system / "homes" / "home" / "a.toml"), root=str(system / "homes" / "home"),
                                       owner=USER.pw_name, content="x\n"))
    assert code == 0 and result["changed"], result
    assert (home / "a.toml").read_text() == "x\n"
    users = tmp_path / "users"
    users.mkdir()
    os.chown(str(users), USER.pw_uid, USER.pw_gid)
    os.symlink(str(rooted(home)), str(users / "mine"))
    os.lchown(str(users / "mine"), USER.pw_uid, USER.pw_gid)
    code, result = run(user_file, dict(path=str(users / "mine" / "h" / "a.toml"), root=str(users / "mine" / "h"),
                                       owner=USER.pw_name, content="x\n"))
    refused(code, result, users / "mine", "a symbolic link (to %s)" % rooted(home))
    assert not (rooted(home) / "h").exists()


def test_a_refusal_can_be_reported_instead_of_failing(home):
    os.symlink(str(rooted(home)), str(home / ".codex"))
    code, result = write(home, ".codex/config.toml", refusal="report")
    assert code == 0 and result["refused"] and not result["changed"], result
    assert result["msg"].startswith("%s is a symbolic link" % (home / ".codex")), result


# ---------------------------------------------------------------------------------------------------------------
# What it writes, and how


def test_a_missing_directory_is_made_and_nothing_else_changes_owner(home, tmp_path):
    os.chown(str(home), 0, 0)  # a root-owned home: it stays root's
    os.chmod(str(home), 0o755)
    before = snapshot(tmp_path / "root-only", home)
    code, result = write(home, "a/b/config.toml")
    assert code == 0 and result["changed"] and result["made"] == [str(home / "a"), str(home / "a" / "b")], result
    after = snapshot(tmp_path / "root-only", home)
    assert dict((p, after[p]) for p in before) == before  # what was there keeps its owner and mode
    for made in (home / "a", home / "a" / "b"):
        st = os.stat(str(made))
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (USER.pw_uid, USER.pw_gid, 0o700)
    st = os.stat(str(home / "a" / "b" / "config.toml"))
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (USER.pw_uid, USER.pw_gid, 0o600)


def test_the_file_is_replaced_atomically_never_written_in_place(home):
    assert write(home, "config.toml", content=MARKER + "\nold\n")[0] == 0
    path = str(home / "config.toml")
    with open(path, "rb") as old:
        inode = os.fstat(old.fileno()).st_ino
        code, result = write(home, "config.toml", content=MARKER + "\nnew\n")
        assert code == 0 and result["changed"], result
        assert old.read() == (MARKER + "\nold\n").encode()  # the old file was not written to
    assert os.stat(path).st_ino != inode
    assert sorted(os.listdir(str(home))) == ["config.toml"]  # no temporary file left


def test_check_mode_predicts_changed_exactly_and_changes_nothing(home):
    (home / "own").mkdir()
    os.chown(str(home / "own"), USER.pw_uid, USER.pw_gid)
    (home / "own" / "config.toml").write_text("# mine\n")
    steps = [
        ("new/config.toml", {}),  # a folder and a file to make
        ("new/config.toml", {}),  # the same again: nothing
        ("new/config.toml", dict(content=MARKER + "\nother\n")),
        ("new/config.toml", dict(content=MARKER + "\nother\n", mode="0640")),
        ("new/config.toml", dict(content=MARKER + "\nother\n", mode="0640", dir_mode="0750")),
        ("new/.env", dict(key="TOKEN", value=SECRET)),
        ("new/.env", dict(key="TOKEN", value=SECRET)),
        ("own/config.toml", dict(marker=MARKER)),  # the user's own: left alone
        ("own/config.toml", dict(marker=MARKER, force=True)),
    ]
    for name, args in steps:
        before = snapshot(home)
        code, check = write(home, name, check=True, **args)
        assert code == 0 and snapshot(home) == before, (name, args, check)
        code, real = write(home, name, **args)
        assert code == 0 and check["changed"] == real["changed"], (name, args, check, real)
        assert check["kept"] == real["kept"], (name, args, check, real)
    assert [p for p in os.listdir(str(home / "own")) if p.startswith("config.toml.")]  # the forced one's backup


def test_idempotent(home):
    for args in (dict(), dict(key="TOKEN", value=SECRET), dict(content="x\n", secret=True)):
        name = ".env" if "key" in args else "config.toml"
        assert write(home, name, **args)[1]["changed"] is True
        code, again = write(home, name, **args)
        assert code == 0 and again["changed"] is False, again


def test_the_diff_shows_no_secret(home):
    (home / ".env").write_text("OTHER=users-own-line\nTOKEN=old-value\n")
    os.chown(str(home / ".env"), USER.pw_uid, USER.pw_gid)
    code, result = write(home, ".env", key="TOKEN", value=SECRET, diff=True)
    assert code == 0 and result["changed"], result
    text = json.dumps(result)
    for hidden in (SECRET, "old-value", "users-own-line"):
        assert hidden not in text, (hidden, result)
    assert result["diff"][-1]["after"] == "TOKEN=(hidden) (changed)\n", result["diff"]
    assert (home / ".env").read_text() == "OTHER=users-own-line\nTOKEN=%s\n" % SECRET
    code, result = write(home, "s.toml", content="password = \"%s\"\n" % SECRET, secret=True, diff=True)
    assert code == 0 and SECRET not in json.dumps(result), result


def test_a_key_file_keeps_the_other_lines_and_one_line_of_the_key(home):
    (home / ".env").write_text("A=1\nTOKEN=first\nB=2\nTOKEN=second\nC=3")
    os.chown(str(home / ".env"), USER.pw_uid, USER.pw_gid)
    assert write(home, ".env", key="TOKEN", value="new")[0] == 0
    assert (home / ".env").read_text() == "A=1\nB=2\nTOKEN=new\nC=3"  # the other lines as they were
    # another account's file: its lines are not copied into the user's
    os.chown(str(home / ".env"), OTHER.pw_uid, OTHER.pw_gid)
    code, result = write(home, ".env", key="TOKEN", value="other")
    refused(code, result, home / ".env", "owned by daemon, not by nobody")


def test_a_users_own_file_is_kept_unless_forced_then_backed_up_as_it_was(home):
    (home / "config.toml").write_text("# mine\nmodel = \"mine\"\n")
    os.chmod(str(home / "config.toml"), 0o644)
    code, result = write(home, "config.toml", marker=MARKER)
    assert code == 0 and result["kept"] and result["users_own"] and not result["changed"], result
    code, result = write(home, "config.toml", marker=MARKER, force=True)
    assert code == 0 and result["changed"] and result["backup_file"].startswith(str(home / "config.toml.")), result
    backup = os.lstat(result["backup_file"])
    assert (backup.st_uid, stat.S_IMODE(backup.st_mode), backup.st_nlink) == (0, 0o644, 1)
    with open(result["backup_file"]) as f:
        assert f.read() == "# mine\nmodel = \"mine\"\n"
    assert (home / "config.toml").read_text().startswith(MARKER)
    assert write(home, "config.toml", marker=MARKER)[1]["changed"] is False  # now the caller's: nothing to do


def test_a_third_accounts_codex_home_is_given_back_when_dir_mode_is_set(home):
    (home / ".codex").mkdir(mode=0o711)
    os.chown(str(home / ".codex"), OTHER.pw_uid, OTHER.pw_gid)
    code, check = write(home, ".codex/config.toml", check=True, diff=True)
    assert code == 0 and check["changed"], check
    code, result = write(home, ".codex/config.toml")
    assert code == 0 and result["changed"], result
    st = os.stat(str(home / ".codex"))
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (USER.pw_uid, 0o700)


def test_bad_arguments_fail_clearly(home):
    code, result = write(home, ".env", key="TOKEN", value="two\nlines")
    assert code == 1 and "line break" in result["msg"] and "two" not in result["msg"], result
    code, result = write(home, "x", mode="0999")
    assert code == 1 and "is not an octal mode" in result["msg"], result
    code, result = write(home, "x", owner="no-such-user-here")
    assert code == 1 and "no-such-user-here is not a user" in result["msg"], result


# ---------------------------------------------------------------------------------------------------------------
# The look (ollama_state) reads these paths the same way


def test_the_look_says_a_planted_path_differs_and_reads_nothing_through_it(home):
    (home / ".codex").mkdir()
    os.chown(str(home / ".codex"), USER.pw_uid, USER.pw_gid)
    content = (rooted(home) / "secret").read_text()
    os.link(str(rooted(home) / "secret"), str(home / ".codex" / "config.toml"))
    os.mkfifo(str(home / ".codex" / "fifo.toml"))
    os.symlink(str(rooted(home)), str(home / "linked"))
    want = {"users": {"paths": [
        dict(path=str(home / ".codex" / "config.toml"), under=str(home), owner="nobody",
             sha256=hashlib.sha256(content.encode()).hexdigest()),
        dict(path=str(home / ".codex" / "fifo.toml"), under=str(home), owner="nobody", sha256="0" * 64),
        dict(path=str(home / "linked" / "secret"), under=str(home), owner="nobody",
             sha256=hashlib.sha256(content.encode()).hexdigest())]}}
    signal.alarm(10)
    try:
        code, result = run(ollama_state, dict(parts=want))
    finally:
        signal.alarm(0)
    assert code == 0, result
    drift = result["drift"]["users"]
    assert drift == [
        "%s: %s is a hard link (the same file has 2 names): nothing is read through it"
        % (home / ".codex" / "config.toml", home / ".codex" / "config.toml"),
        "%s: %s is a FIFO (named pipe): nothing is read through it"
        % (home / ".codex" / "fifo.toml", home / ".codex" / "fifo.toml"),
        "%s: %s is a symbolic link (to %s): nothing is read through it"
        % (home / "linked" / "secret", home / "linked", rooted(home))], drift
    # without under, the look reads through the link (the system's own paths)
    plain = dict(path=str(home / "linked" / "secret"), sha256=hashlib.sha256(content.encode()).hexdigest())
    code, result = run(ollama_state, dict(parts={"p": {"paths": [plain]}}))
    assert code == 0 and result["drift"] == {}, result


def test_no_descriptor_is_left_open(home):
    os.symlink(str(rooted(home)), str(home / "linked"))
    before = len(os.listdir("/proc/self/fd"))
    for _round in range(20):
        write(home, "linked/config.toml")
        write(home, "a/b/config.toml")
        write(home, "a/b/.env", key="TOKEN", value=SECRET)
    assert len(os.listdir("/proc/self/fd")) == before
