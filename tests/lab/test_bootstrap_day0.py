"""In-band first contact on the live lab: the day-0 kit (``jincai bootstrap CODE --day0``) on a blank
county that has **no management link**, then ``jincai bootstrap`` from the province over the WAN.

The inventory copy is switched to ``plan.management.mode: inband`` (``blank.switch_to_inband``) before
``jincai site add``, so the county's hosts are managed on their in-band addresses (router loopback,
server LAN address) as in production. ``blank.add(..., inband=True)`` attaches it without any
management link and makes the province's management zone (198.18.2.0/24) a segment of the province
router: the control node (198.18.2.254, veth ``jlab-ib``) reaches the county only through 220000-rtr
(198.18.2.1, which advertises the zone in OSPF) and the WAN. See docs/lab.md, "In-band first contact".

The flow is production's: the province pushes the city router's end of the new line (it is on the
WAN already), the county is unreachable (no path), the technician applies the kit on the consoles
(``nsenter`` into the blank containers stands in for the console cable), the province bootstraps the
site over the WAN with the key the kit installed (no root password), and a second run (``--full``:
every step again) changes nothing. That the traffic went over the WAN is read from the hosts' own
``SSH_CONNECTION`` (the control node's zone address), the control node's route (``ip route get``,
which sends nothing), the zone port's packet counters on the province router, and the county's
namespaces (no interface on the management network at all). Marked ``slow`` like the other
bootstrap proofs.
"""

import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import sys
import time

import pytest

from jincai import ROOT
from jincai.bootstrap import day0
from jincai.bootstrap import preflight as pf
from jincai.lab import blank
from jincai.lab import topology
from jincai.lab import lab as labmod
from jincai.run import run as run_playbook
from jincai.source import inventory as invmod

pytestmark = pytest.mark.slow

CODE = "220104"
JINCAI = os.path.join(os.path.dirname(sys.executable), "jincai")
LAB_INVENTORY = os.path.join(ROOT, "inventories", "lab")
OOB = ipaddress.ip_network("198.19.0.0/16")
REACH_TIMEOUT = 120  # s for OSPF to carry the county's routes once the kit is applied


