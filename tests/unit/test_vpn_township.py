"""Township finance offices (乡镇财政所, the county–township settlement network; issue 16 item 5): declared
per county in the source like budget units, served by the concentrator the source names, certified
by the same CA in their own identity namespace, given fixed addresses from the top of that
concentrator's pool, and let through its firewall to their own county's township application only.
The budget units' host vars and registries stay as they were, apart from the additions."""

import copy
import ipaddress
import json
import os
import re
import sys

import pytest

from jincai import ROOT, pki, sitecmd
from jincai.lab import topology
from jincai.pki import batch, registry
from jincai.pki import vpn as vpnplans
from jincai.source import allocate, inventory, model

sys.path.insert(0, os.path.join(ROOT, "plugins", "filter"))
import jincai_vpn  # noqa: E402

from test_vpn_reach import _render  # noqa: E402  (the role's templates and filter, as the role runs them)

LAB = os.path.join(ROOT, "inventories", "lab")
JILIN = os.path.join(ROOT, "inventories", "jilin")


@pytest.fixture(scope="module")
def jilin():
    return inventory.build(JILIN)["_meta"]["hostvars"]


@pytest.fixture(scope="module")
def lab():
    return inventory.build(LAB)


def _township(code, address, home, apps=("township",), domain="jincai.jl.internal"):
    return {"code": code, "address": address, "site": "220100", "home": home, "apps": list(apps), "kind": "township",
            "identity": f"{code}.tw.{domain}", "status": "active"}


def _unit(code, address, home):
    return {"code": code, "address": address, "site": "220100", "home": home, "apps": ["budget", "treasury"],
            "identity": f"{code}.bu.jincai.jl.internal", "status": "active"}


# --------------------------------------------------------------------------- source and model


def test_every_jilin_county_declares_townships_served_by_its_citys_concentrator(jilin):
    src = model.load(JILIN)
    counties = [s for _, s in src.sites if s["tier"] == "county"]
    assert len(counties) == 60 and all(s["townships"]["apps"] == ["township"] for s in counties)
    assert all(1 <= s["townships"]["count"] <= 30 for s in counties)
    for city in (s for _, s in src.sites if s["tier"] == "city"):
        vpn = jilin[f"{city['code']}-vpn"]["jincai_vpn"]
        mine = [s for s in counties if s["parent"] == city["code"]]
        assert [t["site"] for t in vpn["township_served"]] == [s["code"] for s in mine]
        assert vpn["townships"] == sum(s["townships"]["count"] for s in mine) and vpn["township_apps"] == ["township"]
        for t in vpn["township_served"]:  # their county's township app server(s) and port, nothing else
            assert [(x["host"], x["app"], x["port"]) for x in t["targets"]] == [(f"{t['site']}-app1", "township", 8104)]
            assert t["lan"] == jilin[f"{t['site']}-app1"]["jincai_site"]["lan"]
    province = jilin["220000-vpn"]["jincai_vpn"]
    assert province["township_served"] == [] and province["townships"] == 0


def test_the_lab_county_names_the_provinces_concentrator_and_tw0001_is_its_client(lab):
    hv = lab["_meta"]["hostvars"]
    vpn = hv["220000-vpn"]["jincai_vpn"]
    assert [t["site"] for t in vpn["township_served"]] == ["220102"] and vpn["townships"] == 2
    assert vpn["clients"] == ["bu0001", "bu0002", "tw0001"] and lab["township_clients"]["hosts"] == ["tw0001"]
    assert "tw0001" not in lab["budget_unit_clients"]["hosts"]
    vc = hv["tw0001"]["jincai_vpn_client"]
    assert vc["kind"] == "township" and vc["home"] == "220102" and vc["lan"] == hv["220102-app1"]["jincai_site"]["lan"]
    assert [(t["host"], t["port"]) for t in vc["targets"]] == [("220102-app1", 8104)]
    assert hv["tw0001"]["jincai_functions"] == ["township_client"]


