"""The finance applications on the live lab (issue 7): deployed uniformly, upgraded in waves, a broken
release stopped at its first batch and rolled back, tampered artifacts refused, the bank's payment
request stored at the province, idempotent after all of it.

Needs the provisioned lab (tests/lab/test_00_site.py runs site.yml first: routers before apps, so
sites reach the province artifact repository over the WAN). Every probe of a host is one SSH round
trip that reports JSON; the checks are evaluated here.
"""

import json
import os
import re
import shlex
import subprocess
import time
import uuid

import pytest

import hoststate
from conftest import LAB_INVENTORY, hostvars, inventory, run_on
from jincai import ROOT, release
from jincai.pki import store
from jincai.run import run

pytestmark = pytest.mark.lab

# the source's catalogue (names, ports, waves) merged with the lab's deployment of it (artifacts, databases)
CATALOG = release.catalogue(os.path.join(ROOT, "inventories", "lab"))
LAB_RELEASE = release.load_release("lab-2")  # the lab inventory's apps_release
RESOURCE = {"budget": "budget-lines", "treasury": "payment-requests", "nontax": "receipts", "township": "vouchers"}
APP_SERVERS = list(inventory()["app_servers"]["hosts"])
SERVICES = inventory()["services"]["hosts"][0]
REPO = "/srv/jincai/artifacts/apps"

# One round trip per host: units, active release, releases on disk, cached artifacts, health over TLS.
PROBE = r"""
import json, os, ssl, subprocess, urllib.request
apps, addr = json.loads(%(args)r)
try:
    ctx = ssl.create_default_context(cafile="/etc/jincai/tls/ca.crt")
except OSError:
    ctx = None
units = subprocess.run(["systemctl", "list-units", "--plain", "--no-legend", "--state=active", "jincai-*"],
                       capture_output=True, text=True).stdout.split("\n")
out = {"units": sorted(u.split()[0] for u in units if u.strip()), "apps": {}}
for app, port in apps.items():
    root, d = "/opt/jincai/apps/" + app, {}
    try:
        if ctx is None:
            raise RuntimeError("no CA certificate in /etc/jincai/tls")
        with urllib.request.urlopen("https://%%s:%%s/health" %% (addr, port), context=ctx, timeout=5) as r:
            d["health"] = json.load(r)
    except Exception as e:
        d["health"] = {"error": str(e)}
    d["current"] = os.path.basename(os.readlink(root + "/current")) if os.path.islink(root + "/current") else None
    d["releases"] = sorted(os.listdir(root + "/releases")) if os.path.isdir(root + "/releases") else []
    cache = "/var/lib/jincai/apps/" + app
    d["artifacts"] = sorted(os.listdir(cache)) if os.path.isdir(cache) else []
    out["apps"][app] = d
print(json.dumps(out))
"""

# One API call made on a lab host against an application (through nginx, TLS verified with the CA).
CALL = r"""
import json, ssl, urllib.request
url, body, ca = json.loads(%(args)r)
req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                             headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(req, context=ssl.create_default_context(cafile=ca), timeout=10) as r:
        print(json.dumps({"status": r.status, "body": json.load(r)}))
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code, "body": e.read().decode()}))
"""


def _py(host, script, args, sudo=True):
    """Run a Python snippet on ``host`` with JSON ``args``; return its JSON output."""
    code = script % {"args": json.dumps(args)}
    res = run_on(host, f"python3 -c {shlex.quote(code)}", sudo=sudo, timeout=90)
    assert res.returncode == 0, f"{host}: {res.stderr[-800:]}"
    return json.loads(res.stdout.strip().splitlines()[-1])


def probe(host):
    """The state PROBE reads on ``host`` in one round trip, through testinfra (tests/lab/hoststate.py)."""
    hv = hostvars(host)
    code = PROBE % {"args": json.dumps([{a: CATALOG[a]["port"] for a in hv["jincai_apps"]}, hv["jincai_address"]])}
    return json.loads(hoststate.read(host, "python3 -c %s", code).strip().splitlines()[-1])


def release_record(host):
    """``/etc/jincai/release.json`` of ``host`` (read with testinfra)."""
    return json.loads(hoststate.host(host).file("/etc/jincai/release.json").content_string)


def api(host, app, body=None, query=""):
    """POST (with body) or GET an application's records on ``host``; return {status, body}."""
    url = f"https://{hostvars(host)['jincai_address']}:{CATALOG[app]['port']}/api/{RESOURCE[app]}{query}"
    return _py(host, CALL, [url, body, "/etc/jincai/tls/ca.crt"])


def apps_playbook(*args, check=False):
    return run("playbooks/apps.yml", inventory=LAB_INVENTORY, args=args, check=check, diff=check)


def _tail(res, n=80):
    return "\n".join(res.output.splitlines()[-n:])


