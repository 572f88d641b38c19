"""Config diff, push, error detection and rollback for routers driven by netmiko.

Everything that depends on the vendor lives in one table, ``PLATFORMS``: how the running config is
shown, which lines are volatile, how a line is negated, which sections are replaced whole, which
output means an error, how a confirmation looks, how the config is saved. The rest is generic:

* ``parse`` turns a config text into a tree (indentation = nesting), dropping comments, separators,
  section terminators and volatile lines, so a template and a device's ``show running-config``
  compare equal when they mean the same thing;
* ``plan`` computes the commands that take the running tree to the intended one (removals first,
  then changes inside sections, then new lines; sections matching ``replace_whole`` are re-sent
  whole);
* ``Device`` wraps a netmiko connection: fetch the running config, send lines one by one while
  answering confirmations and matching error patterns, save, and roll back to a saved text.

The pure functions are unit-tested (tests/unit/test_netconfig*.py); ``Device`` is proven against the
lab's FRR routers (tests/lab/test_routing.py).
"""

import base64
import binascii
import difflib
import hashlib
import hmac
import os
import re
import tempfile
import time
from dataclasses import dataclass, field


class NetconfigError(Exception):
    """A device refused a line: carries the line and the device's answer."""

    def __init__(self, line, message, output=""):
        super().__init__(f"{message} (line: {line!r})")
        self.line = line
        self.message = message
        self.output = output


class UnexpectedPrompt(NetconfigError):
    """The device asked a question that is not in the platform's expected confirmations."""


class SessionLost(NetconfigError):
    """The SSH session ended under the push (closed by the device, cut, or unwritable)."""


class TimerExpiring(SessionLost):
    """The device's own timer is about to take its way back: no further line may be sent."""


@dataclass(frozen=True)
class Owned:
    """A part of a router's config that jincai owns (everything else is never negated).

    ``header`` matches a top-level line. ``children`` (a regex) limits ownership to those lines
    inside the section (an interface's addressing and OSPF lines), None owns the whole section.
    ``rendered_only``: owned only when the intended config has that very line (ACLs by
    number/name, jincai's interfaces, the VTY lines), so an operator's own ACL or interface is kept.
    """

    what: str
    header: str
    children: str = None
    rendered_only: bool = False


@dataclass(frozen=True)
class Platform:
    """Everything vendor-specific the diff and push logic needs."""

    name: str
    device_type: str  # netmiko device_type (FRR uses the FrrVtysh class below)
    show_running: str
    negate: str  # "no " or "undo "
    exit_section: str  # command that leaves one level of a section
    prompt_re: str  # any prompt of the device, anchored at the end of the output
    error_res: tuple
    ignore_res: tuple = ()  # volatile lines of show running (dropped on both sides)
    drop_lines: tuple = ("!", "#", "exit", "quit", "end", "return", "exit-address-family")
    replace_whole_res: tuple = ()  # sections re-sent whole when their body differs
    negate_rewrites: tuple = ()  # (regex, replacement) applied to a line before negating it
    secret_res: tuple = ()  # regexes with a group "secret": compared and shown as <secret>
    # lines the device accepts but never shows (IOS `snmp-server user`): not compared, re-sent with
    # every change
    write_only_res: tuple = ()
    # sections that cannot be deleted (physical interfaces): removed by negating their children;
    # such a section with no children counts as absent
    clear_only_res: tuple = ()
    # lines that open a sub-mode even when they have no children (left with exit_section)
    section_res: tuple = (r"^interface ", r"^router ", r"^ip access-list ", r"^line ", r"^route-map ")
    nested_section_res: tuple = ()  # lines below the top level that open a view without children
    more_re: str = r"(?:-{2,} ?More ?-{2,}|<--- More --->)[^\n]*\Z"  # a pager waiting for a key
    confirm_re: str = r"\[(?:Y/N|y/n|yes/no|Y\(yes\)/N\(no\)(?:/C\(cancel\))?)\]\s*:?\s*\Z"
    save_command: str = "write memory"
    save_confirm: bool = False
    commit: bool = False  # candidate config (VRPv8): commit at the end, abort on error
    config_enter: str = "configure terminal"
    config_leave: str = "end"
    logout: str = "exit"  # leaves the session from the user/exec view
    silent_success: bool = False  # any answer to a config line is an error (FRR's vtysh)
    # '#' separator lines close every section (VRP, Comware print global lines with a leading space)
    separator_resets: bool = False
    # the parts of the config jincai owns (Owned rules); None: all of it (FRR, the lab's own routers)
    owned: tuple = None
    # the device's own way back (see SAFETY): none, ios_revert, vrpv8_trial, comware_delay, vrp_reboot
    safety: str = "none"
    # the only confirmations answered: (regex on the question, answer); any other aborts the push
    expected_prompts: tuple = ()
    # who computes the commands: "jincai" (plan() below) or "hier_config" (hier-config's driver for
    # the platform, which knows its negation and idempotent commands; IOS only in hier-config 2.2)
    planner: str = "jincai"


