"""``jincai pki add`` without ``-c`` (issue 16): a unit goes where it belongs, not always to the province.

Per unit: already active anywhere -> left where it is (a move is the registry's truth); named by the
source (a lab client of a site's ``vpn_clients``) -> that site's concentrator, its own site and kind
from the source; registered (revoked) at exactly one concentrator -> there again, old address back; at
several -> refused (give ``-c``); else the province's. ``-c`` elsewhere than where it is active ->
refused (fix: move). Province twin (clients at every concentrator) and inventories/jilin (none)."""

import json
import os

import pytest

from jincai import ROOT
from jincai.pki import cli

JILIN = os.path.join(ROOT, "inventories", "jilin")


def _units(pkidir, reg):
    path = pkidir / reg / "units.json"
    return {u["code"]: u for u in json.loads(path.read_text())["units"]} if path.exists() else {}


def _snapshot(pkidir):
    return {str(p): p.read_bytes() for p in sorted(pkidir.rglob("*")) if p.is_file() and p.name != ".lock"}


def test_a_unit_the_source_names_goes_to_its_concentrator_with_its_own_site_and_kind(pkidir, twin_dir, capsys):
    assert cli.main(["-i", twin_dir, "add", "bu220200-1", "吉林市单位"]) == 0
    assert "1 onboarded, 0 already active (220200-vpn: 1)" in capsys.readouterr().out
    e = _units(pkidir, "vpn/220200")["bu220200-1"]
    assert (e["status"], e["site"], e["home"], e["name"]) == ("active", "220200", "220200", "吉林市单位")
    assert "bu220200-1" not in _units(pkidir, "vpn")
    # a county's unit at its city's concentrator and a township office: the source's own site and kind
    assert cli.main(["-i", twin_dir, "add", "bu220100-2", "county unit"]) == 0
    assert cli.main(["-i", twin_dir, "add", "tw220100-1", "township office"]) == 0
    county, office = _units(pkidir, "vpn/220100")["bu220100-2"], _units(pkidir, "vpn/220100")["tw220100-1"]
    assert county["home"] == "220102" and county.get("kind") is None
    assert office["kind"] == "township" and office["home"] == "220102" and office["identity"].startswith("tw220100-1.tw.")


def test_a_unit_the_source_does_not_know_goes_to_the_province(pkidir, twin_dir, capsys):
    assert cli.main(["-i", twin_dir, "add", "x0001", "new unit"]) == 0
    assert "1 onboarded, 0 already active (220000-vpn: 1)" in capsys.readouterr().out
    assert _units(pkidir, "vpn")["x0001"]["home"] == "220000"


def test_a_batch_places_each_unit_and_a_rerun_changes_nothing(pkidir, twin_dir, tmp_path, capsys):
    f = tmp_path / "units.csv"
    f.write_text("code,name\nbu220300-1,a\nbu222400-1,b\nx0002,c\n", encoding="utf-8")
    assert cli.main(["-i", twin_dir, "add", "--csv", str(f)]) == 0
    out = capsys.readouterr().out
    assert "3 onboarded, 0 already active (220300-vpn: 1; 222400-vpn: 1; 220000-vpn: 1)" in out
    assert {"bu220300-1"} == set(_units(pkidir, "vpn/220300")) and {"bu222400-1"} == set(_units(pkidir, "vpn/222400"))
    before = _snapshot(pkidir)
    assert cli.main(["-i", twin_dir, "add", "--csv", str(f)]) == 0
    assert "0 onboarded, 3 already active" in capsys.readouterr().out and _snapshot(pkidir) == before


def test_an_active_unit_stays_where_a_move_put_it_and_c_elsewhere_is_refused(pkidir, twin_dir, capsys):
    assert cli.main(["-i", twin_dir, "sync"]) == 0
    assert cli.main(["-i", twin_dir, "move", "bu220200-1", "--to", "220100"]) == 0
    before = _snapshot(pkidir)
    capsys.readouterr()
    assert cli.main(["-i", twin_dir, "add", "bu220200-1", "x"]) == 0  # the source still places it at 220200
    assert "0 onboarded, 1 already active" in capsys.readouterr().out and _snapshot(pkidir) == before
    assert cli.main(["-i", twin_dir, "-c", "220200", "add", "bu220200-1", "x"]) == 1
    err = capsys.readouterr().err
    assert "bu220200-1 is active at 220100-vpn, not 220200-vpn (fix: `jincai pki move bu220200-1 --to 220200`)" in err
    assert "(nothing changed)" in err and _snapshot(pkidir) == before


def test_a_revoked_unit_comes_back_where_it_was_and_two_prior_concentrators_need_c(pkidir, tmp_path, capsys):
    f = tmp_path / "batch.csv"
    f.write_text("code,name,concentrator,site\nk001,南关区单位,,220102\nk002,moved,,220102\n", encoding="utf-8")
    assert cli.main(["-i", JILIN, "import", "--csv", str(f)]) == 0
    k001 = _units(pkidir, "vpn/220100")["k001"]
    assert cli.main(["-i", JILIN, "move", "k002", "--to", "220200"]) == 0
    assert cli.main(["-i", JILIN, "revoke", "k001", "k002"]) == 0
    capsys.readouterr()
    assert cli.main(["-i", JILIN, "add", "k001", "南关区单位"]) == 0  # not in the source: where it was registered
    back = _units(pkidir, "vpn/220100")["k001"]
    assert (back["status"], back["address"], back["home"]) == ("active", k001["address"], "220102")
    assert back["serial"] != k001["serial"] and "k001" not in _units(pkidir, "vpn")
    before = _snapshot(pkidir)
    assert cli.main(["-i", JILIN, "add", "k002", "moved"]) == 1
    assert "k002 was registered at 220100-vpn, 220200-vpn (fix: name the concentrator with -c" in capsys.readouterr().err
    assert _snapshot(pkidir) == before
    assert cli.main(["-i", JILIN, "-c", "220200", "add", "k002", "moved"]) == 0
    assert _units(pkidir, "vpn/220200")["k002"]["status"] == "active"
