"""The lab topology is built from the typed model and refuses bad input with one clear line."""

import copy
import dataclasses
import ipaddress
import os

import pytest

from jincai import ROOT
from jincai.lab import topology
from jincai.source import model

LAB = os.path.join(ROOT, "inventories", "lab")


@pytest.fixture(scope="module")
def lab_model():
    return topology.load(LAB)


@pytest.fixture
def m(lab_model):
    """A fresh copy of the lab's model for a test to break."""
    return copy.deepcopy(lab_model)


def iface(m, host, name):
    return next(i for i in m.hosts[host].interfaces if i.name == name)


def error(m):
    with pytest.raises(topology.TopologyError) as exc:
        topology.plan(m, source="inv")
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("inv: ")
    return msg


def _lab_source(overrides):
    """The lab's model built from its source with files replaced: ``{file name: (old, new)}``."""
    texts = {}
    for rel, (old, new) in overrides.items():
        path = os.path.join(LAB, "source", rel)
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        assert text.count(old) == 1, (rel, old)
        texts[path] = text.replace(old, new)
    return model.build(model.load(LAB, overrides=texts))


def test_lab_inventory_gives_20_hosts_wan_cables_and_bridged_lans(lab_model):
    plan = topology.plan(lab_model, source="inv")
    assert len(plan.hosts) == 20
    wan = {s.id for s in plan.segments.values() if s.point_to_point}
    assert wan == {s for s in plan.segments if s.startswith("wan-")}
    # a site LAN with just a router and one server is still a bridge: a host can be added later
    assert not plan.segments["lan-220100"].point_to_point
    assert len(plan.segments["lan-220100"].members) == 2
    assert plan.hosts["220100-rtr"].is_router and not plan.hosts["220100-app1"].is_router
    raw = model.load(LAB).site_map()  # the source files, not the model
    assert str(plan.hosts["220100-rtr"].loopbacks[0]) == f"{raw['220100']['router']['loopback']}/32"
    # every administrator and technician of the source gets a lab key
    people = {a["user"] for a in model.load(LAB).network["admins"]}
    people |= {t["user"] for s in raw.values() for t in s.get("technicians") or []}
    assert len(people) >= 3
    assert plan.technicians == [(u, f"/var/lib/jincai-lab/keys/{u}.pub") for u in sorted(people)]


def test_the_plan_is_the_models_hosts_interfaces_and_routes(lab_model):
    """Each lab host is the model's host: its interfaces (mgmt apart), routes and site, nothing re-read."""
    plan = topology.plan(lab_model)
    assert set(plan.hosts) == set(lab_model.hosts)
    for name, h in lab_model.hosts.items():
        lab_host = plan.hosts[name]
        assert lab_host.site == h.site and lab_host.functions == h.functions
        assert [(i.name, i.role, str(i.address), i.segment, i.peer) for i in [lab_host.mgmt] + lab_host.interfaces] \
            == [(i.name, i.role, i.address, i.segment, i.peer) for i in h.interfaces]
        assert [(str(d), str(g)) for d, g in lab_host.routes] == \
            [("0.0.0.0/0" if r["to"] == "default" else r["to"], r["via"]) for r in h.routes or []]


def test_a_change_in_the_source_reaches_the_plan_through_the_model():
    """Built from a source whose party is no longer a managed host and whose control node moved:
    the party becomes a stub on its site's metro segment, the control node follows the plan."""
    m = _lab_source({
        "network.yml": ("control_node: 198.19.0.1", "control_node: 198.19.0.254"),
        "sites/220000.yml": ("address: 198.18.1.12,\n         managed: true, mgmt: 198.19.0.16}",
                             "address: 198.18.1.12}"),
    })
    plan = topology.plan(m, source="edited")
    assert plan.control == ipaddress.ip_interface("198.19.0.254/24")
    assert "220000-tax" not in plan.hosts and list(plan.stubs) == ["220000-tax"]
    stub = plan.stubs["220000-tax"]
    assert (stub.site, stub.kind, str(stub.iface.address)) == ("220000", "tax_bureau", "198.18.1.12/24")
    assert stub.iface.segment == "metro-220000" and str(stub.gateway) == m.sites["220000"].metro_gateway
    assert ("220000-tax", stub.iface) in plan.segments["metro-220000"].members
    assert plan.fingerprint() != topology.plan(topology.load(LAB)).fingerprint()


def test_a_routers_loopback_and_the_people_come_from_the_model(m):
    m.sites["220102"].loopback = "198.18.254.99"
    m.sites["220102"].technicians = [{"user": "zhangwei", "key_file": "/keys/zhangwei.pub"}]
    plan = topology.plan(m)
    assert [str(a) for a in plan.hosts["220102-rtr"].loopbacks] == ["198.18.254.99/32"]
    assert ("zhangwei", "/keys/zhangwei.pub") in plan.technicians


def test_unknown_segment_peer_is_refused(m):
    iface(m, "220100-rtr", "eth2").peer = "229999-rtr"
    msg = error(m)
    assert "site 220100, host 220100-rtr" in msg and "peer" in msg and "229999-rtr" in msg


