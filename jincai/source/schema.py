"""The schema of the source of truth: every key, type, enumeration and range, in one place.

``network.yml`` (the mapping under ``network:``) and every site of ``sites/*.yml`` are checked against
the JSON Schemas below (jsonschema, draft 2020-12). Keys a schema does not name are errors everywhere.
The ``x-`` annotations carry the operator-facing wording: ``x-kind`` (the value kind in messages),
``x-noun`` (what an enumeration lists), ``x-fix`` (how to fix an enumeration or range error) and
``x-messages`` (``{keyword: (message, fix)}``, ``{value}`` and ``{field}`` substituted). ``x-doc``
marks keys documented in docs/source-of-truth.md under another heading.

:func:`problems` turns jsonschema's errors into ``(path, message, fix)`` in the form of the other
checks of :mod:`jincai.source.validate`; :func:`prune` removes the values it rejected, so the cross-site
checks that follow only ever see well-typed data (validation never raises).
"""

from __future__ import annotations

import copy
import difflib
import functools
import ipaddress
import re

from jincai.source import model, sshkeys

CODE_PATTERN = r"^\d{6}$"
USER_PATTERN = r"^[a-z_][a-z0-9_-]{0,31}$"
HOSTNAME_PATTERN = r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$"
NETWORK_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
DOMAIN_PATTERN = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
APP_PATTERN = r"^[a-z][a-z0-9_]*$"
VARIABLE_PATTERN = r"^[a-z_][a-z0-9_]*$"
#: The lab's whole address range; its management network may use any prefix of 198.19.0.0/16.
LAB_RANGE = ipaddress.ip_network("198.18.0.0/15")
LAB_MANAGEMENT_RANGE = ipaddress.ip_network("198.19.0.0/16")
#: Shared or generic names: a login must name one person (the accounts role refuses the same list,
#: roles/accounts/defaults/main.yml accounts_forbidden_names; a unit test keeps them equal).
GENERIC_ACCOUNTS = ("admin", "administrator", "operator", "oper", "tech", "technician", "support", "guest",
                    "test", "user", "ops", "netadmin", "sysadmin")
#: System accounts a person must never be given: Debian's base-passwd users, the daemons of the
#: packages the roles install, and jincai's own automation logins (ansible_user jincai, the
#: bootstrap's netops, the backup role's jincai-backup).
SYSTEM_ACCOUNTS = ("root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy",
                   "www-data", "backup", "list", "irc", "gnats", "nobody", "messagebus", "sshd", "syslog",
                   "polkitd", "tss", "uuidd", "tcpdump", "chrony", "postgres", "frr", "frrvty", "strongswan",
                   "netops", "jincai")
SYSTEM_ACCOUNT_PATTERN = r"^(systemd-|jincai-|_)"
PORT = {"type": "integer", "minimum": 1, "maximum": 65535, "x-fix": "use a TCP port 1..65535"}

KIND_TEXT = {"string": "a string", "integer": "an integer", "array": "a list", "object": "a mapping",
             "boolean": "true or false", "cidr": "an IPv4 prefix such as 10.22.1.0/24 (host bits zero)",
             "ip": "an IPv4 address such as 10.22.1.10"}


# --------------------------------------------------------------------------- formats


def _is_prefix(value):
    """An IPv4 prefix with a length and host bits zero (``10.22.1.0/24``)."""
    if not isinstance(value, str):
        return True
    if "/" not in value:
        raise ValueError("no prefix length")
    ipaddress.IPv4Network(value, strict=True)
    return True


def _is_address(value):
    """A plain IPv4 address."""
    if isinstance(value, str):
        ipaddress.IPv4Address(value)
    return True


def _is_key(value):
    """An OpenSSH public key line whose blob decodes and names its own type (see :mod:`jincai.source.sshkeys`)."""
    if isinstance(value, str):
        problem = sshkeys.key_error(value)
        if problem:
            raise ValueError(problem)
    return True


# --------------------------------------------------------------------------- building blocks


def _obj(properties, required=(), **extra):
    """A closed mapping: ``properties`` only, ``required`` among them."""
    out = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        out["required"] = list(required)
    out.update({k: v for k, v in extra.items() if v != []})
    return out


def _enum(values, noun, fix=None):
    out = {"type": "string", "enum": list(values), "x-noun": noun}
    if fix:
        out["x-fix"] = fix
    return out


