"""Live WAN link state from the routers' OSPF neighbours (FRR ``show ip ospf neighbor json``).

:func:`parse_neighbors` reads the JSON of one router; :func:`link_states` marks each WAN link of a
:class:`~jincai.topology.graph.Topology` ``up`` (every router of the link that answered has a Full
adjacency on the link's subnet), ``down`` (one that answered has none: the link is cut, or OSPF on
it is) or ``unknown`` (neither router answered).

FRR's shape (ospfd, ``show ip ospf neighbor json``; 8.x and later)::

    {"neighbors": {"198.18.254.2": [{"nbrState": "Full/-", "ifaceAddress": "198.18.248.2",
                                      "ifaceName": "eth1:198.18.248.1", "areaId": "0.0.0.0", ...}]}}

Older releases print the router-id map at the top level, and some the state as ``state`` and the
address as ``address``; all are accepted. A neighbour without a router id is keyed ``noNbrId``.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

from jincai.topology.graph import TopologyError

COMMAND = "show ip ospf neighbor json"


@dataclass(frozen=True)
class Neighbor:
    """One OSPF neighbour as a router sees it."""

    router_id: str
    address: str
    interface: str
    state: str  # the adjacency state without the DR role: Full, 2-Way, ExStart, Init, ...
    role: str = ""

    @property
    def full(self):
        """True when the adjacency is Full (routes are exchanged over it)."""
        return self.state.lower() == "full"


def parse_neighbors(data, router=""):
    """Return the :class:`Neighbor` list of one router's ``show ip ospf neighbor json`` (text or dict).

    Raises TopologyError naming ``router`` when the output is not that JSON.
    """
    where = f"{router}: " if router else ""
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except ValueError as exc:
            text = data.decode(errors="replace") if isinstance(data, bytes) else data
            raise TopologyError(f"{where}`{COMMAND}` did not print JSON ({exc}): {text.strip()[:200]!r}") from None
    if not isinstance(data, dict):
        raise TopologyError(f"{where}`{COMMAND}`: expected a JSON object, got {type(data).__name__}")
    if isinstance(data.get("default"), dict):  # `show ip ospf vrf all neighbor json`
        data = data["default"]
    table = data.get("neighbors", data)
    if not isinstance(table, dict):
        raise TopologyError(f"{where}`{COMMAND}`: 'neighbors' is not a mapping of router ids")
    out = []
    for rid, entries in table.items():
        if isinstance(entries, dict):
            entries = [entries]
        if not isinstance(entries, list):
            continue  # scalar keys beside the table (e.g. a vrf name)
        for e in entries:
            if not isinstance(e, dict):
                raise TopologyError(f"{where}`{COMMAND}`: neighbour {rid}: entry is not an object")
            raw = str(e.get("nbrState") or e.get("state") or e.get("converged") or "")
            state, _, role = raw.partition("/")
            address = e.get("ifaceAddress") or e.get("address") or ""
            if not state or not address:
                raise TopologyError(f"{where}`{COMMAND}`: neighbour {rid}: no state or address in {e}")
            out.append(Neighbor(router_id="" if rid == "noNbrId" else rid, address=address,
                                interface=str(e.get("ifaceName") or "").split(":")[0], state=state,
                                role=role or str(e.get("role") or "")))
    return out


def link_states(topo, neighbours):
    """``{segment: "up" | "down" | "unknown"}`` for every link of ``topo``.

    ``neighbours``: ``{site code: [Neighbor, ...]}`` for each router that answered (a router that did
    not answer is absent or None).
    """
    out = {}
    for link in topo.links:
        subnet = ipaddress.ip_network(link.subnet) if link.subnet else None
        seen = []
        for end in (link.parent, link.child):
            nbrs = neighbours.get(end)
            if nbrs is None:
                continue
            other = link.addresses.get(link.child if end == link.parent else link.parent)
            seen.append(any(n.full and (n.address == other or (subnet is not None and
                                                               ipaddress.ip_address(n.address) in subnet))
                            for n in nbrs))
        out[link.segment] = "unknown" if not seen else "up" if all(seen) else "down"
    return out
