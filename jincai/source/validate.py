"""Pre-flight validation of a source of truth, before any host is contacted.

:func:`check` collects EVERY finding at once; each names the file, the site, the field and how to
fix it (and the line, where known). :func:`run` prints them (``FILE: site CODE: FIELD: message
(fix: ...) (line N)``, one per line, to stderr) and returns 1 when there is at least one error.
Warnings (e.g. technician counts) do not fail validation.

Shape (keys, types, enumerations, ranges) is the declarative schema of :mod:`jincai.source.schema`; what
it rejects is reported and removed (:func:`jincai.source.schema.prune`), so the registered checks below
(:data:`NETWORK_CHECKS`, :data:`SITE_CHECKS`, :data:`SOURCE_CHECKS`) see only well-typed values and
hold only the rules a schema cannot state: cross-field and cross-site ones.
"""

from __future__ import annotations

import glob
import ipaddress
import os
import re
import sys

import yaml

from jincai.source import model, schema, sourceyaml, sshkeys
from jincai.source.model import Finding

DEFAULT_TECH_COUNTS = {"city": (5, 8), "county": (2, 4)}
PLAIN_SECRET_KEYS = ("user", "username", "name")
PLAN_POOLS = ("loopbacks", "wan_links", "vpn_pool", "city_vpn_pools", "vpn_access")
DNS_LABEL_MAX, DNS_NAME_MAX = 63, 253


class _Ctx:
    """Accumulates findings for one source; ``network``, ``plan`` and ``sites`` are the pruned data."""

    def __init__(self, src):
        self.src = src
        self.findings = list(src.load_errors)
        self.network = {}
        self.sites = []  # (file, site) for every site entry that is a mapping, pruned
        self.raw = {}  # (file, code) -> the site as loaded (for line numbers)
        self.rejected = {}  # id(pruned site) -> its top-level keys the schema rejected
        self.keys_dir = None  # from the pruned settings (a mistyped keys_dir is reported, not used)
        self.plan_ok = False  # the plan passed the schema and its own rules (pools, ranges)

    @property
    def plan(self):
        """The pruned address plan."""
        plan = self.network.get("plan")
        return plan if isinstance(plan, dict) else {}

    def err(self, file, site, field, message, fix="", severity="error"):
        self.findings.append(Finding(file, site, field, message, fix, severity))

    def warn(self, file, site, field, message, fix=""):
        self.err(file, site, field, message, fix, "warning")


def _items(value):
    """``(index, item)`` of the mappings in a list (other items were reported and pruned)."""
    return [(i, x) for i, x in enumerate(value) if isinstance(x, dict)] if isinstance(value, list) else []


def _dict(value):
    """``value`` when it is a mapping, else an empty mapping (its type is reported elsewhere)."""
    return value if isinstance(value, dict) else {}


def _unknown(noun, value, known):
    """``(message, fix)`` for a value that is not one of ``known`` (with a did-you-mean)."""
    fix = f"use one of {', '.join(known)}"
    close = schema.suggest(value, known)
    return f"unknown {noun} {value!r}", (f"did you mean {close}? ({fix})" if close else fix)


def _apply_schema(ctx, file, code, which, instance, *args):
    """Report ``instance``'s schema problems; return ``(pruned instance, rejected top-level keys)``."""
    probs = schema.problems(which, instance, *args)
    for path, message, fix in probs:
        ctx.err(file, code, schema.field_name(path) or which, message, fix)
    root = schema.network_schema(*args) if which == "network" else schema.site_schema(*args)
    return schema.prune(instance, [p for p, _, _ in probs], root), {p[0] for p, _, _ in probs if p}


# --------------------------------------------------------------------------- network.yml


def _check_plan(ctx, bad):
    """The address plan: pools inside the supernet and disjoint, lab and production ranges."""
    nf, plan = ctx.src.network_file, ctx.plan
    env = ctx.network.get("environment", "production")
    if "plan" in bad:
        return False
    ok = True
    if plan["city_block_prefix"] >= plan["county_block_prefix"]:
        ctx.err(nf, None, "plan.county_block_prefix", "county blocks must be smaller than city blocks",
                "make county_block_prefix larger than city_block_prefix")
    mg = plan["management"]
    if mg["mode"] == "out_of_band" and ipaddress.ip_address(mg["control_node"]) not in model.net(mg["network"]):
        ctx.err(nf, None, "plan.management.control_node", "not inside the management network",
                f"pick an address inside {mg['network']}")
    sup = model.net(plan["supernet"])
    for key in PLAN_POOLS:
        if plan.get(key) and not model.net(plan[key]).subnet_of(sup):
            ctx.err(nf, None, f"plan.{key}", f"{plan[key]} is outside the supernet {sup}",
                    f"choose a pool inside {sup}")
            ok = False
    pools = [(k, model.net(plan[k])) for k in PLAN_POOLS if plan.get(k)]
    for i, (k1, n1) in enumerate(pools):
        for k2, n2 in pools[i + 1:]:
            if n1.overlaps(n2):
                ctx.err(nf, None, f"plan.{k2}", f"{n2} overlaps plan.{k1} {n1}", "make the pools disjoint")
                ok = False
    if env == "lab":
        for field, n in (("plan.supernet", sup), ("plan.management.network", model.net(mg["network"]))):
            if not n.subnet_of(schema.LAB_RANGE):
                ctx.err(nf, None, field, f"{n} is outside 198.18.0.0/15; the lab may only use that range",
                        "use addresses from 198.18.0.0/15 (management: any prefix of 198.19.0.0/16)")
                ok = False
    elif not sup.is_private:
        ctx.err(nf, None, "plan.supernet", f"{sup} is not a private range", "use an RFC 1918 prefix")
    return ok


