"""jincai_netconfig: parse/plan/diff logic, error detection, and the push/rollback flow.

The flow tests drive ``Device`` and the module's ``run`` against a small simulated CLI (a vtysh-like
config tree behind a fake netmiko channel); the live proof against FRR is tests/lab/test_routing.py.
"""


import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netconfig_support import Failed, FakeModule, load_module, nc

FRR = nc.PLATFORMS["frr"]
IOS = nc.PLATFORMS["cisco_ios"]
VRP = nc.PLATFORMS["huawei_vrp"]

RUNNING_FRR = """Building configuration...

Current configuration:
!
frr version 8.4.4
frr defaults traditional
hostname r1
log syslog informational
service integrated-vtysh-config
!
interface eth1
 ip address 198.18.248.1/30
 ip ospf area 0.0.0.0
 ip ospf hello-interval 1
exit
!
router ospf
 ospf router-id 198.18.254.1
exit
!
end
"""


def test_parse_drops_noise_and_keeps_nesting():
    tree = nc.parse(RUNNING_FRR, FRR)
    assert list(tree) == ["hostname r1", "log syslog informational", "service integrated-vtysh-config",
                          "interface eth1", "router ospf"]
    assert list(tree["interface eth1"].children) == ["ip address 198.18.248.1/30", "ip ospf area 0.0.0.0",
                                                     "ip ospf hello-interval 1"]
    assert nc.normalize(RUNNING_FRR, FRR) == nc.render(tree)


def test_parse_vrp_nested_sections_and_separators():
    text = "#\nsysname r1\n#\nospf 1 router-id 1.1.1.1\n area 0.0.0.1\n  network 10.0.0.0 0.0.0.3\n#\nreturn\n"
    tree = nc.parse(text, VRP)
    assert list(tree) == ["sysname r1", "ospf 1 router-id 1.1.1.1"]
    area = tree["ospf 1 router-id 1.1.1.1"].children["area 0.0.0.1"]
    assert list(area.children) == ["network 10.0.0.0 0.0.0.3"]


def test_plan_removes_before_adding_inside_a_section():
    intended = RUNNING_FRR.replace("ip ospf area 0.0.0.0", "ip ospf area 0.0.0.1")
    cmds = nc.plan(nc.parse(RUNNING_FRR, FRR), nc.parse(intended, FRR), FRR)
    assert cmds == ["interface eth1", "no ip ospf area 0.0.0.0", "ip ospf area 0.0.0.1", "exit"]


def test_plan_is_empty_for_same_config_in_another_order():
    reordered = RUNNING_FRR.replace(" ip ospf area 0.0.0.0\n ip ospf hello-interval 1\n",
                                    " ip ospf hello-interval 1\n ip ospf area 0.0.0.0\n")
    assert nc.plan(nc.parse(RUNNING_FRR, FRR), nc.parse(reordered, FRR), FRR) == []


def test_plan_negates_extra_top_level_lines_and_no_lines():
    running = "hostname r1\nno ipv6 forwarding\nip route 10.0.0.0/8 Null0\n"
    intended = "hostname r1\n"
    assert nc.plan(nc.parse(running, FRR), nc.parse(intended, FRR), FRR) == [
        "ipv6 forwarding", "no ip route 10.0.0.0/8 Null0"]


def test_vrp_negation_uses_undo_and_rewrites():
    assert nc.negation("description uplink", VRP) == "undo description"
    assert nc.negation("ospf cost 100", VRP) == "undo ospf cost"
    assert nc.negation("undo shutdown", VRP) == "shutdown"
    assert nc.negation("ip address 10.0.0.1 255.255.255.252", VRP) == "undo ip address 10.0.0.1 255.255.255.252"


def test_ordered_acl_is_replaced_whole_on_ios():
    running = "ip access-list extended M\n 10 permit tcp host 1.1.1.1 any eq 8102\n 1000 deny ip any any log\n"
    intended = ("ip access-list extended M\n 10 permit tcp host 1.1.1.1 any eq 8102\n"
                " 20 permit tcp host 1.1.1.2 any eq 8103\n 1000 deny ip any any log\n")
    cmds = nc.plan(nc.parse(running, IOS), nc.parse(intended, IOS), IOS)
    assert cmds[0] == "no ip access-list extended M"
    assert cmds[1:] == ["ip access-list extended M", "10 permit tcp host 1.1.1.1 any eq 8102",
                        "20 permit tcp host 1.1.1.2 any eq 8103", "1000 deny ip any any log", "exit"]