def test_peer_without_an_interface_on_the_segment_is_refused(m):
    iface(m, "220100-rtr", "eth2").peer = "220202-rtr"
    msg = error(m)
    assert "'220202-rtr' has no interface on segment" in msg


def test_host_name_clash_is_refused(m):
    twin = dataclasses.replace(m.hosts["220100-rtr"], name="220100-RTR")
    m.hosts[twin.name] = twin
    assert "220100-RTR" in error(m)


def test_host_name_that_clashes_with_the_switch_namespace_is_refused(m):
    host = m.hosts.pop("bu0002")
    host.name = "sw"
    m.hosts["sw"] = host
    assert "host sw" in error(m)


def test_production_address_is_refused(m):
    iface(m, "220102-app1", "eth1").address = "10.22.1.10/24"
    msg = error(m)
    assert "site 220102, host 220102-app1" in msg and "jincai_interfaces[1].address" in msg
    assert "outside the lab range" in msg


def test_management_address_outside_the_management_network_is_refused(m):
    iface(m, "bu0001", "eth0").address = "198.18.99.9/24"
    assert "jincai_mgmt_address" in error(m)


def test_management_address_of_the_control_node_is_refused(m):
    iface(m, "bu0001", "eth0").address = "198.19.0.1/24"
    assert "control node" in error(m)


def test_a_control_node_outside_the_management_range_is_refused(m):
    m.management_network, m.control_node = "10.9.0.0/24", "10.9.0.1"
    assert "jincai_lab.control_node: 10.9.0.1/24 must be an address/prefix whose network lies inside" in error(m)


def test_duplicate_address_is_refused(m):
    iface(m, "220102-app1", "eth1").address = "198.18.17.1/24"
    assert "host 220102-rtr: jincai_interfaces: address 198.18.17.1 is also on 220102-app1 eth1" in error(m)


def test_address_without_prefix_is_refused(m):
    iface(m, "220102-app1", "eth1").address = "198.18.17.11"
    assert "needs a prefix length" in error(m)


def test_segment_members_in_different_subnets_are_refused(m):
    iface(m, "220102-app1", "eth1").address = "198.18.99.11/24"
    m.hosts["220102-app1"].routes = []
    assert "different subnets" in error(m)


def test_route_via_a_gateway_on_no_subnet_is_refused(m):
    m.hosts["220102-app1"].routes = [{"to": "default", "via": "198.18.33.1"}]
    assert "jincai_routes[0].via" in error(m)


def test_interface_name_too_long_for_the_kernel_is_refused(m):
    iface(m, "220102-app1", "eth1").name = "a-very-long-name0"
    assert "jincai_interfaces[1].name" in error(m)


def test_a_model_without_hosts_or_an_inventory_dict_is_refused(lab_model):
    with pytest.raises(topology.TopologyError, match="no hosts"):
        topology.plan(dataclasses.replace(lab_model, hosts={}), source="x")
    with pytest.raises(topology.TopologyError, match="not a model"):
        topology.plan({"_meta": {"hostvars": {}}}, source="x")


def test_load_names_a_missing_inventory_and_refuses_inventory_json(tmp_path):
    with pytest.raises(topology.TopologyError, match="no such inventory"):
        topology.load(str(tmp_path / "nope"))
    (tmp_path / "inv.json").write_text("{}")
    with pytest.raises(topology.TopologyError, match="built from a source of truth"):
        topology.load(str(tmp_path / "inv.json"))


def test_fingerprint_follows_addresses(m):
    before = topology.plan(m).fingerprint()
    assert topology.plan(copy.deepcopy(m)).fingerprint() == before
    iface(m, "220102-app1", "eth1").address = "198.18.17.12/24"
    assert topology.plan(m).fingerprint() != before


def test_the_lab_inventory_plans_the_20_lab_hosts():
    plan = topology.plan(topology.load(LAB), source=LAB)
    assert sorted(plan.hosts) == sorted(
        ["220000-rtr", "220000-vpn", "220000-svc", "220000-app1", "220000-pbc", "220000-bank1",
         "220000-tax", "220100-rtr", "220100-app1", "220200-rtr", "220200-app1", "220102-rtr",
         "220102-app1", "220103-rtr", "220103-app1", "220202-rtr", "220202-app1", "bu0001", "bu0002",
         "tw0001"])
    routers = {n for n, h in plan.hosts.items() if h.is_router}
    assert routers == {n for n in plan.hosts if n.endswith("-rtr")}
    for seg in plan.segments.values():
        if seg.id.startswith("wan-"):
            assert seg.point_to_point and {h for h, _ in seg.members} <= routers
    assert any(s.startswith("metro-") for s in plan.segments)
    vpn = [s for s in plan.segments.values() if {"bu0001", "bu0002", "tw0001"} <= {h for h, _ in s.members}]
    assert len(vpn) == 1 and "220000-vpn" in {h for h, _ in vpn[0].members}


def test_routers_and_the_vpn_concentrator_forward_packets_and_nothing_else_does():
    plan = topology.plan(topology.load(LAB), source=LAB)
    forwarding = {n for n, h in plan.hosts.items() if h.forwards}
    assert forwarding == {n for n in plan.hosts if n.endswith("-rtr")} | {"220000-vpn"}
