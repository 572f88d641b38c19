"""``jincai converge``: ``site.yml`` on the hosts that need it, one read for the others (issue 14).

A routine run of the whole province (nightly, or after a change of the source) finds most hosts
converged, yet a plain ``site.yml`` still runs every task of every role on each of them: on two cores
~25 minutes for the twin's 152 hosts, nearly all of it the control node scheduling tasks that change
nothing. ``jincai converge`` decides per host, before any task runs, whether ``site.yml`` has work
there, with exactly the fast-drift path of ``jincai compliance`` (jincai.compliance.manifest,
docs/compliance.md "Fast drift"):

1. **Intent** (control node, nothing contacted): each host's manifest from its last successful
   ``site.yml`` carries the digest of what decided its state (its host vars from the source, the code
   of roles, templates, playbooks and plugins, the run's extra vars, the PKI files published to it).
   No manifest, or another digest: the host **runs** (the reason names the part that changed).
2. **State** (one read-only round trip per remaining host: ``playbooks/compliance.yml``, the
   collection of the nightly check): each managed file's sha256 and attributes, each package, unit,
   user and group, a router's running config; compared with the manifest. Any difference, or no
   answer: the host **runs**.
3. ``playbooks/site.yml --limit`` the hosts that run (with ``--check``: ``--check --diff``, nothing
   changed); the others are left as they are and named in the summary. A host outside the fast
   path's scope (the lab's VPN client stand-ins: site.yml configures them, no manifest records them)
   always runs.

What this trusts is what fast drift trusts: the tasks of modules it does not compare (``command``,
``lineinfile``, ``jincai_pg``... listed per host in the output as *not compared*) are re-applied only
on the hosts that run. A plain ``site.yml`` stays the way to re-apply everything (``make site``, the
weekly full compliance run, any change you do not trust the digest with). ``--plan`` prints the
decision and contacts nothing but the collection's read. Exit codes: 0 done (or nothing to do), 2 bad
input or a failed read (nothing changed), otherwise site.yml's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time

from jincai import ROOT

LAB_INVENTORY = os.path.join(ROOT, "inventories", "lab")
REPORTS = os.path.join(ROOT, "reports", "converge")
#: Why a host site.yml configures but no manifest records (the VPN client stand-ins) runs every time.
OUTSIDE_REASON = "outside the fast-drift scope (site.yml configures it, no manifest records it): always runs"
NO_READ_REASON = "the read-only collection got no answer from it (unreachable or failed): runs"


def build_parser():
    """The command line."""
    p = argparse.ArgumentParser(prog="jincai converge", description=__doc__.splitlines()[0])
    p.add_argument("-i", "--inventory", default=os.environ.get("JINCAI_INVENTORY", LAB_INVENTORY))
    p.add_argument("-l", "--limit", default="", help="tier, site code, group or host (comma-separated)")
    p.add_argument("-e", "--extra-vars", action="append", default=[], help="passed to every ansible-playbook run")
    p.add_argument("--check", action="store_true", help="site.yml --check --diff on the hosts that need it")
    p.add_argument("--plan", action="store_true", help="print which hosts would run and why, run nothing else")
    p.add_argument("--waves", action="store_true",
                   help="read and run wave by wave (the province, then each city with its counties: "
                        "bounds the memory a run holds on its targets, as make province and compliance --waves)")
    p.add_argument("-o", "--output", help="where decision.json goes (default reports/converge/<run id>/)")
    p.add_argument("-q", "--quiet", action="store_true", help="do not stream site.yml's output")
    return p


def production_refusal(m, args):
    """The message refusing a changing run on a production source without the operator's flag (as
    site.yml's first play refuses it, but before anything is read), or ""."""
    from jincai.compliance import manifest

    if m.environment != "production" or args.check or args.plan:
        return ""
    if str(manifest.parse_extra_vars(args.extra_vars).get("jincai_allow_production", "")).lower() in ("true", "yes", "1"):
        return ""
    return (f"{args.inventory} is the PRODUCTION network and this run can change it: run from the province "
            "control node with -e jincai_allow_production=true (read-only: --plan or --check need no flag)")


