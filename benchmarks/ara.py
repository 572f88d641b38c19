"""Benchmark: what the ARA audit trail (plugins/callback/jincai_ara.py) costs a converged run.

Runs the same idempotent playbook through jincai.run without ``jincai_ara`` and with it in each
recording mode, the modes alternating within every round, ``--rounds`` times, and prints for each the
median wall time (with min-max), the control node's CPU time (ansible-playbook and its children) and
the cost in % against the run without ARA (goal: < 10 %), and checks that the store holds every
result of every recorded run. Modes (``--modes``):

* ``none``            ``ANSIBLE_CALLBACKS_ENABLED`` without jincai_ara;
* ``direct-offline``  ARA's own offline client (Django in ansible-playbook, sqlite), each result as it comes;
* ``direct-server``   ARA's HTTP client to an ARA server process on loopback (4 callback threads);
* ``journal-offline`` jincai's journal (the default), imported into the sqlite store after the run;
* ``journal-server``  the journal, imported into the ARA server on loopback after the run.

For the journal modes the import runs in its own process after ansible-playbook has exited; the
benchmark waits for it before the next run (not counted in the run's wall time) and prints how long
after the run's end the store held the run, and the importer's CPU. The store is a temporary one;
only loopback is contacted (local hosts; the server listens on 127.0.0.1).

    python benchmarks/ara.py                                    # 10 local hosts x 80 tasks, every mode
    python benchmarks/ara.py --rounds 5 --json figures.json     # ... and the raw figures as JSON
    python benchmarks/ara.py --playbook playbooks/site.yml -i inventories/lab --modes none,journal-offline

Default: 10 local hosts x 80 converged tasks (stat, file, copy, template, lineinfile, command with
changed_when: false), i.e. 800 results recorded per run; the first run converges them and is not counted.
"""

import argparse
import contextlib
import json
import os
import resource
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from jincai import audit  # noqa: E402
from jincai.run import run as run_playbook  # noqa: E402

from jincai.audit import journal  # noqa: E402

WITHOUT = "jincai_timer"
WITH = "jincai_timer,jincai_ara"
ALL_MODES = ("none", "direct-offline", "direct-server", "journal-offline", "journal-server")
LABELS = {"none": "without ARA", "direct-offline": "ARA offline client (sqlite), direct",
          "direct-server": "ARA server on loopback, direct, 4 threads", "journal-offline": "journal -> sqlite store",
          "journal-server": "journal -> ARA server on loopback"}


def small_project(base, hosts, tasks):
    """Write an idempotent playbook over ``hosts`` local hosts (``ansible_connection: local``) with
    ``tasks`` tasks; return (book, inventory)."""
    inv = os.path.join(base, "benchnet")
    os.makedirs(inv, exist_ok=True)
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    with open(os.path.join(inv, "hosts.yml"), "w", encoding="utf-8") as fh:
        json.dump({"all": {"children": {"site_220102": {"hosts": {f"220102-h{i}": local for i in range(hosts)}}}}}, fh)
    tpl = os.path.join(base, "motd.j2")
    with open(tpl, "w", encoding="utf-8") as fh:
        fh.write("{{ inventory_hostname }}: managed by jincai ({{ item_n }})\n")
    kinds = [
        '    - name: "Stat {n}"\n      ansible.builtin.stat:\n        path: "{d}/{{{{ inventory_hostname }}}}"\n'
        '      register: st{n}\n',
        '    - name: "Template {n}"\n      ansible.builtin.template:\n        src: "{tpl}"\n'
        '        dest: "{d}/{{{{ inventory_hostname }}}}/t{n}"\n        mode: "0644"\n      vars:\n        item_n: "{n}"\n',
        '    - name: "Directory {n}"\n      ansible.builtin.file:\n        path: "{d}/{{{{ inventory_hostname }}}}/d{n}"\n'
        '        state: directory\n        mode: "0755"\n',
        '    - name: "File {n}"\n      ansible.builtin.copy:\n        content: "value {n}\\n"\n'
        '        dest: "{d}/{{{{ inventory_hostname }}}}/f{n}"\n        mode: "0644"\n',
        '    - name: "Line {n}"\n      ansible.builtin.lineinfile:\n        path: "{d}/{{{{ inventory_hostname }}}}/lines"\n'
        '        line: "line {n}"\n        create: true\n        mode: "0644"\n',
        '    - name: "Probe {n}"\n      ansible.builtin.command: "true"\n      changed_when: false\n',
    ]
    data = os.path.join(base, "data")
    # the directory first (stat and template need it), then the kinds in turn
    body = "".join(kinds[2 if n == 0 else n % len(kinds)].format(n=n, d=data, tpl=tpl) for n in range(tasks))
    book = os.path.join(base, "bench.yml")
    with open(book, "w", encoding="utf-8") as fh:
        fh.write(f"- name: Converged\n  hosts: all\n  gather_facts: false\n  tasks:\n{body}")
    return book, inv


@contextlib.contextmanager
def ara_server(store):
    """An ARA API server (``ara-manage runserver``, its own process) on a free loopback port over
    ``store``; yields its URL."""
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
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def mode_env(mode, server=None):
    """The environment of one recording mode."""
    if mode == "none":
        return {"ANSIBLE_CALLBACKS_ENABLED": WITHOUT}
    recording, target = mode.split("-")
    env = {"ANSIBLE_CALLBACKS_ENABLED": WITH, "JINCAI_ARA_RECORDING": recording, "ARA_API_CLIENT": "offline"}
    if target == "server":
        env.update(ARA_API_CLIENT="http", ARA_API_SERVER=server, ARA_CALLBACK_THREADS="4")
    return env


