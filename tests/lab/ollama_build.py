"""Build the real Ollama server, with the llama.cpp runner that runs models, and package it like the release archives.

What the official `ollama-linux-amd64.tar.zst` holds, made here from source with nothing fetched from GitHub:

- `bin/ollama`: `go install github.com/ollama/ollama@v<version>` through the Go module proxy (cgo on), with the
  version stamped in as the release workflow does (`-X .../version.Version=<version>`);
- `lib/ollama/`: `llama-server`, `llama-quantize` and the ggml/llama libraries, built with CMake from the module's
  own `llama/server` project, the CPU variant (`--preset cpu`, one CPU backend instead of all variants). Ollama's
  CMake fetches llama.cpp from GitHub; here `OLLAMA_LLAMA_CPP_SOURCE` points it at the llama.cpp tree vendored in
  the `llama-cpp-python` sdist from PyPI (tests/lab/versions.py; docs/lab.md says how that differs from the
  release's llama.cpp).

Laid out in LAB_CACHE:

    ollama/<version>/bin/ollama, ollama/<version>/lib/ollama/...   the unpacked tree (tests run `ollama serve` from it)
    mirror/v<version>/ollama-linux-amd64.tar.zst + sha256sum.txt     the release layout, served to the fleet
    src/llama.cpp-<sdist version>/                                  the llama.cpp source
    logs/build-<version>.log                                        every command's output

Each part is made in a temporary folder and renamed into place when complete, under a lock, so an interrupted or
concurrent build never leaves a half-made tree. Compiler caches stay outside LAB_CACHE and warm: Go's build and
module caches, and ccache (when installed) for the C++ build, so a build into an empty LAB_CACHE takes a minute
or two on a machine that has built before.

    python3 -m tests.lab.ollama_build [VERSION ...]     # default: the lab's versions
"""
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from tests.lab.errors import LabError, disk_full, need_space, need_tools
from tests.lab.paths import LAB_CACHE
from tests.lab.versions import LLAMA_CPP_SDIST, OLLAMA_VERSIONS

# The server role's default release and the one the upgrade/rollback tests go to and from (tests/lab/versions.py).
VERSIONS = OLLAMA_VERSIONS
ASSET = "ollama-linux-amd64.tar.zst"
MIRROR = LAB_CACHE / "mirror"
LOGS = LAB_CACHE / "logs"
MODULE = "github.com/ollama/ollama"
# What lib/ollama must hold for `ollama serve` to run a model on the CPU and `ollama create` to quantize.
RUNNER_FILES = ("llama-server", "llama-quantize")
NEEDED_SPACE = 3 * 10 ** 9  # a build's peak: module copy, CMake tree, llama.cpp source, archive
# Bump when the way a tree or an archive is made changes: caches made another way are then rebuilt, not reused.
RECIPE = 2
# How the archive is packed (the mirror's PACKING, beside BUILD-INFO): an archive packed another way is packed again
# from the tree, which is kept.
PACKING = ("Packed as the release workflow packs it: the members bin/* and lib/ollama/*, owner and group 0, no\n"
           "directory entries for bin/, lib/ or lib/ollama/ (packing 2).\n")


def tree(version):
    """The unpacked release: bin/ollama and lib/ollama/."""
    return LAB_CACHE / "ollama" / version


def binary_path(version):
    return tree(version) / "bin" / "ollama"


def archive_path(version):
    return MIRROR / ("v" + version) / ASSET


def log_path(version):
    return LOGS / ("build-%s.log" % version)


def build_info(version):
    """What a tree (lib/ollama/BUILD-INFO) and its archive (a copy beside it) say about how they were made."""
    return ("Ollama %s built from its Go module for the llmops.ollama test lab (recipe %d). lib/ollama is the CPU\n"
            "runner built from the llama.cpp tree of the %s %s sdist, without Ollama's compat patch (docs/lab.md).\n"
            % (version, RECIPE, LLAMA_CPP_SDIST[0], LLAMA_CPP_SDIST[1]))


