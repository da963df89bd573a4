"""The staging directory on a host where others have accounts (issue "Root on machines other people use"): what another
user can put where ollama_import and the models role stage blobs, as root, is refused by name, and nothing is
written, read, followed or changed through it. The plants are made here as another user would make them (owned by
`nobody`, in a sticky world-writable directory standing for /var/tmp); the module runs in-process
(tests/lab/module_run.py) and the role through ansible-playbook (tests/integration/targets/models_bundle), against a
real `ollama serve`. A good staging directory still imports, and the next run after a plant is removed converges.
"""
import hashlib
import json
import os
import signal
import stat
import urllib.error
import urllib.request
from contextlib import contextmanager

import pytest

from ansible_collections.llmops.ollama.plugins.modules import ollama_import
from tests.lab import models
from tests.lab.module_run import assert_clear_failure, run_module
from tests.lab.ollama_server import OllamaServer
from tests.lab.paths import REPO
from tests.lab.scripted_http import ScriptedServer

NOBODY = 65534  # another account of the host: it owns what "she" plants
ROLE = REPO / "tests" / "integration" / "targets" / "models_bundle" / "playbook.yml"
TASKS = REPO / "tests" / "integration" / "targets" / "models_staging" / "playbook.yml"


@pytest.fixture(scope="module")
def server():
    with OllamaServer() as srv:
        yield srv


def listed(server):
    with urllib.request.urlopen(server.url + "/api/tags", timeout=10) as resp:
        return {m["name"]: m["digest"] for m in json.loads(resp.read())["models"]}


def imported(server, index):
    """The models of `index` the server lists."""
    return set(index["models"]) & set(listed(server))


def on_server(server, digest):
    try:
        urllib.request.urlopen(urllib.request.Request(server.url + "/api/blobs/" + digest, method="HEAD"), timeout=10)
        return True
    except urllib.error.HTTPError as exc:
        assert exc.code == 404, exc
        return False


def bundle(folder, name):
    """A bundle directory holding one synthetic model (as ollama_bundle writes it, index.json included); returns
    (its index, {blob file name: bytes})."""
    manifest, blobs = models.build(name, 1, 1 << 16)
    (folder / "blobs").mkdir(parents=True)
    files = {}
    for digest, data in blobs.items():
        files[digest.replace(":", "-")] = data
        (folder / "blobs" / digest.replace(":", "-")).write_bytes(data)
    index = {"models": {name: dict(digest=hashlib.sha256(manifest).hexdigest(), manifest=manifest.decode(),
                                   blobs=sorted(blobs), size=sum(len(b) for b in blobs.values()))}}
    (folder / "index.json").write_text(json.dumps(index))
    return index, files


def sticky_tmp(tmp_path):
    """A directory as /var/tmp is: root's, world-writable, sticky."""
    folder = tmp_path / "vartmp"
    folder.mkdir()
    folder.chmod(0o1777)
    return folder


def root_folder(tmp_path):
    """A folder of root's that a plant points at (standing for /etc/cron.d), with a file in it."""
    folder = tmp_path / "cron.d"
    folder.mkdir()
    folder.chmod(0o755)
    (folder / "job").write_text("# root's\n")
    return folder


def state(path):
    st = os.lstat(str(path))
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), sorted(os.listdir(str(path))) if stat.S_ISDIR(
        st.st_mode) else None


def plant_link(link, target):
    os.symlink(str(target), str(link))
    os.lchown(str(link), NOBODY, NOBODY)


def args(server, index, staging, **more):
    return dict(dict(base_url=server.url, models=list(index["models"]), index=index, staging_dir=str(staging),
                     models_dir=str(server.models_dir)), **more)


@contextmanager
def no_hang(seconds=60):
    """Fail instead of hanging (a FIFO opened for reading blocks until someone writes)."""
    def hung(*_):
        raise AssertionError("hung for %ds" % seconds)
    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def seed(root):
    """A web server for the bundle directory `root` (a seed host's)."""
    def script(h):
        path = root / h.path.lstrip("/")
        if not path.is_file():
            return h.reply(404, b"no such file", "text/plain")
        h.reply(200, path.read_bytes(), "application/octet-stream")
    return ScriptedServer(script)


