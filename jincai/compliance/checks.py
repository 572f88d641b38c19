"""MLPS level-3 compliance checks, evaluated on the control node from collected facts.

A server's facts come from jincai/compliance/collector.py (one JSON document per host), a router's
from its running config (``show running-config``). Each check is a small pure function that returns
``(passed, expected, found)`` or ``None`` when it does not apply; ``evaluate_server`` and
``evaluate_router`` run every check and return :class:`CheckResult` records, each naming its control
(IDs and expected values in jincai/data/mlps_controls.yml).
"""

import datetime
import ipaddress
import json
import os
import re
from dataclasses import asdict, dataclass

from jincai.policy import intended
from jincai.policy import tls as tlspolicy

SERVER_CHECKS = []
ROUTER_CHECKS = []


@dataclass
class CheckResult:
    """One check on one host: which control, did it pass, what was expected and what was found."""

    check: str
    control: str
    title: str
    passed: bool
    expected: str
    found: str

    def to_dict(self):
        """Plain dict for the JSON report."""
        return asdict(self)


def check(registry, check_id, control, title):
    """Register a check function under ``check_id`` for ``control``."""

    def deco(fn):
        registry.append((check_id, control, title, fn))
        return fn

    return deco


# ---------------------------------------------------------------- helpers

def _lines(text):
    """Non-comment, non-empty lines of a config text, stripped."""
    out = []
    for line in (text or "").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def parse_keyvalue(text):
    """Parse ``KEY VALUE`` / ``key = value`` / bare ``key`` lines into {key: value} (last one wins)."""
    conf = {}
    for line in _lines(text):
        if "=" in line:
            key, _, value = line.partition("=")
        else:
            key, value = (re.split(r"\s+", line, maxsplit=1) + [""])[:2]
        conf[key.strip()] = value.strip()
    return conf


def _int(value, default=None):
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default


def _in_networks(network, allowed):
    """True when CIDR, address or range ``a-b`` lies inside the union of the ``allowed`` CIDRs."""
    try:
        if "-" in str(network):
            lo, hi = (ipaddress.ip_address(x.strip()) for x in str(network).split("-", 1))
            pieces = list(ipaddress.summarize_address_range(lo, hi))
        else:
            pieces = [ipaddress.ip_network(str(network), strict=False)]
        union = list(ipaddress.collapse_addresses(
            ipaddress.ip_network(str(a), strict=False) for a in allowed or [] if ":" not in str(a)))
    except (ValueError, TypeError):
        return False
    return all(any(p.version == u.version and p.subnet_of(u) for u in union) for p in pieces)


def _loopback(address):
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def _files(facts, prefix):
    return {p: t for p, t in (facts.get("files") or {}).items() if p.startswith(prefix)}


def _sshd(facts):
    return ((facts.get("sshd") or {}).get("config")) or {}


def _sshd_one(facts, key, default=""):
    values = _sshd(facts).get(key)
    return values[0] if values else default


def _active(facts, unit):
    name = unit if "." in unit else unit + ".service"
    return ((facts.get("services") or {}).get(name) or {}).get("active") == "active"


def _people(ctx):
    """(present user names, absent user names) from the inventory's admins and technicians."""
    present, absent = set(), set()
    for p in (ctx.get("admins") or []) + (ctx.get("technicians") or []):
        (absent if p.get("state") == "absent" else present).add(p["user"])
    return present, absent - present


def _allowed_ports(ctx, exp):
    """Ports the host may listen on beyond loopback (jincai.policy.intended: one definition with jincai verify).
    ``ctx["allowed_ports"]`` is filled from the inventory by the report model; without it (a context
    from elsewhere) they are derived from the context's functions, apps and applications."""
    if ctx.get("allowed_ports") is not None:
        return set(ctx["allowed_ports"])
    return set(intended.allowed_ports(ctx.get("functions"), exp, intended.listeners(
        ctx.get("functions"), ctx.get("apps"), ctx.get("applications"), exp)))


# ---------------------------------------------------------------- servers: authentication

@check(SERVER_CHECKS, "auth.uid0", "L3-CES1-01", "only root has UID 0")
def _uid0(facts, ctx, exp):
    uid0 = sorted(a["user"] for a in facts.get("accounts") or [] if a["uid"] == 0)
    return uid0 == ["root"], "root", ", ".join(uid0) or "none"


@check(SERVER_CHECKS, "auth.empty_passwords", "L3-CES1-01", "no account has an empty password")
def _empty(facts, ctx, exp):
    empty = sorted(a["user"] for a in facts.get("accounts") or [] if a.get("password") == "empty")
    return not empty, "none", ", ".join(empty) or "none"


@check(SERVER_CHECKS, "auth.password_ageing", "L3-CES1-01", "password ageing (login.defs)")
def _ageing(facts, ctx, exp):
    conf = parse_keyvalue((facts.get("files") or {}).get("/etc/login.defs"))
    mx, mn, warn = (_int(conf.get(k)) for k in ("PASS_MAX_DAYS", "PASS_MIN_DAYS", "PASS_WARN_AGE"))
    ok = (mx is not None and mx <= exp["pass_max_days"] and mn is not None and mn >= exp["pass_min_days"]
          and warn is not None and warn >= exp["pass_warn_age"])
    want = (f"PASS_MAX_DAYS<={exp['pass_max_days']} PASS_MIN_DAYS>={exp['pass_min_days']} "
            f"PASS_WARN_AGE>={exp['pass_warn_age']}")
    return ok, want, f"PASS_MAX_DAYS={mx} PASS_MIN_DAYS={mn} PASS_WARN_AGE={warn}"


@check(SERVER_CHECKS, "auth.account_ageing", "L3-CES1-01", "every account with a password expires in time")
def _account_ageing(facts, ctx, exp):
    bad = sorted(f"{a['user']}(max {a.get('max_days')})" for a in facts.get("accounts") or []
                 if a.get("password") == "set" and (a["uid"] >= 1000 or a["uid"] == 0)
                 and (_int(a.get("max_days")) is None or _int(a.get("max_days")) > exp["pass_max_days"]))
    return not bad, f"max_days<={exp['pass_max_days']}", ", ".join(bad) or "all within"


#: cracklib's compiled-in dictionary (Debian's cracklib-runtime builds it); pwquality's dictpath default.
DEFAULT_CRACKLIB_DICT = "/var/cache/cracklib/cracklib_dict"