def _check_network_rules(ctx):
    """Cross-field rules of network.yml: OSPF timers, applications, tiers, technician counts."""
    nf, netw = ctx.src.network_file, ctx.network
    ospf = _dict(netw.get("ospf"))
    if "hello" in ospf and "dead" in ospf and ospf["dead"] <= ospf["hello"]:
        ctx.err(nf, None, "ospf.dead", "dead interval must exceed the hello interval", "e.g. hello 1, dead 4")
    apps = _dict(netw.get("applications"))
    ports = {}
    for name, spec in apps.items():
        port = _dict(spec).get("port")
        if port in ports:
            ctx.err(nf, None, f"applications.{name}.port", f"port {port} is also the port of {ports[port]}",
                    "give each application its own TCP port")
        elif port is not None:
            ports[port] = name
    for name, spec in apps.items():
        if "tiers" in _dict(spec) and not _dict(_dict(spec).get("tiers")):
            ctx.err(nf, None, f"applications.{name}.tiers", "no tier runs the application",
                    "list the tiers that run it, each with its rollout wave, e.g. {county: 2}")
    township = _dict(_dict(apps.get("township")).get("tiers"))
    for tier in township:
        if tier != "county":
            ctx.err(nf, None, "applications.township.tiers", "township (乡财县管) runs at counties only",
                    f"remove {tier} from applications.township.tiers")
    for name, spec in apps.items():
        if _dict(spec).get("townships") is True and "county" not in _dict(_dict(spec).get("tiers")):
            ctx.err(nf, None, f"applications.{name}.townships", "township finance offices reach their own "
                    f"county's applications only, and no county runs {name}",
                    f"remove townships from applications.{name}, or add county to its tiers")
    defaults = _dict(netw.get("defaults"))
    for tier, parties in _dict(defaults.get("parties")).items():
        for i, p in _items(parties):
            for a in p.get("apps") or []:
                _check_app_use(ctx, nf, None, f"defaults.parties.{tier}[{i}].apps", a, tier, p.get("kind"))
    for kind in model.VPN_KINDS.values():
        for tier, bu in _dict(defaults.get(kind.key)).items():
            for a in _dict(bu).get("apps") or []:
                _check_app_use(ctx, nf, None, f"defaults.{kind.key}.{tier}.apps", a, tier, kind.name)
    for tier, pair in _dict(netw.get("technician_counts")).items():
        if len(pair) == 2 and pair[0] > pair[1]:
            ctx.err(nf, None, f"technician_counts.{tier}", f"[{pair[0]}, {pair[1]}] is written backwards "
                    "(min is larger than max)", f"write [{pair[1]}, {pair[0]}]")


def _check_admin_roles(ctx):
    """Separation of duties (三员分立): one person holds one of the system, security and audit
    administrator roles, also under two logins (the same name with different roles)."""
    nf = ctx.src.network_file
    held = {}  # person's name -> (role, field, login) of their first administrator entry
    for i, admin in _items(ctx.network.get("admins")):
        roles = [r for r in dict.fromkeys(admin.get("roles") or []) if r in schema.ADMIN_ROLES]
        who = f"{admin.get('user')} ({admin.get('name')})"
        if len(roles) > 1:
            ctx.err(nf, None, f"admins[{i}].roles", f"{who} holds the {' and '.join(roles)} administrator roles; "
                    "one person holds one of system, security and audit (三员分立, GB/T 22239 8.1.4.2 d)",
                    "keep one role for this person and give the other to another administrator")
            continue
        if not roles or admin.get("state", "present") != "present" or not admin.get("name"):
            continue
        first = held.setdefault(admin["name"], (roles[0], f"admins[{i}]", admin.get("user")))
        if first[0] != roles[0]:
            ctx.err(nf, None, f"admins[{i}].roles", f"{who} is also {first[2]} ({first[1]}) with the {first[0]} "
                    f"role: one person holds one of system, security and audit (三员分立)",
                    "remove one of the two logins; if they are two people, tell them apart in name")


#: Keys of a catalogue application that a deployment entry (group_vars ``apps_catalog``) must not restate.
CATALOGUE_KEYS = ("name", "name_zh", "name_en", "port", "tiers", "parties", "budget_units", "townships")


def _check_deployment(ctx):
    """The inventory's deployment of the applications (group_vars/all ``apps_catalog``) names exactly the
    catalogue's applications and restates none of the catalogue's facts."""
    apps = _dict(ctx.network.get("applications"))
    gv = os.path.join(ctx.src.inv_dir, "group_vars")
    paths = sorted(glob.glob(os.path.join(gv, "all", "*.yml"))) + glob.glob(os.path.join(gv, "all.yml"))
    for path in paths:
        if os.path.basename(path) == "vault.yml":
            continue
        try:
            with open(path, encoding="utf-8") as fh:
                data, _, marks = sourceyaml.parse(fh)
        except (OSError, yaml.YAMLError):
            continue  # Ansible reports an unreadable group_vars file itself
        deployed = data.get("apps_catalog") if isinstance(data, dict) else None
        if not isinstance(deployed, dict):
            continue
        shown = model.display_path(path)

        def err(field, message, fix, steps, _shown=shown, _data=data, _marks=marks):
            ctx.findings.append(Finding(_shown, None, field, message, fix,
                                        line=sourceyaml.line_of(_marks, _data, steps)))

        for app, entry in deployed.items():
            if app not in apps:
                msg, fix = _unknown("application", app, list(apps))
                err(f"apps_catalog.{app}", f"{msg}: not in the catalogue ({ctx.src.network_file}: applications)",
                    fix, ["apps_catalog", app])
                continue
            for key in [k for k in _dict(entry) if k in CATALOGUE_KEYS]:
                err(f"apps_catalog.{app}.{key}", f"restates the catalogue ({ctx.src.network_file}: "
                    f"applications.{app}.{key} is the one place for it)", f"remove {key} here",
                    ["apps_catalog", app, key])
        for app in apps:
            if app not in deployed:
                err("apps_catalog", f"application {app} of the catalogue has no deployment here "
                    "(the apps role would not know its backend port, database or versions)",
                    f"add apps_catalog.{app} with backend_port, health_path, database and versions",
                    ["apps_catalog"])


