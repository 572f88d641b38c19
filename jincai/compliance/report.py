"""Render a compliance report: JSON, JUnit XML, a self-contained HTML page, and the run history."""

import html
import json
import os
import shutil
import time
import xml.etree.ElementTree as ET

HISTORY_MAX = 400
TIER_ORDER = {"province": 0, "city": 1, "county": 2}


def write_json(report, path):
    """Write the machine-readable report."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(report, fh, ensure_ascii=False, indent=1, sort_keys=True)


# ---------------------------------------------------------------- JUnit

def junit_tree(report):
    """Return an ElementTree: one testsuite per site, one testcase per host check, drift and reachability."""
    root = ET.Element("testsuites", name="jincai compliance", time=f"{report.get('duration_s', 0):.1f}")
    by_host = {}
    for f in report["findings"]:
        by_host.setdefault(f["host"], []).append(f)
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for site in report["sites"]:
        suite = ET.SubElement(root, "testsuite", name=f"{site['code']} {site['pinyin']} ({site['tier']})")
        counts = {"tests": 0, "failures": 0, "errors": 0}
        for host in site["hosts"]:
            h = report["hosts"][host]
            cls = f"{site['code']}.{host}"
            if h["status"] == "unreachable":
                tc = ET.SubElement(suite, "testcase", classname=cls, name="host is reachable")
                f = next(x for x in by_host.get(host, []) if x["kind"] == "unreachable")
                ET.SubElement(tc, "error", message=f"unreachable ({f['control']})").text = f["found"]
                counts["tests"] += 1
                counts["errors"] += 1
                continue
            for c in h["checks"]:
                tc = ET.SubElement(suite, "testcase", classname=cls, name=f"{c['control']} {c['check']}: {c['title']}")
                counts["tests"] += 1
                if not c["passed"]:
                    counts["failures"] += 1
                    ET.SubElement(tc, "failure", message=f"expected {c['expected']}; found {c['found']}",
                                  type=c["control"]).text = f"expected: {c['expected']}\nfound: {c['found']}"
            drift = [f for f in by_host.get(host, []) if f["kind"] in ("drift", "error")]
            tc = ET.SubElement(suite, "testcase", classname=cls, name="no drift from the intended state")
            counts["tests"] += 1
            for f in drift:
                counts["failures"] += 1
                ET.SubElement(tc, "failure", message=f"{f['control']} {f['kind']}: {f['title']}",
                              type=f["control"]).text = f"{f['found']}\n{f['diff']}"
            if not h["checks"]:
                tc = ET.SubElement(suite, "testcase", classname=cls, name="compliance facts collected")
                ET.SubElement(tc, "error", message="no facts were collected").text = "; ".join(h.get("messages") or [])
                counts["tests"] += 1
                counts["errors"] += 1
        for k, v in counts.items():
            suite.set(k, str(v))
            totals[k] += v
    for k, v in totals.items():
        root.set(k, str(v))
    return ET.ElementTree(root)


def write_junit(report, path):
    """Write the JUnit XML (for CI and AWX)."""
    tree = junit_tree(report)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)


# ---------------------------------------------------------------- history

def load_history(path):
    """Return the list of past run summaries (oldest first)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, list) else []
    except (OSError, ValueError):
        return []


def history_entry(report):
    """The short record of one run kept in history.json."""
    s = report["summary"]
    return {"run_id": report.get("run_id"), "started": report.get("started"), "status": report["status"],
            "limit": report.get("limit"), "duration_s": report.get("duration_s"),
            **{k: s.get(k, 0) for k in ("hosts", "passed", "failed", "drifted", "unreachable", "findings",
                                        "drift", "checks_failed")},
            "sites": {x["code"]: x["findings"] for x in report["sites"]}}


def append_history(path, report):
    """Add this run to history.json (bounded) and return the whole history."""
    hist = [h for h in load_history(path) if h.get("run_id") != report.get("run_id")]
    hist.append(history_entry(report))
    hist = hist[-HISTORY_MAX:]
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(hist, fh, ensure_ascii=False, indent=1)
    os.replace(tmp, path)
    return hist


def prune_runs(base, keep_days, now=None):
    """Delete run directories under ``base`` older than ``keep_days``; return the names removed."""
    now = now or time.time()
    removed = []
    for name in sorted(os.listdir(base)):
        path = os.path.join(base, name)
        if not os.path.isdir(path) or not os.path.exists(os.path.join(path, "report.json")):
            continue
        if now - os.path.getmtime(path) > keep_days * 86400:
            shutil.rmtree(path)
            removed.append(name)
    return removed


# ---------------------------------------------------------------- HTML