def test_secrets_are_masked_in_keys_but_sent_in_clear():
    plat = nc.Platform(**{**nc.PLATFORMS["h3c_comware"].__dict__,
                          "secret_res": (r"authentication-mode sha (?P<secret>\S+)",)})
    tree = nc.parse("snmp-agent usm-user v3 u g simple authentication-mode sha S3CRET\n", plat)
    (node,) = tree.values()
    assert "S3CRET" not in node.key and "S3CRET" in node.text
    assert "S3CRET" not in nc.render(tree)
    assert nc.plan({}, tree, plat) == [node.text]


@pytest.mark.parametrize("platform,output", [
    ("frr", "% Unknown command: bogus"),
    ("frr", "ospfd is not running"),
    ("frr", "% Not all daemons are up, cannot write config."),
    ("frr", "Must remove previous area config before changing ospf area"),
    ("cisco_ios", "% Invalid input detected at '^' marker."),
    ("huawei_vrp", "Error: Unrecognized command found at '^' position."),
    ("huawei_vrpv8", "Error: Wrong parameter found at '^' position."),
    ("h3c_comware", " % Unrecognized command found at '^' position."),
])
def test_error_patterns(platform, output):
    assert nc.find_error("echo\n" + output + "\n", nc.PLATFORMS[platform]) == output.strip()


@pytest.mark.parametrize("platform", sorted(nc.PLATFORMS))
def test_clean_output_is_not_an_error(platform):
    assert nc.find_error("Building Configuration...\n[OK]\nIntegrated configuration saved\n",
                         nc.PLATFORMS[platform]) is None


def test_unknown_platform_is_refused():
    with pytest.raises(ValueError, match="known: cisco_ios, frr"):
        nc.get_platform("junos")


# ------------------------------------------------------------------ a simulated vtysh


class FakeVtysh:
    """A vtysh-like CLI: config tree, sections, ``no``, errors on ``bogus``, a confirmation on save."""

    RETURN = "\n"
    SECTIONS = ("interface ", "router ", "ip access-list ")

    def __init__(self, running="hostname r1\n", refuse=("bogus",), confirm_save=False):
        self.tree = nc.parse(running, FRR)
        self.refuse = refuse
        self.confirm_save = confirm_save
        self.buffer = ""
        self.path = None  # None: exec mode; []: config; [key]: inside a section
        self.pending_save = False
        self.config_lines = 0
        self.saved = None
        self.paging = False
        self.pending_page = None

    # netmiko surface used by Device
    def clear_buffer(self):
        self.buffer = ""

    def read_channel(self):
        out, self.buffer = self.buffer, ""
        return out

    def set_base_prompt(self):
        return "r1"

    def send_command(self, cmd, **_):
        if self.paging:  # a pager after the first line, waiting for a space
            head, rest = self._running().split("\n", 1)
            self.pending_page = rest
            return head + "\n ---- More ----"
        return self._running()

    def _running(self):
        assert self.path is None
        return "Building configuration...\n\nCurrent configuration:\n!\n" + nc.render(self.tree) + "end\n"

    def disconnect(self):
        pass

    def prompt(self):
        if self.path is None:
            return "r1# "
        return "r1(config)# " if not self.path else "r1(config-if)# "

    def write_channel(self, data):
        if data == " " and self.pending_page is not None:
            self.buffer += "\r" + self.pending_page + self.prompt()
            self.pending_page = None
            return
        line = data.rstrip("\n")
        answer = self.execute(line.strip())
        waiting = self.pending_save or self.pending_page is not None
        if self.pending_page is not None:  # the pager marker stays on its line, waiting for a key
            self.buffer += line + "\n" + answer
            return
        self.buffer += line + "\n" + (answer + "\n" if answer else "") + ("" if waiting else self.prompt())

    def execute(self, line):
        if self.path is None and line == FRR.show_running:
            return self.send_command(line)
        if self.pending_save:
            self.pending_save = False
            if line.upper().startswith("Y"):
                self.saved = nc.render(self.tree)
                return "[OK]"
            return "Cancelled"
        if self.path is None:
            if line == "configure terminal":
                self.path = []
                return ""
            if line == "write memory":
                if self.confirm_save:
                    self.pending_save = True
                    return "Overwrite? [Y/N]:"
                self.saved = nc.render(self.tree)
                return "[OK]"
            return f"% Unknown command: {line}"
        self.config_lines += 1
        if any(word in line for word in self.refuse):
            return f"% Unknown command: {line}"
        if line == "end":
            self.path = None
            return ""
        if line == "exit":
            self.path = self.path[:-1] if self.path else None
            return ""
        level = self.tree
        for key in self.path:
            level = level[key].children
        if line.startswith("no "):  # like vtysh: `no description` removes `description <text>`
            for key in [k for k in level if k == line[3:] or k.startswith(line[3:] + " ")]:
                level.pop(key)
            return ""
        level.setdefault(line, nc.Node(line, line))
        if not self.path and line.startswith(self.SECTIONS):
            self.path = [line]
        return ""


