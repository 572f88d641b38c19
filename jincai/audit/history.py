"""``jincai history``: what changed on a site, when, and who ran it, from the ARA audit trail.

Reads network N's store (jincai.audit: ``/var/lib/jincai/ara/N``, or the ARA server named by
``ARA_API_CLIENT=http`` and ``ARA_API_SERVER``) through ARA's own API client, the one its CLI and
web UI use. For each run in the window: start time, user and controller, playbook, status, check
and limit labels; then every changed result (on the site's hosts with ``--site``) with its task and,
with ``--diff``, the diff. Failed and unreachable results are listed too: a change that did not
happen is part of the answer.
"""

import argparse
import datetime as dt
import difflib
import json
import os
import re
import subprocess
import sys

from jincai import ROOT, audit

DEFAULT_INVENTORY = os.path.join(ROOT, "inventories", "lab")
SINCE_RE = re.compile(r"^(\d+)([mhdw])$")
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
SHOWN = ("changed", "failed", "unreachable")


class HistoryError(Exception):
    """Bad input or an unreadable store."""


def parse_since(text, now=None):
    """``7d`` / ``12h`` / ``30m`` / ``2w`` or an ISO date(time) -> an aware UTC datetime."""
    now = now or dt.datetime.now(dt.timezone.utc)
    m = SINCE_RE.match(text.strip())
    if m:
        return now - dt.timedelta(**{UNITS[m.group(2)]: int(m.group(1))})
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise HistoryError(f"--since {text}: not a duration (7d, 12h, 30m, 2w) nor an ISO date") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def client_for(network):
    """ARA's API client for ``network``: the HTTP server when ``ARA_API_CLIENT=http``, else the
    network's sqlite store (offline client, read only: no migration). Runs whose journal is not
    imported yet (jincai.audit.journal) are imported first, and again before each :func:`history`."""
    from ara.clients.utils import get_client

    from jincai.audit import journal

    def drain():
        try:
            left = journal.drain(os.path.join(audit.store_dir(network), journal.DIR_NAME))
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            left = [str(exc)]
        if left:
            print(f"jincai history: {len(left)} run journal(s) not imported yet (a run under way, or see "
                  f"{os.path.join(audit.store_dir(network), journal.DIR_NAME, journal.LOG_NAME)})", file=sys.stderr)

    drain()
    if os.environ.get("ARA_API_CLIENT") == "http":
        client = get_client(client="http", endpoint=os.environ.get("ARA_API_SERVER", "http://127.0.0.1:8000"),
                            username=os.environ.get("ARA_API_USERNAME"), password=os.environ.get("ARA_API_PASSWORD"))
        client.jincai_drain = drain
        return client
    store = audit.store_dir(network)
    db = os.path.join(store, audit.DB_FILE)
    if not os.path.isfile(db):
        raise HistoryError(f"no audit store for network {network!r} at {db} (no playbook has run against it "
                           f"from this control node, or it records to an ARA server: set ARA_API_CLIENT=http)")
    for key, value in audit.offline_env(network).items():
        os.environ.setdefault(key, value)
    client = get_client(client="offline", run_sql_migrations=False)
    client.jincai_drain = drain
    return client


def result_diffs(content):
    """The ``diff`` entries of one task result: its own, or those of its loop items (a looped task's
    result holds one ``results`` entry per item, each with its diff)."""
    diffs = []
    for part in [content] + list(content.get("results") or []):
        d = part.get("diff") if isinstance(part, dict) else None
        diffs.extend(d if isinstance(d, list) else [d] if d else [])
    return diffs


def render_diff(diff):
    """Ansible's ``diff`` result field (a dict or a list of them) as unified-diff text."""
    out = []
    for d in diff if isinstance(diff, list) else [diff]:
        if not isinstance(d, dict):
            continue
        if d.get("prepared"):
            out.append(str(d["prepared"]).rstrip("\n"))
        if "before" in d or "after" in d:
            before, after = d.get("before", ""), d.get("after", "")
            if not isinstance(before, str) or not isinstance(after, str):
                before, after = (json.dumps(x, indent=1, sort_keys=True, default=str) for x in (before, after))
            out.extend(line.rstrip("\n") for line in difflib.unified_diff(
                before.splitlines(True), after.splitlines(True), d.get("before_header", "before"),
                d.get("after_header", "after")))
    return "\n".join(out)


def _all(client, url, **params):
    """Every item of a paginated ARA list endpoint."""
    items, offset = [], 0
    while True:
        query = "&".join(f"{k}={v}" for k, v in {**params, "limit": 500, "offset": offset}.items())
        page = client.get(f"{url}?{query}")
        items += page.get("results", [])
        offset += 500
        if not page.get("next"):
            return items