@check(SERVER_CHECKS, "auth.password_quality", "L3-CES1-01", "password quality (pam_pwquality)")
def _quality(facts, ctx, exp):
    files = facts.get("files") or {}
    conf = parse_keyvalue(files.get("/etc/security/pwquality.conf"))
    minlen, minclass = _int(conf.get("minlen"), 0), _int(conf.get("minclass"), 0)
    credits = all(_int(conf.get(k), 0) <= -1 for k in ("dcredit", "ucredit", "lcredit", "ocredit"))
    in_pam = "pam_pwquality.so" in "\n".join(_lines(files.get("/etc/pam.d/common-password")))
    # dictcheck (pwquality's default: on) without cracklib's dictionary refuses every new password
    # ("error loading dictionary"): a policy nobody can satisfy. Judged when the collector stat'ed it.
    dictpath = (conf.get("dictpath") or DEFAULT_CRACKLIB_DICT) + ".pwd"
    stats = facts.get("stat") or {}
    no_dict = _int(conf.get("dictcheck"), 1) != 0 and dictpath in stats and stats[dictpath] is None
    ok = in_pam and minlen >= exp["pwquality_minlen"] and (minclass >= exp["pwquality_minclass"] or credits) \
        and not no_dict
    return (ok, f"pam_pwquality in common-password, minlen>={exp['pwquality_minlen']}, 4 classes, "
                "its dictionary present when dictcheck is on",
            f"pam_pwquality={'yes' if in_pam else 'no'} minlen={minlen} minclass={minclass} "
            f"credits={'all -1' if credits else 'no'}"
            + (f"; dictcheck on without {dictpath} (every new password is refused; install cracklib-runtime)"
               if no_dict else ""))


@check(SERVER_CHECKS, "auth.lockout", "L3-CES1-02", "lockout after failed logins (pam_faillock)")
def _lockout(facts, ctx, exp):
    files = facts.get("files") or {}
    conf = parse_keyvalue(files.get("/etc/security/faillock.conf"))
    auth = "\n".join(_lines(files.get("/etc/pam.d/common-auth")))
    deny, unlock = _int(conf.get("deny"), 3), _int(conf.get("unlock_time"), 600)
    in_pam = "pam_faillock.so" in auth and "preauth" in auth
    ok = in_pam and 0 < deny <= exp["faillock_deny"] and (unlock == 0 or unlock >= exp["faillock_unlock_time"])
    return (ok, f"pam_faillock in common-auth, deny<={exp['faillock_deny']}, "
                f"unlock_time>={exp['faillock_unlock_time']}",
            f"pam_faillock={'yes' if in_pam else 'no'} deny={deny} unlock_time={unlock}")


@check(SERVER_CHECKS, "auth.idle_timeout", "L3-CES1-02", "idle shells end (TMOUT)")
def _tmout(facts, ctx, exp):
    values = []
    for path, text in (facts.get("files") or {}).items():
        if path.startswith("/etc/profile") or path == "/etc/bash.bashrc":
            values += [int(v) for v in re.findall(r"^\s*(?:readonly\s+|export\s+)?TMOUT=(\d+)", text or "", re.M)]
    ok = bool(values) and 0 < min(values) <= exp["tmout_max"]
    return ok, f"TMOUT between 1 and {exp['tmout_max']}", f"TMOUT={min(values)}" if values else "TMOUT not set"


@check(SERVER_CHECKS, "ssh.session_limits", "L3-CES1-02", "sshd limits attempts and ends idle sessions")
def _ssh_limits(facts, ctx, exp):
    tries = _int(_sshd_one(facts, "maxauthtries"), 6)
    interval = _int(_sshd_one(facts, "clientaliveinterval"), 0)
    count = _int(_sshd_one(facts, "clientalivecountmax"), 3)
    idle = interval * count
    ok = tries <= exp["sshd_max_auth_tries"] and 0 < idle <= exp["sshd_idle_max"]
    return (ok, f"MaxAuthTries<={exp['sshd_max_auth_tries']}, idle cut-off 1..{exp['sshd_idle_max']} s",
            f"MaxAuthTries={tries} ClientAliveInterval={interval} ClientAliveCountMax={count}")


@check(SERVER_CHECKS, "ssh.crypto", "L3-CES1-03", "SSH uses strong ciphers, MACs and key exchange only")
def _ssh_crypto(facts, ctx, exp):
    algos = []
    for key in ("ciphers", "macs", "kexalgorithms"):
        algos += ",".join(_sshd(facts).get(key) or []).split(",")
    weak = sorted({a for a in algos if a and any(re.search(w, a) for w in exp["sshd_weak_algorithms"])})
    ok = not weak and bool(algos)
    return ok, "no CBC, 3DES, RC4, MD5, SHA-1 algorithms", ", ".join(weak) or "strong only"


@check(SERVER_CHECKS, "ssh.no_plaintext", "L3-CES1-03", "no telnet, ftp, rsh, tftp on the host")
def _plaintext(facts, ctx, exp):
    pkgs = sorted(set(facts.get("packages") or []) & set(exp["plaintext_packages"]))
    allowed = _allowed_ports(ctx, exp)
    socks = sorted({f"{s['proto']}/{s['port']}" for s in facts.get("listening") or []
                    if s["port"] in exp["plaintext_ports"] and s["port"] not in allowed
                    and not _loopback(s["address"])})
    ok = not pkgs and not socks
    return ok, "no plaintext-service packages or ports", ", ".join(pkgs + socks) or "none"


@check(SERVER_CHECKS, "ssh.two_factor", "L3-CES1-04", "key login plus sudo password for people")
def _two_factor(facts, ctx, exp):
    methods = ",".join(_sshd(facts).get("authenticationmethods") or ["any"])
    pwauth = _sshd_one(facts, "passwordauthentication", "yes")
    key_first = methods.startswith("publickey") and pwauth == "no" or methods.startswith("publickey,")
    automation = ctx.get("automation_user") or "jincai"
    nopasswd = []
    for path, text in _files(facts, "/etc/sudoers").items():
        for line in _lines(text):
            if "NOPASSWD" in line and not line.split()[0] == automation:
                nopasswd.append(line.split()[0])
    ok = key_first and not nopasswd
    return (ok, f"AuthenticationMethods publickey, no NOPASSWD sudo except {automation}",
            f"AuthenticationMethods={methods} PasswordAuthentication={pwauth} "
            f"NOPASSWD={','.join(sorted(set(nopasswd))) or 'none'}")


# ---------------------------------------------------------------- servers: access control