def _read(path):
    try:
        return path.read_text()
    except OSError:
        return None


def _tree_complete(version):
    lib = tree(version) / "lib" / "ollama"
    return (binary_path(version).is_file() and all((lib / f).is_file() for f in RUNNER_FILES)
            and _read(lib / "BUILD-INFO") == build_info(version))


def _complete(version):
    """The tree and the archive are there and were made from this recipe (an older cache is rebuilt)."""
    mirror = archive_path(version).parent
    return (_tree_complete(version) and archive_path(version).is_file() and (mirror / "sha256sum.txt").is_file()
            and _read(mirror / "BUILD-INFO") == build_info(version) and _read(mirror / "PACKING") == PACKING)


def say(msg):
    print("lab: " + msg, flush=True)


@contextmanager
def _locked(name):
    """An exclusive lock on LAB_CACHE/.<name>.lock: two clones or test workers build a thing once."""
    LAB_CACHE.mkdir(parents=True, exist_ok=True)
    with open(LAB_CACHE / (".%s.lock" % name), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _run(cmd, log, what, cwd=None, env=None):
    """Run a build command with its output appended to `log`; a failure is one LabError naming the log."""
    with open(log, "ab") as out:
        out.write(("\n$ %s\n" % " ".join(str(c) for c in cmd)).encode())
        out.flush()
        rc = subprocess.call([str(c) for c in cmd], cwd=str(cwd) if cwd else None, env=env, stdout=out,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if rc != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        raise LabError("%s failed (exit %d): %s -- the whole output is in %s" % (what, rc, tail[0][:300], log))


# ---------------------------------------------------------------- the parts

def _go_env(extra=None):
    env = dict(os.environ, CGO_ENABLED="1", GOFLAGS="-mod=mod")
    env.update(extra or {})
    return env


def _go_binary(version, dest, log):
    """bin/ollama from the Go module, into `dest` (a folder)."""
    ldflags = "-s -w -X %s/version.Version=%s" % (MODULE, version)
    _run(["go", "install", "-trimpath", "-ldflags", ldflags, "%s@v%s" % (MODULE, version)], log,
         "building Ollama %s with Go" % version, cwd=tempfile.gettempdir(), env=_go_env({"GOBIN": str(dest)}))


def _module_source(version, log):
    """The module's source folder in Go's module cache (read-only; downloaded through the proxy if needed)."""
    with open(log, "ab") as out:
        proc = subprocess.run(["go", "mod", "download", "-json", "%s@v%s" % (MODULE, version)], env=_go_env(),
                              cwd=tempfile.gettempdir(), stdout=subprocess.PIPE, stderr=out, check=False)
    try:
        info = json.loads(proc.stdout.decode() or "{}")
    except ValueError:
        info = {}
    if proc.returncode or not info.get("Dir"):
        raise LabError("the Go module proxy did not give %s@v%s (%s); check that the version exists (%s) and the "
                       "proxy is reachable" % (MODULE, version, info.get("Error") or "see %s" % log,
                                               "https://proxy.golang.org/%s/@v/v%s.info" % (MODULE, version)))
    return Path(info["Dir"])


def llama_cpp_source():
    """The llama.cpp tree of the pinned llama-cpp-python sdist, fetched from PyPI once and checked by sha256."""
    project, version, sha256 = LLAMA_CPP_SDIST
    final = LAB_CACHE / "src" / ("llama.cpp-%s" % version)
    if (final / "CMakeLists.txt").is_file():
        return final
    with _locked("llama-cpp-source"):
        if (final / "CMakeLists.txt").is_file():
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=str(final.parent), prefix=".fetch-"))
        try:
            say("fetching the llama.cpp source (%s %s sdist, 77 MB) from PyPI" % (project, version))
            sdist = staging / "sdist.tar.gz"
            _download(_sdist_url(project, version), sdist, sha256)
            with tarfile.open(sdist) as tar:
                prefix = "%s-%s/vendor/llama.cpp/" % (project.replace("-", "_"), version)
                members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
                if not members:
                    raise LabError("the %s %s sdist has no vendor/llama.cpp; pin another version in "
                                   "tests/lab/versions.py" % (project, version))
                for m in members:
                    m.name = m.name[len(prefix):]
                kwargs = {"filter": "tar"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(staging / "tree", members=[m for m in members if m.name], **kwargs)
            os.rename(staging / "tree", final)
        except OSError as exc:
            raise disk_full(exc, final.parent, "unpacking the llama.cpp source") or exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return final


def _sdist_url(project, version):
    """The sdist's URL from PyPI's JSON API (a relative URL is resolved against the API's address)."""
    api = "https://pypi.org/pypi/%s/json" % project
    try:
        with urllib.request.urlopen(api, timeout=60) as resp:
            data = json.loads(resp.read().decode())
    except (OSError, ValueError) as exc:
        raise LabError("could not read %s (%s): check that PyPI is reachable" % (api, exc))
    for f in data.get("releases", {}).get(version, []):
        if f.get("packagetype") == "sdist":
            return urllib.parse.urljoin(api, f["url"])
    raise LabError("PyPI lists no sdist of %s %s; pin another version in tests/lab/versions.py" % (project, version))


def _download(url, dest, sha256):
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=120) as resp, open(dest, "wb") as out:
            for block in iter(lambda: resp.read(1 << 20), b""):
                h.update(block)
                out.write(block)
    except OSError as exc:
        raise disk_full(exc, dest.parent, "downloading %s" % url) or LabError("downloading %s failed: %s" % (url, exc))
    if h.hexdigest() != sha256:
        raise LabError("%s has sha256 %s, not the pinned %s; nothing was kept" % (url, h.hexdigest(), sha256))


