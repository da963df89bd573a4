"""Every ansible-core the collection claims, tested: sanity, unit and integration tests in one virtualenv per release.

`make test` runs every test (fleet included) with ANSIBLE_CORE_MAIN on the machine's Python. This runs, for each
other release in tests/lab/versions.py ANSIBLE_CORE, in VENV_CACHE/ansible-core-<series> on the Python that
release supports:

- `ansible-test sanity` (tests/sanity/run.sh, with that release's ansible-test and its own test requirements);
- the unit tests (tests/unit) and the integration tests (tests/integration: the modules, and on the releases the
  table marks "all" the roles too, through that release's ansible-playbook, against the real Ollama server, the lab
  registries and the real Codex CLI; on the releases it marks "core" the modules without the tests of
  their edge cases, tests/lab/versions.py EDGE_CASE_TESTS).

It prints one line per release and writes them to LAB_STATE/matrix.txt; the exit status is 1 if any part failed.

    python3 -m tests.lab.matrix [--series 2.16,2.17] [--parts sanity,unit,integration] [--include-main] [--jobs 2]
"""
import argparse
import concurrent.futures
import glob
import os
import re
import shutil
import subprocess
import sys
import time

from tests.lab.errors import LabError
from tests.lab.paths import LAB_STATE, REPO, VENV_CACHE
from tests.lab.versions import ANSIBLE_CORE, ANSIBLE_CORE_MAIN, EDGE_CASE_TESTS, ROLE_TESTS

RESULTS = LAB_STATE / "matrix.txt"
PARTS = ("sanity", "unit", "integration")
# What each kind of row (tests/lab/versions.py ANSIBLE_CORE) leaves out of tests/integration, and its result's label;
# longest first
INTEGRATION = {
    "all": ((), "integration"),
    "modules": (ROLE_TESTS, "integration (modules)"),
    "core": (ROLE_TESTS + EDGE_CASE_TESTS, "integration (modules, no edge cases)"),
}


