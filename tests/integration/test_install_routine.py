"""The collection's internal install routine (roles/_install) through ansible-playbook, on this machine.

The routine runs on localhost (connection local) into a temporary root, called as the roles call it
(targets/install/install.yml: their stat guard, then include_role), on archives made here the way Ollama makes its
release archives, `tar c -T list --owner 0 --group 0 | zstd`: files only, no directory entries. ansible-playbook
runs under umask 027, as on a hardened host: tar then makes the archive's directories 0750, and a service user
could not reach the binary (systemd's 203/EXEC) unless the routine opens them. A loopback HTTP server serves the
archives and their sha256sum.txt, and records what was asked of it.
"""
import functools
import hashlib
import os
import shutil
import stat
import tempfile
import subprocess
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pathlib import Path

from tests.lab.paths import REPO

PLAYBOOK = REPO / "tests" / "integration" / "targets" / "install" / "install.yml"


def make_archive(folder, name, files):
    """folder/name: {path: (mode, text)} as a zstd tarball of files only, owned by 0, as Ollama's release archives."""
    tree = folder / (name + ".tree")
    for path, (mode, text) in files.items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_text(text)
        (tree / path).chmod(mode)
    with open(folder / name, "wb") as out:
        tar = subprocess.Popen(["tar", "c", "-T", "-", "--owner", "0", "--group", "0"], cwd=str(tree),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        zstd = subprocess.Popen(["zstd", "-q"], stdin=tar.stdout, stdout=out)
        tar.stdout.close()
        tar.communicate("".join(p + "\n" for p in files).encode())
        assert zstd.wait() == 0 and tar.returncode == 0
    return folder / name


def tool(version, says=None):
    return {"bin/tool": (0o755, "#!/bin/sh\necho 'tool version %s'\n" % (says or version)),
            "lib/tool/data.txt": (0o600, "data of %s\n" % version),   # readable by its owner only in the archive
            "lib/tool/helper.sh": (0o700, "#!/bin/sh\necho helper\n")}


class Mirror:
    """The archives and their sha256sum.txt on loopback; hits lists "METHOD /path" of every request."""

    def __init__(self, folder):
        self.hits = []
        mirror = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args):
                mirror.hits.append("%s %s" % (self.command, self.path))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    folder = tmp_path_factory.mktemp("install-mirror")
    archives = [make_archive(folder, "tool-1.0.tar.zst", tool("1.0")),
                make_archive(folder, "tool-2.0.tar.zst", tool("2.0")),
                make_archive(folder, "tool-gpu.tar.zst", {"lib/tool/gpu/libgpu.so": (0o644, "not a GPU library\n")})]
    (folder / "sha256sum.txt").write_text("".join(
        "%s  %s\n" % (hashlib.sha256(a.read_bytes()).hexdigest(), a.name) for a in archives))
    served = Mirror(folder)
    served.folder = folder
    yield served
    served.stop()