def _owned_huawei(acl, vty, filter_line, ntp, ssh):
    """Owned parts of a VRP / VRP V8 / Comware router (docs/routing.md, "Owned sections")."""
    return (
        Owned("hostname", r"^sysname "),
        Owned("syslog", r"^info-center loghost "),
        Owned("NTP", ntp),
        Owned("SNMP", r"^snmp-agent(?: |$)"),
        Owned("SSH access", ssh),
        Owned("login banner", r"^header (?:login|shell) ", rendered_only=True),
        Owned("OSPF process", r"^ospf 1(?: |$)"),
        Owned("ACLs by number/name", acl, rendered_only=True),
        Owned("VTY access", vty, children=r"^(?:acl \d+ inbound|authentication-mode |protocol inbound )",
              rendered_only=True),
        Owned("interface addressing and OSPF", r"^interface ", rendered_only=True,
              children=r"^(?:description |ip address |ospf |" + filter_line + r")"),
    )


_OWNED_VRP = _owned_huawei(r"^acl (?:number|name) ", r"^(?:user-interface|line) vty ", r"traffic-filter ",
                           r"^ntp-service unicast-server ", r"^(?:stelnet server enable$|ssh server[ -])")
_OWNED_COMWARE = _owned_huawei(r"^acl (?:basic|advanced|number|name) ", r"^line vty ", r"packet-filter ",
                               r"^ntp-service (?:enable$|unicast-server )", r"^ssh server ")
_OWNED_IOS = (
    Owned("hostname", r"^hostname "),
    Owned("syslog", r"^logging (?:host|trap) "),
    Owned("NTP", r"^ntp server "),
    Owned("SNMP", r"^snmp-server "),
    Owned("SSH access", r"^ip ssh "),
    Owned("login banner", r"^banner (?:login|motd) ", rendered_only=True),
    Owned("OSPF process", r"^router ospf 1$"),
    Owned("ACLs by name", r"^ip access-list (?:standard|extended) ", rendered_only=True),
    Owned("VTY access", r"^line vty ", children=r"^(?:access-class |login|transport input )", rendered_only=True),
    Owned("interface addressing and OSPF", r"^interface ", rendered_only=True,
          children=r"^(?:description |ip address |ip ospf |ip access-group |shutdown$)"),
)

#: Confirmations a push may meet, per platform, and the answer; anything else aborts (issue 15).
_VRP_SAVE_PROMPT = (r"current configuration will be written to the device\.?\s*"
                    r"(?:Continue|Are you sure to continue)\?\s*\[Y/N\]:?\s*\Z", "Y")
_VRP_REBOOT_PROMPT = (r"Reboot system (?:at|for) [^\n]*\n?\s*Confirm\?\s*\[Y/N\]:?\s*\Z", "Y")

_CISCO_PROMPT = r"(?m)^[\w.\-]+(?:\([\w.\-/ ]+\))?[#>] ?\Z"
_HUAWEI_SECTIONS = (r"^interface ", r"^ospf ", r"^area ", r"^acl ", r"^user-interface ", r"^line ", r"^aaa$")
_HUAWEI_PROMPT = r"(?m)^(?:<[~*]?[\w.\-/:]+>|\[[~*]?[\w.\-/:]+\]) ?\Z"

#: What VRP and VRP V8 share: the CLI dialect, error messages, sections and secrets.
_HUAWEI_COMMON = {
    "show_running": "display current-configuration",
    "negate": "undo ",
    "exit_section": "quit",
    "prompt_re": _HUAWEI_PROMPT,
    "error_res": (
        r"^\s*Error:",
        r"Unrecognized command",
        r"Incomplete command",
        r"Wrong parameter",
        r"Too many parameters",
        r"Ambiguous command",
    ),
    "ignore_res": (r"^!Software Version", r"^!Last configuration was", r"^!Time:"),
    "replace_whole_res": (r"^acl (?:number|name) ",),
    "section_res": _HUAWEI_SECTIONS,
    "nested_section_res": (r"^area ",),
    "negate_rewrites": (
        (r"^description .*", "description"),
        (r"^sysname .*", "sysname"),
        (r"^ospf cost .*", "ospf cost"),
        (r"^ospf timer hello .*", "ospf timer hello"),
        (r"^ospf timer dead .*", "ospf timer dead"),
    ),
    "save_command": "save",
    "save_confirm": True,
    "separator_resets": True,
    "owned": _OWNED_VRP,
    "secret_res": (r"^snmp-agent usm-user v3 \S+ (?:authentication|privacy)-mode \S+ cipher (?P<secret>\S+)",),
    "config_enter": "system-view",
    "config_leave": "return",
    "logout": "quit",
}

