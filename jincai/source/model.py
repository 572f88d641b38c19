"""The network source of truth: loading ``inventories/<name>/source/`` and deriving host data.

The source is declarative YAML (see docs/source-of-truth.md): ``network.yml`` holds the address
plan and defaults, ``sites/*.yml`` hold the sites with every allocation recorded. This module
only reads; :mod:`jincai.source.validate` checks the raw data, :func:`build` turns a *valid* source into a
typed :class:`Model` (sites, links, parties, hosts, VPN concentrators, each kind built by one function)
and :func:`derive` serialises it into hosts, groups and host vars (what :mod:`jincai.source.inventory` prints
for Ansible). Consumers that need more than host vars use the model's objects.
"""

from __future__ import annotations

import csv
import functools
import ipaddress
import os
from dataclasses import dataclass, field

import yaml

from jincai import DATA_DIR
from jincai.source import sourceyaml
from jincai.source.sourceyaml import VaultValue  # noqa: F401 - re-exported: validate checks vault values

TIERS = ("province", "city", "county")
PLATFORMS = ("huawei_vrp", "huawei_vrpv8", "h3c_comware", "cisco_ios", "frr")
FUNCTIONS = ("router", "vpn_concentrator", "app_server", "services")
PARTY_KINDS = ("peoples_bank", "commercial_bank", "tax_bureau")
LINK_ROLES = ("primary", "backup")
#: Parent tier each tier hangs under.
PARENT_TIER = {"city": "province", "county": "city"}
#: OSPF cost per uplink role.
LINK_COST = {"primary": 10, "backup": 100}
#: Production interface names per platform; ``{n}`` is the abstract index (1, 2, ...).
PLATFORM_IFNAME = {
    "huawei_vrp": "GigabitEthernet0/0/{n}",
    "huawei_vrpv8": "GE1/0/{n}",
    "h3c_comware": "GigabitEthernet1/0/{n}",
    "cisco_ios": "GigabitEthernet0/{n}",
    "frr": "eth{n}",
}
DIVISIONS_TSV = os.path.join(DATA_DIR, "jilin-divisions.tsv")


@dataclass(frozen=True)
class VpnKind:
    """A kind of VPN client that a concentrator serves: budget units (预算单位) or township finance
    offices (乡镇财政所, the county–township settlement network). Both share every code path (source,
    PKI registry, concentrator, client); only these facts differ."""

    name: str  # registry entry ``kind`` (budget units' entries carry none), lab client ``kind``
    key: str  # the site key that declares them, and the catalogue flag that lets them reach an app
    namespace: str  # IKE identity <code>.<namespace>.<domain>; connection <namespace>-<code>
    noun: str  # in messages
    ou: str  # organisational unit of their certificates
    group: str  # inventory group of the lab's client stand-ins
    function: str  # jincai_functions of those clients


#: The kinds of VPN client, by name (the one place for their identity namespace and group).
VPN_KINDS = {
    "budget_unit": VpnKind("budget_unit", "budget_units", "bu", "budget units", "budget unit",
                           "budget_unit_clients", "budget_unit_client"),
    "township": VpnKind("township", "townships", "tw", "township finance offices", "township finance office",
                        "township_clients", "township_client"),
}
CONFIG_NAMES = ("jincai.yml", "jincai.yaml")


class SourceError(Exception):
    """The source directory cannot be found or read at all."""


@dataclass
class Finding:
    """One validation result, printed as ``FILE: site CODE: FIELD: message (fix: ...) (line N)``."""

    file: str
    site: str | None
    field: str
    message: str
    fix: str = ""
    severity: str = "error"
    line: int | None = None

    def __str__(self):
        scope = f"site {self.site}" if self.site else "network"
        text = f"{self.file}: {scope}: {self.field}: {self.message}"
        if self.fix:
            text += f" (fix: {self.fix})"
        if self.line:
            text += f" (line {self.line})"
        if self.severity != "error":
            text = f"{self.severity}: {text}"
        return text


def load_yaml(path):
    """Parse one YAML file with the project's loader (see :mod:`jincai.source.sourceyaml`)."""
    with open(path, encoding="utf-8") as fh:
        return sourceyaml.parse(fh)[0]


def display_path(path):
    """Path as shown in messages: relative to the working directory when inside it."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


@dataclass
class Division:
    """One GB/T 2260 administrative division."""

    code: str
    parent: str
    level: str
    name_zh: str
    pinyin: str


def load_divisions(path=None):
    """Return ``{code: Division}`` from a TSV with columns code, parent_code, level, name_zh, name_pinyin."""
    path = path or DIVISIONS_TSV
    out = {}
    with open(path, encoding="utf-8") as fh:
        rows = (line for line in fh if not line.startswith("#"))
        for row in csv.DictReader(rows, delimiter="\t"):
            out[row["code"]] = Division(row["code"], row["parent_code"] or "", row["level"],
                                        row["name_zh"], row["name_pinyin"])
    return out


@dataclass
class Source:
    """A source of truth as read from disk (raw dicts, not yet validated)."""

    inv_dir: str
    source_dir: str
    network: dict = field(default_factory=dict)
    network_file: str = ""
    sites: list = field(default_factory=list)  # list of (file, site dict)
    vault: dict | None = None
    vault_file: str = ""
    load_errors: list = field(default_factory=list)
    marks: dict = field(default_factory=dict)  # line of every key and item (sourceyaml.Loader.marks)

    @property
    def plan(self):
        """The network's address plan dict."""
        plan = (self.network or {}).get("plan")
        return plan if isinstance(plan, dict) else {}

    def divisions(self):
        """The division table this source is checked against (``network.divisions_file`` or Jilin's)."""
        path = (self.network or {}).get("divisions_file")
        if path and not os.path.isabs(path):
            path = os.path.join(self.source_dir, path)
        return load_divisions(path)

    def keys_dir(self, network=None):
        """Where ``key_file: <name>`` keys live: ``keys_dir`` of ``network`` (default: this source's
        settings), relative to the source directory."""
        keys_dir = (self.network if network is None else network).get("keys_dir", "/var/lib/jincai-lab/keys")
        return keys_dir if os.path.isabs(keys_dir) else os.path.join(self.source_dir, keys_dir)

    def site_map(self):
        """``{code: site}`` for every site with a string code (first one wins on duplicates)."""
        out = {}
        for _, site in self.sites:
            if isinstance(site, dict) and isinstance(site.get("code"), str):
                out.setdefault(site["code"], site)
        return out


