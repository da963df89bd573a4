#!/usr/bin/env bash
# `ansible-test sanity` on a copy of the work tree laid out as ansible_collections/llmops/ollama.
exec "$(dirname "$0")/../lab/ansible_test.sh" sanity "$@"
