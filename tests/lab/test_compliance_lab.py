"""`jincai compliance` on the live lab: clean when provisioned, finds five kinds of hand-made drift at
the right site, host and control, reports an unreachable site as unreachable, and changes nothing.

Read-only is proven by a snapshot of every managed host taken over SSH before and after each run:
sha256 of every file under /etc, the list of active services and (routers) the FRR running config
and the live nftables ruleset. The drift test restores what it broke in a ``finally`` block.
"""

import concurrent.futures
import json
import os
import subprocess

import pytest

from jincai import ROOT
from jincai.compliance import screenshot

import hoststate
from conftest import inventory, run_on

pytestmark = pytest.mark.lab

JINCAI = os.path.join(ROOT, ".venv", "bin", "jincai")
SHOTS = os.path.join(ROOT, "reports", "screenshots")
SNAPSHOT = ("find /etc -xdev -type f -print0 | sort -z | xargs -0 sha256sum; echo '== services';"
            " systemctl list-units --type=service --state=active --no-legend --plain | awk '{print $1}';"
            " echo '== nft'; nft list ruleset 2>&1;"
            " if command -v vtysh >/dev/null && systemctl -q is-active frr; then echo '== frr';"
            " vtysh -c 'show running-config' | grep -v '^Building\\|^Current'; fi")


def managed_hosts():
    inv = inventory()
    return sorted(set(inv["routers"]["hosts"]) | set(inv["machine_room"]["hosts"]))


def snapshot(hosts):
    """{host: text} of every host's /etc checksums, active services, nft ruleset and FRR config."""
    def one(h):
        out = hoststate.read(h, SNAPSHOT)  # read with testinfra, one round trip
        assert "== services" in out, f"{h}: snapshot incomplete: {out[-300:]}"
        return h, out

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        return dict(pool.map(one, hosts))


def assert_unchanged(before, after):
    changed = {}
    for host, text in before.items():
        if after[host] != text:
            a, b = set(text.splitlines()), set(after[host].splitlines())
            changed[host] = sorted(a ^ b)[:10]
    assert not changed, f"the compliance run changed hosts: {json.dumps(changed, indent=1, ensure_ascii=False)}"


def compliance(out_dir, *args, timeout=1800):
    """Run `jincai compliance -o out_dir ARGS`; return (exit code, report dict, output)."""
    proc = subprocess.run([JINCAI, "compliance", "-o", str(out_dir), *args], capture_output=True, text=True,
                          timeout=timeout, check=False, cwd=ROOT)
    path = os.path.join(str(out_dir), "report.json")
    rep = json.load(open(path, encoding="utf-8")) if os.path.exists(path) else None
    return proc.returncode, rep, proc.stdout + proc.stderr


def rendered(png, step=8):
    """What a screenshot shows, from its pixels (every ``step``-th in both directions): ``(width, height)``,
    the number of distinct colours, the share of pixels that are not the background (the most common
    colour) and the variance of their grey level. A blank, single-colour or one-line page (a report
    that failed to render) has ~1-7 colours, under 0.1 % foreground and a variance under 5; the unit
    fixture's report has ~470 colours, 11 % foreground, variance ~640."""
    pixels = screenshot.read_png(png)
    sample = [pixels.rgb(x, y) for y in range(0, pixels.height, step) for x in range(0, pixels.width, step)]
    grey = [sum(rgb) / 3 for rgb in sample]
    mean = sum(grey) / len(grey)
    background = max(set(sample), key=sample.count)
    return {"size": (pixels.width, pixels.height), "colours": len(set(sample)),
            "foreground": sum(1 for rgb in sample if rgb != background) / len(sample),
            "variance": sum((g - mean) ** 2 for g in grey) / len(grey)}


def shoot(rep_dir, name):
    """Screenshot a report.html into reports/screenshots/NAME and prove it shows a rendered page."""
    os.makedirs(SHOTS, exist_ok=True)
    png = os.path.join(SHOTS, name)
    assert screenshot.screenshot(os.path.join(str(rep_dir), "report.html"), png) == (1280, 1600)
    seen = rendered(png)
    assert seen["colours"] >= 64 and seen["foreground"] >= 0.03 and seen["variance"] >= 100, \
        f"{png}: the screenshot is (nearly) blank: {seen}"
    return png


