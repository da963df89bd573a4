"""The to_toml filter with Ansible Vault values, through ansible-playbook (targets/to_toml/playbook.yml)."""
import subprocess
import tomllib

from tests.lab.ansible_run import ansible_env
from tests.lab.paths import REPO

TARGET = REPO / "tests" / "integration" / "targets" / "to_toml" / "playbook.yml"


def test_vaulted_values_are_rendered_decrypted(tmp_path, playbook):
    password = tmp_path / "vault-pass"
    password.write_text("lab-vault-password\n")
    encrypted = subprocess.run(
        ["ansible-vault", "encrypt_string", "--vault-password-file", str(password), "--name", "vaulted_token",
         's3cr"et'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=True,
        env=ansible_env())
    vault_file = tmp_path / "vault.yml"
    vault_file.write_text("---\n" + encrypted.stdout)
    toml_file = tmp_path / "config.toml"
    run = playbook(TARGET, extra_vars={"vault_file": str(vault_file), "toml_file": str(toml_file)},
                   args=["--vault-password-file", str(password)])
    assert run.rc == 0, run.output[-4000:]
    assert tomllib.loads(toml_file.read_text()) == {
        "token": 's3cr"et', "list": ['s3cr"et', "plain"], "model_providers": {"gpu": {"http_headers": {"X-Key": 's3cr"et'}}}}
    assert "ANSIBLE_VAULT" not in toml_file.read_text()