def find_source(path):
    """Return ``(inventory_dir, source_dir)`` for an inventory dir, its ``jincai.yml`` or a source dir."""
    path = os.path.abspath(path)
    if os.path.isfile(path):
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        raise SourceError(f"{display_path(path)}: no such inventory directory")
    for name in CONFIG_NAMES:
        cfg = os.path.join(path, name)
        if os.path.isfile(cfg):
            data = load_yaml(cfg) or {}
            sub = data.get("source", "source") if isinstance(data, dict) else "source"
            return path, os.path.join(path, sub)
    if os.path.isfile(os.path.join(path, "network.yml")):
        parent = os.path.dirname(path)
        inv = parent if any(os.path.isfile(os.path.join(parent, n)) for n in CONFIG_NAMES) else path
        return inv, path
    raise SourceError(f"{display_path(path)}: neither jincai.yml nor network.yml found "
                      "(an inventory dir holds jincai.yml and source/network.yml)")


def load(path, overrides=None):
    """Read a source of truth. ``overrides`` maps file paths to text used instead of the file."""
    overrides = overrides or {}
    inv_dir, source_dir = find_source(path)
    src = Source(inv_dir=inv_dir, source_dir=source_dir)

    def read(p):
        """Parse one source file; its duplicate keys become findings, its lines go to ``src.marks``."""
        if p in overrides:
            data, dups, marks = sourceyaml.parse(overrides[p])
        else:
            with open(p, encoding="utf-8") as fh:
                data, dups, marks = sourceyaml.parse(fh)
        src.marks.update(marks)
        shown = display_path(p)
        for key, line, first in dups:
            where = f"written twice on line {line}" if line == first else \
                f"written again at line {line} (first at line {first})"
            src.load_errors.append(Finding(shown, None, str(key), f"duplicate key: {where}; YAML would silently "
                                           "keep only the last one",
                                           f"write '{key}:' once and merge the two entries", line=line))
        return data

    def top_level(data, p, key, what):
        """Unknown top-level keys of a source file (only ``key`` belongs there)."""
        for k in data:
            if k != key:
                src.load_errors.append(Finding(display_path(p), None, str(k), "unknown top-level key",
                                               f"did you mean {key}? ({what})" if _close(k, key) else
                                               f"remove it; the file holds only '{key}:'",
                                               line=sourceyaml.line_of(src.marks, data, [k])))

    netfile = os.path.join(source_dir, "network.yml")
    src.network_file = display_path(netfile)
    try:
        data = read(netfile)
    except FileNotFoundError:
        src.load_errors.append(Finding(src.network_file, None, "network.yml", "file missing",
                                       "create source/network.yml with a top-level 'network:' mapping"))
        data = False
    except yaml.YAMLError as exc:
        src.load_errors.append(Finding(src.network_file, None, "yaml", _yaml_msg(exc), "fix the YAML syntax"))
        data = False
    if data is None:
        src.load_errors.append(Finding(src.network_file, None, "network", "the file is empty (or only comments)",
                                       "start the file with 'network:' and indent the settings under it"))
    elif data is not False:
        if isinstance(data, dict) and isinstance(data.get("network"), dict):
            src.network = data["network"]
            top_level(data, netfile, "network", "the settings are indented under 'network:'")
        else:
            src.load_errors.append(Finding(src.network_file, None, "network",
                                           "top-level 'network:' mapping missing",
                                           "start the file with 'network:' and indent the settings under it"))
    sitedir = os.path.join(source_dir, "sites")
    names = sorted(set(os.listdir(sitedir) if os.path.isdir(sitedir) else []) |
                   {os.path.basename(p) for p in overrides if os.path.dirname(p) == sitedir})
    for name in names:
        if not name.endswith((".yml", ".yaml")):
            continue
        p = os.path.join(sitedir, name)
        shown = display_path(p)
        try:
            data = read(p)
        except yaml.YAMLError as exc:
            src.load_errors.append(Finding(shown, None, "yaml", _yaml_msg(exc), "fix the YAML syntax"))
            continue
        if not isinstance(data, dict) or not isinstance(data.get("sites"), list):
            src.load_errors.append(Finding(shown, None, "sites", "top-level 'sites:' list missing",
                                           "the file must hold 'sites:' followed by a list of sites"))
            continue
        top_level(data, p, "sites", "the sites are listed under 'sites:'")
        for site in data["sites"]:
            src.sites.append((shown, site))
    vfile = os.path.join(inv_dir, "group_vars", "all", "vault.yml")
    src.vault_file = display_path(vfile)
    if os.path.isfile(vfile):
        try:
            src.vault = read(vfile) or {}
        except yaml.YAMLError as exc:
            src.load_errors.append(Finding(src.vault_file, None, "yaml", _yaml_msg(exc), "fix the YAML syntax"))
    return src


