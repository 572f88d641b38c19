"""Benchmark: push router configs to every lab router in parallel.

Prints, per router and in total (wall clock, all routers at once):

* ``module``: the jincai_netconfig flow (connect, fetch running, diff, push the difference one line
  at a time with error checks, fetch again to verify, save) for a one-line change and back;
* ``bare``: a bare, stock netmiko session (``cisco_ios`` driver against vtysh) doing the same change
  (connect, send_config_set, write memory): no fetch, no diff, no error check, no verification;
* ``noop``: the module flow when nothing differs (what a converged run costs per router);
* ``ansible``: ``ansible-playbook playbooks/routers.yml`` end to end on the converged lab.

Needs the lab (``jincai lab up``) and converged routers (``ansible-playbook playbooks/routers.yml``).

``--twins`` (no lab needed): the cost of the native safety per vendor platform, against the vendor
CLI twins (jincai.lab.vendorsim) on 127.0.0.1 in real time: a first-contact push with its phases
(arm, push, reconnect + verify, confirm + save), then a one-line change pushed with the device's
own way back armed and confirmed from a new session, against the same change with it switched off.
"""

import dataclasses
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import jinja2
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from jincai import netconfig as nc  # noqa: E402  (module_utils/jincai_netconfig.py)
from jincai.source import inventory as invmod  # noqa: E402

LAB = os.path.join(ROOT, "inventories", "lab")


def _group_vars():
    with open(os.path.join(LAB, "group_vars", "routers.yml"), encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def render(hv):
    """The router's intended config, rendered as the role renders it."""
    with open(os.path.join(ROOT, "policy", "metro.yml"), encoding="utf-8") as fh:
        policy = yaml.safe_load(fh)["metro_policy"]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(ROOT, "templates", "router")),
                             trim_blocks=True, undefined=jinja2.StrictUndefined)
    tpl = env.get_template(f"{hv['jincai_router']['platform']}.j2")
    return tpl.render(**hv, router_metro_policy=policy, router_snmp={"user": "", "auth_key": "", "priv_key": ""})


def module_push(host, hv, config, user, key):
    """The module's flow (library/jincai_netconfig.py run()) without Ansible around it."""
    p = nc.get_platform(hv["jincai_router"]["platform"])
    t0 = time.monotonic()
    conn = nc.connect(p, hv["ansible_host"], user, key_file=key)
    dev = nc.Device(conn, p)
    try:
        running = dev.running()
        intended = nc.parse(config, p)
        cmds = nc.plan(nc.parse(running, p), intended, p)
        if cmds:
            dev.apply(cmds)
            left = nc.plan(nc.parse(dev.running(), p), intended, p)
            assert not left, f"{host}: did not converge: {left}"
            dev.save()
    finally:
        conn.disconnect()
    return time.monotonic() - t0, len(cmds)


def bare_push(host, hv, commands, user, key):
    """A bare netmiko session sending the same commands: no fetch, no diff, no checks."""
    from netmiko import ConnectHandler

    t0 = time.monotonic()
    conn = ConnectHandler(device_type="cisco_ios", host=hv["ansible_host"], username=user, key_file=key,
                          use_keys=True, allow_agent=False)
    try:
        conn.send_config_set(commands)
        conn.save_config()
    finally:
        conn.disconnect()
    return time.monotonic() - t0


def parallel(fn, jobs):
    """Run ``fn(*args)`` for every (host, args) in parallel; return ({host: result}, wall seconds)."""
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {h: pool.submit(fn, h, *args) for h, args in jobs.items()}
        results = {h: f.result() for h, f in futures.items()}
    return results, time.monotonic() - t0