CSS = """
body{font-family:"Noto Sans CJK SC","WenQuanYi Micro Hei","DejaVu Sans",sans-serif;margin:24px;color:#1d2733}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px;border-bottom:2px solid #d8dee6}
h3{font-size:15px;margin:18px 0 6px} .meta{color:#5a6877;font-size:13px}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px} th,td{border:1px solid #ccd4dd;padding:4px 8px;
text-align:left;vertical-align:top} th{background:#eef2f6} td.n{text-align:right}
.badge{display:inline-block;padding:1px 8px;border-radius:9px;font-size:12px;color:#fff}
.passed,.clean{background:#2e7d32} .failed,.findings{background:#c62828} .drifted{background:#ef6c00}
.unreachable,.error{background:#6a1b9a} .check{background:#c62828}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:12px 0} .card{border:1px solid #ccd4dd;border-radius:6px;
padding:8px 14px;min-width:110px} .card b{display:block;font-size:24px}
pre{background:#f6f8fa;border:1px solid #e1e4e8;padding:6px;max-width:900px;overflow:auto;font-size:12px;margin:4px 0}
.z{color:#5a6877} .map svg{max-width:100%;height:auto;display:block} .map{margin:8px 0 16px}
"""


def _e(x):
    return html.escape(str(x if x is not None else ""))


def _badge(status):
    return f'<span class="badge {_e(status)}">{_e(status)}</span>'


def _trend_svg(history, width=620, height=120):
    """An inline SVG bar chart of findings (and unreachable hosts) over the last runs."""
    runs = history[-30:]
    if not runs:
        return ""
    peak = max([r.get("findings", 0) for r in runs] + [1])
    bw = min(width / max(len(runs), 1), 40.0)
    bars = []
    for i, r in enumerate(runs):
        fh = (height - 20) * r.get("findings", 0) / peak
        uh = (height - 20) * min(r.get("unreachable", 0), r.get("findings", 0)) / peak
        x = i * bw + 2
        color = "#2e7d32" if r.get("status") == "clean" else "#c62828" if r.get("status") == "findings" else "#6a1b9a"
        bars.append(f'<rect x="{x:.1f}" y="{height - 16 - fh:.1f}" width="{bw - 4:.1f}" height="{max(fh, 1):.1f}" '
                    f'fill="{color}"><title>{_e(r.get("run_id"))}: {r.get("findings", 0)} findings</title></rect>')
        if uh:
            bars.append(f'<rect x="{x:.1f}" y="{height - 16 - uh:.1f}" width="{bw - 4:.1f}" height="{uh:.1f}" '
                        f'fill="#6a1b9a"/>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
            f'aria-label="findings per run"><line x1="0" y1="{height - 15}" x2="{width}" y2="{height - 15}" '
            f'stroke="#999"/>{"".join(bars)}<text x="0" y="{height - 2}" font-size="10" fill="#555">'
            f'{_e(runs[0].get("run_id"))}</text><text x="{width}" y="{height - 2}" font-size="10" fill="#555" '
            f'text-anchor="end">{_e(runs[-1].get("run_id"))}</text><text x="4" y="12" font-size="10" '
            f'fill="#555">max {peak}</text></svg>')


def _site_row(site, previous):
    c = site["counts"]
    prev = previous.get(site["code"]) if previous else None
    delta = "" if prev is None else f"{site['findings'] - prev:+d}"
    found = (f'<a href="#findings-{_e(site["code"])}">{site["findings"]}</a>' if site["findings"]
             else site["findings"])
    return (f'<tr id="site-{_e(site["code"])}"><td>{_e(site["code"])}</td>'
            f"<td>{_e(site['name_zh'])} <span class=z>{_e(site['pinyin'])}</span></td>"
            f"<td>{_e(site['tier'])}</td><td>{_badge(site['status'])}</td>"
            f"<td class=n>{len(site['hosts'])}</td><td class=n>{c['passed']}</td><td class=n>{c['failed']}</td>"
            f"<td class=n>{c['drifted']}</td><td class=n>{c['unreachable']}</td><td class=n>{found}</td>"
            f"<td class=n>{_e(delta)}</td></tr>")


SITE_HEAD = ("<tr><th>code</th><th>site</th><th>tier</th><th>status</th><th>hosts</th><th>passed</th>"
             "<th>failed</th><th>drifted</th><th>unreachable</th><th>findings</th><th>vs last run</th></tr>")


