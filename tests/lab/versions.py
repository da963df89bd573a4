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
