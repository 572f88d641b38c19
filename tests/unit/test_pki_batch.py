"""Province-scale onboarding (jincai.pki.batch, issue 16): CSV batches across the ten concentrators of
inventories/jilin, dry run, errors naming line and field, moves between concentrators, reruns."""

import ipaddress
import json
import os

import pytest
from cryptography import x509

from jincai import ROOT, pki
from jincai.pki import cli, vpn

JILIN = os.path.join(ROOT, "inventories", "jilin")


@pytest.fixture(scope="module")
def pools():
    return {p["concentrator"]["name"]: ipaddress.ip_network(p["pool"]) for p in vpn.plans(JILIN)}


def _units(pkidir, registry):
    path = pkidir / registry / "units.json"
    return {u["code"]: u for u in json.loads(path.read_text())["units"]} if path.exists() else {}


def _csv(tmp_path, text, name="units.csv"):
    f = tmp_path / name
    f.write_text(text, encoding="utf-8")
    return str(f)


def _cli(*args):
    return cli.main(["-i", JILIN, *args])


def _snapshot(pkidir):
    return {str(p): p.read_bytes() for p in sorted(pkidir.rglob("*")) if p.is_file() and p.name != ".lock"}


BATCH = ("code,name,concentrator,site\n"
         "p001,省财政厅机关,,\n"
         "c001,长春市财政局,220100-vpn,\n"
         "k001,南关区财政局,,220102\n"
         "k002,昌邑区财政局,220200,220202\n")


def test_dry_run_shows_each_unit_where_and_address_and_changes_nothing(pkidir, tmp_path, capsys, pools):
    f = _csv(tmp_path, BATCH)
    assert _cli("import", "--csv", f, "--dry-run") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "dry run: 4 added, 0 moved, 0 rehomed, 0 unchanged"
    lines = {line.split()[2].rstrip(":"): line for line in out[:-1]}
    assert "at 220000-vpn (site 220000), address 10.22.224.1" in lines["p001"]
    assert "at 220100-vpn (site 220100)" in lines["c001"] and "at 220100-vpn (site 220102)" in lines["k001"]
    assert "at 220200-vpn (site 220202)" in lines["k002"]
    # two units at one concentrator get two different addresses of its pool even before anything is written
    a1, a2 = (ipaddress.ip_address(lines[c].rsplit(" ", 1)[1]) for c in ("c001", "k001"))
    assert a1 != a2 and a1 in pools["220100-vpn"] and a2 in pools["220100-vpn"]
    assert not (pkidir / "vpn").exists()


def test_a_batch_places_every_unit_at_its_concentrator_and_a_rerun_changes_nothing(pkidir, tmp_path, capsys, pools):
    f = _csv(tmp_path, BATCH)
    assert _cli("import", "--csv", f) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("4 added, 0 moved, 0 rehomed, 0 unchanged")
    prov, city, other = _units(pkidir, "vpn"), _units(pkidir, "vpn/220100"), _units(pkidir, "vpn/220200")
    assert set(prov) == {"p001"} and set(city) == {"c001", "k001"} and set(other) == {"k002"}
    assert city["k001"]["home"] == "220102" and city["c001"]["home"] == "220100"
    assert ipaddress.ip_address(other["k002"]["address"]) in pools["220200-vpn"]
    assert (pkidir / "vpn" / "220100" / "bundles" / "k001.tar.gz").exists()
    before = _snapshot(pkidir)
    assert _cli("import", "--csv", f) == 0
    assert capsys.readouterr().out.strip() == "0 added, 0 moved, 0 rehomed, 4 unchanged"
    assert _snapshot(pkidir) == before  # byte for byte


