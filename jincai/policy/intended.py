"""The intended state of a host, derived once for everything that checks it.

``jincai compliance`` (checks on collected facts) and ``jincai verify`` (testinfra checks on the live
host) judge some of the same facts: which services a host must run, which units start at boot, what
listens where, which NTP source a host follows, whether it sends or collects the logs. Both take them
from here, so a new service or port is declared in one place:

* the by-function tables of the control catalogue (``expected.services``, ``expected.enabled_services``,
  ``expected.ports`` in jincai/data/mlps_controls.yml);
* the host vars of the inventory (``jincai_functions``, ``jincai_apps``, ``jincai_applications``);
* the roles' own defaults for what a role configures (``sshd_port``, ``firewall_function_rules``,
  ``postgres_listen_addresses``, ``rsyslog_port`` ...), overridden by the inventory's group_vars as
  Ansible would (:func:`role_var`).

Pure functions: nothing here contacts a host.
"""

from __future__ import annotations

import functools
import glob
import os

import yaml

from jincai import ROOT

ROLES_DIR = os.path.join(ROOT, "roles")
LOOPBACK = ("127.0.0.1", "::1", "localhost")
VAULT_HEADER = "$ANSIBLE_VAULT"


@functools.lru_cache(maxsize=None)
def role_defaults(role):
    """The literal values of ``roles/<role>/defaults/main.yml`` (templated values are left out)."""
    path = os.path.join(ROLES_DIR, role, "defaults", "main.yml")
    try:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh) or {}
    except FileNotFoundError:
        return {}
    return {k: v for k, v in doc.items() if not (isinstance(v, str) and "{{" in v)}


class _PlainLoader(yaml.SafeLoader):
    """Safe YAML; an inline ``!vault`` value loads as None (secrets are never intended state)."""


_PlainLoader.add_constructor("!vault", lambda loader, node: None)


def _plain_yaml(path):
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    if text.lstrip().startswith(VAULT_HEADER):
        return {}  # a vault-encrypted file
    doc = yaml.load(text, Loader=_PlainLoader) or {}  # noqa: S506 - a SafeLoader subclass
    return doc if isinstance(doc, dict) else {}


@functools.lru_cache(maxsize=None)
def _var_files(inventory_dir):
    """{group or host name: merged plain vars} of an inventory's group_vars/ and host_vars/."""
    out = {"group": {}, "host": {}}
    for kind in ("group", "host"):
        base = os.path.join(inventory_dir, f"{kind}_vars")
        for path in sorted(glob.glob(os.path.join(base, "*.yml")) + glob.glob(os.path.join(base, "*", "*.yml"))):
            rel = os.path.relpath(path, base)
            name = rel.split(os.sep)[0]
            name = name[:-4] if name.endswith(".yml") else name
            out[kind].setdefault(name, {}).update(_plain_yaml(path))
    return out


def inventory_vars(inventory_dir, host, groups):
    """The plain (non-vault, non-derived) vars the inventory's files give ``host``: group ``all``, then
    each of ``groups`` in order, then host_vars (Ansible's precedence for inventory files)."""
    files = _var_files(os.path.abspath(inventory_dir))
    merged = dict(files["group"].get("all", {}))
    for g in groups:
        merged.update(files["group"].get(g, {}))
    merged.update(files["host"].get(host, {}))
    return merged


def role_var(name, hostvars=None, inv_vars=None):
    """A role variable as the host gets it: host vars, then inventory files, then the role's default
    (the role is the one whose name prefixes the variable: ``vpn_concentrator_pool`` -> vpn_concentrator)."""
    for source in (hostvars or {}, inv_vars or {}):
        if name in source:
            return source[name]
    roles = sorted((r for r in os.listdir(ROLES_DIR) if name.startswith(r + "_")), key=len, reverse=True)
    return role_defaults(roles[0]).get(name) if roles else None


def for_functions(table, functions):
    """Merge a by-function table (``all`` plus each function, in order) into one dict or list."""
    keys = ["all"] + list(functions or [])
    if isinstance(table.get("all"), dict):
        merged = {}
        for k in keys:
            merged.update(table.get(k) or {})
        return merged
    merged = []
    for k in keys:
        merged += [x for x in table.get(k) or [] if x not in merged]
    return merged


def services(functions, apps, exp):
    """{unit: control}: what the host must run (the catalogue's table by function) plus the unit of each
    finance application it hosts (``jincai-<app>``)."""
    wanted = dict(for_functions(exp.get("services") or {}, functions))
    for app in apps or []:
        wanted.setdefault(f"jincai-{app}", exp.get("app_service_control", "L3-SMC1-09"))
    return wanted


