"""The network source of truth: loading ``inventories/<name>/source/`` and deriving host data.

The source is declarative YAML (see docs/source-of-truth.md): ``network.yml`` holds the address
plan and defaults, ``sites/*.yml`` hold the sites with every allocation recorded. This module
only reads; :mod:`jincai.validate` checks the raw data and :func:`derive` turns a *valid* source
into hosts, groups and host vars (what :mod:`jincai.inventory` prints for Ansible).
"""

from __future__ import annotations

import csv
import functools
import ipaddress
import os
from dataclasses import dataclass, field

import yaml

from jincai import sourceyaml
from jincai.sourceyaml import VaultValue  # noqa: F401 - re-exported: validate checks vault values

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
DIVISIONS_TSV = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "jilin-divisions.tsv")
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
    """Parse one YAML file with the project's loader (see :mod:`jincai.sourceyaml`)."""
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


def vpn_served_site(site, targets):
    """What a concentrator knows of one site it serves (itself, or a county of its city): the site's
    LAN (its units' traffic selector), the apps its budget units may use (``budget_units.apps``) and
    the app servers that run them (``targets``: ``{app, host, address, port}``)."""
    return {"site": site["code"], "tier": site["tier"], "lan": site["lan"],
            "apps": list((site.get("budget_units") or {}).get("apps", [])), "targets": targets}


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
    return {"user": tech["user"], "name": tech.get("name", tech["user"]), "key": key,
            "key_file": key_file, "state": tech.get("state", "present")}


