"""Benchmark: `jincai converge` against a plain `site.yml` on a converged network (#14).

Runs, alternately for ``--rounds``, ``jincai converge`` (site.yml only where the manifest digest
changed or a fresh read differs) and ``ansible-playbook playbooks/site.yml`` on the same inventory
and limit, and prints for each: wall time, control-node CPU (this process's children: the command,
its ansible-playbook runs and their workers), the lab's CPU (every container's cgroup), how many
hosts converge left as they were and how many it ran site.yml on; the plain run's changed count
(must be 0: converged). ``--only converge`` skips the plain run (e.g. on the province twin, where it
takes ~25 minutes).

    .venv/bin/python benchmarks/converge.py [-i INVENTORY] [--limit L] [--rounds 1] [--only converge|site]

Needs a provisioned network whose last site.yml ran with this checkout (it wrote the manifests).
The runs record no ARA audit trail (as benchmarks/strategy.py).
"""

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JINCAI = os.path.join(os.path.dirname(sys.executable), "jincai")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
from strategy import lab_cpu_seconds, no_ara_env  # noqa: E402

from jincai.run import run as run_playbook  # noqa: E402


def _children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_converge(inventory, limit="", env=None, waves=False):
    """One `jincai converge -q` (``--waves`` with ``waves``); returns its figures (also
    benchmarks/province.py's converge phase)."""
    argv = [JINCAI, "converge", "-q", "-i", inventory] + (["--limit", limit] if limit else []) + \
        (["--waves"] if waves else [])
    c0, l0, t0 = _children_cpu(), lab_cpu_seconds(), time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})},
                          check=False)
    wall = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    if proc.returncode:
        sys.stderr.write(out[-3000:])
        raise SystemExit(f"jincai converge on {inventory} exited {proc.returncode}")
    m = re.search(r"(\d+) hosts; (\d+) converged .*?, (\d+) to run site.yml on \(plan ([\d.]+) s, read ([\d.]+) s\)", out)
    changed = re.search(r"changed=(\d+)", out)
    return {"wall": round(wall, 1), "control_cpu": _children_cpu() - c0, "lab_cpu": lab_cpu_seconds() - l0,
            "hosts": int(m.group(1)), "left": int(m.group(2)), "ran": int(m.group(3)),
            "plan_s": float(m.group(4)), "read_s": float(m.group(5)),
            "changed": int(changed.group(1)) if changed else 0}


def run_site(inventory, limit, env):
    """One plain site.yml; returns its figures."""
    c0, l0, t0 = _children_cpu(), lab_cpu_seconds(), time.monotonic()
    res = run_playbook("playbooks/site.yml", inventory=inventory, args=["--limit", limit] if limit else [], env=env)
    wall = time.monotonic() - t0
    if res.rc:
        sys.stderr.write(res.output[-3000:])
        raise SystemExit(f"site.yml exited {res.rc}")
    return {"wall": wall, "control_cpu": _children_cpu() - c0, "lab_cpu": lab_cpu_seconds() - l0,
            "hosts": len(res.recap), "left": 0, "ran": len(res.recap), "changed": res.total("changed")}


def main():
    """Run both ways ``--rounds`` times and print the medians."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-i", "--inventory", default=os.path.join(ROOT, "inventories", "lab"))
    ap.add_argument("--limit", default="")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--only", choices=("converge", "site"), default="")
    args = ap.parse_args()
    env = no_ara_env()
    ways = [w for w in ("site", "converge") if not args.only or w == args.only]
    results = {w: [] for w in ways}
    for n in range(args.rounds):
        for way in ways:
            print(f"round {n + 1}: {way} ...", flush=True)
            r = (run_converge if way == "converge" else run_site)(args.inventory, args.limit, env)
            results[way].append(r)
            print(f"  {r['wall']:.1f} s wall, {r['control_cpu']:.1f} s control CPU, {r['lab_cpu']:.1f} s lab CPU, "
                  f"{r['hosts']} hosts: {r['left']} left as they were, site.yml on {r['ran']}, changed={r['changed']}",
                  flush=True)
    print(f"\n{'way':<10} {'hosts':>5} {'left':>5} {'ran':>4} {'wall s':>7} {'control CPU s':>14} {'lab CPU s':>10}")
    for way, rs in results.items():
        med = {k: statistics.median(r[k] for r in rs) for k in ("wall", "control_cpu", "lab_cpu")}
        print(f"{way:<10} {rs[0]['hosts']:>5} {rs[0]['left']:>5} {rs[0]['ran']:>4} {med['wall']:>7.1f} "
              f"{med['control_cpu']:>14.1f} {med['lab_cpu']:>10.1f}")


if __name__ == "__main__":
    main()
