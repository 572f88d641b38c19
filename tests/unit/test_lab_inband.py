"""The in-band county of the bootstrap proofs, its pure parts (jincai/lab/blank.py ``inband=True``).

A copy of the lab inventory is switched to ``plan.management.mode: inband`` and county 220104 added
to it: the copy validates, the county's hosts are managed on their in-band addresses (router
loopback, server LAN address) and have no management port, the lab plan of the copy gives them no
management link, the control node's address in the management zone is one the day-0 kit's
management ACL admits, and the province advertises the zone the way its template renders it.
Nothing is contacted; no namespace is made.
"""

import ipaddress
import os
import shutil
import subprocess

import jinja2
import pytest
import yaml

from jincai import ROOT
from jincai.bootstrap import day0
from jincai.lab import blank, topology
from jincai.source import model, validate
from jincai.source import inventory as invmod

LAB = os.path.join(ROOT, "inventories", "lab")
CODE = "220104"
LAB_RANGE = ipaddress.ip_network("198.18.0.0/15")
OOB = ipaddress.ip_network("198.19.0.0/16")


@pytest.fixture(scope="module")
def inband_copy(tmp_path_factory):
    """A copy of the lab inventory, switched to in-band, with county 220104 added by ``jincai site add``."""
    from jincai import sitecmd

    d = tmp_path_factory.mktemp("inband") / "lab"
    shutil.copytree(LAB, d)
    blank.switch_to_inband(str(d))
    assert sitecmd.add(str(d), CODE, write=True) == 0
    return str(d)


@pytest.fixture(scope="module")
def inv(inband_copy):
    return invmod.build(inband_copy)


@pytest.fixture(scope="module")
def hostvars(inv):
    return inv["_meta"]["hostvars"]


def test_the_switch_changes_only_the_management_plan(inband_copy):
    with open(os.path.join(inband_copy, "source", "network.yml"), encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)["network"]
    with open(os.path.join(LAB, "source", "network.yml"), encoding="utf-8") as fh:
        orig = yaml.safe_load(fh)["network"]
    assert doc["plan"]["management"] == {"mode": "inband", "network": blank.INBAND_ZONE}
    doc["plan"].pop("management")
    orig["plan"].pop("management")
    assert doc == orig


def test_the_inband_copy_validates(inband_copy):
    errors = [f for f in validate.findings(inband_copy) if f.severity == "error"]
    assert errors == []


def test_a_zone_outside_the_lab_range_is_refused(tmp_path):
    shutil.copytree(LAB, tmp_path / "lab")
    with pytest.raises(blank.BlankError, match="outside the lab range"):
        blank.switch_to_inband(str(tmp_path / "lab"), zone="10.22.2.0/24")


def test_site_add_records_no_management_address_in_band(inband_copy):
    site = model.load(inband_copy).site_map()[CODE]
    assert site["hosts"] and not any("mgmt" in h for h in site["hosts"])


def test_the_countys_hosts_are_managed_on_their_inband_addresses(hostvars):
    rtr, app = hostvars[f"{CODE}-rtr"], hostvars[f"{CODE}-app1"]
    loopback = rtr["jincai_router"]["loopback"]
    assert rtr["ansible_host"] == rtr["jincai_mgmt_address"] == loopback
    lan = next(i for i in app["jincai_interfaces"] if i["role"] == "lan")
    assert app["ansible_host"] == app["jincai_mgmt_address"] == lan["address"].split("/")[0]
    for hv in (rtr, app):
        assert all(i["role"] != "mgmt" for i in hv["jincai_interfaces"])
        assert hv["jincai_management_networks"] == [blank.INBAND_ZONE, hv["jincai_site"]["lan"]]
        assert ipaddress.ip_address(hv["ansible_host"]) in LAB_RANGE
        assert ipaddress.ip_address(hv["ansible_host"]) not in OOB
    # eth0 stays the uncabled management port: the other ports keep their out-of-band lab names
    assert [(i["name"], i["role"]) for i in rtr["jincai_interfaces"]] == [("eth1", "uplink"), ("eth2", "lan")]
    assert [(i["name"], i["role"]) for i in app["jincai_interfaces"]] == [("eth1", "lan")]