def last_import_cpu(store):
    """The importer's CPU seconds of its last import (from journal/import.log), or None."""
    try:
        with open(os.path.join(store, journal.DIR_NAME, journal.LOG_NAME), encoding="utf-8") as fh:
            lines = [line for line in fh if "(CPU " in line]
    except OSError:
        return None
    return float(lines[-1].rsplit("(CPU ", 1)[1].split(" s)")[0]) if lines else None


def results_of_last_playbook(store):
    """(results, status) of the newest playbook in the sqlite store."""
    con = sqlite3.connect(os.path.join(store, audit.DB_FILE))
    try:
        pid, status = con.execute("SELECT id, status FROM playbooks ORDER BY id DESC LIMIT 1").fetchone()
        return con.execute("SELECT count(*) FROM results WHERE playbook_id = ?", (pid,)).fetchone()[0], status
    finally:
        con.close()


def once(book, inventory, env, store):
    """One run; returns a dict: wall and control CPU seconds, changed, hosts, results recorded,
    and for a journal mode the seconds from the run's end until the store held it and the importer's CPU."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    res = run_playbook(book, inventory=inventory, env={**env, "JINCAI_ARA_DIR": store})
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.rc:
        sys.stderr.write(res.output[-3000:])
        raise SystemExit(f"{book}: ansible-playbook exited {res.rc}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    row = {"wall": wall, "cpu": cpu, "changed": res.total("changed"), "hosts": sum(1 for _ in res.recap),
           "results": sum(sum(v for k, v in counts.items() if k in ("ok", "failed", "unreachable", "skipped"))
                          for counts in res.recap.values())}
    if env.get("JINCAI_ARA_RECORDING") == "journal":
        left = journal.drain(os.path.join(store, journal.DIR_NAME))
        row["import_after"] = time.monotonic() - t0 - wall
        row["import_cpu"] = last_import_cpu(store)
        if left:
            raise SystemExit(f"journal not imported: {left} (see {store}/journal/import.log)")
    if env.get("JINCAI_ARA_RECORDING"):
        row["recorded"], row["status"] = results_of_last_playbook(store)
    return row


def spread(values):
    return f"{statistics.median(values):6.2f} s ({min(values):.2f}-{max(values):.2f})"


def main():
    """Alternate the modes round after round; print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--playbook", help="an idempotent playbook (default: a generated one on local hosts)")
    ap.add_argument("-i", "--inventory", help="its inventory (with --playbook)")
    ap.add_argument("--hosts", type=int, default=10)
    ap.add_argument("--tasks", type=int, default=80)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--modes", default=",".join(ALL_MODES), help="comma-separated, of: " + ", ".join(ALL_MODES))
    ap.add_argument("--json", help="also write the raw figures to this file (rewritten after every round)")
    args = ap.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if "none" not in modes or any(m not in ALL_MODES for m in modes):
        ap.error(f"--modes: 'none' and any of {', '.join(ALL_MODES)}")
    with tempfile.TemporaryDirectory(prefix="jincai-bench-ara-") as base, contextlib.ExitStack() as stack:
        store = os.path.join(base, "ara")
        if args.playbook:
            book, inventory = args.playbook, args.inventory
        else:
            book, inventory = small_project(base, args.hosts, args.tasks)
        # converge, and create the store (migrations) before any server opens it
        once(book, inventory, mode_env("direct-offline"), store)
        server = stack.enter_context(ara_server(store)) if any(m.endswith("-server") for m in modes) else None
        envs = {m: mode_env(m, server) for m in modes}
        figures = {m: [] for m in modes}
        for r in range(args.rounds):
            order = modes[r % len(modes):] + modes[:r % len(modes)]  # a different mode first in each round
            for m in order:
                figures[m].append(once(book, inventory, envs[m], store))
                print(f"  round {r + 1} {m:<16} wall {figures[m][-1]['wall']:6.2f} s  "
                      f"cpu {figures[m][-1]['cpu']:6.2f} s  load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
            if args.json:
                with open(args.json, "w", encoding="utf-8") as fh:
                    json.dump({"book": book, "hosts": args.hosts, "tasks": args.tasks, "figures": figures}, fh, indent=1)
        first = figures["none"][0]
        print(f"{book}: {first['hosts']} hosts, {first['results']} results per run, {args.rounds} rounds "
              f"(N={args.rounds} per mode, alternating), changed={max(r['changed'] for v in figures.values() for r in v)}; "
              f"median (min-max); CPU: ansible-playbook and its children (not the ARA server, not the importer)")
        base_wall = statistics.median(r["wall"] for r in figures["none"])
        base_cpu = statistics.median(r["cpu"] for r in figures["none"])
        for m in modes:
            rows = figures[m]
            walls, cpus = [r["wall"] for r in rows], [r["cpu"] for r in rows]
            line = f"  {LABELS[m]:<42} wall {spread(walls)}  CPU {spread(cpus)}"
            if m != "none":
                line += (f"  cost: wall {100 * (statistics.median(walls) / base_wall - 1):+.1f} %, "
                         f"CPU {100 * (statistics.median(cpus) / base_cpu - 1):+.1f} %")
                line += f"; recorded {min(r['recorded'] for r in rows)}/{first['results']}"
            if m.startswith("journal"):
                after = [r["import_after"] for r in rows]
                icpu = [r["import_cpu"] for r in rows if r.get("import_cpu") is not None]
                line += f"; in the store {statistics.median(after):.1f} s after the run"
                if icpu:
                    line += f" (importer CPU {statistics.median(icpu):.1f} s)"
            print(line)


if __name__ == "__main__":
    main()