def _close(word, known):
    """True when ``word`` looks like a misspelling of ``known``."""
    import difflib  # noqa: PLC0415 - only on this error path

    return bool(difflib.get_close_matches(str(word), [known], n=1))


def _yaml_msg(exc):
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
    return f"{where}invalid YAML ({getattr(exc, 'problem', None) or exc})"


# --------------------------------------------------------------------------- derivation


@functools.lru_cache(maxsize=65536)
def net(cidr):
    """``ipaddress.ip_network`` with ``strict=False`` (cached: networks are immutable)."""
    return ipaddress.ip_network(cidr, strict=False)


@functools.lru_cache(maxsize=65536)
def link_ends(subnet):
    """``(parent_side, child_side)`` addresses of a point-to-point link subnet."""
    hosts = list(net(subnet).hosts())
    return str(hosts[0]), str(hosts[1])


def wan_segment(parent, child, role):
    """Segment id of a WAN link: ``wan-<parent>-<child>`` (``-backup`` appended for a backup uplink)."""
    return f"wan-{parent}-{child}" + ("" if role == "primary" else "-backup")


def parse_wan_segment(segment):
    """``(parent, child, role)`` of a :func:`wan_segment` id; None for any other segment."""
    parts = str(segment or "").split("-")
    if len(parts) not in (3, 4) or parts[0] != "wan" or (len(parts) == 4 and parts[3] != "backup"):
        return None
    return parts[1], parts[2], "backup" if len(parts) == 4 else "primary"


def city_of(site, sites):
    """The city code a site belongs to (itself for a city, None for the province)."""
    if site["tier"] == "city":
        return site["code"]
    if site["tier"] == "county":
        return site.get("parent")
    return None


def ospf_area(network, site):
    """OSPF area of a site's own networks: backbone, or per city (``0.0.0.<city code digits 3-4>``)."""
    if (network.get("ospf") or {}).get("areas", "single") != "per_city" or site["tier"] != "county":
        return "0.0.0.0"
    return f"0.0.0.{int(site['parent'][2:4])}"


def vpn_served_site(site, targets, kind="budget_unit"):
    """What a concentrator knows of one site it serves (itself, or a county of its city) for one
    :data:`VPN_KINDS` kind of client: the site's LAN (their traffic selector), the apps they may use
    (``budget_units.apps``, or ``townships.apps`` of a county) and the app servers that run them
    (``targets``: ``{app, host, address, port}``)."""
    return {"site": site["code"], "tier": site["tier"], "lan": site["lan"],
            "apps": list((site.get(VPN_KINDS[kind].key) or {}).get("apps", [])), "targets": targets}


def township_concentrator(county):
    """The site code of the concentrator that serves a county's township finance offices: the one its
    ``townships.concentrator`` names, else its city's (the one that serves its budget units). The one
    rule; :mod:`jincai.source.validate` checks that the site has a concentrator."""
    return (county.get("townships") or {}).get("concentrator") or county.get("parent")


def township_sites(site, sites):
    """The counties whose township finance offices a concentrator at ``site`` serves (``sites`` order)."""
    code = site["code"]
    return [s for s in sites if s.get("tier") == "county" and isinstance(s.get("townships"), dict)
            and township_concentrator(s) == code]


def vpn_registry(site):
    """Where a concentrator's budget-unit registry lives under the network's PKI directory: ``vpn``
    for the province's (as it always has), ``vpn/<site code>`` for a city's. One registry per
    concentrator: its own pool, units and bundles; one CA and one CRL for all."""
    return "vpn" if site["tier"] == "province" else f"vpn/{site['code']}"


@dataclass
class Derived:
    """Hosts (name -> host vars) and groups (name -> list of host names) of a valid source."""

    hosts: dict
    groups: dict
    children: dict


def vpn_access_segment(m):
    """The layer-2 segment id of the network's VPN access (``plan.vpn_access``): ONE segment that every
    concentrator's access port and every lab client's join, as the carrier's access network joins them
    in production, so a unit reaches any concentrator (the one a `jincai pki move` sent it to). Named
    after the province, ``vpnaccess-<province code>`` (the small lab's one concentrator's segment id,
    unchanged); the lab builds it as one bridge (:mod:`jincai.lab.net`)."""
    return f"vpnaccess-{m.province.code}"


def vpn_registries(m):
    """Every concentrator's registry directory (:func:`vpn_registry`) -> ``{"concentrator", "server",
    "lans"}``: its host name, its address on the VPN access segment and the LAN of each site whose budget
    units or township finance offices it serves. Derived once per model from its concentrators and given
    to every VPN client (``jincai_vpn_client.registries``): roles/vpn_client dials the concentrator of the
    registry where the unit is active now (``vpn_client_placement`` filter), so a unit moved with
    ``jincai pki move`` is served by the new one on the next run, without a change of the source."""
    return {c.registry: {"concentrator": c.host, "server": c.access_address,
                         "lans": {s["site"]: s["lan"] for s in [*c.served, *c.township_served]}}
            for c in m.concentrators}


def _prefixed(addr, cidr):
    return f"{addr}/{net(cidr).prefixlen}"


def _technician(tech, keys_dir):
    """Normalise a technician or administrator entry (resolving ``key_file`` against ``keys_dir``)."""
    key = tech.get("key")
    key_file = None
    if tech.get("key_file"):
        key_file = os.path.join(keys_dir, f"{tech['key_file']}.pub")
        if key is None and os.path.isfile(key_file):
            with open(key_file, encoding="utf-8") as fh:
                key = fh.read().strip()
    out = {"user": tech["user"], "name": tech.get("name", tech["user"]), "key": key,
           "key_file": key_file, "state": tech.get("state", "present")}
    if "roles" in tech:  # an administrator's role (system, security, audit): the accounts role's sudo rules
        out["roles"] = list(tech["roles"])
    return out