#: Checks of the (pruned) network settings, in order; each takes the context.
NETWORK_CHECKS = (_check_network_rules, _check_deployment, _check_admin_roles)


# --------------------------------------------------------------------------- sites


def _check_hosts(ctx, file, code, site):
    """Exactly one router; VPN concentrators only at the province and cities."""
    routers = 0
    for i, h in _items(site.get("hosts")):
        routers += h.get("function") == "router"
        if h.get("function") == "vpn_concentrator" and site.get("tier") == "county":
            ctx.err(file, code, f"hosts[{i}].function", "VPN concentrators run at the province and the cities only",
                    "remove it; county budget units dial in to their city")
    if "hosts" in site and routers != 1:
        ctx.err(file, code, "hosts", f"needs exactly one host with function router, found {routers}",
                "list one {name: rtr, function: router, address: <LAN gateway>}")
        return False
    return True


def _check_app_use(ctx, file, code, field, app, tier, kind):
    """One reference to an application (a party's of ``kind``, or VPN clients' when ``kind`` names one
    of :data:`jincai.source.model.VPN_KINDS`: budget units, township finance offices) against the
    catalogue: known, run at ``tier``, and reachable by that party kind (``parties``) or that kind of
    VPN client (its catalogue flag, ``budget_units`` or ``townships``)."""
    apps = _dict(ctx.network.get("applications"))
    tier_apps = model.tier_apps(apps, tier)
    spec = _dict(apps.get(app))
    nf = ctx.src.network_file
    vpn = model.VPN_KINDS.get(kind)
    if app not in apps:
        ctx.err(file, code, field, *_unknown("application", app, list(apps)))
    elif app not in tier_apps:
        if vpn:
            ctx.err(file, code, field, f"{app!r} does not run at a {tier}", f"use one of {', '.join(tier_apps)}")
        else:
            ctx.err(file, code, field, f"{app} does not run at a {tier}", f"use one of {', '.join(tier_apps)}")
    elif vpn and spec.get(vpn.key) is not True:
        allowed = [a for a in tier_apps if _dict(apps.get(a)).get(vpn.key) is True]
        ctx.err(file, code, field, f"{vpn.noun} may not reach {app} (the catalogue, {nf}: "
                f"applications.{app}.{vpn.key} is not true)",
                f"use one of {', '.join(allowed) or 'none'}, or allow it in the catalogue")
    elif not vpn and kind not in (spec.get("parties") or []):
        allowed = [a for a in tier_apps if kind in (_dict(apps.get(a)).get("parties") or [])]
        ctx.err(file, code, field, f"a {kind} may not reach {app} (the catalogue, {nf}: "
                f"applications.{app}.parties: {', '.join(spec.get('parties') or []) or 'none'})",
                f"use one of {', '.join(allowed) or 'none'}, or add {kind} to applications.{app}.parties")


def _check_parties(ctx, file, code, site):
    """Parties need a metro segment; parties and budget units reach applications of their tier that the
    catalogue lets them reach."""
    parties = _items(site.get("parties"))
    if parties and not site.get("metro"):
        ctx.err(file, code, "metro", "site has external parties but no metro segment",
                "allocate a metro prefix inside the site's block (jincai site add does)")
    for i, p in parties:
        for a in p.get("apps") or []:
            _check_app_use(ctx, file, code, f"parties[{i}].apps", a, site.get("tier"), p.get("kind"))
    for kind in model.VPN_KINDS.values():
        for a in _dict(site.get(kind.key)).get("apps") or []:
            _check_app_use(ctx, file, code, f"{kind.key}.apps", a, site.get("tier"), kind.name)
    if "townships" in site and site.get("tier") != "county":
        ctx.err(file, code, "townships", "township finance offices (乡镇财政所) are declared on their county",
                "move townships to the county sites (乡财县管: the county manages its townships' finance)")


def _check_people(ctx, file, code, site):
    """Technician counts per tier (a warning)."""
    counts = dict(DEFAULT_TECH_COUNTS)
    counts.update({k: tuple(v) for k, v in _dict(ctx.network.get("technician_counts")).items() if len(v) == 2})
    tier = site.get("tier")
    if tier in counts and "technicians" not in ctx.rejected.get(id(site), ()):
        lo, hi = counts[tier]
        n = sum(1 for _, t in _items(site.get("technicians")) if t.get("state", "present") == "present")
        if not lo <= n <= hi:
            ctx.warn(file, code, "technicians", f"{n} technicians; a {tier} should have {lo}-{hi}",
                     f"list {lo}-{hi} technicians with state present")


#: Checks of one (pruned) site, in order; each takes (context, file, code, site).
SITE_CHECKS = (_check_parties, _check_people)


# --------------------------------------------------------------------------- cross-site checks