PLATFORMS = {
    "frr": Platform(
        name="frr",
        device_type="frr_vtysh",
        show_running="show running-config",
        negate="no ",
        exit_section="exit",
        prompt_re=_CISCO_PROMPT,
        error_res=(
            r"^% ?Unknown command",
            r"^% ?Command incomplete",
            r"^% ?Ambiguous command",
            r"^% ?Invalid",
            r"^Must remove ",
            r"^Please remove ",
            r"^% ?Not all daemons are up",
            r"^% ?Configuration failed",
            r"^% ?Malformed",
            r"^% .*(?:[Ee]rror|[Ff]ailed|not|[Cc]an't|[Mm]ust)\b",
            r"\bis not running\b",
            r"^Error:",
        ),
        ignore_res=(
            r"^Building configuration",
            r"^Current configuration:?$",
            r"^frr version ",
            r"^frr defaults ",
        ),
        replace_whole_res=(),
        negate_rewrites=((r"^description .*", "description"),),
        clear_only_res=(r"^interface ",),
        silent_success=True,
    ),
    "cisco_ios": Platform(
        name="cisco_ios",
        device_type="cisco_ios",
        show_running="show running-config",
        negate="no ",
        exit_section="exit",
        prompt_re=_CISCO_PROMPT,
        error_res=(
            r"^% ?Invalid input",
            r"^% ?Incomplete command",
            r"^% ?Ambiguous command",
            r"^% ?Unknown command",
            r"^% .*(?:[Ee]rror|[Ff]ailed)",
            r"^% .*Rollback Confirmed Change",
        ),
        ignore_res=(
            r"^Building configuration",
            r"^Current configuration\s*:",
            r"^! (?:Last configuration change|NVRAM config last updated)",
            r"^version \d",
            r"^ntp clock-period ",
        ),
        replace_whole_res=(r"^ip access-list ",),
        negate_rewrites=((r"^description .*", "description"), (r"^hostname .*", "hostname")),
        write_only_res=(r"^snmp-server user ",),
        owned=_OWNED_IOS,
        safety="ios_revert",
        planner="hier_config",
    ),
    "huawei_vrp": Platform(name="huawei_vrp", device_type="huawei", safety="vrp_reboot",
                           expected_prompts=(_VRP_SAVE_PROMPT, _VRP_REBOOT_PROMPT), **_HUAWEI_COMMON),
    # VRP V8 (CE/NE series) is VRP with two-stage configuration: changes take effect on `commit`.
    "huawei_vrpv8": Platform(name="huawei_vrpv8", device_type="huawei_vrpv8", commit=True, safety="vrpv8_trial",
                             expected_prompts=(_VRP_SAVE_PROMPT,), **_HUAWEI_COMMON),
    "h3c_comware": Platform(
        name="h3c_comware",
        device_type="hp_comware",
        show_running="display current-configuration",
        negate="undo ",
        exit_section="quit",
        prompt_re=_HUAWEI_PROMPT,
        error_res=(
            r"^\s*% ?Unrecognized command",
            r"^\s*% ?Incomplete command",
            r"^\s*% ?Wrong parameter",
            r"^\s*% ?Too many parameters",
            r"^\s*% ?Ambiguous command",
            r"^\s*Error:",
        ),
        ignore_res=(r"^ ?version \d", r"^#?\s*$"),
        replace_whole_res=(r"^acl (?:advanced|basic|number|name) ",),
        section_res=_HUAWEI_SECTIONS,
        nested_section_res=(r"^area ",),
        negate_rewrites=(
            (r"^description .*", "description"),
            (r"^sysname .*", "sysname"),
            (r"^ospf cost .*", "ospf cost"),
            (r"^ospf timer hello .*", "ospf timer hello"),
            (r"^ospf timer dead .*", "ospf timer dead"),
        ),
        save_command="save force",
        secret_res=(r"^snmp-agent usm-user v3 \S+ \S+ (?P<secret>(?:simple|cipher) authentication-mode .*)$",),
        save_confirm=False,
        config_enter="system-view",
        config_leave="return",
        logout="quit",
        separator_resets=True,
        owned=_OWNED_COMWARE,
        safety="comware_delay",
    ),
}


