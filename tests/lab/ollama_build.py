"""Build the real Ollama server from its Go module and package it like the official release archives.

The archive has the official layout (`bin/ollama`, `lib/ollama/`) and the mirror the official download
path (`<base>/v<version>/ollama-linux-amd64.tar.zst` beside `sha256sum.txt`), so the `server` role installs
it exactly as it installs a GitHub release. Builds are cached under LAB_CACHE and never committed.

The build is the plain Go build (cgo on): it serves, lists, pulls, pushes, copies, deletes and shows
models. The llama.cpp runner (`lib/ollama/llama-server`) needs CMake and a llama.cpp download that this
network does not allow, so `lib/ollama/` carries only a note saying so.

    python3 -m tests.lab.ollama_build [VERSION ...]     # default: the lab's two versions
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from tests.lab.paths import LAB_CACHE
from tests.lab.versions import OLLAMA_VERSIONS

# The server role's default release and the one the upgrade/rollback tests go to and from (tests/lab/versions.py).
VERSIONS = OLLAMA_VERSIONS
ASSET = "ollama-linux-amd64.tar.zst"
MIRROR = LAB_CACHE / "mirror"


def archive_path(version):
    return MIRROR / ("v" + version) / ASSET


def binary_path(version):
    return LAB_CACHE / "bin" / version / "ollama"


def _go_build(version, dest_dir):
    env = dict(os.environ, CGO_ENABLED="1", GOBIN=str(dest_dir), GOFLAGS="-mod=mod")
    ldflags = "-s -w -X github.com/ollama/ollama/version.Version=%s" % version
    cmd = ["go", "install", "-trimpath", "-ldflags", ldflags, "github.com/ollama/ollama@v" + version]
    log = LAB_CACHE / "logs" / ("build-%s.log" % version)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        rc = subprocess.call(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tempfile.gettempdir())
    if rc != 0:
        sys.exit("building Ollama %s failed (go exit %d); see %s" % (version, rc, log))


def _write_archive(version, binary, dest):
    """Pack bin/ollama and lib/ollama/ into a .tar.zst, the way the release workflow does."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "bin").mkdir()
        shutil.copy2(binary, root / "bin" / "ollama")
        lib = root / "lib" / "ollama"
        lib.mkdir(parents=True)
        (lib / "BUILD-INFO").write_text(
            "Ollama %s built from the Go module for the llmops.ollama test lab.\n"
            "No llama.cpp runner: this build serves the API but cannot load models.\n" % version)
        tar = root / "out.tar"
        with tarfile.open(tar, "w") as t:
            t.add(root / "bin", arcname="bin")
            t.add(root / "lib", arcname="lib")
        subprocess.run(["zstd", "-q", "-19", "-T0", "-f", str(tar), "-o", str(dest)], check=True)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build(version):
    """Return the path of the packaged archive of `version`, building it on first use."""
    archive = archive_path(version)
    if archive.exists() and binary_path(version).exists():
        return archive
    binary = binary_path(version)
    if not binary.exists():
        print("building Ollama %s from its Go module (cached afterwards)..." % version, flush=True)
        LAB_CACHE.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=LAB_CACHE, prefix=".build-"))
        try:
            _go_build(version, staging)
            binary.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / "ollama", binary)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(ASSET + ".partial")
    _write_archive(version, binary, partial)
    digest = sha256_file(partial)
    os.replace(partial, archive)
    (archive.parent / "sha256sum.txt").write_text("%s  ./%s\n" % (digest, ASSET))
    return archive


def main(argv):
    LAB_CACHE.mkdir(parents=True, exist_ok=True)
    for version in argv or VERSIONS:
        path = build(version.lstrip("v"))
        print("%s  %s" % (path, sha256_file(path)[:16]))


if __name__ == "__main__":
    main(sys.argv[1:])