def _check_divisions(ctx, usable, by_code):
    """Codes are real Jilin divisions, names match, tiers and parents follow GB/T 2260."""
    try:
        divisions = ctx.src.divisions()
    except OSError as exc:
        ctx.err(ctx.src.network_file, None, "divisions_file", f"cannot read: {exc}", "fix the path")
        return
    for file, site in usable:
        code = site["code"]
        div = divisions.get(code)
        if div is None:
            ctx.err(file, code, "code", "not a Jilin division (GB/T 2260)",
                    "use a code from jincai/data/jilin-divisions.tsv")
            continue
        if site["tier"] != div.level:
            ctx.err(file, code, "tier", f"{code} ({div.name_zh}) is a {div.level}, not a {site['tier']}",
                    f"set tier: {div.level}")
        if isinstance(site.get("name_zh"), str) and site["name_zh"] != div.name_zh:
            ctx.err(file, code, "name_zh", f"{site['name_zh']!r} is not the GB/T 2260 name of {code}",
                    f"write name_zh: {div.name_zh}")
        if isinstance(site.get("pinyin"), str) and site["pinyin"] != div.pinyin:
            ctx.err(file, code, "pinyin", f"{site['pinyin']!r} does not match {code}",
                    f"write pinyin: {div.pinyin}")
        parent = site.get("parent")
        if site["tier"] in model.PARENT_TIER:
            if parent != div.parent:
                ctx.err(file, code, "parent", f"{code} is not under {parent} (its GB/T 2260 parent is {div.parent})",
                        f"set parent: \"{div.parent}\"")
            elif parent not in by_code:
                ctx.err(file, code, "parent", f"parent site {parent} is not in the source",
                        f"add site {parent} first (jincai site add {parent})")
            elif by_code[parent].get("tier") != model.PARENT_TIER[site["tier"]]:
                ctx.err(file, code, "parent", f"parent {parent} is a {by_code[parent].get('tier')}",
                        f"a {site['tier']} hangs under a {model.PARENT_TIER[site['tier']]}")


def _check_links(ctx, usable, by_code):
    """Uplinks: known peers, tier rules, roles, pool and prefix length."""
    plan = ctx.plan
    for file, site in usable:
        code, tier = site["code"], site["tier"]
        ups = _items(site.get("uplinks"))
        if tier != "province" and not ups:
            ctx.err(file, code, "uplinks", "a city or county needs a primary uplink",
                    "add {peer: <parent>, subnet: <free /30>, role: primary}")
        primaries = 0
        seen = set()
        for i, up in ups:
            f = f"uplinks[{i}]"
            peer = up.get("peer")
            if peer is None:
                continue
            role = up.get("role")
            primaries += role == "primary"
            if (peer, role) in seen:
                ctx.err(file, code, f"{f}", f"second {role} uplink to {peer}", "remove the duplicate link")
            seen.add((peer, role))
            if up.get("subnet"):
                sn = model.net(up["subnet"])
                if plan.get("wan_link_prefix") and sn.prefixlen != plan["wan_link_prefix"]:
                    ctx.err(file, code, f"{f}.subnet", f"{sn} is not a /{plan.get('wan_link_prefix')}",
                            f"use a /{plan.get('wan_link_prefix')} from plan.wan_links")
                elif plan.get("wan_links") and not sn.subnet_of(model.net(plan["wan_links"])):
                    ctx.err(file, code, f"{f}.subnet", f"{sn} is outside plan.wan_links {plan['wan_links']}",
                            "allocate the link from plan.wan_links")
            if peer == code:
                ctx.err(file, code, f"{f}.peer", "a site cannot uplink to itself", "uplink to the parent site")
                continue
            if peer not in by_code:
                ctx.err(file, code, f"{f}.peer", f"link to unknown site {peer}",
                        "uplink to a site present in the source (usually the parent)")
                continue
            ptier = by_code[peer]["tier"]
            if model.TIERS.index(ptier) >= model.TIERS.index(tier):
                ctx.err(file, code, f"{f}.peer", f"a {tier} cannot uplink to a {ptier} ({peer})",
                        "uplink towards the province: county -> city -> province")
            elif tier == "county" and ptier == "province" and up.get("direct") is not True:
                ctx.err(file, code, f"{f}.peer", "county uplinked straight to the province",
                        "uplink to the county's city, or mark the link direct: true if it is intended")
            elif tier == "county" and ptier == "city" and peer != site.get("parent"):
                ctx.err(file, code, f"{f}.peer", f"uplink to {peer}, which is not this county's city "
                        f"({site.get('parent')})", "uplink to the parent city")
        if tier != "province" and ups and primaries != 1:
            ctx.err(file, code, "uplinks", f"{primaries} primary uplinks", "mark exactly one uplink role: primary")


def _claims(ctx, usable):
    """Every prefix and address the sites claim, with who claims it."""
    plan = ctx.plan
    prefixes, addresses = [], []  # (network, owner_key, file, code, field)
    mg = _dict(plan.get("management"))
    oob = mg.get("mode") == "out_of_band"
    for file, site in usable:
        code = site["code"]
        if mg.get("mode") == "inband" and site["tier"] == "province" and mg.get("network"):
            prefixes.append((model.net(mg["network"]), ("mgmt", code), ctx.src.network_file, code,
                             "plan.management.network"))
        for key in ("block", "lan", "metro", "vpn_pool"):
            if site.get(key):
                prefixes.append((model.net(site[key]), (key, code), file, code, key))
        for i, up in _items(site.get("uplinks")):
            if up.get("subnet"):
                prefixes.append((model.net(up["subnet"]), ("wan", code, i), file, code, f"uplinks[{i}].subnet"))
        rtr = _dict(site.get("router"))
        if rtr.get("loopback"):
            addresses.append((rtr["loopback"], "loopback", file, code, "router.loopback"))
        for lst, area in (("hosts", "lan"), ("parties", "metro"), ("vpn_clients", "vpn_access")):
            for i, h in _items(site.get(lst)):
                if h.get("address"):
                    addresses.append((h["address"], area, file, code, f"{lst}[{i}].address"))
                if h.get("vpn_access"):
                    addresses.append((h["vpn_access"], "vpn_access", file, code, f"{lst}[{i}].vpn_access"))
                if oob and h.get("mgmt"):
                    addresses.append((h["mgmt"], "mgmt", file, code, f"{lst}[{i}].mgmt"))
    return prefixes, addresses