@check(SERVER_CHECKS, "access.root_login", "L3-CES1-06", "root cannot log in over SSH")
def _root_login(facts, ctx, exp):
    value = _sshd_one(facts, "permitrootlogin", "unknown")
    return value == "no", "PermitRootLogin no", f"PermitRootLogin {value}"


def _login_shell(shell):
    return shell and not shell.endswith(("nologin", "/false", "/sync", "/halt", "/shutdown"))


@check(SERVER_CHECKS, "access.accounts", "L3-CES1-07", "no shared, stale or unknown login accounts")
def _accounts(facts, ctx, exp):
    present, absent = _people(ctx)
    automation = ctx.get("automation_user") or "jincai"
    bad = []
    for a in facts.get("accounts") or []:
        if not _login_shell(a["shell"]):
            continue
        if a["user"] in exp["shared_account_names"]:
            bad.append(f"{a['user']} (shared name)")
        elif a["user"] in absent:
            bad.append(f"{a['user']} (removed from the inventory, still has a login shell)")
        elif 1000 <= a["uid"] < 60000 and a["user"] not in present and a["user"] != automation:
            bad.append(f"{a['user']} (not in the inventory)")
    return (not bad, "login accounts = inventory admins and technicians + automation user",
            "; ".join(bad) or "as inventory")


@check(SERVER_CHECKS, "access.sudo", "L3-CES1-08", "sudo rules per group, none for ALL users")
def _sudo(facts, ctx, exp):
    bad = []
    for path, text in _files(facts, "/etc/sudoers").items():
        for line in _lines(text):
            if line.startswith(("Defaults", "@include", "#include", "Cmnd_Alias", "User_Alias", "Host_Alias",
                                "Runas_Alias")):
                continue
            if line.split()[0] == "ALL":
                bad.append(f"{path}: {line}")
    return not bad, "no sudo rule for ALL users", "; ".join(bad) or "none"


def parse_sudo_list(text):
    """``[(runas, command)]`` from ``sudo -l -U USER`` output (its "may run the following commands"
    section; tags such as ``NOPASSWD:`` dropped, one entry per command of a rule)."""
    out, inside = [], False
    for raw in (text or "").splitlines():
        if re.match(r"^User \S+ may run the following commands", raw):
            inside = True
            continue
        if not inside:
            continue
        if raw and not raw[0].isspace():
            inside = False
            continue
        m = re.match(r"^\s*\(([^)]*)\)\s*(.*)$", raw)
        if not m:
            continue
        runas, rest = re.sub(r"\s+", "", m.group(1)), m.group(2)
        while re.match(r"^[A-Z_]+:\s*", rest):
            rest = re.sub(r"^[A-Z_]+:\s*", "", rest, count=1)
        out += [(runas, c.strip()) for c in rest.split(", ") if c.strip()]
    return out


def _person_roles(ctx):
    """{user: role} of the present people: an administrator's one role, ``technician`` for technicians."""
    roles = {}
    for a in ctx.get("admins") or []:
        if a.get("state", "present") == "present":
            roles[a["user"]] = ",".join(a.get("roles") or []) or "no role"
    for t in ctx.get("technicians") or []:
        if t.get("state", "present") == "present":
            roles[t["user"]] = "technician"
    return roles


@check(SERVER_CHECKS, "access.sudo_roles", "L3-CES1-08", "each person's effective sudo rights fit their role")
def _sudo_roles(facts, ctx, exp):
    rights = facts.get("sudo")
    if rights is None:  # raw data of a run before the collector read them (jincai compliance --from)
        return None
    policy, forbidden = exp["sudo_role_commands"], exp.get("sudo_forbidden_commands") or []
    roles = _person_roles(ctx)
    automation = ctx.get("automation_user") or "jincai"
    bad, people = [], 0
    for user, res in sorted(rights.items()):
        if user == automation:
            continue
        people += 1
        text = res.get("out") or ""
        if "may run the following commands" not in text and "not allowed to run sudo" not in text:
            bad.append(f"{user}: sudo -l failed (rc {res.get('rc')}: {(res.get('err') or '').strip()[:120]})")
            continue
        role = roles.get(user)
        allowed = policy.get(role) or []
        for runas, command in parse_sudo_list(text):
            fits = any(re.fullmatch(p, command) for p in allowed) and (role == "system" or runas == "root")
            if not fits or (role != "system" and any(re.fullmatch(p, command) for p in forbidden)):
                bad.append(f"{user} ({role or 'not a person of the inventory'}): ({runas}) {command}")
    return (not bad, "system administrators ALL; security, audit and technicians only their role's commands as root",
            "; ".join(bad) or f"{people} account(s) within their role")


@check(SERVER_CHECKS, "access.management_sources", "L3-CES1-18", "sshd admits users only from management networks")
def _allow_users(facts, ctx, exp):
    nets = (ctx.get("management_networks") or []) + (ctx.get("ssh_extra_sources") or [])
    entries = " ".join(_sshd(facts).get("allowusers") or []).split()
    bad = [e for e in entries if "@" not in e or not _in_networks(e.split("@", 1)[1], nets)]
    ok = bool(entries) and not bad
    found = ("AllowUsers not set (anyone from anywhere)" if not entries else
             "outside " + ",".join(nets) + ": " + " ".join(bad) if bad else "all within")
    return ok, "AllowUsers user@net, net within " + ", ".join(nets), found


# ---------------------------------------------------------------- servers: firewall (nftables JSON)

def _nft_objects(ruleset, kind):
    return [o[kind] for o in (ruleset.get("nftables") or []) if kind in o]


def _nft_set_elems(ruleset, name):
    for s in _nft_objects(ruleset, "set"):
        if s.get("name") == name:
            return s.get("elem") or []
    return []


def _nft_values(right, ruleset):
    """Flatten a match's right side into a list of strings/ints (prefixes as CIDR strings)."""
    if isinstance(right, str) and right.startswith("@"):
        return _nft_values({"set": _nft_set_elems(ruleset, right[1:])}, ruleset)
    if isinstance(right, dict):
        if "set" in right:
            out = []
            for e in right["set"]:
                out += _nft_values(e, ruleset)
            return out
        if "prefix" in right:
            return [f"{right['prefix']['addr']}/{right['prefix']['len']}"]
        if "range" in right:
            lo, hi = right["range"]
            return list(range(lo, hi + 1)) if isinstance(lo, int) and hi - lo < 70000 else [f"{lo}-{hi}"]
        if "elem" in right:
            return _nft_values(right["elem"].get("val"), ruleset)
        return []
    if isinstance(right, list):
        out = []
        for e in right:
            out += _nft_values(e, ruleset)
        return out
    return [right]


