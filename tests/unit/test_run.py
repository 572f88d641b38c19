"""jincai.run: real ansible-runner runs of small playbooks against localhost (connection local).

The recap read from ``playbook_on_stats`` must equal the PLAY RECAP Ansible prints, for a run with a
changed task, a failed host, a rescue, an ignored failure, a failed loop item and an unreachable host
(127.0.0.2 on a port nothing listens on), with the project's Mitogen strategy and stock linear, the
project's callbacks (jincai_timer, jincai_drift, jincai_ara) enabled.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from jincai.run.child import reap
from jincai.run import PlaybookRun, recap_from_stats, run

# Ansible's own text recap, read here only to compare it with the event-based one.
TEXT_RECAP = re.compile(r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
                        r"\s+failed=(?P<failed>\d+)\s+skipped=(?P<skipped>\d+)\s+rescued=(?P<rescued>\d+)"
                        r"\s+ignored=(?P<ignored>\d+)\s*$")

PLAYBOOK = """
- name: Mixed outcomes
  hosts: all
  gather_facts: false
  tasks:
    - name: Change something
      ansible.builtin.command: "true"
      changed_when: true
    - name: A failure that is rescued
      block:
        - name: Fail inside the block
          ansible.builtin.fail:
            msg: rescued failure
      rescue:
        - name: Rescue it
          ansible.builtin.debug:
            msg: rescued
    - name: A failure that is ignored
      ansible.builtin.fail:
        msg: ignored failure
      ignore_errors: true
    - name: Skipped on good
      ansible.builtin.debug:
        msg: only on bad
      when: inventory_hostname == 'bad'
    - name: A loop whose second item fails on bad
      ansible.builtin.fail:
        msg: "item {{ item }} failed"
      loop: [1, 2]
      when: inventory_hostname == 'bad' and item == 2
    - name: Only good gets here
      ansible.builtin.command: "true"
      changed_when: false
"""


def _free_port(address):
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    (d / "site.yml").write_text(PLAYBOOK)
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    hosts = {"all": {"hosts": {"good": local, "bad": local,
                               "dead": {"ansible_host": "127.0.0.2", "ansible_port": _free_port("127.0.0.2"),
                                        "ansible_user": "nobody", "ansible_connection": "ssh",
                                        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no "
                                                                   "-o UserKnownHostsFile=/dev/null"}}}}
    (d / "hosts.yml").write_text(json.dumps(hosts))
    return d


def text_recap(output):
    """{host: counters} from the PLAY RECAP block of Ansible's output."""
    block = output.split("PLAY RECAP", 1)[1]
    return {m["host"]: {k: int(v) for k, v in m.groupdict().items() if k != "host"}
            for m in (TEXT_RECAP.match(line.strip()) for line in block.splitlines()) if m}


@pytest.mark.parametrize("strategy", ["mitogen_linear", "linear"])
def test_recap_from_events_equals_ansibles_play_recap(project, strategy, tmp_path):
    drift = tmp_path / "drift.json"
    res = run(str(project / "site.yml"), inventory=str(project / "hosts.yml"), callbacks=("jincai_drift",),
              env={"ANSIBLE_STRATEGY": strategy, "JINCAI_DRIFT_FILE": str(drift)})
    assert res.rc == 4, res.output[-3000:]  # 4: some host unreachable (and one failed)
    assert res.recap == text_recap(res.output)
    assert res.recap["good"] == {"ok": 4, "changed": 1, "unreachable": 0, "failed": 0, "skipped": 2,
                                 "rescued": 1, "ignored": 1}
    assert res.recap["bad"]["failed"] == 1 and res.recap["bad"]["rescued"] == 1
    assert res.recap["bad"]["ignored"] == 1
    assert res.recap["dead"] == {"ok": 0, "changed": 0, "unreachable": 1, "failed": 0, "skipped": 0,
                                 "rescued": 0, "ignored": 0}
    assert res.hosts_with("unreachable") == ["dead"] and res.hosts_with("failed") == ["bad"]
    assert sorted(res.changed_tasks()) == [("Change something", "bad"), ("Change something", "good")]
    fails = {(f.host, f.task): f for f in res.failures}
    assert fails[("dead", "Change something")].unreachable
    assert "item 2 failed" in fails[("bad", "A loop whose second item fails on bad")].message
    assert ("good", "A failure that is ignored") not in fails  # ignored is not a failure
    assert ("good", "Fail inside the block") in fails  # rescued later, but Ansible reported it failed
    # the project's callbacks ran inside the ansible-runner run, with the same counts
    assert "TIMING (jincai_timer)" in res.output
    assert json.loads(drift.read_text())["stats"]["bad"]["failures"] == 1


