"""Pre-flight validation of a source of truth, before any host is contacted.

:func:`check` collects EVERY finding at once; each names the file, the site, the field and how to
fix it. :func:`run` prints them (``FILE: site CODE: FIELD: message (fix: ...)``, one per line, to
stderr) and returns 1 when there is at least one error. Warnings (e.g. technician counts) do not
fail validation.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import sys

from jincai import model
from jincai.model import Finding

CODE_RE = re.compile(r"^\d{6}$")
HOSTNAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
SSH_KEY_RE = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]{40,}( .*)?$")
LAB_RANGE = ipaddress.ip_network("198.18.0.0/15")
DEFAULT_TECH_COUNTS = {"city": (5, 8), "county": (2, 4)}
NETWORK_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
PLAIN_SECRET_KEYS = ("user", "username", "name")

SITE_FIELDS = {
    "code": "str", "tier": "str", "parent": "str", "name_zh": "str", "pinyin": "str", "block": "cidr",
    "lan": "cidr", "metro": "cidr", "vpn_pool": "cidr", "router": "dict", "uplinks": "list",
    "hosts": "list", "parties": "list", "budget_units": "dict", "vpn_clients": "list",
    "technicians": "list", "notes": "str",
}
SITE_REQUIRED = ("code", "tier", "name_zh", "pinyin", "block", "lan", "router", "hosts")
PLAN_POOLS = ("loopbacks", "wan_links", "vpn_pool", "city_vpn_pools", "vpn_access")


class _Ctx:
    """Accumulates findings for one source."""

    def __init__(self, src):
        self.src = src
        self.findings = list(src.load_errors)
        self.files = {}

    def err(self, file, site, field, message, fix="", severity="error"):
        self.findings.append(Finding(file, site, field, message, fix, severity))

    def warn(self, file, site, field, message, fix=""):
        self.err(file, site, field, message, fix, "warning")


def _list(value):
    """``value`` when it is a list, else an empty list (its type is reported elsewhere)."""
    return value if isinstance(value, list) else []


def _dict(value):
    """``value`` when it is a mapping, else an empty mapping (its type is reported elsewhere)."""
    return value if isinstance(value, dict) else {}


def _kind_ok(value, kind):
    if kind == "str":
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "list":
        return isinstance(value, list)
    if kind == "dict":
        return isinstance(value, dict)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "cidr":
        if not isinstance(value, str) or "/" not in value:
            return False
        try:
            ipaddress.IPv4Network(value, strict=True)
        except ValueError:
            return False
        return True
    if kind == "ip":
        if not isinstance(value, str):
            return False
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            return False
        return True
    raise ValueError(kind)


KIND_TEXT = {"str": "a string", "int": "an integer", "list": "a list", "dict": "a mapping", "bool": "true or false",
             "cidr": "an IPv4 prefix such as 10.22.1.0/24 (host bits zero)", "ip": "an IPv4 address such as 10.22.1.10"}


def _typed(ctx, file, code, field, value, kind, required=True):
    """Check presence and type of one field; True when usable."""
    if value is None:
        if required:
            ctx.err(file, code, field, "missing", f"add '{field.split('.')[-1]}:' ({KIND_TEXT[kind]})")
        return False
    if not _kind_ok(value, kind):
        hint = ""
        if kind == "str" and isinstance(value, int):
            hint = "; quote it, e.g. \"%s\"" % value
        ctx.err(file, code, field, f"must be {KIND_TEXT[kind]}, got {type(value).__name__} {value!r}",
                f"write {KIND_TEXT[kind]}{hint}")
        return False
    return True


# --------------------------------------------------------------------------- network.yml


def _check_network(ctx):
    src, nf = ctx.src, ctx.src.network_file
    netw = src.network
    if not netw:
        return False
    ok = True
    if _typed(ctx, nf, None, "name", netw.get("name"), "str") and not NETWORK_NAME_RE.match(netw["name"]):
        ctx.err(nf, None, "name", f"{netw['name']!r} cannot name the network's state directory "
                "(/var/lib/jincai/pki/<name>)", "use lower-case letters, digits, '-' or '_', e.g. jilin")
    env = netw.get("environment", "production")
    if env not in ("lab", "production"):
        ctx.err(nf, None, "environment", f"unknown environment {env!r}", "use 'lab' or 'production'")
    plan = netw.get("plan")
    if not _typed(ctx, nf, None, "plan", plan, "dict"):
        return False
    if not _typed(ctx, nf, None, "plan.supernet", plan.get("supernet"), "cidr"):
        ok = False
    for key in PLAN_POOLS:
        if not _typed(ctx, nf, None, f"plan.{key}", plan.get(key), "cidr", required=key != "city_vpn_pools"):
            ok = ok and key == "city_vpn_pools" and plan.get(key) is None
    prefixes_ok = True
    for key, lo, hi in (("city_block_prefix", 8, 28), ("county_block_prefix", 16, 30), ("wan_link_prefix", 30, 31)):
        if not _typed(ctx, nf, None, f"plan.{key}", plan.get(key), "int"):
            ok = prefixes_ok = False
        elif not lo <= plan[key] <= hi:
            ctx.err(nf, None, f"plan.{key}", f"{plan[key]} is out of range", f"use a prefix length {lo}..{hi}")
            ok = prefixes_ok = False
    if prefixes_ok and plan["city_block_prefix"] >= plan["county_block_prefix"]:
        ctx.err(nf, None, "plan.county_block_prefix", "county blocks must be smaller than city blocks",
                "make county_block_prefix larger than city_block_prefix")
    mg = plan.get("management")
    if _typed(ctx, nf, None, "plan.management", mg, "dict"):
        mode = mg.get("mode")
        if mode not in ("out_of_band", "inband"):
            ctx.err(nf, None, "plan.management.mode", f"unknown mode {mode!r}", "use 'out_of_band' or 'inband'")
        if not _typed(ctx, nf, None, "plan.management.network", mg.get("network"), "cidr"):
            ok = False
        elif mode == "out_of_band":
            if _typed(ctx, nf, None, "plan.management.control_node", mg.get("control_node"), "ip"):
                if ipaddress.ip_address(mg["control_node"]) not in model.net(mg["network"]):
                    ctx.err(nf, None, "plan.management.control_node", "not inside the management network",
                            f"pick an address inside {mg['network']}")
    else:
        ok = False
    if ok:
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
            nets = [("plan.supernet", sup)]
            if isinstance(mg, dict) and _kind_ok(mg.get("network"), "cidr"):
                nets.append(("plan.management.network", model.net(mg["network"])))
            for field, n in nets:
                if not n.subnet_of(LAB_RANGE):
                    ctx.err(nf, None, field, f"{n} is outside 198.18.0.0/15; the lab may only use that range",
                            "use addresses from 198.18.0.0/15")
                    ok = False
        elif not sup.is_private:
            ctx.err(nf, None, "plan.supernet", f"{sup} is not a private range", "use an RFC 1918 prefix")
    for key in ("lan_prefix", "metro_prefix"):
        val = plan.get(key)
        if _typed(ctx, nf, None, f"plan.{key}", val, "dict"):
            for tier in model.TIERS:
                _typed(ctx, nf, None, f"plan.{key}.{tier}", val.get(tier), "int")
    for key, kind in (("domain", "str"), ("keys_dir", "str"), ("ospf", "dict"), ("ntp_upstream", "list"),
                      ("admins", "list"), ("defaults", "dict"), ("divisions_file", "str")):
        if key in netw:
            _typed(ctx, nf, None, key, netw[key], kind)
    for i, addr in enumerate(_list(netw.get("ntp_upstream"))):
        _typed(ctx, nf, None, f"ntp_upstream[{i}]", addr, "ip")
    ospf = _dict(netw.get("ospf"))
    if ospf.get("areas", "single") not in ("single", "per_city"):
        ctx.err(nf, None, "ospf.areas", f"unknown OSPF area design {ospf.get('areas')!r}",
                "use 'single' or 'per_city'")
    for key in ("hello", "dead"):
        if key in ospf:
            _typed(ctx, nf, None, f"ospf.{key}", ospf[key], "int")
    if _kind_ok(ospf.get("hello"), "int") and _kind_ok(ospf.get("dead"), "int") and ospf["dead"] <= ospf["hello"]:
        ctx.err(nf, None, "ospf.dead", "dead interval must exceed the hello interval", "e.g. hello 1, dead 4")
    apps = netw.get("applications")
    if _typed(ctx, nf, None, "applications", apps, "dict"):
        for name, spec in apps.items():
            if not isinstance(spec, dict) or not _kind_ok(spec.get("port"), "int"):
                ctx.err(nf, None, f"applications.{name}.port", "missing or not an integer", "give the TCP port")
    tiers = netw.get("tiers")
    if _typed(ctx, nf, None, "tiers", tiers, "dict"):
        for tier in model.TIERS:
            lst = tiers.get(tier)
            if _typed(ctx, nf, None, f"tiers.{tier}", lst, "list"):
                for a in lst:
                    if isinstance(apps, dict) and a not in apps:
                        ctx.err(nf, None, f"tiers.{tier}", f"unknown application {a!r}",
                                f"use one of {', '.join(apps)}")
                    if a == "township" and tier != "county":
                        ctx.err(nf, None, f"tiers.{tier}", "township (乡财县管) runs at counties only",
                                f"remove township from tiers.{tier}")
    for i, adm in enumerate(_list(netw.get("admins"))):
        _check_person(ctx, nf, None, f"admins[{i}]", adm)
    counts = netw.get("technician_counts")
    if counts is not None and _typed(ctx, nf, None, "technician_counts", counts, "dict"):
        for tier, rng in counts.items():
            if not (isinstance(rng, list) and len(rng) == 2 and all(_kind_ok(x, "int") for x in rng)):
                ctx.err(nf, None, f"technician_counts.{tier}", "must be [min, max]", "e.g. [2, 4]")
    secrets = netw.get("secrets", [])
    if not (isinstance(secrets, list) and all(isinstance(s, str) for s in secrets)):
        ctx.err(nf, None, "secrets", "must be a list of variable names", "e.g. [vault_snmp_auth]")
    return ok


def _check_person(ctx, file, code, field, p):
    """A technician or administrator: user, name, key or key_file, state."""
    if not _typed(ctx, file, code, field, p, "dict"):
        return
    if _typed(ctx, file, code, f"{field}.user", p.get("user"), "str") and not USER_RE.match(p["user"]):
        ctx.err(file, code, f"{field}.user", f"{p['user']!r} is not a valid login name",
                "lower-case letters, digits, '-' or '_', at most 32 characters")
    _typed(ctx, file, code, f"{field}.name", p.get("name"), "str")
    if p.get("state", "present") not in ("present", "absent"):
        ctx.err(file, code, f"{field}.state", f"unknown state {p.get('state')!r}", "use 'present' or 'absent'")
    has_key, has_file = p.get("key") is not None, p.get("key_file") is not None
    if has_key == has_file:
        ctx.err(file, code, f"{field}.key", "give exactly one of key (literal public key) or key_file",
                "add key: 'ssh-ed25519 AAAA...' or key_file: <name> (resolved in keys_dir)")
    elif has_key and not (isinstance(p["key"], str) and SSH_KEY_RE.match(p["key"])):
        ctx.err(file, code, f"{field}.key", "not an SSH public key", "paste the one-line .pub content")
    elif has_file and not (isinstance(p["key_file"], str) and USER_RE.match(p["key_file"])):
        ctx.err(file, code, f"{field}.key_file", "must be a plain key name (no path)",
                "write the name; the key is read from keys_dir/<name>.pub")


# --------------------------------------------------------------------------- sites


def _check_site_shape(ctx, file, site):
    """Field presence and types for one site; returns the code when usable, else None."""
    if not isinstance(site, dict):
        ctx.err(file, None, "sites", f"entry is not a mapping: {site!r}", "each site is a mapping with code:, tier:, ...")
        return None
    code = site.get("code")
    shown = str(code) if code is not None else "?"
    ok = True  # only fields later checks and derive() rely on clear it
    for key in site:
        if key not in SITE_FIELDS:
            close = difflib.get_close_matches(str(key), SITE_FIELDS, n=1)
            ctx.err(file, shown, str(key), "unknown field",
                    f"did you mean {close[0]}?" if close else f"remove it; known fields: {', '.join(SITE_FIELDS)}")
    for key, kind in SITE_FIELDS.items():
        required = key in SITE_REQUIRED or (key == "parent" and site.get("tier") in ("city", "county"))
        if not _typed(ctx, file, shown, key, site.get(key), kind, required):
            core = key in ("tier", "parent", "block", "lan", "router", "hosts") or (key == "code" and not isinstance(code, int))
            if core and (required or site.get(key) is not None):
                ok = False
    if isinstance(code, str) and not CODE_RE.match(code):
        ctx.err(file, shown, "code", f"{code!r} is not a 6-digit GB/T 2260 code", "write the 6-digit code")
        ok = False
    if isinstance(code, int) and not isinstance(code, bool):
        site["code"] = shown  # reported above; go on checking the rest of the site under its code
    if site.get("tier") not in model.TIERS:
        if isinstance(site.get("tier"), str):
            ctx.err(file, shown, "tier", f"unknown tier {site['tier']!r}", "use province, city or county")
        ok = False
    rtr = site.get("router")
    if isinstance(rtr, dict):
        plat = rtr.get("platform")
        if _typed(ctx, file, shown, "router.platform", plat, "str") and plat not in model.PLATFORMS:
            ctx.err(file, shown, "router.platform", f"unknown platform {plat!r}",
                    f"use one of {', '.join(model.PLATFORMS)}")
        if not _typed(ctx, file, shown, "router.loopback", rtr.get("loopback"), "ip"):
            ok = False
        twin_of = rtr.get("twin_of")
        if twin_of is not None:
            if ctx.src.network.get("environment") != "lab" or plat != "frr":
                ctx.err(file, shown, "router.twin_of", "only a lab twin's FRR router stands in for a platform",
                        "remove twin_of (production routers run their own platform)")
            elif twin_of not in model.PLATFORMS:
                ctx.err(file, shown, "router.twin_of", f"unknown platform {twin_of!r}",
                        f"use one of {', '.join(model.PLATFORMS)}")
    if site.get("tier") == "province" and site.get("uplinks"):
        ctx.err(file, shown, "uplinks", "the province has no uplinks", "remove uplinks from the province")
    if site.get("tier") == "province" and site.get("parent"):
        ctx.err(file, shown, "parent", "the province has no parent", "remove parent")
    return shown if ok else None


def _check_hosts(ctx, file, code, site, oob):
    """Host entries: names, functions, addresses, management addresses."""
    hosts = site.get("hosts") if isinstance(site.get("hosts"), list) else []
    routers = 0
    for i, h in enumerate(hosts):
        f = f"hosts[{i}]"
        if not _typed(ctx, file, code, f, h, "dict"):
            continue
        name = h.get("name")
        if _typed(ctx, file, code, f"{f}.name", name, "str") and not HOSTNAME_RE.match(name):
            ctx.err(file, code, f"{f}.name", f"{name!r} is not a valid host name part",
                    "lower-case letters and digits, e.g. app1")
        fn = h.get("function")
        if _typed(ctx, file, code, f"{f}.function", fn, "str") and fn not in model.FUNCTIONS:
            ctx.err(file, code, f"{f}.function", f"unknown function {fn!r}", f"use one of {', '.join(model.FUNCTIONS)}")
        routers += fn == "router"
        if fn == "vpn_concentrator" and site.get("tier") == "county":
            ctx.err(file, code, f"{f}.function", "VPN concentrators run at the province and the cities only",
                    "remove it; county budget units dial in to their city")
        _typed(ctx, file, code, f"{f}.address", h.get("address"), "ip")
        if fn == "vpn_concentrator":
            _typed(ctx, file, code, f"{f}.vpn_access", h.get("vpn_access"), "ip")
        if oob:
            _typed(ctx, file, code, f"{f}.mgmt", h.get("mgmt"), "ip")
        for key in h:
            if key not in ("name", "function", "address", "mgmt", "vpn_access"):
                ctx.err(file, code, f"{f}.{key}", "unknown field", "remove it (known: name, function, address, mgmt, vpn_access)")
    if routers != 1:
        ctx.err(file, code, "hosts", f"needs exactly one host with function router, found {routers}",
                "list one {name: rtr, function: router, address: <LAN gateway>}")
        return False
    return True


def _check_parties(ctx, file, code, site, oob, apps):
    tier_apps = _list(_dict(ctx.src.network.get("tiers")).get(site.get("tier")))
    parties = _list(site.get("parties"))
    if parties and not site.get("metro"):
        ctx.err(file, code, "metro", "site has external parties but no metro segment",
                "allocate a metro prefix inside the site's block (jincai site add does)")
    for i, p in enumerate(parties):
        f = f"parties[{i}]"
        if not _typed(ctx, file, code, f, p, "dict"):
            continue
        if _typed(ctx, file, code, f"{f}.name", p.get("name"), "str") and not HOSTNAME_RE.match(p["name"]):
            ctx.err(file, code, f"{f}.name", f"{p['name']!r} is not a valid host name part", "e.g. pbc, bank1, tax")
        if p.get("kind") not in model.PARTY_KINDS:
            ctx.err(file, code, f"{f}.kind", f"unknown party kind {p.get('kind')!r}",
                    f"use one of {', '.join(model.PARTY_KINDS)}")
        _typed(ctx, file, code, f"{f}.org", p.get("org"), "str")
        if _typed(ctx, file, code, f"{f}.apps", p.get("apps"), "list"):
            for a in p["apps"]:
                if a not in apps:
                    ctx.err(file, code, f"{f}.apps", f"unknown application {a!r}", f"use one of {', '.join(apps)}")
                elif a not in tier_apps:
                    ctx.err(file, code, f"{f}.apps", f"{a} does not run at a {site.get('tier')}",
                            f"use one of {', '.join(tier_apps)}")
        _typed(ctx, file, code, f"{f}.address", p.get("address"), "ip")
        if p.get("managed") is not None:
            _typed(ctx, file, code, f"{f}.managed", p.get("managed"), "bool")
        if p.get("managed") and oob:
            _typed(ctx, file, code, f"{f}.mgmt", p.get("mgmt"), "ip")
    bu = site.get("budget_units")
    if isinstance(bu, dict):
        if _typed(ctx, file, code, "budget_units.count", bu.get("count"), "int") and bu["count"] < 0:
            ctx.err(file, code, "budget_units.count", "must not be negative", "give the number of budget units")
        if _typed(ctx, file, code, "budget_units.apps", bu.get("apps"), "list"):
            for a in bu["apps"]:
                if a not in tier_apps:
                    ctx.err(file, code, "budget_units.apps", f"{a!r} does not run at a {site.get('tier')}",
                            f"use one of {', '.join(tier_apps)}")
    for i, c in enumerate(_list(site.get("vpn_clients"))):
        f = f"vpn_clients[{i}]"
        if not _typed(ctx, file, code, f, c, "dict"):
            continue
        if _typed(ctx, file, code, f"{f}.name", c.get("name"), "str") and not HOSTNAME_RE.match(c["name"]):
            ctx.err(file, code, f"{f}.name", f"{c['name']!r} is not a valid host name", "e.g. bu0001")
        _typed(ctx, file, code, f"{f}.address", c.get("address"), "ip")
        if oob:
            _typed(ctx, file, code, f"{f}.mgmt", c.get("mgmt"), "ip")


def _check_people(ctx, file, code, site):
    techs = _list(site.get("technicians"))
    for i, t in enumerate(techs):
        _check_person(ctx, file, code, f"technicians[{i}]", t)
    tier = site.get("tier")
    counts = dict(DEFAULT_TECH_COUNTS)
    counts.update({k: tuple(v) for k, v in _dict(ctx.src.network.get("technician_counts")).items()
                   if isinstance(v, list) and len(v) == 2})
    if tier in counts:
        lo, hi = counts[tier]
        n = sum(1 for t in techs if isinstance(t, dict) and t.get("state", "present") == "present")
        if not lo <= n <= hi:
            ctx.warn(file, code, "technicians", f"{n} technicians; a {tier} should have {lo}-{hi}",
                     f"list {lo}-{hi} technicians with state present")


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
    plan = ctx.src.plan
    for file, site in usable:
        code, tier = site["code"], site["tier"]
        ups = _list(site.get("uplinks"))
        if tier != "province" and not ups:
            ctx.err(file, code, "uplinks", "a city or county needs a primary uplink",
                    "add {peer: <parent>, subnet: <free /30>, role: primary}")
        primaries = 0
        seen = set()
        for i, up in enumerate(ups):
            f = f"uplinks[{i}]"
            if not _typed(ctx, file, code, f, up, "dict"):
                continue
            for key in up:
                if key not in ("peer", "subnet", "role", "direct", "carrier"):
                    ctx.err(file, code, f"{f}.{key}", "unknown field",
                            "remove it (known: peer, subnet, role, direct, carrier)")
            peer = up.get("peer")
            if not _typed(ctx, file, code, f"{f}.peer", peer, "str"):
                continue
            role = up.get("role")
            if role not in model.LINK_ROLES:
                ctx.err(file, code, f"{f}.role", f"unknown role {role!r}", "use primary or backup")
            primaries += role == "primary"
            if (peer, role) in seen:
                ctx.err(file, code, f"{f}", f"second {role} uplink to {peer}", "remove the duplicate link")
            seen.add((peer, role))
            if _typed(ctx, file, code, f"{f}.subnet", up.get("subnet"), "cidr"):
                sn = model.net(up["subnet"])
                if sn.prefixlen != plan.get("wan_link_prefix"):
                    ctx.err(file, code, f"{f}.subnet", f"{sn} is not a /{plan.get('wan_link_prefix')}",
                            f"use a /{plan.get('wan_link_prefix')} from plan.wan_links")
                elif _kind_ok(plan.get("wan_links"), "cidr") and not sn.subnet_of(model.net(plan["wan_links"])):
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
    plan = ctx.src.plan
    prefixes, addresses = [], []  # (network, owner_key, file, code, field)
    mg = _dict(plan.get("management"))
    oob = mg.get("mode") == "out_of_band"
    for file, site in usable:
        code = site["code"]
        if mg.get("mode") == "inband" and site["tier"] == "province" and _kind_ok(mg.get("network"), "cidr"):
            prefixes.append((model.net(mg["network"]), ("mgmt", code), ctx.src.network_file, code,
                             "plan.management.network"))
        for key in ("block", "lan", "metro", "vpn_pool"):
            if _kind_ok(site.get(key), "cidr"):
                prefixes.append((model.net(site[key]), (key, code), file, code, key))
        for i, up in enumerate(_list(site.get("uplinks"))):
            if isinstance(up, dict) and _kind_ok(up.get("subnet"), "cidr"):
                prefixes.append((model.net(up["subnet"]), ("wan", code, i), file, code, f"uplinks[{i}].subnet"))
        rtr = _dict(site.get("router"))
        if _kind_ok(rtr.get("loopback"), "ip"):
            addresses.append((rtr["loopback"], "loopback", file, code, "router.loopback"))
        for lst, area in (("hosts", "lan"), ("parties", "metro"), ("vpn_clients", "vpn_access")):
            for i, h in enumerate(_list(site.get(lst))):
                if not isinstance(h, dict):
                    continue
                if _kind_ok(h.get("address"), "ip"):
                    addresses.append((h["address"], area, file, code, f"{lst}[{i}].address"))
                if _kind_ok(h.get("vpn_access"), "ip"):
                    addresses.append((h["vpn_access"], "vpn_access", file, code, f"{lst}[{i}].vpn_access"))
                if oob and _kind_ok(h.get("mgmt"), "ip"):
                    addresses.append((h["mgmt"], "mgmt", file, code, f"{lst}[{i}].mgmt"))
    return prefixes, addresses


def _check_addresses(ctx, usable, by_code, plan_ok):
    """Duplicates, overlaps, and addresses outside their site's block or pool."""
    plan = ctx.src.plan
    prefixes, addresses = _claims(ctx, usable)
    mg = _dict(plan.get("management"))
    # duplicates of single addresses
    seen = {}
    if mg.get("mode") == "out_of_band" and _kind_ok(mg.get("control_node"), "ip"):
        seen[mg["control_node"]] = (ctx.src.network_file, None, "plan.management.control_node")
    for addr, _, file, code, field in addresses:
        if addr in seen:
            ofile, ocode, ofield = seen[addr]
            where = f"site {ocode} {ofield}" if ocode else ofield
            ctx.err(file, code, field, f"duplicate address {addr}, also used by {where} ({ofile})",
                    "give each host its own address (jincai site add picks free ones)")
        else:
            seen[addr] = (file, code, field)
    if not plan_ok:
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
            if not _kind_ok(cidr, "cidr"):
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
        if kind in ("lan", "metro", "mgmt") and _kind_ok(site.get("block"), "cidr"):
            blk = model.net(site["block"])
            if not n.subnet_of(blk):
                ctx.err(file, code, field, f"{n} is outside the site's block {blk}",
                        f"choose a {kind} prefix inside {blk}")
        elif kind == "block":
            if not n.subnet_of(sup):
                ctx.err(file, code, field, f"{n} is outside the supernet {sup}", f"allocate from {sup}")
            elif site["tier"] == "county":
                parent = by_code.get(site.get("parent"))
                if parent and _kind_ok(parent.get("block"), "cidr") and not n.subnet_of(model.net(parent["block"])):
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
        has_vpn = any(isinstance(h, dict) and h.get("function") == "vpn_concentrator" for h in _list(site.get("hosts")))
        if tier == "county":
            continue
        served = [site] + ([s for _, s in usable if s.get("parent") == code and s["tier"] == "county"]
                           if tier == "city" else [])
        count = sum(_dict(s.get("budget_units")).get("count", 0) for s in served
                    if isinstance(_dict(s.get("budget_units")).get("count", 0), int))
        if has_vpn and not _kind_ok(site.get("vpn_pool"), "cidr"):
            ctx.err(file, code, "vpn_pool", "site has a VPN concentrator but no budget-unit pool",
                    "allocate vpn_pool (jincai site add does)")
            continue
        if count and not has_vpn:
            ctx.err(file, code, "budget_units", f"{count} budget units but no VPN concentrator serves them",
                    "add a host with function vpn_concentrator at this site")
            continue
        if has_vpn:
            size = model.net(site["vpn_pool"]).num_addresses - 2
            if size < count:
                ctx.err(file, code, "vpn_pool", f"budget-unit pool {site['vpn_pool']} holds {size} addresses, "
                        f"fewer than the {count} budget units it serves",
                        "allocate a larger pool (a /21 holds 2,046)")
    for file, site in usable:
        if site.get("vpn_clients") and not any(isinstance(h, dict) and h.get("function") == "vpn_concentrator"
                                               for h in _list(site.get("hosts"))):
            ctx.err(file, site["code"], "vpn_clients", "VPN clients but no VPN concentrator at this site",
                    "add a vpn_concentrator host or move the clients")


