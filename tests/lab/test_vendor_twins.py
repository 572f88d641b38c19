"""The vendor CLI twins on the lab's management network (issue 15 part 5): routers.yml on all five platforms.

Needs the lab with one simulated router per vendor platform placed on the management network
(jincai.lab.vendorsim.lab: TWINS, started by the lab in namespaces jlab-vsim-*) and in the lab
inventory as group ``vendor_twins`` (platform from ``jincai_twin_platform``). Until the lab does
that, the group is absent and these tests fail saying so: they are written, not yet run.
"""

import os

import pytest

from jincai import ROOT
from jincai.lab.vendorsim import lab as twins
from jincai.run import run

from conftest import inventory

pytestmark = pytest.mark.lab

LAB = os.path.join(ROOT, "inventories", "lab")
PLAYBOOK = "playbooks/routers.yml"


def _twin_hosts():
    group = inventory().get("vendor_twins", {}).get("hosts", [])
    assert sorted(group) == sorted(t.name for t in twins.TWINS), (
        "the lab inventory has no group vendor_twins with every twin (issue 15 part 5 not wired yet)")
    return sorted(group)


def test_routers_playbook_converges_on_every_vendor_twin_and_keeps_operator_lines():
    hosts = _twin_hosts()
    limit = ["--limit", ",".join(hosts)]
    first = run(PLAYBOOK, inventory=LAB, args=limit)
    assert first.rc == 0, first.output[-4000:]
    again = run(PLAYBOOK, inventory=LAB, args=limit)
    assert again.rc == 0 and again.total("changed") == 0, again.changed_tasks()
    check = run(PLAYBOOK, inventory=LAB, args=limit, check=True, diff=True)
    assert check.rc == 0 and check.total("changed") == 0, check.changed_tasks()
    assert "unmanaged, kept" not in check.output  # no diff at all on a converged twin
