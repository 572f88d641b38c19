"""The compliance report's data model: from collected facts and drift records to findings per site.

Pure functions (no host is contacted): ``build_report`` takes the inventory, the hosts in scope, the
fact documents written by playbooks/compliance.yml, the drift records written by the jincai_drift
callback and the control catalogue, and returns the report dict that every output format renders.
"""

import os
import re

import yaml

from jincai import ROOT
from jincai.compliance import checks
from jincai.policy import intended

CONTROLS_FILE = os.path.join(ROOT, "jincai", "data", "mlps_controls.yml")
UNREACHABLE_CONTROL = "L3-SMC1-09"
STATUSES = ("passed", "failed", "drifted", "unreachable")


class ControlsError(Exception):
    """The control catalogue is malformed (message names the file and the field)."""


def load_controls(path=CONTROLS_FILE):
    """Load and check the control catalogue; raise ControlsError naming the file and field."""
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    controls = data.get("controls") or {}
    for cid, c in controls.items():
        for field in ("clause", "text", "summary"):
            if not isinstance(c, dict) or not c.get(field):
                raise ControlsError(f"{path}: controls.{cid}.{field}: missing")
    for i, rule in enumerate(data.get("drift_rules") or []):
        if rule.get("control") not in controls:
            raise ControlsError(f"{path}: drift_rules[{i}].control: unknown control {rule.get('control')!r}")
        for field in ("role", "task", "action", "diff"):
            if field in rule:
                try:
                    re.compile(rule[field])
                except re.error as exc:
                    raise ControlsError(f"{path}: drift_rules[{i}].{field}: bad regex: {exc}") from exc
    exp = data.get("expected") or {}
    used = {c for _i, c, _t, _f in checks.SERVER_CHECKS + checks.ROUTER_CHECKS}
    for key in ("services", "enabled_services"):
        used |= {c for table in (exp.get(key) or {}).values() for c in (table or {}).values()}
    for cid in sorted(used - set(controls)):
        raise ControlsError(f"{path}: controls: {cid} is used by a check but not defined")
    return data


def drift_control(record, rules):
    """Return the control ID a drift record maps to (first matching rule)."""
    for rule in rules:
        ok = True
        for field in ("role", "task", "action", "diff"):
            if field in rule and not re.search(rule[field], record.get(field) or "", re.I):
                ok = False
                break
        if ok:
            return rule["control"]
    return rules[-1]["control"] if rules else "L3-CES1-25"


def _site_info(hv):
    site = hv.get("jincai_site") or {}
    return {
        "code": hv.get("jincai_site_code") or site.get("code") or "unknown",
        "tier": hv.get("jincai_tier") or site.get("tier") or "unknown",
        "name_zh": site.get("name_zh", ""),
        "pinyin": site.get("pinyin", ""),
        "parent": site.get("parent"),
        "city_code": site.get("city_code"),
    }


def _finding(kind, host, site, control, controls, **kw):
    c = controls.get(control) or {}
    f = {"kind": kind, "host": host, "site": site["code"], "tier": site["tier"],
         "city": site.get("city_code"), "control": control, "clause": c.get("clause", ""),
         "control_text": c.get("text", ""), "control_summary": c.get("summary", ""),
         "title": "", "expected": "", "found": "", "diff": "", "task": "", "role": "", "check": ""}
    f.update(kw)
    return f


def _fast_value(attribute, value):
    if attribute == "sha256" and isinstance(value, str) and len(value) == 64:
        return "content sha256 " + value[:16] + "..."
    return "" if value is None else str(value)


def fast_findings(fast, scope, collected, host_entry, rules, controls):
    """Fast drift (jincai.compliance.manifest): each difference between a host's manifest and what the
    collection read becomes a drift finding of the host; returns (findings, the report's ``fast_drift``:
    hosts compared, hosts that fell back with the reason, uncovered modules with task and host counts)."""
    from jincai.compliance import manifest

    found, compared, uncovered = [], [], {}
    in_scope = set(scope)
    for name, man in sorted((fast.get("manifests") or {}).items()):
        if name not in in_scope:
            continue
        h = host_entry(name)
        for mod, n in (man.get("uncovered") or {}).items():
            u = uncovered.setdefault(mod, {"tasks": 0, "hosts": []})
            u["tasks"] += n
            u["hosts"].append(name)
        doc = collected.get(name)
        if h["unreachable"] or doc is None:
            continue
        compared.append(name)
        for d in manifest.compare_collected(man, doc):
            diff = d["found"] if d["kind"] == "router" and d["found"] else d["expected"] if d["kind"] == "router" else ""
            record = {"role": d["role"], "task": d["task"], "action": d["module"],
                      "diff": diff or f"{d['name']} {d['expected']} {d['found']}"}
            h["drifted"] = True
            found.append(_finding("drift", name, h["site"], drift_control(record, rules), controls, task=d["task"],
                                  role=d["role"], diff=diff,
                                  title=f"{d['role'] or d['module']}: {d['kind']} {d['name']} ({d['attribute']})",
                                  expected=_fast_value(d["attribute"], d["expected"]) or "(none)",
                                  found=_fast_value(d["attribute"], d["found"]) or "(none)"))
    info = {"hosts": compared,
            "fallback": {h: why for h, why in sorted((fast.get("fallback") or {}).items()) if h in in_scope},
            "uncovered": dict(sorted(uncovered.items()))}
    return found, info


