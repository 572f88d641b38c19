"""The typed model (issue 21): sites, links, parties, hosts and VPN concentrators as objects built once
per kind; host variables are their serialisation; the catalogue is the one source of every app fact."""

import os

import pytest

from jincai import ROOT
from jincai.source import model

LAB = os.path.join(ROOT, "inventories", "lab")
JILIN = os.path.join(ROOT, "inventories", "jilin")


@pytest.fixture(scope="module", params=["lab", "jilin"])
def built(request):
    src = model.load(LAB if request.param == "lab" else JILIN)
    return src, model.build(src)


def test_host_vars_are_the_serialisation_of_the_model(built):
    src, m = built
    d = model.derive(src)
    assert list(d.hosts) == list(m.hosts)
    for name, host in m.hosts.items():
        hv = d.hosts[name]
        assert hv["jincai_site_code"] == host.site and hv["jincai_functions"] == host.functions
        assert hv["jincai_interfaces"] == [i.vars() for i in host.interfaces]
        assert hv["ansible_host"] == host.mgmt and hv["jincai_address"] == host.address
    assert d.groups == m.groups
    # fresh containers per host: changing one host's vars leaves the others alone
    a, b = [n for n in m.hosts if m.hosts[n].kind == "server"][:2]
    d.hosts[a]["jincai_technicians"].append({"user": "x"})
    d.hosts[a]["jincai_site"]["code"] = "x"
    assert {"user": "x"} not in d.hosts[b]["jincai_technicians"] and d.hosts[b]["jincai_site"]["code"] != "x"


def test_every_link_is_one_object_seen_from_both_ends(built):
    _, m = built
    for link in m.links:
        child, parent = m.sites[link.child], m.sites[link.parent]
        assert link in child.uplinks and link in parent.downlinks
        up = next(i for i in m.hosts[child.router].interfaces if i.segment == link.segment)
        down = next(i for i in m.hosts[parent.router].interfaces if i.segment == link.segment)
        assert (up.role, down.role) == ("uplink", "downlink")
        assert up.peer == parent.router and down.peer == child.router
        assert up.ospf_cost == down.ospf_cost == model.LINK_COST[link.role]
        assert up.ospf_area == down.ospf_area == link.ospf_area
        assert model.parse_wan_segment(link.segment) == (link.parent, link.child, link.role)
    assert sum(len(s.uplinks) for s in m.sites.values()) == len(m.links)


def test_the_ntp_chain(built):
    src, m = built
    province = next(s for s in m.sites.values() if s.tier == "province")
    svc = m.province_services["ntp"]
    upstream = list(src.network.get("ntp_upstream") or [])
    for name, host in m.hosts.items():
        site = m.sites[host.site]
        got = m.hostvars(name)["jincai_ntp_servers"]
        if site.tier == "province":
            assert got == (upstream if host.address == svc else [svc]), name
        elif site.tier == "city":
            assert got == [model.time_source(province.source)], name
        else:
            assert got == [model.time_source(m.sites[site.parent].source), svc], name
    # a city's time server is the host its counties name first
    for site in m.sites.values():
        if site.tier == "city":
            servers = [n for n in site.hosts if "ntp_server" in m.hosts[n].functions]
            assert [m.hosts[n].address for n in servers] == [model.time_source(site.source)]


def test_one_rule_says_which_sites_a_concentrator_serves(built):
    _, m = built
    raw = [s.source for s in m.sites.values()]
    for c in m.concentrators:
        site = m.sites[c.site]
        expect = [site.code] + ([s.code for s in m.sites.values() if s.tier == "county" and s.parent == site.code]
                                if site.tier == "city" else [])
        assert c.served_sites == expect == [s["code"] for s in model.served_sites(site.source, raw)]
        units = [m.sites[code].source.get("budget_units") or {} for code in c.served_sites]
        assert c.budget_units == sum(u.get("count", 0) for u in units)
        # the VPN firewall allows exactly what the served budget units are declared with
        assert set(c.apps) == {a for u in units for a in u.get("apps", [])}


def test_applications_come_from_the_catalogue_only(built):
    _, m = built
    cat = m.applications
    for name, host in m.hosts.items():
        hv = m.hostvars(name)
        if "app_server" in host.functions:
            assert hv["jincai_apps"] == [a for a, spec in cat.items() if hv["jincai_tier"] in spec["tiers"]]
    for party in m.parties:
        assert set(party.apps) <= {a for a, spec in cat.items() if party.kind in spec["parties"]}, party.name
        assert all(t.port == cat[t.app]["port"] for t in party.targets)
    for c in m.concentrators:
        assert all(cat[a]["budget_units"] for a in c.apps), c.host
        assert all(t.port == cat[t.app]["port"] for t in c.targets)


def test_managed_parties_and_clients_are_hosts_of_their_site(built):
    _, m = built
    for site in m.sites.values():
        for p in site.parties:
            assert (p.name in m.hosts) == p.managed
            if p.managed:
                assert m.hosts[p.name].party is p and m.hosts[p.name].kind == "party"
        for c in site.source.get("vpn_clients") or []:
            client = m.hosts[c["name"]]
            assert client.kind == "client" and client.vpn_client.concentrator in site.hosts


def test_no_second_copy_of_the_catalogue():
    """Ports and who-may-reach-what are written once (network.yml): not in the metro policy, not in
    the MLPS port expectations."""
    import yaml

    with open(os.path.join(ROOT, "policy", "metro.yml"), encoding="utf-8") as fh:
        assert set(yaml.safe_load(fh)["metro_policy"]) == {"log_prefix"}
    with open(os.path.join(ROOT, "jincai", "data", "mlps_controls.yml"), encoding="utf-8") as fh:
        ports = yaml.safe_load(fh)["expected"]["ports"]
    for inv in (LAB, JILIN):
        catalogue = {spec["port"] for spec in model.load(inv).network["applications"].values()}
        assert not catalogue & {p for lst in ports.values() for p in lst}
