"""Benchmark: what the ARA audit trail (plugins/callback/jincai_ara.py) costs a converged run.

Runs the same idempotent playbook through jincai.run with and without ``jincai_ara`` in
``ANSIBLE_CALLBACKS_ENABLED``, alternating, ``--rounds`` times each, and prints the median and best
wall time and the control node's CPU time (ansible-playbook and its children) of each, and the
cost of recording in % (goal: < 10 % on an idempotent site.yml). The store is a temporary one.

    python benchmarks/ara.py                    # a generated small playbook on local hosts (no lab)
    python benchmarks/ara.py --playbook playbooks/site.yml -i inventories/lab   # the lab figure

Default: 10 local hosts x 20 converged tasks (file, copy, lineinfile, command with changed_when:
false), i.e. 200 results recorded per run; the first run converges them and is not counted.
"""

import argparse
import contextlib
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from jincai import audit  # noqa: E402
from jincai.run import run as run_playbook  # noqa: E402

WITHOUT = "jincai_timer"
WITH = "jincai_timer,jincai_ara"
MODES = {"without ARA": {"ANSIBLE_CALLBACKS_ENABLED": WITHOUT},
         "ARA offline (sqlite)": {"ANSIBLE_CALLBACKS_ENABLED": WITH}}


def small_project(base, hosts, tasks):
    """Write an idempotent playbook over ``hosts`` local hosts with ``tasks`` tasks; return (book, inventory)."""
    inv = os.path.join(base, "benchnet")
    os.makedirs(inv, exist_ok=True)
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    with open(os.path.join(inv, "hosts.yml"), "w", encoding="utf-8") as fh:
        json.dump({"all": {"children": {"site_220102": {"hosts": {f"220102-h{i}": local for i in range(hosts)}}}}}, fh)
    kinds = [
        '    - name: "Directory {n}"\n      ansible.builtin.file:\n        path: "{d}/{{{{ inventory_hostname }}}}/d{n}"\n'
        '        state: directory\n        mode: "0755"\n',
        '    - name: "File {n}"\n      ansible.builtin.copy:\n        content: "value {n}\\n"\n'
        '        dest: "{d}/{{{{ inventory_hostname }}}}/f{n}"\n        mode: "0644"\n',
        '    - name: "Line {n}"\n      ansible.builtin.lineinfile:\n        path: "{d}/{{{{ inventory_hostname }}}}/lines"\n'
        '        line: "line {n}"\n        create: true\n        mode: "0644"\n',
        '    - name: "Probe {n}"\n      ansible.builtin.command: "true"\n      changed_when: false\n',
    ]
    data = os.path.join(base, "data")
    body = "".join(kinds[n % len(kinds)].format(n=n, d=data) for n in range(tasks))
    book = os.path.join(base, "bench.yml")
    with open(book, "w", encoding="utf-8") as fh:
        fh.write(f"- name: Converged\n  hosts: all\n  gather_facts: false\n  tasks:\n{body}")
    return book, inv


@contextlib.contextmanager
def ara_server(store):
    """An ARA API server (``ara-manage runserver``, its own process) on a free loopback port over
    ``store``; yields the environment that sends the callback's records there (4 callback threads)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, **audit.offline_env("bench")}
    env.update(ARA_BASE_DIR=store, ARA_DATABASE_NAME=os.path.join(store, audit.DB_FILE))
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "ara-manage"), "runserver", "--noreload",
                             f"127.0.0.1:{port}"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.1)
        yield {"ANSIBLE_CALLBACKS_ENABLED": WITH, "ARA_API_CLIENT": "http",
               "ARA_API_SERVER": f"http://127.0.0.1:{port}", "ARA_CALLBACK_THREADS": "4"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def once(book, inventory, mode_env, store):
    """One run; returns (wall seconds, control CPU seconds of jincai's children, changed, hosts)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    res = run_playbook(book, inventory=inventory, env={**mode_env, "JINCAI_ARA_DIR": store})
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.rc:
        sys.stderr.write(res.output[-3000:])
        raise SystemExit(f"{book}: ansible-playbook exited {res.rc}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, res.total("changed"), sum(1 for _ in res.recap)


def main():
    """Alternate runs with and without ARA; print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--playbook", help="an idempotent playbook (default: a generated one on local hosts)")
    ap.add_argument("-i", "--inventory", help="its inventory (with --playbook)")
    ap.add_argument("--hosts", type=int, default=10)
    ap.add_argument("--tasks", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--server", action="store_true",
                    help="also record to an ARA server process on loopback (ara-manage runserver, callback threads)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="jincai-bench-ara-") as base, contextlib.ExitStack() as stack:
        store = os.path.join(base, "ara")
        if args.playbook:
            book, inventory = args.playbook, args.inventory
        else:
            book, inventory = small_project(base, args.hosts, args.tasks)
        modes = dict(MODES)
        once(book, inventory, modes["ARA offline (sqlite)"], store)  # converge; create the store (migrations)
        if args.server:
            modes["ARA server (http)"] = stack.enter_context(ara_server(store))
        figures = {name: [] for name in modes}
        for _ in range(args.rounds):
            for name, runs in figures.items():
                runs.append(once(book, inventory, modes[name], store))
        print(f"{book}: {figures['without ARA'][0][3]} hosts, {args.rounds} rounds each, "
              f"changed={max(r[2] for runs in figures.values() for r in runs)}; CPU: ansible-playbook and its "
              "children (not the ARA server process)")
        med = {}
        for name, runs in figures.items():
            walls, cpus = [r[0] for r in runs], [r[1] for r in runs]
            med[name] = (statistics.median(walls), statistics.median(cpus))
            cost = "" if name == "without ARA" else (
                f"  cost: wall {100 * (med[name][0] / med['without ARA'][0] - 1):+.1f} %, "
                f"CPU {100 * (med[name][1] / med['without ARA'][1] - 1):+.1f} %")
            print(f"  {name:<21} wall median {med[name][0]:6.2f} s (best {min(walls):6.2f} s), "
                  f"control CPU median {med[name][1]:6.2f} s{cost}")


if __name__ == "__main__":
    main()