# -- the module -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["staged", "bundle_url"])
def test_a_staging_dir_that_is_a_link_someone_put_there_is_refused(server, tmp_path, how):
    index, files = bundle(tmp_path / "bundle", "site.example:5000/team/link-%s:latest" % how)
    target = root_folder(tmp_path)
    staging = sticky_tmp(tmp_path) / "ollama-bundle"
    plant_link(staging, target)
    before = state(target)
    with seed(tmp_path / "bundle") as srv:
        more = dict(bundle_url="http://127.0.0.1:%d" % srv.port) if how == "bundle_url" else {}
        if how == "staged":  # the blobs are where the link leads, as if copied through it
            for name, data in files.items():
                (target / name).write_bytes(data)
            before = state(target)
        for check in (True, False):
            code, result = run_module(ollama_import, dict(args(server, index, staging, **more),
                                                          _ansible_check_mode=check))
            assert_clear_failure(code, result)
            assert result["msg"].startswith("staging_dir %s is a symbolic link (to %s), which is not followed"
                                            % (staging, target)), result["msg"]
            assert "Remove the link" in result["msg"]
        assert srv.seen == []  # nothing was fetched for the link
    assert state(target) == before and not imported(server, index)


def test_a_staging_dir_another_user_owns_is_refused(server, tmp_path):
    index, files = bundle(tmp_path / "bundle", "site.example:5000/team/hers:latest")
    staging = sticky_tmp(tmp_path) / "ollama-bundle"
    staging.mkdir(mode=0o755)
    for name, data in files.items():  # her copies of the blobs, which she could swap for links at any time
        (staging / name).write_bytes(data)
        os.chown(str(staging / name), NOBODY, NOBODY)
    os.chown(str(staging), NOBODY, NOBODY)
    before = state(staging)
    code, result = run_module(ollama_import, args(server, index, staging))
    assert_clear_failure(code, result)
    assert result["msg"].startswith("staging_dir %s is owned by nobody (uid %d, mode 0755), not by root"
                                    % (staging, NOBODY)), result["msg"]
    assert state(staging) == before and not imported(server, index)


@pytest.mark.parametrize("mode,says", [(0o777, "can be written by its group or others (mode 0777)"),
                                       (0o770, "can be written by its group or others (mode 0770)")])
def test_a_staging_dir_others_can_write_is_refused(server, tmp_path, mode, says):
    index, files = bundle(tmp_path / "bundle", "site.example:5000/team/open:latest")
    staging = tmp_path / "staging"
    staging.mkdir()
    staging.chmod(mode)
    for name, data in files.items():
        (staging / name).write_bytes(data)
    code, result = run_module(ollama_import, args(server, index, staging))
    assert_clear_failure(code, result)
    assert result["msg"].startswith("staging_dir %s %s" % (staging, says)), result["msg"]
    assert not imported(server, index)


def test_a_directory_above_it_others_can_write_and_is_not_sticky_is_refused(server, tmp_path):
    index, files = bundle(tmp_path / "bundle", "site.example:5000/team/above:latest")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # anyone may rename the staging directory away and put hers in its place
    staging = shared / "staging"
    staging.mkdir(mode=0o700)
    for name, data in files.items():
        (staging / name).write_bytes(data)
    code, result = run_module(ollama_import, args(server, index, staging))
    assert_clear_failure(code, result)
    assert result["msg"].startswith("%s, on the way to staging_dir %s, can be written by its group or others and is "
                                    "not sticky (mode 0777)" % (shared, staging)), result["msg"]
    assert not imported(server, index)


@pytest.mark.parametrize("plant", ["fifo", "link", "hard link"])
def test_a_blob_name_that_is_not_a_regular_file_is_refused_by_name(server, tmp_path, plant):
    index, files = bundle(tmp_path / "bundle", "site.example:5000/team/fifo:latest")
    staging = tmp_path / "staging"
    staging.mkdir(mode=0o700)
    names = sorted(files)
    for name in names[1:]:
        (staging / name).write_bytes(files[name])
    planted = staging / names[0]
    target = tmp_path / "secret"
    target.write_bytes(files[names[0]])  # even the blob's own bytes, elsewhere, are not read through it
    if plant == "fifo":
        os.mkfifo(str(planted))
    elif plant == "link":
        os.symlink(str(target), str(planted))
    else:
        os.link(str(target), str(planted))
    what = {"fifo": "is a FIFO (named pipe), not a staged blob, and is not opened",
            "link": "is a symbolic link (to %s), not a staged blob, and is not followed" % target,
            "hard link": "is a hard link (the same file has 2 names), not a staged blob, and is not read"}[plant]
    with no_hang():
        for check in (True, False):
            code, result = run_module(ollama_import, dict(args(server, index, staging), _ansible_check_mode=check))
            assert_clear_failure(code, result)
            assert result["msg"].startswith("%s %s" % (planted, what)), result["msg"]
    assert not imported(server, index)
    assert os.path.lexists(str(planted)) and target.read_bytes() == files[names[0]]


