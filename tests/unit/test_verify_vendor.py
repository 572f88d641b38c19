"""``jincai verify`` on vendor routers (issue 19): Huawei VRP, VRP V8, H3C Comware, Cisco IOS, no lab needed.

The parsers (jincai/verify/vendor.py) first meet the vendors' documented output; then
jincai.lab.vendorsim.fleet.VerifyFleet puts one simulated router per platform on loopback as
production's own router (a copy of inventories/jilin whose four routers' connection points at the
simulators; each holds the config jincai renders for it and an OSPF/route state seeded from the host
vars) and the real ``jincai verify`` (pytest, xdist, JUnit, summary) checks them: every check passes;
after a set of breakages (neighbour down, route missing, interface down, ACL removed, NTP lost) exactly
the matching checks fail, each message naming host, check, expected and found; and the routers'
configuration is the same before and after every run, no line entering configuration mode.
"""

import os
import re

import pytest

from jincai.lab.vendorsim import fleet as fleet_mod
from jincai.verify import main as verify_main
from jincai.verify import plan, report, vendor

# --------------------------------------------------------------------------- parsers on documented output

HUAWEI_PEERS = """
          OSPF Process 1 with Router ID 1.1.1.1
                  Peer Statistic Information
 ----------------------------------------------------------------------------
 Area Id          Interface                        Neighbor id      State
 0.0.0.0          GigabitEthernet0/0/1             2.2.2.2          Full
 0.0.0.1          GigabitEthernet0/0/2             3.3.3.3          ExStart
 ----------------------------------------------------------------------------
 Total Peer(s):     2
"""
H3C_PEERS = """
         OSPF Process 1 with Router ID 1.1.1.1
               Neighbor Brief Information

 Area: 0.0.0.0
 Router ID       Address         Pri Dead-Time  State             Interface
 1.1.1.2         1.1.1.2         1   40         Full/DR           GE1/0/1
 1.1.1.3         1.1.2.3         1   37         Full/ -           GE1/0/2
"""
IOS_PEERS = """
Neighbor ID     Pri   State           Dead Time   Address         Interface
10.199.199.137    1   FULL/DR         0:00:31     192.168.80.37   Ethernet0
172.16.48.1       0   FULL/  -        00:00:33    172.16.48.1     GigabitEthernet0/1
172.16.48.200     1   INIT/DROTHER    0:00:33     172.16.48.200   Fddi0
"""
HUAWEI_ROUTES = """Route Flags: R - relay, D - download to fib
------------------------------------------------------------------------------
Routing Tables: Public
         Destinations : 4        Routes : 5

Destination/Mask    Proto   Pre  Cost      Flags NextHop         Interface

        0.0.0.0/0   Static  60   0          RD   10.1.1.2        GigabitEthernet0/0/1
       10.1.1.0/24  Direct  0    0           D   10.1.1.1        GigabitEthernet0/0/1
       10.9.0.0/16  OSPF    10   2           D   10.1.1.2        GigabitEthernet0/0/1
                    OSPF    10   2           D   10.1.2.2        GigabitEthernet0/0/2
      127.0.0.0/8   Direct  0    0           D   127.0.0.1       InLoopBack0
"""
H3C_ROUTES = """
Destinations : 3        Routes : 3

Destination/Mask   Proto   Pre Cost        NextHop         Interface
0.0.0.0/32         Direct  0   0           127.0.0.1       InLoop0
1.1.1.0/24         Static  60  0           192.168.47.2    GE1/0/1
10.2.0.0/24        O_INTRA 10  2           10.1.1.2        GE1/0/2
"""
IOS_ROUTES = """Codes: L - local, C - connected, S - static, R - RIP, M - mobile, B - BGP
       D - EIGRP, EX - EIGRP external, O - OSPF, IA - OSPF inter area

Gateway of last resort is 10.1.1.2 to network 0.0.0.0

S*    0.0.0.0/0 [1/0] via 10.1.1.2
      10.0.0.0/8 is variably subnetted, 4 subnets, 3 masks
C        10.1.1.0/30 is directly connected, GigabitEthernet0/1
L        10.1.1.1/32 is directly connected, GigabitEthernet0/1
O IA     10.2.0.0/24 [110/20] via 10.1.1.2, 00:10:12, GigabitEthernet0/1
                     [110/20] via 10.1.2.2, 00:10:12, GigabitEthernet0/2
S        10.9.0.0/16 [1/0] via 10.1.1.2
      172.16.0.0/24 is subnetted, 1 subnets
O        172.16.1.0 [110/2] via 10.1.1.2, 00:01:02, GigabitEthernet0/1
"""
HUAWEI_IFACES = """*down: administratively down
(s): spoofing
Interface                         IP Address/Mask      Physical   Protocol
GigabitEthernet0/0/1              10.1.1.1/24          up         up
GigabitEthernet0/0/2              10.1.2.1/24          *down      down
NULL0                             unassigned           up         up(s)
"""
H3C_IFACES = """*down: administratively down
(s): spoofing  (l): loopback
Interface                Physical Protocol IP address      VPN instance Description
GE1/0/1                  up       up       10.1.1.1        --           uplink
GE1/0/2                  down     down     10.1.2.1        --           --
Loop0                    up       up(s)    1.1.1.1         --           --
"""
IOS_IFACES = """Interface              IP-Address      OK? Method Status                Protocol
GigabitEthernet0/1     10.1.1.1        YES NVRAM  up                    up
GigabitEthernet0/2     10.1.2.1        YES NVRAM  administratively down down
GigabitEthernet0/3     unassigned      YES NVRAM  down                  down
"""


