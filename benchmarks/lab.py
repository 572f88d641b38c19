"""Lab figures: cold image build (optional), warm `up`, time to all-SSH-ready, memory per host.

    .venv/bin/python benchmarks/lab.py            # restarts the lab: down, then a warm up
    .venv/bin/python benchmarks/lab.py --cold     # also builds the image from scratch (minutes),
                                                  # into a temporary cache (the real one is kept)
    .venv/bin/python benchmarks/lab.py --no-restart   # only measure the running lab

Run as root. The warm measurement takes the lab down and brings it up fresh: whatever was
provisioned on it is gone afterwards.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from jincai.lab import image, lab  # noqa: E402

JINCAI = os.path.join(ROOT, ".venv", "bin", "jincai")


def timed(*args):
    """Run ``jincai lab ARGS``; return (seconds, stdout). Fails loudly on a non-zero exit."""
    start = time.monotonic()
    res = subprocess.run([JINCAI, "lab", *args], capture_output=True, text=True, check=False)
    took = time.monotonic() - start
    if res.returncode != 0:
        sys.exit(f"jincai lab {' '.join(args)} failed ({res.returncode}):\n{res.stdout}{res.stderr}")
    return took, res.stdout


def cold_build():
    """Build the image into a throwaway cache dir; return seconds."""
    with tempfile.TemporaryDirectory(prefix="jincai-bench-", dir="/var/cache") as cache:
        start = time.monotonic()
        path = image.ensure(cache_dir=cache, log=lambda m: None)
        took = time.monotonic() - start
        size = subprocess.run(["du", "-sm", path], capture_output=True, text=True, check=True).stdout.split()[0]
        image.remove_tree(path)
    return took, int(size)


def memory():
    """Return {host: PSS MiB} for the running lab."""
    state = lab.load_state()
    return {name: lab.host_memory_kib(rec) / 1024 for name, rec in sorted(state["hosts"].items())}


def main():
    """Print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cold", action="store_true", help="also time a from-scratch image build")
    ap.add_argument("--no-restart", action="store_true", help="do not take the lab down and up")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("benchmarks/lab.py: run as root")
    print(f"lab benchmark on {os.cpu_count()} CPUs, image {os.path.basename(image.image_path())}")
    if args.cold:
        took, size = cold_build()
        print(f"cold image build (debootstrap + {len(image.packages())} packages): {took:.0f} s, {size} MB")
    if not args.no_restart:
        down, _ = timed("down")
        print(f"lab down: {down:.1f} s")
        up, out = timed("up")
        ready = re.search(r"all SSH-ready in ([\d.]+) s", out)
        started = re.search(r"containers: (\d+) started in ([\d.]+) s", out)
        print(f"warm lab up (cached image, {started.group(1)} hosts): {up:.1f} s wall")
        print(f"  network + roots + container start: {started.group(2)} s; all SSH-ready after "
              f"{ready.group(1)} s")
    noop, out = timed("up")
    assert "nothing changed" in out
    print(f"lab up again (no-op, checks SSH on every host): {noop:.1f} s")
    time.sleep(5)  # let boot-time jobs settle before measuring memory
    mem = memory()
    state = lab.load_state()["hosts"]
    for kind, names in (("router", [h for h in mem if state[h]["router"]]),
                        ("other host", [h for h in mem if not state[h]["router"]])):
        vals = [mem[h] for h in names]
        if vals:
            print(f"memory per {kind} (PSS, {len(vals)} hosts): min {min(vals):.1f} MiB, "
                  f"median {statistics.median(vals):.1f} MiB, max {max(vals):.1f} MiB")
    print(f"memory, whole lab: {sum(mem.values()):.0f} MiB PSS for {len(mem)} hosts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
