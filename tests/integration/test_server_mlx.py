"""The server role's MLX archive (ollama_server_mlx) through ansible-playbook on this machine: its refusals, its
marker in the role's declaration, and the MLX part (roles/server/tasks/mlx.yml) adding it to a version directory.

Ollama's release workflow (.github/workflows/release.yaml) puts every `lib/ollama/mlx*` member of its amd64 build
into `ollama-linux-amd64-mlx.tar.zst`, beside the main archive and listed in the release's sha256sum.txt; its MLX
build installs into `lib/ollama/mlx_cuda_v13` (Dockerfile, cmake/mlx/CMakePresets.json). There is no arm64 one.

The archives here are STAND-INS with that layout, made by this test: a text file named `libmlx.so` is not MLX, and
the main archive's `bin/ollama` is a shell script that prints a version. A loopback HTTP server serves them as a
site mirror serves a release (<base>/v<version>/<asset> beside sha256sum.txt). The role installs into a temporary
root; no link points at the version there, so nothing is restarted (the fleet test, tests/fleet/test_gpu.py, runs
the role on real hosts, with the server).
"""
import hashlib
import json
import shutil

import pytest

# root is a fixture of that file, used here by name
from tests.integration.test_install_routine import Mirror, make_archive, root, tree  # noqa: F401 pylint: disable=unused-import
from tests.lab.ansible_run import run_playbook
from tests.lab.paths import REPO
from tests.lab.versions import OLLAMA

PREFLIGHT = REPO / "tests" / "integration" / "targets" / "server_preflight" / "preflight.yml"
MLX = REPO / "tests" / "integration" / "targets" / "server_mlx" / "mlx.yml"
ASSET = "ollama-linux-amd64-mlx.tar.zst"
MARKER = "." + ASSET + ".sha256"
ARCH_TASK = "Require an architecture that Ollama ships the MLX archive for"
RELEASE_TASK = "Require a final release for the MLX archive from Ollama's own downloads"
OFFICIAL = "https://github.com/ollama/ollama/releases/download"


def failure(run):
    """(failed task, its message) of a run, or (None, '')."""
    lines = run.output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("fatal: [localhost]: FAILED! => "):
            title = [t for t in lines[:i] if t.startswith("TASK [")][-1]
            task = title[len("TASK ["):].rstrip("* ").rstrip("]").split(" : ", 1)[-1]
            return task, json.loads(line[len("fatal: [localhost]: FAILED! => "):])["msg"]
    return None, ""


def mlx_preflight(**settings):
    return run_playbook(PREFLIGHT, extra_vars=dict(settings, server_tasks="mlx_preflight", ollama_server_mlx=True))


def test_an_architecture_without_the_mlx_archive_is_refused_with_what_to_set():
    """As on an aarch64 host: its architecture given as its facts (this machine is x86_64)."""
    run = mlx_preflight(ansible_facts={"architecture": "aarch64"})
    assert run.rc != 0
    assert failure(run) == (ARCH_TASK, (
        "localhost: ollama_server_mlx is on, but Ollama ships its MLX archive (ollama-linux-amd64-mlx) for x86_64 "
        "only, not for aarch64. Nothing was changed. Set ollama_server_mlx: false for this host (safetensors "
        "models, which need MLX, cannot run on it; GGUF models can).")), run.output[-3000:]


def test_amd64_passes():
    run = mlx_preflight()
    assert run.rc == 0 and failure(run) == (None, ""), run.output[-3000:]


def test_a_pre_release_whose_mlx_archive_would_come_from_ollamas_downloads_is_refused():
    run = mlx_preflight(ollama_server_version="0.35.0-rc1")
    task, msg = failure(run)
    assert task == RELEASE_TASK, run.output[-3000:]
    assert msg.startswith("ollama_server_version 0.35.0-rc1 is a pre-release, and the role would fetch its MLX "
                          "archive from Ollama's own release downloads (%s/v0.35.0-rc1/%s, %s/v0.35.0-rc1/sha256sum.txt)."
                          % (OFFICIAL, ASSET, OFFICIAL)), msg
    assert "ollama_server_mlx_archive_url with ollama_server_mlx_archive_checksum" in msg, msg
    assert "ollama_server_mlx: false" in msg, msg


@pytest.mark.parametrize("settings", [
    {"ollama_server_download_base_url": "https://mirror.example.com/ollama"},
    {"ollama_server_mlx_archive_src": "/srv/files/" + ASSET},
], ids=["mirror", "controller-file"])
def test_a_pre_release_whose_mlx_archive_comes_from_a_mirror_or_the_controller_passes(settings):
    run = mlx_preflight(ollama_server_version="0.35.0-rc1", **settings)
    assert run.rc == 0 and failure(run) == (None, ""), run.output[-3000:]


