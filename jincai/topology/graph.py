"""The WAN as a graph: sites are the nodes, WAN links the edges, from the typed model.

Built from the model whose serialisation the roles read (:func:`jincai.source.model.build`, host vars
from it), so the map shows exactly what the roles configure: the model's own
:class:`jincai.source.model.Site` per node (not a copy of it), a :class:`Link` per
:class:`jincai.source.model.Link` per edge, the site's parties and its VPN concentrator
(:func:`from_model`; ``jincai topology``, ``jincai site show --draw`` and the compliance report).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jincai.source import model

TIER_ORDER = {tier: i for i, tier in enumerate(model.TIERS)}


class TopologyError(Exception):
    """The topology cannot be built or drawn; the message names the inventory, site or tool at fault."""


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
    """Sites (by code, in tier then code order: the typed model's :class:`jincai.source.model.Site`,
    whose ``parties`` are its :class:`jincai.source.model.Party` objects), WAN links, and the VPN
    concentrator of the sites that have one (``vpn``: code -> ``{"host": name, "budget_units": count}``)."""

    network: str
    environment: str
    sites: dict
    links: list
    vpn: dict = field(default_factory=dict)

    def children(self, code):
        """Codes of the sites whose primary uplink goes to ``code`` (in code order)."""
        return sorted({lk.child for lk in self.links if lk.parent == code and lk.role == "primary"})

    def subgraph(self, codes):
        """The topology restricted to ``codes`` and the links between them."""
        keep = set(codes)
        return Topology(self.network, self.environment,
                        {c: s for c, s in self.sites.items() if c in keep},
                        [lk for lk in self.links if lk.parent in keep and lk.child in keep],
                        {c: v for c, v in self.vpn.items() if c in keep})


def from_model(m):
    """Return the :class:`Topology` of a typed model (:class:`jincai.source.model.Model`)."""
    vpn = {}
    for code, s in m.sites.items():
        host = next((m.hosts[n] for n in s.hosts if m.hosts[n].vpn), None)
        if host:
            vpn[code] = {"host": host.name, "budget_units": host.vpn.budget_units}
    links = [Link(lk.segment, lk.parent, lk.child, lk.role, lk.network,
                  dict(sorted({lk.parent: lk.address("parent"), lk.child: lk.address("child")}.items())))
             for lk in m.links]
    return Topology(network=m.name or "", environment=m.environment, sites=_ordered(dict(m.sites)),
                    links=_sorted(links), vpn=vpn)


def _ordered(sites):
    return dict(sorted(sites.items(), key=lambda kv: (TIER_ORDER.get(kv[1].tier, 9), kv[0])))


def _sorted(links):
    return sorted(links, key=lambda lk: (lk.parent, lk.child, lk.role != "primary"))


def from_source(src):
    """The :class:`Topology` of a loaded, *valid* source (:func:`jincai.source.model.load`)."""
    return from_model(model.build(src))


def load(inventory_dir):
    """Build the model of a source of truth and return its :class:`Topology` (TopologyError if invalid)."""
    from jincai.source import inventory as invmod

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