def get_platform(name):
    """Return the Platform called ``name`` or raise ValueError listing the known ones."""
    try:
        return PLATFORMS[name]
    except KeyError:
        raise ValueError(f"unknown platform {name!r}; known: {', '.join(sorted(PLATFORMS))}") from None


# --------------------------------------------------------------------------------------------
# Pure logic: parse, render, diff, plan, error detection
# --------------------------------------------------------------------------------------------


@dataclass
class Node:
    """One config line and its indented children (ordered, keyed by ``key``).

    ``text`` is the line as sent to the device; ``key`` is the same line with secrets masked
    (devices show secrets encrypted, so a secret compares as ``<secret>`` on both sides).
    """

    text: str
    key: str = ""
    children: dict = field(default_factory=dict)


def _mask(line, secret_res):
    for pattern in secret_res:
        m = re.search(pattern, line)
        if m:
            return line[:m.start("secret")] + "<secret>" + line[m.end("secret"):]
    return line


def parse(text, platform):
    """Parse config text into an ordered dict ``line -> Node`` (nesting by indentation).

    Comment and separator lines, section terminators (``exit``/``quit``/...), blank lines and the
    platform's volatile lines are dropped; trailing spaces are ignored.
    """
    root = Node("")
    stack = [(-1, root)]
    ignore = [re.compile(r) for r in platform.ignore_res]
    for raw in text.replace("\r", "").split("\n"):
        line = raw.rstrip()
        stripped = line.strip()
        if platform.separator_resets and stripped == "#":
            stack = [(-1, root)]
            continue
        if not stripped or stripped in platform.drop_lines:
            continue
        if stripped.startswith(("!", "#")) and not any(r.match(stripped) for r in ignore):
            continue
        if any(r.match(stripped) or r.match(line) for r in ignore):
            continue
        if any(re.match(r, stripped) for r in platform.write_only_res):
            continue
        indent = len(line) - len(line.lstrip(" "))
        while stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1]
        key = _mask(stripped, platform.secret_res)
        node = parent.children.get(key)
        if node is None:
            node = Node(stripped, key)
            parent.children[key] = node
        stack.append((indent, node))
    clear_only = [re.compile(r) for r in platform.clear_only_res]
    return {k: n for k, n in root.children.items()
            if n.children or not any(r.match(k) for r in clear_only)}


def write_only_lines(text, platform):
    """The top-level lines of ``text`` the device never shows (sent again with every change)."""
    lines = [ln.strip() for ln in text.replace("\r", "").split("\n")]
    return [ln for ln in lines if any(re.match(r, ln) for r in platform.write_only_res)]


def display(line, platform):
    """``line`` as shown in results and logs: secrets masked, write-only lines cut after their name."""
    for pattern in platform.write_only_res:
        if re.match(pattern, line):
            return " ".join(line.split()[:3]) + " <secret>"
    return _mask(line, platform.secret_res)


def render(tree, indent=0):
    """Render a parsed tree back to text, one space of indentation per level."""
    out = []
    for node in tree.values():
        out.append(" " * indent + node.key)
        out.extend(render(node.children, indent + 1).splitlines())
    return "\n".join(out) + ("\n" if out and indent == 0 else "")


def normalize(text, platform):
    """Canonical text of a config: what the diff shows and what 'changed' compares."""
    return render(parse(text, platform))


def unified_diff(before, after, name="running-config"):
    """Unified diff of two normalized config texts (empty string when equal)."""
    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True),
        fromfile=f"{name} (device)", tofile=f"{name} (intended)")
    return "".join(lines)


def negation(line, platform):
    """Return the command that removes ``line`` on ``platform``."""
    neg = platform.negate
    if line.startswith(neg):
        return line[len(neg):]
    for pattern, repl in platform.negate_rewrites:
        if re.match(pattern, line):
            line = re.sub(pattern, repl, line)
            break
    return neg + line


def _subtree_lines(node, platform, depth=0):
    """Commands that create ``node`` with all its children, leaving the section afterwards.

    A line without children opens a view only at the top level (``section_res``) or, nested,
    when it matches ``nested_section_res`` (VRP's ``area`` inside ``ospf``): ``ospf cost 10``
    inside an interface is a plain line there.
    """
    cmds = [node.text]
    for child in node.children.values():
        cmds.extend(_subtree_lines(child, platform, depth + 1))
    opens = platform.section_res if depth == 0 else platform.nested_section_res
    if node.children or any(re.match(r, node.text) for r in opens):
        cmds.append(platform.exit_section)
    return cmds


