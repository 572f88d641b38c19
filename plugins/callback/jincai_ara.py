"""ARA's callback with jincai's defaults: every run from this checkout goes into the audit trail.

Enabled in ansible.cfg (``callbacks_enabled``), so a plain ``ansible-playbook`` records its run as
``jincai``'s runs do. This file is a proxy for ARA's own ``ara_default`` callback (pip package ara,
pinned in requirements.txt), as plugins/strategy/mitogen_linear.py is for Mitogen; it adds:

* the store: ARA's offline client writes network N's runs to ``/var/lib/jincai/ara/N/ansible.sqlite``
  (jincai.audit.store_dir); ``ARA_API_CLIENT=http`` + ``ARA_API_SERVER`` send them to a server;
* labels: ``network:N``, ``release:<apps_release>`` (the application release the inventory deploys,
  or the run's ``-e apps_release=``), ``commit:<git commit>`` and ``site:CODE`` for every site the run targets,
  besides ARA's argument labels (check, diff, limit, tags: ansible.cfg ``[ara] argument_labels``).

What stays out is ARA's own settings in ansible.cfg ``[ara]`` (``ignored_arguments``: extra vars and
vault ids; ``ignored_files``; ``ignored_facts``); results of ``no_log`` tasks reach no callback.
When the store cannot be written (not root on a control node) the run goes on, unrecorded, with a
warning. ``ANSIBLE_CALLBACKS_ENABLED`` without ``jincai_ara`` turns it off for one run.
"""

import os
import re

from ansible.plugins.callback import CallbackBase
from ansible.utils.display import Display

display = Display()

try:
    from ara.plugins.callback import ara_default as _ara
except ImportError as _exc:  # pragma: no cover - requirements.txt pins ara
    _ara = None
    _IMPORT_ERROR = str(_exc)

SITE_GROUP = re.compile(r"^site_(\d{6})$")

if _ara is not None:
    DOCUMENTATION = _ara.DOCUMENTATION.replace("callback: ara\n", "name: jincai_ara\n", 1).replace(
        "short_description: Sends playbook execution data to the ARA API internally or over HTTP",
        "short_description: ARA's callback recording every run into the jincai audit trail", 1)
    _Base = _ara.CallbackModule
else:  # pragma: no cover
    DOCUMENTATION = """
name: jincai_ara
short_description: ARA's callback recording every run into the jincai audit trail (ara not installed)
"""
    _Base = CallbackBase


class CallbackModule(_Base):
    """ARA's ``ara_default`` callback, writing to the network's store and labelling release and sites."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "jincai_ara"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._release = None
        self._sites = set()
        if _ara is None:  # pragma: no cover
            display.warning(f"jincai_ara: ara is not installed ({_IMPORT_ERROR}): this run is not recorded")
            self.disabled = True

    def set_options(self, task_keys=None, var_options=None, direct=None):
        """Point ARA's offline client at the network's store, then let ARA read its options."""
        from ansible import context

        from jincai import audit

        inventory = (context.CLIARGS.get("inventory") or [None])[0]
        network = audit.network_of(inventory)
        CallbackBase.set_options(self, task_keys=task_keys, var_options=var_options, direct=direct)
        if self.get_option("api_client") == "offline":
            try:
                store = audit.store_dir(network)
                os.makedirs(store, mode=0o750, exist_ok=True)
                if not os.access(store, os.W_OK):
                    raise PermissionError(f"{store} is not writable")
            except (OSError, ValueError) as exc:
                display.warning(f"jincai_ara: the audit store cannot be written ({exc}): this run is not "
                                f"recorded (run as the control node's operator, or set {audit.STORE_ENV})")
                self.disabled = True
                return
            for key, value in audit.offline_env(network).items():
                os.environ.setdefault(key, value)
        super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        self._release = audit.inventory_release(inventory)
        self.default_labels = list(self.default_labels) + [f"network:{network}", f"commit:{audit.commit()}"]

    def v2_playbook_on_play_start(self, play):
        """Add ``site:CODE`` labels for the sites of the hosts this play targets (limit applied)."""
        try:
            hosts = play._variable_manager._inventory.get_hosts(play.hosts)
        except Exception:  # noqa: BLE001 - labels must never stop a run
            hosts = []
        for host in hosts:
            for group in host.get_groups():
                m = SITE_GROUP.match(group.name)
                if m:
                    self._sites.add(m.group(1))
        try:
            self._release = play._variable_manager.extra_vars.get("apps_release") or self._release
        except Exception:  # noqa: BLE001
            pass
        base = [label for label in self.default_labels if not label.startswith(("site:", "release:"))]
        self.default_labels = base + [f"site:{code}" for code in sorted(self._sites)] + (
            [f"release:{self._release}"] if self._release else [])
        return super().v2_playbook_on_play_start(play)