def test_batch_errors_name_the_line_and_field_and_nothing_changes(pkidir, tmp_path, capsys):
    f = _csv(tmp_path, "code,name,concentrator,site\n"
                       "a1,x,229900,\n"            # no such concentrator
                       "a2,x,,229999\n"            # no such site
                       "a3,x,220100-vpn,220202\n"  # 220202 is Jilin city's county, not Changchun's
                       "a4,x,220100,220102\n")     # fine, but the batch is refused as a whole
    assert _cli("import", "--csv", f) == 1
    err = capsys.readouterr().err
    assert f"{f}: line 2: concentrator: '229900' is not a VPN concentrator (fix: one of 220000-vpn, " in err
    assert f"{f}: line 3: site: 229999 is served by no VPN concentrator" in err
    assert f"{f}: line 4: concentrator: 220100-vpn does not serve site 220202 (fix: 220200-vpn" in err
    assert "line 5" not in err and "(nothing changed)" in err
    assert not (pkidir / "vpn").exists()
    bad = _csv(tmp_path, "code,name,city\na1,x,220100\n", "bad.csv")
    assert _cli("import", "--csv", bad) == 1
    assert f"{bad}: line 1: header: code, name, city (fix: the columns are code, name, concentrator, site" in \
        capsys.readouterr().err
    extra = _csv(tmp_path, "a1,x,220100,220102,budget_unit,surplus\n", "extra.csv")
    assert _cli("import", "--csv", extra) == 1
    assert f"{extra}: line 1: 6 fields, the columns are code, name, concentrator, site, kind" in capsys.readouterr().err
    # add --csv stays per concentrator: a placement column sends the operator to import
    assert _cli("add", "--csv", _csv(tmp_path, BATCH)) == 1
    assert "use `jincai pki import --csv" in capsys.readouterr().err


