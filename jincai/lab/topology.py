"""The lab topology, derived from the typed model of the source of truth (:mod:`jincai.source.model`).

Pure code, no side effects: :func:`plan` turns the model (:func:`load`: the one the Ansible inventory
plugin serialises into host vars) into a :class:`Plan` (hosts, their interfaces and routes, and
segments) or raises :class:`TopologyError` with a one-line message that names the inventory, the
host's site and the host variable at fault. Nothing is created before this passes.

Segments: every interface's segment id (``jincai_interfaces[].segment``) is one layer-2 segment. A WAN link (two members,
roles ``uplink``/``downlink``) becomes a veth pair between the two hosts' namespaces; any other
segment (site LAN, metro, VPN access) becomes a bridge in the lab's switch namespace. The ``mgmt`` role is special: one bridge whose host ports are
isolated (hosts cannot reach each other through it), uplinked to the control node.
"""

import ipaddress
import json
import os
import re
from dataclasses import dataclass, field

#: Every lab address must lie in the range reserved for network benchmark testing.
LAB_RANGE = ipaddress.ip_network("198.18.0.0/15")
#: The out-of-band management network and the control node's address on it, unless the inventory
#: says otherwise (``jincai_lab.control_node``; the province twin uses 198.19.0.0/16): any management
#: network must lie inside MGMT_RANGE.
MGMT_NETWORK = ipaddress.ip_network("198.19.0.0/24")
CONTROL_ADDRESS = ipaddress.ip_interface("198.19.0.1/24")
MGMT_RANGE = ipaddress.ip_network("198.19.0.0/16")
#: Names of the lab's own network namespaces: ``jlab-<host>``; the switch namespace is ``jlab-sw``.
NS_PREFIX = "jlab-"
SWITCH_NS = "jlab-sw"
HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
RESERVED_HOSTS = {"sw"}
WAN_ROLES = {"uplink", "downlink"}  # would clash with the switch namespace name


class TopologyError(ValueError):
    """A lab topology that cannot be built; the message is one line naming file, site and field."""


@dataclass
class Interface:
    """One addressed interface of a lab host."""

    name: str
    role: str
    address: ipaddress.IPv4Interface
    segment: str
    peer: str | None = None


@dataclass
class Host:
    """One lab host (one systemd-nspawn container in its own network namespace)."""

    name: str
    site: str
    functions: list
    mgmt: Interface
    interfaces: list = field(default_factory=list)
    routes: list = field(default_factory=list)  # [(destination network, gateway address)]
    loopbacks: list = field(default_factory=list)  # addresses put on lo (router loopbacks)
    technicians: list = field(default_factory=list)

    @property
    def is_router(self):
        """True for routers (they boot with FRR and forward packets)."""
        return "router" in self.functions

    @property
    def forwards(self):
        """True for hosts that forward packets: routers and VPN concentrators (units' traffic)."""
        return self.is_router or "vpn_concentrator" in self.functions

    @property
    def netns(self):
        """Name of the host's network namespace."""
        return NS_PREFIX + self.name


@dataclass
class Stub:
    """An unmanaged external party: a bare network namespace (no container, no SSH) on its site's
    metro segment, with its address and a default route via the metro gateway. Enough to open (or
    be refused) the flows the party is declared for; nothing runs inside but what a test starts."""

    name: str
    site: str
    kind: str
    iface: Interface
    gateway: ipaddress.IPv4Address | None

    @property
    def netns(self):
        """Name of the party's network namespace."""
        return NS_PREFIX + self.name


@dataclass
class Segment:
    """A layer-2 segment: the interfaces (host, interface) attached to it."""

    id: str
    members: list = field(default_factory=list)  # [(host name, Interface)]

    @property
    def point_to_point(self):
        """True for a WAN link (two routers, uplink/downlink): a plain veth pair, no bridge."""
        return len(self.members) == 2 and all(i.role in WAN_ROLES for _, i in self.members)