def test_device_apply_reaches_the_intended_config():
    dev = FakeVtysh(RUNNING_FRR)
    d = nc.Device(dev, FRR, line_timeout=2)
    intended = nc.parse(RUNNING_FRR.replace("hello-interval 1", "hello-interval 2") + "ip route 1.0.0.0/8 Null0\n", FRR)
    d.apply(nc.plan(nc.parse(d.running(), FRR), intended, FRR))
    assert nc.same(nc.parse(d.running(), FRR), intended)
    assert dev.path is None  # left config mode


def test_device_error_names_the_line_and_leaves_config_mode():
    dev = FakeVtysh(RUNNING_FRR)
    d = nc.Device(dev, FRR, line_timeout=2)
    with pytest.raises(nc.NetconfigError) as err:
        d.apply(["interface eth1", "ip ospf cost 5", "bogus command", "ip ospf cost 6"])
    assert err.value.line == "bogus command"
    assert "% Unknown command" in err.value.message
    assert dev.path is None
    assert "ip ospf cost 6" not in d.running()  # nothing sent after the error


def test_rollback_restores_the_backup():
    dev = FakeVtysh(RUNNING_FRR)
    d = nc.Device(dev, FRR, line_timeout=2)
    backup = d.running()
    with pytest.raises(nc.NetconfigError):
        d.apply(["hostname r2", "interface eth2", "ip address 1.1.1.1/30", "exit", "bogus"])
    assert d.running() != backup
    assert d.rollback(backup) == ""
    assert nc.same(nc.parse(d.running(), FRR), nc.parse(backup, FRR))


def test_a_confirmation_not_expected_on_the_platform_is_refused_and_named():
    """FRR expects no confirmation: one is answered N and raises, naming the question."""
    dev = FakeVtysh(RUNNING_FRR, confirm_save=True)
    d = nc.Device(dev, FRR, line_timeout=2)
    with pytest.raises(nc.UnexpectedPrompt, match=r"unexpected prompt 'Overwrite\? \[Y/N\]:'"):
        d.save()
    assert dev.saved is None


LINES = st.sampled_from(["ip ospf cost 10", "ip ospf cost 20", "description a", "description b",
                         "ip ospf passive", "ip ospf area 0.0.0.1"])
SECTION = st.tuples(st.sampled_from(["interface eth1", "interface eth2", "router ospf"]),
                    # single-valued settings, as on a device: one description, one cost
                    st.lists(LINES, max_size=4, unique_by=lambda ln: ln.rsplit(" ", 1)[0]))
CONFIG = st.tuples(st.lists(st.sampled_from(["hostname r1", "ip route 1.0.0.0/8 Null0", "log syslog"]),
                            unique=True, max_size=3),
                   st.lists(SECTION, max_size=3, unique_by=lambda s: s[0]))


def _text(cfg):
    flat, sections = cfg
    out = list(flat)
    for head, body in sections:
        out.append(head)
        out.extend(" " + b for b in body)
        out.append("exit")
    return "\n".join(out) + "\n"