def _list(items, **extra):
    return {"type": "array", "items": items, **extra}


STRING = {"type": "string", "minLength": 1}
PREFIX = {"type": "string", "format": "ipv4-prefix", "x-kind": "cidr"}
ADDRESS = {"type": "string", "format": "ipv4-address", "x-kind": "ip"}
BOOL = {"type": "boolean"}


def _int(lo, hi=None, fix=None):
    out = {"type": "integer", "minimum": lo}
    if hi is not None:
        out["maximum"] = hi
    out["x-fix"] = fix or (f"use a number {lo}..{hi}" if hi is not None else f"use a number of at least {lo}")
    return out


def _prefix_len(lo, hi):
    return _int(lo, hi, f"use a prefix length {lo}..{hi}")


def _name(pattern_fix):
    return {"type": "string", "pattern": HOSTNAME_PATTERN, "x-messages": {
        "pattern": ("{value!r} is not a valid host name part", pattern_fix)}}


CODE = {"type": "string", "pattern": CODE_PATTERN, "x-messages": {
    "pattern": ("{value!r} is not a 6-digit GB/T 2260 code", "write the 6-digit code")}}

PERSON = {
    "type": "object",
    "properties": {
        "user": {"type": "string", "pattern": USER_PATTERN, "x-messages": {
            "pattern": ("{value!r} is not a valid login name",
                        "lower-case letters, digits, '-' or '_', at most 32 characters")},
            "allOf": [
                {"not": {"enum": list(GENERIC_ACCOUNTS)}, "x-messages": {"not": (
                    "{value!r} is a shared or generic account name",
                    "use a personal login, e.g. the person's initials and the site code")}},
                {"not": {"anyOf": [{"enum": list(SYSTEM_ACCOUNTS)}, {"pattern": SYSTEM_ACCOUNT_PATTERN}]},
                 "x-messages": {"not": ("{value!r} is a system or automation account, not a person's login",
                                        "use a personal login (system accounts: root, daemon, nobody, sshd, "
                                        "postgres, frr, systemd-*, netops, jincai, ...)")}},
            ]},
        "name": STRING,
        "key": {"type": "string", "format": "ssh-public-key", "x-kind": "key"},
        "key_file": {"type": "string", "pattern": USER_PATTERN, "x-messages": {
            "pattern": ("must be a plain key name (no path)",
                        "write the name; the key is read from keys_dir/<name>.pub")}},
        "state": _enum(("present", "absent"), "state", "use 'present' or 'absent'"),
    },
    "additionalProperties": False,
    "required": ["user", "name"],
    "oneOf": [{"required": ["key"]}, {"required": ["key_file"]}],
    "x-messages": {"oneOf": ("give exactly one of key (literal public key) or key_file",
                             "add key: 'ssh-ed25519 AAAA...' or key_file: <name> (resolved in keys_dir)", "key")},
}

#: Separation of duties (三员分立, GB/T 22239 8.1.4.2 d): each province administrator holds exactly one
#: of these roles (validate refuses a second one); the accounts role gives each its sudo rules.
ADMIN_ROLES = ("system", "security", "audit")
ADMIN = {**PERSON, "properties": {**PERSON["properties"], "roles": _list(
    _enum(ADMIN_ROLES, "administrator role", "use system, security or audit (系统/安全/审计管理员)"), minItems=1,
    **{"x-messages": {"minItems": ("no administrator role", "write roles: [system], [security] or [audit]")}})},
    "required": [*PERSON["required"], "roles"]}

PARTY_SPEC = {"name": _name("e.g. pbc, bank1, tax"), "kind": _enum(model.PARTY_KINDS, "party kind"),
              "org": {"type": "string"}, "apps": _list({"type": "string"}), "managed": BOOL}
HOST_SPEC = {"name": _name("lower-case letters and digits, e.g. app1"), "function": _enum(model.FUNCTIONS, "function")}
#: One application of the catalogue (network.yml ``applications.<name>``): the tiers that run it, each
#: with its rollout wave, and who may reach it (party kinds on the metro segment, budget units over the VPN).
APPLICATION = _obj({
    "name_zh": STRING, "name_en": STRING, "port": PORT,
    "tiers": _obj({t: _int(1, 9, "use a rollout wave 1..9") for t in model.TIERS}),
    "parties": _list(_enum(model.PARTY_KINDS, "party kind")),
    "budget_units": BOOL,
    "townships": BOOL,
}, ("name_zh", "port", "tiers"))
BUDGET_UNITS = {"count": _int(0, fix="give the number of budget units"), "apps": _list({"type": "string"})}
#: A county's township finance offices (乡镇财政所): how many, the county applications they reach, and
#: optionally the site whose concentrator serves them (default: the county's city, as its budget units).
TOWNSHIP_DEFAULTS = {"count": _int(0, fix="give the number of township finance offices"),
                     "apps": _list({"type": "string"})}
