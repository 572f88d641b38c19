"""``jincai release``: the releases of the finance applications, what a rollout would do, what runs.

A release is one file, ``releases/<id>.yml`` (docs/apps.md, "Releases")::

    release: lab-2
    apps:
      budget: {version: 2.0.0, sha256: <64 hex>, tiers: [province, city, county]}

Each application's version must be one of the inventory's catalogue (``apps_catalog`` in
``<inventory>/group_vars/all/apps.yml``) with the same sha256; its tiers are the tiers it goes to.
The rollout (playbooks/apps.yml) records on every app server what it runs in
``/etc/jincai/release.json``; ``jincai release status`` reads those records over SSH (one ad-hoc
Ansible run), ``jincai release plan ID`` shows what a rollout of ID would do from the inventory and
the release file alone. ``check-production`` (run by playbooks/validate.yml before any host is
contacted) refuses a production inventory whose catalogue or release points at the test applications.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
from functools import lru_cache

from jincai import ROOT

RELEASES_DIR = os.path.join(ROOT, "releases")
LAB_INVENTORY = os.path.join(ROOT, "inventories", "lab")
STATUS_FILE = "/etc/jincai/release.json"
FIXTURE_BUILD = os.path.join(ROOT, "tests", "fixtures", "apps", "build.py")
TIERS = ("province", "city", "county")
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SHA_RE = re.compile(r"^[0-9a-f]{64}$")


class ReleaseError(Exception):
    """A release file, a catalogue or a command line is wrong; the message names file and field."""


def _yaml(path):
    from jincai.source import model

    try:
        return model.load_yaml(path)
    except FileNotFoundError:
        raise ReleaseError(f"{path}: no such file") from None
    except Exception as exc:  # noqa: BLE001 - a YAML error names the file
        raise ReleaseError(f"{path}: not valid YAML: {exc}") from None


def release_path(release_id, releases_dir=RELEASES_DIR):
    """The file of release ``release_id``; refuses an ID that is not a plain name."""
    if not ID_RE.match(str(release_id or "")):
        raise ReleaseError(f"release ID {release_id!r}: must be letters, digits, '.', '_' or '-' (releases/<id>.yml)")
    return os.path.join(releases_dir, f"{release_id}.yml")


def load_release(release_id, releases_dir=RELEASES_DIR):
    """Load and check the shape of ``releases/<id>.yml``; return its mapping."""
    path = release_path(release_id, releases_dir)
    doc = _yaml(path)
    if not isinstance(doc, dict):
        raise ReleaseError(f"{path}: must be a mapping with 'release' and 'apps'")
    if doc.get("release") != release_id:
        raise ReleaseError(f"{path}: field release is {doc.get('release')!r}, must be the file's ID {release_id!r}")
    apps = doc.get("apps")
    if not isinstance(apps, dict) or not apps:
        raise ReleaseError(f"{path}: field apps must map each application to its version, sha256 and tiers")
    for app, entry in apps.items():
        where = f"{path}: application {app}"
        if not isinstance(entry, dict):
            raise ReleaseError(f"{where}: must be a mapping with version, sha256 and tiers")
        if not isinstance(entry.get("version"), str) or not entry["version"]:
            raise ReleaseError(f"{where}: field version must be a string (quote it: '2.0.0')")
        if not SHA_RE.match(str(entry.get("sha256", ""))):
            raise ReleaseError(f"{where}: field sha256 must be 64 lower-case hex digits")
        tiers = entry.get("tiers")
        if not isinstance(tiers, list) or not tiers or any(t not in TIERS for t in tiers):
            raise ReleaseError(f"{where}: field tiers must list tiers among {'/'.join(TIERS)}")
    doc["_path"] = path
    return doc


def catalogue_findings(release, catalog):
    """Return what makes ``release`` disagree with the inventory's catalogue (empty: it agrees)."""
    out = []
    path = release.get("_path", f"releases/{release.get('release')}.yml")
    for app, entry in release["apps"].items():
        where = f"{path}: application {app}"
        cat = catalog.get(app)
        if cat is None:
            out.append(f"{where}: not in the inventory's catalogue (apps_catalog: {', '.join(catalog) or 'empty'})")
            continue
        known = cat.get("versions") or {}
        if entry["version"] not in known:
            out.append(f"{where}: version {entry['version']} is not in the catalogue's versions "
                       f"({', '.join(known) or 'none'})")
        elif known[entry["version"]].get("sha256") != entry["sha256"]:
            out.append(f"{where}: sha256 {entry['sha256']} differs from the catalogue's "
                       f"{known[entry['version']].get('sha256')} for {entry['version']}")
        extra = [t for t in entry["tiers"] if t not in (cat.get("tiers") or {})]
        if extra:
            out.append(f"{where}: tiers {extra} do not run it (catalogue tiers: {list(cat.get('tiers') or {})})")
    return out


