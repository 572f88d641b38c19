"""Benchmark fast against full drift (#14): `jincai compliance --drift fast` and `--drift full` on an
inventory (default: the lab), each run's wall time, control-node CPU (this process's children: the
jincai command, its ansible-playbook runs and their workers), hosts and findings; and the jincai_manifest
callback's cost per task result (a micro benchmark on synthetic results, no host contacted).

    .venv/bin/python benchmarks/drift.py [-i INVENTORY] [--limit L] [--only fast|full] [--callback-only]

The fast run needs manifests: a successful site.yml on the same checkout and inventory writes them.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JINCAI = os.path.join(os.path.dirname(sys.executable), "jincai")
sys.path.insert(0, ROOT)


def _children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(mode, inventory, limit):
    """One `jincai compliance --drift MODE`; returns a dict of figures."""
    with tempfile.TemporaryDirectory(prefix="jincai-drift-bench-") as tmp:
        argv = [JINCAI, "compliance", "-q", "-o", os.path.join(tmp, "run"), "--drift", mode]
        if inventory:
            argv += ["-i", inventory]
        if limit:
            argv += ["--limit", limit]
        cpu0, t0 = _children_cpu(), time.monotonic()
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
        wall, cpu = time.monotonic() - t0, _children_cpu() - cpu0
        path = os.path.join(tmp, "run", "report.json")
        if not os.path.exists(path):
            return {"mode": mode, "error": (proc.stdout + proc.stderr)[-2000:]}
        rep = json.load(open(path, encoding="utf-8"))
    s = rep["summary"]
    fast = rep.get("fast_drift") or {}
    return {"mode": mode, "exit": proc.returncode, "wall": wall, "cpu": cpu, "hosts": s["hosts"],
            "findings": s["findings"], "drift": s["drift"], "runs": (rep.get("timing") or {}).get("runs") or {},
            "compared": len(fast.get("hosts") or []), "fallback": fast.get("fallback") or {},
            "uncovered": fast.get("uncovered") or {}}


def callback_cost(n=20000):
    """µs per result of the jincai_manifest callback's v2_runner_on_ok (a mix like site.yml's: template,
    systemd, apt, command, assert), median of 5 rounds."""
    import importlib.util

    from ansible import context

    spec = importlib.util.spec_from_file_location("jincai_manifest_cb",
                                                  os.path.join(ROOT, "plugins", "callback", "jincai_manifest.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    context.CLIARGS = {"tags": ("all",), "skip_tags": (), "check": False}

    class Obj:
        def __init__(self, **kw):
            self.__dict__.update(kw)

        def get_name(self):
            return self.name

    def result(i, action, args):
        task = Obj(name=f"task {i}", action=action, no_log=False, vars={}, _role=Obj(name="base"))
        return Obj(_host=Obj(name=f"h{i % 150}"), _task=task, _result={"changed": False},
                   task_fields={"action": action, "args": args, "check_mode": None, "changed_when": []})

    kinds = [("ansible.builtin.template", {"dest": "/etc/jincai/a.conf", "mode": "0644", "owner": "root"}),
             ("ansible.builtin.systemd_service", {"name": "chrony", "state": "started", "enabled": True}),
             ("ansible.builtin.apt", {"name": ["chrony", "aide"], "state": "present"}),
             ("ansible.builtin.command", {"_raw_params": "true"}), ("ansible.builtin.assert", {"that": ["1"]})]
    results = [result(i, *kinds[i % len(kinds)]) for i in range(n)]
    rounds = []
    for _ in range(5):
        cb = mod.CallbackModule()
        cb.v2_playbook_on_start(None)
        t0 = time.perf_counter()
        for r in results:
            cb.v2_runner_on_ok(r)
        rounds.append((time.perf_counter() - t0) / n * 1e6)
        os.rmdir(cb._dir)
        os.environ.pop(mod.PATHS_ENV, None)
    return sorted(rounds)[2]


def main():
    """Print the figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-i", "--inventory")
    p.add_argument("--limit")
    p.add_argument("--only", choices=("fast", "full"))
    p.add_argument("--callback-only", action="store_true")
    a = p.parse_args()
    print(f"jincai_manifest callback: {callback_cost():.1f} µs per result (median of 5 x 20000 synthetic results)")
    if a.callback_only:
        return 0
    print(f"jincai compliance on {a.inventory or 'the lab'}{', limit ' + a.limit if a.limit else ''} "
          f"(load average {os.getloadavg()[0]:.1f} at start; 2 cores shared: other work inflates the figures)")
    print(f"  {'drift':<6} {'exit':>4} {'wall s':>8} {'cpu s':>8} {'hosts':>6} {'findings':>9} {'drift':>6} "
          f"{'compared':>9} {'fell back':>10}  runs")
    for mode in ([a.only] if a.only else ["fast", "full"]):
        r = run(mode, a.inventory, a.limit)
        if "error" in r:
            print(f"  {mode:<6} failed: {r['error']}")
            continue
        runs = ", ".join(f"{k} {v:.1f} s" for k, v in sorted(r["runs"].items()) if v is not None)
        print(f"  {mode:<6} {r['exit']:>4} {r['wall']:8.1f} {r['cpu']:8.1f} {r['hosts']:>6} {r['findings']:>9} "
              f"{r['drift']:>6} {r['compared']:>9} {len(r['fallback']):>10}  {runs}")
        for host, why in sorted(r["fallback"].items()):
            print(f"         fell back: {host}: {why}")
        if r["uncovered"]:
            print("         uncovered (only --drift full): " + ", ".join(
                f"{m} x{u['tasks']}" for m, u in sorted(r["uncovered"].items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