TOWNSHIPS = {**TOWNSHIP_DEFAULTS, "concentrator": CODE}


def _per_tier(schema, tiers=("city", "county")):
    """A mapping from tier to ``schema`` (the ``defaults`` of ``jincai site add``)."""
    return _obj({t: schema for t in tiers})


def _per_tier_required(schema):
    return _obj({t: schema for t in model.TIERS}, model.TIERS)


# --------------------------------------------------------------------------- the two schemas


@functools.lru_cache(maxsize=4)
def network_schema(lab=False):
    """The mapping under ``network:`` of ``network.yml`` (``lab``: the lab's management range)."""
    management = _obj({
        "mode": _enum(("out_of_band", "inband"), "mode", "use 'out_of_band' or 'inband'"),
        "network": PREFIX, "control_node": ADDRESS, "host_offset": _int(1, 65534),
    }, ("mode", "network"), allOf=[{
        "if": {"properties": {"mode": {"const": "out_of_band"}}, "required": ["mode"]},
        "then": {"required": ["control_node"]}}])
    plan = _obj({
        "supernet": PREFIX, "loopbacks": PREFIX, "wan_links": PREFIX, "vpn_pool": PREFIX,
        "city_vpn_pools": PREFIX, "vpn_access": PREFIX,
        "city_block_prefix": _prefix_len(8, 28), "county_block_prefix": _prefix_len(16, 30),
        "wan_link_prefix": _prefix_len(30, 31), "city_vpn_pool_prefix": _prefix_len(8, 30),
        "lan_prefix": _per_tier_required(_prefix_len(8, 30)), "metro_prefix": _per_tier_required(_prefix_len(8, 30)),
        "host_offset": _int(1, 65534), "vpn_access_client_offset": _int(1, 65534),
        "management": management,
    }, ("supernet", "loopbacks", "wan_links", "vpn_pool", "vpn_access", "city_block_prefix",
        "county_block_prefix", "wan_link_prefix", "lan_prefix", "metro_prefix", "management"))
    pair = {"type": "array", "items": _int(0), "minItems": 2, "maxItems": 2,
            "x-messages": {k: ("must be [min, max]", "e.g. [2, 4]") for k in ("minItems", "maxItems")}}
    return _obj({
        "name": {"type": "string", "pattern": NETWORK_NAME_PATTERN, "x-messages": {"pattern": (
            "{value!r} cannot name the network's state directory (/var/lib/jincai/pki/<name>)",
            "use lower-case letters, digits, '-' or '_', e.g. jilin")}},
        "environment": _enum(("lab", "production"), "environment", "use 'lab' or 'production'"),
        "domain": {"type": "string", "maxLength": 200, "pattern": DOMAIN_PATTERN, "x-messages": {
            "pattern": ("{value!r} is not a DNS domain", "lower-case labels of letters, digits and '-', "
                        "joined by dots, e.g. jincai.jl.internal"),
            "maxLength": ("too long for host names under it (at most 200 characters)", "use a shorter domain")}},
        "keys_dir": STRING,
        "divisions_file": STRING,
        "plan": plan,
        "ospf": _obj({"areas": _enum(("single", "per_city"), "OSPF area design", "use 'single' or 'per_city'"),
                      "hello": _int(1, 65535), "dead": _int(1, 65535)}),
        "ntp_upstream": _list(ADDRESS),
        "applications": {"type": "object", "propertyNames": {"type": "string", "pattern": APP_PATTERN, "x-messages": {
                             k: ("{value!r} is not an application name", "lower-case letters, digits and '_', e.g. budget")
                             for k in ("type", "pattern")}},
                         "additionalProperties": APPLICATION},
        "technician_counts": _obj({t: pair for t in model.TIERS}),
        "admins": _list(ADMIN),
        "secrets": _list({"type": "string", "pattern": VARIABLE_PATTERN, "x-messages": {
            "pattern": ("{value!r} is not a variable name", "e.g. vault_snmp_auth")}}),
        "defaults": _obj({
            "platform": _per_tier(_enum(model.PLATFORMS, "platform")),
            "uplinks": _per_tier(_list(_enum(model.LINK_ROLES, "role", "use primary or backup"))),
            "hosts": _per_tier(_list(_obj(HOST_SPEC, ("name", "function")))),
            "parties": _per_tier(_list(_obj(PARTY_SPEC, ("name", "kind")))),
            "budget_units": _per_tier(_obj(BUDGET_UNITS, ("count", "apps"))),
            "townships": _per_tier(_obj(TOWNSHIP_DEFAULTS, ("count", "apps")), tiers=("county",)),
        }),
    }, ("name", "plan", "applications"))


