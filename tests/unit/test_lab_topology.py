"""The lab topology is derived from the inventory and refuses bad input with one clear line."""

import copy
import json
import os

import pytest

from jincai.lab import topology

@pytest.fixture
def inv(lab_inventory_file):
    with open(lab_inventory_file, encoding="utf-8") as fh:
        return json.load(fh)


def iface(inv, host, name):
    return next(i for i in inv["_meta"]["hostvars"][host]["jincai_interfaces"] if i["name"] == name)


def error(inv):
    with pytest.raises(topology.TopologyError) as exc:
        topology.plan(inv, source="inv.json")
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("inv.json: ")
    return msg


def test_lab_inventory_gives_19_hosts_wan_cables_and_bridged_lans(inv):
    plan = topology.plan(inv, source="inv.json")
    assert len(plan.hosts) == 19
    wan = {s.id for s in plan.segments.values() if s.point_to_point}
    assert wan == {s for s in plan.segments if s.startswith("wan-")}
    # a site LAN with just a router and one server is still a bridge: a host can be added later
    assert not plan.segments["lan-220100"].point_to_point
    assert len(plan.segments["lan-220100"].members) == 2
    assert plan.hosts["220100-rtr"].is_router and not plan.hosts["220100-app1"].is_router
    loopback = inv["_meta"]["hostvars"]["220100-rtr"]["jincai_router"]["loopback"]
    assert str(plan.hosts["220100-rtr"].loopbacks[0]) == f"{loopback}/32"
    # every administrator and technician of the source (read here from its raw YAML) gets a lab key
    import glob  # pylint: disable=import-outside-toplevel

    import yaml  # pylint: disable=import-outside-toplevel

    from jincai import ROOT  # pylint: disable=import-outside-toplevel

    src = os.path.join(ROOT, "inventories", "lab", "source")
    with open(os.path.join(src, "network.yml"), encoding="utf-8") as fh:
        people = {a["user"] for a in yaml.safe_load(fh)["network"]["admins"]}
    for path in glob.glob(os.path.join(src, "sites", "*.yml")):
        with open(path, encoding="utf-8") as fh:
            people |= {t["user"] for site in yaml.safe_load(fh)["sites"] for t in site.get("technicians") or []}
    assert len(people) >= 3
    assert plan.technicians == [(u, f"/var/lib/jincai-lab/keys/{u}.pub") for u in sorted(people)]


def test_unknown_segment_peer_is_refused(inv):
    iface(inv, "220100-rtr", "eth2")["peer"] = "229999-rtr"
    msg = error(inv)
    assert "site 220100, host 220100-rtr" in msg and "peer" in msg and "229999-rtr" in msg


def test_peer_without_an_interface_on_the_segment_is_refused(inv):
    iface(inv, "220100-rtr", "eth2")["peer"] = "220202-rtr"
    msg = error(inv)
    assert "'220202-rtr' has no interface on segment" in msg


def test_host_name_clash_is_refused(inv):
    hv = inv["_meta"]["hostvars"]
    hv["220100-RTR"] = copy.deepcopy(hv["220100-rtr"])
    assert "220100-RTR" in error(inv)


def test_host_name_that_clashes_with_the_switch_namespace_is_refused(inv):
    hv = inv["_meta"]["hostvars"]
    hv["sw"] = hv.pop("bu0002")
    assert "host sw" in error(inv)


def test_production_address_is_refused(inv):
    iface(inv, "220102-app1", "eth1")["address"] = "10.22.1.10/24"
    msg = error(inv)
    assert "site 220102, host 220102-app1" in msg and "jincai_interfaces[1].address" in msg
    assert "outside the lab range" in msg


def test_management_address_outside_the_management_network_is_refused(inv):
    iface(inv, "bu0001", "eth0")["address"] = "198.18.99.9/24"
    assert "jincai_mgmt_address" in error(inv)


def test_management_address_of_the_control_node_is_refused(inv):
    iface(inv, "bu0001", "eth0")["address"] = "198.19.0.1/24"
    assert "control node" in error(inv)


def test_duplicate_address_is_refused(inv):
    iface(inv, "220102-app1", "eth1")["address"] = "198.18.17.1/24"
    assert "host 220102-rtr: jincai_interfaces: address 198.18.17.1 is also on 220102-app1 eth1" in error(inv)


def test_address_without_prefix_is_refused(inv):
    iface(inv, "220102-app1", "eth1")["address"] = "198.18.17.11"
    assert "needs a prefix length" in error(inv)


def test_segment_members_in_different_subnets_are_refused(inv):
    iface(inv, "220102-app1", "eth1")["address"] = "198.18.99.11/24"
    inv["_meta"]["hostvars"]["220102-app1"]["jincai_routes"] = []
    assert "different subnets" in error(inv)


def test_route_via_a_gateway_on_no_subnet_is_refused(inv):
    inv["_meta"]["hostvars"]["220102-app1"]["jincai_routes"] = [{"to": "default", "via": "198.18.33.1"}]
    assert "jincai_routes[0].via" in error(inv)


def test_interface_name_too_long_for_the_kernel_is_refused(inv):
    iface(inv, "220102-app1", "eth1")["name"] = "a-very-long-name0"
    assert "jincai_interfaces[1].name" in error(inv)


def test_empty_inventory_is_refused():
    with pytest.raises(topology.TopologyError, match="hostvars"):
        topology.plan({}, source="x")


def test_load_names_a_missing_inventory(tmp_path):
    with pytest.raises(topology.TopologyError, match="no such inventory"):
        topology.load(str(tmp_path / "nope"))


def test_fingerprint_follows_addresses(inv):
    before = topology.plan(inv).fingerprint()
    assert topology.plan(copy.deepcopy(inv)).fingerprint() == before
    iface(inv, "220102-app1", "eth1")["address"] = "198.18.17.12/24"
    assert topology.plan(inv).fingerprint() != before


def test_the_lab_inventory_plans_the_19_lab_hosts():
    from jincai import ROOT

    source = os.path.join(ROOT, "inventories", "lab")
    plan = topology.plan(topology.load(source), source=source)
    assert sorted(plan.hosts) == sorted(
        ["220000-rtr", "220000-vpn", "220000-svc", "220000-app1", "220000-pbc", "220000-bank1",
         "220000-tax", "220100-rtr", "220100-app1", "220200-rtr", "220200-app1", "220102-rtr",
         "220102-app1", "220103-rtr", "220103-app1", "220202-rtr", "220202-app1", "bu0001", "bu0002"])
    routers = {n for n, h in plan.hosts.items() if h.is_router}
    assert routers == {n for n in plan.hosts if n.endswith("-rtr")}
    for seg in plan.segments.values():
        if seg.id.startswith("wan-"):
            assert seg.point_to_point and {h for h, _ in seg.members} <= routers
    assert any(s.startswith("metro-") for s in plan.segments)
    vpn = [s for s in plan.segments.values() if {"bu0001", "bu0002"} <= {h for h, _ in s.members}]
    assert len(vpn) == 1 and "220000-vpn" in {h for h, _ in vpn[0].members}


def test_routers_and_the_vpn_concentrator_forward_packets_and_nothing_else_does():
    from jincai import ROOT

    source = os.path.join(ROOT, "inventories", "lab")
    plan = topology.plan(topology.load(source), source=source)
    forwarding = {n for n, h in plan.hosts.items() if h.forwards}
    assert forwarding == {n for n in plan.hosts if n.endswith("-rtr")} | {"220000-vpn"}