def _runner(version, source, dest, log):
    """lib/ollama/ (llama-server, llama-quantize, the ggml libraries) with CMake, installed under `dest`."""
    work = Path(tempfile.mkdtemp(dir=str(LAB_CACHE / "src"), prefix=".ollama-%s-" % version))
    try:
        shutil.copytree(str(source), str(work / "ollama"), copy_function=shutil.copy)  # the cache copy is read-only
        for root, dirs, files in os.walk(str(work / "ollama")):
            for name in dirs + files:
                os.chmod(os.path.join(root, name), 0o755 if name in dirs else 0o644)
        env = dict(os.environ, OLLAMA_LLAMA_CPP_SOURCE=str(llama_cpp_source()),
                   CCACHE_BASEDIR=str(LAB_CACHE), CCACHE_NOHASHDIR="1")
        configure = ["cmake", "-S", "llama/server", "--preset", "cpu", "-DGGML_CPU_ALL_VARIANTS=OFF",
                     "-DFETCHCONTENT_FULLY_DISCONNECTED=ON"]
        if shutil.which("ccache"):
            configure += ["-DCMAKE_C_COMPILER_LAUNCHER=ccache", "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"]
        src = work / "ollama"
        _run(configure, log, "configuring Ollama %s's llama-server with CMake" % version, cwd=src, env=env)
        _run(["cmake", "--build", "build/llama-server-cpu", "--target", "llama-server", "llama-quantize", "ggml-cpu",
              "-j%d" % max(1, os.cpu_count() or 1)], log, "building Ollama %s's llama-server" % version, cwd=src,
             env=env)
        _run(["cmake", "--install", "build/llama-server-cpu", "--component", "llama-server", "--prefix", dest], log,
             "installing Ollama %s's llama-server" % version, cwd=src, env=env)
    finally:
        shutil.rmtree(str(work), ignore_errors=True)
    lib = Path(dest) / "lib" / "ollama"
    missing = [f for f in RUNNER_FILES if not (lib / f).is_file()]
    if missing:
        raise LabError("the CMake build of Ollama %s installed no %s; see %s" % (version, ", ".join(missing), log))


