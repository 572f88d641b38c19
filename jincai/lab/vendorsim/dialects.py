"""The four vendor CLI dialects of the simulator: views, prompts, grammar, errors, display format.

A ``Dialect`` is data only; ``device.py`` interprets it. Grammar patterns are full-match regexes
per view kind; a line that matches none is refused with the vendor's error text and a caret under
the first word that no pattern's keyword path knows (see ``Dialect.caret``).

Sources (docs/routing.md "Vendor CLI twins" cites them): the prompts, `undo`/`no` forms, error texts
and views are the ones shown in the vendors' command references and in netmiko's drivers (which
were written against the real devices); the native safety commands are in ``device.py``.
"""

import re
from dataclasses import dataclass, field

_IP = r"\d{1,3}(?:\.\d{1,3}){3}"
_IF = r"(?:GigabitEthernet|GE|Ethernet|LoopBack|Loopback|Vlanif|Vlan-interface|Tunnel|NULL|Serial)[\d/.:]+"
_WORD = r"\S+"


@dataclass(frozen=True)
class ViewRule:
    """A line that enters a sub-view from view ``parent``: ``header`` regex, the new view's ``kind``
    and the prompt label (``str.format`` over the match's groups, e.g. ``"ospf-{0}"``)."""

    parent: str
    header: str
    kind: str
    label: str


@dataclass(frozen=True)
class Dialect:
    """Everything vendor-specific about one simulated platform."""

    name: str
    negate: str  # "undo " / "no "
    exit_view: str  # "quit" / "exit": one view up
    leave_config: str  # "return" / "end": back to the user/exec view
    enter_config: str  # "system-view" / "configure terminal"
    enter_config_banner: str
    exec_prompt: str  # "<{host}>" / "{host}#"
    config_prompt: str  # "[{flag}{host}{label}]" / "{host}(config{label})#"
    label_sep: str  # VRP "-" between host and view label; IOS labels are self-contained
    views: tuple
    grammar: dict  # view kind -> tuple of full-match regexes
    unrecognized: str
    incomplete: str
    hostname_re: str  # the line that renames the device (group 1: the name)
    two_stage: bool = False  # VRP V8: edits go to a candidate, `commit` makes them live
    # a new line whose key (group 1 of the first matching regex) equals an existing line's key
    # replaces it (single-valued settings)
    replace_keys: tuple = ()
    hidden_res: tuple = ()  # accepted, never displayed (IOS `snmp-server user`)
    no_statements: tuple = ()  # IOS `no X` lines that are themselves shown in the config
    sorted_children: tuple = ()  # regexes with a numeric group 1: children displayed in that order
    secret_display: tuple = ()  # (regex, replacement function name) applied when displaying
    login_banner: str = ""
    section_style: str = "huawei"  # "huawei": '#' separators; "cisco": '!' separators
    exec_grammar: tuple = field(default=())

    def caret(self, kind, line):
        """Index of the word under which the caret goes, and whether the line is just incomplete."""
        words = line.split()
        best = 0
        complete_prefix = False
        for pattern in self.grammar.get(kind, ()) + tuple(v.header for v in self.views if v.parent == kind):
            literal = []
            for word in pattern.split(" "):
                if re.fullmatch(r"[\w\-]+", word):
                    literal.append(word)
                else:
                    break
            n = 0
            while n < len(words) and n < len(literal) and words[n] == literal[n]:
                n += 1
            if n > best:
                best = n
            if n == len(words) and len(literal) > len(words):
                complete_prefix = True
        return best, complete_prefix and best == len(words)


def _huawei_views(v8):
    vty = (ViewRule("system", r"user-interface vty (\d+) (\d+)", "vty", "ui-vty{0}-{1}"),
           ViewRule("system", r"line vty (\d+) (\d+)", "vty", "line-vty{0}-{1}"))
    return vty + (
        ViewRule("system", rf"interface ({_IF})", "interface", "{0}"),
        ViewRule("system", r"ospf (\d+)(?: router-id " + _IP + ")?", "ospf", "ospf-{0}"),
        ViewRule("ospf", r"area (" + _IP + r"|\d+)", "area", "area-{0}"),
        ViewRule("system", r"acl number (2\d{3})", "acl", "acl-basic-{0}"),
        ViewRule("system", r"acl number (3\d{3})", "acl", "acl-adv-{0}"),
        ViewRule("system", r"acl name (\S+)(?: \d+)?", "acl", "acl-adv-{0}"),
        ViewRule("system", r"user-interface con(?:sole)? (\d+)", "console", "ui-console{0}"),
        ViewRule("system", r"aaa", "aaa", "aaa"),
        ViewRule("aaa", r"authentication-scheme (\S+)", "aaa-scheme", "aaa-authen-{0}"),
        ViewRule("aaa", r"authorization-scheme (\S+)", "aaa-scheme", "aaa-author-{0}"),
        ViewRule("aaa", r"accounting-scheme (\S+)", "aaa-scheme", "aaa-accounting-{0}"),
        ViewRule("aaa", r"domain (\S+)", "aaa-scheme", "aaa-domain-{0}"),
    )


