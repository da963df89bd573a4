#!/usr/bin/env bash
# `ansible-test units` as the ecosystem runs it: from a copy of the work tree laid out as
# ansible_collections/llmops/ollama, with tests/unit/requirements.txt installed by ansible-test itself.
exec "$(dirname "$0")/../lab/ansible_test.sh" units "$@"