def test_the_running_labs_sites_keep_their_out_of_band_management(hostvars):
    main = invmod.build(LAB)["_meta"]["hostvars"]
    for name, hv in main.items():
        assert hostvars[name]["ansible_host"] == hv["ansible_host"]
        # the same ports, less the parent's new downlink to the county
        ifaces = [i for i in hostvars[name]["jincai_interfaces"] if i.get("peer") != f"{CODE}-rtr"]
        assert ifaces == hv["jincai_interfaces"], name


def test_the_lab_plan_gives_the_inband_hosts_no_management_link(inv, inband_copy):
    plan = blank.lab_plan(inv, inband_copy, CODE, inband=True)
    county = {n: h for n, h in plan.hosts.items() if h.site == CODE}
    assert sorted(county) == [f"{CODE}-app1", f"{CODE}-rtr"]
    assert all(h.mgmt is None for h in county.values())
    assert all(plan.hosts[n].mgmt is not None for n in plan.hosts if n not in county)
    segs = {s.id: sorted((h, i.name) for h, i in s.members) for s in plan.segments.values()
            if any(h in county for h, _ in s.members)}
    assert segs == {f"lan-{CODE}": [(f"{CODE}-app1", "eth1"), (f"{CODE}-rtr", "eth2")],
                    f"wan-220100-{CODE}": [("220100-rtr", "eth5"), (f"{CODE}-rtr", "eth1")]}
    assert county[f"{CODE}-app1"].routes == [(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_address("198.18.19.1"))]


def test_the_lab_plan_refuses_a_mismatch(inv, inband_copy, inv_oob):
    with pytest.raises(blank.BlankError, match="attach it in-band"):
        blank.lab_plan(inv, inband_copy, CODE, inband=False)
    with pytest.raises(blank.BlankError, match="switch the copy first"):
        blank.lab_plan(inv, inband_copy, "220102", inband=True)
    with pytest.raises(blank.BlankError, match="not an in-band zone"):
        blank.inband_zone(inv_oob, CODE)


@pytest.fixture(scope="module")
def oob_copy(tmp_path_factory):
    """The out-of-band copy of the other bootstrap proofs (county 220104 with management addresses)."""
    from jincai import sitecmd

    d = tmp_path_factory.mktemp("oob") / "lab"
    shutil.copytree(LAB, d)
    assert sitecmd.add(str(d), CODE, write=True) == 0
    return str(d)


@pytest.fixture(scope="module")
def inv_oob(oob_copy):
    return invmod.build(oob_copy)


def test_the_oob_copy_plans_as_before(inv_oob, oob_copy):
    plan = blank.lab_plan(inv_oob, oob_copy, CODE, inband=False)
    assert plan.hosts[f"{CODE}-rtr"].mgmt.address.ip in OOB


def test_the_zone_and_the_control_nodes_routes(inv, hostvars):
    zone = blank.inband_zone(inv, CODE)
    assert zone == {"network": "198.18.2.0/24", "router": "220000-rtr", "router_address": "198.18.2.1/24",
                    "control_address": "198.18.2.254/24", "area": "0.0.0.0",
                    "routes": ["198.18.19.0/24", "198.18.254.7/32"]}
    # every route, the zone and both zone addresses in the lab range, none on the out-of-band network
    for p in zone["routes"] + [zone["network"]]:
        assert ipaddress.ip_network(p).subnet_of(LAB_RANGE) and not ipaddress.ip_network(p).overlaps(OOB)
    # the routes cover exactly the county's management addresses
    addrs = [ipaddress.ip_address(hostvars[n]["ansible_host"]) for n in (f"{CODE}-rtr", f"{CODE}-app1")]
    assert all(any(a in ipaddress.ip_network(p) for p in zone["routes"]) for a in addrs)
    # the province router's zone address is what the model gives production's (first of the zone)
    prod = model.derive(model.load(os.path.join(ROOT, "inventories", "jilin"))).hosts["220000-rtr"]
    prod_zone = next(i for i in prod["jincai_interfaces"] if i["role"] == "mgmt")
    assert prod_zone["address"] == "10.22.2.1/24"
    assert zone["router_address"].split(".")[-1] == prod_zone["address"].split(".")[-1]