_HUAWEI_GRAMMAR = {
    "system": (
        r"sysname \S+", rf"info-center loghost {_IP}(?: .*)?", r"info-center (?:enable|source .*|timestamp .*)",
        rf"ntp-service unicast-server {_IP}(?: preference)?(?: source-interface \S+)?",
        r"ntp-service (?:enable|refclock-master \d+)",
        rf"ip route-static {_IP} {_IP} (?:{_IP}|{_IF})(?: preference \d+)?(?: description .*)?",
        r"snmp-agent", r"snmp-agent sys-info version (?:v3|v2c|all)", r"snmp-agent sys-info (?:contact|location) .*",
        r"snmp-agent local-engineid \S+", r"snmp-agent mib-view included \S+ \S+",
        r"snmp-agent group v3 \S+ (?:privacy|authentication|noauthentication)(?: read-view \S+)?(?: acl \d+)?",
        r"snmp-agent usm-user v3 \S+ group \S+",
        r"snmp-agent usm-user v3 \S+ authentication-mode (?:sha|md5) cipher \S+",
        r"snmp-agent usm-user v3 \S+ privacy-mode (?:aes128|des56) cipher \S+",
        r"snmp-agent community (?:read|write) cipher \S+", r"snmp-agent trap (?:enable|source \S+)",
        r"stelnet server enable", r"ssh server acl \d+", r"ssh server-source (?:all-interface|-i \S+)",
        r"ssh user \S+", r"ssh user \S+ (?:authentication-type|service-type) \S+",
        r"ssh client first-time enable", r"telnet server enable",
        r"header (?:login|shell) information \".*\"", r"clock timezone .*",
        r"license", r"license (?:active|revoke) .*",
        r"set save-configuration(?: .*)?", r"dns resolve", rf"dns server {_IP}",
        r"http (?:secure-server|server) enable", r"lldp enable",
    ),
    "interface": (
        r"description .+", rf"ip address {_IP} {_IP}(?: sub)?", r"traffic-filter (?:inbound|outbound) acl \d+",
        r"ospf cost \d+", r"ospf network-type (?:p2p|broadcast|nbma|p2mp)", r"ospf timer (?:hello|dead) \d+",
        r"ospf enable \d+ area \S+", r"ospf authentication-mode .*", r"mtu \d+", r"shutdown",
        r"negotiation auto", r"undo negotiation auto", r"port link-type \S+", r"nat outbound \d+",
    ),
    "ospf": (rf"silent-interface (?:{_IF}|all)", r"import-route (?:static|direct)(?: .*)?",
             r"bandwidth-reference \d+", r"spf-schedule-interval .*", r"default-route-advertise(?: .*)?"),
    "area": (rf"network {_IP} {_IP}", r"authentication-mode .*", r"stub(?: no-summary)?", r"nssa(?: .*)?"),
    "acl": (r"description .+", r"rule \d+ (?:permit|deny)(?: .*)?", r"step \d+"),
    "vty": (r"acl \d+ (?:inbound|outbound)", r"authentication-mode (?:aaa|password|none)",
            r"protocol inbound (?:ssh|telnet|all)", r"user privilege level \d+", r"idle-timeout \d+(?: \d+)?",
            r"screen-length \d+", r"history-command max-size \d+"),
    "console": (r"authentication-mode (?:aaa|password|none)", r"set authentication password cipher \S+",
                r"user privilege level \d+", r"idle-timeout \d+(?: \d+)?", r"speed \d+"),
    "aaa": (r"local-user \S+ password (?:irreversible-cipher|cipher) \S+", r"local-user \S+ privilege level \d+",
            r"local-user \S+ service-type .+", r"local-user \S+ state (?:active|block)",
            r"authentication-scheme \S+", r"domain \S+"),
    "aaa-scheme": (r"authentication-mode .+", r"authorization-mode .+", r"accounting-mode .+",
                   r"authentication-scheme \S+", r"accounting-scheme \S+", r"authorization-scheme \S+"),
}


