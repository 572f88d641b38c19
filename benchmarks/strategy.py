"""Benchmark: stock Ansible (linear) against Mitogen (mitogen_linear) on the converged lab.

For each strategy, runs the same idempotent playbook against the same hosts and prints wall time, the
control node's CPU time (ansible-playbook and its children) and the CPU time the lab hosts spent
(sum over every container's cgroup ``cpu.stat``), plus the changed count (must be 0: the lab is
converged). Default: ``playbooks/baseline.yml --check`` on every machine-room server, the play that
dominates site runs, compliance drift runs and a county bootstrap.

    python benchmarks/strategy.py [--playbook playbooks/site.yml] [--limit site_220102] [--no-check]
                                  [--rounds 3] [--variants linear,mitogen_linear,mitogen_linear-noprefork]

A variant is a strategy name, optionally with ``-noprefork`` (the same strategy with jincai's pre-fork
preparation turned off, ``JINCAI_PREFORK=0``: plugins/strategy/mitogen_linear.py, docs/speed.md) or
``-nocache`` (only the compiled-template cache off, ``JINCAI_JINJA_CACHE=0``), and optionally
``+NAME=VALUE`` settings of the environment (``mitogen_linear+ANSIBLE_INJECT_FACT_VARS=True``).

The runs record no ARA audit trail (as the lab suite, Makefile): the journal's importer would run in
the background into the next round. ``--ara`` keeps ansible.cfg's callbacks.

Needs the provisioned lab (``make site``). Read-only with ``--check`` (the default).
"""

import argparse
import glob
import os
import resource
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from jincai.lab import lab  # noqa: E402
from jincai.run import run as run_playbook  # noqa: E402
from jincai.run.env import config_values  # noqa: E402


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


def no_ara_env():
    """ansible.cfg's callbacks without the ARA audit trail (what the Makefile's lab suite runs with)."""
    names = config_values("CALLBACKS_ENABLED")["CALLBACKS_ENABLED"] or []
    return {"ANSIBLE_CALLBACKS_ENABLED": ",".join(n for n in names if n != "jincai_ara")}


VARIANT_ENV = {"noprefork": {"JINCAI_PREFORK": "0"}, "nocache": {"JINCAI_JINJA_CACHE": "0"}}


def variant_env(variant):
    """The environment of a variant name (``strategy[-noprefork|-nocache][+NAME=VALUE...]``)."""
    name, *settings = variant.split("+")
    strategy, _, flavour = name.partition("-")
    if flavour and flavour not in VARIANT_ENV:
        raise SystemExit(f"unknown variant {variant!r}: a strategy name, optionally -{'/-'.join(VARIANT_ENV)}")
    env = {"ANSIBLE_STRATEGY": strategy, **VARIANT_ENV.get(flavour, {})}
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or not key:
            raise SystemExit(f"variant {variant!r}: {setting!r} is not NAME=VALUE")
        env[key] = value
    return env


def run(variant, args):
    """Run the playbook once as *variant*; return a dict of figures."""
    extra = ["--limit", args.limit] if args.limit else []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    lab0, t0 = lab_cpu_seconds(), time.monotonic()
    res = run_playbook(args.playbook, inventory=os.path.join(ROOT, "inventories", "lab"), args=extra,
                       check=args.check, env=variant_env(variant) if args.ara else {**no_ara_env(), **variant_env(variant)})
    wall = time.monotonic() - t0
    lab = lab_cpu_seconds() - lab0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    recap = res.recap
    if res.rc:
        sys.stderr.write(res.output[-3000:])
        raise SystemExit(f"{variant}: ansible-playbook exited {res.rc}")
    return {"wall": wall, "control_cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "lab_cpu": lab, "hosts": len(recap), "changed": sum(r.get("changed", 0) for r in recap.values())}


def main():
    """Run each variant ``--rounds`` times (alternating) and print the median and best figures of each."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--playbook", default="playbooks/baseline.yml")
    ap.add_argument("--limit", default="")
    ap.add_argument("--no-check", dest="check", action="store_false", help="a real (converged) run")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--ara", action="store_true", help="keep ansible.cfg's callbacks (the ARA audit trail)")
    ap.add_argument("--variants", default="linear,mitogen_linear",
                    help="comma-separated, run in this order each round (default: linear,mitogen_linear)")
    args = ap.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        variant_env(v)
    results = {v: [] for v in variants}
    for n in range(args.rounds):
        for variant, runs in results.items():
            print(f"round {n + 1}: {args.playbook}{' --check' if args.check else ''} as {variant} ...", flush=True)
            runs.append(run(variant, args))
            r = runs[-1]
            print(f"  {r['wall']:.1f} s wall, {r['control_cpu']:.1f} s control CPU, {r['lab_cpu']:.1f} s lab CPU, "
                  f"changed={r['changed']}", flush=True)
    print(f"\n{'variant':26} {'hosts':>5} {'changed':>7} {'wall s (median, best)':>22} "
          f"{'control CPU s':>14} {'lab CPU s':>10}")
    for variant, runs in results.items():
        med = statistics.median
        walls = [r["wall"] for r in runs]
        print(f"{variant:26} {runs[0]['hosts']:5d} {max(r['changed'] for r in runs):7d} "
              f"{med(walls):13.1f} {min(walls):8.1f} {med(r['control_cpu'] for r in runs):14.1f} "
              f"{med(r['lab_cpu'] for r in runs):10.1f}")
    if "linear" in results and "mitogen_linear" in results:
        speedup = statistics.median(r["wall"] for r in results["linear"]) / statistics.median(
            r["wall"] for r in results["mitogen_linear"])
        print(f"speed-up of mitogen_linear over stock linear (median wall): {speedup:.1f}x")


if __name__ == "__main__":
    main()
