"""jincai.executor.early_skip: a task whose conditional is false is skipped in the ansible-playbook
parent without a worker, and every callback sees exactly what a worker's result gives. Proven on real
(local) ansible-playbook runs with and without it, compared event by event."""

import json
import os
import subprocess
import sys
from types import SimpleNamespace

from jincai.executor import early_skip

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)

# Every kind of conditional a role uses, and the ones early_skip must leave to a worker.
PLAYBOOK = """
- name: Conditionals decided in the parent and in workers
  hosts: all
  gather_facts: false
  vars:
    tier: "{{ 'county' if inventory_hostname == 'h2' else 'city' }}"
    flag: false
  tasks:
    - name: Skip on a variable
      ansible.builtin.debug:
        msg: "county only"
      when: tier == 'county'
    - name: Skip on two conditions, the second false
      ansible.builtin.debug:
        msg: "both"
      when:
        - tier is defined
        - flag | bool
      register: two
    - name: Run on the skipped result
      ansible.builtin.debug:
        msg: "two was skipped: {{ two is skipped }} {{ two.false_condition | default('none') }}"
      when: two is skipped
    - name: Skip a secret task
      ansible.builtin.debug:
        msg: "secret {{ tier }}"
      when: flag
      no_log: true
    - name: Skip on a connection variable the worker adds from the play context
      ansible.builtin.debug:
        msg: "remote"
      when: ansible_host != inventory_hostname
    - name: Skip a block
      when: tier == 'city'
      block:
        - name: First task of the block
          ansible.builtin.debug:
            msg: "block 1"
        - name: Second task of the block, with its own condition
          ansible.builtin.debug:
            msg: "block 2"
          when: not flag
    - name: Skip items of a loop (a worker decides each item)
      ansible.builtin.debug:
        msg: "{{ item }}"
      loop: [1, 2, 3]
      when: item is odd
    - name: Fail on an undefined variable in a conditional (a worker reports it)
      ansible.builtin.debug:
        msg: "never"
      when: no_such_variable == 1
      ignore_errors: true
    - name: Skip once for all hosts
      ansible.builtin.debug:
        msg: "once"
      when: flag
      run_once: true
    - name: Notify a handler where a command ran
      ansible.builtin.command: "true"
      changed_when: tier == 'county'
      notify: Report the county
    - name: Skip a task delegated to localhost
      ansible.builtin.debug:
        msg: "delegated"
      delegate_to: localhost
      when: flag
  handlers:
    - name: Report the county
      ansible.builtin.debug:
        msg: "handler on {{ inventory_hostname }}"
      when: tier == 'county'
"""

# A callback that writes every runner event with its whole result (timestamps left out) and the stats.
DUMP_CALLBACK = '''
import json, os
from ansible.plugins.callback import CallbackBase

VOLATILE = {"start", "end", "delta"}


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "dump"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._out = open(os.environ["DUMP_TO"], "w")

    def _write(self, event, result):
        data = {k: v for k, v in result._result.items() if k not in VOLATILE}
        self._out.write(json.dumps([event, result._host.name, result._task.get_name(), data],
                                   sort_keys=True, default=str) + "\\n")

    def v2_runner_on_ok(self, result):
        self._write("ok", result)

    def v2_runner_on_skipped(self, result):
        self._write("skipped", result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._write(f"failed ignore={ignore_errors}", result)

    def v2_runner_item_on_ok(self, result):
        self._write("item ok", result)

    def v2_runner_item_on_skipped(self, result):
        self._write("item skipped", result)

    def v2_runner_on_start(self, host, task):
        self._out.write(json.dumps(["start", host.name, task.get_name()]) + "\\n")

    def v2_playbook_on_stats(self, stats):
        self._out.write(json.dumps(["stats", {h: stats.summarize(h) for h in sorted(stats.processed)}]) + "\\n")
        self._out.close()
'''


