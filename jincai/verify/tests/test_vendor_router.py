"""Vendor routers (Huawei VRP/VRP V8, H3C Comware, Cisco IOS): the routing checks of an FRR router and what
their running config must carry, over one read-only netmiko session per router (jincai/verify/vendor.py:
the commands, their documented output formats and the parsers).

Every test takes ``router`` (the router's :class:`jincai.verify.vendor.RouterSession`) instead of
testinfra's ``host``: a vendor CLI has no shell. Ids, titles and expected values are the plan's, shared
with the FRR checks of test_router.py and test_baseline.py (jincai/verify/plan.py).
"""

import ipaddress
import re

import pytest

from jincai.verify import support, vendor

_sessions = {}
_unreachable = {}


@pytest.fixture(scope="session")
def _router_sessions():
    """Every router session of this worker, closed at the end of the run."""
    yield _sessions
    for s in _sessions.values():
        s.close()
    _sessions.clear()


@pytest.fixture
def router(check, request, _router_sessions):
    """The netmiko session of ``check.host`` (opened by the first check that needs it; an unreachable
    router fails all its checks with one reason)."""
    from jincai.verify.tests.conftest import STATE

    name = check.host
    if name in _unreachable:
        pytest.fail(f"{name}: unreachable: {_unreachable[name]}", pytrace=False)
    if name not in _router_sessions:
        _router_sessions[name] = vendor.RouterSession(vendor.connection(request.config.stash[STATE].net, name))
    session = _router_sessions[name]
    if session.device is None:
        try:
            session.running()  # opens the session; several checks read the running config
        except Exception as exc:  # noqa: BLE001 - netmiko/paramiko raise many types; all mean "not reached"
            reason = (str(exc).strip().splitlines() or [""])[0][:200]
            _unreachable[name] = f"netmiko: {type(exc).__name__}: {reason}"
            pytest.fail(f"{name}: unreachable: {_unreachable[name]}", pytrace=False)
    return session


def _cli(check):
    return vendor.CLIS[check.params["platform"]]


def test_vendor_interface(router, check):
    """The interface carries its planned address and is up (physical and protocol)."""
    p = check.params
    ifaces = vendor.parse_interfaces(p["platform"], router.output(_cli(check).interfaces))
    i = ifaces.get(vendor.canonical_ifname(p["name"]))
    if i is None:
        support.fail(check, f"no addressed interface {p['name']}")
    up = i["physical"].startswith("up") and i["protocol"].startswith("up")
    support.expect(check, i["address"] == p["address"] and up,
                   f"{i['address']} on {i['name']}, physical {i['physical']}, protocol {i['protocol']}")


def test_vendor_ospf_neighbour(router, check):
    """The OSPF adjacency with a planned WAN neighbour is Full (on the planned interface)."""
    p = check.params
    peers = [x for x in vendor.parse_ospf_peers(p["platform"], router.output(_cli(check).ospf))
             if x["router_id"] == p["router_id"]]
    want = vendor.canonical_ifname(p["interface"])
    full = [x for x in peers if x["state"].lower().startswith("full") and vendor.canonical_ifname(x["interface"]) == want]
    found = ", ".join(f"neighbour {x['router_id']} {x['state']} on {x['interface']}" for x in peers)
    support.expect(check, bool(full), found or f"no neighbour {p['router_id']}")


def _routes(router, check):
    return vendor.parse_routes(check.params["platform"], router.output(_cli(check).routes))


def test_vendor_routes(router, check):
    """The routing table holds a route to every other site's LAN (learned over OSPF)."""
    have = _routes(router, check)
    missing = [p for p in check.params["prefixes"] if str(ipaddress.ip_network(p)) not in have]
    support.expect(check, not missing, f"missing {len(missing)}: {', '.join(missing)}")


def test_vendor_route(router, check):
    """A static route of the plan (the budget-unit pool via the concentrator)."""
    p = check.params
    paths = _routes(router, check).get(str(ipaddress.ip_network(p["to"])), [])
    vias = sorted({x["via"] or x["interface"] for x in paths})
    support.expect(check, p["via"] in vias, f"{p['to']} via {', '.join(vias)}" if vias else "no route")


def _lines(tree, header):
    node = tree.get(header)
    return None if node is None else [c.key for c in node.children.values()]


def test_vendor_acl(router, check):
    """The management ACL (permits each management network, applied to SSH) or the metro ACL (rules,
    applied inbound on the metro interface) is in the running config."""
    p, cli = check.params, _cli(check)
    tree = vendor.config_tree(p["platform"], router.running())
    rules = _lines(tree, p["acl"])
    if rules is None:
        support.fail(check, f"no {p['acl']}")
    if p["kind"] == "management":
        permitted = set(vendor.acl_networks(rules))
        missing = [n for n in p["networks"] if str(ipaddress.ip_network(n)) not in permitted]
        section, line = cli.mgmt_use_path
        applied = line in ((_lines(tree, section) or []) if section else list(tree))
        support.expect(check, not missing and applied,
                       (f"{p['acl']} without {', '.join(missing)}" if missing else f"{p['acl']} complete")
                       + ("" if applied else f"; {cli.mgmt_acl_use} absent"))
        return
    applied = cli.metro_use in (_lines(tree, f"interface {p['interface']}") or [])
    has_rules = any(" permit " in f" {r} " for r in rules)
    support.expect(check, has_rules and applied, f"{p['acl']} {'with' if has_rules else 'without'} permit rules, "
                   f"{'' if applied else 'not '}applied on {p['interface']}")


def test_vendor_ntp(router, check):
    """The intended NTP server is configured and the clock is synchronised to it."""
    p, cli = check.params, _cli(check)
    tree = vendor.config_tree(p["platform"], router.running())
    servers = [m.group(1) for m in (re.match(cli.ntp_server_re, k) for k in tree) if m]
    status = vendor.parse_ntp_status(p["platform"], router.output(cli.ntp))
    ok = p["source"] in servers and status["synchronised"] and status["reference"] == p["source"]
    support.expect(check, ok, f"servers {', '.join(servers) or 'none'}; clock "
                   f"{'synchronised' if status['synchronised'] else 'unsynchronised'}"
                   f"{' to ' + status['reference'] if status['reference'] else ''}")


def test_vendor_syslog(router, check):
    """The province collector is a configured syslog host."""
    p, cli = check.params, _cli(check)
    tree = vendor.config_tree(p["platform"], router.running())
    hosts = [m.group(1) for m in (re.match(cli.loghost_re, k) for k in tree) if m]
    support.expect(check, p["collector"] in hosts, f"syslog hosts {', '.join(hosts) or 'none'}")