def test_ospf_peer_parsers_read_the_documented_tables():
    assert vendor.parse_ospf_peers("huawei_vrp", HUAWEI_PEERS) == [
        {"router_id": "2.2.2.2", "interface": "GigabitEthernet0/0/1", "state": "Full"},
        {"router_id": "3.3.3.3", "interface": "GigabitEthernet0/0/2", "state": "ExStart"}]
    assert [(p["router_id"], p["state"], p["interface"]) for p in vendor.parse_ospf_peers("h3c_comware", H3C_PEERS)] \
        == [("1.1.1.2", "Full/DR", "GE1/0/1"), ("1.1.1.3", "Full/-", "GE1/0/2")]
    assert [(p["router_id"], p["state"], p["interface"]) for p in vendor.parse_ospf_peers("cisco_ios", IOS_PEERS)] \
        == [("10.199.199.137", "FULL/DR", "Ethernet0"), ("172.16.48.1", "FULL/-", "GigabitEthernet0/1"),
            ("172.16.48.200", "INIT/DROTHER", "Fddi0")]


def test_route_parsers_read_the_documented_tables_with_equal_cost_paths_and_classful_masks():
    hw = vendor.parse_routes("huawei_vrp", HUAWEI_ROUTES)
    assert sorted(hw) == ["0.0.0.0/0", "10.1.1.0/24", "10.9.0.0/16", "127.0.0.0/8"]
    assert [p["via"] for p in hw["10.9.0.0/16"]] == ["10.1.1.2", "10.1.2.2"]
    h3c = vendor.parse_routes("h3c_comware", H3C_ROUTES)
    assert h3c["10.2.0.0/24"] == [{"proto": "O_INTRA", "via": "10.1.1.2", "interface": "GE1/0/2"}]
    ios = vendor.parse_routes("cisco_ios", IOS_ROUTES)
    assert sorted(ios) == ["0.0.0.0/0", "10.1.1.0/30", "10.1.1.1/32", "10.2.0.0/24", "10.9.0.0/16", "172.16.1.0/24"]
    assert [p["via"] for p in ios["10.2.0.0/24"]] == ["10.1.1.2", "10.1.2.2"]
    assert ios["10.9.0.0/16"][0]["via"] == "10.1.1.2" and ios["10.1.1.0/30"][0]["interface"] == "GigabitEthernet0/1"


