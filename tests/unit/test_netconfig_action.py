"""plugins/action/jincai_netconfig.py: the router push run in the Ansible worker (not as a module),
end to end with ansible-playbook against a vendor CLI twin on 127.0.0.1 (real netmiko and paramiko):
a change, then changed=0, check mode clean; bad options refused before contact; the action plugin (and
netmiko) loaded in the parent before the worker was forked."""

import json
import os
import subprocess
import sys

import pytest

from netconfig_support import intended, simulator

from jincai import ROOT

SCALE = 0.1


@pytest.fixture
def sim(tmp_path):
    s = simulator("cisco_ios", state_file=str(tmp_path / "ios.json"), time_scale=SCALE)
    yield s
    s.close()
    s.device.close()


def _play(tmp_path, sim, *extra, **args):
    task = {"platform": "cisco_ios", "host": "127.0.0.1", "port": sim.port, "username": "netops",
            "password": "{{ sim_password }}", "config": intended("cisco_ios"), "rollback_timer": 60,
            "timer_scale": SCALE, "timeout": 5, "backup_dir": str(tmp_path / "backups")}
    task.update(args)
    play = [{"name": "Push", "hosts": "localhost", "gather_facts": False,
             "tasks": [{"name": "Push the config", "jincai_netconfig": task, "register": "push"},
                       {"name": "Show", "ansible.builtin.debug": {"msg": "RESULT {{ push | to_json }}"}}]}]
    path = tmp_path / "play.yml"
    path.write_text(json.dumps(play))
    inv = tmp_path / "inventory.yml"
    inv.write_text(json.dumps({"all": {"hosts": {"localhost": {"ansible_connection": "local",
                                                              "ansible_python_interpreter": sys.executable}}}}))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_CALLBACKS_ENABLED="jincai_timer", ANSIBLE_STDOUT_CALLBACK="default")
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), str(path),
                           "-i", str(inv), "-e", json.dumps({"sim_password": "netops"}),
                           "-vv", *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _recap_changed(out):
    line = next(l for l in out.splitlines() if l.startswith("localhost") and "ok=" in l)
    return int(line.split("changed=")[1].split()[0])


def test_the_push_runs_in_the_worker_converges_and_then_changes_nothing(tmp_path, sim):
    first = _play(tmp_path, sim)
    assert first.returncode == 0, first.stdout[-3000:]
    assert _recap_changed(first.stdout) == 1
    assert "action plugin jincai_netconfig loaded before the workers that run it" in first.stdout
    assert '"invocation"' not in first.stdout  # no module ran: a module result carries its invocation
    check = _play(tmp_path, sim, "--check", "--diff")
    assert check.returncode == 0 and _recap_changed(check.stdout) == 0, check.stdout[-3000:]
    second = _play(tmp_path, sim)
    assert second.returncode == 0 and _recap_changed(second.stdout) == 0, second.stdout[-3000:]


def test_check_mode_reports_the_change_and_sends_nothing(tmp_path, sim):
    before = sim.device.render(sim.device.running)
    check = _play(tmp_path, sim, "--check", "--diff")
    assert check.returncode == 0 and _recap_changed(check.stdout) == 1, check.stdout[-3000:]
    assert "intended config" in check.stdout  # the diff's header
    assert sim.device.render(sim.device.running) == before


def test_bad_options_are_refused_before_contact(tmp_path, sim):
    res = _play(tmp_path, sim, platform="junos")
    assert res.returncode != 0
    assert "jincai_netconfig: value of platform must be one of" in res.stdout, res.stdout[-2000:]
    assert "netops" not in res.stdout.split("TASK [Push the config]")[1]  # no_log options never echoed
