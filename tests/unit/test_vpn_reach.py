"""What a budget unit reaches, from the source alone (issue 16): a county's unit at its city's
concentrator reaches its own county's app servers, a city's unit its city's; the concentrator's
firewall set and traffic selectors, the client's and the bundle's, all follow the unit's own site."""

import io
import os
import re
import sys
import tarfile

import jinja2
import pytest
import yaml

from jincai import ROOT, pki
from jincai.pki import registry
from jincai.pki import vpn as vpnplans
from jincai.source import inventory

sys.path.insert(0, os.path.join(ROOT, "plugins", "filter"))
import jincai_vpn  # noqa: E402

ROLE = os.path.join(ROOT, "roles", "vpn_concentrator")


@pytest.fixture(scope="module")
def jilin():
    return inventory.build(os.path.join(ROOT, "inventories", "jilin"))["_meta"]["hostvars"]


def _env():
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(ROLE, "templates")), trim_blocks=True,
                             undefined=jinja2.StrictUndefined, extensions=["jinja2.ext.do"])
    env.filters.update(jincai_vpn.FilterModule().filters())
    return env


def _reach(units, served, allowed, township_served=(), township_apps=()):
    """What the role computes (vars/main.yml: the vpn_unit_reach filter of plugins/filter/jincai_vpn.py)."""
    with open(os.path.join(ROLE, "vars", "main.yml"), encoding="utf-8") as fh:
        expr = " ".join(yaml.safe_load(fh)["_vpn_concentrator_reach_of_units"].split())
    assert ("_vpn_concentrator_units | vpn_unit_reach(vpn_concentrator_served, vpn_concentrator_allowed_apps, "
            "vpn_concentrator_township_served, vpn_concentrator_township_apps)") in expr
    return jincai_vpn.vpn_unit_reach(units, served, allowed, list(township_served), list(township_apps))


def _render(hv, units, host="220100-vpn"):
    vpn = hv["jincai_vpn"]
    reach = _reach(units, vpn["served"], vpn["apps"], vpn["township_served"], vpn["township_apps"])
    ctx = {"ansible_managed": "test", "inventory_hostname": host, "_vpn_concentrator_units": units,
           "_vpn_concentrator_reach": reach, "_vpn_concentrator_backend": "kernel",
           "_vpn_concentrator_registry": {"server_identity": "220100-vpn.jincai.jl.internal"},
           "vpn_concentrator_pool": vpn["pool"], "vpn_concentrator_allowed_apps": vpn["apps"],
           "vpn_concentrator_township_apps": vpn["township_apps"],
           "vpn_concentrator_access_address": vpn["access_address"], "vpn_concentrator_proposals": "p",
           "vpn_concentrator_esp_proposals": "e", "vpn_concentrator_dpd_delay": "30s"}
    env = _env()
    return (env.get_template("jincai-vpn.nft.j2").render(ctx), env.get_template("swanctl-jincai.conf.j2").render(ctx),
            reach)


def _unit(code, address, home, apps=("budget", "treasury")):
    return {"code": code, "address": address, "site": "220100", "home": home, "apps": list(apps),
            "identity": f"{code}.bu.jincai.jl.internal", "status": "active"}


def test_a_city_concentrator_knows_every_served_site_from_the_source(jilin):
    vpn = jilin["220100-vpn"]["jincai_vpn"]
    served = {s["site"]: s for s in vpn["served"]}
    assert list(served) == vpn["served_sites"] and served["220100"]["tier"] == "city"
    county = served["220102"]
    assert county["lan"] == jilin["220102-app1"]["jincai_site"]["lan"]
    assert county["apps"] == ["budget", "treasury"]  # the county's budget_units.apps
    assert {(t["host"], t["port"]) for t in county["targets"]} == {("220102-app1", 8101), ("220102-app1", 8102)}
    # the province's concentrator serves the province only
    assert [s["site"] for s in jilin["220000-vpn"]["jincai_vpn"]["served"]] == ["220000"]


def test_a_county_unit_is_allowed_to_its_county_apps_only(jilin):
    city_app, county_app = jilin["220100-app1"]["jincai_address"], jilin["220102-app1"]["jincai_address"]
    other_county_app = jilin["220103-app1"]["jincai_address"]
    units = [_unit("c1", "10.22.192.1", "220100"), _unit("k1", "10.22.192.2", "220102"),
             _unit("k2", "10.22.192.3", "220102", apps=["budget"])]
    nft, swanctl, _ = _render(jilin["220100-vpn"], units)
    elements = set(re.findall(r"^\s+(\S+ \. \S+ \. \d+),$", nft, re.M))
    assert elements == {f"10.22.192.1 . {city_app} . 8101", f"10.22.192.1 . {city_app} . 8102",
                        f"10.22.192.2 . {county_app} . 8101", f"10.22.192.2 . {county_app} . 8102",
                        f"10.22.192.3 . {county_app} . 8101"}
    assert other_county_app not in nft and "8103" not in nft and "8104" not in nft
    # each unit's traffic selector is its own site's LAN
    ts = dict(re.findall(r"bu-(\S+) \{\n\s+local_ts = (\S+)", swanctl))
    assert ts == {"c1": jilin["220100-app1"]["jincai_site"]["lan"], "k1": jilin["220102-app1"]["jincai_site"]["lan"],
                  "k2": jilin["220102-app1"]["jincai_site"]["lan"]}


