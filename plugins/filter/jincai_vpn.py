"""What each VPN client reaches at its own site (roles/vpn_concentrator, issue 16): budget units and
township finance offices (乡镇财政所) alike; and which concentrator serves a client now (roles/vpn_client).

A filter rather than a Jinja loop: the province concentrator renders 1,040 units and a loop through
Ansible's templar took seconds of CPU per run; this is linear and unit-tested
(tests/unit/test_vpn_reach.py, tests/unit/test_vpn_move.py)."""

import json
import os


def vpn_unit_reach(units, served, allowed_apps, township_served=None, township_apps=None):
    """Return ``{unit code: {"lan": ..., "targets": [...]}}`` for registry entries ``units``.

    ``served`` is the concentrator's ``jincai_vpn.served`` (``{site, lan, apps, targets}`` per site it
    serves); a unit's own site is its ``home`` (older entries: its ``site``). Its targets are that
    site's app endpoints for the unit's apps, narrowed to ``allowed_apps``. An entry of ``kind``
    township (a township finance office) is looked up the same way in ``township_served``
    (``jincai_vpn.township_served``: the counties whose townships the concentrator serves, with their
    township apps' targets), narrowed to ``township_apps``. A unit whose own site is not served gets
    ``lan`` "" and no targets (the role refuses it before touching the host)."""
    kinds = {None: ({s["site"]: s for s in served or []}, set(allowed_apps or [])),
             "township": ({s["site"]: s for s in township_served or []}, set(township_apps or []))}
    out = {}
    for u in units or []:
        sites, allowed = kinds.get(u.get("kind"), ({}, set()))
        site = sites.get(u.get("home") or u.get("site")) or {}
        apps = set(u.get("apps") or []) & allowed
        out[u["code"]] = {"lan": site.get("lan", ""),
                          "targets": [dict(t) for t in site.get("targets") or [] if t["app"] in apps]}
    return out


def vpn_connection(unit):
    """The concentrator's connection (and pool) name of a registry entry: ``<namespace>-<code>``, where
    the namespace is the one of its IKE identity ``<code>.<namespace>.<domain>`` (``bu`` for budget
    units, ``tw`` for township finance offices: jincai.source.model.VPN_KINDS)."""
    return f"{unit['identity'].split('.')[1]}-{unit['code']}"


# vpn_client_placement (DOCUMENTATION)
#   short_description: the registry, concentrator and server where a VPN client is active now
#   input: pki_dir (path, required): the control node's PKI directory of the network (vpn_client_pki_dir)
#   positional:
#     code (str, required): the unit's code in the registries (vpn_client_code)
#     registries (dict, required): registry directory -> {concentrator, server, lans} of every concentrator
#       of the source (jincai_vpn_client.registries, derived once by jincai.source.model.vpn_registries)
#   returns (dict): registry, concentrator, server, server_identity, lan, unit (the registry entry),
#     files (the units.json files read), error ("" when the unit is active in exactly one registry)
#   runs on the control node (filters are templated there): check mode reads the same files.
def vpn_client_placement(pki_dir, code, registries):
    """Where the VPN client ``code`` is served now: the one registry under ``pki_dir`` (of
    ``registries``, ``{registry dir: {"concentrator", "server", "lans": {site: LAN}}}``) whose
    ``units.json`` holds it ``active``. A unit moved with ``jincai pki move`` is active at its new
    concentrator only (revoked at the old one), so its client dials the new one's ``server`` and routes
    the LAN of its registry entry's own site (``home``; older entries: ``site``) through the tunnel.

    Returns ``{"registry", "concentrator", "server", "server_identity", "lan", "unit", "files", "error"}``.
    ``error`` is "" when the unit is active in exactly one registry; otherwise a message naming the files
    read and the fix (the role's assert prints it): active in none (onboard it), in more than one (revoke
    it where it does not belong), or in a registry the source knows no concentrator of. A registry whose
    ``units.json`` does not exist yet (a concentrator with no units) counts as holding no unit."""
    files, found = [], []
    for reg in sorted(registries or {}):
        path = os.path.join(str(pki_dir), reg, "units.json")
        files.append(path)
        try:
            with open(path, encoding="utf-8") as fh:
                doc = json.load(fh)
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            return _placement(files, f"{path}: not a readable registry ({exc}) (fix: restore it, or `jincai pki sync`)")
        entry = next((u for u in doc.get("units") or [] if u.get("code") == code and u.get("status") == "active"), None)
        if entry is not None:
            found.append((reg, path, doc, entry))
    if not found:
        return _placement(files, f"unit {code} is not an active unit in any concentrator's registry ({', '.join(files)}) "
                                 f"(fix: `jincai pki add {code} NAME` (-c CONCENTRATOR), `jincai pki import`, or "
                                 "`jincai pki sync`; a CSR unit, enrolment csr, enrols itself in this role unless "
                                 "the run is in check mode)")
    if len(found) > 1:
        where = ", ".join(f"{path} ({registries[reg]['concentrator']})" for reg, path, _, _ in found)
        return _placement(files, f"unit {code} is active in more than one registry: {where}; a unit is served by one "
                                 f"concentrator (fix: `jincai pki -c CONCENTRATOR revoke {code}` at the one(s) it "
                                 "does not belong to, then `ansible-playbook playbooks/vpn.yml --tags vpn`)")
    reg, path, doc, entry = found[0]
    conc = registries[reg]
    home = entry.get("home") or entry.get("site")
    lan = (conc.get("lans") or {}).get(home, "")
    if not lan:
        return _placement(files, f"{path}: unit {code}: its own site {home} is not served by "
                                 f"{conc['concentrator']} in the source (fix: `jincai pki move {code} --site SITE`)")
    return {"registry": reg, "concentrator": conc["concentrator"], "server": conc["server"],
            "server_identity": doc.get("server_identity", ""), "lan": lan, "unit": entry, "files": files, "error": ""}


def _placement(files, error):
    return {"registry": "", "concentrator": "", "server": "", "server_identity": "", "lan": "", "unit": {},
            "files": files, "error": error}


class FilterModule:
    """VPN filters of roles/vpn_concentrator and roles/vpn_client."""

    def filters(self):
        """Return the filter table."""
        return {"vpn_unit_reach": vpn_unit_reach, "vpn_connection": vpn_connection,
                "vpn_client_placement": vpn_client_placement}