def _nft_rule(r, ruleset):
    """Reduce one nft JSON rule to {matches: {field: values}, verdict, target, handle}."""
    matches, verdict, target = {}, None, None
    for e in r.get("expr") or []:
        if "match" in e:
            left = e["match"].get("left") or {}
            if "payload" in left:
                field = f"{left['payload'].get('protocol')}.{left['payload'].get('field')}"
            elif "meta" in left:
                field = f"meta.{left['meta'].get('key')}"
            elif "ct" in left:
                field = f"ct.{left['ct'].get('key')}"
            else:
                field = "other"
            matches[field] = _nft_values(e["match"].get("right"), ruleset)
        for v in ("accept", "drop", "reject", "jump", "goto", "return"):
            if v in e:
                verdict = v
                if v in ("jump", "goto"):
                    target = (e[v] or {}).get("target")
    return {"matches": matches, "verdict": verdict, "target": target, "handle": r.get("handle")}


def nft_rules(ruleset):
    """Return the input-hook chains' {policy, rules}, rules of jumped-to chains included in place."""
    by_chain = {}
    for r in _nft_objects(ruleset, "rule"):
        by_chain.setdefault((r["family"], r["table"], r["chain"]), []).append(_nft_rule(r, ruleset))

    def flatten(key, seen):
        out = []
        for rule in by_chain.get(key, []):
            if rule["target"] and (key[0], key[1], rule["target"]) not in seen:
                sub = (key[0], key[1], rule["target"])
                out += [dict(x, matches={**rule["matches"], **x["matches"]}) for x in flatten(sub, seen | {sub})]
            else:
                out.append(rule)
        return out

    chains = {}
    for c in _nft_objects(ruleset, "chain"):
        if c.get("hook") == "input":
            key = (c["family"], c["table"], c["name"])
            chains[key] = {"policy": c.get("policy", "accept"), "rules": flatten(key, {key})}
    return chains


# protocols without ports: accepting them by protocol alone is as specific as it gets
PORTLESS = {"icmp", "ipv6-icmp", "icmpv6", "esp", "ah", "ospf", "ospfigp", "vrrp", 1, 58, 50, 51, 89, 112}


def _broad_accept(matches):
    """True for an accept rule that admits more than loopback, replies, ICMP or a named port/source."""
    if not matches:
        return True
    if set(matches) <= {"meta.iif", "meta.iifname"}:
        return any(v != "lo" for vs in matches.values() for v in vs)
    if set(matches) == {"ct.state"}:
        return not set(matches["ct.state"]) <= {"established", "related"}
    if set(matches) <= {"ip.protocol", "meta.l4proto", "ip6.nexthdr"}:
        return not {v for vs in matches.values() for v in vs} <= PORTLESS
    return False


def _rule_text(rule):
    m = " ".join(f"{k}={','.join(str(x) for x in v)}" for k, v in rule["matches"].items())
    return f"{m or 'any'} {rule['verdict']}"


@check(SERVER_CHECKS, "firewall.default_deny", "L3-CES1-17", "host firewall drops what is not allowed")
def _fw_default(facts, ctx, exp):
    ruleset = facts.get("nft") or {}
    if "error" in ruleset:
        return False, "input policy drop", f"nftables unreadable: {ruleset['error']}"
    chains = nft_rules(ruleset)
    if not chains:
        return False, "an input chain with policy drop", "no input chain (everything accepted)"
    deciding = {k: c for k, c in chains.items() if c["policy"] == "drop"}
    if not deciding:
        return False, "an input chain with policy drop", "every input chain accepts by default: " + ", ".join(
            f"{f} {t} {n}" for f, t, n in sorted(chains))
    bad = []
    # a packet passes only if every input base chain accepts it: the drop-policy chains decide
    for (fam, table, name), c in sorted(deciding.items()):
        for r in c["rules"]:
            if r["verdict"] == "accept" and _broad_accept(r["matches"]):
                bad.append(f"{fam} {table} {name}: broad accept ({_rule_text(r)})")
    return not bad, "input policy drop, no accept-all rule", "; ".join(bad) or "default deny"


@check(SERVER_CHECKS, "firewall.management_sources", "L3-CES1-18", "firewall admits SSH only from management networks")
def _fw_ssh(facts, ctx, exp):
    ruleset = facts.get("nft") or {}
    if "error" in ruleset:
        return False, "SSH accepted only from management networks", f"nftables unreadable: {ruleset['error']}"
    nets = (ctx.get("management_networks") or []) + (ctx.get("ssh_extra_sources") or [])
    bad = []
    for (fam, table, name), c in sorted(nft_rules(ruleset).items()):
        if c["policy"] != "drop":
            continue  # an accept here is not final: the drop-policy chains decide
        for r in c["rules"]:
            ports = r["matches"].get("tcp.dport") or r["matches"].get("th.dport")
            if r["verdict"] != "accept" or not ports or 22 not in ports:
                continue
            sources = r["matches"].get("ip.saddr") or r["matches"].get("ip6.saddr")
            iifs = r["matches"].get("meta.iifname") or r["matches"].get("meta.iif")
            if not sources and iifs and set(iifs) <= set(ctx.get("mgmt_interfaces") or []):
                continue  # the out-of-band management interface
            if not sources:
                bad.append(f"{name} handle {r['handle']}: tcp dport 22 accept from anywhere")
            else:
                outside = [s for s in sources if not _in_networks(s, nets)]
                if outside:
                    bad.append(f"{name} handle {r['handle']}: tcp dport 22 accept from {','.join(map(str, outside))}")
    return not bad, "tcp/22 accepted only from " + ", ".join(nets), "; ".join(bad) or "management networks only"


@check(SERVER_CHECKS, "ports.listening", "L3-CES1-17", "no unexpected listening ports")
def _ports(facts, ctx, exp):
    allowed = _allowed_ports(ctx, exp)
    extra = sorted({f"{s['proto']}/{s['port']} ({s['process'].split(chr(34))[1] if chr(34) in s['process'] else '?'})"
                    for s in facts.get("listening") or []
                    if s["port"] not in allowed and not _loopback(s["address"])})
    return not extra, "only " + ",".join(str(p) for p in sorted(allowed)), ", ".join(extra) or "as expected"


# ---------------------------------------------------------------- servers: host hardening

def _container(facts):
    return facts.get("virt") in CONTAINERS


