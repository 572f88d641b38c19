"""The environment every playbook jincai runs gets: this checkout's ansible.cfg and plugins, the
venv's Ansible, the inventory's vault id, and what ansible-runner would otherwise change.

ansible-runner sets ``ANSIBLE_CALLBACK_PLUGINS`` (its event callback) and, unless it is set,
``ANSIBLE_HOST_KEY_CHECKING=False``; both would override ansible.cfg, so the values from the
checkout's ansible.cfg are passed explicitly. ansible.cfg names no vault password file (AWX brings
its vault credentials): an inventory that ships a vault id script beside it (the lab's
``vault-pass.sh``) gets it through ``ANSIBLE_VAULT_IDENTITY_LIST`` unless the caller set a vault source.
"""

import os
import sys

from jincai import ROOT

ANSIBLE_CFG = os.path.join(ROOT, "ansible.cfg")
BIN_DIR = os.path.dirname(sys.executable)
VAULT_SCRIPT = "vault-pass.sh"
VAULT_ENV = ("ANSIBLE_VAULT_IDENTITY_LIST", "ANSIBLE_VAULT_PASSWORD_FILE")


def config_values(*names, cfg=ANSIBLE_CFG):
    """``{name: value}``: the effective values of ansible settings (e.g. ``CALLBACKS_ENABLED``) from
    ``cfg``, environment variables included, as Ansible reads them (one parse for all names)."""
    from ansible.config.manager import ConfigManager

    manager = ConfigManager(cfg)
    return {name: manager.get_config_value(name) for name in names}


def default_inventory():
    """The inventory ansible.cfg names (``inventories/lab``), as an absolute path."""
    inv = config_values("DEFAULT_HOST_LIST")["DEFAULT_HOST_LIST"]
    first = inv[0] if isinstance(inv, (list, tuple)) and inv else inv
    return os.path.join(ROOT, first) if first and not os.path.isabs(first) else first


def vault_identity(inventory):
    """``label@script`` for the vault id script shipped beside ``inventory`` (a directory), or None."""
    if not inventory or not os.path.isdir(inventory):
        return None
    script = os.path.join(os.path.abspath(inventory), VAULT_SCRIPT)
    if not os.access(script, os.X_OK):
        return None
    return f"{os.path.basename(os.path.normpath(inventory))}@{script}"


def vault_env(inventory, base=None):
    """``{"ANSIBLE_VAULT_IDENTITY_LIST": ...}`` for ``inventory``'s vault script, unless ``base`` (the
    environment, default os.environ) already names a vault source; else ``{}``."""
    base = os.environ if base is None else base
    if any(base.get(k) for k in VAULT_ENV):
        return {}
    ident = vault_identity(inventory or default_inventory())
    return {"ANSIBLE_VAULT_IDENTITY_LIST": ident} if ident else {}


def callbacks_enabled(configured, extra=()):
    """``configured`` (ansible.cfg's ``callbacks_enabled`` or $ANSIBLE_CALLBACKS_ENABLED) plus
    ``extra``, comma-separated."""
    names = list(configured or [])
    return ",".join(names + [n for n in extra if n not in names])


def ansible_env(inventory=None, callbacks=(), extra=None):
    """The environment for one ansible-playbook run through ansible-runner.

    ``callbacks``: callback plugins enabled on top of ansible.cfg's (e.g. ``jincai_drift``);
    ``extra``: variables set last (the caller's).
    """
    env = dict(os.environ)
    env.setdefault("ANSIBLE_CONFIG", ANSIBLE_CFG)
    cfg = config_values("DEFAULT_CALLBACK_PLUGIN_PATH", "HOST_KEY_CHECKING", "CALLBACKS_ENABLED",
                        cfg=env["ANSIBLE_CONFIG"])
    env["PATH"] = BIN_DIR + os.pathsep + env.get("PATH", "")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    plugin_dirs = [os.path.join(ROOT, p) for p in cfg["DEFAULT_CALLBACK_PLUGIN_PATH"] or []]
    env["ANSIBLE_CALLBACK_PLUGINS"] = ":".join(dict.fromkeys(
        [p for p in env.get("ANSIBLE_CALLBACK_PLUGINS", "").split(":") if p] + plugin_dirs))
    env.setdefault("ANSIBLE_HOST_KEY_CHECKING", str(bool(cfg["HOST_KEY_CHECKING"])))
    if callbacks:
        env["ANSIBLE_CALLBACKS_ENABLED"] = callbacks_enabled(cfg["CALLBACKS_ENABLED"], callbacks)
    env.update(vault_env(inventory, env))
    env.update(extra or {})
    return env
