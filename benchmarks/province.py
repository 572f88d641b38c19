"""Benchmark: the province twin against the small lab, measured in one run on this machine.

For each network (default: the twin of inventories/jilin, then the small lab), in this order:

1. boot: ``jincai lab down`` then ``jincai lab up`` (wall time until every host answers SSH);
2. memory: PSS per host kind (routers, app servers, VPN concentrators, services, clients) and the
   whole lab, fresh and again after provisioning (``jincai.lab.lab.host_memory_kib``);
3. first provisioning: ``site.yml`` on the fresh lab, per play (the jincai_timer table); on the twin
   wave by wave (province, then each city with its counties: jincai.lab.twin.waves says why);
4. idempotent re-run of ``site.yml`` (changed must be 0);
4b. ``jincai converge`` on the converged network (site.yml only where intent changed or a host
   drifted: the hosts it read and left, those it ran site.yml on, changed must be 0);
5. ``routers.yml`` on the converged routers (changed must be 0);
6. ``jincai compliance`` with drift (site.yml --check --diff + collection), after one hand-made drift
   (a changed managed file on one app server), which it must report.

The load on this 2-core machine varies, so compare the ratios twin/small lab of the same run, not
absolute times across runs. Prints a table at the end (and JSON with ``--json FILE``).

    .venv/bin/python benchmarks/province.py [--networks twin,lab] [--skip PHASE,...] [--json FILE]

Destroys and rebuilds the lab (it is a benchmark, not a test). Needs root. Takes about an hour.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from jincai.lab import lab, twin  # noqa: E402
from jincai.run import run as run_playbook  # noqa: E402
from jincai.source import inventory as invmod  # noqa: E402

JINCAI = os.path.join(os.path.dirname(sys.executable), "jincai")
PHASES = ("boot", "first", "rerun", "converge", "routers", "compliance")
KINDS = (("router", "routers"), ("app_server", "app servers"), ("vpn_concentrator", "VPN concentrators"),
         ("services", "services"), ("budget_unit_client", "budget-unit clients"))
TIMING_RE = re.compile(r"^\s*(\d+\.\d) s  (.+)$")


def say(msg):
    print(f"== province bench: {msg}", flush=True)


def inventory_dir(network):
    """The inventory of a network name (``twin`` = the twin of inventories/jilin)."""
    if network == "twin":
        prod = os.path.join(ROOT, "inventories", "jilin")
        out = twin.default_out_dir(prod)
        twin.translate(prod, out)
        return out
    return os.path.join(ROOT, "inventories", network)


def memory(inv):
    """{kind: (hosts, MiB)} and the total, from the running lab's containers."""
    hv = inv["_meta"]["hostvars"]
    hosts = lab.load_state().get("hosts") or {}
    out, total = {}, 0.0
    for name, rec in hosts.items():
        mib = lab.host_memory_kib(rec) / 1024
        total += mib
        fn = (hv.get(name) or {}).get("jincai_functions") or ["?"]
        kind = next((label for key, label in KINDS if key in fn), "other")
        n, m = out.get(kind, (0, 0.0))
        out[kind] = (n + 1, m + mib)
    return out, total


def play_times(output):
    """[(seconds, play)] from the jincai_timer tables of a run's output, summed per play over the
    tables (a run in waves prints one table per wave), in the order plays first appear."""
    totals = {}
    for table in output.split("TIMING (jincai_timer)")[1:]:
        for line in table.splitlines()[1:]:
            m = TIMING_RE.match(line)
            if not m:
                break
            totals[m.group(2)] = totals.get(m.group(2), 0.0) + float(m.group(1))
    return [(round(sec, 1), play) for play, sec in totals.items()]


def timed_playbook(playbook, inv_dir, waves=False, **kw):
    """Run a playbook (site.yml on the twin: wave by wave, as `make province` does) and time it."""
    t0 = time.monotonic()
    if waves:
        from jincai.site_run import provision_in_waves

        res = provision_in_waves(inv_dir, echo=False, **kw)
    else:
        res = run_playbook(playbook, inventory=inv_dir, **kw)
    wall = time.monotonic() - t0
    if res.rc != 0:
        sys.stderr.write(res.output[-4000:])
        raise SystemExit(f"{playbook} on {inv_dir} exited {res.rc}")
    return {"wall": round(wall, 1), "changed": res.total("changed"), "hosts": len(res.recap),
            "plays": play_times(res.output)}


def compliance_with_drift(inv_dir, inv, waves=False):
    """One hand-made drift on an app server, then `jincai compliance` (drift + checks; on the twin
    ``--waves``, which bounds the memory its runs hold on the twin's targets)."""
    app = sorted(inv["app_servers"]["hosts"])[0]
    lab.run_on(app, "echo '# drift made by benchmarks/province.py' >> /etc/chrony/chrony.conf", check=True)
    with tempfile.TemporaryDirectory(prefix="jincai-bench-") as tmp:
        argv = [JINCAI, "compliance", "-q", "-i", inv_dir, "-o", os.path.join(tmp, "run"),
                "--history", os.path.join(tmp, "history.json")] + (["--waves"] if waves else [])
        t0 = time.monotonic()
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
        wall = time.monotonic() - t0
        with open(os.path.join(tmp, "run", "report.json"), encoding="utf-8") as fh:
            rep = json.load(fh)
    drifted = sorted(h for h, d in (rep.get("hosts") or {}).items() if d.get("is_drifted"))
    runs = (rep.get("timing") or {}).get("runs") or {}
    # put the file back (site.yml would; a quick restore keeps the lab converged)
    run_playbook("playbooks/site.yml", inventory=inv_dir, args=["--limit", app])
    return {"wall": round(wall, 1), "exit": proc.returncode, "hosts": rep["summary"]["hosts"],
            "drift_run": runs.get("drift"), "collect_run": runs.get("collect"),
            "drift_reported_on": drifted, "drift_expected_on": app}