def _members(src_tree):
    """The release workflow's member list (`bin/*`, `lib/ollama/*`, one `tar c -T list`): what a listed folder holds
    is packed with it, but bin/, lib/ and lib/ollama/ themselves are not members."""
    listed = sorted((src_tree / "bin").iterdir()) + sorted((src_tree / "lib" / "ollama").iterdir())
    for path in listed:
        yield path
        if path.is_dir() and not path.is_symlink():
            for folder, dirs, files in os.walk(str(path)):
                dirs.sort()
                for name in sorted(dirs) + sorted(files):
                    yield Path(folder) / name


def _write_archive(src_tree, dest):
    """Pack bin/ and lib/ollama/ of `src_tree` into a .tar.zst the way the release workflow does (`tar c -T list
    --owner 0 --group 0 | zstd`): no directory entries for bin/, lib/ or lib/ollama/, so that unpacking makes them
    with the umask of whoever unpacks (a host's umask 027 gives 0750 folders)."""
    tar = dest.with_name(dest.name + ".tar")

    def root_owned(info):
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    try:
        with tarfile.open(tar, "w", format=tarfile.GNU_FORMAT) as t:
            for path in _members(src_tree):
                t.add(str(path), arcname=str(path.relative_to(src_tree)), recursive=False, filter=root_owned)
        subprocess.run(["zstd", "-q", "-T0", "-f", str(tar), "-o", str(dest)], check=True)
    finally:
        if tar.exists():
            tar.unlink()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build(version):
    """Return the packaged archive of `version`, building what is missing (the unpacked tree, then the archive)."""
    if _complete(version):
        return archive_path(version)
    need_tools(("go", "golang-go"), ("cmake", "cmake"), ("c++", "g++"), ("zstd", "zstd"))
    with _locked("build-%s" % version):
        if _complete(version):
            return archive_path(version)
        need_space(LAB_CACHE, NEEDED_SPACE, "building Ollama %s" % version)
        LOGS.mkdir(parents=True, exist_ok=True)
        (LAB_CACHE / "src").mkdir(parents=True, exist_ok=True)
        log = log_path(version)
        log.write_text("")
        try:
            if not _tree_complete(version):
                _build_tree(version, log)
            _package(version)
        except OSError as exc:
            raise disk_full(exc, LAB_CACHE, "building Ollama %s" % version) or exc
    return archive_path(version)


def _build_tree(version, log):
    final = tree(version)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=str(final.parent), prefix=".build-%s-" % version))
    try:
        started = time.time()
        say("building Ollama %s: bin/ollama from the Go module (log: %s)" % (version, log))
        (staging / "bin").mkdir()
        _go_binary(version, staging / "bin", log)
        go_done = time.time()
        say("building Ollama %s: lib/ollama/llama-server with CMake (Go part took %.0fs)" % (version, go_done - started))
        _runner(version, _module_source(version, log), staging, log)
        (staging / "lib" / "ollama" / "BUILD-INFO").write_text(build_info(version))
        os.chmod(str(staging), 0o755)
        if final.exists():
            shutil.rmtree(str(final))
        os.rename(str(staging), str(final))
        say("built Ollama %s in %.0fs (Go %.0fs, CMake %.0fs)"
            % (version, time.time() - started, go_done - started, time.time() - go_done))
    finally:
        shutil.rmtree(str(staging), ignore_errors=True)


def _package(version):
    archive = archive_path(version)
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(ASSET + ".partial")
    _write_archive(tree(version), partial)
    digest = sha256_file(partial)
    os.replace(partial, archive)
    sums = archive.parent / "sha256sum.txt"
    sums.with_name("sha256sum.txt.partial").write_text("%s  ./%s\n" % (digest, ASSET))
    os.replace(sums.with_name("sha256sum.txt.partial"), sums)
    (archive.parent / "PACKING").write_text(PACKING)
    (archive.parent / "BUILD-INFO").write_text(build_info(version))  # last: the archive is complete


def main(argv):
    try:
        for version in argv or VERSIONS:
            path = build(version.lstrip("v"))
            print("%s  %s" % (path, sha256_file(path)[:16]))
    except LabError as exc:
        sys.exit("lab: error: %s" % exc)


if __name__ == "__main__":
    main(sys.argv[1:])
