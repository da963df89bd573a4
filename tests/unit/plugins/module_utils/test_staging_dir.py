"""ollama_import's staging directory (module_utils/_staging.py) on a host where others have accounts: the walk from /
follows root's links only, resolves `..` as the kernel does, makes a missing directory root's with mode 0700, and a
staged blob is opened only when it is a regular file with one link. The ollama_import tests against a real server
(tests/integration/test_staging.py) cover what the task says; these cover the walk's own cases. The plants are made
as another account would make them (owned by `nobody`), which needs root."""
import os
import socket
import stat

import pytest

from ansible_collections.llmops.ollama.plugins.module_utils._staging import UnsafeStaging, open_blob, staging_dir

NOBODY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="plants owned by another account need root")


def test_a_link_of_roots_on_the_way_is_followed_and_the_real_path_is_used(tmp_path):
    (tmp_path / "real" / "staging").mkdir(parents=True, mode=0o700)
    os.symlink("real", str(tmp_path / "via"))  # as /var/run -> /run
    assert staging_dir(str(tmp_path / "via" / "staging")) == (str(tmp_path / "real" / "staging"), True)
    # `..` after a link goes up from where the link leads, as the kernel resolves it
    (tmp_path / "real" / "sub").mkdir()
    os.symlink("real/sub", str(tmp_path / "deep"))
    assert staging_dir(str(tmp_path / "deep" / ".." / "staging")) == (str(tmp_path / "real" / "staging"), True)


def test_a_link_another_account_owns_on_the_way_is_not_followed(tmp_path):
    (tmp_path / "real" / "staging").mkdir(parents=True, mode=0o700)
    os.symlink(str(tmp_path / "real"), str(tmp_path / "via"))
    os.lchown(str(tmp_path / "via"), NOBODY, NOBODY)
    with pytest.raises(UnsafeStaging) as err:
        staging_dir(str(tmp_path / "via" / "staging"))
    assert str(err.value).startswith("%s, on the way to staging_dir %s, is a symbolic link (to %s) owned by nobody "
                                     "(uid %d, mode 0777), which is not followed"
                                     % (tmp_path / "via", tmp_path / "via" / "staging", tmp_path / "real", NOBODY))


def test_a_directory_on_the_way_another_account_owns_is_refused(tmp_path):
    (tmp_path / "hers" / "staging").mkdir(parents=True, mode=0o700)
    os.chown(str(tmp_path / "hers"), NOBODY, NOBODY)
    (tmp_path / "hers").chmod(0o755)
    with pytest.raises(UnsafeStaging) as err:
        staging_dir(str(tmp_path / "hers" / "staging"))
    assert str(err.value).startswith("%s, on the way to staging_dir %s, is owned by nobody (uid %d, mode 0755), who "
                                     "could replace what is in it" % (tmp_path / "hers", tmp_path / "hers" / "staging",
                                                                      NOBODY))


def test_a_loop_of_links_is_refused(tmp_path):
    os.symlink("b", str(tmp_path / "a"))
    os.symlink("a", str(tmp_path / "b"))
    with pytest.raises(UnsafeStaging) as err:
        staging_dir(str(tmp_path / "a" / "staging"))
    assert "more than 40 symbolic links on the way" in str(err.value)


def test_a_missing_one_is_looked_at_and_made_only_when_asked(tmp_path):
    sticky = tmp_path / "vartmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    wanted = sticky / "a" / "ollama-bundle"
    assert staging_dir(str(wanted)) == (str(wanted), False)
    assert not (sticky / "a").exists()
    assert staging_dir(str(wanted), make=True) == (str(wanted), True)
    modes = [(os.lstat(str(p)).st_uid, stat.S_IMODE(os.lstat(str(p)).st_mode)) for p in (sticky / "a", wanted)]
    assert modes == [(0, 0o755 & ~_umask()), (0, 0o700)]


def test_what_another_account_made_first_in_a_sticky_directory_is_refused_not_used(tmp_path):
    sticky = tmp_path / "vartmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    (sticky / "ollama-bundle").mkdir(mode=0o700)
    os.chown(str(sticky / "ollama-bundle"), NOBODY, NOBODY)
    with pytest.raises(UnsafeStaging) as err:
        staging_dir(str(sticky / "ollama-bundle"), make=True)
    assert "is owned by nobody (uid %d, mode 0700), not by root" % NOBODY in str(err.value)


def test_a_relative_path_is_taken_from_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "staging").mkdir(mode=0o700)
    monkeypatch.chdir(str(tmp_path))
    assert staging_dir("staging") == (str(tmp_path / "staging"), True)


def test_only_a_regular_file_with_one_link_is_opened(tmp_path):
    (tmp_path / "blob").write_bytes(b"data")
    with open_blob(str(tmp_path), "blob") as f:
        assert f.read() == b"data"
    assert open_blob(str(tmp_path), "none") is None
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tmp_path / "sock"))
        (tmp_path / "dir").mkdir()
        for name, says in (("sock", "is a socket, not a staged blob"), ("dir", "is a directory, not a staged blob")):
            with pytest.raises(UnsafeStaging) as err:
                open_blob(str(tmp_path), name)
            assert str(err.value).startswith("%s %s, and is not opened" % (tmp_path / name, says))
    finally:
        sock.close()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