def converge(inv_dir, waves=False):
    """`jincai converge` on the converged network (on the twin ``--waves``): benchmarks/converge.py's
    figures (wall time, hosts read and left, hosts run, changed)."""
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    from converge import run_converge  # pylint: disable=import-outside-toplevel

    return run_converge(inv_dir, waves=waves)


def bench(network, skip):
    """Measure one network; return a dict of figures."""
    inv_dir = inventory_dir(network)
    inv = invmod.build(inv_dir)
    fig = {"network": network, "inventory": inv_dir, "hosts": len(inv["_meta"]["hostvars"])}
    if "boot" not in skip:
        say(f"{network}: lab down, lab up")
        subprocess.run([JINCAI, "lab", "down"], cwd=ROOT, check=True, capture_output=True)
        t0 = time.monotonic()
        subprocess.run([JINCAI, "lab", "up", "-i", inv_dir], cwd=ROOT, check=True)
        fig["boot"] = round(time.monotonic() - t0, 1)
        fig["memory_fresh"] = memory(inv)
    else:
        subprocess.run([JINCAI, "lab", "up", "-i", inv_dir], cwd=ROOT, check=True)
    if "first" not in skip:
        say(f"{network}: first provisioning (site.yml)")
        fig["first"] = timed_playbook("playbooks/site.yml", inv_dir, waves=network == "twin")
    if "rerun" not in skip:
        say(f"{network}: idempotent site.yml")
        fig["rerun"] = timed_playbook("playbooks/site.yml", inv_dir, waves=network == "twin")
    if "converge" not in skip:
        say(f"{network}: jincai converge")
        fig["converge"] = converge(inv_dir, waves=network == "twin")
    fig["memory_provisioned"] = memory(inv)
    if "routers" not in skip:
        say(f"{network}: routers.yml noop")
        fig["routers"] = timed_playbook("playbooks/routers.yml", inv_dir)
    if "compliance" not in skip:
        say(f"{network}: compliance with drift")
        fig["compliance"] = compliance_with_drift(inv_dir, inv, waves=network == "twin")
    return fig


def _wall(fig, key):
    return (fig.get(key) or {}).get("wall") if isinstance(fig.get(key), dict) else fig.get(key)


def report(figs):
    """Print the side-by-side table, the memory per kind and the per-play times."""
    names = [f["network"] for f in figs]
    print("\n" + "=" * 78)
    print(f"{'figure':34}" + "".join(f"{n:>14}" for n in names) + ("   ratio" if len(figs) == 2 else ""))
    rows = [("hosts", lambda f: f["hosts"]), ("boot to SSH-ready, s", lambda f: f.get("boot")),
            ("first site.yml, s", lambda f: _wall(f, "first")), ("idempotent site.yml, s", lambda f: _wall(f, "rerun")),
            ("  changed on re-run", lambda f: (f.get("rerun") or {}).get("changed")),
            ("jincai converge, s", lambda f: _wall(f, "converge")),
            ("  hosts read and left", lambda f: (f.get("converge") or {}).get("left")),
            ("  hosts site.yml ran on", lambda f: (f.get("converge") or {}).get("ran")),
            ("  changed by converge", lambda f: (f.get("converge") or {}).get("changed")),
            ("routers.yml noop, s", lambda f: _wall(f, "routers")),
            ("  routers changed", lambda f: (f.get("routers") or {}).get("changed")),
            ("compliance with drift, s", lambda f: _wall(f, "compliance")),
            ("  drift found where made", lambda f: (f.get("compliance") or {}).get("drift_expected_on") in
             ((f.get("compliance") or {}).get("drift_reported_on") or []) if f.get("compliance") else None),
            ("PSS fresh, MiB", lambda f: round(f["memory_fresh"][1]) if f.get("memory_fresh") else None),
            ("PSS provisioned, MiB", lambda f: round(f["memory_provisioned"][1]) if f.get("memory_provisioned") else None)]
    for label, get in rows:
        vals = [get(f) for f in figs]
        line = f"{label:34}" + "".join(f"{'-' if v is None else v!s:>14}" for v in vals)
        if len(vals) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals) and vals[1]:
            line += f"   {vals[0] / vals[1]:5.1f}x"
        print(line)
    for f in figs:
        for key in ("memory_fresh", "memory_provisioned"):
            if f.get(key):
                kinds, total = f[key]
                parts = ", ".join(f"{k} {n} x {m / n:.0f}" for k, (n, m) in sorted(kinds.items()))
                print(f"{f['network']} {key.split('_')[1]} PSS per host (MiB): {parts}; total {total:.0f}")
        if f.get("first"):
            print(f"{f['network']} first site.yml per play: "
                  + "; ".join(f"{p} {s:.0f} s" for s, p in f["first"]["plays"]))
    print(f"load average now {os.getloadavg()[0]:.1f} (2 cores)")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--networks", default="twin,lab", help="comma-separated: twin and/or lab inventories")
    p.add_argument("--skip", default="", help=f"phases to skip: {','.join(PHASES)}")
    p.add_argument("--json", help="also write the figures as JSON")
    a = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("benchmarks/province.py: run as root (it rebuilds the lab)")
    skip = {s for s in a.skip.split(",") if s}
    figs = [bench(n, skip) for n in a.networks.split(",") if n]
    report(figs)
    if a.json:
        with open(a.json, "w", encoding="utf-8") as fh:
            json.dump(figs, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
