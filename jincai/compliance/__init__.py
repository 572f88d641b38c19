"""``jincai compliance``: nightly drift and MLPS level-3 compliance report, changing nothing.

Two read-only Ansible runs, side by side: drift and ``playbooks/compliance.yml`` (one round trip per
host collecting the facts the checks judge). Drift ``--drift fast`` (the default) compares what the
collection also reads of each host's manifest entries with the manifest the last successful site.yml
wrote (jincai.compliance.manifest); the hosts without a current manifest, and every host with
``--drift full``, get ``playbooks/site.yml --check --diff`` (every task that would change something,
recorded with its diff by the jincai_drift callback). The
checks run on the control node (jincai/compliance/checks.py); findings carry the MLPS control ID
and clause (jincai/data/mlps_controls.yml). Reports: report.json, junit.xml, report.html (with the
WAN map of jincai.topology) in ``reports/compliance/<run id>/`` plus ``history.json``. Exit 0 clean, 1 findings, 2 the run failed.
"""

import argparse
import datetime as dt
import json
import os
import sys
import threading
import time

from jincai import ROOT

LAB_INVENTORY = os.path.join(ROOT, "inventories", "lab")
REPORTS = os.path.join(ROOT, "reports", "compliance")
SCOPE_GROUPS = ("routers", "machine_room")
TIERS = ("province", "city", "county")
CALLBACKS = ("jincai_drift",)  # on top of ansible.cfg's (the timer, the ARA audit trail)
DRIFT_MODES = ("fast", "full")
FAST_PATHS_ENV = "JINCAI_FAST_DRIFT_PATHS"
RUN_OK = (0, 2, 4)  # ansible-playbook: ok, some host failed, some host unreachable


class UsageError(Exception):
    """Bad input, found before any host is contacted."""


def build_parser():
    """The command line of ``jincai compliance``."""
    p = argparse.ArgumentParser(prog="jincai compliance", description=__doc__.splitlines()[0])
    p.add_argument("-i", "--inventory", default=os.environ.get("JINCAI_INVENTORY", LAB_INVENTORY),
                   help="inventory directory (default: inventories/lab or $JINCAI_INVENTORY)")
    p.add_argument("-l", "--limit", help="tier (province|city|county), site code, group or host; comma-separated")
    p.add_argument("--reports-dir", default=REPORTS,
                   help="base directory: each run in <run id>/, plus history.json (default: reports/compliance)")
    p.add_argument("-o", "--output", help="this run's report directory (default: <reports-dir>/<run id>)")
    p.add_argument("--history", help="history file (default: history.json beside the report directory)")
    p.add_argument("--skip-drift", action="store_true", help="only the compliance checks (no drift at all)")
    p.add_argument("--drift", choices=DRIFT_MODES, default="fast",
                   help="fast (default): compare with the manifests the last site.yml wrote, site.yml --check "
                        "--diff only for the hosts without a current one; full: site.yml --check --diff on every host")
    p.add_argument("--waves", action="store_true",
                   help="run wave by wave (the province, then each city with its counties) and merge: bounds "
                        "the memory the runs hold on targets sharing one machine (the province twin)")
    p.add_argument("-e", "--extra-vars", action="append", default=[], help="passed to both ansible-playbook runs")
    p.add_argument("--keep-days", type=int, default=0, help="delete run directories older than this (0: keep all)")
    p.add_argument("--from", dest="from_dir", action="append", default=[],
                   help="re-evaluate the raw data of an earlier run (contacts nothing); repeated: merge the "
                        "runs of several slices (AWX job slicing, waves) into one report")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the one-line result")
    return p


def resolve_scope(inventory, limit, groups=SCOPE_GROUPS):
    """Return (sorted host list in scope, ansible --limit string or None); raise UsageError on bad input.
    ``groups``: the groups whose hosts can be in scope (jincai verify adds the VPN clients)."""
    scope_groups = groups
    groups = {k: v.get("hosts", []) for k, v in inventory.items() if k != "_meta" and isinstance(v, dict)}
    managed = set()
    for g in scope_groups:
        managed |= set(groups.get(g, []))
    if not limit:
        return sorted(managed), None
    chosen = set()
    for token in [t.strip() for t in limit.split(",") if t.strip()]:
        if token in TIERS or token in groups:
            chosen |= set(groups.get(token, []))
        elif f"site_{token}" in groups:
            chosen |= set(groups[f"site_{token}"])
        elif token in inventory["_meta"]["hostvars"]:
            chosen.add(token)
        else:
            raise UsageError(f"--limit {token}: not a tier ({'|'.join(TIERS)}), site code, group or host "
                             f"of the inventory")
    scope = sorted(chosen & managed)
    if not scope and not chosen:
        raise UsageError(f"--limit {limit}: matches no host")
    return scope, ",".join(sorted(chosen))


