"""Session settings for the unit tests.

* The ARA audit trail (plugins/callback/jincai_ara.py) records every playbook run; in unit tests it
  is off (ANSIBLE_CALLBACKS_ENABLED: an importer process with Django after every run, many runs) except
  where a test enables it (tests/unit/test_audit.py), and then it records into a temporary store,
  never into the control node's ``/var/lib/jincai/ara``.
* ``twin_dir``: the province twin's inventory, translated once per test module.
* ``local_play``: writes a playbook and an inventory of three local hosts (h1..h3) for real
  ``ansible-playbook`` runs on this machine.
* ansible.cfg names no vault password file: playbooks run directly with ``ansible-playbook`` get the
  lab inventory's vault id script, as the Makefile and jincai.run give it.
"""

import os
import sys

import pytest

from jincai.run.env import vault_env

UNIT_CALLBACKS = "jincai_timer"  # ansible.cfg's list without jincai_ara


@pytest.fixture(autouse=True, scope="session")
def _unit_environment(tmp_path_factory):
    saved = {k: os.environ.get(k) for k in ("JINCAI_ARA_DIR", "ANSIBLE_VAULT_IDENTITY_LIST",
                                            "ANSIBLE_CALLBACKS_ENABLED")}
    os.environ["JINCAI_ARA_DIR"] = str(tmp_path_factory.mktemp("ara"))
    os.environ["ANSIBLE_CALLBACKS_ENABLED"] = UNIT_CALLBACKS
    os.environ.update(vault_env(None))
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def twin_dir(tmp_path_factory):
    """The province twin's inventory (jincai.lab.twin.translate of inventories/jilin), one per module."""
    from jincai import ROOT  # pylint: disable=import-outside-toplevel
    from jincai.lab import twin  # pylint: disable=import-outside-toplevel

    out = tmp_path_factory.mktemp("twin") / "jilin"
    twin.translate(os.path.join(ROOT, "inventories", "jilin"), str(out))
    return str(out)


@pytest.fixture()
def pkidir(tmp_path, monkeypatch):
    """A fresh PKI directory (``$JINCAI_PKI_DIR``) and a vault password file of its own."""
    from jincai.pki import vault  # pylint: disable=import-outside-toplevel

    pw = tmp_path / "vault-pass"
    pw.write_text("unit-test-password\n")
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(pw))
    monkeypatch.setenv("JINCAI_PKI_DIR", str(tmp_path / "pki"))
    vault._VAULTS.clear()  # pylint: disable=protected-access
    return tmp_path / "pki"


@pytest.fixture()
def local_play(tmp_path):
    """``write(playbook_text)`` -> (inventory path, playbook path): three hosts on the local connection."""
    def write(playbook):
        inv = tmp_path / "hosts.yml"
        local = f"{{ansible_connection: local, ansible_python_interpreter: {sys.executable}}}"
        inv.write_text(f"all:\n  hosts:\n    h1: {local}\n    h2: {local}\n    h3: {local}\n")
        book = tmp_path / "play.yml"
        book.write_text(playbook)
        return inv, book
    return write