def test_the_lab_topology_builds_tw0001_on_the_vpn_access_segment():
    plan = topology.plan(topology.load(LAB), source="lab")
    tw = plan.hosts["tw0001"]
    assert str(tw.mgmt.address) == "198.19.0.60/24"
    access = [i for i in tw.interfaces if i.role == "vpn_access"]
    assert [str(i.address) for i in access] == ["198.18.232.103/24"] and access[0].segment == "vpnaccess-220000"
    assert ("tw0001", access[0]) in plan.segments["vpnaccess-220000"].members


def test_site_add_gives_a_new_county_the_default_townships():
    src = model.load(JILIN)
    removed = next(s for _, s in src.sites if s["code"] == "222426")
    src.sites = [(f, s) for f, s in src.sites if s["code"] != "222426"]
    site = allocate.Allocator(src).new_site(model.load_divisions()["222426"])
    assert site["townships"] == {"count": 12, "apps": ["township"]} and "townships" in removed
    city = allocate.Allocator(src).new_site(model.load_divisions()["220100"])
    assert "townships" not in city  # defaults.townships has counties only
    assert "township finance offices: 3 -> township (served by 220100's concentrator)" in \
        "\n".join(sitecmd.describe(model.load(JILIN), "220102"))


# --------------------------------------------------------------------------- the concentrator


def test_a_township_office_is_let_through_to_its_countys_township_app_only(jilin):
    hv = jilin["220100-vpn"]
    county_app, other_county_app = (jilin[f"{c}-app1"]["jincai_address"] for c in ("220102", "220103"))
    units = [_unit("k1", "10.22.192.1", "220102"), _township("t1", "10.22.193.254", "220102"),
             _township("t2", "10.22.193.253", "220102", apps=["township", "budget"])]  # a tampered entry
    nft, swanctl, reach = _render(hv, units)
    elements = set(re.findall(r"^\s+(\S+ \. \S+ \. \d+),$", nft, re.M))
    assert {e for e in elements if e.startswith("10.22.193.")} == {
        f"10.22.193.254 . {county_app} . 8104", f"10.22.193.253 . {county_app} . 8104"}  # budget never passes
    assert f"10.22.192.1 . {county_app} . 8104" not in elements  # a budget unit never reaches township
    assert other_county_app not in nft
    # own connection and pool per office (tw-<code>), its identity, its county's LAN as traffic selector
    lan = jilin["220102-app1"]["jincai_site"]["lan"]
    assert re.search(r"tw-t1 \{\n\s+version = 2.*?pools = tw-t1.*?id = t1\.tw\.jincai\.jl\.internal.*?"
                     rf"tw-t1 \{{\n\s+local_ts = {re.escape(lan)}", swanctl, re.S)
    assert re.search(r"tw-t1 \{\n\s+addrs = 10\.22\.193\.254/32", swanctl)
    assert "bu-k1 {" in swanctl and "bu-t1" not in swanctl
    assert reach["t1"]["lan"] == lan


def test_a_township_office_of_a_county_not_served_here_is_refused(jilin):
    vpn = jilin["220100-vpn"]["jincai_vpn"]
    reach = jincai_vpn.vpn_unit_reach([_township("x", "10.22.193.250", "220202"),  # another city's county
                                       _township("y", "10.22.193.249", "220100")],  # a city has no townships
                                      vpn["served"], vpn["apps"], vpn["township_served"], vpn["township_apps"])
    assert reach == {"x": {"lan": "", "targets": []}, "y": {"lan": "", "targets": []}}
    # and a budget unit is never looked up among the townships (nor a township among the served sites)
    reach = jincai_vpn.vpn_unit_reach([_township("z", "10.22.193.248", "220102")], vpn["served"], vpn["apps"])
    assert reach["z"] == {"lan": "", "targets": []}


def test_revoked_connections_are_named_by_kind():
    assert jincai_vpn.vpn_connection(_township("t1", "a", "220102")) == "tw-t1"
    assert jincai_vpn.vpn_connection(_unit("k1", "a", "220102")) == "bu-k1"
    with open(os.path.join(ROOT, "roles", "vpn_concentrator", "tasks", "main.yml"), encoding="utf-8") as fh:
        tasks = fh.read()
    assert "map('vpn_connection')" in tasks and '"bu-$c"' not in tasks


# --------------------------------------------------------------------------- the PKI


