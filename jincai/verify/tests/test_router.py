"""FRR routers over a shell: OSPF adjacencies Full with every planned neighbour, a route to every other
site's LAN. Vendor platforms get the same checks over netmiko (test_vendor_router.py).

The router's service, interfaces, forwarding and static routes are judged by the shared tests in
test_baseline.py (checks of area ``router``).
"""

import ipaddress

from jincai.verify import support


def test_router_state(host, check):
    """Placeholder of a router of a platform jincai verify has no commands for (always skipped with the
    reason)."""
    support.fail(check, "not verifiable")


def _neighbours(host, name):
    """{router id: [state, ...]} from ``show ip ospf neighbor json`` (once per router)."""
    data = support.json_output(host, name, "vtysh -c %s", "show ip ospf neighbor json") or {}
    out = {}
    for rid, entries in (data.get("neighbors") or {}).items():
        for e in entries if isinstance(entries, list) else [entries]:
            out.setdefault(rid, []).append(str(e.get("nbrState", e.get("state", "?"))))
    return out


def test_ospf_neighbour(host, check):
    """The OSPF adjacency with a planned WAN neighbour is Full."""
    p = check.params
    states = _neighbours(host, check.host).get(p["router_id"], [])
    support.expect(check, any(s.startswith("Full") for s in states),
                   f"neighbour {p['router_id']} {'/'.join(states)}" if states else f"no neighbour {p['router_id']}")


def test_routes(host, check):
    """The routing table holds a route to every other site's LAN (learned over OSPF)."""
    routes = support.json_output(host, check.host, "ip -j route show") or []
    have = set()
    for r in routes:
        try:
            have.add(str(ipaddress.ip_network(r.get("dst", ""), strict=False)))
        except ValueError:
            continue  # "default"
    missing = [p for p in check.params["prefixes"] if p not in have]
    support.expect(check, not missing, f"missing {len(missing)}: {', '.join(missing)}")
