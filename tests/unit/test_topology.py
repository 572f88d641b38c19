"""The WAN map (jincai.topology): structure of the SVG Graphviz draws, states, OSPF link state, CLIs.

Graphviz (``dot``, Debian package graphviz) really runs; the SVG is read back with
jincai.topology.svg and checked against the source of truth read independently (the raw site files).
"""

import ipaddress
import json
import os
import shutil
import subprocess
import sys

import pytest

from jincai import ROOT
from jincai.source import model
from jincai.source import inventory as invmod
from jincai.topology import draw, graph, live, ospf, state, svg

JILIN = os.path.join(ROOT, "inventories", "jilin")
LAB = os.path.join(ROOT, "inventories", "lab")
JINCAI = [sys.executable, "-m", "jincai.cli"]


def _source_facts(inventory_dir):
    """Sites and WAN links as the raw source files state them (not through the model's derivation)."""
    src = model.load(inventory_dir)
    sites = {s["code"]: s for _f, s in src.sites}
    links = {}
    for code, s in sites.items():
        for up in s.get("uplinks") or []:
            links[f"wan-{up['peer']}-{code}" + ("-backup" if up["role"] == "backup" else "")] = up["role"]
    return sites, links


@pytest.fixture(scope="module")
def jilin():
    return graph.load(JILIN)


@pytest.fixture(scope="module")
def jilin_map(jilin):
    return svg.read_map(draw.draw(jilin))


@pytest.fixture(scope="module")
def lab():
    return graph.load(LAB)


def test_jilin_map_shows_every_site_once_and_every_link_with_its_style(jilin_map):
    sites, links = _source_facts(JILIN)
    assert len(sites) == 70
    assert set(jilin_map.sites) == set(sites)  # read_map refuses a site drawn twice
    for code, shape in jilin_map.sites.items():
        assert shape.text.startswith(f"{code} {sites[code]['name_zh']}"), shape.text  # code + Chinese name
        assert sites[code]["tier"] in shape.classes
    assert set(jilin_map.links) == set(links)
    assert sum(1 for r in links.values() if r == "backup") == 23
    for seg, role in links.items():
        shape = jilin_map.links[seg]
        assert role in shape.classes
        assert shape.dashed == (role == "backup"), seg
        assert shape.stroke == draw.LINK_STYLE[role]["color"]
    # parties and VPN concentrators are at their sites: the badge line of each site node
    text = jilin_map.sites["220200"].text
    assert "VPN" in text and "人行" in text and "银行×2" in text and "税务" in text
    assert jilin_map.others == []  # no node other than the 70 sites on the province map


def test_the_province_twin_draws_the_same_map_as_production(tmp_path, jilin):
    """The twin (jincai lab twin: a lab source derived from production) has the same sites and links."""
    from jincai.lab import twin

    twin.translate(JILIN, str(tmp_path / "twin"))
    topo = graph.load(str(tmp_path / "twin"))
    assert topo.environment == "lab"
    assert list(topo.sites) == list(jilin.sites)
    assert [(lk.segment, lk.role) for lk in topo.links] == [(lk.segment, lk.role) for lk in jilin.links]
    drawn = svg.read_map(draw.draw(topo))
    assert set(drawn.sites) == set(jilin.sites) and len(drawn.links) == 92
    assert all(ipaddress.ip_network(lk.subnet).subnet_of(ipaddress.ip_network("198.18.0.0/15")) for lk in topo.links)


def test_counties_are_boxed_with_their_city_and_the_layout_goes_by_tier(jilin, jilin_map):
    """Province left of every city, every city left of its counties (left-to-right by tier)."""
    boxes = {c: s.box for c, s in jilin_map.sites.items()}
    province = boxes["220000"]
    for code, site in jilin.sites.items():
        if site.tier == "city":
            assert boxes[code][0] > province[2], code
            for county in jilin.children(code):
                assert boxes[county][0] > boxes[code][2], county
    dot_text = draw.to_dot(jilin)
    assert dot_text.count("subgraph \"cluster_") == 9


