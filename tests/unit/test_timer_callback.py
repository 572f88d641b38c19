"""The jincai_timer callback (plugins/callback/jincai_timer.py) through a real local ansible-playbook run."""

import os
import subprocess
import sys

from jincai import ROOT

BIN = os.path.dirname(sys.executable)
HOSTS = """
all:
  hosts:
    localhost:
      ansible_connection: local
      ansible_python_interpreter: "{{ ansible_playbook_python }}"
"""
PLAY = """
- name: Time two tasks
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Sleep a little
      ansible.builtin.command: sleep 1.5
      changed_when: false
    - name: Return at once
      ansible.builtin.debug:
        msg: quick
"""


def run(tmp_path, **env):
    book = tmp_path / "play.yml"
    book.write_text(PLAY)
    (tmp_path / "hosts.yml").write_text(HOSTS)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), PATH=f"{BIN}:{os.environ['PATH']}",
               **env)
    return subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"), str(book)],
                          cwd=ROOT, env=env, capture_output=True, text=True, check=False)


def test_plays_are_timed_and_slowest_tasks_listed_on_request(tmp_path):
    res = run(tmp_path, JINCAI_TIMER_TASKS="2")
    assert res.returncode == 0, res.stderr
    out = res.stdout.split("TIMING (jincai_timer)")[1]
    assert "Time two tasks" in out and " total" in out
    slowest = out.split("SLOWEST TASKS (JINCAI_TIMER_TASKS=2)")[1].strip().splitlines()[1:]
    assert slowest[0].endswith("Sleep a little") and float(slowest[0].split()[0]) >= 1.5
    assert slowest[1].endswith("Return at once") and float(slowest[1].split()[0]) < 1.5


def test_task_list_is_off_by_default(tmp_path):
    res = run(tmp_path)
    assert res.returncode == 0, res.stderr
    assert "TIMING (jincai_timer)" in res.stdout and "SLOWEST TASKS" not in res.stdout