def switched_by_wave(output):
    """{(wave, host, app)} for every application switched in the output, by the wave play it ran in."""
    found, wave = set(), None
    for line in output.splitlines():
        m = re.match(r"^PLAY \[Roll out wave (\d+)", line)
        if m:
            wave = int(m.group(1))
            continue
        # one line per item for every host of the batch: "for 220102-app1, 220103-app1 => (item=budget)"
        m = re.match(r"^included: \S+/release\.yml for (.+?) => \(item=(\w+)\)", line)
        if m and wave:
            for host in m.group(1).split(", "):
                found.add((wave, host.strip(), m.group(2)))
    return found


def expected_waves():
    return {(CATALOG[a]["tiers"][hostvars(h)["jincai_tier"]], h, a) for h in APP_SERVERS for a in hostvars(h)["jincai_apps"]}


@pytest.fixture(scope="module")
def converged(site_first):
    """The applications at the catalogue's releases: the session's whole-lab site.yml (tests/lab/conftest.py)
    deployed them; this module runs right after tests/lab/test_00_site.py."""
    assert site_first.rc == 0, _tail(site_first)
    return site_first


def assert_all_at(release_of):
    """Every app server runs exactly its tier's applications, healthy, at release_of(app)."""
    for host in APP_SERVERS:
        state, apps = probe(host), hostvars(host)["jincai_apps"]
        running = sorted(u for u in state["units"] if u in {f"jincai-{a}.service" for a in CATALOG})
        assert running == sorted(f"jincai-{a}.service" for a in apps), host
        for app in apps:
            got = state["apps"][app]
            assert got["health"].get("status") == "ok", f"{host} {app}: {got['health']}"
            assert got["health"]["version"] == release_of(app) == got["current"], f"{host} {app}: {got}"


def test_every_app_server_runs_its_tiers_applications_healthy_at_one_version(converged):
    assert_all_at(lambda app: LAB_RELEASE["apps"][app]["version"])


def test_upgrade_v1_to_v2_in_waves_keeps_data_written_under_v1(converged):
    v1 = apps_playbook("-e", "apps_release=lab-1")
    assert v1.rc == 0, _tail(v1)
    assert_all_at(lambda app: "1.0.0")
    marker = f"upgrade-{uuid.uuid4().hex[:8]}"
    for host in APP_SERVERS:
        for app in hostvars(host)["jincai_apps"]:
            made = api(host, app, {"unit": marker, "subject": f"{app} written under 1.0.0", "amount": "1234.50"})
            assert made["status"] == 201 and "status" not in made["body"], (host, app, made)

    # What still runs 1.0.0 right now (a lab shared with other runs of site.yml may have moved some).
    at_v1 = {(h, a) for h in APP_SERVERS for a, d in probe(h)["apps"].items() if d["current"] == "1.0.0"}
    t0 = time.monotonic()
    v2 = apps_playbook()
    seconds = time.monotonic() - t0
    assert v2.rc == 0, _tail(v2)
    print(f"\nrollout of release lab-2 over lab-1 on {len(APP_SERVERS)} app servers: {seconds:.0f} s")
    # Each application switched in the wave the catalog gives its tier, and nowhere else.
    assert at_v1, "nothing ran 1.0.0 before the upgrade"
    assert switched_by_wave(v2.output) == {(w, h, a) for w, h, a in expected_waves() if (h, a) in at_v1}
    assert_all_at(lambda app: "2.0.0")
    for host in APP_SERVERS:
        for app in hostvars(host)["jincai_apps"]:
            listed = api(host, app, query="?status=submitted")
            mine = [r for r in listed["body"]["items"] if r["unit"] == marker]
            assert len(mine) == 1 and mine[0]["amount"] == "1234.50", (host, app, listed)


def test_broken_release_stops_at_its_first_batch_and_is_rolled_back_without_losing_rows(converged):
    before = {h: api(h, "treasury")["body"]["count"] for h in APP_SERVERS}
    bad = apps_playbook("-e", "apps_release=lab-3-broken", "-e", "apps_only=treasury")
    assert bad.rc != 0
    wave1 = [h for h in APP_SERVERS if CATALOG["treasury"]["tiers"].get(hostvars(h)["jincai_tier"]) == 1]
    first = wave1[0]  # serial: the first batch of wave 1 is one host, in inventory order
    assert bad.hosts_with("failed") == [first], _tail(bad)
    assert f"treasury 3.0.0 failed on {first}" in bad.output and "rolled back to 2.0.0" in bad.output
    assert "database restored from /var/backups/jincai/apps/treasury/" in bad.output
    # Before the restore, the database as 3.0.0 left it was dumped and kept (restore safety).
    kept = re.search(r"is kept in (/var/backups/jincai/apps/treasury/treasury-3\.0\.0-before-restore-\d{8}T\d{6}Z\.dump)",
                     bad.output)
    assert kept, _tail(bad)
    dump = hoststate.host(first).file(kept.group(1))
    hoststate.expect(first, f"{kept.group(1)} (kept dump)", dump.exists and dump.size > 0 and dump.mode == 0o600,
                     "a non-empty file, mode 0600", f"exists {dump.exists}" + (f", {dump.size} bytes, mode {dump.mode:o}"
                                                                            if dump.exists else ""))
    # The failed host's record still names the release it runs again (the run stopped before recording).
    hoststate.equal(first, "release.json release", release_record(first)["release"], "lab-2")
    # Only the first batch ever saw it; every host runs 2.0.0 again, healthy, with all its rows.
    assert {h for _, h, _ in switched_by_wave(bad.output)} == {first}
    for host in APP_SERVERS:
        got = probe(host)["apps"]["treasury"]
        assert got["current"] == "2.0.0" and got["health"].get("version") == "2.0.0", (host, got)
        if host != first:
            assert "3.0.0" not in got["releases"] and "treasury-3.0.0.tar.gz" not in got["artifacts"], host
        assert api(host, "treasury")["body"]["count"] == before[host], host