@pytest.fixture(scope="module")
def county(tmp_path_factory, wan_provisioned):
    """(inventory copy, kit dir, zone) of a blank in-band county attached to the lab, its day-0 kit
    written and the city router's end of its line pushed (the province's part before day 0)."""
    base = tmp_path_factory.mktemp("day0")
    inv = str(base / "lab")
    shutil.copytree(LAB_INVENTORY, inv)
    blank.switch_to_inband(inv)
    res = subprocess.run([JINCAI, "site", "add", CODE, "--write", "-i", inv], capture_output=True, text=True,
                         check=False)
    assert res.returncode == 0, res.stderr
    res = subprocess.run([JINCAI, "validate", inv], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    kit = str(base / "kit")
    res = subprocess.run([JINCAI, "bootstrap", CODE, "--day0", "-i", inv, "-o", kit], capture_output=True,
                         text=True, check=False)
    assert res.returncode == 0, res.stderr
    try:
        blank.add(inv, CODE, "Lab-" + secrets.token_urlsafe(12), inband=True, log=lambda m: None)
        zone = blank.inband_zone(invmod.build(inv), CODE)
        parent = day0.resolve_site(inv, CODE).parent_router
        push = run_playbook("playbooks/routers.yml", inventory=inv, args=["--limit", parent])
        assert push.rc == 0, push.output[-3000:]
        yield inv, kit, zone
    finally:
        blank.remove(CODE, restore_inventory=LAB_INVENTORY)


def on_console(host, script_path):
    """Run a kit script as root inside the blank host's container (the console stand-in)."""
    rec = blank.load_state()[CODE]["hosts"][host]
    leader = labmod.leader_pid(rec["pid"])
    assert leader, f"{host}: container not running"
    with open(script_path, encoding="utf-8") as fh:
        return subprocess.run(["nsenter", "-t", str(leader), "-a", "sh", "-s"], stdin=fh, capture_output=True,
                              text=True, timeout=300, check=False)


def route_get(address):
    """``ip route get`` in the control node's namespace: the route it would use (sends nothing). Asserted
    before any probe: the machine's own default route must never carry a packet for the county."""
    return subprocess.run(["ip", "-j", "route", "get", address], capture_output=True, text=True,
                          check=True).stdout


def assert_routed_via_the_province(address, zone):
    route = json.loads(route_get(address))[0]
    assert route.get("gateway") == zone["router_address"].split("/")[0], route
    assert route.get("dev") == blank.ZONE_HOST_LINK, route
    assert route.get("prefsrc") == zone["control_address"].split("/")[0], route


def assert_no_management_link(host):
    """The county host's namespace: no eth0, no address on the out-of-band management network."""
    links = json.loads(subprocess.run(["ip", "-n", topology.NS_PREFIX + host, "-j", "addr", "show"],
                                      capture_output=True, text=True, check=True).stdout)
    names = {link["ifname"] for link in links}
    assert "eth0" not in names, names
    for link in links:
        for a in link.get("addr_info", []):
            if a.get("family") == "inet":
                assert ipaddress.ip_address(a["local"]) not in OOB, (host, link["ifname"], a["local"])
    return links


def zone_counters(zone):
    """(rx, tx) packets of the province router's zone port."""
    out = subprocess.run(["ip", "-n", topology.NS_PREFIX + zone["router"], "-s", "-j", "link", "show",
                          blank.ZONE_ROUTER_LINK], capture_output=True, text=True, check=True).stdout
    stats = json.loads(out)[0]["stats64"]
    return stats["rx"]["packets"], stats["tx"]["packets"]


def test_the_inband_county_is_unreachable_before_its_kit(county):
    inv, _kit, zone = county
    site = day0.resolve_site(inv, CODE)
    for host in site.hosts:
        links = assert_no_management_link(host.name)
        if host.is_router:  # factory state: no address at all, only its WAN line and LAN port cabled
            assert [a for link in links if link["ifname"] != "lo" for a in link.get("addr_info", [])
                    if a.get("family") == "inet"] == [], links
        # the control node's only way there is the province router, and nothing answers yet
        assert_routed_via_the_province(host.address, zone)
        reason = pf.probe_ssh(host.address, timeout=3)
        assert reason is not None, f"{host.name} ({host.address}) answered SSH before its day-0 kit"
    ping = subprocess.run(["ping", "-n", "-c", "1", "-W", "2", site.router.address], capture_output=True, text=True,
                          check=False)
    assert ping.returncode != 0, ping.stdout


def test_day0_kit_then_inband_bootstrap_over_the_wan_and_a_second_run_changes_nothing(county, tmp_path):
    inv, kit, zone = county
    site = day0.resolve_site(inv, CODE)
    res = on_console(site.router.name, os.path.join(kit, f"{site.router.name}.day0.sh"))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    for host in site.servers:
        res = on_console(host.name, os.path.join(kit, f"{host.name}.firstboot.sh"))
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    for host in site.hosts:  # before any packet: the only route there is the province router's zone port
        assert_routed_via_the_province(host.address, zone)
    deadline = time.monotonic() + REACH_TIMEOUT
    pending = {h.address: h.name for h in site.hosts}
    while pending and time.monotonic() < deadline:  # OSPF: the county's loopback and LAN reach the province
        for address in list(pending):
            if pf.probe_ssh(address, timeout=2) is None:
                pending.pop(address)
        time.sleep(1)
    assert not pending, f"not reachable over the WAN {REACH_TIMEOUT} s after the kit: {pending}"

    reports = str(tmp_path / "reports")
    env = {k: v for k, v in os.environ.items() if k != pf.PASSWORD_ENV}  # the kit's key only
    argv = [JINCAI, "bootstrap", CODE, "-i", inv, "--accept-host-keys", "--reports-dir", reports]
    rx0, tx0 = zone_counters(zone)
    first = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1800, check=False,
                           stdin=subprocess.DEVNULL)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert "first login on" not in first.stdout  # the kit's key already worked everywhere
    assert "is on the WAN, compliant and verified" in first.stdout
    rx1, tx1 = zone_counters(zone)

    # Over the WAN: each host saw the control node's address in the province's management zone...
    known_hosts = os.path.join(reports, CODE, "known_hosts")
    control = zone["control_address"].split("/")[0]
    for host in site.hosts:
        who = subprocess.run(pf.ssh_argv(host.address, "jincai", known_hosts, labmod.LAB_KEY)
                             + ["echo $SSH_CONNECTION"], capture_output=True, text=True, timeout=60, check=False,
                             stdin=subprocess.DEVNULL)
        assert who.returncode == 0, who.stderr
        assert who.stdout.split()[:1] == [control], (host.name, who.stdout)
        # ... through the province router (the control node's route), and the host has no other way
        assert_routed_via_the_province(host.address, zone)
        assert_no_management_link(host.name)
    # the whole bootstrap passed the province router's zone port (both ways)
    assert rx1 - rx0 > 1000 and tx1 - tx0 > 1000, (rx1 - rx0, tx1 - tx0)

    # A second run repeats every step (--full: router config, baseline, apps, verify) and changes nothing.
    second = subprocess.run(argv + ["--full"], capture_output=True, text=True, env=env, timeout=1800, check=False,
                            stdin=subprocess.DEVNULL)
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-2000:]
    with open(os.path.join(reports, CODE, "state.json"), encoding="utf-8") as fh:
        steps = json.load(fh)["steps"]
    changed = {k: v.get("changed") for k, v in steps.items() if v.get("changed")}
    assert changed == {}, f"second run changed something: {changed}"