def inventory_vars(inventory_dir):
    """The ``apps_*`` settings of an inventory's group ``all`` (group_vars/all.yml or group_vars/all/*.yml)."""
    files = sorted(glob.glob(os.path.join(inventory_dir, "group_vars", "all", "*.yml")))
    files += glob.glob(os.path.join(inventory_dir, "group_vars", "all.yml"))
    out = {}
    for path in files:
        doc = _yaml(path)
        if isinstance(doc, dict):
            out.update({k: v for k, v in doc.items() if k.startswith("apps_")})
    out.setdefault("apps_catalog", {})
    return out


def catalogue(inventory_dir):
    """The inventory's application catalogue as the apps role sees it: each application of the source of
    truth (network.yml ``applications``: names, port, tier -> wave) merged with its deployment
    (``apps_catalog`` of group_vars: backend port, database, health path, versions)."""
    from jincai.source import model

    deployed = inventory_vars(inventory_dir)["apps_catalog"] or {}
    source = model.load(inventory_dir).network.get("applications") or {}
    out = {app: dict(spec, **(deployed.get(app) or {})) for app, spec in source.items() if isinstance(spec, dict)}
    out.update({app: dict(d) for app, d in deployed.items() if app not in out})
    return out


@lru_cache(maxsize=1)
def fixture_sums():
    """{sha256: artifact file} of every test application release (tests/fixtures/apps, built in memory)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("jincai_fixture_apps_build", FIXTURE_BUILD)
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    with tempfile.TemporaryDirectory() as tmp:
        return {sha: name for name, sha in build.build_all(tmp).items()}


def production_findings(catalog, release, build_fixtures, where):
    """What in a production run points at the test applications; ``where`` names the inventory."""
    fixtures = fixture_sums()
    out = []
    if build_fixtures:
        out.append(f"{where}: apps_build_fixtures is true: the test applications would be built and deployed")
    for app, cat in sorted((catalog or {}).items()):
        for version, entry in sorted((cat.get("versions") or {}).items()):
            if (entry or {}).get("sha256") in fixtures:
                out.append(f"{where}: apps_catalog.{app}.versions.{version}: sha256 is the test application "
                           f"{fixtures[entry['sha256']]} (tests/fixtures/apps)")
    for app, entry in sorted(((release or {}).get("apps") or {}).items()):
        if entry.get("sha256") in fixtures:
            out.append(f"{release.get('_path', 'release')}: application {app}: sha256 is the test application "
                       f"{fixtures[entry['sha256']]} (tests/fixtures/apps)")
    return out


MANIFEST = "release.json"
MANIFEST_FIELDS = ("name", "version", "schema", "port", "start", "migrate", "health", "files")


def read_manifest(tarball):
    """Return the manifest (``release.json`` at the top of the tarball) and {member: sha256} of its files."""
    import hashlib
    import tarfile

    try:
        with tarfile.open(tarball, "r:gz") as tar:
            sums, manifest = {}, None
            for member in tar.getmembers():
                if not member.isfile():
                    continue
                data = tar.extractfile(member).read()
                if member.name == MANIFEST:
                    manifest = json.loads(data)
                else:
                    sums[member.name] = hashlib.sha256(data).hexdigest()
    except (OSError, tarfile.TarError, ValueError) as exc:
        raise ReleaseError(f"{tarball}: not a release artifact (tar.gz with {MANIFEST}): {exc}") from None
    if not isinstance(manifest, dict):
        raise ReleaseError(f"{tarball}: has no {MANIFEST} manifest at its top (docs/apps.md, the artifact contract)")
    return manifest, sums


def manifest_findings(tarball, app, version, cat, production=False):
    """What makes the artifact ``tarball`` break the contract for ``app`` ``version`` of catalogue entry ``cat``."""
    try:
        man, sums = read_manifest(tarball)
    except ReleaseError as exc:
        return [str(exc)]
    where = f"{tarball}: {MANIFEST}"
    out = [f"{where}: field {f} is missing" for f in MANIFEST_FIELDS if f not in man]
    if out:
        return out
    want = {"name": app, "version": version, "schema": (cat.get("versions") or {}).get(version, {}).get("schema"),
            "port": cat.get("backend_port")}
    out += [f"{where}: field {k} is {man[k]!r}, the catalogue says {v!r}" for k, v in want.items() if man[k] != v]
    if (man.get("health") or {}).get("path") != cat.get("health_path"):
        out.append(f"{where}: field health.path is {(man.get('health') or {}).get('path')!r}, "
                   f"the catalogue says {cat.get('health_path')!r}")
    for key in ("start", "migrate"):
        if not (isinstance(man[key], list) and man[key] and all(isinstance(a, str) for a in man[key])):
            out.append(f"{where}: field {key} must be a non-empty argv list of strings")
    if man["files"] != sums:
        bad = sorted(set(man["files"].items()) ^ set(sums.items()))
        out.append(f"{where}: field files does not match the artifact's content ({', '.join(sorted({b[0] for b in bad}))})")
    if production and man.get("fixture"):
        out.append(f"{where}: is a test application (fixture: true): production refuses it")
    return out


def rollout_findings(data, releases_dir=RELEASES_DIR):
    """Pre-flight of playbooks/apps.yml: the release against the catalogue, per-run overrides, manifests.

    ``data``: {catalog, release (ID or ''), overrides {app: version}, artifact_dir, environment}.
    """
    catalog = data.get("catalog") or {}
    rid = data.get("release") or ""
    if not rid:
        return [], None
    release = load_release(rid, releases_dir)
    out = catalogue_findings(release, catalog)
    for app, version in sorted((data.get("overrides") or {}).items()):
        if app not in release["apps"] or version not in (catalog.get(app, {}).get("versions") or {}):
            out.append(f"apps_releases: {app} {version}: needs {app} in release {rid} and {version} among the "
                       f"catalogue's versions ({', '.join(catalog.get(app, {}).get('versions') or {}) or 'none'})")
    if out:
        return out, release
    deploy = {app: (data.get("overrides") or {}).get(app, entry["version"]) for app, entry in release["apps"].items()}
    for app, version in sorted(deploy.items()):
        artifact = os.path.join(data.get("artifact_dir", ""), catalog[app]["versions"][version]["artifact"])
        out += manifest_findings(artifact, app, version, catalog[app], data.get("environment") == "production")
    return out, release


# ---------------------------------------------------------------- plan


def plan(inventory_dir, release_id, releases_dir=RELEASES_DIR):
    """What a rollout of ``release_id`` does on the inventory, from files only.

    Returns {"release", "file", "waves": [{"wave", "tier", "apps": {app: {version, schema}}, "hosts"}],
    "untouched": [(app, tier, reason)], "findings": [...]}.
    """
    from jincai.source import inventory

    release = load_release(release_id, releases_dir)
    catalog = catalogue(inventory_dir)
    inv = inventory.build(inventory_dir)
    hostvars = inv["_meta"]["hostvars"]
    servers = inv.get("app_servers", {}).get("hosts", [])
    findings = catalogue_findings(release, catalog)
    steps, untouched = {}, []
    for app, cat in catalog.items():
        entry = release["apps"].get(app)
        for tier, wave in sorted((cat.get("tiers") or {}).items()):
            if entry is None:
                untouched.append((app, tier, "not in this release"))
                continue
            if tier not in entry["tiers"]:
                untouched.append((app, tier, "tier not in this release's tiers"))
                continue
            hosts = sorted(h for h in servers if hostvars[h].get("jincai_tier") == tier
                           and app in (hostvars[h].get("jincai_apps") or []))
            version = (cat.get("versions") or {}).get(entry["version"]) or {}
            step = steps.setdefault((int(wave), TIERS.index(tier)), {"wave": int(wave), "tier": tier, "apps": {},
                                                                     "hosts": set()})
            step["apps"][app] = {"version": entry["version"], "schema": version.get("schema")}
            step["hosts"] |= set(hosts)
    waves = [dict(s, hosts=sorted(s["hosts"])) for _, s in sorted(steps.items())]
    return {"release": release_id, "file": release["_path"], "waves": waves,
            "untouched": untouched, "findings": findings, "app_servers": len(servers)}


def annotate(p, records):
    """Add to each step of plan ``p`` what changes per host, from the hosts' records (``read_status``).

    Each step gets ``changes``: {host: {app: "1.0.0 -> 2.0.0" | "unchanged" | "new" | "unknown: ..."}}.
    """
    for step in p["waves"]:
        step["changes"] = {}
        for host in step["hosts"]:
            rec = records.get(host) or {"error": "not read"}
            out = {}
            for app, want in sorted(step["apps"].items()):
                if "error" in rec:
                    out[app] = f"unknown ({rec['error']})"
                    continue
                got = ((rec.get("apps") or {}).get(app) or {}).get("version") or ""
                out[app] = "new" if not got else "unchanged" if got == want["version"] else \
                    f"{got} -> {want['version']}"
            step["changes"][host] = out
    return p


def format_plan(p):
    """The plan as text for people: wave by wave (each wave's first batch is one host), tier by tier."""
    lines = [f"release {p['release']} ({p['file']}): {p['app_servers']} app servers"]
    for wave in sorted({s["wave"] for s in p["waves"]}):
        steps = [s for s in p["waves"] if s["wave"] == wave]
        hosts = [h for s in steps for h in s["hosts"]]
        lines.append(f"wave {wave}: first batch {hosts[0] if hosts else '-'} alone (a failure there stops "
                     f"the rollout), then the rest")
        for step in steps:
            apps = ", ".join(f"{a} {v['version']} (schema {v['schema']})" for a, v in sorted(step["apps"].items()))
            lines.append(f"  {step['tier']:<8} {apps}")
            if "changes" not in step:
                lines.append(f"           on {', '.join(step['hosts']) or 'no host'}")
                continue
            for host, changes in step["changes"].items():
                lines.append(f"           {host}: " + ", ".join(f"{a} {c}" for a, c in changes.items()))
    for app, tier, why in p["untouched"]:
        lines.append(f"unchanged: {app} on {tier} ({why})")
    for f in p["findings"]:
        lines.append(f"REFUSED: {f}")
    lines.append("Every app server records what it runs in /etc/jincai/release.json (jincai release status).")
    return "\n".join(lines)


# ---------------------------------------------------------------- status


ONE_LINE_RE = re.compile(r"^(?P<host>\S+) \| (?P<status>[A-Z]+)!? => (?P<json>\{.*\})\s*$")


def parse_adhoc(text):
    """{host: record dict, or {"error": text}} from the one-line output of the ad-hoc slurp."""
    import base64

    out = {}
    for line in text.splitlines():
        m = ONE_LINE_RE.match(line)
        if not m:
            continue
        try:
            res = json.loads(m.group("json"))
        except ValueError:
            res = {"msg": m.group("json")}
        host = m.group("host")
        if m.group("status") == "UNREACHABLE":
            out[host] = {"error": "unreachable: " + str(res.get("msg", "")).strip()[:200]}
        elif m.group("status") != "SUCCESS" or "content" not in res:
            msg = str(res.get("msg", "")).strip()
            out[host] = {"error": "no release recorded" if "not found" in msg.lower() else msg[:200]}
        else:
            try:
                out[host] = json.loads(base64.b64decode(res["content"]))
            except ValueError as exc:
                out[host] = {"error": f"unreadable record: {exc}"}
    return out


def compare(record, releases_dir=RELEASES_DIR):
    """'' when the host runs its recorded release as the release file says, else what differs."""
    rid = record.get("release")
    if not rid:
        return "no release recorded"
    try:
        release = load_release(rid, releases_dir)
    except ReleaseError as exc:
        return str(exc)
    diffs = []
    for app, got in sorted((record.get("apps") or {}).items()):
        want = release["apps"].get(app)
        if want and record.get("tier") in want["tiers"] and got.get("version") != want["version"]:
            diffs.append(f"{app} {got.get('version') or 'none'} (release: {want['version']})")
    if record.get("overrides"):
        diffs.append(f"per-run overrides {record['overrides']}")
    return "; ".join(diffs)


def read_status(inventory_dir, hosts="app_servers", limit=None, status_file=STATUS_FILE):
    """Read every host's record with one ad-hoc Ansible run; return {host: record or {"error"}}."""
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible"), hosts, "-i", inventory_dir,
            "-m", "ansible.builtin.slurp", "-a", f"src={status_file}", "--one-line"]
    if limit:
        argv += ["--limit", limit]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0")
    env.setdefault("ANSIBLE_CONFIG", os.path.join(ROOT, "ansible.cfg"))
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True,
                          text=True, check=False)
    records = parse_adhoc(proc.stdout)
    if not records:
        raise ReleaseError(f"ansible {hosts} -i {inventory_dir} failed (rc {proc.returncode}): "
                           f"{(proc.stderr or proc.stdout).strip()[-500:]}")
    return records