def test_interface_and_ntp_parsers_and_interface_names():
    hw = vendor.parse_interfaces("huawei_vrp", HUAWEI_IFACES)
    assert hw["ge0/0/1"]["address"] == "10.1.1.1" and hw["ge0/0/2"]["physical"] == "*down" and "null0" not in hw
    h3c = vendor.parse_interfaces("h3c_comware", H3C_IFACES)
    assert h3c[vendor.canonical_ifname("GigabitEthernet1/0/2")]["physical"] == "down"
    assert h3c[vendor.canonical_ifname("LoopBack0")]["address"] == "1.1.1.1"
    ios = vendor.parse_interfaces("cisco_ios", IOS_IFACES)
    assert ios["ge0/2"]["physical"] == "administratively down" and "ge0/3" not in ios
    assert vendor.parse_ntp_status("huawei_vrp", " clock status: synchronized\n clock stratum: 4\n reference clock "
                                   "ID: 10.0.0.11\n") == {"synchronised": True, "reference": "10.0.0.11"}
    assert vendor.parse_ntp_status("huawei_vrp", " clock status: unsynchronized\n reference clock ID: none\n") \
        == {"synchronised": False, "reference": ""}
    assert vendor.parse_ntp_status("h3c_comware", " Clock status: synchronized\n Clock stratum: 2\n System peer: "
                                   "10.0.0.11\n")["reference"] == "10.0.0.11"
    assert vendor.parse_ntp_status("cisco_ios", "Clock is synchronized, stratum 4, reference is 10.0.0.11\n") \
        == {"synchronised": True, "reference": "10.0.0.11"}
    assert vendor.parse_ntp_status("cisco_ios", "Clock is unsynchronized, stratum 16, no reference clock\n") \
        == {"synchronised": False, "reference": ""}


def test_the_session_sends_only_show_and_display_commands():
    s = vendor.RouterSession({"platform": "huawei_vrp", "host": "127.0.0.1", "port": 1, "user": "x", "key_file": None,
                              "known_hosts": None, "timeout": 1})
    for bad in ("system-view", "configure terminal", "undo info-center loghost 1.2.3.4", "display x; system-view",
                "save"):
        with pytest.raises(ValueError):
            s.output(bad)
    assert s.device is None and not s.sent  # refused before any connection


# --------------------------------------------------------------------------- the fleet, verified for real

#: netmiko's own session preparation and logout on these platforms (terminal settings, nothing stored).
NETMIKO_SESSION = {"", "screen-length 0 temporary", "screen-length disable", "terminal length 0",
                   "terminal width 511", "quit", "exit", "logout"}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    f = fleet_mod.VerifyFleet(str(tmp_path_factory.mktemp("verify-fleet")))
    f.start()
    yield f
    f.stop()


def _snapshot(fleet):
    return {n: (fleet.device(n).render(fleet.device(n).running), fleet.device(n).render(fleet.device(n).startup))
            for n in fleet.servers}


def _verify(fleet, out_dir, jobs):
    """The real ``jincai verify`` on the four routers (``jobs`` pytest-xdist workers; 1: none); returns
    (exit code, results, the lines typed on each router)."""
    marks = {n: len(fleet.device(n).history) for n in fleet.servers}
    before = _snapshot(fleet)
    rc = verify_main(["-i", fleet.inventory, "-l", fleet.limit, "-o", str(out_dir), "-j", str(jobs), "-q"])
    typed = {n: fleet.device(n).history[marks[n]:] for n in fleet.servers}
    assert _snapshot(fleet) == before, "jincai verify changed a router's configuration"
    for name, lines in typed.items():
        assert lines, f"{name}: not contacted"
        for _login, mode, line in lines:
            assert mode == "exec" and (vendor.READ_ONLY.match(line) or line in NETMIKO_SESSION), (name, mode, line)
        assert fleet.device(name).dialect.enter_config not in [ln for _s, _m, ln in lines]
    return rc, report.parse_junit(os.path.join(out_dir, "junit.xml")), typed