def map_states(rep_dir):
    """{site code: state} of the WAN map in a report.html (jincai.topology)."""
    from jincai.topology import svg

    page = open(os.path.join(str(rep_dir), "report.html"), encoding="utf-8").read()
    return svg.read_map(page[page.index("<svg"):page.index("</svg>") + len("</svg>")]).site_states()


# host, how to break it, how to restore it, (control, kind) expected among the findings
DRIFTS = {
    "sshd setting": ("220102-app1",
                     "cp -p /etc/ssh/sshd_config /root/jcmp-sshd_config && "
                     "sed -i 's/^PermitRootLogin no$/PermitRootLogin yes/' /etc/ssh/sshd_config && "
                     "grep -q '^PermitRootLogin yes' /etc/ssh/sshd_config",
                     "test -f /root/jcmp-sshd_config && mv /root/jcmp-sshd_config /etc/ssh/sshd_config",
                     [("L3-CES1-06", "check"), ("L3-CES1-06", "drift")]),
    "firewall rule": ("220200-app1",
                      "nft insert rule inet jincai input tcp dport 22 accept comment \"jcmp-test\"",
                      "h=$(nft -a list chain inet jincai input | sed -n 's/.*jcmp-test.*# handle \\([0-9]*\\)/\\1/p');"
                      " for x in $h; do nft delete rule inet jincai input handle $x; done",
                      [("L3-CES1-18", "check")]),
    "router ACL line": ("220103-rtr",
                        "vtysh -c 'configure terminal' -c 'access-list jcmp-test seq 5 permit any' && "
                        "vtysh -c 'show running-config' | grep -q 'access-list jcmp-test'",
                        "vtysh -c 'configure terminal' -c 'no access-list jcmp-test'",
                        [("L3-ABS1-07", "check"), ("L3-ABS1-07", "drift")]),
    "application config value": ("220202-app1",
                                 "f=$(ls /etc/jincai/apps/*/app.env | head -1) && cp -p $f /root/jcmp-app.env && "
                                 "echo $f > /root/jcmp-app.path && "
                                 "sed -i 's/^JINCAI_APP_BIND=127.0.0.1$/JINCAI_APP_BIND=0.0.0.0/' $f && "
                                 "grep -q '^JINCAI_APP_BIND=0.0.0.0' $f",
                                 "test -f /root/jcmp-app.path && mv /root/jcmp-app.env $(cat /root/jcmp-app.path) && "
                                 "rm /root/jcmp-app.path",
                                 [("L3-CES1-25", "drift")]),
    "stopped service": ("220100-app1", "systemctl stop chrony", "systemctl start chrony",
                        [("L3-CES1-13", "check"), ("L3-CES1-13", "drift")]),
}


#: hosts nobody breaks, checked with the broken ones: a router and a server of a site with no drift
CLEAN_FULL = ["220000-app1", "220000-rtr"]


