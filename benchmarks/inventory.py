"""Benchmark: `ansible-inventory --list` on the Jilin source (70 sites) and on a synthetic source ten
times larger (700 sites, generated into a temporary directory through the same allocator).

Goals: < 5 s for Jilin, < 30 s for the synthetic source. Prints the figures; exits 1 if a goal is missed.
Run from the repository root: `.venv/bin/python benchmarks/inventory.py` (or `make bench`).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from jincai import ROOT
from jincai.sitecmd import render_site
from jincai.source import allocate, inventory, model, validate

BIN = os.path.dirname(sys.executable)
JILIN = os.path.join(ROOT, "inventories", "jilin")
GOALS = {"jilin": 5.0, "synthetic": 30.0}
CITIES, COUNTIES_PER_CITY = 90, 7  # 1 + 90 + 609 = 700 sites


def fake_key(seed):
    """A well-formed ed25519 public key line (random bytes, not a real key pair)."""
    blob = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + hashlib.sha256(seed.encode()).digest()
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} synthetic-{seed}"


def synthetic_source(dest):
    """Write a 700-site source (own division table, /12 plan) to ``dest``; return the site count."""
    shutil.copytree(JILIN, dest, ignore=shutil.ignore_patterns("sites"))
    src_dir = os.path.join(dest, "source")
    os.makedirs(os.path.join(src_dir, "sites"))
    rows = ["code\tparent_code\tlevel\tname_zh\tname_pinyin", "220000\t\tprovince\t合成省\tHecheng Sheng"]
    for c in range(1, CITIES + 1):
        city = f"22{c:02d}00"
        rows.append(f"{city}\t220000\tcity\t合成{c}市\tHecheng {c} Shi")
        for k in range(1, COUNTIES_PER_CITY + (1 if c > 21 else 0)):  # 21 cities x 6 + 69 x 7 = 609
            rows.append(f"22{c:02d}{k:02d}\t{city}\tcounty\t合成{c}市{k}县\tHecheng {c} Shi {k} Xian")
    with open(os.path.join(src_dir, "divisions.tsv"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(rows) + "\n")
    src = model.load(dest)
    net = src.network
    net["name"] = "synthetic"
    net["divisions_file"] = "divisions.tsv"
    net["admins"] = [{"user": "admin1", "name": "管理员", "key": fake_key("admin1"), "roles": ["system"]}]
    net["plan"].update({
        "supernet": "10.0.0.0/12", "city_vpn_pools": "10.8.0.0/16", "vpn_pool": "10.9.0.0/21",
        "vpn_access": "10.9.8.0/22", "wan_links": "10.10.0.0/20", "loopbacks": "10.11.0.0/22",
        "management": {"mode": "inband", "network": "10.0.2.0/24"}})
    net["ntp_upstream"] = ["10.0.2.123"]
    with open(os.path.join(src_dir, "network.yml"), "w", encoding="utf-8") as fh:
        import yaml

        yaml.safe_dump({"network": net}, fh, allow_unicode=True, sort_keys=False)
    province = copy.deepcopy(model.load(JILIN).site_map()["220000"])
    province.update({"name_zh": "合成省", "pinyin": "Hecheng Sheng", "block": "10.0.0.0/20", "lan": "10.0.0.0/24",
                     "metro": "10.0.1.0/24", "vpn_pool": "10.9.0.0/21",
                     "router": {"platform": "huawei_vrpv8", "loopback": "10.11.0.1"}})
    for i, h in enumerate(province["hosts"]):
        h["address"] = f"10.0.0.{1 if h['function'] == 'router' else 9 + i}"
        if "vpn_access" in h:
            h["vpn_access"] = "10.9.8.1"
    for i, p in enumerate(province["parties"]):
        p["address"] = f"10.0.1.{10 + i}"
    src = model.load(dest)
    src.sites = [("x", province)]
    alloc = allocate.Allocator(src)
    files = {"220000": [province]}
    divs = src.divisions()
    for code in sorted(divs):
        d = divs[code]
        if d.level == "province":
            continue
        site = alloc.new_site(d)
        n = 5 if d.level == "city" else 2
        site["technicians"] = [{"user": f"t{code}{chr(97 + i)}", "name": f"技术员{i}", "key": fake_key(f"{code}{i}")}
                               for i in range(n)]
        site["budget_units"]["count"] = 60 if d.level == "city" else 20
        files.setdefault(code if d.level == "city" else d.parent, []).append(site)
    for code, sites in files.items():
        with open(os.path.join(src_dir, "sites", f"{code}.yml"), "w", encoding="utf-8") as fh:
            fh.write("---\nsites:\n" + "".join(render_site(s) for s in sites))
    return sum(len(s) for s in files.values())


def timed(fn):
    """(wall seconds, result) of ``fn()``."""
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def child_cpu():
    """CPU seconds (user + system) used so far by finished child processes."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def ansible_inventory_list(inv):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), PATH=f"{BIN}:{os.environ['PATH']}")
    r = subprocess.run([os.path.join(BIN, "ansible-inventory"), "-i", inv, "--list"], capture_output=True,
                       text=True, cwd=ROOT, env=env, check=False)
    if r.returncode != 0:
        raise SystemExit(f"ansible-inventory failed on {inv}:\n{r.stderr[-3000:]}")
    return len(json.loads(r.stdout)["_meta"]["hostvars"])


def measure(name, inv, rounds=3):
    """Best of ``rounds`` for each stage; returns the ansible-inventory time."""
    sites = len(model.load(inv).sites)
    t_val = min(timed(lambda: validate.findings(inv))[0] for _ in range(rounds))
    errors = [f for f in validate.findings(inv) if f.severity == "error"]
    if errors:
        raise SystemExit(f"{name}: source invalid:\n" + "\n".join(map(str, errors[:20])))
    t_build, data = min((timed(lambda: inventory.build(inv)) for _ in range(rounds)), key=lambda x: x[0])
    runs = []
    for _ in range(rounds):
        cpu0 = child_cpu()
        wall, hosts = timed(lambda: ansible_inventory_list(inv))
        runs.append((wall, child_cpu() - cpu0))
    t_ai, cpu = min(runs)
    assert hosts == len(data["_meta"]["hostvars"])
    goal = GOALS[name]
    verdict = "ok" if t_ai < goal else "MISSED"
    print(f"{name:<10} {sites:>4} sites {hosts:>5} hosts | validate {t_val:5.2f} s | build {t_build:5.2f} s | "
          f"ansible-inventory --list {t_ai:5.2f} s wall, {cpu:5.2f} s CPU (goal < {goal:.0f} s: {verdict})")
    return t_ai < goal


def main():
    load = os.getloadavg()[0]
    print(f"best of 3 runs; python {sys.version.split()[0]}; {os.cpu_count()} CPUs; load average {load:.1f}"
          + (" (busy machine: wall times are inflated, CPU times are not)" if load > os.cpu_count() else ""))
    ok = measure("jilin", JILIN)
    with tempfile.TemporaryDirectory(prefix="jincai-bench-") as tmp:
        inv = os.path.join(tmp, "synthetic")
        t_gen, n = timed(lambda: synthetic_source(inv))
        print(f"generated a synthetic source of {n} sites through the allocator in {t_gen:.2f} s")
        ok = measure("synthetic", inv) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