@functools.lru_cache(maxsize=8)
def site_schema(out_of_band=False, lab=False):
    """One site of ``sites/*.yml``; ``out_of_band``: every host records ``mgmt``; ``lab``: lab-only fields."""
    mgmt_required = {"required": ["mgmt"]} if out_of_band else {}
    router = {"platform": _enum(model.PLATFORMS, "platform"), "loopback": ADDRESS}
    twin_rule = []
    if lab:  # a province twin (jincai lab twin): FRR carries the data plane of a production platform
        router["twin_of"] = _enum(model.PLATFORMS, "platform")
        twin_rule = [{"if": {"required": ["twin_of"]}, "then": {"properties": {"platform": {
            "const": "frr", "x-messages": {"const": ("only a lab twin's FRR router stands in for a platform",
                                                     "write platform: frr (twin_of names the production one)")}}}}}]
    else:
        router["twin_of"] = {"not": {}, "x-doc": True, "x-messages": {"not": (
            "only a lab twin's FRR router stands in for a platform",
            "remove twin_of (production routers run their own platform)")}}
    host = _obj({**HOST_SPEC, "address": ADDRESS, "mgmt": ADDRESS, "vpn_access": ADDRESS},
                ("name", "function", "address"), allOf=[
                    {"if": {"properties": {"function": {"const": "vpn_concentrator"}}, "required": ["function"]},
                     "then": {"required": ["vpn_access"]}}] + ([mgmt_required] if out_of_band else []))
    party = _obj({**PARTY_SPEC, "address": ADDRESS, "mgmt": ADDRESS}, ("name", "kind", "org", "apps", "address"))
    if out_of_band:
        party["allOf"] = [{"if": {"properties": {"managed": {"const": True}}, "required": ["managed"]},
                           "then": mgmt_required}]
    client = _obj({"name": _name("e.g. bu0001"), "address": ADDRESS, "mgmt": ADDRESS, "home": CODE,
                   "enrolment": _enum(("bundle", "csr"), "enrolment", "use bundle (the province issues the key) "
                                      "or csr (the unit generates it)"),
                   "kind": _enum(tuple(model.VPN_KINDS), "client kind", "use budget_unit (the default) or "
                                 "township (a township finance office of its home county)")},
                  ("name", "address") + (("mgmt",) if out_of_band else ()))
    uplink = _obj({"peer": CODE, "subnet": PREFIX, "role": _enum(model.LINK_ROLES, "role", "use primary or backup"),
                   "direct": BOOL, "carrier": STRING}, ("peer", "subnet", "role"))
    province = {"if": {"properties": {"tier": {"const": "province"}}, "required": ["tier"]},
                "then": {"properties": {
                    "parent": {"not": {}, "x-messages": {"not": ("the province has no parent", "remove parent")}},
                    "uplinks": {"maxItems": 0, "x-messages": {"maxItems": (
                        "the province has no uplinks", "remove uplinks from the province")}}}},
                "else": {"if": {"properties": {"tier": {"enum": ["city", "county"]}}, "required": ["tier"]},
                         "then": {"required": ["parent"]}}}
    return _obj({
        "code": CODE,
        "tier": _enum(model.TIERS, "tier", "use province, city or county"),
        "parent": CODE,
        "name_zh": STRING,
        "pinyin": STRING,
        "block": PREFIX, "lan": PREFIX, "metro": PREFIX, "vpn_pool": PREFIX,
        "router": _obj(router, ("platform", "loopback"), allOf=twin_rule),
        "uplinks": _list(uplink),
        "hosts": _list(host),
        "parties": _list(party),
        "budget_units": _obj(BUDGET_UNITS, ("count", "apps")),
        "townships": _obj(TOWNSHIPS, ("count", "apps")),
        "vpn_clients": _list(client),
        "technicians": _list(PERSON),
        "notes": {"type": "string"},
    }, ("code", "tier", "name_zh", "pinyin", "block", "lan", "router", "hosts"), allOf=[province])


