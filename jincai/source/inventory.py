"""Build the Ansible inventory (groups and host vars) from a source of truth.

:func:`build` returns the JSON shape of ``ansible-inventory --list``; the inventory plugin
(``plugins/inventory/jincai.py``) feeds the same data to Ansible. Invalid sources are refused with
the validator's messages (:class:`InvalidSource`).
"""

from __future__ import annotations

import json
import sys

from jincai import paths
from jincai.policy import ipsec, tls
from jincai.source import model, validate

#: Group order in the output: tiers, functions, then per-platform and per-site groups.
FIXED_GROUPS = ("province", "city", "county", "routers", "vpn_concentrators", "app_servers", "services",
                "machine_room", "budget_unit_clients", "township_clients", "external_parties")


class InvalidSource(Exception):
    """The source has validation errors; ``findings`` holds them (str() is one per line)."""

    def __init__(self, findings):
        self.findings = findings
        super().__init__("\n".join(str(f) for f in findings))


def build_checked(inventory_dir):
    """Load, validate and build the typed model; raise :class:`InvalidSource` on errors.
    Returns (:class:`jincai.source.model.Model`, warnings)."""
    src = model.load(inventory_dir)
    findings = validate.check(src)
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        raise InvalidSource(errors)
    return model.build(src), [f for f in findings if f.severity != "error"]


def derive_checked(inventory_dir):
    """Load, validate and derive; raise :class:`InvalidSource` on errors. Returns (derived, warnings)."""
    m, warnings = build_checked(inventory_dir)
    return m.derived(), warnings


#: Host vars derived from network-wide settings only; the plugin sets them once on group ``all``.
SHARED_VARS = ("jincai_environment", "jincai_network_name", "jincai_domain", "jincai_admins",
               "jincai_applications", "jincai_province_services")


def control_vars(derived):
    """Vars about the control node's side of the network, set once on group ``all``:
    ``jincai_pki_dir``, the network's CA and budget-unit registry (:func:`jincai.paths.pki_dir`), and
    ``jincai_secrets_dir``, secrets generated for it (:func:`jincai.paths.secrets_dir`), ``jincai_tls``,
    the TLS policy of every endpoint (:mod:`jincai.policy.tls`), and ``jincai_ipsec``, the IPsec
    proposals of every tunnel (:mod:`jincai.policy.ipsec`)."""
    names = {h.get("jincai_network_name") for h in derived.hosts.values()}
    if len(names) != 1 or None in names:
        return {}
    name = names.pop()
    return {"jincai_pki_dir": paths.pki_dir(name), "jincai_secrets_dir": paths.secrets_dir(name),
            **tls.ansible_vars(), **ipsec.ansible_vars()}


def shared_vars(derived):
    """The SHARED_VARS that really are equal on every host (checked, not assumed)."""
    hosts = list(derived.hosts.values())
    if not hosts:
        return {}
    return {k: hosts[0][k] for k in SHARED_VARS if k in hosts[0] and all(h.get(k) == hosts[0][k] for h in hosts)}


def group_names(derived):
    """All group names in a stable order."""
    rest = sorted(g for g in derived.groups if g not in FIXED_GROUPS)
    return [g for g in FIXED_GROUPS if g in derived.groups] + rest


def build(inventory_dir):
    """Return the inventory as ``ansible-inventory --list`` JSON (a dict)."""
    return from_model(build_checked(inventory_dir)[0])


def from_model(m):
    """The ``ansible-inventory --list`` dict of a built :class:`jincai.source.model.Model` (for a consumer that
    needs both the objects and the host vars: one derivation)."""
    derived = m.derived()
    out = {"_meta": {"hostvars": derived.hosts}}
    names = group_names(derived)
    out["all"] = {"children": ["ungrouped"] + names, "vars": control_vars(derived)}
    out["ungrouped"] = {"hosts": []}
    for g in names:
        out[g] = {"hosts": list(derived.groups[g])}
    return out


def main(inventory_dir):
    """Print the inventory JSON; on an invalid source print the errors to stderr and return 1."""
    try:
        data = build(inventory_dir)
    except InvalidSource as exc:
        print(exc, file=sys.stderr)
        return 1
    except model.SourceError as exc:
        print(f"jincai: {exc}", file=sys.stderr)
        return 1
    json.dump(data, sys.stdout, indent=1, ensure_ascii=False, sort_keys=False)
    sys.stdout.write("\n")
    return 0