def _run(tmp_path, local_play, name, env):
    inv, book = local_play(PLAYBOOK)
    cb = tmp_path / "callbacks"
    cb.mkdir(exist_ok=True)
    (cb / "dump.py").write_text(DUMP_CALLBACK)
    dump = tmp_path / f"{name}.jsonl"
    res = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-vv", "-i", str(inv), str(book)],
                         capture_output=True, text=True, cwd=str(tmp_path), check=False, timeout=600,
                         env={**os.environ, **env, "ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg"),
                              "ANSIBLE_CALLBACK_PLUGINS": f"{ROOT}/plugins/callback:{cb}",
                              "ANSIBLE_CALLBACKS_ENABLED": "dump", "DUMP_TO": str(dump),
                              "ANSIBLE_LOCAL_TEMP": str(tmp_path / f"tmp-{name}")})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    events = [json.loads(line) for line in dump.read_text().splitlines()]
    return res.stdout, events


def _per_host(events):
    """Events grouped by host in their order (hosts run in parallel, so only each host's order is fixed)."""
    hosts = {}
    for event in events:
        if event[0] != "stats":
            hosts.setdefault(event[1], []).append(event)
    return hosts


def test_every_callback_sees_the_same_events_with_and_without_the_early_skip(tmp_path, local_play):
    out_on, on = _run(tmp_path, local_play, "on", {})
    out_off, off = _run(tmp_path, local_play, "off", {"JINCAI_EARLY_SKIP": "0"})
    assert _per_host(on) == _per_host(off)
    assert on[-1] == off[-1] and on[-1][0] == "stats"
    assert [on[-1][1][h]["skipped"] for h in ("h1", "h2", "h3")] == [6, 6, 5], on[-1]
    counts = [line for line in out_on.splitlines() if "jincai early skip:" in line]
    assert counts and int(counts[-1].split("jincai early skip: ")[1].split()[0]) == 13, counts
    assert "jincai early skip: 0 host-tasks" in out_off
    skipped = {(e[1], e[2]): e[3] for e in on if e[0] == "skipped"}
    # the worker's skip result, false_condition included; a no_log task's is censored
    assert {k: v for k, v in skipped[("h1", "Skip on two conditions, the second false")].items()
            if not k.startswith("_ansible")} == {
        "changed": False, "false_condition": "flag | bool", "skip_reason": "Conditional result was False"}
    assert skipped[("h1", "Skip a secret task")]["censored"].startswith("the output has been hidden")
    oks = {(e[1], e[2]): e[3] for e in on if e[0] == "ok"}
    assert oks[("h3", "Run on the skipped result")]["msg"] == "two was skipped: True flag | bool"
    assert ("h2", "Report the county") in oks and ("h1", "Report the county") not in oks
    failed = [e for e in on if e[0].startswith("failed")]
    assert [e[1] for e in failed] == ["h1", "h2", "h3"] and failed[0][0] == "failed ignore=True"


def _task(**attrs):
    base = {"when": ["x"], "loop_with": None, "loop": None, "delegate_to": None, "run_once": False,
            "action": "ansible.builtin.debug"}
    return SimpleNamespace(**{**base, **attrs})


def test_only_plain_conditional_tasks_are_eligible():
    assert early_skip.eligible(_task())
    assert not early_skip.eligible(_task(when=[]))
    assert not early_skip.eligible(_task(loop=[1]))
    assert not early_skip.eligible(_task(loop_with="items"))
    assert not early_skip.eligible(_task(delegate_to="localhost"))
    assert not early_skip.eligible(_task(run_once=True))
    for action in ("include_tasks", "ansible.builtin.import_tasks", "include_role", "ansible.builtin.meta"):
        assert not early_skip.eligible(_task(action=action)), action


def test_turned_off_by_the_environment(monkeypatch):
    monkeypatch.setenv("JINCAI_EARLY_SKIP", "0")
    assert early_skip.skip_result(None, _task(), {}, None, None) is None
    monkeypatch.setenv("JINCAI_EARLY_SKIP", "1")
    assert early_skip.enabled()