@functools.lru_cache(maxsize=16)
def _validator(which, *args):
    schema = network_schema(*args) if which == "network" else site_schema(*args)
    return validator_class()(schema, format_checker=_format_checker())


@functools.lru_cache(maxsize=1)
def validator_class():
    """jsonschema's draft 2020-12 validator with YAML's integers (its default also takes 8101.0).

    jsonschema is imported here, not at module level: only invalid input needs its messages (valid
    input passes :func:`conforms`), and the inventory plugin saves the import on every parse."""
    import jsonschema  # noqa: PLC0415

    return jsonschema.validators.extend(
        jsonschema.Draft202012Validator,
        type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer))


def _format_checker():
    import jsonschema  # noqa: PLC0415

    checker = jsonschema.FormatChecker(formats=())
    for name, func in _FORMAT_FUNCS.items():
        checker.checks(name, raises=ValueError)(func)
    return checker


def _is_integer(_checker, value):
    """YAML integers only."""
    return isinstance(value, int) and not isinstance(value, bool)


# --------------------------------------------------------------------------- the fast path

# jsonschema builds an error object per keyword visited and costs ~1 s on the Jilin source under
# load; the inventory plugin validates on every parse. :func:`conforms` answers only "valid or not"
# for the keywords used above (a differential hypothesis test keeps it equal to jsonschema), so
# valid input never pays for the messages; invalid input goes through jsonschema for them.
_TYPES = {"string": str, "array": list, "object": dict, "boolean": bool}
_FORMAT_FUNCS = {"ipv4-prefix": _is_prefix, "ipv4-address": _is_address, "ssh-public-key": _is_key}


def _same(a, b):
    """JSON equality: true and 1 differ."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _format_ok(name, value):
    try:
        return _FORMAT_FUNCS[name](value)
    except ValueError:
        return False


def conforms(schema, value):  # noqa: C901, PLR0911, PLR0912 - one branch per keyword, as in the spec
    """True when ``value`` is valid under ``schema`` (the subset of JSON Schema this module uses)."""
    kind = schema.get("type")
    if kind is not None:
        if kind == "integer":
            if not _is_integer(None, value):
                return False
        elif not isinstance(value, _TYPES[kind]):
            return False
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key, sub in props.items():
            if key in value and not conforms(sub, value[key]):
                return False
        for key in schema.get("required", ()):
            if key not in value:
                return False
        extra = schema.get("additionalProperties", True)
        if extra is not True:
            for key, sub in value.items():
                if key not in props and (extra is False or not conforms(extra, sub)):
                    return False
        names = schema.get("propertyNames")
        if names is not None and not all(conforms(names, key) for key in value):
            return False
    elif isinstance(value, list):
        items = schema.get("items")
        if items is not None and not all(conforms(items, x) for x in value):
            return False
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value)):
            return False
    elif isinstance(value, str):
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
            return False
        if "pattern" in schema and not _pattern(schema["pattern"]).search(value):
            return False
        if "format" in schema and not _format_ok(schema["format"], value):
            return False
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < schema.get("minimum", value) or value > schema.get("maximum", value):
            return False
    if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
        return False
    if "const" in schema and not _same(value, schema["const"]):
        return False
    if "not" in schema and conforms(schema["not"], value):
        return False
    if not all(conforms(sub, value) for sub in schema.get("allOf", ())):
        return False
    if "anyOf" in schema and not any(conforms(sub, value) for sub in schema["anyOf"]):
        return False
    if "oneOf" in schema and sum(conforms(sub, value) for sub in schema["oneOf"]) != 1:
        return False
    if "if" in schema:
        branch = schema.get("then" if conforms(schema["if"], value) else "else")
        if branch is not None and not conforms(branch, value):
            return False
    return True


@functools.lru_cache(maxsize=256)
def _pattern(text):
    return re.compile(text)


#: The keywords :func:`conforms` implements (a unit test checks the schemas use no other).
KEYWORDS = frozenset({"type", "properties", "required", "additionalProperties", "propertyNames", "items",
                      "minItems", "maxItems", "minLength", "maxLength", "pattern", "format", "minimum",
                      "maximum", "enum", "const", "not", "allOf", "anyOf", "oneOf", "if", "then", "else"})


# --------------------------------------------------------------------------- errors to messages


def field_name(path):
    """``hosts[1].address`` for the path ``("hosts", 1, "address")``."""
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out


def _kind(schema):
    kind = schema.get("x-kind") or schema.get("type") or "string"
    return "string" if kind == "key" else kind


def _subschema(schema, key):
    """The schema of ``key`` inside an object or array schema (properties, then additionalProperties)."""
    if isinstance(key, int):
        return schema.get("items") or {}
    props = schema.get("properties") or {}
    if key in props:
        return props[key]
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else {}


def schema_at(schema, path):
    """The schema that describes the value at ``path`` (conditionals ignored)."""
    for step in path:
        schema = _subschema(schema, step)
    return schema


def suggest(word, choices):
    """The closest of ``choices`` to ``word`` (difflib), or None."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return close[0] if close else None


