#!/usr/bin/env bash
# ansible_test.sh COMMAND [ARGS...]: run `ansible-test COMMAND` (sanity, units) on a copy of the work tree laid out as
# ansible_collections/llmops/ollama, on the running Python, with the requirements ansible-test installs itself.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
command=$1
shift
out=$(mktemp -d -t "llmops-$command.XXXXXX")  # outside any git work tree, or ansible-test sees ignored files
trap 'rm -rf "$out"' EXIT
# ansible-test downloads a get-pip script to set up its virtualenvs, from a host a site's network may not reach: its
# stand-in (tests/sanity/get_pip_offline.py) goes where ansible-test looks first
pip_version=$(python3 -c "import ansible_test._internal.python_requirements as r, re, inspect; \
print(re.search(r\"pip='([0-9.]+)'\", inspect.getsource(r)).group(1))")
cache=~/.ansible/test/cache/get_pip_${pip_version//./_}.py
[ -f "$cache" ] || { mkdir -p "$(dirname "$cache")"; cp "$repo/tests/sanity/get_pip_offline.py" "$cache"; }
mkdir -p "$out/ansible_collections/llmops/ollama"
(cd "$repo" && git ls-files -co --exclude-standard -z | xargs -0 tar -cf - | tar -xf - -C "$out/ansible_collections/llmops/ollama")
cd "$out/ansible_collections/llmops/ollama"
ansible-test "$command" --python "$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')" --requirements "$@"
