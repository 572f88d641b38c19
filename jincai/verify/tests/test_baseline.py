"""Host state every managed host shares: services, listeners, addresses, routes, forwarding, time, logs,
file integrity and backups (the machine-room baseline, and the same checks on routers and VPN clients).

Each test judges one planned check (``check.params``, from jincai/verify/plan.py) with testinfra's
modules; a failure names the host, the check and expected vs found (jincai.verify.support.fail).
"""

import ipaddress
import time

from jincai.verify import support


def test_service(host, check):
    """A unit runs (when it must) and starts at boot: its host's planned units are read in one
    ``systemctl show`` (the states ``systemctl is-active`` / ``is-enabled`` report)."""
    p = check.params
    units = [c.params["unit"] for c in support.planned(check)]
    state = support.unit_states(host, check.host, units)[p["unit"]]
    running = state["active"] in support.RUNNING_STATES if p["running"] else True
    enabled = state["enabled"] in support.ENABLED_STATES if p["enabled"] else True
    if not (running and enabled):
        boot = "not installed" if state["load"] == "not-found" else (state["enabled"] or "unknown")
        support.fail(check, f"{state['active']}, {boot}")


def _sockets(host, name):
    """[(proto, address, port)] of every listening TCP/UDP socket (testinfra's socket module, once per host)."""
    key = (name, "listening sockets")
    if key not in support._memo:
        out = []
        for spec in host.socket.get_listening_sockets():
            proto, _, rest = spec.partition("://")
            if proto in ("tcp", "udp"):
                address, _, port = rest.rpartition(":")
                out.append((proto, address, int(port)))
        support._memo[key] = out
    return support._memo[key]


def _is_loopback(address):
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return address == "localhost"


def test_listener(host, check):
    """What the host serves listens: reachable (``bind: any``) or on loopback only."""
    p = check.params
    mine = [(a, port) for proto, a, port in _sockets(host, check.host) if proto == p["proto"] and port == p["port"]]
    outside = [a for a, _ in mine if not _is_loopback(a)]
    found = ("listening on " + ", ".join(sorted({a for a, _ in mine}))) if mine else "not listening"
    if p["bind"] == "loopback":
        support.expect(check, bool(mine) and not outside, found)
    else:
        support.expect(check, bool(outside), found)


def test_only_intended_listeners(host, check):
    """Nothing listens beyond loopback but what the host is intended to serve (the ports compliance allows)."""
    allowed = set(check.params["allowed"])
    extra = sorted({f"{proto}/{port} on {a}" for proto, a, port in _sockets(host, check.host)
                    if port not in allowed and not _is_loopback(a)})
    support.expect(check, not extra, ", ".join(extra))


def test_interface_address(host, check):
    """The interface exists, carries its planned address and has a link (carrier)."""
    p = check.params
    links = support.json_output(host, check.host, "ip -j addr show")  # every interface, once per host
    if links is None:
        support.fail(check, "`ip -j addr show` gave no JSON")
    iface = next((i for i in links if i.get("ifname") == p["name"]), None)
    if iface is None:
        support.fail(check, f"no interface {p['name']}")
    addresses = [a["local"] for a in iface.get("addr_info") or [] if a.get("local")]
    flags = iface.get("flags") or []
    support.expect(check, p["address"] in addresses and "LOWER_UP" in flags,
                   f"{', '.join(addresses) or 'no address'} on {p['name']}, flags {','.join(flags)}")


def test_route(host, check):
    """A route the plan gives the host (default via the site router; a router's static routes)."""
    p = check.params
    routes = support.json_output(host, check.host, "ip -j route show %s", p["to"]) or []
    gateways = sorted({r.get("gateway") or r.get("dev", "?") for r in routes})
    support.expect(check, p["via"] in gateways, f"{p['to']} via {', '.join(gateways)}" if gateways else "no route")


def test_sysctl(host, check):
    """A kernel setting the host's function needs (forwarding on routers and VPN concentrators)."""
    p = check.params
    value = host.sysctl(p["key"])
    support.expect(check, value == p["value"], f"{p['key']} = {value}")


def test_ntp_source(host, check):
    """chrony follows the first source of the host's NTP chain (the time server: keeps time itself)."""
    p = check.params
    sources = host.run("chronyc -n sources").stdout
    selected = [line.split()[1] for line in sources.splitlines() if line.startswith("^*") and len(line.split()) > 1]
    if p["source"]:
        support.expect(check, selected == [p["source"]],
                       f"synchronised to {', '.join(selected)}" if selected else "no selected source: "
                       + (" | ".join(line for line in sources.splitlines() if line.startswith("^")) or "none"))
        return
    tracking = host.run("chronyc -n tracking").stdout
    leap = next((line.split(":", 1)[1].strip() for line in tracking.splitlines() if line.startswith("Leap status")),
                "unknown")
    support.expect(check, leap != "Not synchronised" and leap != "unknown", f"leap status {leap}")


def test_log_forwarding(host, check):
    """rsyslog holds its TCP connection to the province collector (messages are flowing)."""
    p = check.params
    want = f"{p['collector']}:{p['port']}"
    if not support.unit_running(host, check.host, "rsyslog"):
        support.fail(check, "rsyslog not running")
    for _attempt in range(3):  # the connection opens with the first message after a restart
        peers = [line.split()[-1] for line in host.run("ss -Htn state established").stdout.splitlines() if line.split()]
        if want in peers:
            return
        time.sleep(1)
    support.fail(check, f"no established connection to {want} (rsyslog queue: /var/spool/rsyslog)")


def test_file_present(host, check):
    """One of the files exists (the AIDE database)."""
    present = [path for path in check.params["paths"] if host.file(path).exists]
    support.expect(check, bool(present), "none of " + ", ".join(check.params["paths"]))


def test_backup(host, check):
    """Once the daily backup timer has run, it succeeded and its newest archive is recent."""
    p = check.params
    show = host.run("systemctl show -p Result -p ExecMainStartTimestamp jincai-backup.service").stdout
    props = dict(line.split("=", 1) for line in show.splitlines() if "=" in line)
    if not props.get("ExecMainStartTimestamp"):
        support.expect(check, support.unit_running(host, check.host, "jincai-backup.timer"),
                       "the backup timer is not active (and never ran)")
        return
    archives = [n for n in host.run("ls -1t %s", p["dir"]).stdout.split() if n.startswith(p["archive_prefix"])
                and n.endswith(".tar.gz")]
    if props.get("Result") != "success":
        support.fail(check, f"the last backup run ended with {props.get('Result')}")
    if not archives:
        support.fail(check, f"no archive in {p['dir']}")
    mtime = host.file(f"{p['dir']}/{archives[0]}").mtime.timestamp()
    age_h = (float(host.check_output("date +%s")) - mtime) / 3600
    support.expect(check, age_h <= p["max_age_h"], f"newest {archives[0]} is {age_h:.0f} h old")