def derive(src):
    """Turn a *valid* source into hosts, host vars and groups (see docs/architecture.md)."""
    network, plan = src.network, src.plan
    lab = network.get("environment", "production") == "lab"
    sites = src.site_map()
    ordered = sorted(sites.values(), key=lambda s: (TIERS.index(s["tier"]), s["code"]))
    province = next(s for s in ordered if s["tier"] == "province")
    mgmt_plan = plan.get("management") or {}
    mgmt_net = mgmt_plan.get("network")
    keys_dir = src.keys_dir()
    ospf = network.get("ospf") or {}
    apps_catalogue = network.get("applications") or {}
    tier_apps = network.get("tiers") or {}
    admins = [_technician(a, keys_dir) for a in network.get("admins") or []]

    def hname(site, name):
        return f"{site['code']}-{name}"

    def host_entry(site, function):
        return next((h for h in site.get("hosts") or [] if h["function"] == function), None)

    def router_name(site):
        return hname(site, host_entry(site, "router")["name"])

    # site-level facts used by several hosts
    svc = host_entry(province, "services")
    services_addr = svc["address"] if svc else None
    province_services = {"collector": services_addr, "ntp": services_addr, "artifacts": services_addr}

    def ntp_server(site):
        """The host that serves time at ``site``: its services host, else its first app server
        (a machine-room server running chrony), else its router."""
        s = host_entry(site, "services") or host_entry(site, "app_server") or host_entry(site, "router")
        return s["address"]

    children = {code: [] for code in sites}  # (child site, uplink) per parent
    for s in ordered:
        for up in s.get("uplinks") or []:
            children[up["peer"]].append((s, up))

    def app_targets(site, apps):
        """Which app server at ``site`` serves each of ``apps``."""
        out = []
        servers = [h for h in site.get("hosts") or [] if h["function"] == "app_server"]
        for app in apps:
            for h in servers:
                if app in tier_apps.get(site["tier"], []):
                    out.append({"app": app, "host": hname(site, h["name"]), "address": h["address"],
                                "port": (apps_catalogue.get(app) or {}).get("port")})
        return out

    def ifname(platform, idx, kind):
        if lab or kind == "server":
            return f"eth{idx}"
        return PLATFORM_IFNAME[platform].format(n=idx)

    def iface(role, address, segment, peer=None, area=None, cost=None, passive=None):
        d = {"name": None, "role": role, "address": address, "peer": peer, "segment": segment,
             "ospf_area": area, "ospf_cost": cost}
        if passive is not None:
            d["ospf_passive"] = passive
        return d

    def number(ifaces, platform=None, kind="server"):
        """Name interfaces in order; index 0 is the management interface in the lab."""
        start = 0 if lab else (1 if kind == "router" else 0)
        for i, d in enumerate(ifaces):
            d["name"] = "eth0" if (lab and d["role"] == "mgmt") else ifname(platform, i + start, kind)
        return ifaces

    hosts, groups = {}, {}

    def add(group, host):
        groups.setdefault(group, []).append(host)

    for site in ordered:
        code, tier = site["code"], site["tier"]
        city_code = city_of(site, sites)
        area = ospf_area(network, site)
        rtr = host_entry(site, "router")
        gateway = rtr["address"]
        lan = site["lan"]
        site_info = {"code": code, "name_zh": site["name_zh"], "pinyin": site["pinyin"], "tier": tier,
                     "parent": site.get("parent"), "city_code": city_code, "block": site["block"],
                     "lan": lan, "gateway": gateway}
        if tier == "province":
            ntp = list(network.get("ntp_upstream") or [])
        elif tier == "city":
            ntp = [ntp_server(province)]
        else:
            ntp = [ntp_server(sites[site["parent"]]), ntp_server(province)]
        mgmt_nets = [mgmt_net, lan] if mgmt_net else [lan]
        techs = [_technician(t, keys_dir) for t in site.get("technicians") or []]
        apps = list(tier_apps.get(tier, []))
        vpn_host = host_entry(site, "vpn_concentrator")
        parties = []
        for p in site.get("parties") or []:
            parties.append({"name": hname(site, p["name"]), "kind": p["kind"], "org": p.get("org"),
                            "address": p.get("address"), "managed": bool(p.get("managed")),
                            "apps": list(p.get("apps") or []),
                            "targets": app_targets(site, p.get("apps") or [])})

        def common(name, functions, address, mgmt, ifaces, segments_extra=()):
            hv = {
                "ansible_host": mgmt,
                "jincai_environment": network.get("environment", "production"),
                "jincai_network_name": network.get("name"),
                "jincai_domain": network.get("domain"),
                "jincai_site_code": code,
                "jincai_tier": tier,
                "jincai_site": dict(site_info),
                "jincai_functions": functions,
                "jincai_address": address,
                "jincai_mgmt_address": mgmt,
                "jincai_interfaces": ifaces,
                "jincai_management_networks": list(mgmt_nets),
                "jincai_province_services": dict(province_services),
                "jincai_ntp_servers": list(ntp),
                "jincai_technicians": [dict(t) for t in techs],
                "jincai_admins": [dict(a) for a in admins],
                "jincai_applications": apps_catalogue,
            }
            if lab:
                needs_caps = bool({"router", "vpn_concentrator"} & set(functions))
                hv["jincai_lab"] = {"capabilities": needs_caps,
                                    "segments": [i["segment"] for i in ifaces]}
                if mgmt_net and mgmt_plan.get("control_node"):
                    hv["jincai_lab"]["control_node"] = _prefixed(mgmt_plan["control_node"], mgmt_net)
            hosts[name] = hv
            return hv

        # --- the router
        platform = site["router"]["platform"]
        loopback = site["router"]["loopback"]
        r_ifaces = []
        if lab:
            r_ifaces.append(iface("mgmt", _prefixed(rtr["mgmt"], mgmt_net), "mgmt"))
        for up in site.get("uplinks") or []:
            parent = sites[up["peer"]]
            link_area = ospf_area(network, site) if tier == "county" else "0.0.0.0"
            r_ifaces.append(iface("uplink", _prefixed(link_ends(up["subnet"])[1], up["subnet"]),
                                  wan_segment(parent["code"], code, up["role"]), router_name(parent), link_area,
                                  LINK_COST[up["role"]], False))
        r_ifaces.append(iface("lan", _prefixed(gateway, lan), f"lan-{code}", None, area, 10, True))
        if not lab and tier == "province" and mgmt_net:
            # in-band management: the management zone is a segment of the province router
            mgw = str(next(net(mgmt_net).hosts()))
            r_ifaces.append(iface("mgmt", _prefixed(mgw, mgmt_net), f"mgmt-{code}", None, area, 10, True))
        metro_gw = None
        if site.get("metro"):
            metro_gw = str(next(net(site["metro"]).hosts()))
            r_ifaces.append(iface("metro", _prefixed(metro_gw, site["metro"]), f"metro-{code}", None, area, 10, True))
        # Downlinks come last: a county added later takes the next free port and moves none of the
        # router's LAN, metro or existing WAN ports (children in code order; `site add` reports any move).
        for child, up in sorted(children[code], key=lambda cu: (cu[0]["code"], LINK_ROLES.index(cu[1]["role"]))):
            link_area = ospf_area(network, child) if child["tier"] == "county" else "0.0.0.0"
            r_ifaces.append(iface("downlink", _prefixed(link_ends(up["subnet"])[0], up["subnet"]),
                                  wan_segment(code, child["code"], up["role"]), router_name(child), link_area,
                                  LINK_COST[up["role"]], False))
        number(r_ifaces, platform, "router")
        rname = router_name(site)
        mgmt = rtr.get("mgmt") or (loopback if not lab else None)
        hv = common(rname, ["router"], gateway, mgmt, r_ifaces)
        networks = [{"prefix": f"{loopback}/32", "area": area}]
        for i in r_ifaces:
            if i["role"] != "mgmt":
                networks.append({"prefix": str(net(i["address"])), "area": i["ospf_area"]})
        static = []
        if vpn_host and site.get("vpn_pool"):
            static.append({"prefix": site["vpn_pool"], "via": vpn_host["address"], "redistribute": True})
        hv["jincai_router"] = {
            "platform": platform, "hostname": rname, "loopback": loopback, "router_id": loopback,
            "ospf": {"area": area, "hello": ospf.get("hello", 10), "dead": ospf.get("dead", 40),
                     "passive": [i["name"] for i in r_ifaces if i.get("ospf_passive")]},
            "networks": networks,
            "interfaces": [i for i in r_ifaces if i["role"] != "mgmt"],
            "static_routes": static,
            "metro_gateway": metro_gw,
        }
        if site["router"].get("twin_of"):
            # province twin: FRR carries the data plane, the production platform is still rendered
            hv["jincai_router"]["twin_of"] = site["router"]["twin_of"]
        hv["jincai_parties"] = parties
        add(tier, rname)
        add(f"site_{code}", rname)
        add("routers", rname)
        add(f"platform_{platform}", rname)

        # --- servers at the site
        for h in site.get("hosts") or []:
            if h["function"] == "router":
                continue
            name = hname(site, h["name"])
            ifaces = []
            if lab:
                ifaces.append(iface("mgmt", _prefixed(h["mgmt"], mgmt_net), "mgmt"))
            ifaces.append(iface("lan", _prefixed(h["address"], lan), f"lan-{code}"))
            if h["function"] == "vpn_concentrator":
                ifaces.append(iface("vpn_access", _prefixed(h["vpn_access"], plan["vpn_access"]),
                                    f"vpnaccess-{code}"))
            number(ifaces)
            functions = [h["function"]]
            if tier == "city" and h["function"] != "services" and h["address"] == ntp_server(site):
                # the city's time server for its counties (the province's is its services host)
                functions.append("ntp_server")
                add("ntp_servers", name)
            hv = common(name, functions, h["address"], h.get("mgmt") or h["address"], ifaces)
            hv["jincai_routes"] = [{"to": "default", "via": gateway}]
            if h["function"] == "app_server":
                hv["jincai_apps"] = list(apps)
                add("app_servers", name)
            elif h["function"] == "services":
                add("services", name)
                if tier == "province" and network.get("ntp_upstream") is not None:
                    hv["jincai_ntp_servers"] = list(network.get("ntp_upstream") or [])
            elif h["function"] == "vpn_concentrator":
                add("vpn_concentrators", name)
                # a city concentrator serves the city and its counties (the same rule validate checks)
                served = [site] + ([c for c in ordered if c["tier"] == "county" and c.get("parent") == code]
                                   if tier == "city" else [])
                bu_apps = sorted({a for s in served for a in (s.get("budget_units") or {}).get("apps", [])},
                                 key=lambda a: list(apps_catalogue).index(a) if a in apps_catalogue else 99)
                # every served site's LAN, its units' apps and where they run: a county's unit reaches
                # its own county's app servers through the city's concentrator (issue 16)
                served_vpn = [vpn_served_site(s, app_targets(s, (s.get("budget_units") or {}).get("apps", [])))
                              for s in served]
                hv["jincai_vpn"] = {
                    "served": served_vpn,
                    "pool": site.get("vpn_pool"),
                    "access_address": h["vpn_access"],
                    "access_network": plan["vpn_access"],
                    "lan": lan,
                    "budget_units": sum((s.get("budget_units") or {}).get("count", 0) for s in served),
                    "served_sites": [s["code"] for s in served],
                    "apps": bu_apps,
                    "targets": app_targets(site, bu_apps),
                    "clients": [c["name"] for c in site.get("vpn_clients") or []],
                    "registry": vpn_registry(site),
                }
            add("machine_room", name)
            add(tier, name)
            add(f"site_{code}", name)

        # --- external parties (hosts only when managed, i.e. in the lab)
        for p, pd in zip(site.get("parties") or [], parties):
            if not p.get("managed"):
                continue
            ifaces = []
            if lab:
                ifaces.append(iface("mgmt", _prefixed(p["mgmt"], mgmt_net), "mgmt"))
            ifaces.append(iface("metro", _prefixed(p["address"], site["metro"]), f"metro-{code}"))
            number(ifaces)
            hv = common(pd["name"], ["external_party"], p["address"], p.get("mgmt") or p["address"], ifaces)
            hv["jincai_routes"] = [{"to": "default", "via": metro_gw}]
            hv["jincai_party"] = {k: pd[k] for k in ("kind", "org", "apps", "targets")}
            hv["jincai_technicians"] = []
            add("external_parties", pd["name"])

        # --- budget-unit VPN clients (lab only: a few stand-ins for the 1,040 units)
        for c in site.get("vpn_clients") or []:
            ifaces = []
            if lab:
                ifaces.append(iface("mgmt", _prefixed(c["mgmt"], mgmt_net), "mgmt"))
            ifaces.append(iface("vpn_access", _prefixed(c["address"], plan["vpn_access"]), f"vpnaccess-{code}"))
            number(ifaces)
            hv = common(c["name"], ["budget_unit_client"], c["address"], c.get("mgmt") or c["address"], ifaces)
            hv["jincai_routes"] = []
            hv["jincai_technicians"] = []
            home = sites.get(c.get("home") or code, site)  # the unit's own site: this one or a county it serves
            bu = home.get("budget_units") or {}
            hv["jincai_vpn_client"] = {"concentrator": hname(site, vpn_host["name"]),
                                       "server": vpn_host["vpn_access"], "pool": site.get("vpn_pool"),
                                       "home": home["code"], "lan": home["lan"],
                                       "enrolment": c.get("enrolment", "bundle"),
                                       "apps": list(bu.get("apps", [])),
                                       "targets": app_targets(home, bu.get("apps", [])),
                                       "registry": vpn_registry(site)}
            add("budget_unit_clients", c["name"])

    # NTP for the province services host: its upstream; other province hosts use it.
    for name, hv in hosts.items():
        if hv["jincai_tier"] == "province" and "services" not in hv["jincai_functions"]:
            if services_addr and hv["jincai_address"] != services_addr:
                hv["jincai_ntp_servers"] = [services_addr]
    return Derived(hosts=hosts, groups=groups, children={})
