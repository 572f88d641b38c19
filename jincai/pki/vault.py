"""The vault: the CA key and the budget units' keys are ansible-vault encrypted at rest.

The password is the Ansible vault password, found where Ansible finds it (:func:`vault_password_file`);
what is written is what ``ansible-vault encrypt`` writes, so Ansible's copy module decrypts a unit's
key on deployment.
"""

import configparser
import os
import subprocess

from jincai import ROOT
from jincai.pki import PkiError


def vault_password_file():
    """Return the vault password file, where Ansible would find it: ``$ANSIBLE_VAULT_PASSWORD_FILE``,
    the first source of ``$ANSIBLE_VAULT_IDENTITY_LIST`` (``label@path``; what `make`, jincai.run and
    AWX set), ansible.cfg's ``vault_password_file``, else the default inventory's own vault id script
    (:func:`jincai.run.env.vault_identity`)."""
    path = os.environ.get("ANSIBLE_VAULT_PASSWORD_FILE")
    ids = [i.strip() for i in (os.environ.get("ANSIBLE_VAULT_IDENTITY_LIST") or "").split(",") if i.strip()]
    if not path and ids:
        path = ids[0].split("@", 1)[1] if "@" in ids[0] else ids[0]
    if not path:
        cfg = configparser.ConfigParser(interpolation=None)
        cfg.read(os.environ.get("ANSIBLE_CONFIG") or os.path.join(ROOT, "ansible.cfg"))
        path = cfg.get("defaults", "vault_password_file", fallback=None)
    if not path:
        from jincai.run import env as runenv

        ident = runenv.vault_identity(runenv.default_inventory())
        path = ident.split("@", 1)[1] if ident else None
    if not path:
        raise PkiError("no vault password file: set ANSIBLE_VAULT_IDENTITY_LIST (label@file) or "
                       "ANSIBLE_VAULT_PASSWORD_FILE (the CA key is ansible-vault encrypted)")
    return path if os.path.isabs(path) else os.path.join(ROOT, path)


def vault_password(path=None):
    """Read the vault password (an executable file is run, as ansible does)."""
    path = path or vault_password_file()
    if not os.path.exists(path):
        raise PkiError(f"{path}: vault password file missing (fix: create it or set ANSIBLE_VAULT_PASSWORD_FILE)")
    if os.access(path, os.X_OK):
        out = subprocess.run([path], check=True, capture_output=True).stdout
    else:
        with open(path, "rb") as fh:
            out = fh.read()
    secret = out.strip().splitlines()[0].strip() if out.strip() else b""
    if not secret:
        raise PkiError(f"{path}: the vault password is empty")
    return secret


class Vault:
    """ansible-vault (format 1.1, AES256) with one password; what ``ansible-vault encrypt`` writes."""

    def __init__(self, password=None):
        from ansible.parsing.vault import VaultLib, VaultSecret

        self._lib = VaultLib([("default", VaultSecret(password or vault_password()))])

    def encrypt(self, data):
        """Return the vault text of ``data`` (bytes)."""
        return self._lib.encrypt(data)

    def decrypt(self, data, where="vault"):
        """Return the plaintext of a vault text; errors name ``where``."""
        try:
            return self._lib.decrypt(data)
        except Exception as exc:  # noqa: BLE001 - ansible raises AnsibleError subclasses
            raise PkiError(f"{where}: cannot decrypt with the vault password ({exc})") from exc


_VAULTS = {}


def shared():
    """The :class:`Vault` of the current vault password file (one per file, its PBKDF2 paid once)."""
    path = vault_password_file()
    if path not in _VAULTS:
        _VAULTS[path] = Vault(vault_password(path))
    return _VAULTS[path]