# --------------------------------------------------------------------------- the typed model
#
# :func:`build` turns a *valid* source into a :class:`Model`: sites, links, parties, hosts and VPN
# concentrators as small typed objects, each kind built by one function below. Host variables are a
# serialisation of the model (:meth:`Model.hostvars`); :func:`derive` returns them with the groups.


def tier_apps(applications, tier):
    """The applications of the catalogue (network.yml ``applications``) that ``tier`` runs, in catalogue order."""
    return [a for a, spec in (applications or {}).items()
            if isinstance(spec, dict) and isinstance(spec.get("tiers"), dict) and tier in spec["tiers"]]


def served_sites(site, sites):
    """The sites whose budget units a concentrator at ``site`` serves: the site itself and, for a city,
    its counties (in ``sites`` order). The one rule; :mod:`jincai.source.validate` sizes pools with it."""
    code = site["code"]
    return [site] + ([s for s in sites if s.get("tier") == "county" and s.get("parent") == code]
                     if site.get("tier") == "city" else [])


def _host_entry(site, function):
    """The first host entry of ``site`` (a source dict) with ``function``, or None."""
    return next((h for h in site.get("hosts") or [] if h.get("function") == function), None)


def time_source(site):
    """Address of the host that serves time at ``site`` (a source dict): its services host, else its
    first app server (a machine-room server running chrony), else its router."""
    s = _host_entry(site, "services") or _host_entry(site, "app_server") or _host_entry(site, "router")
    return s["address"]


@dataclass
class Interface:
    """One interface of a host; ``name`` is given by :func:`_number` once the host's list is complete."""

    role: str  # mgmt, uplink, downlink, lan, metro, vpn_access
    address: str  # address/prefixlen
    segment: str  # layer-2 segment id (wan_segment() for WAN links)
    peer: str | None = None
    ospf_area: str | None = None
    ospf_cost: int | None = None
    ospf_passive: bool | None = None
    name: str | None = None

    def vars(self):
        """``jincai_interfaces[]`` entry."""
        d = {"name": self.name, "role": self.role, "address": self.address, "peer": self.peer,
             "segment": self.segment, "ospf_area": self.ospf_area, "ospf_cost": self.ospf_cost}
        if self.ospf_passive is not None:
            d["ospf_passive"] = self.ospf_passive
        return d


@dataclass(frozen=True)
class Link:
    """A WAN link between a site (``child``) and the site it hangs under (``parent``)."""

    parent: str
    child: str
    subnet: str
    role: str  # primary | backup
    carrier: str | None
    ospf_area: str  # the child's area for a county's link, the backbone otherwise

    @property
    def segment(self):
        return wan_segment(self.parent, self.child, self.role)

    @property
    def cost(self):
        return LINK_COST[self.role]

    @property
    def network(self):
        """The link subnet as written by :mod:`ipaddress` (``10.22.255.0/30``)."""
        return str(net(self.subnet))

    def address(self, side):
        """The address (no prefix) of the ``parent`` or ``child`` end."""
        ends = link_ends(self.subnet)
        return ends[0] if side == "parent" else ends[1]

    def end(self, side):
        """``address/prefixlen`` of the ``parent`` or ``child`` end."""
        return _prefixed(self.address(side), self.subnet)


@dataclass
class Target:
    """An app server answering one application for a party, a budget unit or a VPN client."""

    app: str
    host: str
    address: str
    port: int | None

    def vars(self):
        return {"app": self.app, "host": self.host, "address": self.address, "port": self.port}


@dataclass
class Party:
    """An external party on a site's metro segment (an inventory host only when ``managed``)."""

    site: str
    name: str  # host name: <code>-<name>
    kind: str
    org: str | None
    address: str | None
    managed: bool
    apps: list
    targets: list  # of Target
    mgmt: str | None = None

    def vars(self):
        """``jincai_parties[]`` entry."""
        return {"name": self.name, "kind": self.kind, "org": self.org, "address": self.address,
                "managed": self.managed, "apps": list(self.apps), "targets": [t.vars() for t in self.targets]}


@dataclass
class Concentrator:
    """A VPN concentrator: the budget units of the sites it serves dial in to it."""

    host: str
    site: str
    pool: str | None
    access_address: str
    access_network: str
    lan: str
    served_sites: list  # site codes (served_sites())
    served: list  # vpn_served_site() per served site: a county's unit reaches its own county's apps (issue 16)
    budget_units: int
    apps: list
    targets: list  # of Target
    clients: list  # VPN client host names
    registry: str
    # township finance offices (乡镇财政所) of the counties whose townships it serves: vpn_served_site()
    # per county (kind township), their count and applications (township_sites())
    township_served: list = field(default_factory=list)
    townships: int = 0
    township_apps: list = field(default_factory=list)

    def vars(self):
        """``jincai_vpn``."""
        return {"served": [dict(x) for x in self.served],
                "pool": self.pool, "access_address": self.access_address, "access_network": self.access_network,
                "lan": self.lan, "budget_units": self.budget_units, "served_sites": list(self.served_sites),
                "apps": list(self.apps), "targets": [t.vars() for t in self.targets],
                "clients": list(self.clients), "registry": self.registry,
                "township_served": [dict(x) for x in self.township_served], "townships": self.townships,
                "township_apps": list(self.township_apps)}