def _check_duplicates(ctx, usable_all):
    """Duplicate site codes, names, host names and technician users."""
    codes, names, hostnames, users = {}, {}, {}, {}
    nf = ctx.src.network_file
    for i, adm in enumerate(_list(ctx.src.network.get("admins"))):
        if isinstance(adm, dict) and isinstance(adm.get("user"), str):
            users[adm["user"]] = (nf, None)
    for file, site in usable_all:
        code = site.get("code")
        if not isinstance(code, str):
            continue
        if code in codes:
            ctx.err(file, code, "code", f"duplicate site code, also in {codes[code]}", "keep one entry per site")
            continue
        codes[code] = file
        nm = site.get("name_zh")
        if isinstance(nm, str):
            if nm in names:
                ctx.err(file, code, "name_zh", f"duplicate name {nm}, also site {names[nm][1]} ({names[nm][0]})",
                        "each site has its own GB/T 2260 name")
            else:
                names[nm] = (file, code)
        for lst, prefix in (("hosts", True), ("parties", True), ("vpn_clients", False)):
            for i, h in enumerate(_list(site.get(lst))):
                if isinstance(h, dict) and isinstance(h.get("name"), str):
                    hn = f"{code}-{h['name']}" if prefix else h["name"]
                    if hn in hostnames:
                        ctx.err(file, code, f"{lst}[{i}].name", f"duplicate host name {hn}, also in {hostnames[hn]}",
                                "rename one of them")
                    else:
                        hostnames[hn] = file
        for i, t in enumerate(_list(site.get("technicians"))):
            if isinstance(t, dict) and isinstance(t.get("user"), str):
                u = t["user"]
                if u in users:
                    other = f"site {users[u][1]}" if users[u][1] else "admins"
                    ctx.err(file, code, f"technicians[{i}].user", f"duplicate user {u}, also {other} ({users[u][0]})",
                            "give each technician a unique login name")
                else:
                    users[u] = (file, code)