def history(client, site=None, since=None, host=None, diff=False):
    """The runs in the window (newest first), each ``{playbook fields..., "results": [...]}``;
    results are the changed/failed/unreachable ones, on ``site``'s hosts when given."""
    if callable(getattr(client, "jincai_drain", None)):
        client.jincai_drain()  # runs recorded since the client was made, still in their journal
    params = {"order": "-started"}
    if since:
        params["started_after"] = since.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if site:
        params["label"] = f"site:{site}"
    runs = []
    for pb in _all(client, "/api/v1/playbooks", **params):
        hosts = {h["id"]: h["name"] for h in _all(client, "/api/v1/hosts", playbook=pb["id"])}
        tasks = {t["id"]: t for t in _all(client, "/api/v1/tasks", playbook=pb["id"])}
        results = []
        for res in _all(client, "/api/v1/results", playbook=pb["id"]):
            name = hosts.get(res["host"], "?")
            status = "changed" if res.get("changed") and res["status"] == "ok" else res["status"]
            if status not in SHOWN or res.get("ignore_errors"):
                continue
            if site and not name.startswith(f"{site}-") or host and name != host:
                continue
            task = tasks.get(res["task"], {})
            item = {"host": name, "status": status, "task": task.get("name", "?"), "action": task.get("action", ""),
                    "ended": res.get("ended")}
            if diff and status == "changed":
                content = client.get(f"/api/v1/results/{res['id']}").get("content") or {}
                item["diff"] = render_diff(result_diffs(content))
            results.append(item)
        runs.append({**pb, "results": results})
    return runs


def _labels(pb, prefix):
    return [label["name"][len(prefix):] for label in pb.get("labels", []) if label["name"].startswith(prefix)]


def format_run(pb):
    """Text lines for one run."""
    path = pb.get("path", "")
    path = os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path
    check = "check" if "True" in _labels(pb, "check:") else "applied"
    limit = ",".join(_labels(pb, "subset:")) or "all"
    lines = [f"{(pb.get('started') or '')[:19].replace('T', ' ')} UTC  {pb.get('user') or '?'}@"
             f"{pb.get('controller') or '?'}  {path}  {pb.get('status')}  ({check}, limit {limit}, "
             f"release {','.join(_labels(pb, 'release:')) or '-'}, commit {','.join(_labels(pb, 'commit:')) or '?'}, "
             f"ARA playbook {pb['id']})"]
    for r in pb["results"]:
        lines.append(f"    {r['status'].upper():<11} {r['host']:<16} {r['task']}")
        if r.get("diff"):
            lines.extend("        " + line for line in r["diff"].splitlines())
    if not pb["results"]:
        lines.append("    (nothing changed)")
    return lines


def build_parser():
    """The command line of ``jincai history``."""
    p = argparse.ArgumentParser(prog="jincai history", description=__doc__.splitlines()[0])
    p.add_argument("--site", help="only runs that targeted this site (GB/T 2260 code), and its hosts' results")
    p.add_argument("--since", default="7d", help="window: 7d, 12h, 30m, 2w or an ISO date (default: %(default)s)")
    p.add_argument("--host", help="only this host's results")
    p.add_argument("-i", "--inventory", default=os.environ.get("JINCAI_INVENTORY", DEFAULT_INVENTORY),
                   help="the network's inventory, whose store is read (default: inventories/lab)")
    p.add_argument("--diff", action="store_true", help="show each change's diff")
    p.add_argument("--json", action="store_true", help="print JSON")
    return p


def main(argv=None):
    """Entry point (``jincai history ARGS``): 0 (runs listed or none), 2 bad input or no store."""
    args = build_parser().parse_args(argv)
    try:
        if args.site and not re.fullmatch(r"\d{6}", args.site):
            raise HistoryError(f"--site {args.site}: a site is its six-digit GB/T 2260 code, e.g. 220102")
        since = parse_since(args.since)
        network = audit.network_of(args.inventory)
        runs = history(client_for(network), site=args.site, since=since, host=args.host, diff=args.diff)
    except HistoryError as exc:
        print(f"jincai history: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(runs, indent=1, default=str))
        return 0
    scope = f"site {args.site}" if args.site else f"network {network}"
    print(f"jincai history: {len(runs)} runs on {scope} since {since.strftime('%Y-%m-%d %H:%M')} UTC")
    for pb in runs:
        print("\n".join(format_run(pb)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