def test_the_connection_of_every_router_in_scope_is_its_simulator_on_loopback(fleet):
    net = plan.Network(fleet.inventory)
    assert plan.resolve_scope(net, fleet.limit) == sorted(fleet.servers)
    for name, server in fleet.servers.items():
        c = vendor.connection(net, name)
        assert (c["host"], c["port"], c["known_hosts"]) == ("127.0.0.1", server.port, fleet.known_hosts), c


def test_verify_passes_on_the_four_platforms_then_fails_exactly_the_broken_checks(fleet, tmp_path):
    net = plan.Network(fleet.inventory)
    planned = {n: {c.id for c in plan.checks_for(net, n)} for n in fleet.servers}
    rc, results, typed = _verify(fleet, tmp_path / "pass", jobs=2)  # in parallel: a router's checks on one worker
    failed = [r["message"] for r in results if r["outcome"] != "passed"]
    assert rc == 0 and not failed, failed[:5]
    assert {n: {r["check"] for r in results if r["host"] == n} for n in fleet.servers} == planned
    assert {r["test"] for r in results} >= {"test_vendor_interface", "test_vendor_ospf_neighbour", "test_vendor_routes",
                                            "test_vendor_acl", "test_vendor_ntp", "test_vendor_syslog"}
    for name, lines in typed.items():  # one session per router, each query read once
        assert len({login for login, _m, _l in lines}) == 1, (name, lines)
        queries = [ln for _s, _m, ln in lines if vendor.READ_ONLY.match(ln)]
        assert len(queries) == len(set(queries)), (name, queries)

    vrp, v8, h3c, ios = (fleet.routers[p] for p in fleet_mod.VENDOR_PLATFORMS)
    hv = fleet.hostvars
    uplink = next(i for i in hv[vrp]["jincai_router"]["interfaces"] if i["role"] == "uplink")
    fleet.device(vrp).drop_peer(hv[uplink["peer"]]["jincai_router"]["router_id"])
    lan_v8 = next(p for c in plan.checks_for(net, v8) if c.id == "routes.site_lans" for p in c.params["prefixes"])
    fleet.device(v8).remove_route(lan_v8)
    fleet.device(v8).ntp_unsynchronise()
    lan_if = next(i["name"] for i in hv[h3c]["jincai_interfaces"] if i["role"] == "lan")
    fleet.device(h3c).link_down(lan_if)
    acl = vendor.CLIS["cisco_ios"].mgmt_acl
    dev = fleet.device(ios)
    with dev.lock:
        dev.running[:] = [n for n in dev.running if n[0] != acl]
        dev.changed()
    expected = {vrp: {f"ospf.neighbour.{uplink['peer']}", "routes.site_lans"},  # its routes went with the neighbour
                v8: {"routes.site_lans", "ntp.source"}, h3c: {f"interface.{lan_if}"}, ios: {"acl.management"}}

    rc, results, _typed = _verify(fleet, tmp_path / "broken", jobs=1)  # no xdist: the CI budget
    assert rc == 1
    bad = {}
    for r in results:
        if r["outcome"] != "passed":
            bad.setdefault(r["host"], {})[r["check"]] = r["message"]
    assert {n: set(v) for n, v in bad.items()} == expected
    for host, checks in bad.items():
        for check, message in checks.items():
            assert re.match(rf"^{re.escape(host)}: {re.escape(check)} \(.+\): expected .+, found .+", message), message
    assert f"missing 1: {lan_v8}" in bad[v8]["routes.site_lans"]
    assert "clock unsynchronised" in bad[v8]["ntp.source"]
    assert f"on {lan_if}" in bad[h3c][f"interface.{lan_if}"] or "down" in bad[h3c][f"interface.{lan_if}"]
    assert f"no {acl}" in bad[ios]["acl.management"]
    assert f"no neighbour {hv[uplink['peer']]['jincai_router']['router_id']}" in \
        bad[vrp][f"ospf.neighbour.{uplink['peer']}"]
