"""Benchmark `jincai compliance` on the live lab: wall time of the whole run, of each Ansible run
(drift = site.yml --check --diff, collect = playbooks/compliance.yml), and the time each host spent in
its tasks. Prints a table; run with the lab up and provisioned (`jincai lab up`, site.yml applied).

    .venv/bin/python benchmarks/compliance.py [--skip-drift] [--limit SITE]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JINCAI = os.path.join(os.path.dirname(sys.executable), "jincai")


def main():
    """Run one compliance run into a temporary directory and print its timing."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--skip-drift", action="store_true")
    p.add_argument("--limit")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="jincai-bench-") as tmp:
        argv = [JINCAI, "compliance", "-q", "-o", os.path.join(tmp, "run")]
        if a.skip_drift:
            argv.append("--skip-drift")
        if a.limit:
            argv += ["--limit", a.limit]
        load0 = os.getloadavg()[0]
        t0 = time.monotonic()
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
        wall = time.monotonic() - t0
        path = os.path.join(tmp, "run", "report.json")
        if not os.path.exists(path):
            print(proc.stdout + proc.stderr, file=sys.stderr)
            return 2
        rep = json.load(open(path, encoding="utf-8"))
    timing = rep.get("timing") or {}
    runs = timing.get("runs") or {}
    per_host = timing.get("host_seconds") or {}
    s = rep["summary"]
    print(f"jincai compliance on the lab ({'checks only' if a.skip_drift else 'drift + checks'}"
          f"{', limit ' + a.limit if a.limit else ''}): exit {proc.returncode}, status {rep['status']}")
    print(f"  hosts {s['hosts']} in {s['sites']} sites; checks evaluated {s['checks']}; findings {s['findings']}")
    print(f"  wall time            {wall:7.1f} s")
    for key in ("drift", "collect"):
        if key in runs:
            print(f"  {key + ' run':<20} {runs[key]:7.1f} s")
    print(f"  load average at start {load0:.1f} (2 cores; other work on the machine inflates the figures)")
    print(f"  {'host':<14} {'collect s':>10} {'drift s':>10}   (sum of the host's task times in each run)")
    for host in sorted(per_host):
        t = per_host[host]
        print(f"  {host:<14} {t.get('collect', 0):10.2f} {t.get('drift', 0):10.2f}")
    if per_host:
        coll = [t.get("collect", 0) for t in per_host.values() if "collect" in t]
        if coll:
            print(f"  collect per host: mean {sum(coll) / len(coll):.2f} s, max {max(coll):.2f} s")
    return 0 if proc.returncode in (0, 1) else proc.returncode


if __name__ == "__main__":
    sys.exit(main())
