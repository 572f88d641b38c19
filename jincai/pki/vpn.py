"""The VPN plans of a source of truth: one per concentrator of its typed model, as the registry reads it.

A plan (:func:`plans_of`) is the :class:`jincai.source.model.Concentrator`'s pool, applications,
LAN, name and address, the network's domain (the IKE identities), the sites it serves and its lab
client units; :func:`plan` picks one by host name or site code.
"""

import os

from jincai.pki import PkiError


def plans(inventory_dir):
    """The VPN plans of an inventory (:func:`plans_of` its validated typed model)."""
    from jincai.source import inventory

    m, _ = inventory.build_checked(inventory_dir)
    return plans_of(m, inventory_dir)


def plans_of(m, where="inventory"):
    """One VPN plan per concentrator of the typed model ``m`` (the province's first, then the cities'):
    its :class:`jincai.source.model.Concentrator` as the registry reads it: pool, apps, LAN, concentrator
    name/address, domain, site, the sites it serves (``served``: LAN, apps and tier of each), the
    counties whose township finance offices it serves (``townships``: the same, for their township
    apps), its lab clients (their own sites, kinds, those that enrol by CSR) and the registry
    directory (``vpn`` or ``vpn/<site code>``)."""
    concentrators = m.concentrators
    if not concentrators or m.sites[concentrators[0].site].tier != "province":
        raise PkiError(f"{where}: no province host in group vpn_concentrators")
    if not m.domain:
        raise PkiError(f"{os.path.join(where, 'source', 'network.yml')}: network: domain: missing "
                       "(fix: the IKE identities are <unit>.bu.<domain>)")
    out = []
    for c in concentrators:
        clients = m.vpn_clients(c)
        out.append({"pool": c.pool, "apps": list(c.apps), "lan": c.lan, "site": c.site,
                    "served": {s["site"]: {"lan": s["lan"], "apps": list(s["apps"]), "tier": s["tier"]}
                               for s in c.served},
                    "townships": {s["site"]: {"lan": s["lan"], "apps": list(s["apps"]), "tier": s["tier"]}
                                  for s in c.township_served},
                    "client_homes": {v.name: v.home for v in clients if v.home},
                    "client_kinds": {v.name: v.kind for v in clients},
                    "csr_clients": [v.name for v in clients if v.enrolment == "csr"],
                    "domain": m.domain, "concentrator": {"name": c.host, "address": c.access_address},
                    "clients": list(c.clients), "registry": c.registry})
    return out


def plan(inventory_dir, concentrator=None):
    """One concentrator's VPN plan (:func:`plans`): the province's, or the one named by host name or
    site code."""
    return pick(plans(inventory_dir), concentrator, inventory_dir)


def pick(found, concentrator=None, where="inventory"):
    """The plan of ``found`` (:func:`plans`) named by host name or site code; the province's for None."""
    if concentrator is None:
        return found[0]
    for p in found:
        if concentrator in (p["concentrator"]["name"], p["site"]):
            return p
    raise PkiError(f"{where}: no VPN concentrator {concentrator!r} (have: "
                   f"{', '.join(p['concentrator']['name'] for p in found)})")


def placed_by_source(found, code):
    """The plan of ``found`` whose lab clients (the source's ``vpn_clients`` of its site) name unit
    ``code``, or None (host names are unique in a source: at most one)."""
    return next((p for p in found if code in p["clients"]), None)
