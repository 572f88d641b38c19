"""`jincai compliance --drift fast` on the live lab (#14): hand-made changes of a managed file, an
application config, a package, a service's state (stopped), a service's enablement (disabled) and a
router config line are each reported at their host by the manifest comparison, with nothing at the
other hosts; a host whose host var changed (a copy of the inventory) falls back to site.yml --check; after
the restore a fast run is clean; the runs change nothing (the snapshot of test_compliance_lab).

The module's hosts need current manifests: after the session's site.yml (test_00_site) they exist; run
alone, the fixture runs site.yml --limit on the hosts that lack one (converged: changes nothing).
"""

import json
import os
import shutil

import pytest

import jincai.compliance as comp
from jincai.compliance import manifest

from conftest import LAB_INVENTORY, hostvars, inventory, run_on
from test_compliance_lab import assert_unchanged, compliance, snapshot

pytestmark = pytest.mark.lab

#: a county technician of site 220103 renamed in a copy of the inventory: the host vars of 220103's hosts
#: change, no other host's
FALLBACK_HOST = "220103-app1"
RENAME = ("name: 王芳,", "name: 王芳芳,")
#: the package removed by hand: the baseline installs it (pam_pwquality's dictionary tools, only a
#: Recommends: nothing depends on it), no service, trivial maintainer scripts
PACKAGE = "cracklib-runtime"

# kind: host, break, restore, (drift kind, name substring, attribute) expected among the fast findings
DRIFTS = {
    "managed file": ("220102-app1",
                     "cp -p /etc/issue.net /root/jcfast-issue.net && echo '# jcfast' >> /etc/issue.net",
                     "test -f /root/jcfast-issue.net && mv /root/jcfast-issue.net /etc/issue.net",
                     ("file", "/etc/issue.net", "sha256")),
    "application config": ("220202-app1",
                           "f=$(ls /etc/jincai/apps/*/app.env | head -1) && cp -p $f /root/jcfast-app.env && "
                           "echo $f > /root/jcfast-app.path && echo 'JINCAI_JCFAST=1' >> $f",
                           "test -f /root/jcfast-app.path && mv /root/jcfast-app.env $(cat /root/jcfast-app.path) && "
                           "rm /root/jcfast-app.path",
                           ("file", "/app.env", "sha256")),
    # a real `dpkg -r` (maintainer scripts run, files go); the lab hosts reach no package mirror, so the
    # package's files and its dpkg records are kept in a tar and put back: dpkg lists it installed again
    "package removed": ("220200-app1",
                        f"p={PACKAGE}; dpkg-query -W -f '${{db:Status-Abbrev}}' $p | grep -q '^ii' && "
                        "dpkg -L $p | while read -r f; do if [ -f \"$f\" ] || [ -L \"$f\" ]; then echo \"$f\"; fi; done"
                        " > /root/jcfast-pkg.list && "
                        "tar -cpPf /root/jcfast-pkg.tar -T /root/jcfast-pkg.list /var/lib/dpkg/status /var/lib/dpkg/info/$p.* && "
                        "dpkg -r $p > /dev/null",
                        "test ! -f /root/jcfast-pkg.tar || { tar -xpPf /root/jcfast-pkg.tar && "
                        "rm -f /root/jcfast-pkg.tar /root/jcfast-pkg.list; } && "
                        f"dpkg-query -W -f '${{db:Status-Abbrev}}' {PACKAGE} | grep -q '^ii'",
                        ("package", PACKAGE, "installed")),
    "service stopped": ("220100-app1", "systemctl stop chrony", "systemctl start chrony",
                        ("service", "chrony.service", "state")),
    # a timer: disabling rsyslog.service (an alias of syslog.service) left it stopped after the re-enable
    "service disabled": ("220000-app1", "systemctl disable -q jincai-backup.timer",
                         "systemctl enable -q --now jincai-backup.timer",
                         ("service", "jincai-backup.timer", "enabled")),
    "router line": ("220202-rtr",
                    "vtysh -c 'configure terminal' -c 'access-list jcfast seq 5 permit any' && "
                    "vtysh -c 'show running-config' | grep -q 'access-list jcfast'",
                    "vtysh -c 'configure terminal' -c 'no access-list jcfast'",
                    ("router", "running-config", "added lines")),
}
CLEAN = ["220000-svc", "220102-rtr"]
HOSTS = sorted({d[0] for d in DRIFTS.values()} | set(CLEAN) | {FALLBACK_HOST})