def declared_version_paths(**settings):
    """The version part of the role's declaration (its `declaration` entry point) with these settings."""
    run = run_playbook(PREFLIGHT, extra_vars=dict(settings, server_tasks="declaration"), args=["-v"])
    assert run.rc == 0, run.output[-3000:]
    line = [l for l in run.output.splitlines() if l.startswith('ok: [localhost] => {"ansible_facts": {"ollama_server_declaration"')]
    assert len(line) == 1, run.output[-3000:]
    return json.loads(line[0].split(" => ", 1)[1])["ansible_facts"]["ollama_server_declaration"]["version"]["paths"]


def test_the_declaration_holds_the_marker_of_each_archive_the_settings_add():
    """The look finds a version without the MLX archive (or a GPU archive set by name) different, so that a host
    missing it converges and a host that has it runs nothing."""
    vdir = "/opt/ollama/versions/%s" % OLLAMA
    base = [{"path": vdir + "/bin/ollama"}, {"path": "/opt/ollama/current", "type": "link", "target": vdir},
            {"path": "/usr/local/bin/ollama", "type": "link", "target": "/opt/ollama/current/bin/ollama"}]
    assert declared_version_paths() == base
    assert declared_version_paths(ollama_server_mlx=True) == base + [{"path": vdir + "/" + MARKER}]
    assert declared_version_paths(ollama_server_mlx=True, ollama_server_gpu_archive="rocm") == base + [
        {"path": vdir + "/" + MARKER}, {"path": vdir + "/.ollama-linux-amd64-rocm.tar.zst.sha256"}]
    # auto is picked on the host by the GPU part, which runs every time on a host with GPUs
    assert declared_version_paths(ollama_server_gpu_archive="auto") == base


def mlx_standin(version):
    """An MLX archive STAND-IN with the real paths, lib/ollama/mlx_cuda_v13/ (not MLX; files only, where Ollama's
    archive has an entry for the mlx_cuda_v13 folder too)."""
    note = "Stand-in for the MLX libraries of Ollama %s, made by tests/integration/test_server_mlx.py: not MLX.\n"
    return {"lib/ollama/mlx_cuda_v13/libmlx.so": (0o755, note % version),
            "lib/ollama/mlx_cuda_v13/include/STAND-IN.txt": (0o644, note % version)}


def release_standin(version):
    """A main archive STAND-IN: bin/ollama prints the version, as `ollama --version` does."""
    return {"bin/ollama": (0o755, "#!/bin/sh\necho 'ollama version is %s'\n" % version),
            "lib/ollama/libggml-base.so": (0o644, "stand-in\n")}


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """<url>/v<OLLAMA>/: the stand-in main and MLX archives and their sha256sum.txt (lines `<hex>  ./<asset>`, as
    Ollama's release workflow writes them); <url>/damaged/v<OLLAMA>/: the same list, with an MLX archive whose bytes
    are not the listed ones."""
    folder = tmp_path_factory.mktemp("mlx-mirror")
    vdir = folder / ("v" + OLLAMA)
    vdir.mkdir()
    archives = [make_archive(vdir, "ollama-linux-amd64.tar.zst", release_standin(OLLAMA)),
                make_archive(vdir, ASSET, mlx_standin(OLLAMA))]
    sums = "".join("%s  ./%s\n" % (hashlib.sha256(a.read_bytes()).hexdigest(), a.name) for a in archives)
    (vdir / "sha256sum.txt").write_text(sums)
    damaged = folder / "damaged" / ("v" + OLLAMA)
    damaged.mkdir(parents=True)
    shutil.copy(str(vdir / "sha256sum.txt"), str(damaged / "sha256sum.txt"))
    (damaged / ASSET).write_bytes((vdir / ASSET).read_bytes()[:-16] + b"\0" * 16)
    served = Mirror(folder)
    served.folder = folder
    yield served
    served.stop()


def settings(mirror, root, **more):
    found = {"ollama_server_mlx": True, "ollama_server_version": OLLAMA,
             "ollama_server_drift": {"version": ["as the look found it"]},
             "ollama_server_download_base_url": mirror.url, "ollama_server_install_dir": str(root / "opt"),
             "ollama_server_cache_dir": str(root / "cache"), "ollama_server_bin_link": str(root / "ollama")}
    found.update(more)
    return found


