"""Test lab for llmops.ollama: real Ollama builds, a real registry, real systemd hosts.

Nothing here is shipped in the collection; it builds and runs the real parts the tests use.
"""