@pytest.fixture(scope="module")
def manifests(lab_up, tmp_path_factory):
    """Every host of the module has a manifest of the current source (site.yml --limit where not)."""
    from jincai.run import run as run_playbook

    inv = inventory()
    _doc, missing = comp.plan_fast(inv, LAB_INVENTORY, HOSTS, [], str(tmp_path_factory.mktemp("plan")))
    if missing:
        res = run_playbook("playbooks/site.yml", inventory=LAB_INVENTORY, args=["--limit", ",".join(missing)])
        assert res.rc == 0, res.output[-4000:]
        _doc, missing = comp.plan_fast(inv, LAB_INVENTORY, HOSTS, [], str(tmp_path_factory.mktemp("plan")))
    assert not missing, f"no current manifest after site.yml: {missing}"
    return {h: manifest.load(hostvars(h)["jincai_network_name"], h) for h in HOSTS}


@pytest.fixture()
def renamed_inventory(tmp_path):
    """A copy of the lab inventory where one technician of site 220103 has another name."""
    copy = tmp_path / "lab"
    shutil.copytree(LAB_INVENTORY, copy)
    site = copy / "source" / "sites" / "220100.yml"
    text = site.read_text(encoding="utf-8")
    assert RENAME[0] in text
    site.write_text(text.replace(RENAME[0], RENAME[1]), encoding="utf-8")
    return str(copy)


def test_fast_drift_reports_each_hand_made_change_at_its_host_and_falls_back_for_a_changed_host_var(
        manifests, renamed_inventory, tmp_path):
    for kind, (host, _b, _r, (what, name, _attr)) in DRIFTS.items():
        if what == "router":
            assert manifests[host]["router"]["lines"], f"{host}: the manifest holds no running config"
            continue
        entries = manifests[host]["files" if what == "file" else what + "s"]
        assert any(name in e for e in entries), f"{kind}: {name} is not in {host}'s manifest"
    limit = ",".join(HOSTS)
    try:
        for kind, (host, breaker, _restore, _exp) in DRIFTS.items():
            res = run_on(host, breaker)
            assert res.returncode == 0, f"could not break {kind} on {host}: {res.stdout} {res.stderr}"
        before = snapshot(HOSTS)
        rc, rep, out = compliance(tmp_path / "drift", "-i", renamed_inventory, "--limit", limit, "--drift", "fast")
        after = snapshot(HOSTS)
        assert rep is not None, out
        assert_unchanged(before, after)
        assert rc == 1, out
        fast = rep["fast_drift"]
        assert list(fast["fallback"]) == [FALLBACK_HOST] and "host vars" in fast["fallback"][FALLBACK_HOST], fast
        assert sorted(fast["hosts"]) == sorted(h for h in HOSTS if h != FALLBACK_HOST)
        assert fast["uncovered"], "the report lists what only --drift full checks"
        assert f"fell back: {FALLBACK_HOST}" in out
        drift = [f for f in rep["findings"] if f["kind"] == "drift"]
        for kind, (host, _b, _r, (what, name, attr)) in DRIFTS.items():
            hits = [f for f in drift if f["host"] == host and f" {what} " in f["title"] and name in f["title"]
                    and f"({attr})" in f["title"]]
            assert hits, f"{kind} on {host} not reported; drift findings: " + json.dumps(
                [(f["host"], f["title"]) for f in drift], ensure_ascii=False)
        router = next(f for f in drift if f["host"] == DRIFTS["router line"][0])
        assert "+ access-list jcfast seq 5 permit any" in router["found"] and router["control"] == "L3-ABS1-07"
        broken = {d[0] for d in DRIFTS.values()}
        for f in drift:
            assert f["host"] in broken | {FALLBACK_HOST}, f"drift at a host nobody changed: {f}"
        for h in CLEAN:
            assert rep["hosts"][h]["status"] == "passed", rep["hosts"][h]
    finally:
        errors = []
        for kind, (host, _b, restore, _e) in DRIFTS.items():
            res = run_on(host, restore, timeout=120)
            if res.returncode != 0:
                errors.append(f"{kind} on {host}: {res.stdout} {res.stderr}")
        assert not errors, f"restore failed: {errors}"
    rc, rep, out = compliance(tmp_path / "clean", "--limit", limit, "--drift", "fast")
    assert rep is not None, out
    assert rep["fast_drift"]["fallback"] == {} and sorted(rep["fast_drift"]["hosts"]) == HOSTS, rep["fast_drift"]
    assert rep["findings"] == [], "\n".join(f"{f['host']} {f['title']}: {f['found']}" for f in rep["findings"])
    assert rc == 0, out
    assert os.path.isdir(os.path.join(str(tmp_path / "clean"), "raw", "manifest"))
