"""Derived host data of the lab and Jilin sources (the contract in docs/architecture.md)."""

import ipaddress
import os
from collections import Counter

import pytest

from jincai import ROOT
from jincai.source import model

LAB = os.path.join(ROOT, "inventories", "lab")
JILIN = os.path.join(ROOT, "inventories", "jilin")


@pytest.fixture(scope="module")
def lab():
    return model.derive(model.load(LAB))


@pytest.fixture(scope="module")
def jilin():
    return model.derive(model.load(JILIN))


def test_lab_hosts_and_groups(lab):
    sites = ["220000", "220100", "220200", "220102", "220103", "220202"]
    expected = {f"{s}-{h}" for s in sites for h in ("rtr", "app1")}
    expected |= {"220000-vpn", "220000-svc", "220000-pbc", "220000-bank1", "220000-tax", "bu0001", "bu0002", "tw0001"}
    assert set(lab.hosts) == expected
    g = lab.groups
    assert g["province"] == ["220000-rtr", "220000-vpn", "220000-svc", "220000-app1"]
    assert set(g["city"]) == {"220100-rtr", "220100-app1", "220200-rtr", "220200-app1"}
    assert set(g["routers"]) == set(g["platform_frr"]) == {f"{s}-rtr" for s in sites}
    assert g["vpn_concentrators"] == ["220000-vpn"] and g["services"] == ["220000-svc"]
    assert set(g["machine_room"]) == {f"{s}-app1" for s in sites} | {"220000-vpn", "220000-svc"}
    assert g["budget_unit_clients"] == ["bu0001", "bu0002"] and g["township_clients"] == ["tw0001"]
    assert g["external_parties"] == ["220000-pbc", "220000-bank1", "220000-tax"]
    assert g["site_220102"] == ["220102-rtr", "220102-app1"]


def test_lab_router_interfaces_in_stable_order(lab):
    ifs = lab.hosts["220100-rtr"]["jincai_interfaces"]
    assert [(i["name"], i["role"], i["address"], i["peer"], i["segment"]) for i in ifs] == [
        ("eth0", "mgmt", "198.19.0.20/24", None, "mgmt"),
        ("eth1", "uplink", "198.18.248.2/30", "220000-rtr", "wan-220000-220100"),
        ("eth2", "lan", "198.18.16.1/24", None, "lan-220100"),
        ("eth3", "downlink", "198.18.248.9/30", "220102-rtr", "wan-220100-220102"),
        ("eth4", "downlink", "198.18.248.13/30", "220103-rtr", "wan-220100-220103"),
    ]
    prov = [(i["name"], i["role"], i["segment"]) for i in lab.hosts["220000-rtr"]["jincai_interfaces"]]
    assert prov[:3] == [("eth0", "mgmt", "mgmt"), ("eth1", "lan", "lan-220000"), ("eth2", "metro", "metro-220000")]
    assert [p[1] for p in prov[3:]] == ["downlink", "downlink"]  # downlinks last: adding a site moves nothing
    r = lab.hosts["220100-rtr"]["jincai_router"]
    assert (r["platform"], r["loopback"], r["router_id"]) == ("frr", "198.18.254.2", "198.18.254.2")
    assert (r["ospf"]["hello"], r["ospf"]["dead"], r["ospf"]["passive"]) == (1, 4, ["eth2"])
    assert {"prefix": "198.18.254.2/32", "area": "0.0.0.0"} in r["networks"]
    assert lab.hosts["220000-rtr"]["jincai_router"]["static_routes"] == [
        {"prefix": "198.18.160.0/21", "via": "198.18.0.10", "redistribute": True}]


def test_lab_servers_parties_and_clients(lab):
    vpn = lab.hosts["220000-vpn"]
    assert [(i["name"], i["role"], i["segment"]) for i in vpn["jincai_interfaces"]] == [
        ("eth0", "mgmt", "mgmt"), ("eth1", "lan", "lan-220000"), ("eth2", "vpn_access", "vpnaccess-220000")]
    assert vpn["jincai_vpn"]["pool"] == "198.18.160.0/21" and vpn["jincai_vpn"]["budget_units"] == 1040
    assert vpn["jincai_lab"]["capabilities"] is True
    app = lab.hosts["220102-app1"]
    assert app["jincai_apps"] == ["budget", "treasury", "nontax", "township"]
    assert app["jincai_routes"] == [{"to": "default", "via": "198.18.17.1"}]
    assert app["jincai_lab"] == {"capabilities": False, "segments": ["mgmt", "lan-220102"],
                                 "control_node": "198.19.0.1/24"}
    assert [t["user"] for t in app["jincai_technicians"]] == ["t220102a", "t220102b"]
    assert app["jincai_technicians"][0]["key_file"] == "/var/lib/jincai-lab/keys/t220102a.pub"
    bu = lab.hosts["bu0001"]
    assert [i["segment"] for i in bu["jincai_interfaces"]] == ["mgmt", "vpnaccess-220000"]
    assert bu["jincai_vpn_client"]["server"] == "198.18.232.1"
    pbc = lab.hosts["220000-pbc"]
    assert pbc["jincai_party"]["targets"] == [{"app": "treasury", "host": "220000-app1", "address": "198.18.0.12",
                                                "port": 8102}]
    parties = lab.hosts["220000-rtr"]["jincai_parties"]
    assert [(p["name"], p["apps"]) for p in parties] == [
        ("220000-pbc", ["treasury"]), ("220000-bank1", ["treasury"]), ("220000-tax", ["nontax"])]


