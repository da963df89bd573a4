"""Pure logic of the lab fleet (tests/lab/fleet.py): host plans, inventory, mirror choice, error output."""
import yaml

from tests.lab import fleet


def test_plan_alternates_releases_and_addresses():
    hosts = fleet.plan(4, ("bookworm", "trixie"))
    assert [(h["name"], h["ip"], h["release"]) for h in hosts] == [
        ("lab1", "10.199.0.11", "bookworm"), ("lab2", "10.199.0.12", "trixie"),
        ("lab3", "10.199.0.13", "bookworm"), ("lab4", "10.199.0.14", "trixie")]
    assert {h["release"] for h in fleet.plan(3, ("trixie",))} == {"trixie"}


def test_inventory_groups_and_ssh_config(tmp_path, monkeypatch):
    monkeypatch.setattr(fleet, "LAB_STATE", tmp_path)
    monkeypatch.setattr(fleet, "SSH_KEY", tmp_path / "ssh" / "id_ed25519")
    fleet._write_inventory(fleet.plan(3))
    inv = yaml.safe_load(fleet.inventory_path().read_text())["all"]
    assert inv["vars"]["ansible_user"] == "root"
    assert inv["vars"]["ansible_python_interpreter"] == "/usr/bin/python3"
    assert inv["vars"]["ansible_ssh_private_key_file"] == str(tmp_path / "ssh" / "id_ed25519")
    assert "UserKnownHostsFile=/dev/null" in inv["vars"]["ansible_ssh_common_args"]
    assert inv["hosts"]["lab2"] == {"ansible_host": "10.199.0.12", "lab_release": "trixie"}
    groups = {name: sorted(g["hosts"]) for name, g in inv["children"].items()}
    assert groups == {"ollama_servers": ["lab1", "lab2", "lab3"], "workstations": ["lab1", "lab3"],
                      "gpu_servers": ["lab2"], "codex_clients": ["lab1", "lab2", "lab3"]}
    cfg = fleet.ssh_config_path().read_text()
    assert "Host lab1\n  HostName 10.199.0.11\n" in cfg and "IdentityFile %s" % fleet.SSH_KEY in cfg


def test_inventory_with_one_host_has_empty_gpu_group(tmp_path, monkeypatch):
    monkeypatch.setattr(fleet, "LAB_STATE", tmp_path)
    fleet._write_inventory(fleet.plan(1))
    inv = yaml.safe_load(fleet.inventory_path().read_text())["all"]
    assert inv["children"]["gpu_servers"]["hosts"] == {}


def test_mirror_from_apt_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("LAB_DEBIAN_MIRROR", raising=False)
    deb822 = tmp_path / "debian.sources"
    deb822.write_text("Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
                      "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n")
    legacy = tmp_path / "sources.list"
    legacy.write_text("# comment\ndeb [arch=amd64] http://legacy.example/debian/ bookworm main\n")
    other = tmp_path / "other.list"
    other.write_text("deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n")
    assert fleet._mirror([str(other), str(deb822)]) == "http://mirror.example/debian"
    assert fleet._mirror([str(legacy)]) == "http://legacy.example/debian/"
    assert fleet._mirror([str(other)]) == "http://deb.debian.org/debian"
    monkeypatch.setenv("LAB_DEBIAN_MIRROR", "http://override.example/debian")
    assert fleet._mirror([str(deb822)]) == "http://override.example/debian"


def test_expected_errors_print_one_line_without_traceback(monkeypatch, capsys):
    monkeypatch.setattr(fleet.os, "geteuid", lambda: 1000)
    assert fleet.main(["up"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lab: error: the lab needs root") and "Traceback" not in err