def twins(rounds=3):
    """Arming/confirming cost per vendor platform against the simulators; prints a table."""
    sys.path.insert(0, os.path.join(ROOT, "tests", "unit"))
    from netconfig_support import VENDOR_PLATFORMS, FakeModule, intended, load_module, simulator

    mod = load_module()
    print(f"vendor CLI twins on 127.0.0.1, real time; one-line change = mean of {rounds} pushes")
    print(f"{'platform':<13} {'1st push':>8} {'arm':>6} {'apply':>6} {'verify':>7} {'confirm':>8}  "
          f"{'change safe':>11} {'change bare':>11} {'cost':>6}  (seconds)")
    for platform in VENDOR_PLATFORMS:
        sim = simulator(platform)
        base = intended(platform)
        loop = "interface Loopback0\n" if platform == "cisco_ios" else "interface LoopBack0\n"
        changed = base.replace(" description router loopback\n", " description router loopback bench\n")
        assert changed != base and loop in base

        def push(config):
            t0 = time.monotonic()
            res = mod.run(FakeModule(config, platform=platform, host="127.0.0.1", port=sim.port, password="netops",
                                     timeout=10, rollback_timer=300))
            return time.monotonic() - t0, res

        try:
            first, res = push(base)
            ph = res["timings"]
            safe = [push(changed if i % 2 == 0 else base)[0] for i in range(rounds * 2)]
            real = nc.PLATFORMS[platform]
            nc.PLATFORMS[platform] = dataclasses.replace(real, safety="none")
            try:
                bare = [push(changed if i % 2 == 0 else base)[0] for i in range(rounds * 2)]
            finally:
                nc.PLATFORMS[platform] = real
        finally:
            sim.close()
            sim.device.close()
        s_mean, b_mean = statistics.mean(safe), statistics.mean(bare)
        print(f"{platform:<13} {first:8.2f} {ph['arm']:6.2f} {ph['apply']:6.2f} {ph['verify']:7.2f} "
              f"{ph['confirm']:8.2f}  {s_mean:11.2f} {b_mean:11.2f} {s_mean - b_mean:+6.2f}")
    return 0


def main():
    """Run the benchmark and print the figures."""
    if "--twins" in sys.argv[1:]:
        return twins()
    gv = _group_vars()
    user, key = gv["jincai_netmiko_user"], gv["jincai_netmiko_key_file"]
    inv = invmod.build(LAB)
    hosts = sorted(inv["routers"]["hosts"])
    hvs = {h: inv["_meta"]["hostvars"][h] for h in hosts}
    configs = {h: render(hvs[h]) for h in hosts}
    uplink = {h: next(i["name"] for i in hvs[h]["jincai_interfaces"] if i["role"] in ("uplink", "downlink"))
              for h in hosts}

    def changed(h):  # the intended config with one extra line (a description on the loopback)
        return configs[h].replace("interface lo\n", "interface lo\n description jincai benchmark\n")

    noop, noop_wall = parallel(module_push, {h: (hvs[h], configs[h], user, key) for h in hosts})
    to_b, to_b_wall = parallel(module_push, {h: (hvs[h], changed(h), user, key) for h in hosts})
    back, back_wall = parallel(module_push, {h: (hvs[h], configs[h], user, key) for h in hosts})
    bare_cmds = {h: ["interface lo", "description jincai benchmark", "exit"] for h in hosts}
    bare_undo = {h: ["interface lo", "no description", "exit"] for h in hosts}
    bare_to, bare_to_wall = parallel(bare_push, {h: (hvs[h], bare_cmds[h], user, key) for h in hosts})
    bare_back, bare_back_wall = parallel(bare_push, {h: (hvs[h], bare_undo[h], user, key) for h in hosts})
    assert all(n == 0 for _, n in noop.values()), "routers not converged: run playbooks/routers.yml first"
    del uplink

    t0 = time.monotonic()
    res = subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "playbooks/routers.yml"],
                         cwd=ROOT, capture_output=True, text=True, check=False,
                         env=dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg")))
    ansible_wall = time.monotonic() - t0

    print(f"{len(hosts)} lab routers (FRR), all in parallel")
    print(f"{'router':<12} {'noop':>7} {'module':>8} {'bare':>7} {'overhead':>9}  (seconds; module/bare = change + change back, mean)")
    overheads = []
    for h in hosts:
        m = (to_b[h][0] + back[h][0]) / 2
        b = (bare_to[h] + bare_back[h]) / 2
        overheads.append(m - b)
        print(f"{h:<12} {noop[h][0]:7.2f} {m:8.2f} {b:7.2f} {m - b:+9.2f}")
    print(f"wall, all routers: noop {noop_wall:.2f} s, module change {to_b_wall:.2f} s / back {back_wall:.2f} s, "
          f"bare change {bare_to_wall:.2f} s / back {bare_back_wall:.2f} s")
    print(f"module overhead over bare netmiko: mean {statistics.mean(overheads):+.2f} s per router "
          f"(fetch + diff + per-line checks + verification fetch)")
    print(f"ansible-playbook playbooks/routers.yml (converged, incl. nftables tasks): {ansible_wall:.2f} s, "
          f"rc={res.returncode}")
    return 0 if res.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