def _check_addresses(ctx, usable, by_code):
    """Duplicates, overlaps, and addresses outside their site's block or pool."""
    plan = ctx.plan
    prefixes, addresses = _claims(ctx, usable)
    mg = _dict(plan.get("management"))
    # duplicates of single addresses
    seen = {}
    if mg.get("mode") == "out_of_band" and mg.get("control_node"):
        seen[mg["control_node"]] = (ctx.src.network_file, None, "plan.management.control_node")
    for addr, _, file, code, field in addresses:
        if addr in seen:
            ofile, ocode, ofield = seen[addr]
            where = f"site {ocode} {ofield}" if ocode else ofield
            ctx.err(file, code, field, f"duplicate address {addr}, also used by {where} ({ofile})",
                    "give each host its own address (jincai site add picks free ones)")
        else:
            seen[addr] = (file, code, field)
    if not ctx.plan_ok:
        return
    sup = model.net(plan["supernet"])
    pools = {k: model.net(plan[k]) for k in PLAN_POOLS if plan.get(k)}
    # addresses inside their own area
    for addr, area, file, code, field in addresses:
        site = by_code[code]
        ip = ipaddress.ip_address(addr)
        if area == "loopback":
            container, what = pools["loopbacks"], "plan.loopbacks"
        elif area == "vpn_access":
            container, what = pools["vpn_access"], "plan.vpn_access"
        elif area == "mgmt":
            container, what = model.net(mg["network"]), "plan.management.network"
        else:
            cidr = site.get(area)
            if not cidr:
                continue
            container, what = model.net(cidr), f"the site's {area} {cidr}"
        if ip not in container:
            ctx.err(file, code, field, f"{addr} is outside {what}", f"use an address inside {container}")
        elif container.prefixlen < 31 and ip in (container.network_address, container.broadcast_address):
            ctx.err(file, code, field, f"{addr} is the network or broadcast address of {container}",
                    "use a host address")
    # site prefixes inside their containers
    for n, owner, file, code, field in prefixes:
        site = by_code[code]
        kind = owner[0]
        if kind in ("lan", "metro", "mgmt") and site.get("block"):
            blk = model.net(site["block"])
            if not n.subnet_of(blk):
                ctx.err(file, code, field, f"{n} is outside the site's block {blk}",
                        f"choose a {kind} prefix inside {blk}")
        elif kind == "block":
            if not n.subnet_of(sup):
                ctx.err(file, code, field, f"{n} is outside the supernet {sup}", f"allocate from {sup}")
            elif site["tier"] == "county":
                parent = by_code.get(site.get("parent"))
                if parent and parent.get("block") and not n.subnet_of(model.net(parent["block"])):
                    ctx.err(file, code, field, f"{n} is outside its city's block {parent['block']}",
                            f"allocate the county block from {parent['block']}")
            if site["tier"] == "county" and n.prefixlen != plan.get("county_block_prefix"):
                ctx.err(file, code, field, f"county block {n} is not a /{plan.get('county_block_prefix')}",
                        "use plan.county_block_prefix")
            if site["tier"] == "city" and n.prefixlen != plan.get("city_block_prefix"):
                ctx.err(file, code, field, f"city block {n} is not a /{plan.get('city_block_prefix')}",
                        "use plan.city_block_prefix")
        elif kind == "vpn_pool":
            key = "vpn_pool" if site["tier"] == "province" else "city_vpn_pools"
            if site["tier"] == "county":
                ctx.err(file, code, field, "counties have no VPN pool", "remove vpn_pool")
            elif key not in pools or not n.subnet_of(pools[key]):
                ctx.err(file, code, field, f"{n} is outside plan.{key}", f"allocate it from plan.{key}")
    # overlaps: sweep sorted prefixes (CIDRs are either disjoint or nested); every nesting must be
    # an allowed one: lan/metro in the own block, county block in its city's block, pools in the plan.
    allowed = {}
    for n, owner, file, code, field in prefixes:
        site = by_code[code]
        if owner[0] in ("lan", "metro", "mgmt"):
            allowed[owner] = {("block", code)}
        elif owner[0] == "block":
            allowed[owner] = {("block", site.get("parent"))} if site["tier"] == "county" else {("plan", "supernet")}
        elif owner[0] == "wan":
            allowed[owner] = {("plan", "wan_links")}
        elif owner[0] == "vpn_pool":
            allowed[owner] = {("plan", "vpn_pool"), ("plan", "city_vpn_pools")}
    items = [(n, ("plan", k), ctx.src.network_file, None, f"plan.{k}") for k, n in pools.items()]
    for it in items:
        allowed[it[1]] = {("plan", "supernet")}
    items += prefixes
    rank = {"plan": 0, "block": 1, "lan": 2, "metro": 3, "mgmt": 3, "vpn_pool": 2, "wan": 2}
    items.sort(key=lambda it: (int(it[0].network_address), it[0].prefixlen, rank[it[1][0]]))
    stack = [(sup, ("plan", "supernet"), ctx.src.network_file, None, "plan.supernet")]
    reported = set()  # one message per pair of owners (site or plan), not one per nested prefix
    for it in items:
        n, owner, file, code, field = it
        while len(stack) > 1 and not n.subnet_of(stack[-1][0]):
            stack.pop()
        top = stack[-1]
        if n.subnet_of(top[0]) and top[1] not in allowed.get(owner, set()):
            if code is None and top[3] is not None:  # a plan pool inside a site's prefix: blame the site
                n, file, code, field, top = top[0], top[2], top[3], top[4], it
            pair = frozenset((code or "plan", top[3] or "plan"))
            if pair in reported:
                stack.append(it)
                continue
            reported.add(pair)
            where = f"site {top[3]} {top[4]}" if top[3] else top[4]
            ctx.err(file, code, field, f"{n} overlaps {top[0]} of {where} ({top[2]})",
                    "choose a free prefix (jincai site add allocates without overlap)")
        stack.append(it)