def test_a_township_office_gets_its_own_identity_and_an_address_from_the_top_of_the_pool(pkidir):
    plan = vpnplans.plan(JILIN, "220100")
    reg = registry.UnitRegistry(plan)
    assert reg.add("k1", "南关区财政局", home="220102")
    assert reg.add("t1", "南关区某乡财政所", home="220102", kind="township")
    assert reg.add("t2", "南关区另一乡财政所", home="220102", kind="township")
    k1, t1, t2 = (reg.units[c] for c in ("k1", "t1", "t2"))
    assert "kind" not in k1 and k1["address"] == "10.22.192.1" and k1["identity"] == "k1.bu.jincai.jl.internal"
    assert (t1["kind"], t1["address"], t1["identity"], t1["apps"], t1["home"]) == (
        "township", "10.22.193.254", "t1.tw.jincai.jl.internal", ["township"], "220102")
    assert t2["address"] == "10.22.193.253"
    reg.save()
    crt = open(reg.path("units", "t1.crt"), "rb").read()
    from cryptography import x509
    cert = x509.load_pem_x509_certificate(crt)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert sans == ["t1.tw.jincai.jl.internal"] and cert.issuer == reg.ca_cert.subject  # the same CA
    import io
    import tarfile
    with tarfile.open(fileobj=io.BytesIO(open(reg.bundle("t1"), "rb").read())) as tar:
        readme = tar.extractfile("t1/README.txt").read().decode()
        conf = tar.extractfile("t1/swanctl/conf.d/province.conf").read().decode()
    assert readme.startswith("Township finance office t1") and "township" in readme
    assert f"remote_ts = {plan['townships']['220102']['lan']}" in conf and "id = t1.tw.jincai.jl.internal" in conf
    # refused: a township of a county not served here, with no county, or a code of another kind
    with pytest.raises(pki.PkiError, match=r"site: 220202: 220100-vpn serves no township finance offices of it"):
        reg.add("t3", "x", home="220202", kind="township")
    with pytest.raises(pki.PkiError, match=r"site: missing"):
        reg.add("t4", "x", kind="township")
    with pytest.raises(pki.PkiError, match=r"kind: k1 is registered as budget_unit, not township"):
        reg.add("k1", "x", home="220102", kind="township")
    # revocation: the same CRL; a revoked office keeps its address (never reused), re-onboarding keeps it
    assert reg.revoke("t1") and reg.publish_crl(force=True)
    crl = x509.load_pem_x509_crl(open(os.path.join(str(pkidir), "crl.pem"), "rb").read())
    assert int(t1["serial"], 16) in {r.serial_number for r in crl}
    assert reg.add("t5", "x", home="220102", kind="township") and reg.units["t5"]["address"] == "10.22.193.252"
    assert reg.add("t1", "x", home="220102", kind="township") and reg.units["t1"]["address"] == "10.22.193.254"


