"""Ansible inventory plugin ``jincai``: a thin wrapper over :mod:`jincai.source.inventory`."""

from __future__ import annotations

DOCUMENTATION = """
    name: jincai
    short_description: Inventory from the jincai network source of truth
    description:
        - Reads C(source/network.yml) and C(source/sites/*.yml) next to the config file, validates them
          (every error at once, naming file, site and field) and adds groups and derived host vars.
        - Files of the source itself (C(source/**)) and the inventory's C(vault-pass.sh) are claimed
          by this plugin and yield nothing, so a directory inventory parses without warnings.
    options:
      plugin:
        description: Marks the file as a jincai config.
        required: true
        choices: ['jincai']
      source:
        description: Source directory, relative to the config file.
        type: str
        default: source
"""

EXAMPLES = """
# inventories/lab/jincai.yml
plugin: jincai
"""

import os

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin
from ansible.utils.display import Display

CONFIG_NAMES = ("jincai.yml", "jincai.yaml")
AUX_FILES = ("vault-pass.sh",)
display = Display()


def _config_dir(path):
    """The nearest directory (path's own or up to three levels up) holding a jincai config file."""
    d = os.path.dirname(os.path.abspath(path))
    for _ in range(4):
        if any(os.path.isfile(os.path.join(d, n)) for n in CONFIG_NAMES):
            return d
        d = os.path.dirname(d)
    return None


def _import_path():
    """Make the checkout's ``jincai`` package importable when it is not installed (an AWX project
    synced into an execution environment): the package sits two levels above this file."""
    import importlib.util
    import sys

    if importlib.util.find_spec("jincai") is None:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


class InventoryModule(BaseInventoryPlugin):
    """Groups and host vars derived from a jincai source of truth."""

    NAME = "jincai"
    # The source of truth is the operators' own reviewed config: its values are plain data, so let
    # Ansible treat them like group_vars (otherwise --list shows every string as __ansible_unsafe).
    trusted_by_default = True

    def verify_file(self, path):
        """Accept ``jincai.yml`` and claim the source's own files (parsed as nothing)."""
        base = os.path.basename(path)
        if base in CONFIG_NAMES:
            return super().verify_file(path)
        cfg_dir = _config_dir(path)
        if cfg_dir is None:
            return False
        rel = os.path.relpath(os.path.abspath(path), cfg_dir)
        return rel in AUX_FILES or rel.split(os.sep)[0] == "source"

    def parse(self, inventory, loader, path, cache=True):
        """Validate the source and add its hosts, groups and host vars."""
        super().parse(inventory, loader, path, cache)
        if os.path.basename(path) not in CONFIG_NAMES:
            return  # a file of the source itself: read through the config file
        self._read_config_data(path)
        try:
            _import_path()
            from jincai.source import model
            from jincai.source import inventory as jinv
        except ImportError as exc:
            raise AnsibleParserError(f"jincai inventory plugin: the jincai package is not importable ({exc}); "
                                     "install it into the Python running Ansible (pip install -e .)") from exc
        src_dir = os.path.join(os.path.dirname(os.path.abspath(path)), self.get_option("source"))
        try:
            derived, warnings = jinv.derive_checked(src_dir)
        except jinv.InvalidSource as exc:
            raise AnsibleParserError(f"jincai: invalid source of truth ({len(exc.findings)} errors):\n{exc}") from None
        except model.SourceError as exc:
            raise AnsibleParserError(f"jincai: {exc}") from None
        for w in warnings:
            display.warning(str(w))
        for group in jinv.group_names(derived):
            self.inventory.add_group(group)
        # values that are the same on every host (network-wide) go on group "all" once: the same
        # host vars for every consumer, a fraction of the work for Ansible's variable tagging
        shared = jinv.shared_vars(derived)
        for key, value in jinv.control_vars(derived).items():
            self.inventory.set_variable("all", key, value)
        for key, value in shared.items():
            self.inventory.set_variable("all", key, value)
        for name, hostvars in derived.hosts.items():
            self.inventory.add_host(name)
            for key, value in hostvars.items():
                if key not in shared:
                    self.inventory.set_variable(name, key, value)
        for group, members in derived.groups.items():
            for name in members:
                self.inventory.add_host(name, group=group)