def _check_pools(ctx, usable, by_code):
    """Budget-unit VPN pools are large enough for the units they serve."""
    for file, site in usable:
        code, tier = site["code"], site["tier"]
        has_vpn = any(h.get("function") == "vpn_concentrator" for _, h in _items(site.get("hosts")))
        if tier == "county":
            continue
        served = model.served_sites(site, [s for _, s in usable])
        count = sum(_dict(s.get("budget_units")).get("count", 0) for s in served
                    if isinstance(_dict(s.get("budget_units")).get("count", 0), int))
        towns = sum(_dict(s.get("townships")).get("count", 0) for s in model.township_sites(site, [s for _, s in usable])
                    if isinstance(_dict(s.get("townships")).get("count", 0), int))
        if has_vpn and not site.get("vpn_pool"):
            ctx.err(file, code, "vpn_pool", "site has a VPN concentrator but no budget-unit pool",
                    "allocate vpn_pool (jincai site add does)")
            continue
        if count and not has_vpn:
            ctx.err(file, code, "budget_units", f"{count} budget units but no VPN concentrator serves them",
                    "add a host with function vpn_concentrator at this site")
            continue
        if has_vpn:
            size = model.net(site["vpn_pool"]).num_addresses - 2
            if size < count + towns:
                also = f" and {towns} township finance offices" if towns else ""
                ctx.err(file, code, "vpn_pool", f"budget-unit pool {site['vpn_pool']} holds {size} addresses, "
                        f"fewer than the {count} budget units{also} it serves",
                        "allocate a larger pool (a /21 holds 2,046)")
    for file, site in usable:
        if site.get("vpn_clients") and not any(h.get("function") == "vpn_concentrator"
                                               for _, h in _items(site.get("hosts"))):
            ctx.err(file, site["code"], "vpn_clients", "VPN clients but no VPN concentrator at this site",
                    "add a vpn_concentrator host or move the clients")
        _check_vpn_reach(ctx, file, site, by_code)
        _check_townships(ctx, file, site, by_code)


def _has_concentrator(site):
    return any(h.get("function") == "vpn_concentrator" for _, h in _items(site.get("hosts")))


def _check_townships(ctx, file, site, by_code):
    """A county's township finance offices are served by a concentrator that exists and may serve
    them (its city's, or the province's when the source names it: ``townships.concentrator``), and
    reach their apps on an app server of the county."""
    tw = _dict(site.get("townships"))
    code = site["code"]
    if site["tier"] != "county" or "townships" not in site:
        return
    count = tw.get("count", 0) if isinstance(tw.get("count", 0), int) else 0
    if count and tw.get("apps") and not any(h.get("function") == "app_server" for _, h in _items(site.get("hosts"))):
        ctx.err(file, code, "townships.apps", f"{count} township finance offices use "
                f"{', '.join(map(str, tw['apps']))} but no app server at this county runs them",
                "add a host with function app_server")
    named = tw.get("concentrator")
    serving = model.township_concentrator(site)
    field = "townships.concentrator" if named else "townships"
    province = next((c for c, s in by_code.items() if s.get("tier") == "province"), None)
    if named and named not in (site.get("parent"), province):
        ctx.err(file, code, field, f"{named} may not serve the townships of {code}: a county's township "
                "finance offices are served by its city's concentrator or the province's",
                f"use {site.get('parent')} (its city) or {province} (the province), or remove the field")
    elif (count or named) and (serving not in by_code or not _has_concentrator(by_code[serving])):
        fix = (f"add a vpn_concentrator host at {serving}" if named else
               f"add a vpn_concentrator host at its city {serving}, or name the province's: "
               f"townships: {{concentrator: \"{province}\"}}")
        ctx.err(file, code, field, f"no VPN concentrator at {serving} serves the {count} township finance "
                f"offices of {code}", fix)


def _check_vpn_reach(ctx, file, site, by_code):
    """A site's budget units reach their apps at their own site (a county's through its city's
    concentrator): an app server must be there; a lab client's ``home`` is a site its concentrator serves."""
    code = site["code"]
    bu = _dict(site.get("budget_units"))
    count = bu.get("count", 0) if isinstance(bu.get("count", 0), int) else 0
    if count and bu.get("apps") and not any(h.get("function") == "app_server" for _, h in _items(site.get("hosts"))):
        ctx.err(file, code, "budget_units.apps", f"{count} budget units use {', '.join(map(str, bu['apps']))} "
                "but no app server at this site runs them", "add a host with function app_server")
    for i, c in _items(site.get("vpn_clients")):
        home = c.get("home")
        if c.get("kind") == "township":
            h = by_code.get(home)
            if not (h and h.get("tier") == "county" and isinstance(h.get("townships"), dict)
                    and model.township_concentrator(h) == code):
                served = [s["code"] for s in model.township_sites(site, list(by_code.values()))]
                ctx.err(file, code, f"vpn_clients[{i}].home", f"{home or 'no home'}: a township client's home is "
                        "a county whose township finance offices this concentrator serves",
                        f"use one of {', '.join(served)}" if served else
                        "declare townships on the county (and townships.concentrator if it is not this city's)")
            continue
        if home is None or home == code:
            continue
        h = by_code.get(home)
        if not (h and h.get("tier") == "county" and h.get("parent") == code and site.get("tier") == "city"):
            ctx.err(file, code, f"vpn_clients[{i}].home", f"{home} is not a site this concentrator serves",
                    f"use {code} or one of its counties")


