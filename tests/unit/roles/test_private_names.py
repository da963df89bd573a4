"""Each role's `__` variables are its own: no playbook and no other role reads or sets them.

A playbook or role that used another role's private variable would hold a second description of that role's state,
which drifts from the role's own (playbooks/servers.yml once set the proxy's and server's facts from their private
variables). What a play needs from a role is public: its declaration, its published facts, the look's answer
(docs/re-runs.md). The names are read from the files as written: a role's private names start with `__` and its
name (`__ollama_server_`, `__ollama_models_`, `__ollama_proxy_`, `__codex_`, and `__install_` for the internal install
routine, roles/_install, whose callers give its `_install_*` options and read its `_install_result`)."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
ROLES = ("server", "models", "proxy", "codex", "_install")
PRIVATE = re.compile(r"\b__(?:ollama_(server|models|proxy)|(codex)|(install))_\w+")
SOURCES = ("*.yml", "*.yaml", "*.j2", "*.py")


def _files(folder):
    for pattern in SOURCES:
        yield from sorted(folder.rglob(pattern))


def _trespasses(folder, owner):
    """(file, line number, name) of every private name of a role other than `owner` (None: of any role)."""
    found = []
    for path in _files(folder):
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for match in PRIVATE.finditer(line):
                role = match.group(1) or match.group(2) or ("_" + match.group(3) if match.group(3) else None)
                if role != owner:
                    found.append("%s:%d: %s" % (path.relative_to(ROOT), number, match.group(0)))
    return found


def test_the_tree_has_the_roles_and_playbooks_this_test_reads():
    assert all((ROOT / "roles" / role / "tasks" / "main.yml").is_file() for role in ROLES)
    assert (ROOT / "playbooks" / "servers.yml").is_file()
    # the pattern finds a role's own names in its own files (so a trespass would be found the same way)
    assert any(PRIVATE.search(p.read_text()) for p in _files(ROOT / "roles" / "server" / "tasks"))


def test_no_playbook_reads_a_roles_private_variables():
    assert _trespasses(ROOT / "playbooks", None) == []


def test_no_role_reads_another_roles_private_variables():
    found = []
    for role in ROLES:
        found += _trespasses(ROOT / "roles" / role, role)
    assert found == []