def _runs(python, version):
    """Whether `python` starts and is Python `version` (a pyenv shim for a version not selected does not)."""
    try:
        out = subprocess.run([python, "-c", "import sys, venv; print('%d.%d' % sys.version_info[:2])"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True, timeout=30,
                             check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip() == version


def find_python(version):
    """An interpreter of Python `version` (X.Y) that runs: one pyenv installed, or one on PATH."""
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates = sorted(glob.glob(os.path.join(root, "versions", version + ".*", "bin", "python" + version)),
                        reverse=True) + [shutil.which("python" + version) or ""]
    for candidate in candidates:
        if candidate and _runs(candidate, version):
            return candidate
    raise LabError("ansible-core releases that run on Python %s need a python%s with venv: install it (Debian "
                   "trixie's python3.13 and python3.13-venv, or pyenv) or leave those releases out with --series"
                   % (version, version))


# Tools only the main release's run uses (ansible-lint, Molecule, ansible-runner: the fleet tests), each pinning an
# ansible-core range of its own (Molecule 26 needs 2.18 or later).
MAIN_ONLY = ("ansible-lint", "molecule", "ansible-runner")


def _requirements():
    """The test requirements, without the tools only the main release's run uses."""
    lines = (REPO / "tests" / "requirements.txt").read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines
            if line.split("#")[0].strip() and not line.startswith(MAIN_ONLY)]


def venv(series, release, python):
    """The virtualenv for one release, made (or brought up to date) with pip; returns its bin folder."""
    path = VENV_CACHE / ("ansible-core-%s" % series)
    stamp = path / ".llmops-requirements"
    wanted = "\n".join(["ansible-core==" + release] + _requirements()) + "\n"
    if stamp.exists() and stamp.read_text() == wanted:
        return path / "bin"
    if path.exists():
        shutil.rmtree(path)
    VENV_CACHE.mkdir(parents=True, exist_ok=True)
    made = subprocess.run([find_python(python), "-m", "venv", str(path)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    if made.returncode:
        raise LabError("python%s could not make a virtualenv in %s: %s"
                       % (python, path, (made.stdout.strip().splitlines() or [""])[-1]))
    pip = subprocess.run([str(path / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                          "ansible-core==" + release] + _requirements(), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    if pip.returncode:
        raise LabError("pip could not install ansible-core %s and the test requirements on Python %s: %s"
                       % (release, python, (pip.stdout.strip().splitlines() or [""])[-1]))
    stamp.write_text(wanted)
    return path / "bin"


PROPERTY_SCALE = "0.1"  # a tenth of the bad-input property tests' inputs (tests/integration/test_bad_input.py)


def _env(bindir):
    env = dict(os.environ, PATH="%s:%s" % (bindir, os.environ.get("PATH", "")), VIRTUAL_ENV=str(bindir.parent))
    env.setdefault("LLMOPS_PROPERTY_SCALE", PROPERTY_SCALE)
    env.pop("PYTHONHOME", None)
    return env


def _summary(output):
    """pytest's final counts ('12 passed, 1 xfailed'), the tests that failed, or the last line."""
    for line in reversed(output.splitlines()):
        match = re.search(r"(\d+ (passed|failed|error).*?) in [0-9.]+s", line)
        if match:
            failed = _failures(output)
            return match.group(1) + (" [%s]" % "; ".join(failed) if failed else "")
    lines = output.strip().splitlines()
    return lines[-1][:120] if lines else "no output"


def run_part(part, bindir, log, integration="all"):
    """Run one part; returns (ok, summary, seconds). The whole output goes to `log`."""
    python = str(bindir / "python")
    env = _env(bindir)
    if part == "sanity":
        cmd = [str(REPO / "tests" / "sanity" / "run.sh")]
        # ansible-test makes its virtualenvs under ~/.ansible/test, named by Python version and requirements: releases
        # tested at once would make (and break) the same ones on a machine that has none yet. Each release gets a home
        # of its own, beside its virtualenv; pip's cache stays the machine's.
        home = bindir.parent / "home"
        home.mkdir(exist_ok=True)
        env.update(HOME=str(home), PIP_CACHE_DIR=os.environ.get("PIP_CACHE_DIR") or os.path.expanduser("~/.cache/pip"))
    else:
        cmd = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/" + part]
        if part == "integration":
            cmd += ["--ignore=" + t for t in INTEGRATION[integration][0]]
    started = time.time()
    proc = subprocess.run(cmd, cwd=str(REPO), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False)
    seconds = time.time() - started
    with open(log, "a") as out:
        out.write("\n===== %s (exit %d, %.0fs)\n%s" % (" ".join(cmd), proc.returncode, seconds, proc.stdout))
    if part == "sanity":
        summary = "ok" if proc.returncode == 0 else "FAILED: " + _sanity_failures(proc.stdout)
    else:
        summary = _summary(proc.stdout)
    return proc.returncode == 0, summary, seconds


def _failures(output):
    """pytest's short summary of what failed: 'FAILED tests/x.py::test_y - AssertionError: ...', shortened."""
    found = re.findall(r"^(?:FAILED|ERROR) (\S+)(?: - (.*))?$", output, re.M)
    return ["%s%s" % (test, " - " + reason[:160] if reason else "") for test, reason in found[:5]]


def _sanity_failures(output):
    names = re.findall(r"^ERROR: Found \d+ (\S+) issue", output, re.M)
    return ", ".join(names) or (output.strip().splitlines() or ["no output"])[-1][:120]


def run_row(row, parts):
    """Set up and test one release; returns (its result line, whether every part passed)."""
    series, release, python, integration = row
    log = LAB_STATE / ("matrix-%s.log" % series)
    log.write_text("")
    started = time.time()
    try:
        bindir = venv(series, release, python)
    except LabError as exc:
        return "ansible-core %s (Python %s): set-up failed: %s" % (release, python, exc), False
    results, ok = [], True
    for part in parts:
        passed, summary, seconds = run_part(part, bindir, log, integration)
        ok = ok and passed
        label = INTEGRATION[integration][1] if part == "integration" else part
        results.append("%s %s (%.0fs)" % (label, summary, seconds))
    return ("ansible-core %s (Python %s): %s; %.0fs in all, log %s"
            % (release, python, "; ".join(results), time.time() - started, log)), ok


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m tests.lab.matrix")
    parser.add_argument("--series", default="", help="comma-separated, e.g. 2.16,2.18 (default: all but the main)")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--include-main", action="store_true", help="also the release `make test` runs")
    parser.add_argument("--jobs", type=int, default=1,
                        help="releases tested at once (their tests wait much of the time: on throttled pulls, "
                             "timeouts, the Codex CLI)")
    args = parser.parse_args(argv)
    wanted = [s for s in args.series.split(",") if s]
    parts = [p for p in args.parts.split(",") if p]
    bad = [p for p in parts if p not in PARTS]
    if bad:
        sys.exit("unknown part(s) %s: choose from %s" % (", ".join(bad), ", ".join(PARTS)))
    rows = [r for r in ANSIBLE_CORE if (r[0] in wanted if wanted else (args.include_main or r[1] != ANSIBLE_CORE_MAIN))]
    rows.sort(key=lambda r: list(INTEGRATION).index(r[3]))  # the longest (role tests too) first
    LAB_STATE.mkdir(parents=True, exist_ok=True)
    started = time.time()
    done = {}
    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        futures = {pool.submit(run_row, row, parts): row for row in rows}
        for future in concurrent.futures.as_completed(futures):
            done[futures[future]] = future.result()
            print(done[futures[future]][0], flush=True)
    lines = [done[row][0] for row in ANSIBLE_CORE if row in done]
    lines.append("%d releases in %.0fs (%d at once)" % (len(rows), time.time() - started, max(1, args.jobs)))
    RESULTS.write_text("\n".join(lines) + "\n")
    return 0 if all(ok for _line, ok in done.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