def test_lab_map_and_state_colours(lab):
    states = {"220000": "clean", "220100": "findings", "220102": "drift", "220103": "unreachable"}
    drawn = svg.read_map(draw.draw(lab, site_states=states, href=lambda c: f"#site-{c}"))
    assert set(drawn.sites) == {"220000", "220100", "220102", "220103", "220200", "220202"}
    assert drawn.site_states() == {c: states.get(c, "unchecked") for c in drawn.sites}
    for code, shape in drawn.sites.items():
        expected = states.get(code, "unchecked")
        assert shape.fill == state.SITE_STATES[expected][0], code
        assert expected in shape.classes
        assert shape.href == f"#site-{code}"
    plain = svg.read_map(draw.draw(lab))
    assert plain.sites["220102"].fill == draw.TIER_COLOURS["county"][0]
    assert plain.sites["220102"].href == ""


def test_site_state_takes_the_worst_result():
    assert state.site_state(["passed", "passed"]) == "clean"
    assert state.site_state(["passed", "drifted"]) == "drift"
    assert state.site_state(["drifted", "failed"]) == "findings"
    assert state.site_state(["failed", "unreachable", "passed"]) == "unreachable"
    assert state.site_state([]) == "unchecked"
    with pytest.raises(ValueError, match="bogus"):
        state.site_state(["bogus"])
    report = {"sites": [{"code": "220102", "status": "drifted"}, {"code": "220103", "status": "unreachable"}]}
    assert state.site_states_from_report(report) == {"220102": "drift", "220103": "unreachable"}


# ---------------------------------------------------------------- OSPF neighbours (FRR JSON)

def _nbr(state_, address, ifname, local):
    return {"nbrPriority": 1, "nbrState": state_, "converged": state_.split("/")[0], "role": state_.split("/")[1],
            "upTimeInMsec": 5_025_113, "routerDeadIntervalTimerDueMsec": 35_123, "upTime": "1h23m45s",
            "deadTime": "35.123s", "ifaceAddress": address, "ifaceName": f"{ifname}:{local}", "areaId": "0.0.0.0",
            "linkStateRetransmissionListCounter": 0, "linkStateRequestListCounter": 0,
            "databaseSummaryListCounter": 0}


#: 220100-rtr of the lab, as FRR 8.4 prints it: Full to the province (eth1) and 220102 (eth4), and
#: 220103 (eth5) stuck in Init after its cable was pulled and put back.
CITY_JSON = json.dumps({"neighbors": {
    "198.18.254.1": [_nbr("Full/-", "198.18.248.1", "eth1", "198.18.248.2")],
    "198.18.254.4": [_nbr("Full/-", "198.18.248.10", "eth4", "198.18.248.9")],
    "198.18.254.5": [_nbr("Init/-", "198.18.248.14", "eth5", "198.18.248.13")],
}}, indent=2)
PROVINCE_JSON = json.dumps({"neighbors": {
    "198.18.254.2": [_nbr("Full/-", "198.18.248.2", "eth1", "198.18.248.1")],
    "198.18.254.3": [_nbr("Full/-", "198.18.248.6", "eth2", "198.18.248.5")],
}})
#: An older FRR (7.x): the router-id map at the top level, ``state`` and ``address``.
OLD_JSON = json.dumps({"198.18.254.3": [{"priority": 1, "state": "Full/DROther", "address": "198.18.248.17",
                                          "ifaceName": "eth1:198.18.248.18", "deadTimeMsecs": 33000}]})


def test_frr_neighbor_json_is_parsed_in_both_shapes():
    nbrs = ospf.parse_neighbors(CITY_JSON, router="220100-rtr")
    assert [(n.router_id, n.address, n.interface, n.state, n.full) for n in nbrs] == [
        ("198.18.254.1", "198.18.248.1", "eth1", "Full", True),
        ("198.18.254.4", "198.18.248.10", "eth4", "Full", True),
        ("198.18.254.5", "198.18.248.14", "eth5", "Init", False)]
    old = ospf.parse_neighbors(OLD_JSON)
    assert old[0].full and old[0].role == "DROther" and old[0].address == "198.18.248.17"
    assert ospf.parse_neighbors('{"neighbors": {}}') == []
    with pytest.raises(graph.TopologyError, match="220100-rtr: .*did not print JSON"):
        ospf.parse_neighbors("% OSPF instance not found", router="220100-rtr")
    with pytest.raises(graph.TopologyError, match="no state or address"):
        ospf.parse_neighbors('{"neighbors": {"1.1.1.1": [{"ifaceName": "eth1"}]}}')