def _check_host_name(ctx, file, code, field, name):
    """A host name fits DNS: one label of at most 63 characters, with the domain at most 253."""
    domain = ctx.network.get("domain")
    if len(name) > DNS_LABEL_MAX:
        ctx.err(file, code, field, f"host name {name} is {len(name)} characters; a DNS label holds at most "
                f"{DNS_LABEL_MAX}", "use a shorter name")
    elif domain and len(name) + 1 + len(domain) > DNS_NAME_MAX:
        ctx.err(file, code, field, f"{name}.{domain} is {len(name) + 1 + len(domain)} characters; a DNS name "
                f"holds at most {DNS_NAME_MAX}", "use a shorter name or network.domain")


def _key_file_error(ctx, file, code, field, person):
    """The key a ``key_file`` names, when that file exists: it must decode like a literal key."""
    resolved = model._technician(person, ctx.keys_dir)  # noqa: SLF001 - the one key_file resolution
    path, key = resolved["key_file"], resolved["key"]
    if not os.path.isfile(path):
        return None  # not there yet (the lab creates its keys); the accounts role checks it on hosts
    problem = sshkeys.key_error(key)
    if problem:
        ctx.err(file, code, f"{field}.key_file", f"{model.display_path(path)} is not an SSH public key: {problem}",
                "put the one-line .pub content in the file")
        return None
    return key


def _check_people_unique(ctx, people):
    """One login per person and one key per login, across the administrators and every site (a
    ``key_file`` key too, when the file exists)."""
    users, keys = {}, {}
    for file, code, field, person in people:
        if person.get("key_file") and person.get("user") is not None:
            person = dict(person, key=_key_file_error(ctx, file, code, field, person))
        u = person.get("user")
        where = f"site {code}" if code else "admins"
        if u is not None:
            if u in users:
                ofile, ocode, _ = users[u]
                other = f"site {ocode}" if ocode else "admins"
                what = "technician" if code else "administrator"
                ctx.err(file, code, f"{field}.user", f"duplicate user {u}, also {other} ({ofile})",
                        f"give each {what} a unique login name")
            else:
                users[u] = (file, code, field)
        key = person.get("key")
        if key and person.get("state", "present") == "present":
            blob = key.split()[1]
            if blob in keys:
                ctx.err(file, code, f"{field}.key", f"same key as {keys[blob]} (a shared key is a shared account)",
                        "each person logs in with their own key pair")
            else:
                keys[blob] = f"{where} {u}"


def _check_duplicates(ctx, sites):
    """Duplicate site codes, names, host names (and their DNS length) and people."""
    codes, names, hostnames = {}, {}, {}
    nf = ctx.src.network_file
    people = [(nf, None, f"admins[{i}]", a) for i, a in _items(ctx.network.get("admins"))]
    for file, site in sites:
        code = site.get("code")
        if code is None:
            continue
        if code in codes:
            ctx.err(file, code, "code", f"duplicate site code, also in {codes[code]}", "keep one entry per site")
            continue
        codes[code] = file
        nm = site.get("name_zh")
        if nm is not None:
            if nm in names:
                ctx.err(file, code, "name_zh", f"duplicate name {nm}, also site {names[nm][1]} ({names[nm][0]})",
                        "each site has its own GB/T 2260 name")
            else:
                names[nm] = (file, code)
        for lst, prefix in (("hosts", True), ("parties", True), ("vpn_clients", False)):
            for i, h in _items(site.get(lst)):
                if h.get("name") is not None:
                    hn = f"{code}-{h['name']}" if prefix else h["name"]
                    if hn in hostnames:
                        ctx.err(file, code, f"{lst}[{i}].name", f"duplicate host name {hn}, also in {hostnames[hn]}",
                                "rename one of them")
                    else:
                        hostnames[hn] = file
                        _check_host_name(ctx, file, code, f"{lst}[{i}].name", hn)
        people += [(file, code, f"technicians[{i}]", t) for i, t in _items(site.get("technicians"))]
    _check_people_unique(ctx, people)


def _check_vault(ctx, _usable, _by_code):
    """Every required secret is present in group_vars/all/vault.yml and encrypted."""
    required = ctx.network.get("secrets") or []
    if not isinstance(required, list):
        return
    vf = ctx.src.vault_file
    if required and ctx.src.vault is None:
        ctx.err(vf, None, "vault", "vault file missing", f"create it with ansible-vault encrypt_string for: {', '.join(required)}")
        return
    vault = ctx.src.vault if isinstance(ctx.src.vault, dict) else {}
    for key in required:
        if key not in vault:
            ctx.err(vf, None, key, "missing vault secret",
                    f"add it: ansible-vault encrypt_string --name {key} '<secret>' >> {vf}")
            continue

        def leaves(v, path):
            if isinstance(v, dict):
                for k, sub in v.items():
                    yield from leaves(sub, f"{path}.{k}")
            else:
                yield path, v

        for path, v in leaves(vault[key], key):
            if path.split(".")[-1] in PLAIN_SECRET_KEYS:
                continue
            if not isinstance(v, model.VaultValue):
                ctx.err(vf, None, path, "secret stored in plain text", "encrypt it with ansible-vault encrypt_string")