def _check_vault(ctx):
    """Every required secret is present in group_vars/all/vault.yml and encrypted."""
    required = ctx.src.network.get("secrets") or []
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


def _check_province(ctx, usable_all):
    provs = [(f, s) for f, s in usable_all if isinstance(s, dict) and s.get("tier") == "province"]
    if len(provs) != 1:
        ctx.err(ctx.src.network_file, None, "sites", f"{len(provs)} province sites", "define exactly one site with tier: province")
        return
    f, p = provs[0]
    hosts = p.get("hosts") if isinstance(p.get("hosts"), list) else []
    if not any(isinstance(h, dict) and h.get("function") == "services" for h in hosts):
        ctx.err(f, p.get("code"), "hosts", "the province needs a services host (log collector, NTP, artifacts)",
                "add {name: svc, function: services, address: ...}")


def check(src):
    """Return every finding (errors and warnings) for a loaded :class:`jincai.model.Source`."""
    ctx = _Ctx(src)
    if not src.network:
        return ctx.findings
    plan_ok = _check_network(ctx)
    mg = src.plan.get("management") if isinstance(src.plan.get("management"), dict) else {}
    oob = mg.get("mode") == "out_of_band"
    apps = src.network.get("applications") if isinstance(src.network.get("applications"), dict) else {}
    _check_duplicates(ctx, src.sites)
    usable = []
    seen = set()
    for file, site in src.sites:
        code = _check_site_shape(ctx, file, site)
        if code is None:
            continue
        hosts_ok = _check_hosts(ctx, file, code, site, oob)
        _check_parties(ctx, file, code, site, oob, apps)
        _check_people(ctx, file, code, site)
        if hosts_ok and code not in seen:
            seen.add(code)
            usable.append((file, site))
    by_code = {s["code"]: s for _, s in usable}
    _check_province(ctx, src.sites)
    _check_divisions(ctx, usable, by_code)
    _check_links(ctx, usable, by_code)
    _check_addresses(ctx, usable, by_code, plan_ok)
    _check_pools(ctx, usable, by_code)
    _check_vault(ctx)
    # sites that failed their own checks make the derived inventory unusable
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
