"""The real OpenAI Codex CLI, pinned, from the npm registry: fetched once into LAB_CACHE/codex/.

The npm package `@openai/codex` is a small Node.js launcher; the Linux build is its platform package
`@openai/codex@<version>-linux-x64` (an npm "version" of the same name), whose tarball carries a static
musl binary and its resources:

    package/package.json
    package/vendor/x86_64-unknown-linux-musl/codex-package.json     {"entrypoint": "bin/codex", ...}
    package/vendor/x86_64-unknown-linux-musl/bin/codex               the CLI (no Node.js needed)
    package/vendor/x86_64-unknown-linux-musl/codex-path/rg           bundled ripgrep
    package/vendor/x86_64-unknown-linux-musl/codex-resources/...     bwrap, voice host

The lab keeps the tarball itself (the `codex` role installs from such a tarball) beside the unpacked
tree and the registry's `dist` metadata (integrity, shasum), all under one version directory that is
made in a temporary directory and renamed into place, so a half-done fetch is never used.

    python3 -m tests.lab.codex_cli            # fetch if needed; print the binary path and `codex --version`
"""
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections import namedtuple
from pathlib import Path

from tests.lab.errors import LabError, disk_full, need_tools
from tests.lab.paths import LAB_CACHE
from tests.lab.versions import CODEX

VERSION = CODEX
PACKAGE = "@openai/codex"
CACHE = LAB_CACHE / "codex"

# Node's process.arch -> Rust target triple, as in the launcher (bin/codex.js).
TRIPLES = {"x64": "x86_64-unknown-linux-musl", "arm64": "aarch64-unknown-linux-musl"}
MACHINE_ARCH = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}

CodexCLI = namedtuple("CodexCLI", "version binary tarball integrity shasum root")


def host_arch():
    machine = os.uname().machine
    try:
        return MACHINE_ARCH[machine]
    except KeyError:
        raise LabError("the Codex CLI has no Linux build for %s" % machine)


def tarball_name(version=VERSION, arch=None):
    """File name of the platform tarball, as the registry names it: codex-<version>-linux-<arch>.tgz."""
    return "codex-%s-linux-%s.tgz" % (version, arch or host_arch())


def _dir(version, arch):
    return CACHE / ("%s-linux-%s" % (version, arch))


def _describe(root, version, arch):
    meta = json.loads((root / "dist.json").read_text())
    return CodexCLI(version=version,
                    binary=root / "package" / "vendor" / TRIPLES[arch] / "bin" / "codex",
                    tarball=root / tarball_name(version, arch),
                    integrity=meta["integrity"], shasum=meta["shasum"], root=root)


def sri_digest(path, algorithm="sha512"):
    """Subresource-integrity string of a file, as npm writes it: 'sha512-<base64>'."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "%s-%s" % (algorithm, base64.b64encode(h.digest()).decode())


def _fetch(version, arch, dest):
    """npm pack the platform package into `dest`, check it against the registry's integrity, unpack it."""
    spec = "%s@%s-linux-%s" % (PACKAGE, version, arch)
    print("fetching %s from the npm registry (about 170 MB, cached afterwards)..." % spec, flush=True)
    out = subprocess.run(["npm", "pack", spec, "--json", "--pack-destination", str(dest)], cwd=str(dest), check=False,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or [""])[-1]
        raise LabError("npm pack %s failed (exit %d): %s -- check that the npm registry is reachable"
                       % (spec, out.returncode, last[:300]))
    packed = json.loads(out.stdout)[0]
    tgz = dest / packed["filename"]
    if sri_digest(tgz) != packed["integrity"]:
        raise LabError("%s does not match the registry's integrity %s; nothing was kept" % (tgz, packed["integrity"]))
    os.replace(tgz, dest / tarball_name(version, arch))
    with tarfile.open(dest / tarball_name(version, arch)) as tar:
        tar.extractall(dest, filter="tar") if hasattr(tarfile, "data_filter") else tar.extractall(dest)
    (dest / "dist.json").write_text(json.dumps({"integrity": packed["integrity"], "shasum": packed["shasum"],
                                                "id": packed["id"]}, indent=1) + "\n")


def ensure(version=VERSION, arch=None):
    """Return the cached CodexCLI for `version`, fetching it on first use."""
    arch = arch or host_arch()
    root = _dir(version, arch)
    if not (root / "dist.json").exists():
        need_tools(("npm", "npm"))
        CACHE.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=str(CACHE), prefix=".fetch-"))
        os.chmod(str(staging), 0o755)  # mkdtemp makes it 0700; the cache is shared
        try:
            try:
                _fetch(version, arch, staging)
            except OSError as exc:
                raise disk_full(exc, CACHE, "fetching the Codex CLI") or exc
            try:
                os.rename(staging, root)
            except OSError:  # another process finished first; use its copy
                if not (root / "dist.json").exists():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    cli = _describe(root, version, arch)
    if not os.access(str(cli.binary), os.X_OK):
        raise LabError("%s is not an executable; remove %s and run again" % (cli.binary, root))
    return cli


def binary(version=VERSION):
    return ensure(version).binary


def tarball(version=VERSION):
    return ensure(version).tarball


def main(argv):
    cli = ensure(argv[0] if argv else VERSION)
    out = subprocess.run([str(cli.binary), "--version"], stdout=subprocess.PIPE, universal_newlines=True,
                         check=True)
    print(cli.binary)
    print(out.stdout.strip())
    print("tarball: %s (%s)" % (cli.tarball, cli.integrity))


if __name__ == "__main__":
    main(sys.argv[1:])