def test_links_are_up_down_or_unknown_from_the_neighbours(lab):
    nbrs = {"220000": ospf.parse_neighbors(PROVINCE_JSON), "220100": ospf.parse_neighbors(CITY_JSON),
            "220202": ospf.parse_neighbors(OLD_JSON)}
    states = ospf.link_states(lab, nbrs)
    assert states == {"wan-220000-220100": "up", "wan-220000-220200": "up", "wan-220100-220102": "up",
                      "wan-220100-220103": "down", "wan-220200-220202": "up"}
    assert set(ospf.link_states(lab, {}).values()) == {"unknown"}
    drawn = svg.read_map(draw.draw(lab, link_states=states))
    assert drawn.link_states() == states
    down = drawn.links["wan-220100-220103"]
    assert "down" in down.classes and down.stroke == state.LINK_STATES["down"]
    assert drawn.links["wan-220000-220100"].stroke == state.LINK_STATES["up"]
    # a link going down does not move the sites: the operator's picture stays where it was
    plain = svg.read_map(draw.draw(lab))
    assert {c: s.box for c, s in drawn.sites.items()} == {c: s.box for c, s in plain.sites.items()}


def test_live_refuses_a_production_inventory_before_contacting_anything(jilin):
    m, _ = invmod.build_checked(JILIN)
    with pytest.raises(graph.TopologyError, match="lab only.*production"):
        live.collect(jilin, m)


def test_live_asks_each_router_at_its_management_address_in_the_model(lab, monkeypatch):
    """With no running lab recorded, every router is asked at the model's management address."""
    from jincai.lab import lab as labmod

    m, _ = invmod.build_checked(LAB)
    monkeypatch.setattr(labmod, "load_state", lambda: {})
    assert live._mgmt_addresses(lab, m) == {code: (s.router, m.hosts[s.router].mgmt) for code, s in m.sites.items()}
    m.hosts["220102-rtr"].mgmt = "10.22.1.1"
    with pytest.raises(graph.TopologyError, match="220102-rtr .*10.22.1.1 is not in the lab range"):
        live._mgmt_addresses(lab, m)


def test_the_graph_is_built_from_the_models_objects():
    """Sites, links, parties and concentrators on the map are the model's objects: a change to them shows."""
    m = model.build(model.load(LAB))
    m.sites["220000"].parties[0].org = "PBC"
    m.hosts["220000-vpn"].vpn.budget_units = 7
    m.sites["220102"].name_zh = "测试区"
    topo = graph.from_model(m)
    assert topo.sites["220000"] is m.sites["220000"]  # the model's own site, not a copy of its fields
    party = topo.sites["220000"].parties[0]
    assert (party.name, party.kind, party.org) == ("220000-pbc", "peoples_bank", "PBC")
    assert topo.vpn["220000"] == {"host": "220000-vpn", "budget_units": 7}
    assert topo.sites["220102"].name_zh == "测试区" and topo.sites["220102"].router == "220102-rtr"
    by_segment = {lk.segment: lk for lk in topo.links}
    assert len(by_segment) == len(m.links) == 5
    for lk in m.links:
        drawn = by_segment[lk.segment]
        assert (drawn.parent, drawn.child, drawn.role, drawn.subnet) == (lk.parent, lk.child, lk.role, lk.network)
        assert drawn.addresses == {lk.parent: lk.address("parent"), lk.child: lk.address("child")}


# ---------------------------------------------------------------- command lines

def test_topology_command_writes_the_svg_and_refuses_bad_input(tmp_path):
    out = tmp_path / "lab.svg"
    res = subprocess.run(JINCAI + ["topology", "-i", LAB, "-o", str(out)], capture_output=True, text=True,
                         cwd=ROOT, check=False)
    assert res.returncode == 0, res.stderr
    assert "6 sites, 5 links" in res.stdout
    assert set(svg.read_map(out.read_text(encoding="utf-8")).sites) == set(_source_facts(LAB)[0])
    res = subprocess.run(JINCAI + ["topology", "-i", LAB, "--dot"], capture_output=True, text=True, cwd=ROOT,
                         check=False)
    assert res.returncode == 0 and res.stdout.startswith("digraph wan {")
    res = subprocess.run(JINCAI + ["topology", "-i", str(tmp_path / "nowhere")], capture_output=True, text=True,
                         cwd=ROOT, check=False)
    assert res.returncode == 2 and "nowhere: no such inventory directory" in res.stderr
    broken = tmp_path / "broken"
    shutil.copytree(LAB, broken)
    city = broken / "source" / "sites" / "220200.yml"
    city.write_text(city.read_text(encoding="utf-8").replace('parent: "220200"', 'parent: "220900"'), encoding="utf-8")
    res = subprocess.run(JINCAI + ["topology", "-i", str(broken), "-o", str(tmp_path / "x.svg")],
                         capture_output=True, text=True, cwd=ROOT, check=False)
    assert res.returncode == 2 and "invalid source" in res.stderr
    assert "220200.yml" in res.stderr and "site 220202" in res.stderr and "parent" in res.stderr, res.stderr
    assert not (tmp_path / "x.svg").exists()


