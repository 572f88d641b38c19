"""``playbooks/routers.yml`` on all four vendor platforms (issue 15 part 5), no lab needed.

jincai.lab.vendorsim.fleet starts one vendor CLI twin per platform on loopback, each standing in for a
production router of that platform (its province-twin host vars, vendor interface names) and starting
from a realistic config with operator lines. The real role, module and netmiko push to them over SSH
with strict host keys: the first run converges every router and keeps every line outside jincai's
owned sections, a second run changes nothing, and ``--check --diff`` is clean. The FRR routers of the
lab are pushed by the same playbook in the lab suite: together, all five platforms.
"""

import re

import pytest

from jincai.lab.vendorsim import fleet as fleet_mod
from jincai.run import run

PLAYBOOK = "playbooks/routers.yml"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    f = fleet_mod.Fleet(str(tmp_path_factory.mktemp("vendor-fleet")))
    f.start()
    yield f
    f.stop()


OPERATOR = re.compile(r"local-user|username|description operator")


def _operator_lines(text):
    """The start config's operator lines (accounts, the operator's own ACL and interface notes)."""
    return {line.strip() for line in text.splitlines() if OPERATOR.search(line)}


@pytest.fixture(scope="module")
def first(fleet):
    before = {name: fleet.running_config(name) for name in fleet.servers}
    res = run(PLAYBOOK, inventory=fleet.inventory, echo=False)
    return before, res


def test_every_vendor_platform_converges_on_first_contact(fleet, first):
    _before, res = first
    assert res.rc == 0, res.output[-4000:]
    assert sorted(fleet.routers) == sorted(fleet_mod.VENDOR_PLATFORMS)
    changed = {h for _t, h in res.changed}
    assert changed == set(fleet.servers), f"not pushed: {set(fleet.servers) - changed}"
    for platform, name in fleet.routers.items():
        hv = fleet.host_vars(name)
        now = fleet.running_config(name)
        for iface in hv["jincai_router"]["interfaces"]:  # every WAN/LAN port addressed, vendor-named
            assert iface["name"] in now, f"{name} ({platform}): {iface['name']} not configured"
        assert hv["jincai_router"]["loopback"].split("/")[0] in now, f"{name}: loopback missing"


def test_operator_lines_outside_owned_sections_are_kept(fleet, first):
    before, res = first
    assert res.rc == 0
    for platform, name in fleet.routers.items():
        kept = _operator_lines(before[name])
        assert kept, f"{name}: the start config has no operator line to keep"
        lost = kept - {line.strip() for line in fleet.running_config(name).splitlines()}
        assert not lost, f"{name} ({platform}): operator lines removed: {sorted(lost)[:5]}"


def test_second_run_changes_nothing_and_check_diff_is_clean(fleet, first):
    assert first[1].rc == 0
    again = run(PLAYBOOK, inventory=fleet.inventory, echo=False)
    assert again.rc == 0 and again.total("changed") == 0, again.changed_tasks()
    check = run(PLAYBOOK, inventory=fleet.inventory, check=True, diff=True, echo=False)
    assert check.rc == 0 and check.total("changed") == 0, check.changed_tasks()
