"""tests/lab/hoststate.py without the lab: the testinfra Host of a lab host (address and SSH master from the
lab's state, connection settings from inventories/lab), the read and assert helpers, and a guard that the
converted lab modules call ``run_on`` only for actions."""

import ast
import importlib.util
import os

import pytest
import testinfra

from jincai import ROOT
from jincai.verify import support

LAB_TESTS = os.path.join(ROOT, "tests", "lab")
#: Lab test modules whose state checks read through hoststate (issue 19 item 3).
CONVERTED = ("test_baseline.py", "test_verify.py", "test_mlps2.py", "test_vpn.py", "test_vpn_township.py",
             "test_routing.py", "test_apps.py", "test_compliance_lab.py", "test_compliance_fast.py",
             "test_compliance_timer.py", "test_vpn_crl.py", "test_audit_lab.py", "test_lab_wan.py")
#: How a command that only reads state starts: such a command belongs to hoststate, not to run_on.
READ_ONLY = ("cat ", "stat ", "ls ", "sha256sum ", "getent ", "passwd -S", "chage -l", "grep ", "readlink ",
             "systemctl is-", "systemctl cat", "systemctl show", "ss ", "sshd -T", "nft list", "chronyc -n",
             "swanctl --list", "vtysh -c", "ip route get", "ip -j", "ip -4 -o addr", "journalctl", "test ")


def _load():
    spec = importlib.util.spec_from_file_location("lab_hoststate", os.path.join(LAB_TESTS, "hoststate.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


hoststate = _load()


def test_host_uses_the_lab_state_address_and_a_master_per_container():
    state = {"hosts": {"220102-app1": {"mgmt": "198.19.0.99", "pid": 4242}}}
    h = hoststate.host("220102-app1", state=state)
    backend = h.backend
    assert backend.NAME == "ssh" and backend.host.name == "198.19.0.99" and backend.host.user == "jincai"
    assert backend.controlpath == os.path.join(support.CONTROL_DIR, "220102-app1-4242-jincai")
    assert backend.sudo is True, "inventories/lab sets ansible_become"
    assert backend.ssh_identity_file == "/var/lib/jincai-lab/ssh/id_ed25519"
    assert "UserKnownHostsFile=/var/lib/jincai-lab/ssh/known_hosts" in backend.ssh_extra_args
    assert "BatchMode=yes" in backend.ssh_extra_args
    assert hoststate.host("220102-app1", state=state) is h, "one Host (one SSH master) per container"
    rebooted = hoststate.host("220102-app1", state={"hosts": {"220102-app1": {"mgmt": "198.19.0.99", "pid": 4343}}})
    assert rebooted is not h and rebooted.backend.controlpath.endswith("220102-app1-4343-jincai")


def test_host_outside_the_state_uses_the_inventory_address():
    h = hoststate.host("220102-app1", state={})
    inventory_address = hoststate.network().hostvars["220102-app1"]["ansible_host"]
    assert h.backend.host.name == inventory_address
    assert h.backend.controlpath == os.path.join(support.CONTROL_DIR, "220102-app1-jincai")


def test_verify_connections_are_unchanged_without_overrides():
    spec, kwargs = support.host_spec(hoststate.network(), "220102-app1")
    assert spec == f"ssh://jincai@{hoststate.network().hostvars['220102-app1']['ansible_host']}"
    assert kwargs["controlpath"].endswith("/220102-app1-jincai")


def test_read_returns_stdout_and_names_host_command_and_exit_code(monkeypatch):
    local = testinfra.get_host("local://")
    monkeypatch.setattr(hoststate, "host", lambda name: local)
    assert hoststate.read("220102-app1", "echo %s", "a b") == "a b\n"
    assert hoststate.run("220102-app1", "exit 3").rc == 3
    with pytest.raises(AssertionError) as exc:
        hoststate.read("220102-app1", "echo oops >&2; exit 3")
    msg = str(exc.value)
    assert msg.startswith("220102-app1: `") and "exited 3: oops" in msg


def test_listening_on_is_every_address_of_one_port(monkeypatch):
    sockets = {"tcp://0.0.0.0:8102", "tcp://:::8102", "tcp://198.18.1.2:81020", "udp://0.0.0.0:8102",
               "tcp://127.0.0.53%lo:53"}
    monkeypatch.setattr(hoststate, "listening", lambda name: sockets)
    assert hoststate.listening_on("220000-app1", 8102) == {"tcp://0.0.0.0:8102", "tcp://:::8102"}
    assert hoststate.listening_on("220000-app1", 8102, "udp") == {"udp://0.0.0.0:8102"}
    assert hoststate.listening_on("220000-app1", "53") == {"tcp://127.0.0.53%lo:53"}
    assert hoststate.listening_on("220000-app1", 8103) == set()


def test_expect_and_equal_name_host_check_expected_found():
    hoststate.expect("h1", "thing", True, "x", "y")
    hoststate.equal("h1", "thing", [1], [1])
    with pytest.raises(AssertionError, match=r"^h1: sshd -T permitrootlogin: expected 'no', found 'yes'$"):
        hoststate.equal("h1", "sshd -T permitrootlogin", "yes", "no")
    with pytest.raises(AssertionError, match=r"^h1: chrony.service: expected running, found inactive$"):
        hoststate.expect("h1", "chrony.service", False, "running", "inactive")


def _run_on_commands(source):
    """(line, leading literal text) of every ``run_on(host, cmd, ...)`` call in a module's source."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "run_on" and len(node.args) >= 2:
            cmd = node.args[1]
            if isinstance(cmd, ast.Constant) and isinstance(cmd.value, str):
                yield node.lineno, cmd.value
            elif isinstance(cmd, ast.JoinedStr) and cmd.values and isinstance(cmd.values[0], ast.Constant):
                yield node.lineno, cmd.values[0].value


@pytest.mark.parametrize("module", CONVERTED)
def test_converted_lab_modules_use_run_on_only_for_actions(module):
    with open(os.path.join(LAB_TESTS, module), encoding="utf-8") as fh:
        calls = list(_run_on_commands(fh.read()))
    reads = [f"{module}:{line}: {text[:60]!r}" for line, text in calls if text.lstrip().startswith(READ_ONLY)]
    assert not reads, f"state read through run_on (use hoststate): {reads}"


def test_the_guard_sees_a_state_read():
    source = 'run_on(h, f"nft list table {t}")\nrun_on(h, "logger -t x y", check=True)\nrun_on(h, cmd)\n'
    found = [text for _, text in _run_on_commands(source)]
    assert found == ["nft list table ", "logger -t x y"]
    assert [t for t in found if t.startswith(READ_ONLY)] == ["nft list table "]