def _map_section(report, topology):
    """The WAN map (jincai.topology) with each site coloured by its result, each node linking to its row."""
    from jincai.topology import draw, state

    states = state.site_states_from_report(report)
    legend = "".join(f'<span class="badge" style="background:{fill};color:{text}">{_e(name)}</span> '
                     for name, (fill, text) in state.SITE_STATES.items())
    out = ['<h2 id="map">WAN map</h2>',
           f"<p class=meta>{legend} · solid line: primary uplink · dashed line: backup uplink · "
           "a site links to its row below</p>"]
    try:
        svg = draw.draw(topology, site_states=states, href=lambda code: f"#site-{code}" if code in states else None)
    except draw.TopologyError as exc:
        out.append(f"<p>{_badge('error')} the map could not be drawn: {_e(exc)}</p>")
        return out
    out.append(f'<div class="map">{draw.inline(svg)}</div>')
    return out


def _fast_section(fast):
    """Fast drift: hosts compared with their manifests, the hosts that fell back and why, what only
    ``--drift full`` checks (the uncovered modules)."""
    if not fast:
        return []
    out = [f'<h2 id="fast-drift">Fast drift</h2><p>{len(fast["hosts"])} hosts compared with the manifest of '
           f'their last successful site.yml; {len(fast["fallback"])} by site.yml --check --diff.</p>']
    if fast["fallback"]:
        out.append("<table><tr><th>host</th><th>fell back because</th></tr>" + "".join(
            f"<tr><td>{_e(h)}</td><td>{_e(why)}</td></tr>" for h, why in sorted(fast["fallback"].items())) + "</table>")
    if fast["uncovered"]:
        out.append("<p>Only <code>--drift full</code> checks what these modules do:</p><table><tr><th>module</th>"
                   "<th>tasks</th><th>hosts</th></tr>" + "".join(
                       f"<tr><td>{_e(m)}</td><td class=n>{u['tasks']}</td><td class=n>{len(u['hosts'])}</td></tr>"
                       for m, u in sorted(fast["uncovered"].items())) + "</table>")
    return out


