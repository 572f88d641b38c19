"""Failure injection on the twin: a county with a backup uplink keeps reaching the province when its
primary is cut (OSPF reconverges onto the backup), and a county without one, cut off as in-band
management would leave it, is reported unreachable by compliance while every other site's run
completes. Links are restored afterwards (also when a test fails)."""

import json
import os
import time

import pytest

from conftest import group, hostvars, jincai, run_on


def _uplinks(rtr):
    return [i for i in hostvars(rtr)["jincai_interfaces"] if i["role"] == "uplink"]


def _target():
    return hostvars(group("services")[0])["jincai_address"]


def _route_dev(rtr, target):
    out = run_on(rtr, f"ip route get {target}", check=True).stdout
    return out.split(" dev ")[1].split()[0] if " dev " in out else None


def _wait(pred, seconds=60, step=1.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


@pytest.fixture
def cut():
    """Cut links through `jincai lab link down`; whatever was cut is restored at teardown."""
    done = []

    def _cut(a, b, *flags):
        res = jincai("lab", "link", "down", a, b, *flags, timeout=60)
        assert res.returncode == 0, res.stderr
        done.append((a, b, [f for f in flags if f == "--backup"]))
        return res

    yield _cut
    for a, b, flags in reversed(done):
        jincai("lab", "link", "up", a, b, *flags, timeout=60)


def test_a_county_with_a_backup_uplink_survives_its_primary_being_cut(twin, cut):
    county = next(r for r in group("routers") if hostvars(r)["jincai_tier"] == "county"
                  and any(i["segment"].endswith("-backup") for i in _uplinks(r)))
    code = hostvars(county)["jincai_site_code"]
    primary = next(i for i in _uplinks(county) if not i["segment"].endswith("-backup"))
    backup = next(i for i in _uplinks(county) if i["segment"].endswith("-backup"))
    app = f"{code}-app1"
    target = _target()
    assert _route_dev(county, target) == primary["name"], "before the cut the primary carries the traffic"
    parent = hostvars(primary["peer"])["jincai_site_code"]
    t0 = time.monotonic()
    cut(parent, code)
    assert _wait(lambda: _route_dev(county, target) == backup["name"], 60), \
        f"{county}: traffic did not move to the backup {backup['name']}"
    assert _wait(lambda: run_on(app, f"ping -n -c 1 -W 2 {target}", sudo=False).returncode == 0, 60), \
        f"{app} lost the province after its primary uplink was cut"
    print(f"{code}: reconverged onto the backup in {time.monotonic() - t0:.1f} s")
    status = jincai("lab", "status").stdout
    assert f"link {primary['segment']} is cut" in status
    res = jincai("lab", "link", "up", parent, code, timeout=60)
    assert res.returncode == 0, res.stderr
    assert _wait(lambda: _route_dev(county, target) == primary["name"], 90), "primary not preferred again"


def test_a_county_without_backup_is_reported_unreachable_and_the_rest_completes(twin, cut, tmp_path):
    county = next(r for r in group("routers") if hostvars(r)["jincai_tier"] == "county"
                  and len(_uplinks(r)) == 1)
    code = hostvars(county)["jincai_site_code"]
    city = hostvars(county)["jincai_site"]["parent"]
    siblings = sorted({hostvars(r)["jincai_site_code"] for r in group("routers")
                       if hostvars(r)["jincai_site"].get("parent") == city})
    scope = [city] + siblings
    res = cut(city, code, "--inband")
    assert f"{code}-app1" in res.stdout and county in res.stdout
    out = tmp_path / "report"
    run = jincai("compliance", "-i", twin, "--limit", ",".join(scope), "--skip-drift", "-o", str(out),
                 "--history", str(tmp_path / "history.json"), "-q", timeout=1800)
    assert run.returncode != 2 or "unreachable" in run.stdout, run.stdout + run.stderr
    with open(os.path.join(out, "report.json"), encoding="utf-8") as fh:
        report = json.load(fh)
    sites = {s["code"]: s for s in report["sites"]}
    assert set(sites) == set(scope), sorted(sites)
    assert sites[code]["status"] == "unreachable", sites[code]
    others = {c: s["status"] for c, s in sites.items() if c != code}
    assert "unreachable" not in others.values(), others
    assert all(s["counts"]["passed"] + s["counts"]["failed"] + s["counts"]["drifted"] == len(s["hosts"])
               for c, s in sites.items() if c != code), "another site's run did not complete"