def _cipher(secret):
    """VRP shows a cipher key encrypted (%^%#...%^%#): any stable transform of the clear key will do."""
    import hashlib

    return "%^%#" + hashlib.sha256(secret.encode()).hexdigest()[:40] + "%^%#"


def _comware_cipher(secret):
    import hashlib

    return "$c$3$" + hashlib.sha256(secret.encode()).hexdigest()[:32]


def display_secrets(dialect, line):
    """A line as the device displays it: clear-text keys shown encrypted."""
    if dialect.name.startswith("huawei"):
        m = re.match(r"^(snmp-agent usm-user v3 \S+ (?:authentication|privacy)-mode \S+ cipher )(\S+)$", line)
        if m and not m.group(2).startswith("%^%#"):
            return m.group(1) + _cipher(m.group(2))
    if dialect.name == "h3c_comware":
        m = re.match(r"^(snmp-agent usm-user v3 \S+ \S+ )simple authentication-mode (\S+) (\S+) privacy-mode (\S+) (\S+)(.*)$",
                     line)
        if m:
            return (f"{m.group(1)}cipher authentication-mode {m.group(2)} {_comware_cipher(m.group(3))} "
                    f"privacy-mode {m.group(4)} {_comware_cipher(m.group(5))}{m.group(6)}")
    return line


_HUAWEI_COMMON = dict(
    negate="undo ", exit_view="quit", leave_config="return", enter_config="system-view",
    enter_config_banner="Enter system view, return user view with Ctrl+Z.",
    exec_prompt="<{host}>", config_prompt="[{flag}{host}{label}]", label_sep="-",
    grammar=_HUAWEI_GRAMMAR,
    unrecognized="Error: Unrecognized command found at '^' position.",
    incomplete="Error: Incomplete command found at '^' position.",
    hostname_re=r"sysname (\S+)",
    replace_keys=(r"^(sysname) ", r"^(description) ", r"^(ospf cost) ", r"^(ospf timer hello) ",
                  r"^(ospf timer dead) ", r"^(ospf network-type) ", r"^(ospf enable \d+) ",
                  r"^(ip address) \S+ \S+$", r"^(authentication-mode) ", r"^(protocol inbound) ",
                  r"^(acl \d+ inbound)", r"^(traffic-filter inbound) ", r"^(description) "),
    sorted_children=(r"^rule (\d+) ",),
    login_banner="Info: The max number of VTY users is 5, and the number\n      of current VTY users on line is 1.",
)

VRP = Dialect(name="huawei_vrp", views=_huawei_views(False), **_HUAWEI_COMMON)
VRPV8 = Dialect(name="huawei_vrpv8", views=_huawei_views(True), two_stage=True, **_HUAWEI_COMMON)

_COMWARE_GRAMMAR = {
    "system": (
        r"sysname \S+", rf"info-center loghost {_IP}(?: .*)?", r"info-center (?:enable|source .*|timestamp .*)",
        r"ntp-service enable", rf"ntp-service unicast-server {_IP}(?: priority)?(?: source \S+)?",
        rf"ip route-static {_IP} \d+ (?:{_IP}|{_IF})(?: preference \d+)?(?: description .*)?",
        r"snmp-agent", r"snmp-agent sys-info version (?:v3|v2c|all)", r"snmp-agent sys-info (?:contact|location) .*",
        r"snmp-agent local-engineid \S+", r"snmp-agent mib-view included \S+ \S+",
        r"snmp-agent group v3 \S+ (?:privacy|authentication)(?: read-view \S+)?(?: acl \d+)?",
        r"snmp-agent usm-user v3 \S+ \S+ (?:simple|cipher) authentication-mode \S+ \S+ privacy-mode \S+ \S+(?: acl \d+)?",
        r"snmp-agent community (?:read|write) (?:simple|cipher) \S+",
        r"ssh server enable", r"ssh server acl \d+", r"ssh user \S+ service-type \S+ authentication-type \S+",
        r"telnet server enable", r"header (?:login|shell|motd) %.*%", r"clock timezone .*",
        r"license (?:activation-file install .*|.*)", r"password-recovery enable", r"lldp global enable",
        r"domain (?:default enable )?\S+", r"role name \S+", r"vlan \d+", r"irf mac-address persistent timer",
        r"irf auto-update enable", r"undo irf link-delay", r"irf member \d+ priority \d+",
        r"ip http (?:enable|secure enable)", r"undo ip http enable",
    ),
    "interface": (
        r"description .+", rf"ip address {_IP} {_IP}(?: sub)?", r"packet-filter (?:\d+|name \S+) (?:inbound|outbound)",
        r"ospf cost \d+", r"ospf network-type (?:p2p|broadcast|nbma|p2mp)", r"ospf timer (?:hello|dead) \d+",
        r"ospf \d+ area \S+", r"mtu \d+", r"shutdown", r"combo enable (?:auto|copper|fiber)", r"port link-mode \S+",
    ),
    "ospf": (rf"silent-interface (?:{_IF}|all)", r"import-route (?:static|direct)(?: .*)?",
             r"bandwidth-reference \d+", r"default-route-advertise(?: .*)?"),
    "area": (rf"network {_IP} {_IP}", r"authentication-mode .*", r"stub(?: no-summary)?"),
    "acl": (r"description .+", r"rule \d+ (?:permit|deny)(?: .*)?", r"step \d+"),
    "vty": (r"authentication-mode (?:scheme|password|none)", r"protocol inbound (?:ssh|telnet|all)",
            r"user-role \S+", r"idle-timeout \d+(?: \d+)?", r"screen-length \d+"),
    "console": (r"authentication-mode (?:scheme|password|none)", r"user-role \S+", r"idle-timeout \d+(?: \d+)?",
                r"set authentication password hash \S+"),
    "luser": (r"password (?:hash|cipher|simple) \S+", r"service-type .+", r"authorization-attribute .+",
              r"state (?:active|block)"),
}