@settings(max_examples=60, deadline=None)
@given(CONFIG, CONFIG)
def test_plan_converges_and_is_idempotent(start, goal):
    """From any running config, applying the plan reaches the goal; a second plan is empty."""
    dev = FakeVtysh(_text(start))
    d = nc.Device(dev, FRR, line_timeout=2)
    intended = nc.parse(_text(goal), FRR)
    cmds = nc.plan(nc.parse(d.running(), FRR), intended, FRR)
    if cmds:
        d.apply(cmds)
    after = nc.parse(d.running(), FRR)
    # an empty section is shown as just its header on a real device, as here
    assert nc.plan(after, intended, FRR) == []


# ------------------------------------------------------------------ the module's run()


@pytest.fixture
def module_with(monkeypatch):
    mod = load_module()

    def make(dev):
        monkeypatch.setattr(mod, "connect", lambda *a, **k: dev)
        return mod

    return make


def test_module_check_mode_changes_nothing(module_with):
    dev = FakeVtysh(RUNNING_FRR)
    mod = module_with(dev)
    res = mod.run(FakeModule(RUNNING_FRR.replace("hello-interval 1", "hello-interval 2"), check=True))
    assert res["changed"] is True
    assert res["commands"] == ["interface eth1", "no ip ospf hello-interval 1", "ip ospf hello-interval 2", "exit"]
    assert "hello-interval 2" in res["diff"]["after"] and "hello-interval 1" in res["diff"]["before"]
    assert dev.config_lines == 0


def test_module_applies_saves_backs_up_and_is_idempotent(module_with, tmp_path):
    dev = FakeVtysh(RUNNING_FRR)
    mod = module_with(dev)
    want = RUNNING_FRR.replace("hello-interval 1", "hello-interval 2")
    res = mod.run(FakeModule(want, backup_dir=str(tmp_path)))
    assert res["changed"] is True and dev.saved is not None
    (backup,) = tmp_path.iterdir()
    assert "hello-interval 1" in backup.read_text()
    again = mod.run(FakeModule(want, backup_dir=str(tmp_path)))
    assert again["changed"] is False and again["commands"] == []
    assert len(list(tmp_path.iterdir())) == 1  # no backup when nothing changes


def test_module_rolls_back_and_names_the_line(module_with, tmp_path):
    dev = FakeVtysh(RUNNING_FRR)
    mod = module_with(dev)
    bad = RUNNING_FRR.replace("hostname r1", "hostname r2").replace(" ip ospf hello-interval 1\n",
                                                                      " ip ospf hello-interval 1\n bogus line\n")
    with pytest.raises(Failed) as failed:
        mod.run(FakeModule(bad, backup_dir=str(tmp_path)))
    info = failed.value.args[0]
    assert info["failed_line"] == "bogus line"
    assert info["rolled_back"] is True
    assert "device refused 'bogus line'" in info["msg"]
    assert nc.same(nc.parse(dev.send_command(FRR.show_running), FRR), nc.parse(RUNNING_FRR, FRR))
    assert dev.saved is None  # nothing saved


def test_module_reports_a_config_the_device_does_not_keep(module_with):
    """A line the device accepts but does not show (e.g. a default) is a non-convergence: fail, roll back."""
    dev = FakeVtysh(RUNNING_FRR)
    dev.execute = _swallow(dev.execute, "ip forwarding")
    mod = module_with(dev)
    with pytest.raises(Failed) as failed:
        mod.run(FakeModule(RUNNING_FRR + "ip forwarding\n"))
    assert "did not converge" in failed.value.args[0]["msg"]


def _swallow(execute, text):
    def wrapped(line):
        return "" if line == text else execute(line)
    return wrapped


def test_frr_interface_sections_are_cleared_not_deleted():
    """FRR refuses `no interface eth5` for a kernel interface: its lines are negated instead."""
    running = "hostname r1\ninterface eth5\n description lan\n ip address 198.18.16.1/24\nexit\ninterface eth6\nexit\n"
    cmds = nc.plan(nc.parse(running, FRR), nc.parse("hostname r1\n", FRR), FRR)
    assert cmds == ["interface eth5", "no description", "no ip address 198.18.16.1/24", "exit"]