def format_status(records, releases_dir=RELEASES_DIR):
    """One line per host, grouped by site; then the count of hosts per release."""
    lines, counts = [], {}
    for host, rec in sorted(records.items(), key=lambda kv: (str(kv[1].get("site", "")), kv[0])):
        if "error" in rec:
            lines.append(f"  {'?':<8} {host:<20} -          {rec['error']}")
            counts["(unknown)"] = counts.get("(unknown)", 0) + 1
            continue
        rid = rec.get("release") or "(none)"
        counts[rid] = counts.get(rid, 0) + 1
        apps = ", ".join(f"{a} {v.get('version') or 'none'}" for a, v in sorted((rec.get("apps") or {}).items()))
        diff = compare(rec, releases_dir)
        lines.append(f"  {rec.get('site', '?'):<8} {host:<20} {rid:<10} {apps}"
                     + (f"  DIFFERS: {diff}" if diff else ""))
    summary = ", ".join(f"{rid}: {n} host(s)" for rid, n in sorted(counts.items()))
    return "\n".join(["site     host                 release    applications"] + lines + [summary])


# ---------------------------------------------------------------- command line


def build_parser():
    """The command line of ``jincai release``."""
    p = argparse.ArgumentParser(prog="jincai release", description=__doc__.splitlines()[0])
    p.add_argument("--releases-dir", default=RELEASES_DIR, help="where releases/<id>.yml live (default: %(default)s)")
    sub = p.add_subparsers(dest="cmd", required=True)
    pl = sub.add_parser("plan", help="what a rollout of release ID would do (reads files only)")
    pl.add_argument("release_id")
    pl.add_argument("-i", "--inventory", default=os.environ.get("JINCAI_INVENTORY", LAB_INVENTORY))
    pl.add_argument("--json", action="store_true")
    pl.add_argument("--compare", action="store_true",
                    help="also read what each host runs (jincai release status) and show what changes per host")
    st = sub.add_parser("status", help="which release each site runs (reads every app server's record over SSH)")
    st.add_argument("-i", "--inventory", default=os.environ.get("JINCAI_INVENTORY", LAB_INVENTORY))
    st.add_argument("-l", "--limit", help="tier, site group (site_220102), host; as ansible --limit")
    st.add_argument("--hosts", default="app_servers", help="host pattern (default: %(default)s)")
    st.add_argument("--file", default=STATUS_FILE, help="the record on each host (default: %(default)s)")
    st.add_argument("--json", action="store_true")
    sub.add_parser("check-rollout", help="check a release, its overrides and its artifacts' manifests "
                                         "(JSON on stdin; run by playbooks/apps.yml)")
    ck = sub.add_parser("check-production", help="refuse test applications on production (JSON on stdin; "
                                                  "run by playbooks/validate.yml)")
    ck.add_argument("--where", default="inventory", help="the inventory named in messages")
    return p