def test_import_places_townships_at_the_concentrator_that_serves_their_county(pkidir, tmp_path, capsys):
    from jincai.pki import cli

    csv = tmp_path / "tw.csv"
    csv.write_text("code,name,site,kind\nk1,南关区财政局,220102,\nt1,乡财政所,220102,township\n"
                   "t2,乡财政所,222401,township\n", encoding="utf-8")
    assert cli.main(["-i", JILIN, "import", "--csv", str(csv), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would add    t1: at 220100-vpn (site 220102), address 10.22.193.254" in out
    assert "would add    t2: at 222400-vpn (site 222401), address 10.22.209.254" in out
    assert "would add    k1: at 220100-vpn (site 220102), address 10.22.192.1" in out
    assert cli.main(["-i", JILIN, "import", "--csv", str(csv)]) == 0
    capsys.readouterr()
    assert cli.main(["-i", JILIN, "-c", "220100", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert any(line.startswith("t1\t10.22.193.254\tactive\t") and line.endswith("\ttownship") for line in listed)
    assert cli.main(["-i", JILIN, "import", "--csv", str(csv)]) == 0  # rerun: nothing changes
    assert "0 added, 0 moved, 0 rehomed, 3 unchanged" in capsys.readouterr().out
    assert cli.main(["-i", JILIN, "revoke", "t2"]) == 0  # found at its concentrator, on the one CRL
    assert "222400-vpn: t2" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    bad.write_text("code,name,site,kind\nt9,x,,township\nt8,x,220100,township\nt7,x,220102,villa\n", encoding="utf-8")
    assert cli.main(["-i", JILIN, "import", "--csv", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: line 4: kind: 'villa' is not a kind of VPN client" in err
    bad.write_text("code,name,site,kind\nt9,x,,township\nt8,x,220100,township\n", encoding="utf-8")
    assert cli.main(["-i", JILIN, "import", "--csv", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: line 2: site: missing: a township finance office belongs to a county" in err
    assert f"{bad}: line 3: site: 220100 is served by no VPN concentrator for township finance offices" in err


def test_sync_onboards_the_labs_township_client_and_leaves_the_units_as_they_were(pkidir, tmp_path):
    """The lab's registry with tw0001 is the one without it, plus tw0001's entry (at the top of the
    pool): the units' entries are the same apart from their certificates' serials."""
    plans = vpnplans.plans(LAB)
    reg = registry.UnitRegistry(plans[0])
    assert registry.sync(reg)["added"] == ["bu0001", "bu0002", "tw0001"]
    with_tw = json.load(open(reg.path("units.json"), encoding="utf-8"))
    without = copy.deepcopy(plans[0])
    without["clients"].remove("tw0001")
    other = tmp_path / "other"
    reg2 = registry.UnitRegistry(without, str(other))
    registry.sync(reg2)
    plain = json.load(open(reg2.path("units.json"), encoding="utf-8"))

    def strip(doc):
        return [{k: v for k, v in u.items() if k not in ("serial", "key_vault")} for u in doc["units"]]

    assert strip(with_tw)[:2] == strip(plain) and [u["code"] for u in with_tw["units"]] == ["bu0001", "bu0002", "tw0001"]
    assert {k: v for k, v in with_tw.items() if k != "units"} == {k: v for k, v in plain.items() if k != "units"}
    tw = with_tw["units"][2]
    assert (tw["address"], tw["identity"], tw["kind"], tw["home"]) == (
        "198.18.167.254", "tw0001.tw.lab.jincai.test", "township", "220102")


def test_jilin_unit_addresses_do_not_move_when_the_townships_are_onboarded(pkidir, tmp_path):
    """Every concentrator of inventories/jilin: its units placed with and without the 628 township
    offices get the same addresses (units from the bottom of each pool, townships from the top; the
    addresses `jincai pki import --dry-run` shows are the ones the real run gives, as the lab sync
    test above shows for tw0001)."""
    plans = vpnplans.plans(JILIN)
    src = model.load(JILIN)
    counts = {s["code"]: (s.get("budget_units") or {}).get("count", 0) for _, s in src.sites}
    towns = {s["code"]: (s.get("townships") or {}).get("count", 0) for _, s in src.sites}
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import vpn_province  # noqa: PLC0415 - the benchmark's row generator

    units = vpn_province.unit_rows(plans, counts)
    both = vpn_province.unit_rows(plans, counts, towns)
    assert len(units) == 3032 and len(both) == 3032 + 628
    regs = batch.Registries(plans, str(tmp_path / "pki"))
    only = {a["code"]: (a["to"], a["address"]) for a in batch.resolve(regs, units)}
    placed = {a["code"]: (a["to"], a["address"], a["kind"]) for a in batch.resolve(regs, both)}
    assert {c: placed[c][:2] for c in only} == only
    pools = {p["concentrator"]["name"]: p["pool"] for p in plans}
    for name, pool in pools.items():
        tw = sorted(ipaddress.ip_address(a) for to, a, k in placed.values() if to == name and k == "township")
        bu = [ipaddress.ip_address(a) for to, a, k in placed.values() if to == name and k == "budget_unit"]
        if tw:  # the township offices of a city's counties fill its pool from the top, contiguously
            top = ipaddress.ip_network(pool).broadcast_address - 1
            assert tw[-1] == top and int(tw[-1]) - int(tw[0]) == len(tw) - 1 and max(bu) < tw[0], name
    assert sum(k == "township" for _, _, k in placed.values()) == 628


# --------------------------------------------------------------------------- nothing else changed

sys.path.insert(0, os.path.join(ROOT, "tests", "tools"))
import hostvars_snapshot  # noqa: E402  (the snapshot tool's own comparison)

#: The intended additions of the townships to the host vars (the rest must stay byte-identical);
#: ``jincai_vpn_client.registries`` lists the LANs of the counties whose township offices each serves too.
ADDED_VARS = ("jincai_vpn.township_served", "jincai_vpn.townships", "jincai_vpn.township_apps",
              "jincai_vpn_client.kind", "jincai_applications.township.townships", "jincai_vpn_client.registries")


def _without_townships(inv, dest):
    """A copy of inventory ``inv`` in ``dest`` with every township declaration removed: the source as it
    was before them."""
    import shutil  # noqa: PLC0415

    shutil.copytree(inv, dest)
    for root, _, files in os.walk(os.path.join(dest, "source")):
        for name in files:
            path = os.path.join(root, name)
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
            text = re.sub(r"\n    townships:\n      county: \{[^\n]*\}", "", text)  # defaults.townships
            lines = [ln for ln in text.split("\n") if not re.match(r"\s+townships: ", ln) and "tw0001" not in ln]
            with open(path, "w", encoding="utf-8") as fh:
                fh.write("\n".join(lines))


@pytest.mark.parametrize("name", ["lab", "jilin"])
def test_townships_add_only_their_own_host_vars(name, tmp_path):
    """What hostvars_snapshot.py --compare checks across the branch (docs/vpn.md): every host var of the
    source with townships equals the one without, once the intended additions are dropped (the
    township client tw0001, its group, ADDED_VARS)."""
    inv = os.path.join(ROOT, "inventories", name)
    before = str(tmp_path / name)
    _without_townships(inv, before)
    old, new = inventory.build(before), inventory.build(inv)
    assert "township_clients" not in old and all(
        not (v.get("jincai_vpn") or {}).get("township_served") for v in old["_meta"]["hostvars"].values())
    added = ["tw0001", "township_clients"] if name == "lab" else []
    assert set(new) - set(old) == ({"township_clients"} if name == "lab" else set())

    def text(data):
        return json.dumps(hostvars_snapshot.drop(copy.deepcopy(data), ADDED_VARS, added), indent=1, ensure_ascii=False)

    assert text(old) == text(new)
    assert text(new) != json.dumps(new, indent=1, ensure_ascii=False)  # the additions were there to drop


def test_userspace_esp_holds_each_foreign_lans_network_address_on_the_loopback(jilin):
    """kernel-libipsec (the lab's data path) refuses a CHILD_SA whose local selector holds none of the
    concentrator's addresses: a township office's (its county's LAN) failed live with TS_UNACCEPTABLE.
    The firewall unit puts that LAN's network address on lo for libipsec only, never the own LAN's."""
    from test_vpn_reach import _env, _reach

    hv = jilin["220100-vpn"]
    vpn = hv["jincai_vpn"]
    units = [_unit("k1", "10.22.192.1", "220102"), _unit("k0", "10.22.192.2", "220100"),
             _township("t1", "10.22.193.254", "220103")]
    reach = _reach(units, vpn["served"], vpn["apps"], vpn["township_served"], vpn["township_apps"])
    lan = {c: jilin[f"{c}-app1"]["jincai_site"]["lan"] for c in ("220100", "220102", "220103")}
    ctx = {"ansible_managed": "t", "_vpn_concentrator_units": units, "_vpn_concentrator_reach": reach,
           "jincai_site": hv["jincai_site"]}
    env = _env()
    env.filters.setdefault("extract", lambda item, container: container[item])  # Ansible's, as the role has it
    tpl = env.get_template("jincai-vpn-firewall.service.j2")
    lines = tpl.render({**ctx, "_vpn_concentrator_backend": "libipsec"}).splitlines()
    held = sorted(line.split()[3] for line in lines if line.startswith("ExecStart=/usr/sbin/ip address replace"))
    assert held == sorted(lan[c].split("/")[0] + "/32" for c in ("220102", "220103")), lines
    assert lan["220100"].split("/")[0] + "/32" not in held
    assert "ip address" not in tpl.render({**ctx, "_vpn_concentrator_backend": "kernel"})