def test_five_hand_made_drifts_are_reported_at_their_host_and_control_and_the_rest_is_clean(tmp_path):
    """``--drift full`` (collection and site.yml --check --diff, the path an operator asks for and the
    fast path's fallback) with five hand-made drifts: each is reported at its site, host and control with
    its diff; the clean hosts in scope pass with no finding; the run changes nothing on any host. After
    the restore, the whole lab passes with zero findings. The full check runs on the five broken hosts and
    two clean ones, not the whole lab: a whole-lab site.yml --check (no false drift anywhere) is
    tests/lab/test_00_site.py's check-mode proof, and the nightly whole-lab path is ``--drift fast``
    (tests/lab/test_compliance_fast.py)."""
    inv = inventory()
    hv = inv["_meta"]["hostvars"]
    broken = {kind: d[0] for kind, d in DRIFTS.items()}
    hosts = sorted(set(broken.values()) | set(CLEAN_FULL))
    try:
        for kind, (host, breaker, _restore, _exp) in DRIFTS.items():
            res = run_on(host, breaker)
            assert res.returncode == 0, f"could not break {kind} on {host}: {res.stderr}"
        before = snapshot(hosts)
        rc, rep, out = compliance(tmp_path / "drift", "--drift", "full", "--limit", ",".join(hosts))
        after = snapshot(hosts)
        assert rep is not None, out
        assert_unchanged(before, after)  # the run fixed nothing either: it only reports
        assert rc == 1, out
        assert rep["drift_checked"] is True
        assert sorted(rep["hosts"]) == hosts
        found = {(f["host"], f["control"], f["kind"]) for f in rep["findings"]}
        missing = [(kind, host, c, k) for kind, (host, _b, _r, exp) in DRIFTS.items() for c, k in exp
                   if (host, c, k) not in found]
        assert not missing, f"not reported: {missing}\nfound: {sorted(found)}"
        for f in rep["findings"]:
            assert f["host"] in broken.values(), f"finding on a host nobody broke: {f}"
            assert f["site"] == hv[f["host"]]["jincai_site_code"] and f["clause"]
        for kind, host in broken.items():
            assert rep["hosts"][host]["status"] in ("failed", "drifted"), (kind, rep["hosts"][host])
            site = next(s for s in rep["sites"] if s["code"] == hv[host]["jincai_site_code"])
            assert site["status"] != "passed" and site["findings"] > 0
        clean = [h for h in hosts if h not in broken.values()]
        assert clean and all(rep["hosts"][h]["status"] == "passed" and rep["hosts"][h]["checks"] for h in clean), \
            {h: rep["hosts"][h]["status"] for h in clean}
        drift = next(f for f in rep["findings"] if f["host"] == broken["sshd setting"] and f["kind"] == "drift")
        assert "PermitRootLogin" in drift["diff"]
        broken_sites = {hv[h]["jincai_site_code"] for h in broken.values()}
        states = map_states(tmp_path / "drift")
        assert len(states) == len(rep["sites"]), states
        assert all((state == "clean") == (code not in broken_sites) for code, state in states.items()), states
        shoot(tmp_path / "drift", "compliance-lab-drift.png")
    finally:
        errors = []
        for kind, (host, _b, restore, _e) in DRIFTS.items():
            res = run_on(host, restore)
            if res.returncode != 0:
                errors.append(f"{kind} on {host}: {res.stderr}")
        assert not errors, f"restore failed: {errors}"
    rc, rep, out = compliance(tmp_path / "clean", "--skip-drift")
    assert rep is not None, out
    assert rep["findings"] == [], "\n".join(f"{f['host']} {f['control']} {f['title']}: {f['found']}"
                                            for f in rep["findings"])
    assert rc == 0, out
    assert sorted(rep["hosts"]) == managed_hosts()
    assert all(h["status"] == "passed" and h["checks"] for h in rep["hosts"].values())
    shoot(tmp_path / "clean", "compliance-lab-clean.png")
    dom = screenshot.dump_dom(str(tmp_path / "clean" / "report.html"))
    assert all(code in dom for code in ("220000", "220100", "220102", "220202"))


def test_an_unreachable_site_is_reported_unreachable_never_passed(tmp_path):
    # every host of 220103 pointed at an unassigned address on the lab's management network
    rc, rep, out = compliance(tmp_path / "unreach", "--skip-drift", "--limit", "220103",
                              "-e", "ansible_host=198.19.0.250", "-e", "ansible_ssh_timeout=5",
                              "-e", "compliance_router_timeout=5")
    assert rep is not None, out
    assert rc == 1, out
    assert {h: v["status"] for h, v in rep["hosts"].items()} == {"220103-app1": "unreachable",
                                                                 "220103-rtr": "unreachable"}
    site = rep["sites"][0]
    assert site["code"] == "220103" and site["status"] == "unreachable"
    assert site["counts"] == {"passed": 0, "failed": 0, "drifted": 0, "unreachable": 2}
    assert rep["summary"]["passed"] == 0
    junit = open(os.path.join(str(tmp_path / "unreach"), "junit.xml"), encoding="utf-8").read()
    assert 'errors="2"' in junit
    states = map_states(tmp_path / "unreach")
    assert states.pop("220103") == "unreachable" and set(states.values()) == {"unchecked"}, states