@pytest.fixture
def root():
    """An empty folder that every user may enter (pytest's root is not), for the routine to install into."""
    folder = Path(tempfile.mkdtemp(prefix="install-routine-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(str(folder))


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def options(mirror, root, version="1.0", **more):
    """The options a caller gives the routine for the release tool-<version>.tar.zst."""
    name = "tool-%s.tar.zst" % version
    opts = {"_install_name": name, "_install_what": "Tool " + version, "_install_version": version,
            "_install_url": "%s/%s" % (mirror.url, name), "_install_checksum_list": mirror.url + "/sha256sum.txt",
            "_install_archive": str(root / "cache" / name), "_install_dest": str(root / "versions" / version),
            "_install_check": ["bin/tool", "--version"], "_install_check_expect": "tool version " + version,
            "_install_links": [{"src": str(root / "versions" / version / "bin" / "tool"), "dest": str(root / "tool")}],
            "install_test_binary": "bin/tool", "install_test_restarted": str(root / "restarted")}
    opts.update(more)
    return opts


def install(variables, check=False):
    """ansible-playbook under umask 027 (the routine's directories must not depend on it)."""
    from tests.conftest import run_playbook

    return run_playbook(PLAYBOOK, extra_vars=variables, check=check, umask=0o027)


def tree(root):
    """{relative path: (mode, link target or sha256 or None)} of everything under root, links not followed."""
    found = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        what = (os.readlink(path) if stat.S_ISLNK(st.st_mode) else
                sha256(path) if stat.S_ISREG(st.st_mode) else None)
        found[str(path.relative_to(root))] = (stat.S_IMODE(st.st_mode), st.st_mtime_ns, what)
    return found


def version_in_use(found):
    """The part of tree() a failed install of another version must leave as it was."""
    return {k: v for k, v in found.items() if k in ("current", "tool") or k.startswith("versions/1.0")}


def mode(path):
    return stat.S_IMODE(path.lstat().st_mode)


def test_the_archives_have_no_directory_entries(mirror):
    listing = subprocess.run(["tar", "-tvf", str(mirror.folder / "tool-1.0.tar.zst")], stdout=subprocess.PIPE,
                             universal_newlines=True, check=True).stdout.splitlines()
    assert len(listing) == 3 and not [line for line in listing if line.startswith("d")]


def test_check_mode_reports_the_install_and_writes_nothing(mirror, root):
    del mirror.hits[:]
    run = install(options(mirror, root), check=True)
    assert run.rc == 0, run.output[-4000:]
    assert run.changed()["localhost"] >= 2
    sums = hashlib.sha256((mirror.folder / "tool-1.0.tar.zst").read_bytes()).hexdigest()
    assert ("Would unpack Tool 1.0 from %s/tool-1.0.tar.zst (sha256 %s) into %s/versions/1.0."
            % (mirror.url, sums, root)) in run.output
    assert list(root.iterdir()) == []
    assert mirror.hits == ["GET /sha256sum.txt"]  # the checksum list is read; the archive is not fetched


def test_an_archive_without_directory_entries_gives_0755_directories_and_a_runnable_binary(mirror, root):
    del mirror.hits[:]
    first = install(options(mirror, root))
    assert first.rc == 0, first.output[-4000:]
    version = root / "versions" / "1.0"
    directories = [version] + [p for p in version.rglob("*") if p.is_dir()]
    assert sorted(str(p.relative_to(version)) for p in directories) == [".", "bin", "lib", "lib/tool"]
    assert {str(p.relative_to(version)): oct(mode(p)) for p in directories} == dict.fromkeys(
        [".", "bin", "lib", "lib/tool"], oct(0o755))
    assert mode(version / "bin" / "tool") == 0o755
    assert mode(version / "lib" / "tool" / "helper.sh") == 0o755  # its own execute bit, now for all
    assert mode(version / "lib" / "tool" / "data.txt") == 0o644  # readable by all, not executable
    assert all(p.lstat().st_uid == 0 for p in version.rglob("*"))
    assert os.readlink(root / "tool") == str(version / "bin" / "tool")
    # runnable by anyone, through the link
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(root / "tool")],
                         stdout=subprocess.PIPE, universal_newlines=True, check=False)
    assert out.stdout.strip() == "tool version 1.0"
    assert sorted(p.name for p in (root / "versions").iterdir()) == ["1.0"]  # no staging directory left
    assert sha256(root / "cache" / "tool-1.0.tar.zst") == sha256(mirror.folder / "tool-1.0.tar.zst")
    assert mirror.hits == ["GET /sha256sum.txt", "GET /tool-1.0.tar.zst"]

    before = tree(root)
    second = install(options(mirror, root))
    assert second.rc == 0 and second.changed() == {"localhost": 0}, second.output[-4000:]
    assert tree(root) == before
    assert len(mirror.hits) == 2  # the caller's guard found the version: nothing fetched, nothing read


@pytest.fixture
def in_use(mirror, root):
    """root with version 1.0 installed and in use (root/current), and its tree as it was then."""
    run = install(options(mirror, root))
    assert run.rc == 0, run.output[-4000:]
    (root / "current").symlink_to(root / "versions" / "1.0")
    return tree(root)


def test_a_checksum_mismatch_fails_and_leaves_the_version_in_use_untouched(mirror, root, in_use):
    wrong = "0" * 64
    run = install(options(mirror, root, "2.0", _install_checksum="sha256:" + wrong))
    assert run.rc != 0
    assert ("Could not get a verified tool-2.0.tar.zst 2.0 from %s/tool-2.0.tar.zst: its sha256 is %s, expected %s "
            "(checksum mismatch). Nothing was installed; the running version is unchanged."
            % (mirror.url, sha256(mirror.folder / "tool-2.0.tar.zst"), wrong)) in run.output
    assert run.changed() == {"localhost": 0}
    assert sorted(p.name for p in (root / "versions").iterdir()) == ["1.0"]  # no staging directory, no 2.0
    assert sorted(p.name for p in (root / "cache").iterdir()) == ["tool-1.0.tar.zst"]
    assert version_in_use(tree(root)) == version_in_use(in_use)


