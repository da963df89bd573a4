"""Which drop-ins of someone else's set what the server role sets, read as systemd applies them (systemd.unit(5):
drop-ins in the order of their file names, whatever their folder; systemd.exec(5): a later Environment= assignment
wins, an empty one drops those before it, EnvironmentFile= wins over every Environment=). The files are real files
in a temporary folder; the fleet test (tests/fleet/test_adoption.py) has systemd itself apply them."""
import os

import pytest

from ansible_collections.llmops.ollama.plugins.module_utils import _systemd as sd
from ansible_collections.llmops.ollama.plugins.module_utils._ollama_client import normalize_base_url

ROLE_ENV = '[Service]\nEnvironment="OLLAMA_HOST=127.0.0.1:11434"\nEnvironment="OLLAMA_MODELS=/usr/share/ollama/.ollama/models"\n'
DECLARED = sd.environment(ROLE_ENV)


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "ollama.service.d"
    d.mkdir()
    return d


def own(folder):
    return [str(folder / "10-environment.conf"), str(folder / "20-hardening.conf")]


def write(folder, name, text):
    path = folder / name
    path.write_text(text)
    return str(path)


def test_the_roles_environment_is_read_as_systemd_reads_it():
    text = ('# comment\n[Unit]\nEnvironment=NOT=this\n[Service]\nEnvironment="A=1" \'B=two words\' C=3\n'
            'Environment=D=x \\\n  E=y\n; another comment\nEnvironment=A=4\n')
    assert sd.environment(text) == {"A": "4", "B": "two words", "C": "3", "D": "x", "E": "y"}
    assert sd.environment('[Service]\nEnvironment=A=1\nEnvironment=\nEnvironment=B=2\n') == {"B": "2"}


def test_systemctl_edits_override_takes_over_host_and_models(folder):
    path = write(folder, "override.conf", '[Service]\nEnvironment="OLLAMA_HOST=0.0.0.0:11500"\n'
                                          'Environment="OLLAMA_MODELS=/srv/models"\nEnvironment="OLLAMA_DEBUG=1"\n'
                                          'LimitNOFILE=65536\n')
    found = sd.takeovers(own(folder) + [path], own(folder), DECLARED)
    # OLLAMA_DEBUG is not the role's (nothing set it), LimitNOFILE neither: only what the role sets is named
    assert found == [{"path": path, "settings": ["OLLAMA_HOST", "OLLAMA_MODELS"],
                      "shown": {"OLLAMA_HOST": "0.0.0.0:11500", "OLLAMA_MODELS": "/srv/models"}}]


def test_a_drop_in_that_sets_the_roles_values_or_only_its_own_takes_nothing_over(folder):
    same = write(folder, "override.conf", '[Service]\nEnvironment="OLLAMA_HOST=127.0.0.1:11434"\n')
    slow = write(folder, "50-slow-start.conf", '[Service]\nExecStart=\nExecStart=/bin/sh -c "sleep 8; exec ollama"\n')
    assert sd.takeovers([same, slow], own(folder), DECLARED) == []


def test_an_environment_applied_before_the_roles_loses_but_an_environment_file_wins_anywhere(folder, tmp_path):
    early = write(folder, "05-early.conf", '[Service]\nEnvironment="OLLAMA_HOST=0.0.0.0:1"\n')
    env_file = tmp_path / "ollama.env"
    env_file.write_text("# site settings\nexport OLLAMA_MODELS='/data/models'\nHTTPS_PROXY=http://u:secret@proxy:3128\n")
    by_file = write(folder, "01-file.conf", "[Service]\nEnvironmentFile=-%s\n" % env_file)
    found = sd.takeovers([by_file, early], own(folder), DECLARED)
    assert found == [{"path": by_file, "settings": ["OLLAMA_MODELS"], "shown": {"OLLAMA_MODELS": "/data/models"}}]
    assert "secret" not in repr(found)


def test_an_empty_environment_after_the_roles_drops_all_of_it(folder):
    reset = write(folder, "override.conf", "[Service]\nEnvironment=\n")
    assert sd.takeovers([reset], own(folder), DECLARED)[0]["settings"] == ["OLLAMA_HOST", "OLLAMA_MODELS"]


def test_another_account_and_an_unreadable_file_are_named(folder):
    user = write(folder, "override.conf", "[Service]\nUser=root\nGroup=ollama\n")
    gone = str(folder / "zz-removed-since.conf")
    found = sd.takeovers([user, gone], own(folder), DECLARED, user="ollama", group="ollama")
    assert found == [{"path": user, "settings": ["User"], "shown": {"User": "root"}},
                     {"path": gone, "settings": ["(unreadable)"], "shown": {}}]


def test_the_roles_own_drop_ins_are_never_named(folder):
    mine = write(folder, "10-environment.conf", '[Service]\nEnvironment="OLLAMA_HOST=0.0.0.0:1"\n')
    assert sd.takeovers([mine], own(folder), DECLARED) == []
    assert os.path.exists(mine)


def test_server_units_lists_every_instance_with_the_url_of_its_ollama_host():
    """What ollama_facts asks systemd (the outputs as systemctl prints them for ollama_server_instances: 2, and an
    instance left over and failed)."""
    answers = {
        ("systemctl", "list-units"): (0, "ollama@1.service loaded active running Ollama server (instance 1)\n"
                                         "ollama.service   loaded active running Ollama server\n"
                                         "ollama@12.service loaded failed failed Ollama server (instance 12)\n", ""),
        "ollama.service": (0, "ActiveState=active\nEnvironment=HOME=/usr/share/ollama OLLAMA_HOST=0.0.0.0:11434\n", ""),
        "ollama@1.service": (0, "ActiveState=active\nEnvironment=HOME=/x \"OLLAMA_HOST=[::1]:11435\"\n", ""),
        "ollama@12.service": (0, "ActiveState=failed\nEnvironment=\n", ""),
    }

    def run(argv):
        return answers[tuple(argv[:2])] if argv[1] == "list-units" else answers[argv[-1]]

    found = sd.server_units(run)
    assert found == [
        dict(unit="ollama.service", active=True, host="0.0.0.0:11434"),
        dict(unit="ollama@1.service", active=True, host="[::1]:11435"),
        dict(unit="ollama@12.service", active=False, host=""),
    ]
    # the URL ollama_facts asks each at: its OLLAMA_HOST as the server reads it
    assert [normalize_base_url(u["host"]) for u in found] == [
        "http://127.0.0.1:11434", "http://[::1]:11435", "http://127.0.0.1:11434"]


def test_server_units_without_systemctl_is_nothing():
    def run(_argv):
        raise OSError("no systemctl")

    assert sd.server_units(run) == []
    assert sd.server_units(lambda argv: (1, "", "System has not been booted with systemd")) == []