def test_a_tampered_artifact_on_the_repository_is_refused(converged):
    host = [h for h in APP_SERVERS if hostvars(h)["jincai_tier"] == "county"][-1]
    name = CATALOG["treasury"]["versions"]["3.0.0"]["artifact"]
    run_on(SERVICES, f"printf 'tampered' >> {REPO}/{name}", check=True)
    try:
        res = apps_playbook("--limit", host, "-e",
                            json.dumps({"apps_releases": {"treasury": "3.0.0"}, "apps_only": "treasury"}))
        assert res.rc != 0
        assert re.search(r"checksum .*did not match|Checksum mismatch", res.output, re.I), _tail(res)
        got = probe(host)["apps"]["treasury"]
        assert "3.0.0" not in got["releases"], got
        assert name not in got["artifacts"] and got["current"] == "2.0.0", got
    finally:
        fix = apps_playbook("--limit", SERVICES)
    assert fix.rc == 0, _tail(fix)
    hoststate.equal(SERVICES, f"sha256 of {REPO}/{name}", hoststate.host(SERVICES).file(f"{REPO}/{name}").sha256sum,
                    CATALOG["treasury"]["versions"]["3.0.0"]["sha256"])


def test_bank_payment_request_is_stored_by_the_province_treasury(converged):
    province = [h for h in APP_SERVERS if hostvars(h)["jincai_tier"] == "province"][0]
    with open(os.path.join(store.default_dir(), "ca.crt"), encoding="utf-8") as fh:
        ca = fh.read()
    subject = f"bank transfer {uuid.uuid4().hex[:8]}"
    url = f"https://{hostvars(province)['jincai_address']}:{CATALOG['treasury']['port']}/api/payment-requests"
    run_on("220000-bank1", f"printf %s {shlex.quote(ca)} > /tmp/jincai-ca.crt", sudo=False, check=True)
    made = _py("220000-bank1", CALL, [url, {"unit": "bank1", "subject": subject, "amount": "88.00"},
                                      "/tmp/jincai-ca.crt"], sudo=False)
    assert made["status"] == 201, made
    stored = api(province, "treasury")["body"]["items"]
    assert [r["amount"] for r in stored if r["subject"] == subject] == ["88.00"]


def test_rollout_is_idempotent_after_the_upgrades_and_rollbacks(converged):
    """After the downgrade, the upgrade, the rolled-back release and the refused artifact above, the release
    runs again changing nothing. (The apps plays' check mode with --diff is proven on the converged lab by
    tests/lab/test_00_site.py's site.yml --check, which includes them.)"""
    again = apps_playbook()
    assert again.rc == 0, _tail(again)
    assert again.total("changed") == 0, again.changed_tasks()


def test_every_app_server_records_the_release_it_runs(converged):
    res = subprocess.run([os.path.join(ROOT, ".venv", "bin", "jincai"), "release", "status", "-i", LAB_INVENTORY],
                         capture_output=True, text=True, check=False, cwd=ROOT)
    assert res.returncode == 0, res.stderr + res.stdout
    lines = [line for line in res.stdout.splitlines() if "-app" in line]
    assert len(lines) == len(APP_SERVERS), res.stdout
    for line in lines:
        assert " lab-2 " in line and "DIFFERS" not in line, line
    assert res.stdout.splitlines()[-1] == f"lab-2: {len(APP_SERVERS)} host(s)"
    record = release_record(APP_SERVERS[0])
    assert record["release"] == "lab-2" and record["overrides"] == {}
    assert {a: v["sha256"] for a, v in record["apps"].items()} == {
        a: LAB_RELEASE["apps"][a]["sha256"] for a in hostvars(APP_SERVERS[0])["jincai_apps"]}


def test_published_artifacts_match_the_catalog(converged):
    listing = hoststate.read(SERVICES, "sh -c %s", f"cd {REPO} && sha256sum *.tar.gz")
    got = dict(reversed(line.split()) for line in listing.splitlines())
    want = {v["artifact"]: v["sha256"] for c in CATALOG.values() for v in c["versions"].values()}
    assert got == want