def main(argv=None):
    """Entry point of ``jincai release``; returns the exit code (0 ok, 1 refused or failed, 2 usage)."""
    args = build_parser().parse_args(argv)
    try:
        if args.cmd == "plan":
            p = plan(args.inventory, args.release_id, args.releases_dir)
            if args.compare:
                annotate(p, read_status(args.inventory))
            print(json.dumps(p, indent=1, ensure_ascii=False) if args.json else format_plan(p))
            return 1 if p["findings"] else 0
        if args.cmd == "status":
            records = read_status(args.inventory, args.hosts, args.limit, args.file)
            print(json.dumps(records, indent=1, ensure_ascii=False) if args.json
                  else format_status(records, args.releases_dir))
            return 0 if records and all("error" not in r for r in records.values()) else 1
        data = json.load(sys.stdin)
        if args.cmd == "check-rollout":
            found, _release = rollout_findings(data, args.releases_dir)
            for f in found:
                print(f"jincai release: the rollout is refused: {f}", file=sys.stderr)
            return 1 if found else 0
        rid = data.get("release") or ""
        release = load_release(rid, args.releases_dir) if rid else None
        found = production_findings(data.get("catalog") or {}, release, bool(data.get("build_fixtures")),
                                    args.where)
        for f in found:
            print(f"jincai release: production refuses the test applications: {f}", file=sys.stderr)
        return 1 if found else 0
    except ReleaseError as exc:
        print(f"jincai release: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the inventory's own errors (invalid source)
        from jincai.source import inventory, model

        if isinstance(exc, (inventory.InvalidSource, model.SourceError)):
            print(f"jincai release: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