@dataclass
class VpnClient:
    """A lab stand-in for a budget unit or a township finance office (``kind``, :data:`VPN_KINDS`),
    dialling in to its site's concentrator."""

    name: str
    site: str
    concentrator: str
    server: str
    pool: str | None
    home: str  # the unit's own site: the concentrator's or a county it serves
    lan: str  # the home site's LAN
    enrolment: str  # bundle (the province issues the key) or csr (the unit keeps its key)
    apps: list
    targets: list  # of Target
    registry: str
    kind: str = "budget_unit"  # or township (a township finance office of its home county)
    # every concentrator's registry -> {concentrator, server, lans} (vpn_registries(), shared by all clients):
    # roles/vpn_client serves the unit from the registry where it is active (it follows `jincai pki move`)
    registries: dict = field(default_factory=dict)

    def vars(self):
        """``jincai_vpn_client``: where the source places the client (``concentrator``, ``server``,
        ``registry``, ``home``, ``lan``, ...) and ``registries``, where a move may place it."""
        return {"concentrator": self.concentrator, "server": self.server, "pool": self.pool,
                "home": self.home, "lan": self.lan, "enrolment": self.enrolment,
                "apps": list(self.apps), "targets": [t.vars() for t in self.targets], "registry": self.registry,
                "kind": self.kind,
                "registries": {r: dict(v, lans=dict(v["lans"])) for r, v in self.registries.items()}}


@dataclass
class Site:
    """One site: its plan, its router's settings, links, parties and the names of its hosts."""

    code: str
    tier: str
    name_zh: str
    pinyin: str
    parent: str | None
    city_code: str | None
    block: str
    lan: str
    metro: str | None
    gateway: str  # the router's LAN address
    ospf_area: str
    platform: str
    loopback: str
    twin_of: str | None
    vpn_pool: str | None
    router: str  # host name
    metro_gateway: str | None
    apps: list  # applications of the tier
    technicians: list  # normalised (_technician)
    uplinks: list = field(default_factory=list)  # of Link, primary first
    downlinks: list = field(default_factory=list)  # of Link, children in code order
    parties: list = field(default_factory=list)  # of Party
    hosts: list = field(default_factory=list)  # host names, router first
    source: dict = field(default_factory=dict, repr=False)

    def info(self):
        """``jincai_site``."""
        return {"code": self.code, "name_zh": self.name_zh, "pinyin": self.pinyin, "tier": self.tier,
                "parent": self.parent, "city_code": self.city_code, "block": self.block, "lan": self.lan,
                "gateway": self.gateway}


@dataclass
class Host:
    """One inventory host: a router, a machine-room server, a managed party or a VPN client."""

    name: str
    site: str
    kind: str  # router | server | party | client
    functions: list
    address: str
    mgmt: str | None
    interfaces: list  # of Interface
    routes: list | None = None
    groups: list = field(default_factory=list)
    party: Party | None = None
    vpn: Concentrator | None = None
    vpn_client: VpnClient | None = None

    def interfaces_of(self, role):
        """The host's interfaces with ``role`` (``uplink``, ``metro``, ...), in interface order."""
        return [i for i in self.interfaces if i.role == role]


