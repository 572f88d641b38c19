"""The finance applications on each app server: healthy over TLS at the release's version, the active
release link, the release record. Their units (jincai-<app>), nginx, PostgreSQL and the listeners (TLS
port reachable, backend and database on loopback only) are judged by test_baseline.py (area ``apps``).
"""

import json
import shlex

from jincai.verify import support

# Run on the app server (its own address, certificate checked with the province CA), for every
# application planned there at once: prints {url: health document or {"error": ...}}.
HEALTH = r"""
import json, ssl, sys, urllib.request
ca, urls = sys.argv[1], json.loads(sys.argv[2])
ctx, out = ssl.create_default_context(cafile=ca), {}
for url in urls:
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=5) as r:
            out[url] = {"status_code": r.status, "body": json.load(r)}
    except Exception as e:
        out[url] = {"error": str(e)}
print(json.dumps(out))
"""

# Every application's ``current`` link at once: prints {path: target of the link, or null: not a link}.
CURRENT = r"""
import json, os, sys
print(json.dumps({p: os.path.realpath(p) if os.path.islink(p) else None for p in json.loads(sys.argv[1])}))
"""


def _url(p):
    return f"https://{p['address']}:{p['port']}{p['path']}"


def _probe(host, check, script, key, *args):
    """Run ``script`` once per host for every planned check of ``check``'s kind (memoised); its JSON."""
    memo = (check.host, check.test)
    if memo not in support._memo or key not in support._memo[memo]:
        res = host.run(f"python3 -c {shlex.quote(script)}" + " %s" * len(args), *args)
        try:
            support._memo[memo] = json.loads(res.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            support.fail(check, f"no answer from the probe (exit {res.rc}): {res.stderr.strip()[-300:]}")
    return support._memo[memo].get(key)


def test_app_health(host, check):
    """The health endpoint answers status ok with the version the release names."""
    p = check.params
    url = _url(p)
    urls = sorted({_url(c.params) for c in support.planned(check)} | {url})
    doc = _probe(host, check, HEALTH, url, p["ca"], json.dumps(urls)) or {"error": "not probed"}
    if "error" in doc:
        support.fail(check, f"{url}: {doc['error']}")
    body = doc.get("body") or {}
    support.expect(check, body.get("status") == "ok" and body.get("version") == p["version"],
                   f"status {body.get('status')}, version {body.get('version')}")


def test_app_current(host, check):
    """The application's ``current`` link points at the release's version."""
    p = check.params
    paths = sorted({c.params["path"] for c in support.planned(check)} | {p["path"]})
    target = _probe(host, check, CURRENT, p["path"], json.dumps(paths))
    if target is None:
        support.fail(check, f"{p['path']} is not a link")
    target = target.rstrip("/").rsplit("/", 1)[-1]
    support.expect(check, target == p["version"], f"{p['path']} -> {target}")


def test_app_release_record(host, check):
    """The release record names the release the network runs and the release's version of each application
    deployed here (what ``jincai release status`` reads)."""
    p = check.params
    f = host.file(p["path"])
    if not f.exists:
        support.fail(check, f"no {p['path']}")
    try:
        doc = json.loads(f.content_string)
    except ValueError:
        support.fail(check, f"{p['path']} is not JSON")
    if not isinstance(doc, dict):
        support.fail(check, f"{p['path']} is not a JSON object")
    release = doc.get("release")
    recorded = doc.get("apps") if isinstance(doc.get("apps"), dict) else {}
    wrong = []
    for app, version in sorted((p.get("apps") or {}).items()):
        got = (recorded.get(app) or {}).get("version") if isinstance(recorded.get(app), dict) else None
        if got != version:
            wrong.append(f"{app} {got or 'not recorded'}")
    support.expect(check, release == p["release"] and not wrong,
                   ", ".join([f"release {release!r}"] + wrong))