def test_inband_routes_refuse_a_prefix_outside_the_lab_range():
    hv = {"x-app1": {"jincai_site_code": "1", "jincai_mgmt_address": "10.0.0.10",
                     "jincai_interfaces": [{"role": "lan", "address": "10.0.0.10/24"}]}}
    with pytest.raises(blank.BlankError, match="outside the lab range"):
        blank.inband_routes(hv, "1")


@pytest.fixture(scope="module")
def kit(inband_copy, tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "inband", "-f", str(d / "k")], check=True)
    return day0.build_kit(inband_copy, CODE, str(d / "k.pub"), str(d / "k.pub"))


def test_the_day0_acl_admits_the_control_nodes_zone_address(kit, inv):
    """The management ACL the kit writes on the router (nftables) admits the control node's source
    address as the county sees it over the WAN: its address in the province's management zone."""
    script = kit[f"{CODE}-rtr.day0.sh"]
    nft = script.split("<<'JINCAI_NFT'\n", 1)[1].split("\nJINCAI_NFT\n", 1)[0]
    line = next(ln for ln in nft.splitlines() if "tcp dport 22 accept" in ln and "ip saddr" in ln)
    nets = [ipaddress.ip_network(n.strip()) for n in line.split("{", 1)[1].split("}", 1)[0].split(",")]
    control = ipaddress.ip_interface(blank.inband_zone(inv, CODE)["control_address"]).ip
    assert any(control in n for n in nets), line
    assert not any(n.overlaps(OOB) for n in nets)  # no out-of-band management network in an in-band ACL
    assert 'iifname "eth0"' not in nft  # no out-of-band management port either


def test_the_day0_router_carries_the_lan_the_servers_are_reached_through(kit, hostvars):
    script = kit[f"{CODE}-rtr.day0.sh"]
    frr = script.split("<<'JINCAI_FRR'\n", 1)[1].split("\nJINCAI_FRR\n", 1)[0]
    lan = frr.split("interface eth2\n", 1)[1].split("exit\n", 1)[0]
    gateway = next(r["via"] for r in hostvars[f"{CODE}-app1"]["jincai_routes"] if r["to"] == "default")
    assert f" ip address {gateway}/24\n" in lan and " ip ospf passive\n" in lan
    assert " ip address 198.18.248.22/30\n" in frr and " ip address 198.18.254.7/32\n" in frr


def test_the_labs_zone_lines_are_what_the_template_renders_for_an_inband_province():
    """blank.add advertises the lab's zone port on the province router with vtysh; those lines are
    the ones frr.j2 renders for an in-band province's management-zone interface."""
    src = model.load(os.path.join(ROOT, "inventories", "jilin"))
    src.site_map()["220000"]["router"]["platform"] = "frr"
    hv = model.derive(src).hosts["220000-rtr"]
    zone = next(i for i in hv["jincai_interfaces"] if i["role"] == "mgmt")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(day0.ROUTER_TEMPLATES), trim_blocks=True,
                             undefined=jinja2.StrictUndefined)
    with open(day0.POLICY, encoding="utf-8") as fh:
        policy = yaml.safe_load(fh)["metro_policy"]
    text = env.get_template("frr.j2").render(**hv, router_metro_policy=policy,
                                             router_snmp={"user": "u", "auth_key": "A", "priv_key": "P"})
    block = [ln.strip() for ln in text.split(f"\ninterface {zone['name']}\n", 1)[1].split("\nexit\n", 1)[0].splitlines()]
    cmds = blank.zone_frr_commands(blank.ZONE_ROUTER_LINK, "0.0.0.0")
    ospf = [c for c in cmds if c.startswith("ip ospf")]
    assert ospf == [ln for ln in block if ln.startswith("ip ospf")]
    assert cmds[0] == "configure terminal" and cmds[1] == f"interface {blank.ZONE_ROUTER_LINK}" and cmds[-1] == "end"