def test_a_version_that_fails_its_check_is_not_put_in_place(mirror, root, in_use):
    run = install(options(mirror, root, "2.0", _install_check_expect="tool version 2.1"))
    assert run.rc != 0
    said = [line for line in run.output.splitlines() if "Could not unpack" in line]
    assert said, run.output[-3000:]
    for part in ("Could not unpack Tool 2.0 from %s/cache/tool-2.0.tar.zst: " % root, "tool version 2.0",
                 "The running version is unchanged."):
        assert part in said[0], said[0]
    assert sorted(p.name for p in (root / "versions").iterdir()) == ["1.0"]  # the staging directory is removed
    assert version_in_use(tree(root)) == version_in_use(in_use)


def test_an_archive_on_the_controller_is_verified_there(mirror, root, in_use):
    src = str(mirror.folder / "tool-2.0.tar.zst")  # its checksum from the sha256sum.txt beside it
    del mirror.hits[:]
    wrong = "sha512:" + "ab" * 64
    refused = install(options(mirror, root, "2.0", _install_src=src, _install_checksum=wrong))
    assert refused.rc != 0
    assert ("%s has sha512 %s, expected %s. Nothing was installed; the running version is unchanged."
            % (src, hashlib.sha512((mirror.folder / "tool-2.0.tar.zst").read_bytes()).hexdigest(), "ab" * 64)
            ) in refused.output
    assert refused.changed() == {"localhost": 0} and tree(root) == in_use

    missing = install(options(mirror, root, "2.0", _install_src=src + ".missing", _install_checksum=wrong))
    assert missing.rc != 0
    assert "%s.missing does not exist on the controller. Nothing was installed" % src in missing.output

    run = install(options(mirror, root, "2.0", _install_src=src))
    assert run.rc == 0, run.output[-4000:]
    assert mode(root / "versions" / "2.0" / "lib" / "tool") == 0o755
    assert subprocess.run([str(root / "tool")], stdout=subprocess.PIPE, universal_newlines=True,
                          check=False).stdout.strip() == "tool version 2.0"
    assert mirror.hits == []  # nothing asked of the mirror


def test_an_archive_added_to_a_version_is_hard_linked_marked_and_restarts_it_when_in_use(mirror, root, in_use):
    version = root / "versions" / "1.0"
    gpu = {"_install_name": "tool-gpu.tar.zst", "_install_version": "1.0",
           "_install_url": mirror.url + "/tool-gpu.tar.zst", "_install_checksum_list": mirror.url + "/sha256sum.txt",
           "_install_archive": str(root / "cache" / "1.0" / "tool-gpu.tar.zst"), "_install_dest": str(version),
           "_install_staging": str(version) + ".gpu-partial", "_install_place": "add",
           "_install_in_use_link": str(root / "current"), "_install_notify": ["install test restart"],
           "install_test_restarted": str(root / "restarted")}
    check = install(gpu, check=True)
    assert check.rc == 0 and check.changed()["localhost"] >= 1, check.output[-4000:]
    assert tree(root) == in_use

    # added to a version not in use: no restart
    del mirror.hits[:]
    run = install(dict(gpu, _install_in_use_link=str(root / "no-link")))
    assert run.rc == 0, run.output[-4000:]
    added = version / "lib" / "tool" / "gpu"
    assert mode(added) == 0o755 and (added / "libgpu.so").read_text() == "not a GPU library\n"
    marker = version / ".tool-gpu.tar.zst.sha256"
    assert marker.read_text() == sha256(mirror.folder / "tool-gpu.tar.zst") + "\n"
    assert not (root / "restarted").exists()
    assert sorted(p.name for p in (root / "versions").iterdir()) == ["1.0"]  # the staging directory is gone
    assert {k: v for k, v in tree(root).items() if k.startswith("versions/1.0/bin")} == {
        k: v for k, v in in_use.items() if k.startswith("versions/1.0/bin")}

    # added again (no marker) to the version in use (root/current points at it): its handler runs
    marker.unlink()
    run = install(gpu)
    assert run.rc == 0, run.output[-4000:]
    assert marker.is_file() and (root / "restarted").is_file()

    (root / "restarted").unlink()
    again = install(gpu)
    assert again.rc == 0 and again.changed() == {"localhost": 0}, again.output[-4000:]
    assert not (root / "restarted").exists()
    # the archive was fetched once; each run reads the checksum list before it reads the marker
    assert mirror.hits == ["GET /sha256sum.txt", "GET /tool-gpu.tar.zst", "GET /sha256sum.txt", "GET /sha256sum.txt"]