@pytest.mark.parametrize("plant", ["link", "fifo"])
def test_a_download_writes_through_nothing_left_at_its_partial_file(server, tmp_path, plant):
    """A download from bundle_url goes to <blob>.partial, then is renamed: whatever is at that name (a leftover of an
    interrupted run; only root can put anything in a staging directory that passed the checks) is removed, not
    written through, nor opened."""
    index, files = bundle(tmp_path / "bundle", "site.example:5000/team/partial-%s:latest" % plant)
    staging = tmp_path / "staging"
    staging.mkdir(mode=0o700)
    target = tmp_path / "elsewhere"
    target.write_text("root's\n")
    for name in (n for n in files if not on_server(server, n.replace("-", ":", 1))):  # those it downloads
        if plant == "link":
            os.symlink(str(target), str(staging / (name + ".partial")))
        else:
            os.mkfifo(str(staging / (name + ".partial")))
    with seed(tmp_path / "bundle") as srv, no_hang():
        code, result = run_module(ollama_import, args(server, index, staging,
                                                      bundle_url="http://127.0.0.1:%d" % srv.port))
    assert code == 0 and result["changed"], result
    assert target.read_text() == "root's\n" and list(staging.iterdir()) == []


def test_a_good_staging_dir_imports_and_a_missing_one_is_made_root_only(server, tmp_path):
    """Staged by copies (as the role does): imported, the staged blobs removed. From a seed into a missing staging
    directory in a sticky world-writable one: made, root's, 0700, and imported."""
    index, files = bundle(tmp_path / "bundle", "site.example:5000/team/good:latest")
    staging = tmp_path / "staging"
    staging.mkdir(mode=0o700)
    files = dict((n, d) for n, d in files.items() if not on_server(server, n.replace("-", ":", 1)))  # as planned
    for name, data in files.items():
        (staging / name).write_bytes(data)
    code, result = run_module(ollama_import, args(server, index, staging))
    assert code == 0 and result["changed"] and result["staged_bytes"] == sum(len(d) for d in files.values()), result
    assert list(staging.iterdir()) == []
    code, again = run_module(ollama_import, args(server, index, staging))
    assert code == 0 and not again["changed"], again

    index, files = bundle(tmp_path / "bundle2", "site.example:5000/team/seeded:latest")
    made = sticky_tmp(tmp_path) / "ollama-bundle"
    with seed(tmp_path / "bundle2") as srv:
        code, result = run_module(ollama_import, args(server, index, made, bundle_url="http://127.0.0.1:%d" % srv.port))
    assert code == 0 and result["changed"], result
    st = os.lstat(str(made))
    assert stat.S_ISDIR(st.st_mode) and (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o700)
    assert {"site.example:5000/team/good:latest", "site.example:5000/team/seeded:latest"} <= set(listed(server))


# -- the role ---------------------------------------------------------------------------------------------------------

def role(playbook, server, tmp_path, staging, name, check=False):
    """The models role with a bundle carried in (no fetch), staging in `staging`; returns the run."""
    return playbook(ROLE, check=check, extra_vars=dict(
        server_url=server.url, results_file=str(tmp_path / "results.json"), ollama_models=[name],
        ollama_models_source="bundle", ollama_models_bundle_dir=str(tmp_path / "bundle"),
        ollama_models_bundle_fetch=False, ollama_models_base_url=server.url,
        ollama_models_store_dir=str(server.models_dir), ollama_models_staging_dir=str(staging)))