COMWARE = Dialect(
    name="h3c_comware", negate="undo ", exit_view="quit", leave_config="return", enter_config="system-view",
    enter_config_banner="System View: return to User View with Ctrl+Z.",
    exec_prompt="<{host}>", config_prompt="[{flag}{host}{label}]", label_sep="-",
    views=(
        ViewRule("system", rf"interface ({_IF})", "interface", "{0}"),
        ViewRule("system", r"ospf (\d+)(?: router-id " + _IP + ")?", "ospf", "ospf-{0}"),
        ViewRule("ospf", r"area (" + _IP + r"|\d+)", "area", "area-{0}"),
        ViewRule("system", r"acl (?:basic|number) (2\d{3})", "acl", "acl-ipv4-basic-{0}"),
        ViewRule("system", r"acl (?:advanced|number) (3\d{3})", "acl", "acl-ipv4-adv-{0}"),
        ViewRule("system", r"line vty (\d+) (\d+)", "vty", "line-vty{0}-{1}"),
        ViewRule("system", r"line (?:aux|con(?:sole)?) (\d+)", "console", "line-aux{0}"),
        ViewRule("system", r"line class (\S+)", "console", "line-class-{0}"),
        ViewRule("system", r"local-user (\S+)(?: class (?:manage|network))?", "luser", "luser-manage-{0}"),
    ),
    grammar=_COMWARE_GRAMMAR,
    unrecognized=" % Unrecognized command found at '^' position.",
    incomplete=" % Incomplete command found at '^' position.",
    hostname_re=r"sysname (\S+)",
    replace_keys=(r"^(sysname) ", r"^(description) ", r"^(ospf cost) ", r"^(ospf timer hello) ",
                  r"^(ospf timer dead) ", r"^(ospf network-type) ", r"^(ospf \d+ area) ",
                  r"^(ip address) \S+ \S+$", r"^(authentication-mode) ", r"^(protocol inbound) ",
                  r"^(packet-filter \S+ inbound)"),
    sorted_children=(r"^rule (\d+) ",),
    login_banner=("******************************************************************************\n"
                  "* Copyright (c) 2004-2021 New H3C Technologies Co., Ltd. All rights reserved.*\n"
                  "* Without the owner's prior written consent,                                 *\n"
                  "* no decompiling or reverse-engineering shall be allowed.                    *\n"
                  "******************************************************************************\n"),
)