def write_decision(path, doc):
    """The run's decision (which hosts ran and why, which were left, what was not compared, figures) as
    JSON, for the audit of a routine run next to ARA's record of the site.yml it ran."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1, sort_keys=True, ensure_ascii=False)
    os.replace(tmp, path)


def managed_hosts(inventory, limit):
    """(hosts site.yml configures within ``limit``, the fast path's scope among them); raises
    compliance.UsageError on a limit that names nothing."""
    from jincai import compliance
    from jincai.verify.plan import SCOPE_GROUPS as CONFIGURED

    hosts, _ = compliance.resolve_scope(inventory, limit or None, groups=CONFIGURED)
    scope, _ = compliance.resolve_scope(inventory, limit or None)
    if not hosts:
        raise compliance.UsageError(f"--limit {limit}: matches no host that site.yml configures")
    return hosts, scope


def decide(hosts, scope, fast_doc, collected):
    """{host: why site.yml runs there} for the hosts that need it; the others are converged.

    ``fast_doc``: jincai.compliance.plan_fast's document (manifests compared, fallback reasons);
    ``collected``: {host: the collection's document} of the hosts read."""
    from jincai.compliance import manifest

    run, in_scope = {}, set(scope)
    for host in hosts:
        if host not in in_scope:
            run[host] = OUTSIDE_REASON
        elif host in (fast_doc.get("fallback") or {}):
            run[host] = fast_doc["fallback"][host]
        elif collected.get(host) is None:
            run[host] = NO_READ_REASON
        else:
            diffs = manifest.compare_collected(fast_doc["manifests"][host], collected[host])
            if diffs:
                first = diffs[0]
                more = f" and {len(diffs) - 1} more" if len(diffs) > 1 else ""
                run[host] = (f"drifted: {first['role'] or first['module']}: {first['kind']} {first['name']} "
                             f"({first['attribute']}){more}")
    return run


def not_compared(fast_doc, hosts):
    """{module: tasks} the manifests of ``hosts`` count as uncovered (what only a full run re-applies)."""
    out = {}
    for host in hosts:
        for mod, n in ((fast_doc.get("manifests") or {}).get(host, {}).get("uncovered") or {}).items():
            out[mod] = out.get(mod, 0) + n
    return dict(sorted(out.items()))


#: With --waves, consecutive waves are merged into one run while they hold at most this many hosts:
#: ~60 MiB PSS per target held until a Mitogen run ends (jincai.run.waves) bounds a run to ~2.4 GiB on
#: the twin's shared machine, and each run costs its own start (the twin's inventory, the validation
#: play): ten runs for the 29 VPN client stand-ins took 110 s, most of it per-run overhead.
MAX_BATCH_HOSTS = 40


def batches(inventory, hosts, waves, max_hosts=MAX_BATCH_HOSTS):
    """``[(label, hosts)]``: one batch of all ``hosts``, or with ``waves`` jincai.run.waves' waves of
    them (the province first, then each city with its counties), consecutive ones merged while a batch
    holds at most ``max_hosts`` (a bigger wave stays whole)."""
    from jincai.run import waves as waves_mod

    if not waves:
        return [("all", sorted(hosts))]
    out = []
    for label, wave in waves_mod.waves(inventory, hosts=hosts):
        if out and len(out[-1][1]) + len(wave) <= max_hosts:
            out[-1] = (f"{out[-1][0]}, {label}", out[-1][1] + wave)
        else:
            out.append((label, list(wave)))
    return out


def read_state(inventory_dir, groups, extra_vars, raw_dir, log=print):
    """The collection (playbooks/compliance.yml, read-only) of the hosts of ``groups`` (``batches()``),
    one run per batch: ({host: document}, {"rc": the worst rc, "seconds": their sum, "tail"})."""
    from jincai import compliance

    facts_dir = os.path.join(raw_dir, "facts")
    os.makedirs(facts_dir, exist_ok=True)
    total = {"rc": 0, "seconds": 0.0, "tail": ""}
    for label, hosts in groups:
        if len(groups) > 1:
            log(f"jincai converge: reading {label}: {len(hosts)} hosts ...")
        timings = {}
        compliance._play("playbooks/compliance.yml", inventory_dir, ",".join(hosts), list(extra_vars),  # noqa: SLF001
                         os.path.join(raw_dir, "collect.json"), False, os.path.join(raw_dir, "collect.log"),
                         timings, "collect", facts_dir, os.path.join(raw_dir, "manifest"))
        run = timings["collect"]
        total["seconds"] += run["seconds"]
        if run["rc"] not in compliance.RUN_OK or total["rc"] in compliance.RUN_OK and run["rc"] > total["rc"]:
            total.update(rc=run["rc"], tail=run.get("tail", ""))
    return compliance._load_facts(facts_dir), total  # noqa: SLF001


def main(argv=None):
    """Entry point (``jincai converge ARGS``)."""
    from jincai import compliance
    from jincai.run import run as run_playbook
    from jincai.source import inventory as invmod

    args = build_parser().parse_args(argv)
    t0 = time.monotonic()
    started = dt.datetime.now(dt.timezone.utc)
    try:
        m, _warnings = invmod.build_checked(args.inventory)
        inventory = invmod.from_model(m)
        hosts, scope = managed_hosts(inventory, args.limit)
        refused = production_refusal(m, args)
        if refused:
            raise compliance.UsageError(refused)
    except invmod.InvalidSource as exc:
        print(f"jincai converge: invalid source, nothing was contacted:\n{exc}", file=sys.stderr)
        return 2
    except compliance.UsageError as exc:
        print(f"jincai converge: {exc} (nothing was contacted)", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - e.g. a missing inventory directory
        print(f"jincai converge: {args.inventory}: {exc} (nothing was contacted)", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="jincai-converge-") as raw_dir:
        fast_doc, _fallback = compliance.plan_fast(inventory, args.inventory, scope, args.extra_vars, raw_dir)
        t_plan = time.monotonic() - t0
        to_read = sorted(fast_doc["manifests"])
        collected, read = {}, {"rc": 0, "seconds": 0.0}
        if to_read:
            print(f"jincai converge: reading {len(to_read)} hosts recorded by their last site.yml "
                  f"(one read-only round trip each) ...", flush=True)
            collected, read = read_state(args.inventory, batches(inventory, to_read, args.waves), args.extra_vars,
                                         raw_dir, log=lambda msg: print(msg, flush=True))
            if read["rc"] not in compliance.RUN_OK:
                print(f"jincai converge: the read-only collection failed (rc {read['rc']}), nothing was changed:\n"
                      f"{read.get('tail', '')}", file=sys.stderr)
                return 2
    run = decide(hosts, scope, fast_doc, collected)
    left = [h for h in hosts if h not in run]
    print(f"jincai converge: {len(hosts)} hosts; {len(left)} converged (manifest and a fresh read agree), "
          f"{len(run)} to run site.yml on (plan {t_plan:.1f} s, read {read['seconds']:.1f} s)")
    for host, why in sorted(run.items()):
        print(f"  run   {host:<16} {why}")
    uncovered = not_compared(fast_doc, left)
    if uncovered:
        print(f"  not compared on the {len(left)} converged hosts (a plain site.yml re-applies them): "
              + ", ".join(f"{mod} {n}" for mod, n in uncovered.items()))
    decision = {"started": started.isoformat(timespec="seconds"), "inventory": args.inventory,
                "limit": args.limit, "check": args.check, "plan_only": args.plan, "hosts": hosts,
                "run": run, "left": left, "not_compared": uncovered,
                "seconds": {"plan": round(t_plan, 2), "read": round(read["seconds"], 2)}}
    path = os.path.join(os.path.abspath(args.output or os.path.join(REPORTS, started.strftime("%Y%m%dT%H%M%SZ"))),
                        "decision.json")
    write_decision(path, decision)
    if args.plan or not run:
        print(f"jincai converge: {'plan only' if args.plan else 'nothing to do'} ({time.monotonic() - t0:.1f} s); "
              f"decision {path}")
        return 0
    t1 = time.monotonic()
    rc, totals = 0, {"changed": 0, "failed": 0, "unreachable": 0}
    groups = batches(inventory, sorted(run), args.waves)
    for label, wave in groups:
        extra = ["--limit", ",".join(wave)]
        for ev in args.extra_vars:
            extra += ["-e", ev]
        if len(groups) > 1:
            print(f"jincai converge: site.yml on {label}: {len(wave)} hosts ...", flush=True)
        res = run_playbook("playbooks/site.yml", inventory=args.inventory, args=extra, check=args.check,
                           diff=args.check, echo=not args.quiet)
        for key in totals:
            totals[key] += res.total(key)
        rc = rc or res.rc
    print(f"jincai converge: site.yml{' --check' if args.check else ''} on {len(run)} hosts: rc {rc}, "
          f"changed={totals['changed']}, failed={totals['failed']}, unreachable={totals['unreachable']}; "
          f"{len(left)} hosts left as they were ({time.monotonic() - t1:.1f} s; {time.monotonic() - t0:.1f} s in all); "
          f"decision {path}")
    decision["site"] = {"rc": rc, **totals, "seconds": round(time.monotonic() - t1, 2)}
    write_decision(path, decision)
    return rc