def test_topology_command_colours_sites_from_a_compliance_report(tmp_path):
    rep = tmp_path / "report.json"
    rep.write_text(json.dumps({"sites": [{"code": "220102", "status": "drifted"},
                                         {"code": "220000", "status": "passed"}]}), encoding="utf-8")
    out = tmp_path / "map.svg"
    res = subprocess.run(JINCAI + ["topology", "-i", LAB, "--compliance", str(rep), "-o", str(out)],
                         capture_output=True, text=True, cwd=ROOT, check=False)
    assert res.returncode == 0, res.stderr
    fills = {c: s.fill for c, s in svg.read_map(out.read_text(encoding="utf-8")).sites.items()}
    assert fills["220102"] == state.SITE_STATES["drift"][0] and fills["220000"] == state.SITE_STATES["clean"][0]
    assert {fills[c] for c in ("220100", "220103", "220200", "220202")} == {state.SITE_STATES["unchecked"][0]}
    rep.write_text('{"sites": [{"code": "220102"}]}', encoding="utf-8")
    res = subprocess.run(JINCAI + ["topology", "-i", LAB, "--compliance", str(rep)], capture_output=True,
                         text=True, cwd=ROOT, check=False)
    assert res.returncode == 2 and "report.json: not a compliance report.json" in res.stderr


def test_site_show_draws_the_site_its_parents_children_and_parties(tmp_path):
    out = tmp_path / "220184.svg"
    res = subprocess.run(JINCAI + ["site", "show", "220184", "-i", JILIN, "--draw", str(out)],
                         capture_output=True, text=True, cwd=ROOT, check=False)
    assert res.returncode == 0, res.stderr
    drawn = svg.read_map(out.read_text(encoding="utf-8"))
    # 公主岭市 hangs under 长春市 and has a backup line straight to the province
    assert set(drawn.sites) == {"220184", "220100", "220000"}
    assert [c for c, s in drawn.sites.items() if "focus" in s.classes] == ["220184"]
    assert set(drawn.links) == {"wan-220000-220100", "wan-220000-220100-backup", "wan-220100-220184",
                                "wan-220000-220184-backup"}
    site = model.load(JILIN).site_map()["220184"]
    assert sorted(drawn.others) == sorted(f"party-220184-{p['name']}" for p in site["parties"])
    out = tmp_path / "city.svg"
    assert subprocess.run(JINCAI + ["site", "show", "220200", "-i", JILIN, "--draw", str(out)],
                          capture_output=True, text=True, cwd=ROOT, check=False).returncode == 0
    drawn = svg.read_map(out.read_text(encoding="utf-8"))
    counties = {c for c, s in _source_facts(JILIN)[0].items() if s.get("parent") == "220200"}
    assert set(drawn.sites) == {"220200", "220000"} | counties
    assert "vpn-220200-vpn" in drawn.others


def test_neighbourhood_of_an_unknown_site_is_refused(lab):
    with pytest.raises(graph.TopologyError, match="no site 229999"):
        graph.neighbourhood(lab, "229999")
    assert set(graph.neighbourhood(lab, "220000").sites) == {"220000", "220100", "220200"}


def test_read_map_refuses_what_is_not_a_map():
    with pytest.raises(ValueError, match="not an SVG"):
        svg.read_map("<html/>")
    twice = draw.render_svg('digraph { a [id="site-node-1" class="site"]; b [id="site-node-1" class="site"] }')
    with pytest.raises(ValueError, match="site 1 is drawn more than once"):
        svg.read_map(twice)


def test_the_compliance_report_draws_the_map_of_the_model(monkeypatch):
    """jincai compliance builds the typed model once and draws the report's map from it (no second reading
    of host vars): its map is the model's, and it follows a change made to the model's objects."""
    from jincai import compliance

    m, _ = invmod.build_checked(LAB)
    assert compliance._topology(m) == graph.load(LAB)
    site = next(s for s in m.sites.values() if s.tier == "county")
    site.name_zh = "改名县"
    assert compliance._topology(m).sites[site.code].name_zh == "改名县"
