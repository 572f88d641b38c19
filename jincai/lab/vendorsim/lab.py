"""Placing the vendor CLI twins on the live lab's management network (issue 15 part 5: prepared, not wired).

One simulated router per vendor platform, management plane only (the data plane stays FRR): a
process ``python -m jincai.lab.vendorsim`` inside its own network namespace ``jlab-vsim-<name>``
whose only link is a port of the lab's management bridge, listening on its management address,
port 22, with the lab's SSH key authorised for ``netops``. No container: a twin has no data plane.

What this module gives the lab (``jincai/lab/lab.py`` does not call it yet; see docs/routing.md,
"Vendor CLI twins in the lab"): the twins' plan (``TWINS``), the exact command that starts one
in its namespace (``command``), a starter (``start``) and the inventory entries that make
``playbooks/routers.yml`` reach them (``inventory_hosts``).
"""

import os
import subprocess
import sys
from dataclasses import dataclass

from jincai.lab.topology import NS_PREFIX

START_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "start")


@dataclass(frozen=True)
class Twin:
    """One simulated router of the lab: inventory name, platform, management address (198.19.0.0/24)."""

    name: str
    platform: str
    mgmt_address: str

    @property
    def namespace(self):
        return f"{NS_PREFIX}{self.name}"


#: One per vendor platform, at the top of the management network (the lab's hosts start at .10).
TWINS = (
    Twin("vsim-vrp", "huawei_vrp", "198.19.0.241"),
    Twin("vsim-vrpv8", "huawei_vrpv8", "198.19.0.242"),
    Twin("vsim-comware", "h3c_comware", "198.19.0.243"),
    Twin("vsim-ios", "cisco_ios", "198.19.0.244"),
)


def command(twin, state_dir, authorized_keys, python=sys.executable):
    """The argv that runs ``twin`` inside its namespace (state and host key kept in ``state_dir``)."""
    return ["ip", "netns", "exec", twin.namespace, python, "-m", "jincai.lab.vendorsim",
            "--platform", twin.platform, "--listen", f"{twin.mgmt_address}:22",
            "--state", os.path.join(state_dir, f"{twin.name}.json"),
            "--host-key", os.path.join(state_dir, f"{twin.name}.key"),
            "--config", os.path.join(START_DIR, f"{twin.platform}.cfg"),
            "--authorized-keys", authorized_keys]


def start(twin, state_dir, authorized_keys, log_file):
    """Start ``twin`` (its namespace must exist, linked to the management bridge); returns the Popen.

    Only the live lab calls this (it needs root and the lab's namespaces); unit tests check
    ``command`` only.
    """
    os.makedirs(state_dir, exist_ok=True)
    log = open(log_file, "a", encoding="utf-8")  # noqa: SIM115 - handed to the child, closed with it
    return subprocess.Popen(command(twin, state_dir, authorized_keys), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def inventory_hosts(twins=TWINS):
    """Host vars that make ``playbooks/routers.yml`` push to the twins (group ``vendor_twins``).

    The twins carry the same router data model as the lab's FRR routers they stand beside; the
    lab inventory still has to supply ``jincai_router`` / ``jincai_interfaces`` for them.
    """
    return {t.name: {"ansible_host": t.mgmt_address, "ansible_connection": "local",
                     "jincai_mgmt_address": t.mgmt_address, "jincai_twin_platform": t.platform}
            for t in twins}