@dataclass
class Plan:
    """Everything the lab builds, in a deterministic order."""

    source: str
    hosts: dict  # name -> Host, sorted by name
    segments: dict  # id -> Segment (mgmt excluded), sorted by id
    technicians: list  # [(user, key_file or None)]
    stubs: dict = field(default_factory=dict)  # name -> Stub (unmanaged parties), sorted by name
    control: ipaddress.IPv4Interface = CONTROL_ADDRESS

    @property
    def mgmt_network(self):
        """The management network (the control node's subnet)."""
        return self.control.network

    def netns(self, name):
        """The namespace of a host or stub."""
        return NS_PREFIX + name

    def fingerprint(self):
        """Return a stable string describing the topology (a change means the lab must be rebuilt)."""
        data = {n: [h.mgmt.address.with_prefixlen, h.functions,
                    [(i.name, i.address.with_prefixlen, i.segment) for i in h.interfaces],
                    [(str(d), str(g)) for d, g in h.routes], [str(a) for a in h.loopbacks]]
                for n, h in self.hosts.items()}
        if self.stubs:
            data["_stubs"] = {n: [s.iface.address.with_prefixlen, s.iface.segment, str(s.gateway)]
                              for n, s in self.stubs.items()}
        if self.control != CONTROL_ADDRESS:
            data["_control"] = self.control.with_prefixlen
        return json.dumps(data, sort_keys=True)


def load(inventory):
    """The validated typed model (:class:`jincai.source.model.Model`) of the inventory directory
    ``inventory``: :func:`jincai.source.inventory.build_checked`, the model the Ansible inventory plugin
    serialises (an invalid source raises :class:`jincai.source.inventory.InvalidSource`)."""
    if not os.path.isdir(inventory):
        hint = " (the lab is built from a source of truth, not from inventory JSON)" if os.path.isfile(inventory) else ""
        raise TopologyError(f"{inventory}: no such inventory directory{hint}")
    from jincai.source import inventory as invmod

    return invmod.build_checked(inventory)[0]


def _where(source, host):
    return f"{source}: site {host.site}, host {host.name}"


def _iface(where, idx, raw):
    """The lab :class:`Interface` of one model interface, checked (usable name, lab address with a prefix)."""
    where = f"{where}: jincai_interfaces[{idx}]"
    ifname = str(raw.name)
    if not IFNAME_RE.match(ifname) or ifname == "lo":
        raise TopologyError(f"{where}.name: {ifname!r} is not a usable interface name (1-15 chars, not lo)")
    try:
        addr = ipaddress.ip_interface(str(raw.address))
    except ValueError as exc:
        raise TopologyError(f"{where}.address: {raw.address!r} is not an address/prefix ({exc})") from exc
    if "/" not in str(raw.address):
        raise TopologyError(f"{where}.address: {raw.address!r} needs a prefix length (CIDR)")
    if addr.version != 4 or addr.ip not in LAB_RANGE:
        raise TopologyError(f"{where}.address: {addr} is outside the lab range {LAB_RANGE} "
                            "(the lab never uses production addresses)")
    return Interface(name=ifname, role=raw.role, address=addr, segment=raw.segment, peer=raw.peer or None)


def _route(where, idx, raw):
    """``(destination network, gateway)`` of one model route ``{to, via}`` (``to: default``: 0.0.0.0/0)."""
    where = f"{where}: jincai_routes[{idx}]"
    dest = "0.0.0.0/0" if raw["to"] == "default" else raw["to"]
    try:
        dest_net = ipaddress.ip_network(str(dest))
        via_ip = ipaddress.ip_address(str(raw["via"]))
    except ValueError as exc:
        raise TopologyError(f"{where}: bad destination or gateway ({exc})") from exc
    if via_ip not in LAB_RANGE:
        raise TopologyError(f"{where}.via: {via_ip} is outside the lab range {LAB_RANGE}")
    return dest_net, via_ip


