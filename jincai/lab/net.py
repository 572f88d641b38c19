"""Network namespaces, veth pairs and bridges of the lab.

Layout (see docs/lab.md):

* one network namespace per host, ``jlab-<host>``, holding that host's interfaces;
* one "switch" namespace, ``jlab-sw``, holding a bridge per multi-host segment (site LAN, metro,
  VPN access) and the management bridge ``mgmt`` whose host ports are ``isolated on``;
* WAN links are veth pairs created straight between the two routers' namespaces;
* the only object in the control node's own namespace is the veth ``jlab-mgmt`` (198.19.0.1/24),
  uplinked to the management bridge.

Every address from the inventory is assigned here, before the container boots, like a cabled and
numbered site. Deleting the namespaces (after the containers are stopped) removes every link.
"""

import os
import subprocess

from jincai.lab.topology import CONTROL_ADDRESS, NS_PREFIX, SWITCH_NS

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


def _new_ns(name):
    ip("netns", "add", name)
    ip("link", "set", "lo", "up", ns=name)
    # No IPv6 in the lab: nothing autoconfigures or solicits on lab links.
    sysctl(name, net__ipv6__conf__all__disable_ipv6=1, net__ipv6__conf__default__disable_ipv6=1)


def build(plan, log=print):
    """Create namespaces, links, bridges and addresses for ``plan``. Returns the created namespaces."""
    created = []
    _new_ns(SWITCH_NS)
    created.append(SWITCH_NS)
    # Management: control node <-> switch namespace, then one isolated bridge port per host.
    ip("link", "add", MGMT_BRIDGE, "type", "bridge", ns=SWITCH_NS)
    ip("link", "add", MGMT_UPLINK, "type", "veth", "peer", "name", HOST_LINK, "netns", str(os.getpid()), ns=SWITCH_NS)
    ip("link", "set", MGMT_UPLINK, "master", MGMT_BRIDGE, "up", ns=SWITCH_NS)
    ip("link", "set", MGMT_BRIDGE, "up", ns=SWITCH_NS)
    with open(f"/proc/sys/net/ipv6/conf/{HOST_LINK}/disable_ipv6", "w", encoding="ascii") as fh:
        fh.write("1")
    ip("addr", "add", CONTROL_ADDRESS.with_prefixlen, "dev", HOST_LINK)
    ip("link", "set", HOST_LINK, "up")

    for idx, host in enumerate(plan.hosts.values()):
        _new_ns(host.netns)
        created.append(host.netns)
        port = f"m{idx}"
        ip("link", "add", port, "type", "veth", "peer", "name", host.mgmt.name, "netns", host.netns,
           ns=SWITCH_NS)
        ip("link", "set", port, "alias", f"mgmt {host.name}", "master", MGMT_BRIDGE, ns=SWITCH_NS)
        subprocess.run(["bridge", "-n", SWITCH_NS, "link", "set", "dev", port, "isolated", "on"], check=True)
        ip("link", "set", port, "up", ns=SWITCH_NS)

    for sidx, seg in enumerate(plan.segments.values()):
        if seg.point_to_point:
            (ha, ia), (hb, ib) = seg.members
            ip("link", "add", ia.name, "netns", plan.hosts[ha].netns, "type", "veth",
               "peer", "name", ib.name, "netns", plan.hosts[hb].netns, ns=SWITCH_NS)
            continue
        bridge = f"b{sidx}"
        ip("link", "add", bridge, "type", "bridge", "mcast_snooping", "0", ns=SWITCH_NS)
        ip("link", "set", bridge, "alias", seg.id, "up", ns=SWITCH_NS)
        for hidx, (hname, iface) in enumerate(seg.members):
            port = f"s{sidx}p{hidx}"
            ip("link", "add", port, "type", "veth", "peer", "name", iface.name,
               "netns", plan.hosts[hname].netns, ns=SWITCH_NS)
            ip("link", "set", port, "alias", f"{seg.id} {hname} {iface.name}", "master", bridge, "up",
               ns=SWITCH_NS)

    for host in plan.hosts.values():
        for iface in [host.mgmt] + host.interfaces:
            ip("addr", "add", iface.address.with_prefixlen, "dev", iface.name, ns=host.netns)
            ip("link", "set", iface.name, "up", ns=host.netns)
        for lo in host.loopbacks:
            ip("addr", "add", lo.with_prefixlen, "dev", "lo", ns=host.netns)
        for dest, via in host.routes:
            ip("route", "replace", str(dest), "via", str(via), ns=host.netns)
        if host.forwards:
            sysctl(host.netns, net__ipv4__ip_forward=1)
    log(f"network: {len(created)} namespaces, {len(plan.segments)} segments, management {CONTROL_ADDRESS}")
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