def test_vendor_secrets_compare_masked():
    """VRP shows SNMP keys encrypted: the rendered clear key and the device's cipher compare equal."""
    ours = "snmp-agent usm-user v3 jincai-snmp authentication-mode sha cipher CLEARKEY\n"
    device = "snmp-agent usm-user v3 jincai-snmp authentication-mode sha cipher %^%#x!Yq0~%^%#\n"
    assert nc.plan(nc.parse(device, VRP), nc.parse(ours, VRP), VRP) == []
    comware = nc.PLATFORMS["h3c_comware"]
    ours = " snmp-agent usm-user v3 u G simple authentication-mode sha A privacy-mode aes128 P acl 2001\n"
    device = " snmp-agent usm-user v3 u G cipher authentication-mode sha $c$3$x privacy-mode aes128 $c$3$y acl 2001\n"
    assert nc.plan(nc.parse(device, comware), nc.parse(ours, comware), comware) == []


def test_ios_write_only_lines_are_not_compared():
    text = "hostname r1\nsnmp-server user u G v3 auth sha A priv aes 128 P\n"
    assert list(nc.parse(text, IOS)) == ["hostname r1"]
    assert nc.write_only_lines(text, IOS) == ["snmp-server user u G v3 auth sha A priv aes 128 P"]


def test_results_never_show_secrets():
    assert nc.display("snmp-server user u G v3 auth sha A1 priv aes 128 P1", IOS) == "snmp-server user u <secret>"
    shown = nc.display("snmp-agent usm-user v3 u authentication-mode sha cipher K3Y", VRP)
    assert "K3Y" not in shown and shown.endswith("<secret>")
    assert nc.display("hostname r1", IOS) == "hostname r1"


def test_a_pager_is_paged_through():
    dev = FakeVtysh(RUNNING_FRR)
    dev.paging = True
    d = nc.Device(dev, FRR, line_timeout=2)
    text = d.running()
    assert "More" not in text
    assert nc.same(nc.parse(text, FRR), nc.parse(RUNNING_FRR, FRR))


class RecordingHuawei:
    """A VRP-like prompt that records what it is sent and refuses lines containing 'bogus'."""

    RETURN = "\n"

    def __init__(self):
        self.sent = []
        self.buffer = ""
        self.view = "user"

    def clear_buffer(self):
        self.buffer = ""

    def read_channel(self):
        out, self.buffer = self.buffer, ""
        return out

    def write_channel(self, data):
        line = data.rstrip("\n")
        self.sent.append(line)
        answer = ""
        if "bogus" in line:
            answer = "              ^\nError: Unrecognized command found at '^' position.\n"
        elif line == "system-view":
            self.view = "system"
        elif line in ("return", "abort"):
            self.view = "user"
        elif line == "save":
            self.buffer += line + "\nWarning: The current configuration will be written to the device. Continue? [Y/N]:"
            return
        elif line == "Y":
            answer = "Info: Save the configuration successfully.\n"
        prompt = "<r1>" if self.view == "user" else "[~r1]"
        self.buffer += line + "\n" + answer + prompt


def test_vrpv8_commits_after_the_lines_and_aborts_on_error():
    vrpv8 = nc.PLATFORMS["huawei_vrpv8"]
    dev = RecordingHuawei()
    d = nc.Device(dev, vrpv8, line_timeout=2)
    d.apply(["sysname r1", "interface GE1/0/1", "description x", "quit"])
    assert dev.sent == ["system-view", "sysname r1", "interface GE1/0/1", "description x", "quit", "commit", "return"]
    dev.sent.clear()
    with pytest.raises(nc.NetconfigError) as err:
        d.apply(["sysname r2", "bogus line", "sysname r3"])
    assert err.value.line == "bogus line" and err.value.message.startswith("Error: Unrecognized command")
    assert dev.sent == ["system-view", "sysname r2", "bogus line", "abort", "return"]  # never committed


def test_vrp_save_answers_its_confirmation():
    dev = RecordingHuawei()
    d = nc.Device(dev, VRP, line_timeout=2)
    out = d.save()
    assert dev.sent == ["save", "Y"]
    assert "saved" in out.lower() or "successfully" in out