def build_report(inventory, scope, collected, drift, catalogue, meta=None, fast=None):
    """Assemble the report dict.

    ``inventory``: ansible-inventory style dict; ``scope``: host names the run covers;
    ``collected``: {host: fact document} from playbooks/compliance.yml; ``drift``: the jincai_drift
    document of the check-mode site.yml run (None when skipped) and ``meta["collect_records"]`` the one
    of the collection run; ``catalogue``: load_controls(); ``fast``: the fast-drift plan (raw/fast.json:
    the manifests compared and the hosts that fell back to the check-mode run, whose records are in
    ``drift``). Returns a dict (see docs/compliance.md).
    """
    meta = dict(meta or {})
    hv_all = inventory["_meta"]["hostvars"]
    controls = catalogue["controls"]
    rules = catalogue.get("drift_rules") or []
    exp = catalogue.get("expected") or {}
    collect_doc = meta.pop("collect_records", None) or {"records": [], "stats": {}}
    drift_doc = drift or {"records": [], "stats": {}}

    hosts = {}
    findings = []

    def host_entry(name):
        if name not in hosts:
            hv = hv_all.get(name, {})
            kind = "router" if "router" in (hv.get("jincai_functions") or []) else "server"
            hosts[name] = {"host": name, "site": _site_info(hv), "kind": kind, "checks": [],
                           "unreachable": False, "drifted": False, "failed": False, "messages": []}
        return hosts[name]

    for name in scope:
        host_entry(name)

    # unreachable hosts (either run); a router whose config could not be read does not answer
    for doc, run in ((drift_doc, "drift"), (collect_doc, "collect")):
        for r in doc.get("records") or []:
            if r["status"] == "unreachable" or (run == "collect" and r["status"] == "failed"
                                                and "running config" in (r.get("task") or "")):
                h = host_entry(r["host"])
                h["unreachable"] = True
                h["messages"].append(f"{run}: {r.get('msg', '').strip()[:500]}")

    # drift: changed (and failed) tasks of the check-mode site.yml run. A role whose changed tasks
    # include one with a diff reports those; its diff-less changes (restarts, reloads that would
    # follow) are folded into them.
    changed = [r for r in drift_doc.get("records") or [] if r["status"] in ("changed", "failed")
               and not r.get("ignored")]
    with_diff = {(r["host"], r.get("role")) for r in changed if r["status"] == "changed" and r.get("diff")}
    followers = {}
    for r in changed:
        if r["status"] == "changed" and not r.get("diff") and (r["host"], r.get("role")) in with_diff:
            followers.setdefault((r["host"], r.get("role")), []).append(r.get("task", ""))
    for r in changed:
        h = host_entry(r["host"])
        if h["unreachable"]:
            continue
        key = (r["host"], r.get("role"))
        if r["status"] == "changed" and not r.get("diff") and key in with_diff:
            continue
        control = drift_control(r, rules)
        kind = "drift" if r["status"] == "changed" else "error"
        h["drifted" if kind == "drift" else "failed"] = True
        found = ("differs (check mode reports a change)" if kind == "drift"
                 else "check mode failed: " + (r.get("msg") or "")[:1000])
        if kind == "drift" and followers.get(key):
            found += "; would also: " + "; ".join(sorted(set(followers[key])))
        findings.append(_finding(kind, r["host"], h["site"], control, controls, task=r.get("task", ""),
                                 role=r.get("role", ""), title=f"{r.get('role') or r.get('play')}: {r.get('task')}",
                                 expected="the intended state (site.yml)", found=found, diff=r.get("diff", "")))

    if fast is not None:
        fast_found, meta["fast_drift"] = fast_findings(fast, scope, collected, host_entry, rules, controls)
        findings += fast_found

    # checks on the collected facts
    for name in scope:
        h = host_entry(name)
        if h["unreachable"]:
            continue
        doc = collected.get(name)
        if doc is None:
            h["failed"] = True
            msg = "; ".join(r.get("msg", "")[:300] for r in collect_doc.get("records") or []
                            if r["host"] == name) or "no facts were collected"
            h["messages"].append(msg)
            findings.append(_finding("error", name, h["site"], UNREACHABLE_CONTROL, controls,
                                     title="compliance facts could not be collected",
                                     expected="facts collected", found=msg))
            continue
        ctx = doc.get("context") or {}
        if doc.get("kind") != "router" and name in hv_all:
            # what may listen: one definition with jincai verify (jincai.policy.intended), for the functions and
            # applications the collection recorded (the inventory's when the context lacks them)
            hv = hv_all[name]
            inv_vars = (intended.inventory_vars(meta["inventory"], name, intended.host_groups(inventory, name))
                        if meta.get("inventory") and os.path.isdir(meta["inventory"]) else {})
            functions = ctx.get("functions") or hv.get("jincai_functions")
            ctx = dict(ctx, allowed_ports=intended.allowed_ports(functions, exp, intended.listeners(
                functions, ctx.get("apps", hv.get("jincai_apps")),
                ctx.get("applications") or hv.get("jincai_applications"), exp, hv, inv_vars)))
        if doc.get("kind") == "router":
            results = checks.evaluate_router(doc.get("config") or "", ctx, exp, doc.get("nft"))
        else:
            results = checks.evaluate_server(doc.get("facts") or {}, ctx, exp)
        h["checks"] = [r.to_dict() for r in results]
        for r in results:
            if not r.passed:
                h["failed"] = True
                findings.append(_finding("check", name, h["site"], r.control, controls, check=r.check,
                                         title=r.title, expected=r.expected, found=r.found))

    for name, h in hosts.items():
        if h["unreachable"]:
            findings.append(_finding("unreachable", name, h["site"], UNREACHABLE_CONTROL, controls,
                                     title="host did not answer", expected="reachable",
                                     found="; ".join(h["messages"]) or "unreachable"))
            h["status"] = "unreachable"
        elif h["failed"]:
            h["status"] = "failed"
        elif h["drifted"]:
            h["status"] = "drifted"
        else:
            h["status"] = "passed"

    findings.sort(key=lambda f: (f["site"], f["host"], f["control"], f["kind"], f["check"] or f["task"]))
    for i, f in enumerate(findings, 1):
        f["id"] = i

    sites = {}
    for name in sorted(hosts):
        h = hosts[name]
        s = sites.setdefault(h["site"]["code"], dict(h["site"], hosts=[], findings=0,
                                                     counts={k: 0 for k in STATUSES}))
        s["hosts"].append(name)
        if h["unreachable"]:
            s["counts"]["unreachable"] += 1
        else:
            s["counts"]["failed"] += int(h["failed"])
            s["counts"]["drifted"] += int(h["drifted"])
            s["counts"]["passed"] += int(not h["failed"] and not h["drifted"])
    for f in findings:
        sites[f["site"]]["findings"] += 1
    for s in sites.values():
        c = s["counts"]
        s["status"] = ("unreachable" if c["unreachable"] else "failed" if c["failed"] else
                       "drifted" if c["drifted"] else "passed")

    summary = {k: sum(1 for h in hosts.values() if h["status"] == k) for k in STATUSES}
    summary.update(hosts=len(hosts), sites=len(sites), findings=len(findings),
                   checks=sum(len(h["checks"]) for h in hosts.values()),
                   checks_failed=sum(1 for f in findings if f["kind"] == "check"),
                   drift=sum(1 for f in findings if f["kind"] == "drift"),
                   errors=sum(1 for f in findings if f["kind"] == "error"),
                   drifted_hosts=sum(1 for h in hosts.values() if h["drifted"]),
                   failed_hosts=sum(1 for h in hosts.values() if h["failed"] and not h["unreachable"]))
    by_tier = {}
    for s in sites.values():
        t = by_tier.setdefault(s["tier"], {"sites": 0, "clean": 0, **{k: 0 for k in STATUSES}})
        t["sites"] += 1
        t["clean"] += int(s["status"] == "passed")
        for k in STATUSES:
            t[k] += s["counts"][k]
    summary["by_tier"] = by_tier

    report = {"schema": 1, **meta, "summary": summary,
              "sites": [sites[k] for k in sorted(sites)],
              "hosts": {k: {kk: vv for kk, vv in v.items() if kk not in ("failed", "drifted")}
                        | {"failed_checks": sum(1 for c in v["checks"] if not c["passed"]),
                           "is_failed": v["failed"], "is_drifted": v["drifted"]}
                        for k, v in sorted(hosts.items())},
              "findings": findings,
              "controls": {c: controls[c] for c in sorted({f["control"] for f in findings})}}
    errors = meta.get("errors") or []
    report["status"] = "error" if errors else ("findings" if findings else "clean")
    report["exit_code"] = {"clean": 0, "findings": 1, "error": 2}[report["status"]]
    return report