def _sysctl_configured(facts):
    """{key: value} the sysctl.d files set (later files win, as sysctl --system applies them)."""
    conf = {}
    for path in sorted(p for p in (facts.get("files") or {}) if p.startswith(("/etc/sysctl.d/", "/etc/sysctl.conf"))):
        for line in _lines(facts["files"][path]):
            key, sep, value = line.partition("=")
            if sep:
                conf[key.strip()] = value.strip()
    return conf


def _sysctl_result(facts, exp_table):
    """(passed, expected, found) of kernel parameters: in force, or in a container (whose kernel is the
    host's) as configured for the real server."""
    want = {k: [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in exp_table.items()}
    expected = ", ".join(f"{k}={'|'.join(v)}" for k, v in sorted(want.items()))
    live = facts.get("sysctl")
    if live is None:
        return None
    if _container(facts):
        conf = _sysctl_configured(facts)
        bad = sorted(f"{k}={conf.get(k, 'unset')}" for k, v in want.items() if conf.get(k) not in v)
        differ = sum(1 for k, v in want.items() if k in live and live[k] not in v)
        return (not bad, expected + " (configured; a container runs the host's kernel)",
                ("not configured: " + ", ".join(bad)) if bad else
                f"not applicable in a container ({facts.get('virt')}): the host kernel's parameters "
                f"({differ} differ here); /etc/sysctl.d configures them for a real server")
    bad = sorted(f"{k}={live[k]}" for k, v in want.items() if k in live and live[k] not in v)
    return not bad, expected, ", ".join(bad) or "all in force"


@check(SERVER_CHECKS, "hardening.kernel_network", "L3-CES1-17",
       "kernel network protections (no source routing or redirects, reverse-path filter, SYN cookies)")
def _kernel_network(facts, ctx, exp):
    return _sysctl_result(facts, exp["sysctl_network"])


@check(SERVER_CHECKS, "hardening.kernel_memory", "L3-CES1-20",
       "kernel memory and process protections (ASLR, kernel pointers, dmesg, ptrace, links)")
def _kernel_memory(facts, ctx, exp):
    return _sysctl_result(facts, exp["sysctl_memory"])


@check(SERVER_CHECKS, "hardening.core_dumps", "L3-CES1-31", "no core dumps (memory may hold credentials)")
def _core_dumps(facts, ctx, exp):
    if facts.get("sysctl") is None:
        return None
    files = facts.get("files") or {}
    limits = [line.split() for p, t in files.items() if p.startswith("/etc/security/limits") for line in _lines(t)]
    hard = any(len(f) >= 4 and f[0] == "*" and f[1] in ("hard", "-") and f[2] == "core" and f[3] == "0" for f in limits)
    manager = (facts.get("manager") or {}).get("DefaultLimitCORE", "unknown")
    suid = (facts.get("sysctl") or {}).get("fs.suid_dumpable", "unknown")
    if _container(facts):
        suid = _sysctl_configured(facts).get("fs.suid_dumpable", "unset") + " (configured; the host kernel's in force)"
    ok = hard and manager == "0" and suid.split()[0] == "0"
    return (ok, "* hard core 0 (pam_limits), systemd DefaultLimitCORE=0, fs.suid_dumpable=0",
            f"hard core limit {'0' if hard else 'not set'}, DefaultLimitCORE={manager}, fs.suid_dumpable={suid}")


@check(SERVER_CHECKS, "hardening.protocols", "L3-CES1-16", "unused network protocols cannot be loaded")
def _protocols(facts, ctx, exp):
    if facts.get("modules") is None:
        return None
    text = "\n".join("\n".join(_lines(t)) for p, t in (facts.get("files") or {}).items() if p.startswith("/etc/modprobe.d/"))
    open_ = [m for m in exp["disabled_protocols"] if not re.search(rf"^install\s+{m}\s+/bin/(false|true)\s*$", text, re.M)]
    loaded = [m for m in exp["disabled_protocols"] if m in (facts.get("modules") or [])]
    if _container(facts):
        loaded = []  # /proc/modules is the host's
    ok = not open_ and not loaded
    found = "; ".join(x for x in ("loadable: " + ", ".join(open_) if open_ else "",
                                  "loaded: " + ", ".join(loaded) if loaded else "") if x) or "disabled"
    if _container(facts):
        found += (f" (loaded modules not applicable in a container ({facts.get('virt')}): /proc/modules "
                  "is the host's; /etc/modprobe.d configures a real server)")
    return ok, "install /bin/false for " + ", ".join(exp["disabled_protocols"]) + "; none loaded", found


@check(SERVER_CHECKS, "access.banner", "L3-CES1-05", "login banner with the department's warning, no system details")
def _banner(facts, ctx, exp):
    files = facts.get("files") or {}
    if "/etc/issue" not in files and "/etc/issue.net" not in files and facts.get("sysctl") is None:
        return None  # raw data of a run before the collector read them
    bad = []
    for path in ("/etc/issue", "/etc/issue.net"):
        text = files.get(path) or ""
        if not re.search(exp["banner_pattern"], text):
            bad.append(f"{path}: no warning")
        if re.search(r"\\[mnrsv]|Debian|GNU/Linux|Ubuntu", text):
            bad.append(f"{path}: shows system details")
    banner = _sshd_one(facts, "banner", "none")
    if banner != "/etc/issue.net":
        bad.append(f"sshd Banner {banner}")
    return not bad, "warning in /etc/issue and /etc/issue.net, sshd Banner /etc/issue.net", "; ".join(bad) or "shown"


@check(SERVER_CHECKS, "auth.password_hashing", "L3-CES1-27", "passwords stored with a strong, slow hash")
def _hashing(facts, ctx, exp):
    files = facts.get("files") or {}
    defs = parse_keyvalue(files.get("/etc/login.defs"))
    method = defs.get("ENCRYPT_METHOD", "unset").upper()
    cost = _int(defs.get("YESCRYPT_COST_FACTOR" if method == "YESCRYPT" else "SHA_CRYPT_MIN_ROUNDS"), None)
    minimum = exp["password_hash_min_cost"].get(method.lower())
    unix = [line for line in _lines(files.get("/etc/pam.d/common-password")) if "pam_unix.so" in line]
    pam_method = next((m for m in ("yescrypt", "sha512") if unix and re.search(rf"\b{m}\b", unix[0])), None)
    rounds = _int((re.search(r"\brounds=(\d+)", unix[0]) or [None, None])[1], None) if unix else None
    bad = []
    if minimum is None or cost is None or cost < minimum:
        bad.append(f"login.defs ENCRYPT_METHOD {method} cost {cost}")
    pam_min = exp["password_hash_min_cost"].get(pam_method or "", None)
    if pam_min is None or rounds is None or rounds < pam_min:
        bad.append(f"pam_unix {pam_method or 'no strong method'} rounds={rounds}")
    weak = sorted(f"{a['user']} ({a.get('scheme')})" for a in facts.get("accounts") or []
                  if a.get("password") == "set" and a.get("scheme", "yescrypt") not in exp["password_hash_schemes"])
    if weak:
        bad.append("weak stored hash: " + ", ".join(weak))
    return (not bad, "yescrypt (or sha512) with at least the policy's cost, in login.defs, pam_unix and every stored password",
            "; ".join(bad) or f"{method} cost {cost}, pam_unix {pam_method} rounds={rounds}, stored hashes strong")


@check(SERVER_CHECKS, "access.home_permissions", "L3-CES1-10", "each person's home directory is their own")
def _homes(facts, ctx, exp):
    homes = facts.get("homes")
    if homes is None:
        return None
    present, _absent = _people(ctx)
    limit = int(exp["home_mode_max"], 8)
    bad = sorted(f"{u} {st['mode']}" for u, st in homes.items() if u in present and st and int(st["mode"], 8) & ~limit)
    return not bad, f"mode {exp['home_mode_max']} or stricter", ", ".join(bad) or "all within"


# ---------------------------------------------------------------- servers: audit, time, integrity

CONTAINERS = {"systemd-nspawn", "lxc", "lxc-libvirt", "docker", "podman", "openvz", "rkt", "wsl", "proot", "container-other"}


@check(SERVER_CHECKS, "audit.auditd", "L3-CES1-12", "auditd records every user's actions")
def _auditd(facts, ctx, exp):
    rules = [p for p, t in _files(facts, "/etc/audit/rules.d/").items() if _lines(t)]
    state = ((facts.get("services") or {}).get("auditd.service") or {}).get("active", "not installed")
    if facts.get("virt") in CONTAINERS:
        # a container has no kernel audit of its own: the rules must be in place for the real host
        return bool(rules), "audit rules installed (auditd runs on real hosts)", (
            f"auditd not applicable in a container ({facts.get('virt')}: the kernel audit interface is the "
            f"host's): {len(rules)} rule file(s) installed for a real server, auditd {state}")
    return state == "active" and bool(rules), "auditd active with rules", f"auditd {state}, {len(rules)} rule file(s)"


@check(SERVER_CHECKS, "audit.log_forwarding", "L3-SMC1-10", "logs forwarded to the province collector")
def _forwarding(facts, ctx, exp):
    collector = (ctx.get("province_services") or {}).get("collector")
    text = "\n".join("\n".join(_lines(t)) for t in _files(facts, "/etc/rsyslog").values())
    if intended.log_role(collector, ctx.get("addresses")) == "collector":
        ok = bool(re.search(r"imtcp|imudp|imrelp", text))
        return ok, "this host is the collector: receives syslog", "input module present" if ok else "no syslog input"
    ok = bool(collector) and bool(re.search(r"(@@?|target\s*=\s*\"?)\[?" + re.escape(collector or "-"), text))
    return ok, f"rsyslog forwards to {collector}", "forwarding found" if ok else "no forwarding to the collector"


@check(SERVER_CHECKS, "audit.log_permissions", "L3-CES1-14", "log files are not world-readable")
def _log_modes(facts, ctx, exp):
    limit = int(exp["log_mode_max"], 8)
    bad = {p: s["mode"] for p, s in (facts.get("stat") or {}).items()
           if p in exp["log_files"] and s and int(s["mode"], 8) & ~limit}
    exempt = set(exp.get("log_mode_exempt") or [])
    bad.update({p: m for p, m in (facts.get("loose_logs") or {}).items()
                if p.rsplit("/", 1)[-1] not in exempt and int(m, 8) & ~limit})
    found = ", ".join(f"{p} {m}" for p, m in sorted(bad.items())[:20]) + (f" (+{len(bad) - 20} more)" if len(bad) > 20 else "")
    return not bad, f"mode {exp['log_mode_max']} or stricter (under /var/log)", found or "all within"


@check(SERVER_CHECKS, "time.sources", "L3-CES1-13", "time from the authorised NTP chain")
def _ntp(facts, ctx, exp):
    text = "\n".join("\n".join(_lines(t)) for t in _files(facts, "/etc/chrony").values())
    sources = re.findall(r"^(?:server|pool|peer)\s+(\S+)", text, re.M)
    want = intended.ntp_chain(ctx.get("ntp_servers"), ctx.get("addresses"))
    unknown = [s for s in sources if s not in (ctx.get("ntp_servers") or [])]
    if not want:  # the province NTP server itself: a local reference and no unknown upstream
        ok = not unknown and (bool(sources) or "local" in text)
    else:
        ok = bool(sources) and not unknown and sources[0] == want[0]
    return ok, "sources " + (", ".join(want) or "authorised upstream or local"), ", ".join(sources) or "none"


@check(SERVER_CHECKS, "vpn.crl_fresh", "L3-CES1-05", "the VPN concentrator's CRL is far from expiry")
def _crl_fresh(facts, ctx, exp):
    """With ``revocation = strict`` an expired CRL refuses every unit: fail N days before it expires."""
    if "vpn_concentrator" not in (ctx.get("functions") or []):
        return None
    days = exp.get("crl_min_days", 7)
    want = f"every CRL in /etc/swanctl/x509crl valid {days} more days or longer"
    crls, now = facts.get("crls"), facts.get("collected_at")
    if crls is None or now is None:
        return False, want, "not collected (older collector)"
    if not crls:
        return False, want, "no CRL installed"
    found, ok = [], True
    for path, c in sorted(crls.items()):
        try:
            nu = datetime.datetime.strptime(" ".join((c.get("next_update") or "").split()), "%b %d %H:%M:%S %Y %Z")
        except ValueError:
            ok = False
            found.append(f"{path}: unreadable ({c.get('err') or c.get('next_update')})")
            continue
        left = (nu.replace(tzinfo=datetime.timezone.utc).timestamp() - now) / 86400
        ok = ok and left >= days
        found.append(f"{os.path.basename(path)}: nextUpdate {nu:%Y-%m-%d %H:%M} UTC ({left:.1f} days)")
    return ok, want, "; ".join(found)


@check(SERVER_CHECKS, "integrity.aide", "L3-CES1-21", "file integrity database initialised (AIDE)")
def _aide(facts, ctx, exp):
    have = [p for p in exp["aide_databases"] if (facts.get("stat") or {}).get(p)]
    return bool(have), "an AIDE database", ", ".join(have) or "no AIDE database"


@check(SERVER_CHECKS, "tls.endpoints", "L3-CES1-26", "TLS endpoints offer TLS 1.2 with AEAD suites and TLS 1.3 only")
def _tls(facts, ctx, exp):
    probes, pg = facts.get("tls"), facts.get("postgres_tls")
    if probes is None:
        return None  # raw data of a run before the collector probed them
    # a port that no handshake reaches is not a TLS endpoint (the artifact repository's plain HTTP)
    probes = {port: p for port, p in probes.items() if any(p.values())}
    if not probes and not pg:
        return None
    bad = []
    for port, p in sorted(probes.items(), key=lambda kv: int(kv[0])):
        if p.get("tls12_cbc") and not tlspolicy.is_aead(p["tls12_cbc"].split()[-1]):
            bad.append(f"{port}: accepts a CBC suite ({p['tls12_cbc']})")
        if p.get("legacy"):
            bad.append(f"{port}: accepts {p['legacy']}")
        if not p.get("tls12_aead"):
            bad.append(f"{port}: refuses TLS 1.2 with AEAD suites")
        if not p.get("tls13"):
            bad.append(f"{port}: refuses TLS 1.3")
    if pg and pg.get("ssl") == "on":
        if pg.get("ssl_min_protocol_version") not in ("TLSv1.2", "TLSv1.3"):
            bad.append(f"postgresql: ssl_min_protocol_version {pg.get('ssl_min_protocol_version')}")
        weak = [c for c in (pg.get("ssl_ciphers") or "").split(":") if c and not tlspolicy.is_aead(c)]
        if weak:
            bad.append(f"postgresql: ssl_ciphers not AEAD: {':'.join(weak)}")
    what = [f"ports {','.join(sorted(probes, key=int))}"] if probes else []
    what += ["postgresql"] if pg else []
    return not bad, "TLS 1.2 AEAD suites and TLS 1.3, nothing else", "; ".join(bad) or (" and ".join(what) + " as expected")


BACKUP_STATUS = "/var/backups/jincai/last-backup.json"


@check(SERVER_CHECKS, "backup.offsite", "L3-CES1-29", "the province holds a backup of this host from the last day")
def _backup_offsite(facts, ctx, exp):
    if facts.get("collected_at") is None:
        return None  # raw data of a run before the collector read the backup status
    limit = exp["backup_offsite_max_age_hours"]
    text = (facts.get("files") or {}).get(BACKUP_STATUS)
    want = f"last copy at the province (or, on the services host, its own store) under {limit} h old"
    if not text:
        return False, want, f"no backup recorded ({BACKUP_STATUS} missing)"
    try:
        status = json.loads(text)
        age = (facts["collected_at"] - int(status.get("offsite_time") or 0)) / 3600
    except (ValueError, TypeError) as exc:
        return False, want, f"unreadable {BACKUP_STATUS}: {exc}"
    dbs = ", ".join(status.get("databases") or []) or "none"
    found = (f"never copied (last run {status.get('offsite')})" if not status.get("offsite_time") else
             f"{age:.1f} h old (last run: {status.get('offsite')}, databases dumped: {dbs})")
    return bool(status.get("offsite_time")) and age <= limit, want, found


@check(SERVER_CHECKS, "services.running", "L3-SMC1-09", "the host runs its required services")
def _services(facts, ctx, exp):
    # one result per service is produced by evaluate_server(); this entry is a placeholder
    return None


def _service_results(facts, ctx, exp):
    out = []
    units = facts.get("services") or {}
    # the finance applications installed on this host (a unit systemd knows) must run; jincai verify
    # requires every hosted one (jincai.policy.intended: the same table)
    installed = [app for app in ctx.get("apps") or [] if f"jincai-{app}.service" in units]
    wanted = intended.services(ctx.get("functions"), installed, exp)
    for svc, control in sorted(wanted.items()):
        state = (units.get(intended.unit_name(svc)) or {}).get("active", "not installed")
        out.append(CheckResult(f"services.{svc}", control, f"{svc} is running", state == "active",
                               "active", state))
    for svc, control in sorted(intended.enabled_units(ctx.get("functions"), exp).items()):
        state = ((facts.get("services") or {}).get(svc + ".service") or {}).get("enabled", "not installed")
        out.append(CheckResult(f"services.{svc}_enabled", control, f"{svc} starts at boot", state == "enabled",
                               "enabled", state))
    return out


def evaluate_server(facts, ctx, exp):
    """Run every server check on one host's facts; return a list of CheckResult."""
    results = []
    for check_id, control, title, fn in SERVER_CHECKS:
        if check_id == "services.running":
            results += _service_results(facts, ctx, exp)
            continue
        try:
            res = fn(facts, ctx, exp)
        except Exception as exc:  # noqa: BLE001 - a broken fact is a failed check, not a crashed run
            res = (False, "a readable fact", f"could not evaluate: {type(exc).__name__}: {exc}")
        if res is not None:
            results.append(CheckResult(check_id, control, title, bool(res[0]), str(res[1]), str(res[2])))
    return results


# ---------------------------------------------------------------- routers (running config text)

def parse_router_config(text):
    """Parse a running config into (top-level lines, {section header: [lines]}, {acl: [(action, match)]})."""
    top, sections, acls = [], {}, {}
    current = None
    for raw in (text or "").splitlines():
        if not raw.strip() or raw.strip() in ("!", "#", "end", "exit", "quit", "return"):
            if raw.strip() in ("exit", "!", "#", "quit", "return") and not raw.startswith(" "):
                current = None
            continue
        if raw[0] in " \t" and current is not None:
            sections[current].append(raw.strip())
            continue
        line = raw.strip()
        m = re.match(r"^(?:ip(?:v6)? )?access-list (\S+)(?: seq \d+)? (permit|deny) (.*)$", line)
        if m:
            acls.setdefault(m.group(1), []).append((m.group(2), m.group(3).strip()))
            current = None
            continue
        m = re.match(r"^ip access-list (?:extended |standard )?(\S+)$", line)
        if m:
            current = line
            sections[current] = []
            acls.setdefault(m.group(1), [])
            continue
        top.append(line)
        current = line
        sections.setdefault(current, [])
    for header, lines in sections.items():
        m = re.match(r"^ip access-list (?:extended |standard )?(\S+)$", header)
        if m:
            for line in lines:
                m2 = re.match(r"^(?:\d+ )?(permit|deny) (.*)$", line)
                if m2:
                    acls[m.group(1)].append((m2.group(1), m2.group(2).strip()))
    return top, sections, acls


def _any(match):
    return re.fullmatch(r"(ip )?any( any)?( log)?|0\.0\.0\.0/0|ip 0\.0\.0\.0 255\.255\.255\.255 any", match) is not None


def _nft_chain_rules(ruleset, prefix):
    """{chain name: [rules]} of every chain whose name starts with ``prefix``."""
    out = {}
    for r in _nft_objects(ruleset, "rule"):
        if r["chain"].startswith(prefix):
            out.setdefault(r["chain"], []).append(_nft_rule(r, ruleset))
    return out


def _router_filter_results(nft, ctx, exp):
    """Checks of a Linux (FRR) router's packet filter: management plane and metro boundary ACL."""
    if nft is None:
        return []
    facts = {"nft": nft}
    out = []
    for check_id, control, title, fn in (("router.filter_default_deny", "L3-CES1-17",
                                          "router packet filter drops what is not allowed", _fw_default),
                                         ("router.filter_management", "L3-CES1-18",
                                          "router admits SSH only from management networks", _fw_ssh)):
        ok, want, found = fn(facts, ctx, exp)
        out.append(CheckResult(check_id, control, title, ok, want, found))
    if "error" in nft:
        return out
    metro = _nft_chain_rules(nft, "metro")
    if metro:
        broad, open_end = [], []
        for name, rules in sorted(metro.items()):
            for r in rules:
                m = r["matches"]
                if r["verdict"] == "accept" and set(m) != {"ct.state"} and not (
                        ("ip.saddr" in m) and ("ip.daddr" in m) and any(k.endswith(".dport") for k in m)):
                    broad.append(f"{name} handle {r['handle']}: {_rule_text(r)}")
            if not rules or rules[-1]["verdict"] not in ("drop", "reject"):
                open_end.append(name)
        out.append(CheckResult("router.metro_specific", "L3-ABS1-07", "metro ACL rules name source, destination and port",
                               not broad, "accept rules with saddr, daddr and dport", "; ".join(broad) or "all specific"))
        out.append(CheckResult("router.metro_default_deny", "L3-ABS1-05", "metro ACL ends by denying all",
                               not open_end, "last rule drop", ("no final drop: " + ", ".join(open_end)) if open_end
                               else f"{len(metro)} chain(s) end with drop"))
    return out


def evaluate_router(config, ctx, exp, nft=None):
    """Run the router checks on a running config text (and its packet filter); return CheckResults."""
    _top, sections, acls = parse_router_config(config)
    platform = ctx.get("platform", "frr")
    out = []
    for check_id, control, title, fn in ROUTER_CHECKS:
        try:
            res = fn(config, sections, acls, platform, ctx, exp)
        except Exception as exc:  # noqa: BLE001
            res = (False, "a parsable running config", f"could not evaluate: {type(exc).__name__}: {exc}")
        if res is not None:
            out.append(CheckResult(check_id, control, title, bool(res[0]), str(res[1]), str(res[2])))
    try:
        out += _router_filter_results(nft, ctx, exp)
    except Exception as exc:  # noqa: BLE001
        out.append(CheckResult("router.filter", "L3-CES1-17", "router packet filter readable", False,
                               "a parsable nft ruleset", f"could not evaluate: {type(exc).__name__}: {exc}"))
    return out


@check(ROUTER_CHECKS, "router.exec_timeout", "L3-CES1-02", "management sessions time out (exec-timeout)")
def _r_timeout(config, sections, acls, platform, ctx, exp):
    lo, hi = exp["router_exec_timeout_min"], exp["router_exec_timeout_max"]
    vty = [lines for header, lines in sections.items() if header.startswith(("line vty", "user-interface vty"))]
    values = []
    for lines in vty:
        for line in lines:
            m = re.match(r"^(?:exec-timeout|idle-timeout) (\d+)(?: (\d+))?", line)
            if m:
                values.append(int(m.group(1)) + (int(m.group(2) or 0) / 60.0))
    if not values:
        # FRR omits its default (10 minutes) from the running config
        default = 10 if platform == "frr" else None
        ok = default is not None and lo <= default <= hi
        return ok, f"{lo}..{hi} min", f"default ({default} min)" if default else "not set"
    ok = all(lo <= v <= hi for v in values)
    return ok, f"{lo}..{hi} min", ", ".join(f"{v:g} min" for v in values)


@check(ROUTER_CHECKS, "router.acl_default_deny", "L3-ABS1-05", "every ACL ends by denying all")
def _r_deny(config, sections, acls, platform, ctx, exp):
    bad = sorted(name for name, rules in acls.items() if rules and not (rules[-1][0] == "deny" and _any(rules[-1][1])))
    return not bad, "last rule deny any", ("ACLs without a final deny: " + ", ".join(bad)) if bad else (
        f"{len(acls)} ACLs end with deny any" if acls else "no ACLs")


@check(ROUTER_CHECKS, "router.acl_specific", "L3-ABS1-07", "no ACL rule permits any traffic")
def _r_specific(config, sections, acls, platform, ctx, exp):
    bad = sorted(f"{name}: permit {m}" for name, rules in acls.items() for action, m in rules
                 if action == "permit" and _any(m))
    return not bad, "permit rules name sources/destinations", "; ".join(bad) or "none permits any"


@check(ROUTER_CHECKS, "router.vty_acl", "L3-CES1-18", "vty access ACL admits only management networks")
def _r_vty(config, sections, acls, platform, ctx, exp):
    nets = ctx.get("management_networks") or []
    classes = [line.split()[1] for header, lines in sections.items() if header.startswith("line vty")
               for line in lines if line.startswith("access-class ")]
    if not classes:
        return None if not exp.get("router_require_vty_acl") else (False, "access-class on line vty", "none")
    bad = []
    for name in classes:
        for action, m in acls.get(name, []):
            if action == "permit" and not _any(m) and not _in_networks(m.split()[0], nets):
                bad.append(f"{name}: permit {m}")
        if name not in acls:
            bad.append(f"{name}: ACL missing")
    return not bad, "permits within " + ", ".join(nets), "; ".join(bad) or "management networks only"


@check(ROUTER_CHECKS, "router.syslog", "L3-SMC1-10", "the router logs to syslog (forwarded to the collector)")
def _r_syslog(config, sections, acls, platform, ctx, exp):
    found = [line for line in config.splitlines() if re.match(r"^(log syslog|logging host|info-center loghost)", line)]
    return bool(found), "log syslog / logging host", ", ".join(found) or "no syslog logging"
