"""The allocator and `jincai site add/show`: any sequence of adds keeps allocations disjoint and stable."""

import copy
import ipaddress
import os
import shutil
import subprocess
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jincai import ROOT, sitecmd
from jincai.source import allocate, model, validate

LAB = os.path.join(ROOT, "inventories", "lab")
JILIN = os.path.join(ROOT, "inventories", "jilin")
DIVS = model.load_divisions()
CITIES = sorted(c for c, d in DIVS.items() if d.level == "city")
COUNTIES = sorted(c for c, d in DIVS.items() if d.level == "county")


def leaf_prefixes(src):
    """Every allocated prefix that must not overlap another: LANs, metros, links, pools, loopbacks."""
    out = []
    for _, s in src.sites:
        for key in ("lan", "metro", "vpn_pool"):
            if s.get(key):
                out.append((model.net(s[key]), s["code"], key))
        for up in s.get("uplinks") or []:
            out.append((model.net(up["subnet"]), s["code"], "uplink"))
        out.append((model.net(s["router"]["loopback"] + "/32"), s["code"], "loopback"))
    return out


def blocks(src):
    return {s["code"]: model.net(s["block"]) for _, s in src.sites}


def add_sequence(src, codes):
    """Add codes in order (parents first); return the snapshots of the site list after each add."""
    snapshots = []
    for code in codes:
        site = allocate.Allocator(src).new_site(DIVS[code])
        src.sites.append(("mem", site))
        snapshots.append(copy.deepcopy([s for _, s in src.sites]))
    return snapshots


@st.composite
def add_orders(draw):
    """A random set of cities and counties to add to the lab, in a random order with parents first."""
    cities = draw(st.lists(st.sampled_from([c for c in CITIES if c not in ("220100", "220200")]),
                           unique=True, max_size=4))
    present = {"220100", "220200", *cities}
    pool = [c for c in COUNTIES if DIVS[c].parent in present and c not in ("220102", "220103", "220202")]
    counties = draw(st.lists(st.sampled_from(pool), unique=True, max_size=10)) if pool else []
    order = draw(st.permutations(cities + counties))
    # stable-partition: a county never comes before its (new) city
    done, out, pending = {"220100", "220200"}, [], list(order)
    while pending:
        for c in list(pending):
            if DIVS[c].level == "city" or DIVS[c].parent in done:
                out.append(c)
                done.add(c)
                pending.remove(c)
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(add_orders())
def test_any_sequence_of_adds_stays_disjoint_stable_and_valid(codes):
    base = model.load(LAB)
    before = copy.deepcopy([s for _, s in base.sites])
    snapshots = add_sequence(base, codes)
    # stable: each add leaves every earlier site exactly as it was
    for i, snap in enumerate(snapshots):
        assert snap[: len(before) + i] == (snapshots[i - 1] if i else before)
    # disjoint: no two leaf allocations overlap; blocks nest only county-in-own-city
    leaves = sorted(leaf_prefixes(base), key=lambda x: (int(x[0].network_address), x[0].prefixlen))
    for (a, ca, ka), (b, cb, kb) in zip(leaves, leaves[1:]):
        assert not a.overlaps(b), (a, ca, ka, b, cb, kb)
    bl = blocks(base)
    for code, n in bl.items():
        for other, m in bl.items():
            if code < other and n.overlaps(m):
                assert DIVS[other].parent == code or DIVS[code].parent == other
    # and the validator agrees (the same rules, independently coded)
    assert [str(f) for f in validate.check(base) if f.severity == "error"] == []


@settings(max_examples=15, deadline=None)
@given(add_orders())
def test_allocation_is_deterministic(codes):
    a, b = model.load(LAB), model.load(LAB)
    assert add_sequence(a, codes)[-1:] == add_sequence(b, codes)[-1:]


def test_freed_slots_are_reused_lowest_first():
    src = model.load(JILIN)
    removed = next(s for _, s in src.sites if s["code"] == "222426")  # 安图县, the last county allocated
    src.sites = [(f, s) for f, s in src.sites if s["code"] != "222426"]
    site = allocate.Allocator(src).new_site(DIVS["222426"])
    for key in ("block", "lan", "metro"):
        assert site[key] == removed[key]
    assert site["router"]["loopback"] == removed["router"]["loopback"]
    assert site["uplinks"][0]["subnet"] == removed["uplinks"][0]["subnet"]


def test_pool_exhaustion_is_reported():
    src = model.load(LAB)
    src.network["plan"]["loopbacks"] = "198.18.254.0/29"  # 6 host addresses, all six routers use them
    try:
        allocate.Allocator(src).new_site(DIVS["220104"])
    except allocate.AllocationError as exc:
        assert "no free address left in 198.18.254.0/29 for the loopback" in str(exc)
    else:
        raise AssertionError("allocation from a full pool succeeded")


def run_jincai(*args, cwd=ROOT):
    exe = os.path.join(os.path.dirname(sys.executable), "jincai")
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd, check=False)


def test_site_add_dry_run_writes_nothing(tmp_path):
    inv = tmp_path / "lab"
    shutil.copytree(LAB, inv)
    before = (inv / "source/sites/220100.yml").read_text()
    r = run_jincai("site", "add", "220104", "-i", str(inv))
    assert r.returncode == 0, r.stderr
    assert "+   - code: '220104'" in r.stdout and "dry run" in r.stdout
    assert (inv / "source/sites/220100.yml").read_text() == before


