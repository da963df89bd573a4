#!/usr/bin/env bash
# The collection through the Ansible ecosystem's own tools, as Galaxy, docsite and AWX users meet it:
#   the tarball built from galaxy.yml's allow-list, and galaxy-importer (what Galaxy runs on upload) on it;
#   antsibull-docs lint-collection-docs, and the docsite (sphinx-init + build) with the guides as extra docs;
#   antsibull-changelog lint, and CHANGELOG.md as antsibull-changelog generates it;
#   antsibull-nox's extra checks (antsibull-nox.toml);
#   ansible-builder create (docs/ee/execution-environment.yml), and introspect of the installed collection;
#   ansible-test units (tests/ecosystem/units.sh).
# The tools are pinned in tests/ecosystem/requirements*.txt and installed into virtualenvs of their own under
# ~/.cache/llmops-ollama (LLMOPS_VENV_CACHE; each made again when its pins change); the docsite is left in
# .lab/ecosystem/docsite/build/html.
#
#   tests/ecosystem/run.sh          run every check
#   tests/ecosystem/run.sh docs     write docs/docsite/rst/ from docs/*.md and CHANGELOG.md from changelogs/
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
state=${ECOSYSTEM_STATE:-$repo/.lab/ecosystem}
venvs=$(python3 -c "from tests.lab.paths import VENV_CACHE; print(VENV_CACHE)")  # LLMOPS_VENV_CACHE
tools=$venvs/ecosystem-tools
importer=$venvs/galaxy-importer
work=$(mktemp -d -t llmops-ecosystem.XXXXXX)
trap 'rm -rf "$work"' EXIT
timings=()

venv() {  # venv DIR REQUIREMENTS: a virtualenv with exactly these pins, made again when the file changes
  local stamp
  stamp=$(sha256sum "$2" | cut -d' ' -f1)
  if [ "$(cat "$1/.stamp" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$1"
    python3 -m venv "$1"
    "$1/bin/pip" install -q --disable-pip-version-check -r "$2"
    echo "$stamp" >"$1/.stamp"
  fi
}

step() {  # step NAME COMMAND...: run it, time it, stop at the first failure
  local name=$1 started
  shift
  started=$(date +%s)
  echo "== $name"
  if ! "$@"; then
    echo "FAILED: $name"
    exit 1
  fi
  timings+=("$(printf '%-26s %4ss' "$name" $(($(date +%s) - started)))")
}

virtualenvs() {
  venv "$tools" tests/ecosystem/requirements.txt
  venv "$importer" tests/ecosystem/requirements-importer.txt
}

write_docs() {
  "$tools/bin/python" tests/ecosystem/guides_rst.py
  "$tools/bin/antsibull-changelog" generate
}

guides_current() {
  "$tools/bin/python" tests/ecosystem/guides_rst.py --check
}

build() {
  "$tools/bin/ansible-galaxy" collection build --output-path "$work" . >/dev/null
  tarball=$(echo "$work"/llmops-ollama-*.tar.gz)
  local unwanted
  unwanted=$(tar -tzf "$tarball" | grep -E '^(tests/|bench/.*\.py|Makefile|noxfile\.py|changelogs/fragments/|\.)' || true)
  if [ -n "$unwanted" ]; then
    echo "the tarball ships files users do not need (galaxy.yml manifest:):"
    echo "$unwanted"
    return 1
  fi
  echo "$(basename "$tarball"): $(tar -tzf "$tarball" | grep -vc '/$') files"
}

galaxy_importer() {
  (cd "$work" && "$importer/bin/python" -m galaxy_importer.main "$tarball") >"$work/importer.log" 2>&1 || {
    cat "$work/importer.log"
    return 1
  }
  grep -E "WARNING|ERROR|completed" "$work/importer.log"
}

install() {
  ANSIBLE_COLLECTIONS_PATH=$work/collections "$tools/bin/ansible-galaxy" collection install --offline \
    -p "$work/collections" "$tarball" >/dev/null
  installed=$work/collections/ansible_collections/llmops/ollama
}

lint_docs() {
  (cd "$installed" && "$tools/bin/antsibull-docs" lint-collection-docs --plugin-docs .)
}

docsite() {
  local site=$state/docsite
  rm -rf "$site"
  mkdir -p "$site"
  ANSIBLE_COLLECTIONS_PATH=$work/collections "$tools/bin/antsibull-docs" sphinx-init --use-current \
    --squash-hierarchy --fail-on-error --dest-dir "$site" llmops.ollama >/dev/null
  cat >>"$site/conf.py" <<'CONF'

# Added by tests/ecosystem/run.sh, which builds offline: Ansible's own pages (labels outside ansible_collections.*)
# resolve through intersphinx where docs.ansible.com is reachable and are not checked here. Every reference to
# this collection's pages must still resolve (-W).
intersphinx_mapping = {}
nitpick_ignore_regex = [(r'(std:)?ref', r'(?!ansible_collections\.).*')]
CONF
  (cd "$site" && PATH=$tools/bin:$PATH ANSIBLE_COLLECTIONS_PATH=$work/collections ./build.sh) >"$work/docsite.log" 2>&1 || {
    cat "$work/docsite.log"
    return 1
  }
  echo "docsite: $site/build/html/index.html ($(find "$site/build/html" -name '*.html' | wc -l) pages)"
}

changelog() {
  "$tools/bin/antsibull-changelog" lint
  "$tools/bin/antsibull-changelog" lint-changelog-yaml changelogs/changelog.yaml
  "$tools/bin/antsibull-changelog" generate --output "$work/CHANGELOG.md" --output-format md
  if ! diff -u CHANGELOG.md "$work/CHANGELOG.md"; then
    echo "CHANGELOG.md is not what antsibull-changelog makes of changelogs/: run tests/ecosystem/run.sh docs"
    return 1
  fi
}

extra_checks() {
  "$tools/bin/nox" -f noxfile.py --envdir "$venvs/nox" --reuse-venv=yes -e extra-checks
}

execution_environment() {
  "$tools/bin/ansible-builder" create -f docs/ee/execution-environment.yml -c "$work/ee-context" \
    --output-filename Containerfile
  "$tools/bin/ansible-builder" introspect --sanitize "$work/collections" >"$work/introspect.yml"
  cat "$work/introspect.yml"
  grep -q "from collection llmops.ollama" "$work/introspect.yml" || {
    echo "ansible-builder found none of meta/execution-environment.yml's requirements in the installed collection"
    return 1
  }
}

started=$(date +%s)
step "virtualenvs" virtualenvs
if [ "${1:-}" = docs ]; then
  write_docs
  exit 0
fi
step "guides as docsite pages" guides_current
step "build" build
step "galaxy-importer" galaxy_importer
step "install" install
step "lint-collection-docs" lint_docs
step "docsite" docsite
step "antsibull-changelog" changelog
step "extra checks" extra_checks
step "ansible-builder" execution_environment
step "ansible-test units" tests/ecosystem/units.sh
echo "== timings"
printf '%s\n' "${timings[@]}"
echo "ecosystem checks passed in $(($(date +%s) - started))s"
