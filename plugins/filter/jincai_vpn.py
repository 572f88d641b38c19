"""What each VPN client reaches at its own site (roles/vpn_concentrator, issue 16): budget units and
township finance offices (乡镇财政所) alike; which concentrator serves a client now, and its key in its
batch's vault (roles/vpn_client).

A filter rather than a Jinja loop: the province concentrator renders 1,040 units and a loop through
Ansible's templar took seconds of CPU per run; this is linear and unit-tested
(tests/unit/test_vpn_reach.py, tests/unit/test_vpn_move.py)."""

from jincai.pki import keys
from jincai.pki.placement import vpn_client_placement


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


# vpn_unit_key (DOCUMENTATION)
#   short_description: a unit's private key out of its decrypted key vault
#   input: plaintext (str, required): lookup('ansible.builtin.unvault', <the placement's key_vault>)
#   positional: code (str, required): the unit's code; where (str): the vault's path, for errors
#   returns (str): the key PEM; use it only in a no_log task (roles/vpn_client's key copy)
def vpn_unit_key(plaintext, code, where="key vault"):
    """The private key (PEM) of unit ``code`` in its decrypted key vault (the ``unvault`` lookup of the
    placement's ``key_vault``): a batch's JSON object code -> key, or an older per-unit vault's key
    (:func:`jincai.pki.keys.pick`). Errors name ``where``, never a key."""
    return keys.pick(plaintext, code, where)


# vpn_client_placement (DOCUMENTATION; the function is jincai.pki.placement's, also read by `jincai verify`)
#   short_description: the registry, concentrator and server where a VPN client is active now
#   input: pki_dir (path, required): the control node's PKI directory of the network (vpn_client_pki_dir)
#   positional:
#     code (str, required): the unit's code in the registries (vpn_client_code)
#     registries (dict, required): registry directory -> {concentrator, server, lans} of every concentrator
#       of the source (jincai_vpn_client.registries, derived once by jincai.source.model.vpn_registries)
#   returns (dict): registry, concentrator, server, server_identity, lan, unit (the registry entry),
#     key_vault (the vault of the unit's key, "" for a CSR unit), files (the units.json files read), error ("" when the unit is active in exactly one registry)
#   runs on the control node (filters are templated there): check mode reads the same files.
class FilterModule:
    """VPN filters of roles/vpn_concentrator and roles/vpn_client."""

    def filters(self):
        """Return the filter table."""
        return {"vpn_unit_reach": vpn_unit_reach, "vpn_connection": vpn_connection,
                "vpn_client_placement": vpn_client_placement, "vpn_unit_key": vpn_unit_key}