def test_site_add_write_appends_and_keeps_everything_else(tmp_path):
    inv = tmp_path / "lab"
    shutil.copytree(LAB, inv)
    old_files = {p.name: p.read_text() for p in (inv / "source/sites").iterdir()}
    old_sites = copy.deepcopy(model.load(str(inv)).site_map())
    for code in ("220104", "220300", "220302"):  # a county, a new city, a county of the new city
        r = run_jincai("site", "add", code, "--write", "-i", str(inv))
        assert r.returncode == 0, r.stderr
    new_files = {p.name: p.read_text() for p in (inv / "source/sites").iterdir()}
    assert set(new_files) == set(old_files) | {"220300.yml"}
    for name, text in old_files.items():
        assert new_files[name].startswith(text)  # append-only: nothing renumbered
    src = model.load(str(inv))
    for code, site in old_sites.items():
        assert src.site_map()[code] == site
    new = src.site_map()
    assert new["220104"]["block"] == "198.18.19.0/24" and new["220300"]["block"] == "198.18.48.0/20"
    assert model.net(new["220302"]["block"]).subnet_of(model.net(new["220300"]["block"]))
    assert [str(f) for f in validate.check(src) if f.severity == "error"] == []
    # the new counties have no technicians yet: that is a warning, not an error
    assert {f.site for f in validate.check(src)} == {"220104", "220302"}


def test_site_add_refusals(tmp_path):
    cases = {
        "110101": "110101 is not a Jilin division",
        "220102": "site 220102 (南关区) is already present",
        "220302": "the parent 220300 of 220302 (铁西区) is not in the source; add it first: jincai site add 220300",
        "220000": "site 220000 (吉林省) is already present",
    }
    for code, message in cases.items():
        r = run_jincai("site", "add", code, "-i", LAB)
        assert r.returncode == 1 and message in r.stderr, (code, r.stderr)


def test_site_add_refuses_an_invalid_source(tmp_path):
    inv = tmp_path / "lab"
    shutil.copytree(LAB, inv)
    p = inv / "source/sites/220200.yml"
    p.write_text(p.read_text().replace("platform: frr, loopback: 198.18.254.6", "platform: ios, loopback: 198.18.254.6"))
    r = run_jincai("site", "add", "220104", "-i", str(inv))
    assert r.returncode == 1 and "the source has errors; fix them first" in r.stderr and "'ios'" in r.stderr


def test_site_show():
    r = run_jincai("site", "show", "220102", "-i", LAB)
    assert r.returncode == 0, r.stderr
    assert "site 220102 南关区 (Nanguan Qu), county, parent 220100" in r.stdout
    assert "eth1" in r.stdout and "-> 220100-rtr" in r.stdout
    assert "apps: budget, treasury, nontax, township" in r.stdout
    r = run_jincai("site", "show", "220184")  # default inventory: Jilin
    assert r.returncode == 0 and "-> 220000-rtr (cost 100" in r.stdout
    r = run_jincai("site", "show", "229999", "-i", LAB)
    assert r.returncode == 1 and "no site 229999" in r.stderr


def test_render_site_round_trips():
    for _, site in model.load(JILIN).sites:
        import yaml

        assert yaml.safe_load("sites:\n" + sitecmd.render_site(site))["sites"][0] == site
        assert all(len(line) <= 140 for line in sitecmd.render_site(site).splitlines())


def test_lab_addresses_stay_in_range_after_adds():
    src = model.load(LAB)
    add_sequence(src, ["220300", "220302", "220104"])
    lab = ipaddress.ip_network("198.18.0.0/15")
    for n, _, _ in leaf_prefixes(src):
        assert n.subnet_of(lab)


def test_a_new_county_moves_no_port_of_its_city_router(tmp_path):
    """Downlinks come after LAN and metro: 220104 takes the city router's next free port."""
    inv = tmp_path / "lab"
    shutil.copytree(LAB, inv)
    before = model.derive(model.load(str(inv))).hosts["220100-rtr"]["jincai_interfaces"]
    r = run_jincai("site", "add", "220104", "--write", "-i", str(inv))
    assert r.returncode == 0, r.stderr
    assert "PORT MOVE" not in r.stdout
    after = model.derive(model.load(str(inv))).hosts["220100-rtr"]["jincai_interfaces"]
    assert after[:len(before)] == before
    assert after[-1]["segment"] == "wan-220100-220104" and after[-1]["role"] == "downlink"


def test_a_port_move_is_shown_and_written_only_when_allowed(tmp_path):
    """A county whose code sorts before an existing sibling's moves that sibling's downlink port."""
    inv = tmp_path / "lab"
    shutil.copytree(LAB, inv)
    city = inv / "source/sites/220100.yml"
    text = city.read_text()
    # take 220102 out of the copy (as if never built), so that adding it back sorts before 220103
    start, end = text.index('  - code: "220102"'), text.index('  - code: "220103"')
    city.write_text(text[:start] + text[end:])
    province = inv / "source/sites/220000.yml"  # and 220102's township client with it
    province.write_text("".join(ln for ln in province.read_text().splitlines(True) if "tw0001" not in ln))
    before = city.read_text()
    r = run_jincai("site", "add", "220102", "--write", "-i", str(inv))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "! PORT MOVE: 220100-rtr: wan-220100-220103 moves from eth3 to eth4" in r.stdout
    assert "--allow-port-moves" in r.stderr
    assert city.read_text() == before
    r = run_jincai("site", "add", "220102", "--write", "--allow-port-moves", "-i", str(inv))
    assert r.returncode == 0, r.stderr
    assert "code: '220102'" in city.read_text()
