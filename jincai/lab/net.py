"""Network namespaces, veth pairs and bridges of the lab.

Layout (see docs/lab.md):

* one network namespace per host, ``jlab-<host>``, holding that host's interfaces;
* one "switch" namespace, ``jlab-sw``, holding a bridge per multi-host segment (site LAN, metro,
  VPN access) and the management bridge ``mgmt`` whose host ports are ``isolated on``;
* WAN links are veth pairs created straight between the two routers' namespaces;
* the only object in the control node's own namespace is the veth ``jlab-mgmt`` (the control node's
  management address, 198.19.0.1/24 in the small lab), uplinked to the management bridge.

Every address from the inventory is assigned here, before the container boots, like a cabled and
numbered site. Deleting the namespaces (after the containers are stopped) removes every link.
"""

import concurrent.futures
import os
import subprocess

from jincai.lab.topology import NS_PREFIX, SWITCH_NS

HOST_LINK = "jlab-mgmt"
MGMT_BRIDGE = "mgmt"
MGMT_UPLINK = "mgmt-up"
NETNS_DIR = "/run/netns"


class NetError(RuntimeError):
    """An ip(8) command failed."""


def ip(*args, ns=None, check=True):
    """Run ``ip [-n ns] args...``; raise :class:`NetError` with its stderr on failure."""
    cmd = ["ip"] + (["-n", ns] if ns else []) + [str(a) for a in args]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and res.returncode != 0:
        raise NetError(f"`{' '.join(cmd)}` failed: {res.stderr.strip()}")
    return res


def sysctl(ns, **values):
    """Set sysctls inside network namespace ``ns`` (names with dots written as ``a__b`` -> ``a.b``)."""
    args = [f"{k.replace('__', '.')}={v}" for k, v in values.items()]
    res = subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w"] + args,
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise NetError(f"sysctl in {ns} failed: {res.stderr.strip()}")


def lab_namespaces():
    """Return the names of existing lab network namespaces (``jlab-*``)."""
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(NS_PREFIX))
    except FileNotFoundError:
        return []


def host_link_exists():
    """True when the control node's management veth exists."""
    return os.path.exists(f"/sys/class/net/{HOST_LINK}")


def batch(lines, ns=None, tool="ip"):
    """Run many ip(8)/bridge(8) commands in one process (``-batch``); raise NetError naming the line.

    One process per namespace instead of one per command: the province twin makes ~3,000 objects.
    """
    if not lines:
        return
    cmd = [tool] + (["-n", ns] if ns else []) + ["-batch", "-"]
    res = subprocess.run(cmd, input="\n".join(lines) + "\n", capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise NetError(f"`{' '.join(cmd)}` failed: {res.stderr.strip()}")


def _quote(text):
    return '"' + text.replace('"', "'") + '"'


def _sysctls(ns, forwards):
    # No IPv6 in the lab: nothing autoconfigures or solicits on lab links.
    values = {"net__ipv6__conf__all__disable_ipv6": 1, "net__ipv6__conf__default__disable_ipv6": 1}
    if forwards:
        values["net__ipv4__ip_forward"] = 1
    sysctl(ns, **values)


def new_namespace(name, forwards=False):
    """Create one lab namespace with lo up and IPv6 off (used by the blank county of the bootstrap
    proofs; :func:`build` makes the whole lab's in one batch)."""
    ip("netns", "add", name)
    ip("link", "set", "lo", "up", ns=name)
    _sysctls(name, forwards)


def build(plan, log=print):
    """Create namespaces, links, bridges and addresses for ``plan``. Returns the created namespaces.

    Hosts get their management port, data links, addresses, loopbacks and routes; stubs (unmanaged
    parties) a metro port, their address and a default route. Everything is batched per namespace.
    """
    members = [(h.name, h.netns, h.forwards) for h in plan.hosts.values()] + \
              [(s.name, s.netns, False) for s in plan.stubs.values()]
    created = [SWITCH_NS] + [ns for _, ns, _ in members]
    batch([f"netns add {ns}" for ns in created])
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda m: _sysctls(m[1], m[2]), [(None, SWITCH_NS, False)] + members))
    # Management: control node <-> switch namespace, then one isolated bridge port per host.
    sw = ["link set lo up", f"link add {MGMT_BRIDGE} type bridge",
          f"link add {MGMT_UPLINK} type veth peer name {HOST_LINK} netns {os.getpid()}",
          f"link set {MGMT_UPLINK} master {MGMT_BRIDGE} up", f"link set {MGMT_BRIDGE} up"]
    isolate = []
    for idx, host in enumerate(plan.hosts.values()):
        port = f"m{idx}"
        sw += [f"link add {port} type veth peer name {host.mgmt.name} netns {host.netns}",
               f"link set {port} alias {_quote('mgmt ' + host.name)} master {MGMT_BRIDGE} up"]
        isolate.append(f"link set dev {port} isolated on")
    for sidx, seg in enumerate(plan.segments.values()):
        if seg.point_to_point:
            (ha, ia), (hb, ib) = seg.members
            sw.append(f"link add {ia.name} netns {plan.netns(ha)} type veth peer name {ib.name} "
                      f"netns {plan.netns(hb)}")
            continue
        bridge = f"b{sidx}"
        sw += [f"link add {bridge} type bridge mcast_snooping 0", f"link set {bridge} alias {_quote(seg.id)} up"]
        for hidx, (hname, iface) in enumerate(seg.members):
            port = f"s{sidx}p{hidx}"
            sw += [f"link add {port} type veth peer name {iface.name} netns {plan.netns(hname)}",
                   f"link set {port} alias {_quote(f'{seg.id} {hname} {iface.name}')} master {bridge} up"]
    batch(sw, ns=SWITCH_NS)
    batch(isolate, ns=SWITCH_NS, tool="bridge")
    with open(f"/proc/sys/net/ipv6/conf/{HOST_LINK}/disable_ipv6", "w", encoding="ascii") as fh:
        fh.write("1")
    ip("addr", "add", plan.control.with_prefixlen, "dev", HOST_LINK)
    ip("link", "set", HOST_LINK, "up")

    def configure(item):
        ns, ifaces, loopbacks, routes = item
        lines = ["link set lo up"]
        for iface in ifaces:
            lines += [f"addr add {iface.address.with_prefixlen} dev {iface.name}", f"link set {iface.name} up"]
        lines += [f"addr add {lo.with_prefixlen} dev lo" for lo in loopbacks]
        lines += [f"route replace {dest} via {via}" for dest, via in routes]
        batch(lines, ns=ns)

    items = [(h.netns, [h.mgmt] + h.interfaces, h.loopbacks, h.routes) for h in plan.hosts.values()]
    items += [(s.netns, [s.iface], [], [("0.0.0.0/0", s.gateway)] if s.gateway else [])
              for s in plan.stubs.values()]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(configure, items))
    stubs = f", {len(plan.stubs)} party stubs" if plan.stubs else ""
    log(f"network: {len(created)} namespaces{stubs}, {len(plan.segments)} segments, "
        f"management {plan.control}")
    return created


def teardown(namespaces=None):
    """Delete the lab's namespaces (all ``jlab-*`` when ``namespaces`` is None) and the host link.

    Call only after the containers are stopped: a namespace still holding processes lives on.
    """
    names = set(lab_namespaces()) | set(namespaces or [])
    for name in sorted(names, key=lambda n: n == SWITCH_NS):  # switch last
        if os.path.exists(os.path.join(NETNS_DIR, name)):
            ip("netns", "delete", name, check=False)
    if host_link_exists():
        ip("link", "delete", HOST_LINK, check=False)
