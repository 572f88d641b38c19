"""The WAN as a graph: sites are the nodes, WAN links the edges, from the typed model.

Built from the model whose serialisation the roles read (:func:`jincai.model.build`, host vars from
it), so the map shows exactly what the roles configure: a :class:`jincai.model.Site` per node, a
:class:`jincai.model.Link` per edge, the site's parties and its VPN concentrator
(:func:`from_model`; ``jincai topology`` and ``jincai site show --draw``). :func:`from_inventory`
reads the same facts back from an inventory dict, for the compliance report, which holds only that.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from jincai import model

TIER_ORDER = {tier: i for i, tier in enumerate(model.TIERS)}


class TopologyError(Exception):
    """The topology cannot be built or drawn; the message names the inventory, site or tool at fault."""


@dataclass
class Party:
    """An external party on a site's metro segment (People's Bank, a commercial bank, the tax bureau)."""

    name: str
    kind: str
    org: str


@dataclass
class Site:
    """One site: its division code and names, tier, parent, router, parties and VPN concentrator."""

    code: str
    tier: str
    name_zh: str
    pinyin: str
    parent: str | None
    city: str | None
    router: str | None = None
    platform: str | None = None
    parties: list = field(default_factory=list)
    vpn: dict | None = None  # {"host": name, "budget_units": count}


@dataclass
class Link:
    """One WAN link between a parent site and a child site (``role`` primary or backup)."""

    segment: str
    parent: str
    child: str
    role: str
    subnet: str | None = None
    addresses: dict = field(default_factory=dict)  # site code -> this end's address


@dataclass
class Topology:
    """Sites (by code, in tier then code order) and WAN links of one network."""

    network: str
    environment: str
    sites: dict
    links: list

    def children(self, code):
        """Codes of the sites whose primary uplink goes to ``code`` (in code order)."""
        return sorted({lk.child for lk in self.links if lk.parent == code and lk.role == "primary"})

    def subgraph(self, codes):
        """The topology restricted to ``codes`` and the links between them."""
        keep = set(codes)
        return Topology(self.network, self.environment,
                        {c: s for c, s in self.sites.items() if c in keep},
                        [lk for lk in self.links if lk.parent in keep and lk.child in keep])


def from_model(m):
    """Return the :class:`Topology` of a typed model (:class:`jincai.model.Model`)."""
    sites = {}
    for code, s in m.sites.items():
        vpn = next((m.hosts[n] for n in s.hosts if m.hosts[n].vpn), None)
        sites[code] = Site(code=code, tier=s.tier, name_zh=s.name_zh, pinyin=s.pinyin, parent=s.parent,
                           city=s.city_code, router=s.router, platform=s.platform,
                           parties=[Party(p.name, p.kind, p.org or "") for p in s.parties],
                           vpn={"host": vpn.name, "budget_units": vpn.vpn.budget_units} if vpn else None)
    links = [Link(lk.segment, lk.parent, lk.child, lk.role, lk.network,
                  dict(sorted({lk.parent: lk.address("parent"), lk.child: lk.address("child")}.items())))
             for lk in m.links]
    return Topology(network=m.name or "", environment=m.environment, sites=_ordered(sites), links=_sorted(links))


def _ordered(sites):
    return dict(sorted(sites.items(), key=lambda kv: (TIER_ORDER.get(kv[1].tier, 9), kv[0])))


def _sorted(links):
    return sorted(links, key=lambda lk: (lk.parent, lk.child, lk.role != "primary"))


def from_inventory(inventory):
    """Return the :class:`Topology` of an inventory dict (``ansible-inventory --list`` shape): the
    compliance report's, which holds only that (:func:`from_model` wherever the model is at hand)."""
    hostvars = (inventory.get("_meta") or {}).get("hostvars") or {}
    sites, links = {}, {}
    routers = {}
    for name, hv in sorted(hostvars.items()):
        info = hv.get("jincai_site") or {}
        code = hv.get("jincai_site_code") or info.get("code")
        if not code:
            continue
        tier = hv.get("jincai_tier") or info.get("tier") or "county"
        site = sites.get(code)
        if site is None:
            site = sites[code] = Site(code=code, tier=tier, name_zh=info.get("name_zh", ""),
                                      pinyin=info.get("pinyin", ""), parent=info.get("parent"),
                                      city=info.get("city_code"))
        if "router" in (hv.get("jincai_functions") or []):
            routers[name] = code
            site.router = name
            site.platform = (hv.get("jincai_router") or {}).get("platform")
            site.parties = [Party(p.get("name", ""), p.get("kind", ""), p.get("org") or "")
                            for p in hv.get("jincai_parties") or []]
        if hv.get("jincai_vpn"):
            site.vpn = {"host": name, "budget_units": hv["jincai_vpn"].get("budget_units", 0)}
    for name, code in routers.items():
        for iface in hostvars[name].get("jincai_interfaces") or []:
            if iface.get("role") not in ("uplink", "downlink"):
                continue
            parsed = model.parse_wan_segment(iface.get("segment"))
            if parsed is None:
                raise TopologyError(f"host {name} (site {code}): jincai_interfaces: segment "
                                    f"{iface.get('segment')!r} is not a WAN link id (wan-<parent>-<child>[-backup])")
            parent, child, role = parsed
            link = links.setdefault(iface["segment"], Link(iface["segment"], parent, child, role))
            if iface.get("address"):
                addr = ipaddress.ip_interface(iface["address"])
                link.subnet = str(addr.network)
                link.addresses[code] = str(addr.ip)
    for link in links.values():
        for end in (link.parent, link.child):
            if end not in sites:
                raise TopologyError(f"link {link.segment}: site {end} has no host in the inventory")
    some = next(iter(hostvars.values()), {})
    return Topology(network=some.get("jincai_network_name") or "", environment=some.get("jincai_environment") or "",
                    sites=_ordered(sites), links=_sorted(links.values()))


def from_source(src):
    """The :class:`Topology` of a loaded, *valid* source (:func:`jincai.model.load`)."""
    return from_model(model.build(src))


def load(inventory_dir):
    """Build the model of a source of truth and return its :class:`Topology` (TopologyError if invalid)."""
    from jincai import inventory as invmod

    try:
        return from_model(invmod.build_checked(inventory_dir)[0])
    except invmod.InvalidSource as exc:
        raise TopologyError(f"the source has errors (run jincai validate {inventory_dir}):\n{exc}") from None
    except model.SourceError as exc:
        raise TopologyError(str(exc)) from None


def neighbourhood(topo, code):
    """The site ``code`` with its uplink peers (parents) and the sites hanging under it (children)."""
    if code not in topo.sites:
        raise TopologyError(f"no site {code} in the {topo.network or 'given'} inventory")
    codes = {code}
    for lk in topo.links:
        if lk.child == code:
            codes.add(lk.parent)
        if lk.parent == code:
            codes.add(lk.child)
    return topo.subgraph(codes)