def enabled_units(functions, exp):
    """{unit: control}: units that must start at boot although they need not run (oneshot loaders)."""
    return dict(for_functions(exp.get("enabled_services") or {"all": {}}, functions))


def unit_name(svc):
    """``ssh`` -> ``ssh.service``; timers and full names unchanged."""
    return svc if svc.endswith((".service", ".timer", ".socket")) else svc + ".service"


def listeners(functions, apps, applications, catalog=None, hostvars=None, inv_vars=None):
    """The sockets a host must listen on: list of ``{proto, port, bind, service, why}``.

    ``bind`` is ``any`` (reachable on the host's addresses) or ``loopback`` (local only: must not listen
    anywhere else). From the roles: sshd (``sshd_port``), the firewall's ports by function
    (``firewall_function_rules``: what each function serves), PostgreSQL (``postgres_listen_addresses``);
    from the inventory: each hosted application's TLS port (``jincai_applications``) and its loopback
    backend (``apps_catalog[app].backend_port``).
    """
    out = []

    def add(proto, port, bind, service, why):
        if port is None or any(x["proto"] == proto and x["port"] == port for x in out):
            return
        out.append({"proto": proto, "port": int(port), "bind": bind, "service": service, "why": why})

    add("tcp", role_var("sshd_port", hostvars, inv_vars), "any", "ssh", "sshd_port")
    rules = role_var("firewall_function_rules", hostvars, inv_vars) or {}
    service_of = {"nginx": "nginx", "syslog": "rsyslog", "ntp": "chrony", "artifact": "nginx", "ike": "strongswan"}
    for fn in functions or []:
        for rule in rules.get(fn) or []:
            svc = next((s for k, s in service_of.items() if k in str(rule.get("comment", ""))), "")
            for port in rule.get("ports") or []:
                add(rule["proto"], port, "any", svc, f"firewall_function_rules.{fn} ({rule.get('comment', '')})")
    if "app_server" in (functions or []):
        pg = str(role_var("postgres_listen_addresses", hostvars, inv_vars) or "localhost")
        pg_port = (catalog or {}).get("postgres_port")
        if pg_port:
            add("tcp", pg_port, "loopback" if all(a.strip() in LOOPBACK for a in pg.split(",")) else "any",
                "postgresql", f"postgres_listen_addresses={pg}")
        for app in apps or []:
            add("tcp", (applications or {}).get(app, {}).get("port"), "any", "nginx", f"jincai_applications.{app}.port")
            backend = ((inv_vars or {}).get("apps_catalog") or {}).get(app, {}).get("backend_port")
            add("tcp", backend, "loopback", f"jincai-{app}", f"apps_catalog.{app}.backend_port")
    return out


def allowed_ports(functions, exp, intended_listeners):
    """Ports a server may listen on beyond loopback: every reachable intended listener's (a loopback-only
    one, such as PostgreSQL, is not) plus the catalogue's ``expected.ports`` by function (client and
    helper sockets no role declares)."""
    ports = set(for_functions(exp.get("ports") or {}, functions))
    ports |= {x["port"] for x in intended_listeners if x["bind"] == "any"}
    return sorted(ports)


def ntp_chain(servers, own_addresses):
    """The NTP sources a host must follow, first preferred: its chain without its own addresses (the
    province services host is the last link: an empty chain means it keeps time itself)."""
    own = set(own_addresses or [])
    return [s for s in servers or [] if s not in own]


def log_role(collector, own_addresses):
    """``collector`` (this host receives everyone's logs), ``sender`` (it forwards to the collector) or
    None (no collector in the plan)."""
    if not collector:
        return None
    return "collector" if collector in set(own_addresses or []) else "sender"


def host_groups(inventory, host):
    """The groups of an ``ansible-inventory --list`` dict that hold ``host``, in the dict's order."""
    return [g for g, v in inventory.items() if g not in ("_meta", "all") and isinstance(v, dict)
            and host in (v.get("hosts") or [])]


def host_listeners(inventory, host, exp, inventory_dir=None, apps=None):
    """:func:`listeners` of one host of an inventory dict; ``apps`` defaults to its ``jincai_apps``
    (jincai verify passes the applications the release deploys there)."""
    hv = inventory["_meta"]["hostvars"][host]
    inv_vars = inventory_vars(inventory_dir, host, host_groups(inventory, host)) if inventory_dir else {}
    return listeners(hv.get("jincai_functions"), hv.get("jincai_apps") if apps is None else apps,
                     hv.get("jincai_applications"), exp, hv, inv_vars)
