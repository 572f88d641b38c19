"""Benchmark the province-wide VPN PKI offline: ~3,000 budget units and ~600 township finance offices
across the ten concentrators.

Every budget unit the source of truth declares (``budget_units.count`` of each site of
inventories/jilin: 1,040 at the province, the cities' and counties' at their city's concentrator, each
county's units with ``home`` = their county) and every township finance office (``townships.count``
of each county, ``kind`` township, at the concentrator that serves the county's townships) is onboarded into a throw-away PKI (temporary directory, a
throw-away vault password) through the real batch path (``jincai pki import``: jincai.pki.batch), then
every concentrator's swanctl.conf and nftables set are rendered with the role's own templates and
its own reach filter (plugins/filter/jincai_vpn.py, what the role's set_fact runs). A rerun of the same batch
must change nothing. Prints the times, the number of key vaults written (one per concentrator's batch:
jincai.pki.keys) and the peak memory. Goal: < 10 s for issue + render.

Offline: nothing is contacted (no lab, no production host). Run:  .venv/bin/python benchmarks/vpn_province.py
"""

import argparse
import json
import os
import resource
import sys
import tempfile
import time

import jinja2

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jincai import ROOT  # noqa: E402
from jincai.pki import batch as pki_batch  # noqa: E402
from jincai.pki import ca  # noqa: E402
from jincai.pki import vpn as vpnplans  # noqa: E402
from jincai.policy import ipsec  # noqa: E402
from jincai.source import inventory, model  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "plugins", "filter"))
import jincai_vpn  # noqa: E402  (the role's filter: plugins/filter/jincai_vpn.py)

ROLE = os.path.join(ROOT, "roles", "vpn_concentrator")
IPSEC = ipsec.policy()  # what the role's defaults read (jincai_ipsec)


def unit_rows(vpn_plans, counts, township_counts=None):
    """One batch row per budget unit of the source (``counts``: site code -> budget_units.count):
    code, name, concentrator, site (its own: the city's or a county's); then one per township finance
    office (``township_counts``: county code -> townships.count), kind township, site its county."""
    rows = []
    for p in vpn_plans:
        for site in p["served"]:
            rows += [{"code": f"u{site}-{i:04d}", "name": f"预算单位 {site}-{i}",
                      "concentrator": p["concentrator"]["name"], "site": site} for i in range(1, counts.get(site, 0) + 1)]
    for p in vpn_plans:
        for site in p.get("townships") or {}:
            rows += [{"code": f"t{site}-{i:03d}", "name": f"乡镇财政所 {site}-{i}", "kind": "township",
                      "concentrator": p["concentrator"]["name"], "site": site}
                     for i in range(1, (township_counts or {}).get(site, 0) + 1)]
    return rows