def _type_name(value):
    return type(value).__name__ if not isinstance(value, str) else "str"


def _explain(err, root):
    """``[(path, message, fix)]`` for one jsonschema error."""
    path, schema, value, kw = tuple(err.absolute_path), err.schema, err.instance, err.validator
    if "propertyNames" in err.relative_schema_path:
        path += (value,)  # the key itself is wrong: name it (and prune only its entry)
    custom = (schema.get("x-messages") or {}).get(kw) if isinstance(schema, dict) else None
    if custom:
        msg, fix, *suffix = custom
        field = field_name(path)
        return [(path + tuple(suffix), msg.format(value=value, field=field), fix.format(value=value, field=field))]
    if kw == "required":
        out = []
        for name in err.validator_value:
            if isinstance(value, dict) and name not in value:
                kind = _kind(schema_at(root, path + (name,)))
                out.append((path + (name,), "missing", f"add '{name}:' ({KIND_TEXT.get(kind, 'a value')})"))
        return out
    if kw == "additionalProperties":
        known = list((schema.get("properties") or {}))
        out = []
        for key in value:
            if key not in known:
                close = suggest(key, [k for k in known if not (schema["properties"][k].get("x-doc"))])
                out.append((path + (str(key),), "unknown field",
                            f"did you mean {close}?" if close else f"remove it; known fields: {', '.join(known)}"))
        return out
    if kw == "format" and schema.get("x-kind") == "key":
        return [(path, f"not an SSH public key: {err.cause}", "paste the one-line .pub content")]
    if kw in ("type", "format"):
        kind = _kind(schema)
        if value is None and path and isinstance(path[-1], int):
            return [(path, "empty entry (a '-' with nothing after it)", f"write {KIND_TEXT[kind]} or remove the '-'")]
        if value is None:
            return [(path, "missing (the key has no value)", f"write {KIND_TEXT[kind]} after the colon, or remove the key")]
        hint = f"; quote it, e.g. \"{value}\"" if kind == "string" and isinstance(value, int) else ""
        return [(path, f"must be {KIND_TEXT[kind]}, got {_type_name(value)} {value!r}", f"write {KIND_TEXT[kind]}{hint}")]
    if kw in ("enum", "const"):
        choices = err.validator_value if kw == "enum" else [err.validator_value]
        fix = schema.get("x-fix") or f"use one of {', '.join(map(str, choices))}"
        close = suggest(value, choices) if isinstance(value, str) else None
        if close:
            fix = f"did you mean {close}? ({fix})"
        return [(path, f"unknown {schema.get('x-noun', 'value')} {value!r}", fix)]
    if kw in ("minimum", "maximum"):
        return [(path, f"{value} is out of range", schema.get("x-fix") or f"use a value {kw} {err.validator_value}")]
    if kw == "pattern":
        return [(path, f"{value!r} does not match {err.validator_value}", "see docs/source-of-truth.md")]
    if kw == "minLength":
        return [(path, "must not be empty", "write a value or remove the key")]
    return [(path, err.message, "see docs/source-of-truth.md")]


