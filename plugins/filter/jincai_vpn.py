"""What each budget unit reaches at its own site (roles/vpn_concentrator, issue 16).

A filter rather than a Jinja loop: the province concentrator renders 1,040 units and a loop through
Ansible's templar took seconds of CPU per run; this is linear and unit-tested
(tests/unit/test_vpn_reach.py)."""


def vpn_unit_reach(units, served, allowed_apps):
    """Return ``{unit code: {"lan": ..., "targets": [...]}}`` for registry entries ``units``.

    ``served`` is the concentrator's ``jincai_vpn.served`` (``{site, lan, apps, targets}`` per site it
    serves); a unit's own site is its ``home`` (older entries: its ``site``). Its targets are that
    site's app endpoints for the unit's apps, narrowed to ``allowed_apps``. A unit whose own site is
    not served gets ``lan`` "" and no targets (the role refuses it before touching the host)."""
    sites = {s["site"]: s for s in served or []}
    allowed = set(allowed_apps or [])
    out = {}
    for u in units or []:
        site = sites.get(u.get("home") or u.get("site")) or {}
        apps = set(u.get("apps") or []) & allowed
        out[u["code"]] = {"lan": site.get("lan", ""),
                          "targets": [dict(t) for t in site.get("targets") or [] if t["app"] in apps]}
    return out


class FilterModule:
    """VPN filters of roles/vpn_concentrator."""

    def filters(self):
        """Return the filter table."""
        return {"vpn_unit_reach": vpn_unit_reach}