def add_mlx(variables, check=False):
    """ansible-playbook under umask 027, as on a hardened host (the added folders must not depend on it)."""
    return run_playbook(MLX, extra_vars=variables, check=check, umask=0o027)


def sums_line(mirror):
    return [l for l in (mirror.folder / ("v" + OLLAMA) / "sha256sum.txt").read_text().splitlines() if l.endswith(ASSET)][0]


def test_a_new_version_is_unpacked_and_the_mlx_archive_added_to_it(mirror, root):
    run = add_mlx(settings(mirror, root))
    assert run.rc == 0, run.output[-4000:]
    vdir = root / "opt" / "versions" / OLLAMA
    assert (vdir / "bin" / "ollama").is_file()  # the release, unpacked first
    added = vdir / "lib" / "ollama" / "mlx_cuda_v13"
    assert "not MLX" in (added / "libmlx.so").read_text()
    assert oct(added.stat().st_mode & 0o777) == oct(0o755) and oct((added / "include").stat().st_mode & 0o777) == oct(0o755)
    assert (vdir / MARKER).read_text() == sums_line(mirror).split()[0] + "\n"
    assert sorted(p.name for p in (root / "opt" / "versions").iterdir()) == [OLLAMA]  # no staging folder left

    before = tree(root)
    again = add_mlx(settings(mirror, root))
    assert again.rc == 0 and again.changed() == {"localhost": 0}, again.output[-4000:]
    assert tree(root) == before


def installed(found):
    """A tree without the download cache."""
    return dict((path, entry) for path, entry in found.items() if path.split("/")[0] != "cache")


@pytest.fixture
def unpacked(mirror, root):
    """The version unpacked without the MLX archive (as before ollama_server_mlx was turned on), and its tree."""
    run = add_mlx(settings(mirror, root, ollama_server_mlx_archive_url=mirror.url + "/none"))
    # the release unpacked, the MLX archive not found
    assert run.rc != 0 and "Could not get a verified %s %s from %s/none: " % (ASSET, OLLAMA, mirror.url) in run.output, \
        run.output[-3000:]
    vdir = root / "opt" / "versions" / OLLAMA
    assert (vdir / "bin" / "ollama").is_file() and not (vdir / "lib" / "ollama" / "mlx_cuda_v13").exists()
    return tree(root)


def test_check_mode_says_what_would_be_added_and_changes_nothing(mirror, root, unpacked):
    run = add_mlx(settings(mirror, root), check=True)
    assert run.rc == 0 and run.changed()["localhost"] >= 1, run.output[-4000:]
    assert ("Would add %s %s from %s/v%s/%s (sha256 %s) to %s/opt/versions/%s."
            % (ASSET, OLLAMA, mirror.url, OLLAMA, ASSET, sums_line(mirror).split()[0], root, OLLAMA)) in run.output
    assert tree(root) == unpacked


def test_a_damaged_archive_or_a_wrong_checksum_fails_and_changes_nothing(mirror, root, unpacked):
    listed = sums_line(mirror).split()[0]
    damaged = add_mlx(settings(mirror, root, ollama_server_download_base_url=mirror.url + "/damaged"))
    assert damaged.rc != 0
    got = hashlib.sha256((mirror.folder / "damaged" / ("v" + OLLAMA) / ASSET).read_bytes()).hexdigest()
    assert ("Could not get a verified %s %s from %s/damaged/v%s/%s: its sha256 is %s, expected %s (checksum "
            "mismatch). Nothing was installed; the running version is unchanged."
            % (ASSET, OLLAMA, mirror.url, OLLAMA, ASSET, got, listed)) in damaged.output, damaged.output[-3000:]
    wrong = add_mlx(settings(mirror, root, ollama_server_mlx_archive_checksum="sha256:" + "0" * 64))
    assert wrong.rc != 0 and "(checksum mismatch). Nothing was installed" in wrong.output, wrong.output[-3000:]
    bad = add_mlx(settings(mirror, root, ollama_server_mlx_archive_checksum="md5:abc"))
    assert failure(bad) == ("Require a checksum", (
        'No sha256 for %s: ollama_server_mlx_archive_checksum is not a sha256. Set '
        'ollama_server_mlx_archive_checksum to "sha256:<hex>", or ollama_server_mlx: false to install without it.'
        % ASSET)), bad.output[-3000:]
    # what the server runs and the command's link are as they were; the download cache may have seen a temporary
    # file come and go (ansible-core 2.16's get_url makes one beside the archive: the folder's time changes)
    assert installed(tree(root)) == installed(unpacked)