@dataclass
class Model:
    """The derived network: every object once, host variables serialised from them."""

    network: dict
    applications: dict  # the catalogue: name -> {name_zh, port}
    admins: list
    province_services: dict
    management_network: str | None
    control_node: str | None
    sites: dict  # code -> Site, province, cities, counties in code order
    links: list  # of Link
    hosts: dict  # name -> Host, site by site
    groups: dict  # name -> host names

    @property
    def name(self):
        """``network.name``: names the control-node state of this network (:mod:`jincai.paths`)."""
        return self.network.get("name")

    @property
    def domain(self):
        """``network.domain`` (None when the source names none)."""
        return self.network.get("domain")

    @property
    def environment(self):
        """``lab`` or ``production`` (``network.environment``; production when unset)."""
        return self.network.get("environment", "production")

    @property
    def lab(self):
        """True for a lab source (its hosts get a management interface and ``jincai_lab``)."""
        return self.environment == "lab"

    @property
    def control_interface(self):
        """The control node's ``address/prefixlen`` on the lab's management network; None in
        production or when the plan names no control node (the small lab's default then applies)."""
        if self.lab and self.management_network and self.control_node:
            return _prefixed(self.control_node, self.management_network)
        return None

    @property
    def parties(self):
        return [p for s in self.sites.values() for p in s.parties]

    @property
    def concentrators(self):
        """Every :class:`Concentrator`, site by site (the province's first, then the cities')."""
        return [h.vpn for h in self.hosts.values() if h.vpn]

    def vpn_clients(self, concentrator):
        """The :class:`VpnClient` of each lab client of ``concentrator`` (in its ``clients`` order)."""
        return [self.hosts[c].vpn_client for c in concentrator.clients]

    def technicians(self, host):
        """The technicians who log in to ``host``: its site's (normalised), none on external parties
        and budget-unit clients. The administrators (:attr:`admins`) log in everywhere."""
        return [] if host.kind in ("party", "client") else self.sites[host.site].technicians

    def ntp_servers(self, host):
        """The NTP chain: the province services host follows the authorised upstream and every other
        province host follows it; a city's hosts follow the province's time server; a county's its
        city's, then the province's."""
        site = self.sites[host.site]
        if site.tier == "province":
            svc = self.province_services["ntp"]
            if svc and "services" not in host.functions and host.address != svc:
                return [svc]
            return list(self.network.get("ntp_upstream") or [])
        if site.tier == "city":
            return [self._time_source(self.province)]
        return [self._time_source(self.sites[site.parent]), self._time_source(self.province)]

    @functools.cached_property
    def province(self):
        """The province :class:`Site`."""
        return next(s for s in self.sites.values() if s.tier == "province")

    def _time_source(self, site):
        cache = self.__dict__.setdefault("_time_sources", {})
        if site.code not in cache:
            cache[site.code] = time_source(site.source)
        return cache[site.code]

    def hostvars(self, name):
        """The host variables of one host (fresh containers; the catalogue is shared)."""
        h = self.hosts[name]
        site = self.sites[h.site]
        ifaces = [i.vars() for i in h.interfaces]
        mgmt_nets = [self.management_network, site.lan] if self.management_network else [site.lan]
        hv = {
            "ansible_host": h.mgmt,
            "jincai_environment": self.environment,
            "jincai_network_name": self.name,
            "jincai_domain": self.domain,
            "jincai_site_code": site.code,
            "jincai_tier": site.tier,
            "jincai_site": site.info(),
            "jincai_functions": list(h.functions),
            "jincai_address": h.address,
            "jincai_mgmt_address": h.mgmt,
            "jincai_interfaces": ifaces,
            "jincai_management_networks": mgmt_nets,
            "jincai_province_services": dict(self.province_services),
            "jincai_ntp_servers": self.ntp_servers(h),
            "jincai_technicians": [dict(t) for t in self.technicians(h)],
            "jincai_admins": [dict(a) for a in self.admins],
            "jincai_applications": self.applications,
        }
        if self.lab:
            hv["jincai_lab"] = {"capabilities": bool({"router", "vpn_concentrator"} & set(h.functions)),
                                "segments": [i.segment for i in h.interfaces]}
            if self.control_interface:
                hv["jincai_lab"]["control_node"] = self.control_interface
        if h.kind == "router":
            hv["jincai_router"] = self._router_vars(site, h, ifaces)
            hv["jincai_parties"] = [p.vars() for p in site.parties]
        else:
            hv["jincai_routes"] = [dict(r) for r in h.routes]
        if h.kind == "server" and "app_server" in h.functions:
            hv["jincai_apps"] = list(site.apps)
        if h.vpn:
            hv["jincai_vpn"] = h.vpn.vars()
        if h.party:
            p = h.party.vars()
            hv["jincai_party"] = {k: p[k] for k in ("kind", "org", "apps", "targets")}
        if h.vpn_client:
            hv["jincai_vpn_client"] = h.vpn_client.vars()
        return hv

    def _router_vars(self, site, h, ifaces):
        """``jincai_router`` (its ``interfaces`` are the same entries as ``jincai_interfaces``, less mgmt)."""
        ospf = self.network.get("ospf") or {}
        data = [i for i in ifaces if i["role"] != "mgmt"]
        networks = [{"prefix": f"{site.loopback}/32", "area": site.ospf_area}]
        networks += [{"prefix": str(net(i["address"])), "area": i["ospf_area"]} for i in data]
        # the province's in-band management zone (role mgmt with an area; the lab's out-of-band port
        # has none): advertised, passive, so every site routes back to the control node
        networks += [{"prefix": str(net(i["address"])), "area": i["ospf_area"]} for i in ifaces
                     if i["role"] == "mgmt" and i["ospf_area"] is not None]
        static = []
        vpn = next((self.hosts[n].vpn for n in site.hosts if self.hosts[n].vpn), None)
        if vpn and site.vpn_pool:
            vpn_host = self.hosts[vpn.host]
            static.append({"prefix": site.vpn_pool, "via": vpn_host.address, "redistribute": True})
        out = {
            "platform": site.platform, "hostname": h.name, "loopback": site.loopback, "router_id": site.loopback,
            "ospf": {"area": site.ospf_area, "hello": ospf.get("hello", 10), "dead": ospf.get("dead", 40),
                     "passive": [i["name"] for i in ifaces if i.get("ospf_passive")]},
            "networks": networks,
            "interfaces": data,
            "static_routes": static,
            "metro_gateway": site.metro_gateway,
        }
        if site.twin_of:
            # province twin: FRR carries the data plane, the production platform is still rendered
            out["twin_of"] = site.twin_of
        return out

    def derived(self):
        """Host variables of every host and the groups (:class:`Derived`)."""
        return Derived(hosts={name: self.hostvars(name) for name in self.hosts},
                       groups={g: list(m) for g, m in self.groups.items()}, children={})


def _number(ifaces, lab, platform=None, kind="server"):
    """Name interfaces in order; index 0 is the management interface in the lab.

    A lab host managed in-band (no ``mgmt`` recorded, ``plan.management.mode: inband``) has no
    management port: its ``eth0`` is left uncabled and its other ports keep the names they have on an
    out-of-band lab host (router uplink ``eth1``, server LAN ``eth1``)."""
    start = 0 if lab else (1 if kind == "router" else 0)
    if lab and not any(d.role == "mgmt" and d.segment == "mgmt" for d in ifaces):
        start = 1
    for i, d in enumerate(ifaces):
        idx = i + start
        if lab and d.role == "mgmt":
            d.name = "eth0"
        elif lab or kind == "server":
            d.name = f"eth{idx}"
        else:
            d.name = PLATFORM_IFNAME[platform].format(n=idx)
    return ifaces