def _mgmt(where, h, ifaces, control):
    """The host's management interface: its ``mgmt`` interface, else one on the control node's
    network with the host's management address."""
    mgmt = [i for i in ifaces if i.role == "mgmt"]
    if len(mgmt) > 1:
        raise TopologyError(f"{where}: jincai_interfaces: more than one interface with role mgmt")
    if mgmt:
        mgmt_if = mgmt[0]
    else:
        if not h.mgmt:
            raise TopologyError(f"{where}: jincai_mgmt_address: missing (no mgmt interface either)")
        try:
            addr = ipaddress.ip_interface(str(h.mgmt).split("/")[0] + f"/{control.network.prefixlen}")
        except ValueError as exc:
            raise TopologyError(f"{where}: jincai_mgmt_address: {h.mgmt!r} ({exc})") from exc
        mgmt_if = Interface(name="eth0" if "eth0" not in [i.name for i in ifaces] else "mgmt0", role="mgmt",
                            address=addr, segment="mgmt")
    if mgmt_if.address.network != control.network or mgmt_if.address.ip == control.ip:
        raise TopologyError(f"{where}: jincai_mgmt_address: {mgmt_if.address} must be a host address in "
                            f"{control.network} other than the control node {control.ip}")
    return mgmt_if


def _loopbacks(where, m, h):
    """A router's loopback (on ``lo``, /32); nothing for other hosts."""
    loopback = m.sites[h.site].loopback if "router" in h.functions else None
    if not loopback:
        return []
    try:
        lo = ipaddress.ip_interface(str(loopback).split("/")[0] + "/32")
    except ValueError as exc:
        raise TopologyError(f"{where}: jincai_router.loopback: {loopback!r} ({exc})") from exc
    if lo.ip not in LAB_RANGE:
        raise TopologyError(f"{where}: jincai_router.loopback: {lo.ip} is outside the lab range {LAB_RANGE}")
    return [lo]


def plan(m, source="inventory", without_mgmt=()):
    """Check the typed model ``m`` (:func:`load`) for the lab and return its :class:`Plan`.

    ``without_mgmt`` names hosts planned with no port on the out-of-band management network (an in-band
    site attached by jincai/lab/blank.py: the control node reaches it over the WAN); their ``mgmt`` is None."""
    if isinstance(m, dict):
        raise TopologyError(f"{source}: an inventory dict is not a model (pass topology.load(INVENTORY_DIR))")
    if not m.hosts:
        raise TopologyError(f"{source}: the model has no hosts (nothing to build)")
    hosts, seen_lower, addresses, where_of = {}, {}, {}, {}
    technicians = {}
    control = _control(source, m)
    for h in sorted(m.hosts.values(), key=lambda h: h.name):
        name = h.name
        where = where_of[name] = _where(source, h)
        if not HOSTNAME_RE.match(name) or name in RESERVED_HOSTS:
            raise TopologyError(f"{where}: host name {name!r} is not usable as a lab machine name "
                                "(lower-case letters, digits, '-'; not 'sw')")
        if name.lower() in seen_lower:
            raise TopologyError(f"{where}: host name clashes with {seen_lower[name.lower()]!r}")
        seen_lower[name.lower()] = name
        ifaces = [_iface(where, i, r) for i, r in enumerate(h.interfaces)]
        names = [i.name for i in ifaces]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise TopologyError(f"{where}: jincai_interfaces: interface name(s) used twice: {sorted(dup)}")
        mgmt_if = None if name in without_mgmt else _mgmt(where, h, ifaces, control)
        for i in ifaces:
            other = addresses.get(i.address.ip)
            if other:
                raise TopologyError(f"{where}: jincai_interfaces: address {i.address.ip} is also on {other}")
            addresses[i.address.ip] = f"{name} {i.name}"
        routes = [_route(where, i, r) for i, r in enumerate(h.routes or [])]
        for tech in m.technicians(h) + m.admins:
            if tech.get("user") and tech.get("key_file"):
                technicians[str(tech["user"])] = str(tech["key_file"])
        hosts[name] = Host(name=name, site=h.site, functions=list(h.functions), mgmt=mgmt_if,
                           interfaces=[i for i in ifaces if i.role != "mgmt"], routes=routes,
                           loopbacks=_loopbacks(where, m, h))

    segments = {}
    for name, host in hosts.items():
        for iface in host.interfaces:
            if iface.segment == "mgmt":
                raise TopologyError(f"{where_of[name]}: jincai_interfaces "
                                    f"{iface.name}: segment 'mgmt' is reserved for role mgmt")
            segments.setdefault(iface.segment, Segment(iface.segment)).members.append((name, iface))
    for seg in segments.values():
        member_hosts = [h for h, _ in seg.members]
        for hname, iface in seg.members:
            where = f"{where_of[hname]}: jincai_interfaces {iface.name}"
            if member_hosts.count(hname) > 1:
                raise TopologyError(f"{where}: host has two interfaces on segment {seg.id!r}")
            if iface.peer is None:
                continue
            if iface.peer not in hosts:
                raise TopologyError(f"{where}.peer: unknown host {iface.peer!r} (segment {seg.id!r})")
            if iface.peer not in member_hosts:
                raise TopologyError(f"{where}.peer: {iface.peer!r} has no interface on segment {seg.id!r}")
        nets = {i.address.network for _, i in seg.members}
        if len(nets) > 1:
            raise TopologyError(f"{where_of[seg.members[0][0]]}: segment {seg.id!r}: members are "
                                f"in different subnets {sorted(map(str, nets))}")
    stubs = _stubs(source, m, hosts, addresses)
    for stub in stubs.values():
        seg = segments.get(stub.iface.segment)
        if seg is None or stub.iface.address.network not in {i.address.network for _, i in seg.members}:
            raise TopologyError(f"{source}: site {stub.site}, party {stub.name}: address "
                                f"{stub.iface.address} is on no subnet of segment {stub.iface.segment!r}")
        seg.members.append((stub.name, stub.iface))
    for name, host in hosts.items():
        for i, (_dest, via) in enumerate(host.routes):
            if not any(via in iface.address.network for iface in host.interfaces):
                raise TopologyError(f"{where_of[name]}: jincai_routes[{i}].via: "
                                    f"gateway {via} is on none of the host's subnets")
    return Plan(source=source, hosts=hosts, segments=dict(sorted(segments.items())),
                technicians=sorted(technicians.items()), stubs=stubs, control=control)


