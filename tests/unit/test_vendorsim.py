"""The vendor CLI twins themselves (jincai.lab.vendorsim): views, prompts, errors, state, native timers.

Over SSH with netmiko's own drivers (huawei, huawei_vrpv8, hp_comware, cisco_ios) for what a
client sees; directly through ``Session`` (no SSH) for the timers and the state file, to stay fast.
"""

import json
import os
import re
import subprocess
import sys
import time

import pytest

from netconfig_support import ROOT, host_key, simulator, start_config

from jincai.lab.vendorsim import Session, SimDevice

DRIVERS = {"huawei_vrp": "huawei", "huawei_vrpv8": "huawei_vrpv8", "h3c_comware": "hp_comware",
           "cisco_ios": "cisco_ios"}
# (host, config view, interface view, error text) per platform, as the vendors print them
LOOKS = {
    "huawei_vrp": ("CC-NANGUAN-AR01", "[CC-NANGUAN-AR01]", "[CC-NANGUAN-AR01-GigabitEthernet0/0/1]",
                   "Error: Unrecognized command found at '^' position."),
    "huawei_vrpv8": ("CC-NANGUAN-NE01", "[~CC-NANGUAN-NE01]", "[~CC-NANGUAN-NE01-GE1/0/1]",
                     "Error: Unrecognized command found at '^' position."),
    "h3c_comware": ("CC-NANGUAN-MSR01", "[CC-NANGUAN-MSR01]", "[CC-NANGUAN-MSR01-GigabitEthernet1/0/1]",
                    " % Unrecognized command found at '^' position."),
    "cisco_ios": ("CC-NANGUAN-ISR01", "CC-NANGUAN-ISR01(config)#", "CC-NANGUAN-ISR01(config-if)#",
                  "% Invalid input detected at '^' marker."),
}
INTERFACE = {"huawei_vrp": "GigabitEthernet0/0/1", "huawei_vrpv8": "GE1/0/1", "h3c_comware": "GigabitEthernet1/0/1",
             "cisco_ios": "GigabitEthernet0/1"}


@pytest.mark.parametrize("platform", sorted(DRIVERS))
def test_netmiko_sees_the_vendor_prompts_views_errors_and_config(platform, tmp_path):
    from netmiko import ConnectHandler

    host, config_view, if_view, error = LOOKS[platform]
    sim = simulator(platform, str(tmp_path / "state.json"))
    try:
        conn = ConnectHandler(device_type=DRIVERS[platform], host="127.0.0.1", port=sim.port, username="netops",
                              password="netops", timeout=5)
        assert conn.base_prompt == host
        show = "show running-config" if platform == "cisco_ios" else "display current-configuration"
        running = conn.send_command(show)
        assert "local-user admin" in running or "username admin" in running  # an operator login
        enter = "configure terminal" if platform == "cisco_ios" else "system-view"
        conn.write_channel(enter + "\n")
        assert conn.read_until_pattern(pattern=re.escape(config_view)).endswith(config_view)
        conn.write_channel(f"interface {INTERFACE[platform]}\n")
        assert conn.read_until_pattern(pattern=re.escape(if_view)).endswith(if_view)
        conn.write_channel("description ok\nfrobnicate now\n")
        out = conn.read_until_pattern(pattern=r"position\.|marker\.").replace("\r", "")
        caret_line = out.split("\n")[-2]
        assert out.endswith(error.strip()) or out.split("\n")[-1] == error
        assert caret_line == " " * len(if_view) + "^"  # the caret under the unknown word
        conn.paramiko_cleanup()
        shown = sim.device.render(sim.device.running)
        assert "frobnicate" not in shown
        # VRP V8 is two-stage: the session ended without `commit`, so its candidate is gone
        assert (" description ok" in shown) is (platform != "huawei_vrpv8")
    finally:
        sim.close()
        sim.device.close()


def _session(platform, tmp_path, **options):
    dev = SimDevice(platform, str(tmp_path / "state.json"), start_config(platform), **options)
    return dev, Session(dev)


def test_state_survives_sessions_and_restarts(tmp_path):
    dev, s = _session("huawei_vrp", tmp_path)
    s.line("system-view")
    s.line("sysname R-NEW")
    assert s.prompt() == "[R-NEW]"
    dev.close()
    again = SimDevice("huawei_vrp", str(tmp_path / "state.json"), "sysname IGNORED\n")
    assert again.hostname == "R-NEW"  # the state file wins over the start config
    assert Session(again).prompt() == "<R-NEW>"
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["startup"] != state["running"]  # not saved yet: a reboot would lose it
    again.close()


def test_ios_revert_timer_fires_unless_confirmed(tmp_path):
    dev, s = _session("cisco_ios", tmp_path, time_scale=0.002)  # 1 minute = 0.12 s
    assert "requires a configuration archive" in s.line("configure terminal revert timer 1")
    s.line("configure terminal")
    for line in ("archive", "path flash:arch", "exit", "end"):
        s.line(line)
    assert "Backing up current running config" in s.line("configure terminal revert timer 1")
    s.line("hostname CHANGED")
    s.line("end")
    time.sleep(0.3)
    assert dev.hostname == "CC-NANGUAN-ISR01" and dev.events[0][0] == "revert"
    s.line("configure terminal revert timer 1")
    s.line("hostname KEPT")
    s.line("end")
    assert s.line("configure confirm") == ""
    time.sleep(0.3)
    assert dev.hostname == "KEPT" and len(dev.events) == 1
    dev.close()