def _check_province(ctx, _usable, _by_code):
    provs = [(f, s) for f, s in ctx.sites if s.get("tier") == "province"]
    if len(provs) != 1:
        ctx.err(ctx.src.network_file, None, "sites", f"{len(provs)} province sites", "define exactly one site with tier: province")
        return
    f, p = provs[0]
    if not any(h.get("function") == "services" for _, h in _items(p.get("hosts"))):
        ctx.err(f, p.get("code"), "hosts", "the province needs a services host (log collector, NTP, artifacts)",
                "add {name: svc, function: services, address: ...}")


#: Checks across sites, in order; each takes (context, usable sites, {code: site}).
SOURCE_CHECKS = (_check_province, _check_divisions, _check_links, _check_addresses, _check_pools, _check_vault)


def _shape_sites(ctx, oob, lab):
    """Apply the site schema to every entry of every sites file; fill ``ctx.sites``."""
    for file, site in ctx.src.sites:
        if not isinstance(site, dict):
            what = "empty entry (a '-' with nothing after it)" if site is None else f"entry is not a mapping: {site!r}"
            ctx.err(file, None, "sites", what, "each site is a mapping with code:, tier:, ...")
            continue
        code = site.get("code")
        shown = str(code) if isinstance(code, (str, int)) else "?"
        clean, bad = _apply_schema(ctx, file, shown, "site", site, oob, lab)
        if isinstance(code, int) and not isinstance(code, bool):
            clean = dict(clean, code=shown)  # reported above; go on checking the site under its code
        ctx.rejected[id(clean)] = bad
        ctx.raw[(file, clean.get("code"))] = site
        ctx.sites.append((file, clean))


def _usable(site):
    """A site the cross-site checks can rely on: its core fields are present and valid."""
    return (all(site.get(k) is not None for k in ("code", "tier", "block", "lan", "hosts"))
            and (site["tier"] == "province" or site.get("parent") is not None)
            and _dict(site.get("router")).get("loopback") is not None)


_FIELD_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _add_lines(ctx):
    """The line of each finding's field, where the loader recorded it; a finding of the loader (a
    duplicate key) in a sites file is given the site it lies in."""
    starts = {}  # file -> [(line where a site starts, code)]
    for (file, code), raw in ctx.raw.items():
        line = sourceyaml.line_of(ctx.src.marks, raw, [], fallback=True)
        if line is not None and code is not None:
            starts.setdefault(file, []).append((line, code))
    for f in ctx.findings:
        if f.line is not None:
            if f.site is None and f.file in starts:
                f.site = max(((ln, c) for ln, c in starts[f.file] if ln <= f.line), default=(0, None))[1]
            continue
        path = [int(i) if i else k for k, i in _FIELD_STEP.findall(f.field)]
        if f.site is None and f.file == ctx.src.network_file:
            f.line = sourceyaml.line_of(ctx.src.marks, ctx.src.network, path)
        elif f.site is not None:
            f.line = sourceyaml.line_of(ctx.src.marks, ctx.raw.get((f.file, f.site)), path, fallback=True)


def check(src):
    """Return every finding (errors and warnings) for a loaded :class:`jincai.source.model.Source`; never raises
    on any data a YAML file can hold (tests/unit/test_validate_property.py)."""
    ctx = _Ctx(src)
    if not src.network and any(f.file == src.network_file for f in src.load_errors):
        return ctx.findings
    lab = src.network.get("environment") == "lab"
    ctx.network, bad = _apply_schema(ctx, src.network_file, None, "network", src.network, lab)
    ctx.keys_dir = src.keys_dir(ctx.network)
    ctx.plan_ok = _check_plan(ctx, bad)
    for rule in NETWORK_CHECKS:
        rule(ctx)
    oob = _dict(ctx.plan.get("management")).get("mode") == "out_of_band"
    _shape_sites(ctx, oob, lab)
    _check_duplicates(ctx, ctx.sites)
    usable, seen = [], set()
    for file, site in ctx.sites:
        if not _usable(site):
            continue
        code = site["code"]
        hosts_ok = _check_hosts(ctx, file, code, site)
        for rule in SITE_CHECKS:
            rule(ctx, file, code, site)
        if hosts_ok and code not in seen:
            seen.add(code)
            usable.append((file, site))
    by_code = {s["code"]: s for _, s in usable}
    for rule in SOURCE_CHECKS:
        rule(ctx, usable, by_code)
    _add_lines(ctx)
    return ctx.findings


def findings(inventory_dir):
    """Load and check a source directory; return the list of findings (for tests and the plugin)."""
    try:
        return check(model.load(inventory_dir))
    except model.SourceError as exc:
        return [Finding(model.display_path(str(inventory_dir)), None, "source", str(exc),
                        "point at inventories/<name> (holding jincai.yml)")]


def run(inventory_dir, quiet=False):
    """Validate and print: errors one per line to stderr; exit code 0 when valid, 1 otherwise."""
    fs = findings(inventory_dir)
    errors = [f for f in fs if f.severity == "error"]
    for f in fs:
        print(f, file=sys.stderr)
    if errors:
        print(f"jincai validate: {len(errors)} error(s), nothing was contacted", file=sys.stderr)
        return 1
    if not quiet:
        try:
            src = model.load(inventory_dir)
            d = model.derive(src)
            print(f"jincai validate: {model.display_path(src.inv_dir)}: {len(src.sites)} sites, {len(d.hosts)} hosts: "
                  f"valid ({len(fs)} warning(s))")
        except Exception:  # noqa: BLE001 - the summary is best effort
            print("jincai validate: valid")
    return 0
