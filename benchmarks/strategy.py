"""Benchmark: stock Ansible (linear) against Mitogen (mitogen_linear) on the converged lab.

For each strategy, runs the same idempotent playbook against the same hosts and prints wall time, the
control node's CPU time (ansible-playbook and its children) and the CPU time the lab hosts spent
(sum over every container's cgroup ``cpu.stat``), plus the changed count (must be 0: the lab is
converged). Default: ``playbooks/baseline.yml --check`` on every machine-room server, the play that
dominates site runs, compliance drift runs and a county bootstrap.

    python benchmarks/strategy.py [--playbook playbooks/site.yml] [--limit site_220102] [--no-check]

Needs the provisioned lab (``make site``). Read-only with ``--check`` (the default).
"""

import argparse
import glob
import os
import resource
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from jincai.lab import lab  # noqa: E402
from jincai.run import run as run_playbook  # noqa: E402


def lab_cpu_seconds():
    """CPU seconds used so far by every lab container (usage_usec of their cgroup2 ``cpu.stat``;
    the lab gives each host its own cgroup, jincai/lab/lab.py make_cgroups)."""
    total = 0
    for mount in lab.cgroup_mounts():
        for stat in glob.glob(os.path.join(mount, lab.CGROUP_NAME, "*", "cpu.stat")):
            with open(stat, encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("usage_usec "):
                        total += int(line.split()[1])
    return total / 1e6


def run(strategy, args):
    """Run the playbook once with *strategy*; return a dict of figures."""
    extra = ["--limit", args.limit] if args.limit else []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    lab0, t0 = lab_cpu_seconds(), time.monotonic()
    res = run_playbook(args.playbook, inventory=os.path.join(ROOT, "inventories", "lab"), args=extra,
                       check=args.check, env={"ANSIBLE_STRATEGY": strategy})
    wall = time.monotonic() - t0
    lab = lab_cpu_seconds() - lab0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    recap = res.recap
    if res.rc:
        sys.stderr.write(res.output[-3000:])
        raise SystemExit(f"{strategy}: ansible-playbook exited {res.rc}")
    return {"wall": wall, "control_cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "lab_cpu": lab, "hosts": len(recap), "changed": sum(r.get("changed", 0) for r in recap.values())}


def main():
    """Run each strategy ``--rounds`` times (alternating) and print the best figures of each."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--playbook", default="playbooks/baseline.yml")
    ap.add_argument("--limit", default="")
    ap.add_argument("--no-check", dest="check", action="store_false", help="a real (converged) run")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    results = {"linear": [], "mitogen_linear": []}
    for _ in range(args.rounds):
        for strategy, runs in results.items():
            print(f"running {args.playbook}{' --check' if args.check else ''} with strategy {strategy} ...",
                  flush=True)
            runs.append(run(strategy, args))
    print(f"\n{'strategy':16} {'hosts':>5} {'changed':>7} {'wall s':>8} {'control CPU s':>14} {'lab CPU s':>10}")
    for strategy, runs in results.items():
        best = min(runs, key=lambda r: r["wall"])
        print(f"{strategy:16} {best['hosts']:5d} {best['changed']:7d} {best['wall']:8.1f} {best['control_cpu']:14.1f} "
              f"{best['lab_cpu']:10.1f}")
    speedup = min(r["wall"] for r in results["linear"]) / min(r["wall"] for r in results["mitogen_linear"])
    print(f"speed-up (wall): {speedup:.1f}x")


if __name__ == "__main__":
    main()
