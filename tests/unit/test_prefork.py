"""jincai.executor.prefork and the strategy plugin: what the ansible-playbook parent prepares before it
forks workers, proven on a real (local) ansible-playbook run with and without it."""

import gc
import os
import subprocess
import sys

from jincai.executor import prefork

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)

PLAYBOOK = """
- name: Render templates in forked workers
  hosts: all
  gather_facts: false
  vars:
    greeting: "{{ 'hello' | upper }} {{ inventory_hostname | regex_replace('^h', 'host-') }}"
    numbers: "{{ range(1, 6) | map('int') | list }}"
  tasks:
    - name: Compute a fact from filters and tests
      ansible.builtin.set_fact:
        summary: "{{ greeting }}: {{ numbers | select('odd') | sum }} {{ numbers is sequence }}"
    - name: Render a file with a loop, a condition and a filter
      ansible.builtin.copy:
        content: |
          {% for n in numbers if n is even %}{{ n | string | to_json }};{% endfor %}{{ summary | b64encode }}
        dest: "{{ out }}/{{ inventory_hostname }}.txt"
        mode: "0644"
      when: numbers | length > 2
    - name: Show the fact
      ansible.builtin.debug:
        msg: "{{ summary }}"
"""


def test_warm_plugins_loads_every_filter_and_test_before_a_fork():
    from ansible.plugins.loader import filter_loader, init_plugin_loader
    init_plugin_loader()
    counts = prefork.warm_plugins()
    assert counts["filter"] > 100 and counts["test"] > 50, counts
    assert "ansible.builtin.to_json" in filter_loader._cached_non_collection_wrappers


def test_a_forked_child_freezes_what_it_inherited_and_the_parent_does_not():
    if not prefork._STATE["at_fork"]:
        os.register_at_fork(after_in_child=prefork._freeze_inherited)
        prefork._STATE["at_fork"] = True
    assert gc.get_freeze_count() == 0
    pid = os.fork()
    if pid == 0:
        os._exit(0 if gc.get_freeze_count() > 1000 else 3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert gc.get_freeze_count() == 0


def _run(tmp_path, local_play, name, env):
    inv, book = local_play(PLAYBOOK)
    out = tmp_path / name
    out.mkdir()
    res = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-vv", "-i", str(inv), str(book), "-e", f"out={out}"],
                         capture_output=True, text=True, cwd=str(tmp_path), check=False, timeout=600,
                         env={**os.environ, **env, "ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg"),
                              "ANSIBLE_CALLBACKS_ENABLED": "jincai_timer", "ANSIBLE_LOCAL_TEMP": str(tmp_path / f"tmp-{name}")})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    files = {p.name: p.read_text() for p in sorted(out.iterdir())}
    msgs = sorted(line.strip() for line in res.stdout.splitlines() if '"msg":' in line)
    return res.stdout, files, msgs


def test_a_real_run_gives_the_same_with_and_without_the_preparation(tmp_path, local_play):
    out_on, files_on, msgs_on = _run(tmp_path, local_play, "on", {})
    out_off, files_off, msgs_off = _run(tmp_path, local_play, "off", {"JINCAI_PREFORK": "0"})
    assert files_on == files_off and len(files_on) == 3
    assert files_on["h2.txt"] == '"2";"4";' + __import__("base64").b64encode(b"HELLO host-2: 9 True").decode() + "\n"
    assert msgs_on == msgs_off and len(msgs_on) == 3
    assert "jincai prefork: {'jinja_cache': True" in out_on
    shared = [line for line in out_on.splitlines() if "compiled templates shared by the workers" in line]
    assert shared and int(shared[0].split("jincai prefork: ")[1].split()[0]) > 5, shared
    assert "jincai prefork" not in out_off
    # the run's cache directory went with Ansible's local temporary directory
    assert not list((tmp_path / "tmp-on").glob("**/jincai-jinja"))