def test_lab_ntp_chain_and_management(lab):
    svc = "198.18.0.11"
    assert lab.hosts["220000-svc"]["jincai_ntp_servers"] == []  # the lab has no authorised source
    assert lab.hosts["220000-app1"]["jincai_ntp_servers"] == [svc]
    assert lab.hosts["220100-app1"]["jincai_ntp_servers"] == [svc]
    # a county follows its city's time server (the city's app server), the province as fallback
    assert lab.hosts["220102-app1"]["jincai_ntp_servers"] == ["198.18.16.10", svc]
    assert "ntp_server" in lab.hosts["220100-app1"]["jincai_functions"]
    assert "ntp_server" not in lab.hosts["220102-app1"]["jincai_functions"]
    assert lab.hosts["220202-rtr"]["jincai_management_networks"] == ["198.19.0.0/24", "198.18.33.0/24"]
    assert lab.hosts["220102-rtr"]["jincai_province_services"] == {"collector": svc, "ntp": svc, "artifacts": svc}


def test_lab_uses_only_the_benchmark_range(lab):
    allowed = ipaddress.ip_network("198.18.0.0/15")
    for name, hv in lab.hosts.items():
        assert ipaddress.ip_address(hv["ansible_host"]) in allowed, name
        for i in hv["jincai_interfaces"]:
            assert ipaddress.ip_interface(i["address"]).network.subnet_of(allowed), (name, i)


def test_lab_segments_wire_up(lab):
    members = Counter(i["segment"] for hv in lab.hosts.values() for i in hv["jincai_interfaces"])
    assert members["mgmt"] == len(lab.hosts)
    for seg, n in members.items():
        if seg.startswith("wan-"):
            assert n == 2, seg
    assert members["lan-220000"] == 4 and members["metro-220000"] == 4 and members["vpnaccess-220000"] == 4
    for name, hv in lab.hosts.items():
        names = [i["name"] for i in hv["jincai_interfaces"]]
        assert names == [f"eth{n}" for n in range(len(names))], name


def test_jilin_production_derivation(jilin):
    assert len([h for h in jilin.hosts if h.endswith("-rtr")]) == 70
    assert Counter(len(jilin.groups[t]) for t in ("province", "city", "county"))
    supernet = ipaddress.ip_network("10.22.0.0/16")
    for name, hv in jilin.hosts.items():
        assert "jincai_lab" not in hv
        assert ipaddress.ip_address(hv["ansible_host"]) in supernet
        names = [i["name"] for i in hv["jincai_interfaces"]]
        assert len(names) == len(set(names)), name
    prov = jilin.hosts["220000-rtr"]
    assert prov["jincai_router"]["platform"] == "huawei_vrpv8"
    assert prov["jincai_interfaces"][0]["name"] == "GE1/0/1"
    assert ("mgmt", "10.22.2.1/24", "mgmt-220000") in [(i["role"], i["address"], i["segment"])
                                                      for i in prov["jincai_interfaces"]]
    county = jilin.hosts["220102-rtr"]  # the FRR pilot in 南关区
    assert county["jincai_router"]["ospf"]["area"] == "0.0.0.1"
    assert county["jincai_interfaces"][0]["name"] == "eth1"
    hv = jilin.hosts["220184-rtr"]  # 公主岭市: backup straight to the province, marked direct
    ups = [(i["peer"], i["ospf_cost"]) for i in hv["jincai_interfaces"] if i["role"] == "uplink"]
    assert ups == [("220100-rtr", 10), ("220000-rtr", 100)]
    assert {g for g in jilin.groups if g.startswith("platform_")} == {
        "platform_huawei_vrp", "platform_huawei_vrpv8", "platform_h3c_comware", "platform_cisco_ios", "platform_frr"}
    assert jilin.hosts["220100-vpn"]["jincai_vpn"]["served_sites"][0] == "220100"
    assert all(t["key"].startswith("ssh-ed25519 ") for t in jilin.hosts["220102-app1"]["jincai_technicians"])


def test_key_file_resolves_against_keys_dir(tmp_path):
    src = model.load(LAB)
    src.network["keys_dir"] = str(tmp_path)
    (tmp_path / "t220102a.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFakeFakeFakeFakeFakeFakeFakeFake x\n")
    techs = model.derive(src).hosts["220102-rtr"]["jincai_technicians"]
    assert techs[0]["key"].startswith("ssh-ed25519 AAAAC3")
    assert techs[0]["key_file"] == str(tmp_path / "t220102a.pub")
    assert techs[1]["key"] is None  # not generated yet: consumers read key_file at run time