_IOS_GRAMMAR = {
    "system": (
        r"hostname \S+", rf"logging host {_IP}", r"logging trap \S+", r"logging buffered .*",
        rf"ntp server {_IP}(?: prefer)?(?: source \S+)?", rf"ip route {_IP} {_IP} (?:{_IP}|{_IF})(?: \d+)?(?: name \S+)?",
        r"snmp-server view \S+ \S+ (?:included|excluded)", r"snmp-server group \S+ v3 (?:priv|auth|noauth)(?: read \S+)?(?: access \S+)?",
        r"snmp-server user \S+ \S+ v3 auth sha \S+ priv aes 128 \S+(?: access \S+)?",
        r"snmp-server community \S+ (?:RO|RW)(?: \S+)?", r"snmp-server (?:location|contact) .*",
        r"ip ssh version 2", r"ip ssh (?:time-out|authentication-retries) \d+", r"ip domain[ -]name \S+",
        r"service (?:timestamps .*|password-encryption)", r"no service pad", r"enable secret(?: \d)? \S+",
        r"username \S+ privilege \d+ (?:secret|password)(?: \d)? \S+", r"aaa new-model",
        r"aaa (?:authentication|authorization) \S+ default .+", r"aaa session-id common",
        r"license udi pid \S+ sn \S+", r"license boot level \S+", r"no ip http(?: secure)?-server", r"ip cef",
        r"no ip domain[ -]lookup", r"banner (?:login|motd) \^C.*\^C", r"boot-start-marker", r"boot-end-marker",
        r"clock timezone .*", r"crypto key generate rsa .*", r"ip forward-protocol nd",
    ),
    "interface": (
        r"description .+", rf"ip address {_IP} {_IP}(?: secondary)?", r"ip access-group \S+ (?:in|out)",
        r"ip ospf network (?:point-to-point|broadcast)", r"ip ospf (?:hello|dead)-interval \d+", r"ip ospf cost \d+",
        r"ip ospf \d+ area \S+", r"shutdown", r"negotiation auto", r"duplex \S+", r"speed \S+", r"mtu \d+",
        r"ip nat (?:inside|outside)", r"media-type \S+",
    ),
    "router": (rf"router-id {_IP}", r"log-adjacency-changes(?: detail)?", r"passive-interface (?:default|\S+)",
               r"redistribute static subnets", rf"network {_IP} {_IP} area \S+", r"auto-cost reference-bandwidth \d+"),
    "std-acl": (rf"\d+ (?:permit|deny) (?:{_IP} {_IP}|any|host {_IP})(?: log)?", r"remark .+"),
    "ext-acl": (r"\d+ (?:permit|deny) \S+ .+", r"remark .+"),
    "line": (r"access-class \S+ in", r"login(?: local| authentication \S+)?", r"transport input (?:ssh|telnet|none|all)(?: .*)?",
             r"exec-timeout \d+(?: \d+)?", r"logging synchronous", r"stopbits \d", r"privilege level \d+",
             r"transport output .+"),
    "archive": (r"path \S+", r"maximum \d+", r"write-memory", r"time-period \d+"),
}

IOS = Dialect(
    name="cisco_ios", negate="no ", exit_view="exit", leave_config="end", enter_config="configure terminal",
    enter_config_banner="Enter configuration commands, one per line.  End with CNTL/Z.",
    exec_prompt="{host}#", config_prompt="{host}(config{label})#", label_sep="",
    views=(
        ViewRule("system", rf"interface ({_IF})", "interface", "-if"),
        ViewRule("system", r"router ospf (\d+)", "router", "-router"),
        ViewRule("system", r"ip access-list standard (\S+)", "std-acl", "-std-nacl"),
        ViewRule("system", r"ip access-list extended (\S+)", "ext-acl", "-ext-nacl"),
        ViewRule("system", r"line (?:vty|con|aux) \d+(?: \d+)?", "line", "-line"),
        ViewRule("system", r"archive", "archive", "-archive"),
    ),
    grammar=_IOS_GRAMMAR,
    unrecognized="% Invalid input detected at '^' marker.",
    incomplete="% Incomplete command.",
    hostname_re=r"hostname (\S+)",
    replace_keys=(r"^(hostname) ", r"^(description) ", r"^(ip ospf cost) ", r"^(ip ospf hello-interval) ",
                  r"^(ip ospf dead-interval) ", r"^(ip ospf network) ", r"^(ip ospf \d+ area) ",
                  r"^(ip address) \S+ \S+$", r"^(router-id) ", r"^(logging trap) ", r"^(access-class) \S+ in",
                  r"^(ip access-group) \S+ in", r"^(transport input) ", r"^(path) ", r"^(maximum) "),
    hidden_res=(r"^snmp-server user ",),
    no_statements=(r"^no passive-interface \S+$", r"^no service pad$", r"^no ip http(?: secure)?-server$",
                   r"^no ip domain[ -]lookup$"),
    sorted_children=(r"^(\d+) ",),
    section_style="cisco",
)

DIALECTS = {d.name: d for d in (VRP, VRPV8, COMWARE, IOS)}