def _load_json(path):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return None


def _load_facts(facts_dir):
    """{host: document}; ``<host>.nft.json`` (a router's packet filter) is attached as doc["nft"]."""
    out, extra = {}, {}
    if os.path.isdir(facts_dir):
        for name in sorted(os.listdir(facts_dir)):
            if name.endswith(".nft.json"):
                extra[name[:-len(".nft.json")]] = _load_json(os.path.join(facts_dir, name))
            elif name.endswith(".json"):
                doc = _load_json(os.path.join(facts_dir, name))
                if doc and doc.get("host"):
                    out[doc["host"]] = doc
    for host, nft in extra.items():
        if host in out and nft is not None:
            out[host]["nft"] = nft
    return out


def _play(playbook, inventory, limit, extra_vars, record_file, check, log_file, timings, key, facts_dir,
          paths_dir=""):
    """Run one playbook with the jincai_drift callback; store (rc, output tail) in ``timings``.
    ``paths_dir``: the fast-drift path lists the collection reads (``$JINCAI_FAST_DRIFT_PATHS``)."""
    from jincai.run import run as run_playbook

    args = []
    if limit:
        args += ["--limit", limit]
    for ev in extra_vars:
        args += ["-e", ev]
    t0 = time.monotonic()
    res = run_playbook(playbook, inventory=inventory, args=args, check=check, diff=check, callbacks=CALLBACKS,
                       env={"JINCAI_DRIFT_FILE": record_file, "JINCAI_FACTS_DIR": facts_dir if key == "collect" else "",
                            FAST_PATHS_ENV: paths_dir if key == "collect" else ""})
    timings[key] = {"rc": res.rc, "seconds": round(time.monotonic() - t0, 2), "recap": res.recap}
    with open(log_file, "w", encoding="utf-8") as fh:
        fh.write(res.output)
    timings[key]["tail"] = "\n".join(res.output.splitlines()[-15:])