def _build_sites(network, raw_sites, keys_dir):
    """One :class:`Site` per source site, province first, then cities and counties in code order."""
    ordered = sorted(raw_sites.values(), key=lambda s: (TIERS.index(s["tier"]), s["code"]))
    out = {}
    for s in ordered:
        rtr = _host_entry(s, "router")
        out[s["code"]] = Site(
            code=s["code"], tier=s["tier"], name_zh=s["name_zh"], pinyin=s["pinyin"], parent=s.get("parent"),
            city_code=city_of(s, raw_sites), block=s["block"], lan=s["lan"], metro=s.get("metro"),
            gateway=rtr["address"], ospf_area=ospf_area(network, s), platform=s["router"]["platform"],
            loopback=s["router"]["loopback"], twin_of=s["router"].get("twin_of"), vpn_pool=s.get("vpn_pool"),
            router=f"{s['code']}-{rtr['name']}",
            metro_gateway=str(next(net(s["metro"]).hosts())) if s.get("metro") else None,
            apps=tier_apps(network.get("applications"), s["tier"]),
            technicians=[_technician(t, keys_dir) for t in s.get("technicians") or []], source=s)
    return out


def _build_links(sites):
    """Every WAN link, from each site's uplinks; attached to both ends' sites."""
    links = []
    for site in sites.values():
        for up in site.source.get("uplinks") or []:
            area = site.ospf_area if site.tier == "county" else "0.0.0.0"
            link = Link(parent=up["peer"], child=site.code, subnet=up["subnet"], role=up["role"],
                        carrier=up.get("carrier"), ospf_area=area)
            links.append(link)
            site.uplinks.append(link)
    by_parent = {}
    for lk in links:
        by_parent.setdefault(lk.parent, []).append(lk)
    for site in sites.values():
        # a county added later takes the next free port: children in code order (`site add` reports any move)
        site.downlinks = sorted(by_parent.get(site.code, ()), key=lambda lk: (lk.child, LINK_ROLES.index(lk.role)))
    return links


def _targets(site, apps, applications):
    """Which app server at ``site`` serves each of ``apps`` (a :class:`Target` per app and server)."""
    servers = [h for h in site.source.get("hosts") or [] if h["function"] == "app_server"]
    return [Target(app, f"{site.code}-{h['name']}", h["address"], (applications.get(app) or {}).get("port"))
            for app in apps for h in servers if app in site.apps]


def _build_parties(sites, applications):
    """Every external party, on its site."""
    for site in sites.values():
        for p in site.source.get("parties") or []:
            apps = list(p.get("apps") or [])
            site.parties.append(Party(site=site.code, name=f"{site.code}-{p['name']}", kind=p["kind"],
                                      org=p.get("org"), address=p.get("address"), managed=bool(p.get("managed")),
                                      apps=apps, targets=_targets(site, apps, applications), mgmt=p.get("mgmt")))


def _mgmt_iface(lab, address, mgmt_net):
    """The lab's out-of-band management port (``eth0``), for a host that records ``mgmt``; a lab host
    without one is managed in-band (over the WAN, on its loopback or LAN address)."""
    return [Interface("mgmt", _prefixed(address, mgmt_net), "mgmt")] if lab and address else []


def _build_router(m, site):
    """The site's router: uplinks, LAN, (in-band) management, metro, then downlinks."""
    rtr = _host_entry(site.source, "router")
    mgmt_net = m.management_network
    ifaces = _mgmt_iface(m.lab, rtr.get("mgmt"), mgmt_net)
    for lk in site.uplinks:
        ifaces.append(Interface("uplink", lk.end("child"), lk.segment, m.sites[lk.parent].router, lk.ospf_area,
                                lk.cost, False))
    ifaces.append(Interface("lan", _prefixed(site.gateway, site.lan), f"lan-{site.code}", None, site.ospf_area,
                            10, True))
    if not m.lab and site.tier == "province" and mgmt_net:
        # in-band management: the management zone is a segment of the province router
        ifaces.append(Interface("mgmt", _prefixed(str(next(net(mgmt_net).hosts())), mgmt_net),
                                f"mgmt-{site.code}", None, site.ospf_area, 10, True))
    if site.metro:
        ifaces.append(Interface("metro", _prefixed(site.metro_gateway, site.metro), f"metro-{site.code}", None,
                                site.ospf_area, 10, True))
    for lk in site.downlinks:
        ifaces.append(Interface("downlink", lk.end("parent"), lk.segment, m.sites[lk.child].router, lk.ospf_area,
                                lk.cost, False))
    _number(ifaces, m.lab, site.platform, "router")
    mgmt = rtr.get("mgmt") or site.loopback  # in-band: the loopback (production, and an in-band lab site)
    return Host(site.router, site.code, "router", ["router"], site.gateway, mgmt, ifaces,
                groups=[site.tier, f"site_{site.code}", "routers", f"platform_{site.platform}"])


def _vpn_served(m, sites, kind):
    """:func:`vpn_served_site` of each of ``sites`` (source dicts) for clients of ``kind``, with the app
    servers that run the kind's apps there; and those apps, in catalogue order."""
    key, order = VPN_KINDS[kind].key, list(m.applications)
    served = [vpn_served_site(s, [t.vars() for t in _targets(m.sites[s["code"]], (s.get(key) or {}).get("apps", []),
                                                             m.applications)], kind) for s in sites]
    apps = sorted({a for s in served for a in s["apps"]}, key=lambda a: order.index(a) if a in m.applications else 99)
    return served, apps, sum((s.get(key) or {}).get("count", 0) for s in sites)


def _build_concentrator(m, site, h):
    """The concentrator at ``site`` (source entry ``h``) and what it serves: the budget units of its
    site (and a city's counties), the township finance offices of the counties whose townships it serves."""
    sources = [m.sites[c].source for c in m.sites]
    units = served_sites(site.source, sources)
    served, bu_apps, bu_count = _vpn_served(m, units, "budget_unit")
    township_served, tw_apps, tw_count = _vpn_served(m, township_sites(site.source, sources), "township")
    return Concentrator(
        host=f"{site.code}-{h['name']}", site=site.code, pool=site.vpn_pool, access_address=h["vpn_access"],
        access_network=m.network["plan"]["vpn_access"], lan=site.lan,
        served_sites=[s["code"] for s in units], served=served, budget_units=bu_count,
        apps=bu_apps, targets=_targets(site, bu_apps, m.applications),
        clients=[c["name"] for c in site.source.get("vpn_clients") or []],
        registry=vpn_registry(site.source),
        township_served=township_served, townships=tw_count, township_apps=tw_apps)


