"""Which concentrator serves a VPN client now (issue 16): the one registry where the unit is active.

A unit moved with ``jincai pki move`` is active at its new concentrator only; the source still places it
at its old one (``jincai_vpn_client``). roles/vpn_client (the ``vpn_client_placement`` filter of
plugins/filter/jincai_vpn.py) and ``jincai verify`` (jincai.verify.plan: which concentrator's tunnel
to check, which pool the client's address is from) both read the placement here, so the two agree.
"""

import json
import os

from jincai.pki import keys


def vpn_client_placement(pki_dir, code, registries):
    """Where the VPN client ``code`` is served now: the one registry under ``pki_dir`` (of
    ``registries``, ``{registry dir: {"concentrator", "server", "lans": {site: LAN}}}``) whose
    ``units.json`` holds it ``active``. A unit moved with ``jincai pki move`` is active at its new
    concentrator only (revoked at the old one), so its client dials the new one's ``server`` and routes
    the LAN of its registry entry's own site (``home``; older entries: ``site``) through the tunnel.

    Returns ``{"registry", "concentrator", "server", "server_identity", "lan", "unit", "key_vault", "files",
    "error"}``; ``key_vault`` is the vault that holds the unit's key (:func:`jincai.pki.keys.key_vault`: its
    batch's, an older registry's per-unit one; "" for a unit enrolled by CSR).
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
    kv = keys.key_vault(entry)
    return {"registry": reg, "concentrator": conc["concentrator"], "server": conc["server"],
            "server_identity": doc.get("server_identity", ""), "lan": lan, "unit": entry,
            "key_vault": os.path.join(str(pki_dir), reg, kv) if kv else "", "files": files, "error": ""}


def _placement(files, error):
    return {"registry": "", "concentrator": "", "server": "", "server_identity": "", "lan": "", "unit": {},
            "key_vault": "", "files": files, "error": error}
