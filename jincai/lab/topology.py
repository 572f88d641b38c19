"""The lab topology, derived from the Ansible inventory (``ansible-inventory --list`` JSON shape).

Pure code, no side effects: :func:`plan` turns the inventory into a :class:`Plan` (hosts, their
interfaces and routes, and segments) or raises :class:`TopologyError` with a one-line message that
names the inventory, the host's site and the field at fault. Nothing is created before this passes.

Segments: every ``jincai_interfaces[].segment`` id is one layer-2 segment. A WAN link (two members,
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
    """Return the inventory dict for ``inventory``: a JSON file, or a directory given to
    ``jincai.inventory.build`` (the same code the Ansible inventory plugin uses)."""
    if os.path.isfile(inventory):
        try:
            with open(inventory, encoding="utf-8") as fh:
                return json.load(fh)
        except (OSError, ValueError) as exc:
            raise TopologyError(f"{inventory}: not a readable inventory JSON file ({exc})") from exc
    if not os.path.isdir(inventory):
        raise TopologyError(f"{inventory}: no such inventory directory or JSON file")
    try:
        from jincai import inventory as invmod
    except ImportError as exc:
        raise TopologyError(f"{inventory}: jincai.inventory is not available ({exc}); "
                            "pass a JSON file such as `ansible-inventory -i inventories/lab --list` writes") from exc
    return invmod.build(inventory)


def _where(source, name, hv):
    site = hv.get("jincai_site_code", "?") if isinstance(hv, dict) else "?"
    return f"{source}: site {site}, host {name}"


def _iface(source, name, hv, idx, raw):
    where = f"{_where(source, name, hv)}: jincai_interfaces[{idx}]"
    if not isinstance(raw, dict):
        raise TopologyError(f"{where}: expected a mapping, got {type(raw).__name__}")
    for key in ("name", "role", "address", "segment"):
        if not raw.get(key):
            raise TopologyError(f"{where}.{key}: missing")
    ifname = str(raw["name"])
    if not IFNAME_RE.match(ifname) or ifname == "lo":
        raise TopologyError(f"{where}.name: {ifname!r} is not a usable interface name (1-15 chars, not lo)")
    try:
        addr = ipaddress.ip_interface(str(raw["address"]))
    except ValueError as exc:
        raise TopologyError(f"{where}.address: {raw['address']!r} is not an address/prefix ({exc})") from exc
    if "/" not in str(raw["address"]):
        raise TopologyError(f"{where}.address: {raw['address']!r} needs a prefix length (CIDR)")
    if addr.version != 4 or addr.ip not in LAB_RANGE:
        raise TopologyError(f"{where}.address: {addr} is outside the lab range {LAB_RANGE} "
                            "(the lab never uses production addresses)")
    return Interface(name=ifname, role=str(raw["role"]), address=addr, segment=str(raw["segment"]),
                     peer=raw.get("peer") or None)


def _route(source, name, hv, idx, raw):
    where = f"{_where(source, name, hv)}: jincai_routes[{idx}]"
    if isinstance(raw, str):
        parts = raw.split()
        if len(parts) == 3 and parts[1] == "via":
            raw = {"to": parts[0], "via": parts[2]}
    if not isinstance(raw, dict):
        raise TopologyError(f"{where}: expected a mapping with 'to' and 'via'")
    dest = next((raw[k] for k in ("to", "dest", "destination", "network", "prefix") if raw.get(k)), None)
    via = next((raw[k] for k in ("via", "gateway", "next_hop", "nexthop") if raw.get(k)), None)
    if dest in ("default",):
        dest = "0.0.0.0/0"
    try:
        dest_net = ipaddress.ip_network(str(dest))
        via_ip = ipaddress.ip_address(str(via))
    except ValueError as exc:
        raise TopologyError(f"{where}: bad destination or gateway ({exc})") from exc
    if via_ip not in LAB_RANGE:
        raise TopologyError(f"{where}.via: {via_ip} is outside the lab range {LAB_RANGE}")
    return dest_net, via_ip


def plan(inv, source="inventory"):
    """Validate the inventory dict and return the lab :class:`Plan`."""
    hostvars = (inv.get("_meta") or {}).get("hostvars") if isinstance(inv, dict) else None
    if not hostvars:
        raise TopologyError(f"{source}: _meta.hostvars: missing or empty (no hosts to build)")
    routers = set((inv.get("routers") or {}).get("hosts") or [])
    hosts, seen_lower, addresses = {}, {}, {}
    technicians = {}
    control = _control(source, hostvars)
    for name in sorted(hostvars):
        hv = hostvars[name]
        where = _where(source, name, hv)
        if not isinstance(hv, dict):
            raise TopologyError(f"{where}: host vars are not a mapping")
        if not HOSTNAME_RE.match(name) or name in RESERVED_HOSTS:
            raise TopologyError(f"{where}: host name {name!r} is not usable as a lab machine name "
                                "(lower-case letters, digits, '-'; not 'sw')")
        if name.lower() in seen_lower:
            raise TopologyError(f"{where}: host name clashes with {seen_lower[name.lower()]!r}")
        seen_lower[name.lower()] = name
        raw_ifaces = hv.get("jincai_interfaces")
        if not isinstance(raw_ifaces, list):
            raise TopologyError(f"{where}: jincai_interfaces: missing or not a list")
        ifaces = [_iface(source, name, hv, i, r) for i, r in enumerate(raw_ifaces)]
        names = [i.name for i in ifaces]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise TopologyError(f"{where}: jincai_interfaces: interface name(s) used twice: {sorted(dup)}")
        mgmt = [i for i in ifaces if i.role == "mgmt"]
        if not mgmt:
            raw_mgmt = hv.get("jincai_mgmt_address")
            if not raw_mgmt:
                raise TopologyError(f"{where}: jincai_mgmt_address: missing (no mgmt interface either)")
            try:
                addr = ipaddress.ip_interface(str(raw_mgmt).split("/")[0] + f"/{control.network.prefixlen}")
            except ValueError as exc:
                raise TopologyError(f"{where}: jincai_mgmt_address: {raw_mgmt!r} ({exc})") from exc
            mgmt_if = Interface(name="eth0" if "eth0" not in names else "mgmt0", role="mgmt",
                                address=addr, segment="mgmt")
        elif len(mgmt) > 1:
            raise TopologyError(f"{where}: jincai_interfaces: more than one interface with role mgmt")
        else:
            mgmt_if = mgmt[0]
        if mgmt_if.address.network != control.network or mgmt_if.address.ip == control.ip:
            raise TopologyError(f"{where}: jincai_mgmt_address: {mgmt_if.address} must be a host address in "
                                f"{control.network} other than the control node {control.ip}")
        data_ifaces = [i for i in ifaces if i.role != "mgmt"]
        for i in ifaces:
            other = addresses.get(i.address.ip)
            if other:
                raise TopologyError(f"{where}: jincai_interfaces: address {i.address.ip} is also on {other}")
            addresses[i.address.ip] = f"{name} {i.name}"
        routes = [_route(source, name, hv, i, r) for i, r in enumerate(hv.get("jincai_routes") or [])]
        functions = list(hv.get("jincai_functions") or [])
        if name in routers and "router" not in functions:
            functions.append("router")
        loopbacks = []
        router = hv.get("jincai_router") or {}
        if "router" in functions and router.get("loopback"):
            try:
                lo = ipaddress.ip_interface(str(router["loopback"]).split("/")[0] + "/32")
            except ValueError as exc:
                raise TopologyError(f"{where}: jincai_router.loopback: {router['loopback']!r} ({exc})") from exc
            if lo.ip not in LAB_RANGE:
                raise TopologyError(f"{where}: jincai_router.loopback: {lo.ip} is outside the lab range {LAB_RANGE}")
            loopbacks.append(lo)
        for tech in list(hv.get("jincai_technicians") or []) + list(hv.get("jincai_admins") or []):
            if isinstance(tech, dict) and tech.get("user") and tech.get("key_file"):
                technicians[str(tech["user"])] = str(tech["key_file"])
        hosts[name] = Host(name=name, site=str(hv.get("jincai_site_code", "")), functions=functions,
                           mgmt=mgmt_if, interfaces=data_ifaces, routes=routes, loopbacks=loopbacks)

    segments = {}
    for name, host in hosts.items():
        for iface in host.interfaces:
            if iface.segment == "mgmt":
                raise TopologyError(f"{_where(source, name, hostvars[name])}: jincai_interfaces "
                                    f"{iface.name}: segment 'mgmt' is reserved for role mgmt")
            segments.setdefault(iface.segment, Segment(iface.segment)).members.append((name, iface))
    for seg in segments.values():
        member_hosts = [h for h, _ in seg.members]
        for hname, iface in seg.members:
            where = f"{_where(source, hname, hostvars[hname])}: jincai_interfaces {iface.name}"
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
            hname, iface = seg.members[0]
            raise TopologyError(f"{_where(source, hname, hostvars[hname])}: segment {seg.id!r}: members are "
                                f"in different subnets {sorted(map(str, nets))}")
    stubs = _stubs(source, hostvars, hosts, addresses)
    for stub in stubs.values():
        seg = segments.get(stub.iface.segment)
        if seg is None or stub.iface.address.network not in {i.address.network for _, i in seg.members}:
            raise TopologyError(f"{source}: site {stub.site}, party {stub.name}: address "
                                f"{stub.iface.address} is on no subnet of segment {stub.iface.segment!r}")
        seg.members.append((stub.name, stub.iface))
    for name, host in hosts.items():
        for i, (dest, via) in enumerate(host.routes):
            if not any(via in iface.address.network for iface in host.interfaces):
                raise TopologyError(f"{_where(source, name, hostvars[name])}: jincai_routes[{i}].via: "
                                    f"gateway {via} is on none of the host's subnets")
    return Plan(source=source, hosts=hosts, segments=dict(sorted(segments.items())),
                technicians=sorted(technicians.items()), stubs=stubs, control=control)


def _control(source, hostvars):
    """The control node's management interface: ``jincai_lab.control_node`` (the same on every host
    that names it), else the small lab's CONTROL_ADDRESS. It must lie inside MGMT_RANGE."""
    found = {}
    for name, hv in hostvars.items():
        raw = ((hv.get("jincai_lab") or {}) if isinstance(hv, dict) else {}).get("control_node")
        if raw:
            found.setdefault(str(raw), name)
    if not found:
        return CONTROL_ADDRESS
    if len(found) > 1:
        raise TopologyError(f"{source}: jincai_lab.control_node: hosts disagree: "
                            + ", ".join(f"{v} on {k}" for k, v in sorted(found.items())))
    raw = next(iter(found))
    try:
        control = ipaddress.ip_interface(raw)
    except ValueError as exc:
        raise TopologyError(f"{source}: jincai_lab.control_node: {raw!r} ({exc})") from exc
    if "/" not in raw or not control.network.subnet_of(MGMT_RANGE) or control.network.prefixlen > 30:
        raise TopologyError(f"{source}: jincai_lab.control_node: {raw} must be an address/prefix whose "
                            f"network lies inside {MGMT_RANGE}")
    return control


