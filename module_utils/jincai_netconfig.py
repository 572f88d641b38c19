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

import difflib
import re
import time
from dataclasses import dataclass, field


class NetconfigError(Exception):
    """A device refused a line: carries the line and the device's answer."""

    def __init__(self, line, message, output=""):
        super().__init__(f"{message} (line: {line!r})")
        self.line = line
        self.message = message
        self.output = output


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
    more_re: str = r"(?:-{2,} ?More ?-{2,}|<--- More --->)[^\n]*\Z"  # a pager waiting for a key
    confirm_re: str = r"\[(?:Y/N|y/n|yes/no|Y\(yes\)/N\(no\)(?:/C\(cancel\))?)\]\s*:?\s*\Z"
    save_command: str = "write memory"
    save_confirm: bool = False
    commit: bool = False  # candidate config (VRPv8): commit at the end, abort on error
    config_enter: str = "configure terminal"
    config_leave: str = "end"
    silent_success: bool = False  # any answer to a config line is an error (FRR's vtysh)


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
    "negate_rewrites": (
        (r"^description .*", "description"),
        (r"^sysname .*", "sysname"),
        (r"^ospf cost .*", "ospf cost"),
        (r"^ospf timer hello .*", "ospf timer hello"),
        (r"^ospf timer dead .*", "ospf timer dead"),
    ),
    "save_command": "save",
    "save_confirm": True,
    "secret_res": (r"^snmp-agent usm-user v3 \S+ (?:authentication|privacy)-mode \S+ cipher (?P<secret>\S+)",),
    "config_enter": "system-view",
    "config_leave": "return",
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
    ),
    "huawei_vrp": Platform(name="huawei_vrp", device_type="huawei", **_HUAWEI_COMMON),
    # VRP V8 (CE/NE series) is VRP with two-stage configuration: changes take effect on `commit`.
    "huawei_vrpv8": Platform(name="huawei_vrpv8", device_type="huawei_vrpv8", commit=True, **_HUAWEI_COMMON),
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


def _subtree_lines(node, platform):
    """Commands that create ``node`` with all its children, leaving the section afterwards."""
    cmds = [node.text]
    for child in node.children.values():
        cmds.extend(_subtree_lines(child, platform))
    if node.children or any(re.match(r, node.text) for r in platform.section_res):
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
            additions.extend(_subtree_lines(node, platform))
        elif depth == 0 and any(r.match(key) for r in whole):
            if render(old.children) != render(node.children):  # ordered: compare in order
                changes.append(negation(node.text, platform))
                changes.extend(_subtree_lines(node, platform))
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
    if known_hosts:
        params.update(ssh_strict=True, system_host_keys=False, alt_host_keys=True, alt_key_file=known_hosts)
    if key_file:
        params.update(use_keys=True, key_file=key_file, allow_agent=False)
    if password:
        params["password"] = password
    if platform.name == "frr":
        return _frr_class()(device_type="cisco_ios", **params)
    from netmiko import ConnectHandler

    return ConnectHandler(device_type=platform.device_type, **params)


class Device:
    """A connected device: running config, line-by-line push with error checks, save, rollback."""

    def __init__(self, conn, platform, line_timeout=30):
        self.conn = conn
        self.platform = platform
        self.line_timeout = line_timeout
        self._prompt = re.compile(platform.prompt_re)
        self._confirm = re.compile(platform.confirm_re)
        self._more = re.compile(platform.more_re)
        self.transcript = []

    def _read(self, echo):
        """Read the echo of ``echo`` then up to the next prompt (answering Y to confirmations).

        Returns the device's answer: the text between the echoed line and the prompt.
        """
        out = ""
        start = None
        answered = 0  # confirmations are looked for after the last one answered
        deadline = time.monotonic() + self.line_timeout
        while time.monotonic() < deadline:
            chunk = self.conn.read_channel()
            if not chunk:
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
                self.conn.write_channel(" ")
                out = out[:more.start()]
                continue
            answer = out[start:]
            if self._confirm.search(answer[answered:]):
                self.conn.write_channel("Y" + self.conn.RETURN)
                answered = len(answer)
                continue
            prompt = self._prompt.search(answer)
            if prompt:
                return answer[:prompt.start()].strip("\n")
        raise NetconfigError(echo, f"no prompt within {self.line_timeout}s", out)

    def send(self, line, strict=False):
        """Send one line, wait for the prompt, raise NetconfigError on an error answer.

        With ``strict`` (config lines on a platform whose success is silent) any answer is an error.
        """
        self.conn.write_channel(line + self.conn.RETURN)
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

    def apply(self, commands):
        """Enter config mode, send ``commands`` one by one, commit if needed, leave config mode.

        On an error the session leaves config mode (VRPv8: aborts the candidate) and re-raises.
        """
        self.conn.clear_buffer()
        self.send(self.platform.config_enter)
        strict = self.platform.silent_success
        try:
            for line in commands:
                self.send(line, strict=strict)
            if self.platform.commit:
                self.send("commit")
        except NetconfigError:
            self._leave(abort=self.platform.commit)
            raise
        self._leave()

    def _leave(self, abort=False):
        try:
            if abort:
                self.send("abort")
            self.send(self.platform.config_leave)
        except NetconfigError:
            pass

    def save(self):
        """Save the running config (answering the confirmation) and check the answer."""
        self.conn.clear_buffer()
        return self.send(self.platform.save_command)

    def rollback(self, backup_text):
        """Take the device back to ``backup_text``; return the remaining diff ('' = restored)."""
        current = parse(self.running(), self.platform)
        target = parse(backup_text, self.platform)
        cmds = plan(current, target, self.platform)
        if cmds:
            self.apply(cmds)
        after = parse(self.running(), self.platform)
        return "" if same(after, target) else unified_diff(render(after), render(target))