def same(a, b):
    """True when two trees hold the same lines (order-insensitive, recursively)."""
    if a.keys() != b.keys():
        return False
    return all(same(node.children, b[key].children) for key, node in a.items())


def _plan_level(running, intended, platform, depth):
    removals, changes, additions = [], [], []
    whole = [re.compile(r) for r in platform.replace_whole_res]
    clear_only = [re.compile(r) for r in platform.clear_only_res]
    for key, node in running.items():
        if key in intended:
            continue
        if depth == 0 and any(r.match(key) for r in clear_only):
            if node.children:
                removals.extend([node.text, *(negation(c.text, platform) for c in node.children.values()),
                                 platform.exit_section])
            continue
        removals.append(negation(node.text, platform))
    for key, node in intended.items():
        old = running.get(key)
        if old is None:
            additions.extend(_subtree_lines(node, platform, depth))
        elif depth == 0 and any(r.match(key) for r in whole):
            if render(old.children) != render(node.children):  # ordered: compare in order
                changes.append(negation(node.text, platform))
                changes.extend(_subtree_lines(node, platform, depth))
        elif not same(old.children, node.children):
            inner = _plan_level(old.children, node.children, platform, depth + 1)
            if inner:
                changes.extend([node.text, *inner, platform.exit_section])
    return removals + changes + additions


def plan(running, intended, platform):
    """Commands (config mode) that turn the ``running`` tree into the ``intended`` tree.

    Removals come first at every level (so a value can be replaced: FRR refuses a second
    ``ip ospf area`` before the first is removed), then changes inside existing sections, then
    new lines and sections. Sections matching ``platform.replace_whole_res`` (ordered ACLs) are
    negated and re-sent whole when their body differs.
    """
    return _plan_level(running, intended, platform, 0)


def owner(key, platform):
    """The Owned rule covering top-level line ``key`` on ``platform`` (None: not jincai's)."""
    for rule in platform.owned or ():
        if re.match(rule.header, key):
            return rule
    return None


def split_owned(running, intended, platform):
    """Split a running tree into (the part jincai owns, the unmanaged lines it keeps).

    The owned part is what ``plan`` may change; the unmanaged lines are returned as display text
    (``section > line`` for a line inside a section). A platform with ``owned=None`` owns all.
    Lines the intended config has are always owned (they are jincai's by definition).
    """
    if platform.owned is None:
        return running, []
    managed, kept = {}, []
    for key, node in running.items():
        rule = owner(key, platform)
        wanted = intended.get(key)
        if rule is None or (rule.rendered_only and wanted is None):
            if wanted is not None:
                managed[key] = Node(node.text, node.key, {k: c for k, c in node.children.items()
                                                          if k in wanted.children})
                kept.extend(f"{key} > {k}" for k in node.children if k not in wanted.children)
            else:
                kept.append(key)
                kept.extend(f"{key} > {k}" for k in node.children)
            continue
        if rule.children is None:
            managed[key] = node
            continue
        inner = {}
        for k, c in node.children.items():
            if re.match(rule.children, k) or (wanted is not None and k in wanted.children):
                inner[k] = c
            else:
                kept.append(f"{key} > {k}")
        managed[key] = Node(node.text, node.key, inner)
    return managed, kept


def _texts(tree, indent=0):
    """A tree as config text with the lines as sent (secrets in clear), one space per level."""
    out = []
    for node in tree.values():
        out.append(" " * indent + node.text)
        out.extend(_texts(node.children, indent + 1))
    return out


def _hier_config_plan(running, intended, platform):
    """The commands from hier-config's remediation (its ``ios`` driver), flattened for line-by-line sending.

    hier-config orders negations first and knows which IOS commands replace each other; a section's
    lines are followed by ``exit`` as everywhere in this engine.
    """
    from hier_config import Host  # imported here: only the IOS path needs it

    host = Host("router", "ios")
    host.load_running_config("\n".join(_texts(running)))
    host.load_generated_config("\n".join(_texts(intended)))
    cmds = []

    def flatten(child):
        cmds.append(child.text)
        for sub in sorted(child.children):  # hier-config's order weights (negations first)
            flatten(sub)
        if child.children:
            cmds.append(platform.exit_section)

    for child in sorted(host.remediation_config().children):
        flatten(child)
    return cmds


def remediate(running, intended, platform):
    """Commands that take ``running`` to ``intended`` with the platform's planner (``Platform.planner``)."""
    if platform.planner == "hier_config":
        return _hier_config_plan(running, intended, platform)
    return plan(running, intended, platform)


def plan_owned(running, intended, platform):
    """The remediation restricted to the owned parts: (commands, unmanaged lines kept as they are)."""
    managed, kept = split_owned(running, intended, platform)
    return remediate(managed, intended, platform), kept