def plan_fast(inventory, inventory_dir, scope, extra_vars, raw_dir):
    """Fast drift's plan for the hosts in ``scope``: the current manifest of each (copied into
    ``raw_dir/fast.json``, so ``--from`` re-evaluates what was compared) and the hosts that fall back to
    the full path with the reason; writes the path lists the collection reads (``raw_dir/manifest/``).
    Returns (fast.json document, the hosts that fall back)."""
    from jincai.compliance import manifest

    hv_all = inventory["_meta"]["hostvars"]
    tree = manifest.tree_digest(inventory_dir)
    extra = manifest.parse_extra_vars(extra_vars)
    paths_dir = os.path.join(raw_dir, "manifest")
    os.makedirs(paths_dir, exist_ok=True)
    doc = {"mode": "fast", "manifests": {}, "fallback": {}}
    for host in scope:
        hv = hv_all.get(host) or {}
        network = hv.get("jincai_network_name") or os.path.basename(os.path.normpath(inventory_dir))
        found = manifest.load(network, host)
        if found is None:
            doc["fallback"][host] = "no manifest (no successful site.yml has recorded this host)"
            continue
        why = manifest.digest_mismatch(found.get("digest"), manifest.source_digest(hv, tree, extra))
        if why:
            doc["fallback"][host] = why
            continue
        doc["manifests"][host] = found
        if not found.get("router"):
            manifest.write_paths(paths_dir, host, list(found.get("files") or {}), list(found.get("services") or {}))
    with open(os.path.join(raw_dir, "fast.json"), "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1, sort_keys=True)
    return doc, sorted(doc["fallback"])


def collect(inventory_dir, limit, extra_vars, raw_dir, skip_drift=False, drift="full", inventory=None, scope=None):
    """Run drift and collection (compliance.yml) in parallel into ``raw_dir``. Drift ``full``:
    site.yml --check --diff of every host of ``limit``; ``fast``: :func:`plan_fast`, and site.yml
    --check --diff only for the hosts that fall back (none: no drift run)."""
    facts_dir = os.path.join(raw_dir, "facts")
    os.makedirs(facts_dir, exist_ok=True)
    timings = {}
    jobs = [("collect", "playbooks/compliance.yml", False, limit)]
    paths_dir = ""
    if not skip_drift and drift == "fast":
        _doc, fallback = plan_fast(inventory, inventory_dir, scope, extra_vars, raw_dir)
        paths_dir = os.path.join(raw_dir, "manifest")
        if fallback:
            jobs.append(("drift", "playbooks/site.yml", True, ",".join(fallback)))
    elif not skip_drift:
        jobs.append(("drift", "playbooks/site.yml", True, limit))
    threads = []
    for key, playbook, check, job_limit in jobs:
        t = threading.Thread(target=_play, args=(playbook, inventory_dir, job_limit, list(extra_vars),
                                                 os.path.join(raw_dir, f"{key}.json"), check,
                                                 os.path.join(raw_dir, f"{key}.log"), timings, key,
                                                 facts_dir, paths_dir))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    if not skip_drift and drift == "fast" and "drift" not in timings:
        timings["drift"] = {"rc": 0, "seconds": 0.0, "recap": {}, "tail": "", "skipped": "no host fell back"}
        with open(os.path.join(raw_dir, "drift.json"), "w", encoding="utf-8") as fh:
            json.dump({"check_mode": True, "records": [], "stats": {}, "host_seconds": {}}, fh)
    with open(os.path.join(raw_dir, "runs.json"), "w", encoding="utf-8") as fh:
        json.dump(timings, fh, indent=1)
    return timings


def merge_fast(docs):
    """One fast.json from the waves' or slices' (None where a wave had none)."""
    docs = [d for d in docs if d]
    if not docs:
        return None
    return {"mode": "fast", "manifests": {h: m for d in docs for h, m in (d.get("manifests") or {}).items()},
            "fallback": {h: r for d in docs for h, r in (d.get("fallback") or {}).items()}}


def _write_fast(raw_dir, docs):
    merged = merge_fast(docs)
    if merged is not None:
        with open(os.path.join(raw_dir, "fast.json"), "w", encoding="utf-8") as fh:
            json.dump(merged, fh, indent=1, sort_keys=True)


def _rank(rc):
    """How bad a run's rc is: a run that failed to run outranks any ansible-playbook outcome."""
    return (rc not in RUN_OK, rc)


def merge_runs(wave_runs):
    """One runs.json from the waves' (in order): seconds add up, recaps merge, the worst rc wins (a
    run that failed to run over any other), the tail is that wave's (the last of equals)."""
    out = {}
    for runs in wave_runs:
        for key, info in runs.items():
            rc = info.get("rc", 0)
            cur = out.get(key)
            if cur is None:
                cur = out[key] = {"rc": rc, "seconds": 0.0, "recap": {}, "tail": info.get("tail", "")}
            cur["seconds"] = round(cur["seconds"] + (info.get("seconds") or 0), 2)
            cur["recap"].update(info.get("recap") or {})
            if _rank(rc) >= _rank(cur["rc"]):
                cur["rc"], cur["tail"] = rc, info.get("tail", "")
    return out


def collect_in_waves(inventory, inventory_dir, limit, extra_vars, raw_dir, skip_drift=False, log=print, drift="full",
                     scope=None):
    """:func:`collect` once per wave (jincai.run.waves) of the hosts ``limit`` names (every host when
    None), merged into ``raw_dir`` as if one run had made it: facts/ shared, collect.json, drift.json
    and runs.json merged, each wave's own files in wave-N/."""
    from jincai.run import waves as waves_mod

    all_waves = waves_mod.waves(inventory, limit.split(",") if limit else None)
    docs, wave_runs, fast_docs = {"collect": [], "drift": []}, [], []
    in_scope = set(scope or [])
    os.makedirs(os.path.join(raw_dir, "facts"), exist_ok=True)
    for n, (label, hosts) in enumerate(all_waves, 1):
        wave_dir = os.path.join(raw_dir, f"wave-{n}")
        os.makedirs(wave_dir, exist_ok=True)
        os.symlink(os.path.join("..", "facts"), os.path.join(wave_dir, "facts"))
        t0 = time.monotonic()
        runs = collect(inventory_dir, ",".join(hosts), extra_vars, wave_dir, skip_drift=skip_drift, drift=drift,
                       inventory=inventory, scope=[h for h in hosts if scope is None or h in in_scope])
        wave_runs.append(runs)
        fast_docs.append(_load_json(os.path.join(wave_dir, "fast.json")))
        for key in docs:
            docs[key].append(_load_json(os.path.join(wave_dir, f"{key}.json")))
        log(f"jincai compliance: wave {n}/{len(all_waves)} {label}: {len(hosts)} hosts, "
            + ", ".join(f"{k} rc {v['rc']}" for k, v in sorted(runs.items())) + f" ({time.monotonic() - t0:.0f} s)")
    for key, wave_docs in docs.items():
        if any(d is not None for d in wave_docs):
            with open(os.path.join(raw_dir, f"{key}.json"), "w", encoding="utf-8") as fh:
                json.dump(waves_mod.merge_records(wave_docs), fh, indent=1, sort_keys=True, default=str)
    _write_fast(raw_dir, fast_docs)
    merged = merge_runs(wave_runs)
    with open(os.path.join(raw_dir, "runs.json"), "w", encoding="utf-8") as fh:
        json.dump(merged, fh, indent=1)
    return merged


def merge_slices(raw_dirs, raw_dir):
    """Merge the raw directories of several slices of one nightly run (AWX job slicing: each job ran
    drift and collection on 1/N of the hosts) into ``raw_dir``: facts copied into one facts/, the
    record documents and runs.json merged as :func:`collect_in_waves` merges its waves. A host found in
    two slices is an error (the slices overlapped)."""
    import shutil

    from jincai.run import waves as waves_mod

    facts = os.path.join(raw_dir, "facts")
    os.makedirs(facts, exist_ok=True)
    seen = {}
    docs, runs, fast_docs = {"collect": [], "drift": []}, [], []
    for src in raw_dirs:
        fast_docs.append(_load_json(os.path.join(src, "fast.json")))
        src_facts = os.path.join(src, "facts")
        for name in sorted(os.listdir(src_facts)) if os.path.isdir(src_facts) else []:
            if name in seen:
                raise UsageError(f"--from: {name} is in two slices ({seen[name]} and {src}): they overlap")
            seen[name] = src
            shutil.copy2(os.path.join(src_facts, name), os.path.join(facts, name))
        for key in docs:
            docs[key].append(_load_json(os.path.join(src, f"{key}.json")))
        slice_runs = _load_json(os.path.join(src, "runs.json"))
        if slice_runs is None:  # AWX artifacts: a run whose record file exists ran
            slice_runs = {k: {"rc": 0} for k in docs if os.path.exists(os.path.join(src, f"{k}.json"))}
        runs.append(slice_runs)
    for key, slice_docs in docs.items():
        if any(d is not None for d in slice_docs):
            with open(os.path.join(raw_dir, f"{key}.json"), "w", encoding="utf-8") as fh:
                json.dump(waves_mod.merge_records(slice_docs), fh, indent=1, sort_keys=True, default=str)
    _write_fast(raw_dir, fast_docs)
    with open(os.path.join(raw_dir, "runs.json"), "w", encoding="utf-8") as fh:
        json.dump(merge_runs(runs), fh, indent=1)
    return raw_dir


def evaluate(raw_dir, inventory, scope, catalogue, meta):
    """Build the report from a raw directory (facts/, drift.json, collect.json, runs.json)."""
    from jincai.compliance import model

    runs = _load_json(os.path.join(raw_dir, "runs.json"))
    if runs is None:  # artifacts from elsewhere (AWX jobs): a run whose record file exists ran
        runs = {k: {"rc": 0} for k in ("collect", "drift") if os.path.exists(os.path.join(raw_dir, f"{k}.json"))}
    errors = list(meta.get("errors") or [])
    drift = None
    for key, playbook in (("collect", "playbooks/compliance.yml"), ("drift", "playbooks/site.yml")):
        info = runs.get(key)
        if info is None:
            continue
        doc = _load_json(os.path.join(raw_dir, f"{key}.json"))
        if info["rc"] not in RUN_OK or doc is None:
            errors.append(f"{playbook} failed to run (rc {info['rc']}): {info.get('tail', '')[-1500:]}")
        if key == "drift":
            drift = doc
        else:
            meta["collect_records"] = doc
    meta["drift_checked"] = "drift" in runs
    meta["errors"] = errors
    host_seconds = {}
    for key in ("collect", "drift"):
        doc = _load_json(os.path.join(raw_dir, f"{key}.json")) or {}
        for h, sec in (doc.get("host_seconds") or {}).items():
            host_seconds.setdefault(h, {})[key] = sec
    meta["timing"] = {"runs": {k: v.get("seconds") for k, v in runs.items()}, "host_seconds": host_seconds}
    return model.build_report(inventory, scope, _load_facts(os.path.join(raw_dir, "facts")), drift, catalogue,
                              meta, fast=_load_json(os.path.join(raw_dir, "fast.json")))


def _topology(m):
    """The WAN map's graph of the typed model ``m``, or None (and a warning) when it cannot be built."""
    from jincai.topology import graph

    try:
        return graph.from_model(m)
    except graph.TopologyError as exc:
        print(f"jincai compliance: no WAN map in the report: {exc}", file=sys.stderr)
        return None


def main(argv=None):
    """Entry point (``jincai compliance ARGS``); returns 0 clean, 1 findings, 2 the run failed."""
    from jincai.compliance import model, report
    from jincai.source import inventory as invmod

    args = build_parser().parse_args(argv)
    t0 = time.monotonic()
    started = dt.datetime.now(dt.timezone.utc)
    run_id = started.strftime("%Y%m%dT%H%M%SZ")
    try:
        catalogue = model.load_controls()
        m, _warnings = invmod.build_checked(args.inventory)
        inventory = invmod.from_model(m)
        scope, limit = resolve_scope(inventory, args.limit)
    except invmod.InvalidSource as exc:
        print(f"jincai compliance: invalid source, nothing was contacted:\n{exc}", file=sys.stderr)
        return 2
    except (UsageError, model.ControlsError) as exc:
        print(f"jincai compliance: {exc} (nothing was contacted)", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - e.g. a missing inventory directory
        print(f"jincai compliance: {args.inventory}: {exc} (nothing was contacted)", file=sys.stderr)
        return 2

    out_dir = os.path.abspath(args.output or os.path.join(args.reports_dir, run_id))
    history = args.history or os.path.join(os.path.dirname(out_dir), "history.json")
    os.makedirs(out_dir, exist_ok=True)
    if args.from_dir:
        raws = [os.path.join(os.path.abspath(d), "raw") for d in args.from_dir]
        missing = [d for d, r in zip(args.from_dir, raws) if not os.path.isdir(r)]
        if missing:
            print(f"jincai compliance: --from {', '.join(missing)}: no raw/ directory", file=sys.stderr)
            return 2
        try:
            raw_dir = raws[0] if len(raws) == 1 else merge_slices(raws, os.path.join(out_dir, "raw"))
        except UsageError as exc:
            print(f"jincai compliance: {exc} (nothing was contacted)", file=sys.stderr)
            return 2
    else:
        raw_dir = os.path.join(out_dir, "raw")
        if args.waves:
            collect_in_waves(inventory, args.inventory, limit, args.extra_vars, raw_dir, skip_drift=args.skip_drift,
                             log=(lambda m: None) if args.quiet else (lambda m: print(m, flush=True)),
                             drift=args.drift, scope=scope)
        else:
            collect(args.inventory, limit, args.extra_vars, raw_dir, skip_drift=args.skip_drift, drift=args.drift,
                    inventory=inventory, scope=scope)
    meta = {"run_id": run_id, "started": started.isoformat(timespec="seconds"), "inventory": args.inventory,
            "limit": args.limit, "network": os.path.basename(os.path.normpath(args.inventory)),
            "scope": scope}
    rep = evaluate(raw_dir, inventory, scope, catalogue, meta)
    rep["duration_s"] = round(time.monotonic() - t0, 1)
    rep["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    paths = report.write_all(rep, out_dir, history, topology=_topology(m))
    if args.keep_days:
        report.prune_runs(os.path.dirname(out_dir), args.keep_days)
    s = rep["summary"]
    if not args.quiet:
        for f in rep["findings"]:
            print(f"{f['site']} {f['host']:<14} {f['kind']:<11} {f['control']:<11} {f['title']}: {f['found'][:120]}")
        for err in rep.get("errors") or []:
            print(f"run error: {err}", file=sys.stderr)
    print(f"jincai compliance: {rep['status']}: {s['hosts']} hosts in {s['sites']} sites, {s['passed']} passed, "
          f"{s['failed']} failed, {s['drifted']} drifted, {s['unreachable']} unreachable, {s['findings']} findings "
          f"({rep['duration_s']} s); report {paths['html']}")
    fast = rep.get("fast_drift")
    if fast and not args.quiet:
        print(fast_summary(fast))
    return rep["exit_code"]


def fast_summary(fast):
    """The fast-drift lines of the command's output: which hosts fell back and why, what is uncovered."""
    lines = [f"fast drift: {len(fast['hosts'])} hosts compared with their manifests, "
             f"{len(fast['fallback'])} by site.yml --check"]
    for host, why in sorted(fast["fallback"].items()):
        lines.append(f"  fell back: {host}: {why}")
    if fast["uncovered"]:
        lines.append("  only --drift full checks what these modules do: " + ", ".join(
            f"{mod} ({n} tasks on {len(hosts)} hosts)" for mod, (n, hosts) in sorted(
                (k, (v["tasks"], v["hosts"])) for k, v in fast["uncovered"].items())))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