def _control(source, m):
    """The control node's management interface: the model's (:attr:`jincai.source.model.Model.control_interface`,
    host var ``jincai_lab.control_node``), else the small lab's CONTROL_ADDRESS. It must lie inside MGMT_RANGE."""
    raw = m.control_interface
    if not raw:
        return CONTROL_ADDRESS
    try:
        control = ipaddress.ip_interface(raw)
    except ValueError as exc:
        raise TopologyError(f"{source}: jincai_lab.control_node: {raw!r} ({exc})") from exc
    if not control.network.subnet_of(MGMT_RANGE) or control.network.prefixlen > 30:
        raise TopologyError(f"{source}: jincai_lab.control_node: {raw} must be an address/prefix whose "
                            f"network lies inside {MGMT_RANGE}")
    return control


def _stubs(source, m, hosts, addresses):
    """Unmanaged external parties (a site's parties that are no host) as stubs on its router's metro segment."""
    stubs = {}
    for code in sorted(m.sites):
        site = m.sites[code]
        router = m.hosts[site.router]
        metro = next(iter(router.interfaces_of("metro")), None)
        for party in site.parties:
            name = party.name
            if party.managed or name in hosts or not party.address or metro is None:
                continue
            where = f"{_where(source, router)}: jincai_parties {name}"
            if not HOSTNAME_RE.match(name) or name in RESERVED_HOSTS:
                raise TopologyError(f"{where}: name is not usable as a namespace name")
            addr = ipaddress.ip_interface(f"{party.address}/{ipaddress.ip_interface(metro.address).network.prefixlen}")
            if addr.ip not in LAB_RANGE:
                raise TopologyError(f"{where}.address: {addr.ip} is outside the lab range {LAB_RANGE}")
            if addr.ip in addresses:
                raise TopologyError(f"{where}.address: {addr.ip} is also on {addresses[addr.ip]}")
            addresses[addr.ip] = f"{name} eth0"
            stubs[name] = Stub(name=name, site=code, kind=party.kind,
                               iface=Interface(name="eth0", role="metro", address=addr, segment=metro.segment,
                                               peer=None),
                               gateway=ipaddress.ip_address(site.metro_gateway) if site.metro_gateway else None)
    return dict(sorted(stubs.items()))
