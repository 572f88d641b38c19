"""Vendor CLI twins: stateful SSH-served simulators of Huawei VRP V5, VRP V8, H3C Comware 7, Cisco IOS.

They let jincai's router push (module_utils/jincai_netconfig.py) meet a vendor CLI without a
vendor device: the views and prompts (``<HOST>``, ``[HOST]``, ``[HOST-GigabitEthernet0/0/1]``;
``R#``, ``R(config-if)#``), the grammar the templates render plus the common lines of a real
router's config (aaa, local users, console, licence, an operator's ACL), the vendor's error text
with its caret for anything else, ``display current-configuration`` / ``show running-config``
in the vendor's layout (secrets shown encrypted), save, and the native safety of each platform
(IOS revert timer, VRP V8 commit trial, Comware commit delay, VRP V5 scheduled reboot) with timers
that really fire. State (running, saved, armed timer) lives in a JSON file across sessions and
restarts. Test hooks: drop the session after N lines; ask an unexpected confirmation on a line.

Run one::

    python -m jincai.lab.vendorsim --platform huawei_vrp --listen 127.0.0.1:2201 \\
        --state /tmp/vrp.json --config jincai/lab/vendorsim/start/huawei_vrp.cfg

Modules: ``dialects`` (per-vendor data), ``device`` (config, timers, state, display), ``session``
(one login's CLI and the native safety commands),
``server`` (paramiko SSH), ``lab`` (what the live lab will call to place one in a namespace).
Fidelity and sources: docs/routing.md, "Vendor CLI twins".
"""

from .device import SimDevice  # noqa: F401
from .session import Session  # noqa: F401
from .dialects import DIALECTS  # noqa: F401
from .server import SimServer  # noqa: F401

PLATFORMS = tuple(sorted(DIALECTS))


def start(platform, state_file, start_config="", host="127.0.0.1", port=0, key=None, authorized=(), **options):
    """Start a simulator in this process; returns the ``SimServer`` (``.port``, ``.device``, ``.close()``).

    ``options`` go to ``SimDevice`` (time_scale, drop_after, unexpected_prompt_re, username, password).
    """
    device = SimDevice(platform, state_file, start_config, **options)
    return SimServer(device, host, port, key=key, authorized=authorized)
