"""The twin's WAN after provisioning: every OSPF adjacency Full, every county reaching the province
through its own city, and the metro and VPN flows the inventory declares open while the rest stays
closed. Every expectation is read from the twin's inventory (derived from production's), over every
site: nothing is hand-picked."""

import json
import re
import time

import pytest

from conftest import group, hostvars, inventory, parallel, run_on, tcp_open


def _expected_neighbors(host):
    hv = hostvars(host)
    peers = [i["peer"] for i in hv["jincai_interfaces"] if i["role"] in ("uplink", "downlink") and i["peer"]]
    return {hostvars(p)["jincai_router"]["router_id"] for p in peers}


def _full_neighbors(host):
    out = run_on(host, "vtysh -c 'show ip ospf neighbor json'", check=True).stdout
    full = set()
    for rid, entries in (json.loads(out).get("neighbors") or {}).items():
        if any(str(e.get("nbrState", e.get("state", ""))).startswith("Full") for e in entries):
            full.add(rid)
    return full


def missing_adjacencies(routers=None, deadline_s=90):
    """{router: expected neighbours not Full}, waiting up to ``deadline_s`` for convergence."""
    routers = routers or group("routers")
    end = time.monotonic() + deadline_s
    while True:
        found = dict(zip(routers, parallel(_full_neighbors, routers)))
        missing = {h: _expected_neighbors(h) - found[h] for h in routers}
        missing = {h: m for h, m in missing.items() if m}
        if not missing or time.monotonic() > end:
            return missing
        time.sleep(3)


@pytest.fixture(scope="module")
def wan(twin):
    return twin


def test_ospf_adjacencies_are_full_everywhere(wan):
    routers = group("routers")
    assert len(routers) == 70
    assert all(_expected_neighbors(r) for r in routers)
    missing = missing_adjacencies(routers)
    assert not missing, f"{len(missing)} routers with adjacencies not Full: {dict(list(missing.items())[:10])}"


def _province_target():
    return hostvars(group("services")[0])["jincai_address"]


def test_every_county_reaches_the_province_through_its_city(wan):
    target = _province_target()
    counties = [h for h in group("county") if h in group("app_servers")]
    assert len(counties) == 60

    def probe(app):
        hv = hostvars(app)
        city_rtr = f"{hv['jincai_site']['parent']}-rtr"
        city_addrs = {i["address"].split("/")[0] for i in hostvars(city_rtr)["jincai_interfaces"]}
        ok = run_on(app, f"ping -n -c 1 -W 3 {target}", sudo=False)
        if ok.returncode != 0:
            return f"{app} cannot reach {target}: {ok.stdout.strip()[-200:]}"
        hop = run_on(app, f"ping -n -c 1 -W 3 -t 2 {target}", sudo=False)
        m = re.search(r"From (\S+) .*Time to live exceeded", hop.stdout)
        if not m or m.group(1) not in city_addrs:
            return f"{app}: hop 2 is {m.group(1) if m else None}, not its city router {city_rtr}"
        return None

    problems = [p for p in parallel(probe, counties) if p]
    assert not problems, "\n".join(problems)


def _party_expectations():
    """(party, address, port, should_open) for every party stub: each declared flow, and every other
    application port of its own site's app servers and of the province's app server (closed)."""
    inv = inventory()
    hv_all = inv["_meta"]["hostvars"]
    catalogue = next(iter(hv_all.values()))["jincai_applications"]
    province_apps = [h for h in group("province") if h in group("app_servers")]
    cases = []
    for rname in group("routers"):
        hv = hv_all[rname]
        site_apps = [h for h in group(f"site_{hv['jincai_site_code']}") if h in group("app_servers")]
        for party in hv.get("jincai_parties") or []:
            allowed = {(t["address"], t["port"]) for t in party["targets"]}
            probes = {(hv_all[s]["jincai_address"], a["port"]) for s in set(site_apps) | set(province_apps)
                      for a in catalogue.values()}
            for addr, port in sorted(probes | allowed):
                cases.append((party["name"], addr, port, (addr, port) in allowed))
    return cases


def test_party_flows_open_exactly_as_declared(wan):
    cases = _party_expectations()
    declared = [c for c in cases if c[3]]
    assert len({c[0] for c in cases}) > 200 and len(declared) > 300
    results = parallel(lambda c: tcp_open(c[0], c[1], c[2]), cases, workers=32)
    wrong = [(p, a, port, "should open" if want else "should be closed")
             for (p, a, port, want), got in zip(cases, results) if got != want]
    assert not wrong, f"{len(wrong)} of {len(cases)} flows wrong, e.g. {wrong[:15]}"


def test_budget_unit_flows_open_exactly_as_declared(wan):
    """Budget units and township finance offices (one per city concentrator): each reaches exactly
    its declared targets (a township office: its county's township application)."""
    clients = group("budget_unit_clients") + group("township_clients")
    assert len(clients) == 20 + 9
    catalogue = hostvars(clients[0])["jincai_applications"]
    province_app = hostvars([h for h in group("province") if h in group("app_servers")][0])["jincai_address"]

    def probe(client):
        vc = hostvars(client)["jincai_vpn_client"]
        allowed = {(t["address"], t["port"]) for t in vc["targets"]}
        probes = {(t["address"], a["port"]) for t in vc["targets"] for a in catalogue.values()}
        probes |= {(province_app, a["port"]) for a in catalogue.values()}
        wrong = []
        for addr, port in sorted(probes | allowed):
            got = run_on(client, f"nc -z -w 3 {addr} {port}", sudo=False, timeout=40).returncode == 0
            if got != ((addr, port) in allowed):
                wrong.append(f"{client} -> {addr}:{port} {'open' if got else 'closed'}")
        return wrong, len(allowed)

    results = parallel(probe, clients)
    wrong = [w for ws, _ in results for w in ws]
    assert all(n for _, n in results), "a client has no declared application"
    assert not wrong, f"{len(wrong)} budget-unit flows wrong: {wrong[:15]}"