def render_html(report, history, topology=None):
    """Return the HTML report: province summary, WAN map, a table per city with its counties, findings, trend.

    ``topology``: a :class:`jincai.topology.graph.Topology` to draw the map from (no map when None).
    """
    s = report["summary"]
    previous = history[-2]["sites"] if len(history) >= 2 else None
    sites = report["sites"]
    out = ["<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
           f"<title>jincai compliance {_e(report.get('run_id'))}</title><style>{CSS}</style></head><body>",
           f"<h1>MLPS level-3 compliance and drift — {_e(report.get('network', 'jincai'))} {_badge(report['status'])}</h1>",
           f"<p class=meta>run {_e(report.get('run_id'))} · started {_e(report.get('started'))} · "
           f"{_e(report.get('duration_s'))} s · inventory {_e(report.get('inventory'))} · limit "
           f"{_e(report.get('limit') or 'all')} · drift {('fast' if report.get('fast_drift') else 'checked') if report.get('drift_checked') else 'skipped'}"
           f" · nothing was changed on any host</p>"]
    for err in report.get("errors") or []:
        out.append(f"<p>{_badge('error')} {_e(err)}</p>")
    out.append('<h2 id="province">Province summary</h2><div class=cards>')
    for k, label in (("hosts", "hosts"), ("passed", "passed"), ("failed", "failed"), ("drifted", "drifted"),
                     ("unreachable", "unreachable"), ("findings", "findings")):
        out.append(f'<div class="card"><b>{s.get(k, 0)}</b>{label}</div>')
    out.append("</div><table><tr><th>tier</th><th>sites</th><th>clean sites</th><th>passed</th><th>failed</th>"
               "<th>drifted</th><th>unreachable</th></tr>")
    for tier, t in sorted(s["by_tier"].items(), key=lambda kv: TIER_ORDER.get(kv[0], 9)):
        out.append(f"<tr><td>{_e(tier)}</td><td class=n>{t['sites']}</td><td class=n>{t['clean']}</td>"
                   f"<td class=n>{t['passed']}</td><td class=n>{t['failed']}</td><td class=n>{t['drifted']}</td>"
                   f"<td class=n>{t['unreachable']}</td></tr>")
    out.append("</table>")
    if topology is not None:
        out += _map_section(report, topology)
    prov = [x for x in sites if x["tier"] == "province"]
    if prov:
        out.append("<h3>Province</h3><table>" + SITE_HEAD + "".join(_site_row(x, previous) for x in prov) + "</table>")
    cities = [x for x in sites if x["tier"] == "city"]
    city_codes = {x["code"] for x in cities}
    orphans = [x for x in sites if x["tier"] not in ("province", "city") and x.get("city_code") not in city_codes]
    out.append('<h2 id="sites">Cities and counties</h2>')
    for city in cities:
        rows = [city] + [x for x in sites if x["tier"] == "county" and x.get("city_code") == city["code"]]
        out.append(f"<h3>{_e(city['code'])} {_e(city['name_zh'])} <span class=z>{_e(city['pinyin'])}</span></h3>"
                   f"<table>{SITE_HEAD}{''.join(_site_row(x, previous) for x in rows)}</table>")
    if orphans:
        out.append("<h3>Other sites</h3><table>" + SITE_HEAD + "".join(_site_row(x, previous) for x in orphans)
                   + "</table>")
    out += _fast_section(report.get("fast_drift"))
    out.append(f'<h2 id="findings">Findings ({len(report["findings"])})</h2>')
    if not report["findings"]:
        out.append("<p>No findings: every host in scope answered, passed every check and matches the intended "
                   "state.</p>")
    by_site = {}
    for f in report["findings"]:
        by_site.setdefault(f["site"], []).append(f)
    names = {x["code"]: x for x in sites}
    labels = {"check": "failed", "drift": "drifted", "error": "error", "unreachable": "unreachable"}
    for code in sorted(by_site):
        site = names.get(code, {})
        out.append(f'<h3 id="findings-{_e(code)}">{_e(code)} {_e(site.get("name_zh", ""))} '
                   f'<span class=z>{_e(site.get("pinyin", ""))} · {_e(site.get("tier", ""))}</span></h3>')
        out.append("<table><tr><th>#</th><th>host</th><th>kind</th><th>control</th><th>check / task</th>"
                   "<th>expected</th><th>found</th></tr>")
        for f in by_site[code]:
            diff = f'<pre>{_e(f["diff"])}</pre>' if f.get("diff") else ""
            out.append(
                f"<tr id=f{f['id']}><td class=n>{f['id']}</td><td>{_e(f['host'])}</td>"
                f"<td>{_badge(labels.get(f['kind'], f['kind']))}</td>"
                f"<td><a href=\"#c-{_e(f['control'])}\"><b>{_e(f['control'])}</b></a><br>"
                f"<span class=z>{_e(f['clause'])}</span></td>"
                f"<td>{_e(f['title'])}<br><span class=z>{_e(f['check'] or f['task'])}</span></td>"
                f"<td>{_e(f['expected'])}</td><td>{_e(f['found'])}{diff}</td></tr>")
        out.append("</table>")
    if report.get("controls"):
        out.append('<h2 id="controls">Controls cited</h2><table><tr><th>control</th><th>clause</th>'
                   '<th>requirement (GB/T 22239-2019)</th><th>summary</th><th>findings</th></tr>')
        counts = {}
        for f in report["findings"]:
            counts[f["control"]] = counts.get(f["control"], 0) + 1
        for cid, c in sorted(report["controls"].items()):
            out.append(f'<tr id="c-{_e(cid)}"><td><b>{_e(cid)}</b></td><td>{_e(c.get("clause"))}</td>'
                       f'<td>{_e(c.get("text"))}</td><td>{_e(c.get("summary"))}</td>'
                       f'<td class=n>{counts.get(cid, 0)}</td></tr>')
        out.append("</table>")
    out.append('<h2 id="trend">Trend</h2>')
    out.append(_trend_svg(history))
    out.append("<table><tr><th>run</th><th>status</th><th>limit</th><th>hosts</th><th>failed</th><th>drifted</th>"
               "<th>unreachable</th><th>findings</th><th>seconds</th></tr>")
    for h in reversed(history[-15:]):
        out.append(f"<tr><td>{_e(h.get('run_id'))}</td><td>{_badge(h.get('status'))}</td><td>{_e(h.get('limit') or 'all')}"
                   f"</td><td class=n>{h.get('hosts', 0)}</td><td class=n>{h.get('failed', 0)}</td>"
                   f"<td class=n>{h.get('drifted', 0)}</td><td class=n>{h.get('unreachable', 0)}</td>"
                   f"<td class=n>{h.get('findings', 0)}</td><td class=n>{_e(h.get('duration_s'))}</td></tr>")
    out.append("</table></body></html>")
    return "\n".join(out)


def write_all(report, out_dir, history_path, topology=None):
    """Write report.json, junit.xml and report.html (with the WAN map of ``topology`` when given) into
    ``out_dir``; update the history. Return the paths."""
    os.makedirs(out_dir, exist_ok=True)
    hist = append_history(history_path, report) if history_path else [history_entry(report)]
    paths = {"json": os.path.join(out_dir, "report.json"), "junit": os.path.join(out_dir, "junit.xml"),
             "html": os.path.join(out_dir, "report.html")}
    write_json(report, paths["json"])
    write_junit(report, paths["junit"])
    with open(paths["html"], "w", encoding="utf-8") as fh:
        fh.write(render_html(report, hist, topology))
    return paths
