"""The outcome of a verification run, read back from its JUnit XML: per host and per site, the summary
lines ``jincai verify`` prints, ``summary.json`` and the exit code.

Test names are ``test_<x>[<host>:<check id>]`` (jincai.verify.plan.Check.pytest_id; pytest-xdist's
loadgroup may append ``@<group>``). Exit codes, as ``jincai compliance``: 0 every check passed (skips
allowed), 1 some check failed (an unreachable host fails its checks), 2 the run itself failed.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

NAME_RE = re.compile(r"^(?P<test>[^\[]+)\[(?P<host>[^:\]]+):(?P<check>[^\]]+)\](?:@.*)?$")
#: pytest's exit codes that mean the checks ran: 0 all passed, 1 some failed.
PYTEST_RAN = (0, 1)


def parse_junit(path_or_text):
    """[{host, check, test, outcome (passed|failed|error|skipped), message, seconds}] from a JUnit file."""
    text = path_or_text
    if not text.lstrip().startswith("<"):
        with open(path_or_text, encoding="utf-8") as fh:
            text = fh.read()
    root = ET.fromstring(text)
    out = []
    for case in root.iter("testcase"):
        m = NAME_RE.match(case.get("name", ""))
        if not m:
            continue
        outcome, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            el = case.find(kind)
            if el is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[kind]
                message = (el.get("message") or el.text or "").strip()
                break
        out.append({"host": m["host"], "check": m["check"], "test": m["test"], "outcome": outcome,
                    "message": _first_line(message), "seconds": float(case.get("time") or 0)})
    return out


def _first_line(message):
    """The first non-empty line of a failure message, without pytest's ``Failed: `` prefix."""
    for line in message.splitlines():
        line = line.strip()
        m = re.match(r'^failed on (?:setup|teardown) with "(.*)"$', line)
        line = m.group(1) if m else line
        if line:
            return line[len("Failed: "):] if line.startswith("Failed: ") else line
    return ""


def summarise(results, hostvars, scope):
    """The run's summary: totals, one entry per site (hosts, counts, failed checks), status, exit code.

    ``hostvars``: the inventory's host vars (site and names of each host); ``scope``: the hosts the run
    covered (a host in scope with no result at all counts as failed: nothing was verified there).
    """
    counts = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
    sites = {}

    def site_entry(host):
        hv = hostvars.get(host) or {}
        s = hv.get("jincai_site") or {}
        code = hv.get("jincai_site_code") or s.get("code") or "unknown"
        return sites.setdefault(code, {"code": code, "name_zh": s.get("name_zh", ""), "pinyin": s.get("pinyin", ""),
                                       "tier": hv.get("jincai_tier") or s.get("tier", ""), "hosts": set(),
                                       "counts": dict.fromkeys(counts, 0), "failures": []})

    seen = set()
    for r in results:
        counts[r["outcome"]] += 1
        s = site_entry(r["host"])
        s["hosts"].add(r["host"])
        s["counts"][r["outcome"]] += 1
        seen.add(r["host"])
        if r["outcome"] in ("failed", "error"):
            s["failures"].append({"host": r["host"], "check": r["check"], "message": r["message"]})
    for host in scope:
        if host not in seen:
            s = site_entry(host)
            s["hosts"].add(host)
            s["counts"]["error"] += 1
            counts["error"] += 1
            s["failures"].append({"host": host, "check": "run", "message": f"{host}: no check result (the run "
                                  "stopped before it)"})
    for s in sites.values():
        s["hosts"] = sorted(s["hosts"])
        c = s["counts"]
        s["status"] = "failed" if c["failed"] or c["error"] else "passed"
    failed = counts["failed"] + counts["error"]
    return {"checks": sum(counts.values()), **counts, "hosts": len(set(scope) | seen), "sites_total": len(sites),
            "sites_failed": sum(1 for s in sites.values() if s["status"] == "failed"),
            "sites": [sites[k] for k in sorted(sites)], "status": "failed" if failed else "passed"}


def exit_code(summary, pytest_rc):
    """0 every check passed, 1 some failed, 2 the run failed (pytest could not run them or ran none)."""
    if pytest_rc not in PYTEST_RAN or summary is None or summary["checks"] == 0:
        return 2
    return 1 if summary["status"] == "failed" else 0


def site_lines(summary):
    """One line per site: code, name, tier, hosts, counts, and the failed checks (host: check)."""
    lines = []
    for s in summary["sites"]:
        c = s["counts"]
        failed = c["failed"] + c["error"]
        line = (f"{s['code']} {s['name_zh']} {s['tier']}: {s['status'].upper()} {len(s['hosts'])} hosts, "
                f"{c['passed']} passed, {failed} failed, {c['skipped']} skipped")
        if s["failures"]:
            shown = ", ".join(f"{f['host']} {f['check']}" for f in s["failures"][:6])
            line += f" [{shown}{', ...' if len(s['failures']) > 6 else ''}]"
        lines.append(line)
    return lines


def failure_lines(summary):
    """One line per distinct failure message (an unreachable host's checks share one), with a count."""
    counts, order = {}, []
    for s in summary["sites"]:
        for f in s["failures"]:
            msg = f["message"] or f"{f['host']}: {f['check']}: failed"
            if msg not in counts:
                order.append(msg)
            counts[msg] = counts.get(msg, 0) + 1
    return [f"FAILED {m}" + (f" ({counts[m]} checks)" if counts[m] > 1 else "") for m in order]


def write_summary(summary, path, meta=None):
    """Write summary.json (sites' host sets as lists)."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({**(meta or {}), **summary}, fh, indent=1, ensure_ascii=False)
        fh.write("\n")