def _build_servers(m, site):
    """The machine-room servers of ``site`` (services, app servers, the VPN concentrator)."""
    out = []
    city_time = time_source(site.source) if site.tier == "city" else None
    for h in site.source.get("hosts") or []:
        if h["function"] == "router":
            continue
        name = f"{site.code}-{h['name']}"
        ifaces = _mgmt_iface(m.lab, h.get("mgmt"), m.management_network)
        ifaces.append(Interface("lan", _prefixed(h["address"], site.lan), f"lan-{site.code}"))
        if h["function"] == "vpn_concentrator":
            ifaces.append(Interface("vpn_access", _prefixed(h["vpn_access"], m.network["plan"]["vpn_access"]),
                                    vpn_access_segment(m)))
        _number(ifaces, m.lab)
        functions, groups = [h["function"]], []
        if h["function"] != "services" and h["address"] == city_time:
            # the city's time server for its counties (the province's is its services host)
            functions.append("ntp_server")
            groups.append("ntp_servers")
        groups.append({"app_server": "app_servers", "services": "services",
                       "vpn_concentrator": "vpn_concentrators"}[h["function"]])
        groups += ["machine_room", site.tier, f"site_{site.code}"]
        host = Host(name, site.code, "server", functions, h["address"], h.get("mgmt") or h["address"], ifaces,
                    routes=[{"to": "default", "via": site.gateway}], groups=groups)
        if h["function"] == "vpn_concentrator":
            host.vpn = _build_concentrator(m, site, h)
        out.append(host)
    return out


def _build_party_hosts(m, site):
    """Managed parties (the lab's bank, PBC and tax machines) as hosts on the metro segment."""
    out = []
    for p in site.parties:
        if not p.managed:
            continue
        ifaces = _mgmt_iface(m.lab, p.mgmt, m.management_network)
        ifaces.append(Interface("metro", _prefixed(p.address, site.metro), f"metro-{site.code}"))
        _number(ifaces, m.lab)
        out.append(Host(p.name, site.code, "party", ["external_party"], p.address, p.mgmt or p.address, ifaces,
                        routes=[{"to": "default", "via": site.metro_gateway}], groups=["external_parties"],
                        party=p))
    return out


def _build_clients(m, site):
    """VPN clients (lab only: a few stand-ins for the 1,040 units and for township finance offices,
    ``kind: township``, whose own site is a county whose townships this concentrator serves)."""
    out = []
    vpn_host = _host_entry(site.source, "vpn_concentrator")
    for c in site.source.get("vpn_clients") or []:
        kind = VPN_KINDS[c.get("kind", "budget_unit")]
        ifaces = _mgmt_iface(m.lab, c.get("mgmt"), m.management_network)
        ifaces.append(Interface("vpn_access", _prefixed(c["address"], m.network["plan"]["vpn_access"]),
                                vpn_access_segment(m)))
        _number(ifaces, m.lab)
        home = m.sites.get(c.get("home") or site.code, site)  # this site or a county it serves
        apps = list((home.source.get(kind.key) or {}).get("apps", []))
        client = VpnClient(name=c["name"], site=site.code, concentrator=f"{site.code}-{vpn_host['name']}",
                           server=vpn_host["vpn_access"], pool=site.vpn_pool, home=home.code, lan=home.lan,
                           enrolment=c.get("enrolment", "bundle"), apps=apps,
                           targets=_targets(home, apps, m.applications), registry=vpn_registry(site.source),
                           kind=kind.name)
        out.append(Host(c["name"], site.code, "client", [kind.function], c["address"],
                        c.get("mgmt") or c["address"], ifaces, routes=[], groups=[kind.group],
                        vpn_client=client))
    return out


def build(src):
    """Turn a *valid* source into a :class:`Model` (see docs/architecture.md)."""
    network, plan = src.network, src.plan
    mgmt_plan = plan.get("management") or {}
    keys_dir = src.keys_dir()
    raw_sites = src.site_map()
    sites = _build_sites(network, raw_sites, keys_dir)
    province = next(s for s in sites.values() if s.tier == "province")
    svc = _host_entry(province.source, "services")
    services_addr = svc["address"] if svc else None
    m = Model(network=network, applications=network.get("applications") or {},
              admins=[_technician(a, keys_dir) for a in network.get("admins") or []],
              province_services={"collector": services_addr, "ntp": services_addr, "artifacts": services_addr},
              management_network=mgmt_plan.get("network"), control_node=mgmt_plan.get("control_node"),
              sites=sites, links=_build_links(sites), hosts={}, groups={})
    _build_parties(sites, m.applications)
    for site in sites.values():
        for host in [_build_router(m, site), *_build_servers(m, site), *_build_party_hosts(m, site),
                     *_build_clients(m, site)]:
            m.hosts[host.name] = host
            site.hosts.append(host.name)
            for g in host.groups:
                m.groups.setdefault(g, []).append(host.name)
    registries = vpn_registries(m)
    for host in m.hosts.values():
        if host.vpn_client:
            host.vpn_client.registries = registries
    return m


def derive(src):
    """Hosts, host vars and groups of a *valid* source: the serialisation of :func:`build`'s model."""
    return build(src).derived()