def test_ios_remediation_is_hier_configs():
    """IOS goes through hier-config's ios driver: ACL entries edited by sequence number, negations first."""
    running = ("hostname r1\nip access-list extended M\n 10 permit tcp host 1.1.1.1 any eq 8102\n"
               " 1000 deny ip any any log\nntp server 10.0.0.1\n")
    intended = ("hostname r1\nip access-list extended M\n 10 permit tcp host 1.1.1.1 any eq 8102\n"
                " 20 permit tcp host 1.1.1.2 any eq 8103\n 1000 deny ip any any log\nntp server 10.0.0.2\n")
    cmds = nc.remediate(nc.parse(running, IOS), nc.parse(intended, IOS), IOS)
    assert cmds == ["no ntp server 10.0.0.1", "ip access-list extended M", "20 permit tcp host 1.1.1.2 any eq 8103",
                    "exit", "ntp server 10.0.0.2"]
    assert nc.remediate(nc.parse(intended, IOS), nc.parse(intended, IOS), IOS) == []
    assert VRP.planner == "jincai" and nc.remediate({}, nc.parse("sysname r\n", VRP), VRP) == ["sysname r"]


def test_owned_parts_split_operator_lines_from_jincais():
    running = nc.parse("sysname OLD\n#\nacl number 3999\n rule 5 deny ip\n#\ninterface GigabitEthernet0/0/1\n"
                       " mtu 1400\n ospf cost 50\n#\ninterface GigabitEthernet0/0/9\n ip address 1.1.1.1 255.0.0.0\n"
                       "#\n ntp-service unicast-server 10.9.9.9\n", VRP)
    intended = nc.parse("sysname NEW\n#\ninterface GigabitEthernet0/0/1\n ospf cost 10\n", VRP)
    cmds, kept = nc.plan_owned(running, intended, VRP)
    assert kept == ["acl number 3999", "acl number 3999 > rule 5 deny ip", "interface GigabitEthernet0/0/1 > mtu 1400",
                    "interface GigabitEthernet0/0/9", "interface GigabitEthernet0/0/9 > ip address 1.1.1.1 255.0.0.0"]
    assert cmds == ["undo sysname", "undo ntp-service unicast-server 10.9.9.9", "interface GigabitEthernet0/0/1",
                    "undo ospf cost", "ospf cost 10", "quit", "sysname NEW"]
    assert nc.split_owned(running, intended, FRR) == (running, [])  # FRR: the lab's routers are all jincai's


def test_host_keys_of_keeps_only_what_may_be_the_hosts_own_lines(tmp_path):
    """The known_hosts copy paramiko loads: the host's plain and hashed lines, marker and wildcard lines,
    nothing of the other hosts; a non-standard port is matched as [host]:port, as OpenSSH writes it."""
    import base64 as b64
    import hashlib
    import hmac

    salt = b"0123456789abcdefghij"
    hashed = "|1|%s|%s" % (b64.b64encode(salt).decode(),
                           b64.b64encode(hmac.new(salt, b"198.19.0.21", hashlib.sha1).digest()).decode())
    other_hashed = "|1|%s|%s" % (b64.b64encode(salt).decode(),
                                 b64.b64encode(hmac.new(salt, b"198.19.0.99", hashlib.sha1).digest()).decode())
    lines = ["198.19.0.20 ssh-ed25519 AAAAother\n", "198.19.0.21 ssh-ed25519 AAAAmine\n",
             "198.19.0.210,198.19.0.211 ssh-ed25519 AAAAprefix\n", f"{hashed} ecdsa-sha2-nistp256 AAAAhashed\n",
             f"{other_hashed} ecdsa-sha2-nistp256 AAAAotherhashed\n", "@revoked * ssh-ed25519 AAAArevoked\n",
             "198.19.0.* ssh-rsa AAAAwild\n", "# a comment\n", "\n", "[198.19.0.21]:2222 ssh-ed25519 AAAAport\n"]
    kh = tmp_path / "known_hosts"
    kh.write_text("".join(lines))
    path = nc.host_keys_of(str(kh), "198.19.0.21")
    try:
        got = open(path, encoding="utf-8").read()
        assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    finally:
        os.unlink(path)
    assert got == "".join([lines[1], lines[3], lines[5], lines[6]])
    path = nc.host_keys_of(str(kh), "198.19.0.21", port=2222)
    try:
        assert open(path, encoding="utf-8").read() == "".join([lines[5], lines[6], lines[9]])
    finally:
        os.unlink(path)