def problems(which, instance, *args):
    """``[(path, message, fix)]`` of ``instance`` against the ``network`` or ``site`` schema (``args``:
    the schema's parameters), in the schema's order; never raises."""
    if conforms(network_schema(*args) if which == "network" else site_schema(*args), instance):
        return []
    validator = _validator(which, *args)
    errors = list(validator.iter_errors(instance))
    # a value of the wrong type gets that one message, not also those of the keywords meant for its type
    mistyped = [tuple(e.absolute_path) for e in errors if e.validator == "type"]
    out, seen = [], set()
    for err in errors:
        where = tuple(err.absolute_path)
        if err.validator != "type" and any(where[:len(m)] == m for m in mistyped):
            continue
        for path, msg, fix in _explain(err, validator.schema):
            if (path, msg) not in seen:
                seen.add((path, msg))
                out.append((path, msg, fix))
    return out


def _order(path):
    return [(0, step) if isinstance(step, int) else (1, str(step)) for step in path]


def prune(instance, paths, schema):
    """A copy of ``instance`` without the values at ``paths``, so later checks see only valid values.

    A rejected key is removed; a rejected item of a list of mappings becomes None (the indices of
    the others stay those the messages name); other rejected items are removed. Copies only when
    there is something to remove, so valid input costs nothing."""
    paths = [p for p in set(paths) if p]
    if not paths:
        return instance
    out = copy.deepcopy(instance)
    for path in sorted(paths, key=_order, reverse=True):
        node = out
        try:
            for step in path[:-1]:
                node = node[step]
            if isinstance(node, dict):  # messages name keys as text: remove 0 for "0" too
                for key in [k for k in node if k == path[-1] or str(k) == str(path[-1])]:
                    del node[key]
            elif isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node):
                if (schema_at(schema, path).get("type")) == "object":
                    node[path[-1]] = None
                else:
                    del node[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue
    return out


def documented_keys(schema, prefix=()):
    """Every key path the schema names (``("plan", "management", "mode")``), for the docs check."""
    out = []
    if not isinstance(schema, dict):
        return out
    for key, sub in (schema.get("properties") or {}).items():
        out.append(prefix + (key,))
        out.extend(documented_keys(sub, prefix + (key,)))
    for sub in (schema.get("items"), schema.get("additionalProperties")):
        if isinstance(sub, dict):
            out.extend(documented_keys(sub, prefix))
    return out


# --------------------------------------------------------------------------- reference (docs)

_KIND_DOC = {"cidr": "IPv4 prefix", "ip": "IPv4 address", "key": "SSH public key line", "string": "string",
             "integer": "integer", "array": "list", "object": "mapping", "boolean": "true/false"}


def _doc_rows(node, prefix, required, rows):
    for key, sub in (node.get("properties") or {}).items():
        if sub.get("x-doc"):
            continue
        path = f"{prefix}{key}"
        kind = _KIND_DOC.get(sub.get("x-kind") or sub.get("type"), "")
        values = ""
        if "enum" in sub:
            values = ", ".join(map(str, sub["enum"]))
        elif "minimum" in sub:
            values = f"{sub['minimum']}..{sub['maximum']}" if "maximum" in sub else f">= {sub['minimum']}"
        rows.append((path, kind, values, "yes" if key in required else ""))
        _doc_children(sub, path, rows)


def _doc_children(sub, path, rows):
    if sub.get("type") == "object":
        if isinstance(sub.get("additionalProperties"), dict):
            extra = sub["additionalProperties"]
            rows.append((f"{path}.<name>", _KIND_DOC.get(extra.get("type"), ""), "", ""))
            _doc_rows(extra, f"{path}.<name>.", extra.get("required") or (), rows)
        _doc_rows(sub, f"{path}.", sub.get("required") or (), rows)
    elif sub.get("type") == "array" and isinstance(sub.get("items"), dict):
        items = sub["items"]
        if items.get("type") == "object":
            _doc_rows(items, f"{path}[].", items.get("required") or (), rows)
        else:
            kind = _KIND_DOC.get(items.get("x-kind") or items.get("type"), "")
            values = ", ".join(items["enum"]) if "enum" in items else ""
            rows.append((f"{path}[]", kind, values, ""))


def reference():
    """The Markdown reference tables of every key (docs/source-of-truth.md holds them verbatim)."""
    out = []
    for title, root in (("`network.yml` (under `network:`)", network_schema(True)),
                        ("a site (`sites/*.yml`, each entry under `sites:`)", site_schema(True, True))):
        rows = []
        _doc_rows(root, "", root.get("required") or (), rows)
        out += [f"**{title}**", "", "| key | type | values | required |", "|---|---|---|---|"]
        out += [f"| `{p}` | {k} | {v} | {r} |" for p, k, v, r in rows]
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(reference(), end="")
