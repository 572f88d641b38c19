"""Benchmark: time from a blank county to a verified site with ``jincai bootstrap`` (goal < 10 min, aim 3).

Needs the lab up (``jincai lab up``) and root. Copies the lab inventory to a temp dir, adds county
220104 there (``jincai site add``), attaches it blank (jincai/lab/blank.py), runs the bootstrap, then
runs it again with ``--full`` (must change nothing), prints per-step seconds, and removes the county.
"""

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time

from jincai import ROOT
from jincai.lab import blank
from jincai.lab import lab as labmod

CODE = "220104"
JINCAI = os.path.join(os.path.dirname(sys.executable), "jincai")
LAB_INVENTORY = os.path.join(ROOT, "inventories", "lab")


def main():
    """Run the benchmark; exit 0 when the site was verified under 10 minutes and the re-run changed nothing."""
    if not labmod.load_state().get("complete"):
        print("benchmark bootstrap: the lab is not up (jincai lab up)", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="jincai-bench-bootstrap-")
    inv, reports = os.path.join(tmp, "lab"), os.path.join(tmp, "reports")
    shutil.copytree(LAB_INVENTORY, inv)
    subprocess.run([JINCAI, "site", "add", CODE, "--write", "-i", inv], check=True, capture_output=True)
    password = "Bench-" + secrets.token_urlsafe(12)
    env = {**os.environ, "JINCAI_BOOTSTRAP_PASSWORD": password}
    argv = [JINCAI, "bootstrap", CODE, "-i", inv, "--accept-host-keys", "--reports-dir", reports]
    try:
        t0 = time.monotonic()
        blank.add(inv, CODE, password, log=lambda m: None)
        t_blank = time.monotonic() - t0
        t1 = time.monotonic()
        first = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        t_first = time.monotonic() - t1
        with open(os.path.join(reports, CODE, "state.json"), encoding="utf-8") as fh:
            steps = json.load(fh)["steps"]
        t2 = time.monotonic()
        second = subprocess.run(argv + ["--full"], env=env, capture_output=True, text=True, check=False)
        t_second = time.monotonic() - t2
        with open(os.path.join(reports, CODE, "state.json"), encoding="utf-8") as fh:
            steps2 = json.load(fh)["steps"]
    finally:
        blank.remove(CODE, restore_inventory=LAB_INVENTORY, log=lambda m: None)
    print(f"blank county attached (2 hosts booted):   {t_blank:6.1f} s")
    print(f"bootstrap, blank to verified:            {t_first:6.1f} s  rc={first.returncode}")
    for key, rec in steps.items():
        print(f"  {key:<15} {rec.get('status'):<8} {rec.get('seconds', 0):6.1f} s  changed={rec.get('changed', '-')}")
    changed2 = sum(r.get("changed") or 0 for r in steps2.values())
    print(f"second run (--full):                     {t_second:6.1f} s  rc={second.returncode} changed={changed2}")
    ok = first.returncode == 0 and second.returncode == 0 and changed2 == 0 and t_first < 600
    if first.returncode:
        print(first.stdout[-3000:])
    print("result: " + ("OK" if ok else "FAILED") + f" (goal < 600 s, aim 180 s; reports in {reports})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