def render_concentrator(vpn_hostvars, name, units, libipsec=False, server_identity=None):
    """Render swanctl.conf and the nftables set of one concentrator for ``units`` (registry entries),
    exactly as roles/vpn_concentrator does; returns ``(swanctl, nft)``."""
    vpn = vpn_hostvars["jincai_vpn"]
    reach = jincai_vpn.vpn_unit_reach(units, vpn["served"], vpn["apps"], vpn.get("township_served"),
                                      vpn.get("township_apps"))  # the role's set_fact
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(ROLE, "templates")), trim_blocks=True,
                             keep_trailing_newline=True)
    env.filters.update(jincai_vpn.FilterModule().filters())  # what Ansible loads from plugins/filter
    variables = {
        "ansible_managed": "jincai benchmark", "inventory_hostname": name, "_vpn_concentrator_units": units,
        "_vpn_concentrator_reach": reach, "_vpn_concentrator_registry": {"server_identity": server_identity or f"{name}.bench"},
        "vpn_concentrator_pool": vpn["pool"], "vpn_concentrator_access_address": vpn["access_address"],
        "vpn_concentrator_allowed_apps": vpn["apps"], "vpn_concentrator_township_apps": vpn.get("township_apps", []),
        "vpn_concentrator_proposals": IPSEC["ike_proposals"],
        "vpn_concentrator_esp_proposals": IPSEC["esp_proposals"], "vpn_concentrator_dpd_delay": "30s",
        "_vpn_concentrator_backend": "libipsec" if libipsec else "kernel",
    }
    return (env.get_template("swanctl-jincai.conf.j2").render(variables),
            env.get_template("jincai-vpn.nft.j2").render(variables))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-i", "--inventory", default=os.path.join(ROOT, "inventories", "jilin"))
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="jincai-vpn-bench-") as work:
        pw = os.path.join(work, "vault-pass")
        with open(pw, "w", encoding="utf-8") as fh:
            fh.write("throw-away benchmark vault password\n")
        os.environ["ANSIBLE_VAULT_PASSWORD_FILE"] = pw
        os.environ.pop("ANSIBLE_VAULT_IDENTITY_LIST", None)
        pki_dir = os.path.join(work, "pki")
        ca.CA_NAME = "jincai benchmark CA (throw-away)"

        t0 = time.monotonic()
        hostvars = inventory.build(args.inventory)["_meta"]["hostvars"]
        sites = model.load(args.inventory).sites
        counts = {s["code"]: (s.get("budget_units") or {}).get("count", 0) for _, s in sites}
        towns = {s["code"]: (s.get("townships") or {}).get("count", 0) for _, s in sites}
        vpn_plans = vpnplans.plans(args.inventory)
        rows = unit_rows(vpn_plans, counts, towns)
        t_plan = time.monotonic() - t0

        t1, c1 = time.monotonic(), time.process_time()
        quiet = []
        done = pki_batch.run(vpn_plans, pki_dir, rows, out=quiet.append)
        t_issue, c_issue = time.monotonic() - t1, time.process_time() - c1

        t2, c2 = time.monotonic(), time.process_time()
        sizes, per_conc = {"swanctl": 0, "nft": 0}, {}
        regs = pki_batch.Registries(vpn_plans, pki_dir)
        for p in vpn_plans:
            name = p["concentrator"]["name"]
            units = [u for u in (regs.get(p).units[c] for c in sorted(regs.get(p).units)) if u["status"] == "active"]
            swanctl, nft = render_concentrator(hostvars[name], name, units)
            sizes["swanctl"] += len(swanctl)
            sizes["nft"] += len(nft)
            per_conc[name] = len(units)
        t_render, c_render = time.monotonic() - t2, time.process_time() - c2

        t3 = time.monotonic()
        rerun = pki_batch.run(vpn_plans, pki_dir, rows, out=quiet.append)
        t_rerun = time.monotonic() - t3
        key_vaults = sum(len(files) for d, _, files in os.walk(pki_dir) if os.path.basename(d) == "keys")
        old_vaults = sum(f.endswith(".key.vault") for d, _, files in os.walk(pki_dir) for f in files
                         if os.path.basename(d) == "units")  # an older jincai's one per unit
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    n_towns = sum(1 for r in rows if r.get("kind") == "township")
    figures = {"units": len(rows) - n_towns, "townships": n_towns, "concentrators": len(vpn_plans), "per_concentrator": per_conc,
               "plan_s": round(t_plan, 2), "issue_s": round(t_issue, 2), "render_s": round(t_render, 2),
               "issue_and_render_s": round(t_issue + t_render, 2),
               "issue_cpu_s": round(c_issue, 2), "render_cpu_s": round(c_render, 2),
               "load_average": round(os.getloadavg()[0], 1), "rerun_s": round(t_rerun, 2),
               "rerun_changed": rerun["changed"], "added": done["add"], "key_vaults": key_vaults,
               "per_unit_key_vaults": old_vaults,
               "swanctl_kib": round(sizes["swanctl"] / 1024), "nft_kib": round(sizes["nft"] / 1024),
               "peak_rss_mib": round(peak_mib, 1)}
    if args.json:
        print(json.dumps(figures, sort_keys=True))
    else:
        print(f"{figures['units']} budget units and {n_towns} township finance offices across "
              f"{figures['concentrators']} concentrators (province {per_conc.get('220000-vpn', 0)}, cities "
              f"{len(rows) - per_conc.get('220000-vpn', 0)})")
        print(f"  plan (inventory + source)       {t_plan:6.2f} s")
        print(f"  issue (certificates, vaulted keys, registries, CRL, bundles)  {t_issue:6.2f} s   "
              f"({key_vaults} key vaults, {old_vaults} per-unit ones)")
        print(f"  render 10 x swanctl.conf + nftables set ({figures['swanctl_kib']} + {figures['nft_kib']} KiB)"
              f"  {t_render:6.2f} s")
        print(f"  issue + render                  {t_issue + t_render:6.2f} s   (goal < 10 s); CPU of this process "
              f"{c_issue:.2f} + {c_render:.2f} s; load average "
              f"{os.getloadavg()[0]:.1f}")
        print(f"  rerun of the same batch         {t_rerun:6.2f} s   changed: {rerun['changed']}")
        print(f"  peak memory (RSS)               {peak_mib:6.1f} MiB")
    return 0 if not rerun["changed"] and done["add"] == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