def test_a_move_revokes_at_the_old_concentrator_and_issues_from_the_new_pool(pkidir, tmp_path, capsys, pools):
    assert _cli("import", "--csv", _csv(tmp_path, BATCH)) == 0
    old = _units(pkidir, "vpn/220100")["c001"]
    moved = _csv(tmp_path, BATCH.replace("c001,长春市财政局,220100-vpn,", "c001,长春市财政局,220200-vpn,"), "moved.csv")
    capsys.readouterr()
    assert _cli("import", "--csv", moved) == 0
    out = capsys.readouterr().out
    assert "move   c001: 220100-vpn -> 220200-vpn (site 220200)" in out and "1 moved" in out
    at_old, at_new = _units(pkidir, "vpn/220100")["c001"], _units(pkidir, "vpn/220200")["c001"]
    assert at_old["status"] == "revoked" and at_old["address"] == old["address"]  # kept: never reused
    assert at_new["status"] == "active" and ipaddress.ip_address(at_new["address"]) in pools["220200-vpn"]
    assert at_new["serial"] != old["serial"]
    crl = x509.load_pem_x509_crl((pkidir / "crl.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(int(old["serial"], 16)) is not None
    assert crl.get_revoked_certificate_by_serial_number(int(at_new["serial"], 16)) is None
    assert not (pkidir / "vpn" / "220100" / "bundles" / "c001.tar.gz").exists()
    assert (pkidir / "vpn" / "220200" / "bundles" / "c001.tar.gz").exists()
    before = _snapshot(pkidir)
    assert _cli("import", "--csv", moved) == 0
    assert _snapshot(pkidir) == before
    # a new unit at the old concentrator never gets the moved unit's old address
    assert _cli("import", "--csv", _csv(tmp_path, "n001,新单位,220100\n", "new.csv")) == 0
    assert _units(pkidir, "vpn/220100")["n001"]["address"] != old["address"]


def test_move_command_to_another_concentrator_or_own_site(pkidir, tmp_path, capsys, pools):
    assert _cli("import", "--csv", _csv(tmp_path, BATCH)) == 0
    capsys.readouterr()
    # another own site at the same concentrator: same address, same certificate
    k = _units(pkidir, "vpn/220100")["k001"]
    assert _cli("move", "k001", "--site", "220103") == 0
    assert "rehome k001: at 220100-vpn, own site now 220103" in capsys.readouterr().out
    now = _units(pkidir, "vpn/220100")["k001"]
    assert (now["address"], now["serial"], now["home"]) == (k["address"], k["serial"], "220103")
    # to the province, with a dry run first
    assert _cli("move", "k001", "--to", "220000", "--dry-run") == 0
    assert "would move   k001: 220100-vpn -> 220000-vpn" in capsys.readouterr().out
    assert _units(pkidir, "vpn/220100")["k001"]["status"] == "active"
    assert _cli("move", "k001", "--to", "220000") == 0
    assert _units(pkidir, "vpn")["k001"]["status"] == "active"
    assert _units(pkidir, "vpn/220100")["k001"]["status"] == "revoked"
    assert _cli("move", "k001", "--to", "220000") == 0
    assert "0 added, 0 moved, 0 rehomed, 1 unchanged" in capsys.readouterr().out
    assert _cli("move", "nosuch", "--to", "220000") == 1
    assert "move: unit nosuch is active at no concentrator" in capsys.readouterr().err


def test_revoke_finds_each_units_concentrator(pkidir, tmp_path, capsys):
    assert _cli("import", "--csv", _csv(tmp_path, BATCH)) == 0
    capsys.readouterr()
    assert _cli("revoke", "k001", "nosuch") == 1
    assert "not onboarded: nosuch (nothing changed): no concentrator" in capsys.readouterr().err
    assert _cli("revoke", "k001", "k002") == 0
    assert "2 revoked (220100-vpn: k001; 220200-vpn: k002)" in capsys.readouterr().out
    assert _units(pkidir, "vpn/220100")["k001"]["status"] == "revoked"
    assert _units(pkidir, "vpn/220200")["k002"]["status"] == "revoked"
    assert _cli("revoke", "k001") == 0
    assert "0 revoked (already revoked)" in capsys.readouterr().out


def test_the_province_benchmark_batch_is_every_unit_of_the_source_and_resolves_linearly(pkidir):
    """benchmarks/vpn_province.py onboards what the source declares: 3,032 units, each at the
    concentrator that serves its own site, with distinct addresses from that concentrator's pool."""
    import importlib.util
    import time

    from jincai.pki import batch as pki_batch
    from jincai.source import model

    spec = importlib.util.spec_from_file_location("vpn_province", os.path.join(ROOT, "benchmarks", "vpn_province.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    counts = {s["code"]: (s.get("budget_units") or {}).get("count", 0) for _, s in model.load(JILIN).sites}
    plans = vpn.plans(JILIN)
    rows = bench.unit_rows(plans, counts)
    assert len(rows) == sum(counts.values()) == 3032
    regs = pki_batch.Registries(plans, str(pkidir))
    t0 = time.process_time()
    actions = pki_batch.resolve(regs, rows)
    assert time.process_time() - t0 < 5  # the allocator is linear (it was quadratic: 1.5 M address objects)
    assert {a["action"] for a in actions} == {"add"}
    by_conc = {}
    for a in actions:
        by_conc.setdefault(a["to"], []).append(ipaddress.ip_address(a["address"]))
    plan_of = {p["concentrator"]["name"]: p for p in plans}
    for name, addrs in by_conc.items():
        assert len(set(addrs)) == len(addrs) and all(x in ipaddress.ip_network(plan_of[name]["pool"]) for x in addrs)
    assert len(by_conc["220000-vpn"]) == 1040


def test_a_site_goes_to_the_concentrator_whose_model_object_serves_it(pkidir):
    """Where a county's unit goes is the typed model's word (Concentrator.served, via jincai.pki.vpn.plans_of)."""
    from jincai.pki import batch as pki_batch
    from jincai.source import inventory

    m, _ = inventory.build_checked(JILIN)
    city = m.hosts["220100-vpn"].vpn
    row = [{"code": "k001", "name": "南关区财政局", "site": "220102"}]
    regs = pki_batch.Registries(vpn.plans_of(m), str(pkidir))
    assert pki_batch.resolve(regs, row)[0]["to"] == "220100-vpn"
    city.served = [s for s in city.served if s["site"] != "220102"]
    regs = pki_batch.Registries(vpn.plans_of(m), str(pkidir))
    with pytest.raises(pki.PkiError, match="site: 220102 is served by no VPN concentrator"):
        pki_batch.resolve(regs, row)