def find_error(output, platform):
    """Return the first line of ``output`` that matches an error pattern of ``platform``, or None."""
    for line in output.replace("\r", "").split("\n"):
        for pattern in platform.error_res:
            if re.search(pattern, line):
                return line.strip()
    return None


# --------------------------------------------------------------------------------------------
# Device session (netmiko)
# --------------------------------------------------------------------------------------------


def _frr_class():
    """Build the netmiko driver for FRR's vtysh (imported lazily: unit tests need no netmiko)."""
    from netmiko.cisco.cisco_ios import CiscoIosSSH

    class FrrVtyshSSH(CiscoIosSSH):
        """vtysh as the SSH login shell: no enable, no ``terminal width``, ``write memory``."""

        def session_preparation(self):
            # the login banner ends with the prompt: take it from there (no extra round trips)
            out = self._test_channel_read(pattern=r"[>#]\s*$")
            self.base_prompt = out.replace("\r", "").strip().splitlines()[-1].strip()[:-1]
            self.write_channel("terminal length 0" + self.RETURN)
            self.read_until_pattern(pattern=r"terminal length 0[\s\S]*[>#]\s*$")

        def enable(self, *args, **kwargs):
            return ""

        def check_enable_mode(self, *args, **kwargs):
            return True

        def save_config(self, cmd="write memory", confirm=False, confirm_response=""):
            return self._send_command_str(cmd, expect_string=r"[>#]\s*$", read_timeout=60)

    return FrrVtyshSSH


def connect(platform, host, username, port=22, key_file=None, password=None, timeout=20, known_hosts=None):
    """Open a netmiko session to ``host`` for ``platform``.

    With ``known_hosts`` the device's host key must be in that file (unknown or changed keys are
    refused); without it netmiko accepts any key.
    """
    params = dict(host=host, port=port, username=username, timeout=timeout, conn_timeout=timeout,
                  auth_timeout=timeout, banner_timeout=timeout, fast_cli=False)
    if key_file:
        params.update(use_keys=True, key_file=key_file, allow_agent=False)
    if password:
        params["password"] = password
    own = None
    try:
        if known_hosts:
            own = host_keys_of(known_hosts, host, port)
            params.update(ssh_strict=True, system_host_keys=False, alt_host_keys=True, alt_key_file=own)
        if platform.name == "frr":
            return _frr_class()(device_type="cisco_ios", **params)
        from netmiko import ConnectHandler

        return ConnectHandler(device_type=platform.device_type, **params)
    finally:
        if own:
            os.unlink(own)


def _may_match(patterns, names):
    """Whether an OpenSSH known_hosts host field (comma-separated patterns, or one hashed ``|1|salt|hash``
    name) may name one of ``names``; wildcards and negations are kept (undecided: True)."""
    if patterns.startswith("|1|"):
        try:
            _, _, salt, digest = patterns.split("|", 3)
            salt, digest = base64.b64decode(salt), base64.b64decode(digest)
        except (ValueError, binascii.Error):
            return True
        return any(hmac.compare_digest(hmac.new(salt, n.encode(), hashlib.sha1).digest(), digest) for n in names)
    pats = patterns.split(",")
    if any(c in patterns for c in "*?!"):
        return True
    return any(p in names for p in pats)


def host_keys_of(known_hosts, host, port=22):
    """A 0600 temporary copy of the lines of ``known_hosts`` that may be ``host``'s (its own, hashed
    or not; marker lines such as ``@revoked`` and wildcard patterns, all kept), for paramiko to load.

    paramiko parses and decodes every key of the file it is given: on the province twin's known_hosts
    (181 hosts) that was ~0.3 s of CPU per router session, most of a converged routers.yml's module
    time after the netmiko import. The caller removes the file."""
    names = {host if port == 22 else f"[{host}]:{port}"}
    fd, path = tempfile.mkstemp(prefix="jincai-known-hosts-")
    with os.fdopen(fd, "w", encoding="utf-8") as out, open(known_hosts, encoding="utf-8") as fh:
        for line in fh:
            field = line.split(None, 1)[0] if line.strip() else ""
            if field.startswith("@") or (field and not field.startswith("#") and _may_match(field, names)):
                out.write(line)
    return path