def test_recap_from_stats_lists_every_processed_host():
    data = {"processed": {"a": 1, "b": 1}, "ok": {"a": 2}, "dark": {"b": 1}, "changed": {}, "failures": {},
            "skipped": {}, "rescued": {}, "ignored": {}}
    assert recap_from_stats(data) == {
        "a": {"ok": 2, "changed": 0, "unreachable": 0, "failed": 0, "skipped": 0, "rescued": 0, "ignored": 0},
        "b": {"ok": 0, "changed": 0, "unreachable": 1, "failed": 0, "skipped": 0, "rescued": 0, "ignored": 0}}


def _local_book(tmp_path, tasks):
    """A one-play playbook of ``tasks`` on localhost, and its inventory file (the project enables no
    host-list inventory plugin): returns ``(playbook, inventory)``."""
    (tmp_path / "hosts.yml").write_text(json.dumps({"all": {"hosts": {"localhost": {
        "ansible_connection": "local"}}}}))
    book = tmp_path / "book.yml"
    book.write_text(textwrap.dedent(f"""
        - name: Local
          hosts: localhost
          gather_facts: false
          vars:
            ansible_python_interpreter: {sys.executable}
          tasks:
        """) + textwrap.indent(textwrap.dedent(tasks), "    "))
    return str(book), str(tmp_path / "hosts.yml")


def test_echo_streams_ansibles_output_live(tmp_path, capfd):
    book, hosts = _local_book(tmp_path, """
        - name: Say hello
          ansible.builtin.debug:
            msg: hello from the run
        """)
    res = run(book, inventory=hosts, echo=True)
    out = capfd.readouterr().out
    assert "TASK [Say hello]" in out and "hello from the run" in out and "PLAY RECAP" in out
    assert res.recap["localhost"]["ok"] == 1


def test_a_stopped_run_ends_now_prints_nothing_and_leaves_no_secret_on_disk(tmp_path, capfd):
    book, hosts = _local_book(tmp_path, """
        - name: Mark started
          ansible.builtin.debug:
            msg: started
        - name: Sleep long
          ansible.builtin.command: sleep 60
        """)
    seen = []
    marker = "s3cret-" + os.urandom(4).hex()

    def on_event(event):
        if event.get("event") == "runner_on_start" and not seen:
            for base, _dirs, files in os.walk(pr.private_dir):
                for name in files:
                    with open(os.path.join(base, name), encoding="utf-8", errors="replace") as fh:
                        seen.append((name, marker in fh.read()))
            threading.Timer(1.0, pr.stop).start()

    pr = PlaybookRun(book, inventory=hosts, env={"JINCAI_TEST_SECRET": marker}, on_event=on_event)
    t0 = time.monotonic()
    res = pr.run()
    assert time.monotonic() - t0 < 30
    assert res.status == "canceled"
    assert seen and not any(found for _name, found in seen), seen
    assert not os.path.exists(pr.private_dir)
    assert "TASK [" not in capfd.readouterr().out  # not echoed: quiet is the default
    assert "TASK [Sleep long]" in res.output
    # nothing of the run survives it: no process carries its token any more (canceled runs once left
    # ansible-playbook processes asleep for good)
    time.sleep(1)
    assert reap(pr.token, sig=0) == [], "processes of the canceled run are still alive"


def test_ansible_playbook_dies_with_the_process_that_started_it(tmp_path):
    pidfile = tmp_path / "pid"
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import subprocess, sys, time
        p = subprocess.Popen([sys.executable, "-m", "jincai.run.child", "/bin/sleep", "60"])
        open({str(pidfile)!r}, "w").write(str(p.pid))
        time.sleep(60)
        """)])
    for _ in range(100):
        if pidfile.exists() and pidfile.read_text():
            break
        time.sleep(0.05)
    child = int(pidfile.read_text())
    for _ in range(600):  # until the child has armed the signal and exec'd sleep (seconds under load)
        with open(f"/proc/{child}/cmdline", "rb") as fh:
            if fh.read().startswith(b"/bin/sleep"):
                break
        time.sleep(0.05)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    for _ in range(100):
        try:
            os.kill(child, 0)
            with open(f"/proc/{child}/stat", encoding="ascii") as fh:
                if fh.read().split()[2] == "Z":
                    break
        except (ProcessLookupError, FileNotFoundError):
            break
        time.sleep(0.05)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the child outlived its parent")