def test_vrpv8_commit_trial_rolls_back_unless_committed(tmp_path):
    dev, s = _session("huawei_vrpv8", tmp_path, time_scale=0.002)  # 60 s = 0.12 s
    s.line("system-view")
    s.line("sysname TRIAL")
    assert dev.hostname == "CC-NANGUAN-NE01"  # two-stage: the candidate is not live yet
    assert "Error:" in s.line("commit trial 30")  # 60-65535 s
    assert "not confirmed in 60 seconds" in s.line("commit trial 60")
    assert dev.hostname == "TRIAL"
    time.sleep(0.3)
    assert dev.hostname == "CC-NANGUAN-NE01"
    s.line("sysname KEPT")
    s.line("commit trial 60")
    assert "confirmed" in s.line("commit")
    time.sleep(0.3)
    assert dev.hostname == "KEPT"
    dev.close()


def test_comware_commit_delay_rolls_back_unless_committed(tmp_path):
    dev, s = _session("h3c_comware", tmp_path, time_scale=0.002)
    s.line("system-view")
    s.line("configuration commit delay 1")
    s.line("sysname GONE")
    time.sleep(0.3)
    assert dev.hostname == "CC-NANGUAN-MSR01"
    s.line("configuration commit delay 1")
    s.line("sysname KEPT")
    s.line("configuration commit")
    time.sleep(0.3)
    assert dev.hostname == "KEPT"
    dev.close()


def test_vrp_scheduled_reboot_loads_the_saved_config_and_cuts_sessions(tmp_path):
    dev, s = _session("huawei_vrp", tmp_path, time_scale=0.002)
    cut = []
    s._kill = lambda: cut.append(True)
    s.line("system-view")
    s.line("sysname UNSAVED")
    s.line("return")
    assert s.line("schedule reboot delay 1").endswith("Confirm? [Y/N]:")
    s.line("Y")
    time.sleep(0.3)
    assert dev.hostname == "CC-NANGUAN-AR01" and cut == [True]
    s2 = Session(dev)
    s2.line("schedule reboot delay 0:01")
    s2.line("y")
    s2.line("undo schedule reboot")
    time.sleep(0.3)
    assert [kind for kind, _ in dev.events] == ["reboot"]
    dev.close()


def test_v8_leaving_with_uncommitted_changes_asks():
    dev = SimDevice("huawei_vrpv8", None, start_config("huawei_vrpv8"))
    s = Session(dev)
    s.line("system-view")
    s.line("sysname X")
    assert s.line("return").endswith("[Y(yes)/N(no)/C(cancel)]:")
    s.line("N")
    assert s.mode == "exec" and dev.hostname == "CC-NANGUAN-NE01"
    dev.close()


def test_the_command_line_serves_a_router(tmp_path):
    """python -m jincai.lab.vendorsim: listens on loopback, serves netmiko, stops on SIGTERM."""
    from netmiko import ConnectHandler

    key = tmp_path / "host.key"
    host_key().write_private_key_file(str(key))
    proc = subprocess.Popen([sys.executable, "-m", "jincai.lab.vendorsim", "--platform", "h3c_comware",
                             "--listen", "127.0.0.1:0", "--state", str(tmp_path / "s.json"), "--host-key", str(key),
                             "--config", os.path.join(ROOT, "jincai", "lab", "vendorsim", "start", "h3c_comware.cfg")],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("vendorsim h3c_comware listening on 127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        conn = ConnectHandler(device_type="hp_comware", host="127.0.0.1", port=port, username="netops",
                              password="netops", timeout=5)
        assert conn.base_prompt == "CC-NANGUAN-MSR01"
        conn.paramiko_cleanup()
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def test_a_lab_key_logs_in_and_the_lab_command_is_namespaced(tmp_path):
    """The lab's key-based login works (as the router role connects); the lab command stays in its namespace."""
    import paramiko

    from netconfig_support import nc
    from jincai.lab.vendorsim import lab

    key = paramiko.RSAKey.generate(2048)
    key.write_private_key_file(str(tmp_path / "id_rsa"))
    (tmp_path / "id_rsa.pub").write_text(f"{key.get_name()} {key.get_base64()} netops@lab\n")
    from jincai.lab.vendorsim.server import authorized_keys

    sim = simulator("cisco_ios", authorized=authorized_keys(str(tmp_path / "id_rsa.pub")))
    try:
        dev = nc.Device(nc.connect(nc.PLATFORMS["cisco_ios"], "127.0.0.1", "netops", port=sim.port,
                                   key_file=str(tmp_path / "id_rsa"), timeout=5), nc.PLATFORMS["cisco_ios"])
        assert "hostname CC-NANGUAN-ISR01" in dev.running()
        dev.close()
    finally:
        sim.close()
        sim.device.close()
    twin = lab.TWINS[0]
    argv = lab.command(twin, "/var/lib/jincai-lab/twins", "/var/lib/jincai-lab/ssh/id_ed25519.pub")
    assert argv[:4] == ["ip", "netns", "exec", "jlab-vsim-vrp"] and f"{twin.mgmt_address}:22" in argv
    assert os.path.exists(argv[argv.index("--config") + 1])
    assert {t.platform for t in lab.TWINS} == {"huawei_vrp", "huawei_vrpv8", "h3c_comware", "cisco_ios"}