def test_units_outside_the_served_sites_or_without_apps_are_flagged_before_any_host_is_touched(jilin):
    vpn = jilin["220100-vpn"]["jincai_vpn"]
    reach = _reach([_unit("x", "10.22.192.9", "220202"), _unit("y", "10.22.192.10", "220102", apps=["nontax"])],
                   vpn["served"], vpn["apps"])
    assert reach["x"] == {"lan": "", "targets": []}  # 220202 belongs to another city: _vpn_concentrator_unserved
    assert reach["y"]["targets"] == []  # nontax is not declared for budget units: _vpn_concentrator_unreachable
    with open(os.path.join(ROLE, "tasks", "main.yml"), encoding="utf-8") as fh:
        tasks = fh.read()
    assert "_vpn_concentrator_unserved | length == 0" in tasks and "_vpn_concentrator_unreachable | length == 0" in tasks


def test_older_registry_entries_without_home_reach_the_concentrators_site(jilin):
    old = _unit("o1", "10.22.192.20", None)
    del old["home"]
    _, swanctl, reach = _render(jilin["220100-vpn"], [old])
    assert reach["o1"]["lan"] == jilin["220100-app1"]["jincai_site"]["lan"] and reach["o1"]["targets"]


def test_a_county_unit_registry_entry_and_bundle_follow_its_own_site(pkidir, jilin):
    plan = vpnplans.plan(os.path.join(ROOT, "inventories", "jilin"), "220100")
    assert plan["served"]["220102"]["lan"] == jilin["220102-app1"]["jincai_site"]["lan"]
    reg = registry.UnitRegistry(plan)
    assert reg.add("k1", "南关区财政局", home="220102")
    e = reg.units["k1"]
    assert e["home"] == "220102" and e["site"] == "220100" and e["apps"] == ["budget", "treasury"]
    reg.save()
    data = open(reg.bundle("k1"), "rb").read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        conf = tar.extractfile("k1/swanctl/conf.d/province.conf").read().decode()
    assert f"remote_ts = {plan['served']['220102']['lan']}" in conf
    with pytest.raises(pki.PkiError, match=r"unit k2: site: 220202 is not served by 220100-vpn"):
        reg.add("k2", "x", home="220202")
    # the same unit moved to another own site of the same concentrator keeps address and certificate
    serial, addr = e["serial"], e["address"]
    assert reg.rehome("k1", "220100") and (e["serial"], e["address"], e["home"]) == (serial, addr, "220100")
    assert not reg.rehome("k1", "220100")


def test_the_twin_has_a_county_unit_at_every_city_concentrator(tmp_path):
    from jincai.lab import twin

    twin.translate(os.path.join(ROOT, "inventories", "jilin"), str(tmp_path / "twin"))
    hv = inventory.build(str(tmp_path / "twin"))["_meta"]["hostvars"]
    clients = [h for h, v in hv.items() if v.get("jincai_vpn_client", {}).get("kind") == "budget_unit"]
    county = {h: hv[h]["jincai_vpn_client"] for h in clients if hv[h]["jincai_vpn_client"]["home"] !=
              hv[hv[h]["jincai_vpn_client"]["concentrator"]]["jincai_site_code"]}
    assert len(county) == 9
    for h, vc in county.items():
        home_app = next(a for a, v in hv.items() if v.get("jincai_site_code") == vc["home"] and "app_server" in
                        v["jincai_functions"])
        assert {t["host"] for t in vc["targets"]} == {home_app}
        assert vc["lan"] == hv[home_app]["jincai_site"]["lan"]


def test_every_concentrators_ike_events_go_to_the_province_collector(jilin):
    """charon-systemd logs IKE events to the journal; the baseline's rsyslog (playbooks/baseline.yml on
    machine_room) forwards them to the province collector: every concentrator, city ones included."""
    inv = inventory.build(os.path.join(ROOT, "inventories", "jilin"))
    concentrators = inv["vpn_concentrators"]["hosts"]
    assert len(concentrators) == 10 and set(concentrators) <= set(inv["machine_room"]["hosts"])
    collector = jilin["220000-svc"]["jincai_address"]
    assert {jilin[h]["jincai_province_services"]["collector"] for h in concentrators} == {collector}
    with open(os.path.join(ROOT, "playbooks", "baseline.yml"), encoding="utf-8") as fh:
        baseline = yaml.safe_load(fh)
    assert any(p["hosts"] == "machine_room" and any("rsyslog" in str(r) for r in p.get("roles", [])) for p in baseline)