def device_timer(platform, seconds):
    """The native timer command's value for ``seconds`` and the seconds it really stands for.

    IOS revert timers, Comware commit delays and VRP scheduled reboots count in whole minutes
    (at least 1); a VRP V8 trial counts seconds from 60 to 65535.
    """
    if platform.safety == "vrpv8_trial":
        value = min(65535, max(60, int(seconds)))
        return value, value
    value = max(1, -(-int(seconds) // 60))
    return value, value * 60


class Device:
    """A connected device: running config, line-by-line push with error checks, save, rollback.

    Native safety (``arm`` before the push, ``confirm`` from a new session, ``disarm`` after a
    fast-path rollback) follows ``platform.safety``:

    * ``ios_revert``: ``archive`` / ``path`` ensured, the push runs in ``configure terminal revert
      timer N``; confirmed with ``configure confirm``;
    * ``vrpv8_trial``: the candidate is committed with ``commit trial N``; confirmed with ``commit``;
    * ``comware_delay``: ``configuration commit delay N`` first in system view; confirmed with
      ``configuration commit``;
    * ``vrp_reboot``: ``save`` (the running config becomes the last good one) then ``schedule reboot
      delay N``; confirmed with ``save`` and ``undo schedule reboot``.
    """

    def __init__(self, conn, platform, line_timeout=30):
        self.conn = conn
        self.platform = platform
        self.line_timeout = line_timeout
        self._prompt = re.compile(platform.prompt_re)
        self._confirm = re.compile(platform.confirm_re)
        self._more = re.compile(platform.more_re)
        self.transcript = []
        self.armed = None  # (timer value, seconds it stands for) once the device's own way back is armed
        self.trial_committed = False
        self.prepared = False  # arm() changed the config (IOS: added the archive): the baseline moved

    def _closed(self):
        chan = getattr(self.conn, "remote_conn", None)
        return bool(chan is not None and (getattr(chan, "closed", False) or getattr(chan, "eof_received", False)))

    def _write(self, text, line):
        try:
            self.conn.write_channel(text)
        except (OSError, EOFError) as exc:
            raise SessionLost(line, f"the session is gone: {exc}") from None

    def _read(self, echo):
        """Read the echo of ``echo`` then up to the next prompt, answering expected confirmations.

        Returns the device's answer: the text between the echoed line and the prompt. A question
        not in ``platform.expected_prompts`` is answered N and raises UnexpectedPrompt naming it.
        """
        out = ""
        start = None
        answered = 0  # confirmations are looked for after the last one answered
        unexpected = None
        deadline = time.monotonic() + self.line_timeout
        while time.monotonic() < deadline:
            try:
                chunk = self.conn.read_channel()
            except (OSError, EOFError) as exc:
                raise SessionLost(echo, f"the session is gone: {exc}", out) from None
            if not chunk:
                if self._closed():
                    raise SessionLost(echo, "the device closed the session", out)
                time.sleep(0.003)
                continue
            out += chunk.replace("\r", "")
            if start is None:
                pos = out.find(echo.strip())
                if pos < 0:
                    continue
                start = out.find("\n", pos)
                if start < 0:
                    start = None
                    continue
            more = self._more.search(out)
            if more:  # paging left on (or re-enabled by the device): next page, drop the marker
                self._write(" ", echo)
                out = out[:more.start()]
                continue
            answer = out[start:]
            if self._confirm.search(answer[answered:]):
                question = answer[answered:]
                reply = next((a for rx, a in self.platform.expected_prompts if re.search(rx, question)), None)
                if reply is None:
                    unexpected = unexpected or question.strip().splitlines()[-1].strip()
                    reply = "N"
                self._write(reply + self.conn.RETURN, echo)
                answered = len(answer)
                continue
            prompt = self._prompt.search(answer)
            if prompt:
                if unexpected:
                    raise UnexpectedPrompt(echo, f"unexpected prompt {unexpected!r} (answered N)", answer)
                return answer[:prompt.start()].strip("\n")
        raise NetconfigError(echo, f"no prompt within {self.line_timeout}s", out)

    def send(self, line, strict=False):
        """Send one line, wait for the prompt, raise NetconfigError on an error answer.

        With ``strict`` (config lines on a platform whose success is silent) any answer is an error.
        """
        self._write(line + self.conn.RETURN, line)
        answer = self._read(line)
        self.transcript.append((line, answer))
        err = find_error(answer, self.platform)
        if not err and strict and answer.strip():
            err = answer.strip().splitlines()[0].strip()
        if err:
            raise NetconfigError(line, err, answer)
        return answer

    def running(self):
        """Return the raw running config (read up to the prompt, whatever the hostname now is)."""
        self.conn.clear_buffer()
        return self.send(self.platform.show_running)

    def apply(self, commands, armed=False, deadline=None):
        """Enter config mode, send ``commands`` one by one, commit if needed, leave config mode.

        With ``armed`` (after ``arm``) the push goes through the device's own way back: IOS enters
        config mode with the revert timer, Comware starts with the commit delay, VRP V8 commits on
        trial. On an error the session leaves config mode (VRPv8: aborts the candidate) and
        re-raises; a lost session raises SessionLost. Past ``deadline`` (monotonic; the armed timer
        minus a margin) no line is sent: lines typed after the device has reverted would apply to
        the restored config and leave it half-changed; TimerExpiring is raised instead.
        """
        plat = self.platform
        self.conn.clear_buffer()
        enter = plat.config_enter
        if armed and plat.safety == "ios_revert":
            enter = f"configure terminal revert timer {self.armed[0]}"
        self.send(enter)
        strict = plat.silent_success
        try:
            if armed and plat.safety == "comware_delay":
                self.send(f"configuration commit delay {self.armed[0]}")
            for line in commands:
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimerExpiring(line, "the device timer expires before the push ends: stopped before "
                                        "this line")
                self.send(line, strict=strict)
            if plat.commit:
                if armed and plat.safety == "vrpv8_trial":
                    self.send(f"commit trial {self.armed[0]}")
                    self.trial_committed = True
                else:
                    self.send("commit")
        except SessionLost:
            raise
        except NetconfigError:
            self._leave(abort=plat.commit)
            raise
        self._leave()

    def _leave(self, abort=False):
        try:
            if abort:
                self.send("abort")
            self.send(self.platform.config_leave)
        except SessionLost:
            raise
        except NetconfigError:
            pass

    def save(self):
        """Save the running config (answering the confirmation) and check the answer."""
        self.conn.clear_buffer()
        return self.send(self.platform.save_command)

    def arm(self, seconds):
        """Arm the device's own way back for about ``seconds``; returns the seconds it stands for.

        Only VRP V5 and IOS send anything here (save + scheduled reboot; the archive); IOS, VRP V8
        and Comware arm the timer with the push itself (``apply(armed=True)``).
        """
        plat = self.platform
        if plat.safety == "none":
            return 0
        value, real = device_timer(plat, seconds)
        if plat.safety == "vrp_reboot":
            self.save()
            self.send(f"schedule reboot delay {value}")
        elif plat.safety == "ios_revert":
            archive = parse(self.running(), plat).get("archive")
            if archive is None or not any(k.startswith("path ") for k in archive.children):
                # the revert timer needs a configuration archive: the one change made outside the window
                self.apply(["archive", "path flash:jincai-rollback", "maximum 14", "exit"])
                self.prepared = True
        self.armed = (value, real)
        return real

    def confirm(self, save=True):
        """Keep the change: tell the device not to take its way back (run from a new session)."""
        plat = self.platform
        if plat.safety == "ios_revert":
            self.send("configure confirm")
        elif plat.safety == "vrpv8_trial":
            self._in_system_view("commit")
        elif plat.safety == "comware_delay":
            self._in_system_view("configuration commit")
        elif plat.safety == "vrp_reboot":
            if save:
                self.save()
            self.send("undo schedule reboot")
            return
        if save:
            self.save()

    def disarm(self):
        """After a fast-path rollback (config back to the pre-change one): cancel the device timer."""
        plat = self.platform
        if plat.safety == "vrp_reboot":
            self.send("undo schedule reboot")
        elif plat.safety == "vrpv8_trial":
            if self.trial_committed:
                self._in_system_view("commit")
        elif plat.safety in ("ios_revert", "comware_delay"):
            self.confirm(save=False)

    def close(self):
        """Log out and close the SSH session at once (netmiko's disconnect probes the mode for ~2 s).

        The device is in its user/exec view between operations (``apply`` always leaves config
        mode), so the logout line is ``quit`` / ``exit``; a session already gone is just dropped.
        """
        conn = self.conn
        if not hasattr(conn, "paramiko_cleanup"):
            conn.disconnect()
            return
        try:
            conn.write_channel(self.platform.logout + conn.RETURN)
        except Exception:  # already closed by the device: nothing to log out of
            pass
        try:
            conn.paramiko_cleanup()
        except Exception:  # a transport closed under us raises on close: it is closed either way
            pass

    def _in_system_view(self, line):
        self.send(self.platform.config_enter)
        try:
            self.send(line)
        finally:
            self.send(self.platform.config_leave)

    def rollback(self, backup_text):
        """Take the device back to ``backup_text``; return the remaining diff ('' = restored)."""
        current = parse(self.running(), self.platform)
        target = parse(backup_text, self.platform)
        cmds = remediate(current, target, self.platform)
        if cmds:
            self.apply(cmds)
        after = parse(self.running(), self.platform)
        return "" if same(after, target) else unified_diff(render(after), render(target))