def _stubs(source, hostvars, hosts, addresses):
    """Unmanaged external parties (``jincai_parties`` on routers, not hosts themselves) as stubs."""
    stubs = {}
    for rname in sorted(hostvars):
        hv = hostvars[rname]
        if not isinstance(hv, dict) or not hv.get("jincai_parties"):
            continue
        metro = next((i for i in hv.get("jincai_interfaces") or [] if isinstance(i, dict)
                      and i.get("role") == "metro"), None)
        gw = (hv.get("jincai_router") or {}).get("metro_gateway")
        for party in hv["jincai_parties"]:
            name = party.get("name")
            if party.get("managed") or name in hosts or not party.get("address") or metro is None:
                continue
            where = f"{_where(source, rname, hv)}: jincai_parties {name}"
            if not HOSTNAME_RE.match(str(name)) or str(name) in RESERVED_HOSTS:
                raise TopologyError(f"{where}: name is not usable as a namespace name")
            addr = ipaddress.ip_interface(f"{party['address']}/{ipaddress.ip_interface(metro['address']).network.prefixlen}")
            if addr.ip not in LAB_RANGE:
                raise TopologyError(f"{where}.address: {addr.ip} is outside the lab range {LAB_RANGE}")
            if addr.ip in addresses:
                raise TopologyError(f"{where}.address: {addr.ip} is also on {addresses[addr.ip]}")
            addresses[addr.ip] = f"{name} eth0"
            stubs[name] = Stub(name=name, site=str(hv.get("jincai_site_code", "")), kind=str(party.get("kind")),
                               iface=Interface(name="eth0", role="metro", address=addr, segment=metro["segment"],
                                               peer=None),
                               gateway=ipaddress.ip_address(gw) if gw else None)
    return dict(sorted(stubs.items()))