def test_the_role_follows_no_link_planted_as_its_staging_dir_and_converges_once_it_is_gone(playbook, server,
                                                                                           tmp_path):
    name = "site.example:5000/team/role-link:latest"
    index, _files = bundle(tmp_path / "bundle", name)
    target = root_folder(tmp_path)
    staging = sticky_tmp(tmp_path) / "ollama-bundle"
    plant_link(staging, target)
    before = state(target)
    for check in (True, False):
        run = role(playbook, server, tmp_path, staging, name, check=check)
        assert run.rc != 0, run.output[-3000:]
        assert "staging_dir %s is a symbolic link (to %s), which is not followed" % (staging, target) in run.output
        assert "Traceback" not in run.output
    assert state(target) == before and name not in listed(server)  # not chowned, not chmodded, nothing copied in
    staging.unlink()
    run = role(playbook, server, tmp_path, staging, name)
    assert run.rc != 0 and "is missing, and the directory it would be made in" in run.output  # /var/tmp-like: refused
    staging.mkdir(mode=0o700)  # made by root, as the message says
    run = role(playbook, server, tmp_path, staging, name)
    assert run.rc == 0, run.output[-3000:]
    assert listed(server)[name] == index["models"][name]["digest"]
    assert list(staging.iterdir()) == []


@pytest.mark.parametrize("plant", ["link", "file", "hers", "open", "missing in a sticky directory",
                                   "missing with its directory"])
def test_the_roles_own_checks_before_it_makes_the_staging_dir(playbook, server, tmp_path, plant):
    """The role's checks in tasks/import.yml, reached with a plan given (as when the staging directory changed after
    ollama_import's plan looked at it): a link, a file, a folder of another user's, one others can write, and a
    missing one it would have to make where another user could make hers (or a link) first. Nothing is changed,
    followed or copied; a good staging directory, made by the role, then imports."""
    name = "site.example:5000/team/tasks-%s:latest" % plant.replace(" ", "-")
    index, files = bundle(tmp_path / "bundle", name)
    vartmp = sticky_tmp(tmp_path)
    staging = vartmp / "ollama-bundle"
    target = root_folder(tmp_path)
    if plant == "link":
        plant_link(staging, target)
    elif plant == "file":
        staging.write_text("hers")
        os.chown(str(staging), NOBODY, NOBODY)
    elif plant == "hers":
        staging.mkdir(mode=0o700)
        os.chown(str(staging), NOBODY, NOBODY)
    elif plant == "open":
        staging.mkdir()
        staging.chmod(0o777)
    elif plant == "missing with its directory":
        staging = tmp_path / "no-such" / "ollama-bundle"
    before = [state(target), state(staging) if os.path.lexists(str(staging)) else None]
    digests = [d for d in index["models"][name]["blobs"] if not on_server(server, d)]  # as the plan lists them
    plan = dict(missing_blobs=[dict(digest=d, size=len(files[d.replace(":", "-")])) for d in digests])

    def run_tasks(staging_dir):
        return playbook(TASKS, extra_vars=dict(
            plan=plan, ollama_models=[name], ollama_models_bundle_dir=str(tmp_path / "bundle"),
            ollama_models_base_url=server.url, ollama_models_store_dir=str(server.models_dir),
            ollama_models_staging_dir=str(staging_dir)))

    run = run_tasks(staging)
    assert run.rc != 0, run.output[-3000:]
    says = {"link": "ollama_models_staging_dir %s is a symbolic link (to %s), which the role does not follow"
                    % (staging, target),
            "file": "ollama_models_staging_dir %s is not a directory (mode 0644, owned by nobody)" % staging,
            "hers": "ollama_models_staging_dir %s is owned by nobody (uid %d, mode 0700), not by root"
                    % (staging, NOBODY),
            "open": "ollama_models_staging_dir %s can be written by its group or others (mode 0777)" % staging,
            "missing in a sticky directory": "ollama_models_staging_dir %s is missing, and the directory it would "
                                             "be made in, %s, is writable by its group or others (mode 1777)"
                                             % (staging, vartmp),
            "missing with its directory": "ollama_models_staging_dir %s is missing, and so is %s, which the role "
                                          "does not make" % (staging, staging.parent)}[plant]
    fatal = [line for line in run.output.splitlines() if line.startswith("fatal: ")]
    assert len(fatal) == 1 and says in fatal[0] and "\\n" not in fatal[0], run.output[-3000:]  # one line, no breaks
    assert "TASK [llmops.ollama.models : Make the staging directory]" not in run.output
    assert "Traceback" not in run.output
    assert [state(target), state(staging) if os.path.lexists(str(staging)) else None] == before
    assert name not in listed(server)
    good = tmp_path / "root-only" / "ollama-bundle"
    good.parent.mkdir()
    run = run_tasks(good)
    assert run.rc == 0, run.output[-3000:]
    assert listed(server)[name] == index["models"][name]["digest"]
    st = os.lstat(str(good))
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o700) and list(good.iterdir()) == []
