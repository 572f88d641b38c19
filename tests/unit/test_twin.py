"""The province twin's translation (jincai/lab/twin.py): a production source in, a lab source out.

What must hold: the same sites (codes, names, tiers, parents, uplinks primary and backup, hosts and
functions, parties, concentrators, technicians), every address inside 198.18.0.0/15 and none of
production's, a deterministic result, stability under ``jincai site add``, a lab topology of the
province's shape (management wider than a /24, unmanaged parties as namespace stubs), and every
vendor configuration still rendered for its production platform.
"""

import ipaddress
import json
import os
import re
import shutil

import pytest

from jincai import ROOT, sitecmd
from jincai.lab import topology, twin
from jincai.source import inventory, model, validate

JILIN = os.path.join(ROOT, "inventories", "jilin")
LAB_RANGE = ipaddress.ip_network("198.18.0.0/15")
ADDR_RE = re.compile(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b")


@pytest.fixture(scope="module")
def twin_inv(twin_dir):
    return inventory.build(twin_dir)


@pytest.fixture(scope="module")
def twin_model(twin_dir):
    return topology.load(twin_dir)


def _sites(path):
    return model.load(path).site_map()


def test_the_twin_is_a_valid_lab_source(twin_dir):
    src = model.load(twin_dir)
    errors = [f for f in validate.check(src) if f.severity == "error"]
    assert errors == []
    assert src.network["environment"] == "lab"
    assert src.network["name"] == "jilin-twin"


def test_the_twin_runs_the_labs_test_applications(twin_dir):
    # The catalogue lives in the inventory (issue 17): without the lab's, the twin would deploy no app.
    from jincai import release

    apps = release.inventory_vars(twin_dir)
    assert apps["apps_release"] == "lab-2" and apps["apps_build_fixtures"] is True
    assert release.catalogue_findings(release.load_release("lab-2"), release.catalogue(twin_dir)) == []


def test_sites_links_hosts_and_parties_are_preserved(twin_dir):
    prod, tw = _sites(JILIN), _sites(twin_dir)
    assert sorted(prod) == sorted(tw) and len(tw) == 70
    backups = 0
    for code, p in prod.items():
        t = tw[code]
        for key in ("tier", "parent", "name_zh", "pinyin", "budget_units"):
            assert t.get(key) == p.get(key), (code, key)
        assert [(u["peer"], u["role"], u.get("carrier")) for u in t.get("uplinks") or []] == \
               [(u["peer"], u["role"], u.get("carrier")) for u in p.get("uplinks") or []], code
        backups += sum(u["role"] == "backup" for u in p.get("uplinks") or [])
        assert [(h["name"], h["function"]) for h in t["hosts"]] == [(h["name"], h["function"]) for h in p["hosts"]]
        assert [(x["name"], x["kind"], x["org"], x["apps"]) for x in t.get("parties") or []] == \
               [(x["name"], x["kind"], x["org"], x["apps"]) for x in p.get("parties") or []], code
        assert [x["user"] for x in t.get("technicians") or []] == [x["user"] for x in p.get("technicians") or []]
        assert all(x.get("key_file") == x["user"] and "key" not in x for x in t.get("technicians") or [])
        assert t["router"]["platform"] == "frr" and t["router"]["twin_of"] == p["router"]["platform"]
    assert backups == 23


def test_every_address_is_a_lab_address_and_none_is_production(twin_dir):
    texts = []
    for dirpath, _, files in os.walk(os.path.join(twin_dir, "source")):
        for f in files:
            with open(os.path.join(dirpath, f), encoding="utf-8") as fh:
                texts.append(fh.read())
    found = {a for t in texts for a in ADDR_RE.findall(t)}
    assert len(found) > 500
    assert all(ipaddress.ip_address(a) in LAB_RANGE for a in found), sorted(
        a for a in found if ipaddress.ip_address(a) not in LAB_RANGE)[:5]
    assert not any("10.22." in t for t in texts)


def test_addresses_keep_their_production_offsets(twin_dir):
    prod, tw = _sites(JILIN), _sites(twin_dir)
    for code in ("220000", "220100", "220102", "222401"):
        assert tw[code]["block"] == prod[code]["block"].replace("10.22.", "198.18.", 1)
        for ph, th in zip(prod[code]["hosts"], tw[code]["hosts"]):
            assert th["address"] == ph["address"].replace("10.22.", "198.18.", 1)
            assert th["mgmt"] == th["address"].replace("198.18.", "198.19.", 1)


def test_translation_is_deterministic(tmp_path, twin_dir):
    again = tmp_path / "again"
    twin.translate(JILIN, str(again))
    for dirpath, _, files in os.walk(os.path.join(twin_dir, "source")):
        for f in files:
            a = os.path.join(dirpath, f)
            b = os.path.join(str(again), os.path.relpath(a, twin_dir))
            with open(a, "rb") as fa, open(b, "rb") as fb:
                assert fa.read() == fb.read(), f


def test_site_add_on_production_changes_only_the_new_site(tmp_path):
    """Remove a county from a copy of production, translate; `site add` it back, translate again:
    every other site of the twin is unchanged, and the new one appears."""
    prod = tmp_path / "jilin"
    shutil.copytree(JILIN, prod)
    city_file = prod / "source" / "sites" / "222400.yml"
    code = "222426"
    text = city_file.read_text(encoding="utf-8")
    start = text.index(f"  - code: '{code}'")
    end = text.find("\n  - code: ", start + 1)
    city_file.write_text(text[:start] + (text[end + 1:] if end > 0 else ""), encoding="utf-8")
    assert code not in _sites(str(prod))
    before = tmp_path / "before"
    twin.translate(str(prod), str(before))
    assert sitecmd.add(str(prod), code, write=True) == 0
    after = tmp_path / "after"
    twin.translate(str(prod), str(after))
    b, a = _sites(str(before)), _sites(str(after))
    assert set(a) - set(b) == {code}
    for c in b:
        assert a[c] == b[c], c
    assert (before / "source" / "network.yml").read_bytes() == (after / "source" / "network.yml").read_bytes()
    for name in os.listdir(before / "source" / "sites"):
        if name != "222400.yml":
            assert (before / "source" / "sites" / name).read_bytes() == \
                   (after / "source" / "sites" / name).read_bytes(), name


def test_lab_topology_of_the_province_shape(twin_model, twin_inv):
    """The plan, built from the model, against the host vars the inventory plugin serves."""
    plan = topology.plan(twin_model, source="twin")
    hv = twin_inv["_meta"]["hostvars"]
    assert len(plan.hosts) == 181  # 172 + one township finance office per city concentrator
    assert plan.control == ipaddress.ip_interface("198.19.255.254/16")
    assert plan.mgmt_network.prefixlen < 24 and plan.mgmt_network.subnet_of(topology.MGMT_RANGE)
    parties = [(p, r) for r, h in hv.items() for p in h.get("jincai_parties") or []]
    assert len(plan.stubs) == len(parties) > 200
    for party, router in parties:
        stub = plan.stubs[party["name"]]
        assert stub.iface.segment == f"metro-{hv[router]['jincai_site_code']}"
        assert str(stub.iface.address.ip) == party["address"]
        assert str(stub.gateway) == hv[router]["jincai_router"]["metro_gateway"]
        assert (party["name"], stub.iface) in plan.segments[stub.iface.segment].members
    clients = twin_inv["budget_unit_clients"]["hosts"]
    concentrators = twin_inv["vpn_concentrators"]["hosts"]
    assert len(concentrators) == 10 and len(clients) == 2 * len(concentrators)
    townships = twin_inv["township_clients"]["hosts"]
    assert len(townships) == 9  # one per city concentrator
    hv = twin_inv["_meta"]["hostvars"]
    for t in townships:
        vc = hv[t]["jincai_vpn_client"]
        assert vc["kind"] == "township" and vc["apps"] == ["township"] and hv[vc["concentrator"]]["jincai_tier"] == "city"
        assert [(x["host"], x["port"]) for x in vc["targets"]] == [(f"{vc['home']}-app1", 8104)]
    wan = [s for s in plan.segments.values() if s.point_to_point]
    assert len(wan) == 69 + 23
    assert json.loads(plan.fingerprint())["_control"] == "198.19.255.254/16"


def test_small_lab_keeps_its_management_network():
    plan = topology.plan(topology.load(os.path.join(ROOT, "inventories", "lab")), source="lab")
    assert plan.control == topology.CONTROL_ADDRESS and not plan.stubs


def test_the_twins_control_node_is_the_models_on_every_host(twin_model, twin_inv):
    """One control node for the network (the model's), served on every host as jincai_lab.control_node."""
    assert twin_model.control_interface == "198.19.255.254/16"
    assert {hv["jincai_lab"].get("control_node") for hv in twin_inv["_meta"]["hostvars"].values()} == \
        {twin_model.control_interface}


def test_vendor_configurations_render_for_every_production_platform(twin_inv, tmp_path):
    configs = twin.vendor_configs(twin_inv["_meta"]["hostvars"], str(tmp_path))
    prod = _sites(JILIN)
    expected = {f"{c}-rtr": s["router"]["platform"] for c, s in prod.items() if s["router"]["platform"] != "frr"}
    assert {n: p for n, (p, _) in configs.items()} == expected
    assert set(expected.values()) == {"huawei_vrp", "huawei_vrpv8", "h3c_comware", "cisco_ios"}
    vrp = configs["220100-rtr"][1]
    assert "interface GigabitEthernet0/0/1" in vrp and "eth1" not in vrp
    assert len(os.listdir(tmp_path)) == len(expected)


def test_a_production_address_outside_the_supernet_is_refused(tmp_path):
    prod = tmp_path / "jilin"
    shutil.copytree(JILIN, prod)
    f = prod / "source" / "sites" / "220100.yml"
    f.write_text(f.read_text(encoding="utf-8").replace("address: 10.22.17.10", "address: 10.23.17.10"),
                 encoding="utf-8")
    with pytest.raises(twin.TwinError, match=r"site 220100: parties\[0\]\.address: 10\.23\.17\.10 is outside"):
        twin.translate(str(prod), str(tmp_path / "out"))


def test_a_lab_source_is_not_translated(tmp_path):
    with pytest.raises(twin.TwinError, match="already a lab source"):
        twin.translate(os.path.join(ROOT, "inventories", "lab"), str(tmp_path / "out"))


def test_waves_cover_every_host_once_province_first(twin_inv):
    waves = twin.waves(twin_inv)
    hosts = [h for _, hs in waves for h in hs]
    assert sorted(hosts) == sorted(twin_inv["_meta"]["hostvars"]) and len(hosts) == len(set(hosts))
    assert waves[0][0] == "province" and "220000-svc" in waves[0][1]
    assert len(waves) == 10
    for label, hs in waves[1:]:
        city = label.split()[1]
        assert all(twin_inv["_meta"]["hostvars"][h]["jincai_site"]["city_code"] == city for h in hs)
        assert f"{city}-rtr" in hs and f"bu{city}-1" in hs


def test_a_cut_isolates_only_sites_with_no_live_uplink_left(twin_model):
    """`jincai lab link down --inband` darkens the hosts a cut leaves without any path to the
    province: 220184's own backup to the province keeps it when its city 220100 is cut off."""
    from jincai.lab import inject

    plan = topology.plan(twin_model, source="twin")
    assert inject.find_link(plan, "220182", "220100", backup=True)[0] == "wan-220100-220182-backup"
    assert inject.isolated_hosts(plan, "220182", {"wan-220100-220182"}) == []
    assert inject.isolated_hosts(plan, "220102", {"wan-220100-220102"}) == ["220102-app1", "220102-rtr"]
    city = inject.isolated_hosts(plan, "220100", {"wan-220000-220100", "wan-220000-220100-backup"})
    assert "220102-rtr" in city and "220100-vpn" in city and "220184-rtr" not in city
    with pytest.raises(inject.InjectError, match="no backup WAN link between 220100 and 220102"):
        inject.find_link(plan, "220100", "220102", backup=True)
