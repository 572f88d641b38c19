"""``jincai bootstrap`` on a blank county in the live lab (jincai/lab/blank.py).

A copy of the lab inventory gets county 220104 through ``jincai site add``; its hosts are attached to
the running lab blank (root password only, router with only its management address). Each bad-input
case must stop with a message naming the host and the fix and leave the site no worse (the cases run one
after another on one attachment, so each runs on what the previous left); the full run
must bring the site up, a second run (``--full``) must change nothing, and a run killed mid-way must
complete when re-run. Marked ``slow``: part of ``make test``, not of ``make site``'s verification.
"""

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time

import pytest

from jincai import ROOT
from jincai.bootstrap import preflight as pf
from jincai.lab import blank
from jincai.lab import lab as labmod

pytestmark = pytest.mark.slow

CODE = "220104"
JINCAI = os.path.join(os.path.dirname(sys.executable), "jincai")
LAB_INVENTORY = os.path.join(ROOT, "inventories", "lab")


@pytest.fixture(scope="module")
def county(tmp_path_factory, wan_provisioned):
    """(inventory copy, root password) of a blank county attached to the lab; removed afterwards."""
    d = tmp_path_factory.mktemp("bootstrap") / "lab"
    shutil.copytree(LAB_INVENTORY, d)
    res = subprocess.run([JINCAI, "site", "add", CODE, "--write", "-i", str(d)], capture_output=True, text=True,
                         check=False)
    assert res.returncode == 0, res.stderr
    password = "Lab-" + secrets.token_urlsafe(12)
    yield str(d), password
    blank.remove(CODE, restore_inventory=LAB_INVENTORY)


# How the county is attached right now: {"miswire": bool} while it is blank (as blank.add left it or as a
# refused bad-input run left it, which each such test proves), empty once a run may have changed it.
_ATTACHED = {}


def attach(county_inv, password, miswire=False, changes_site=False):
    """Attach the blank county, unless it is attached blank with this wiring already; return a fresh
    reports dir for it.

    The bad-input cases reuse one attachment: each must leave the site no worse, so the next case runs on
    what the previous one left (one attach costs 15-90 s of the suite). ``changes_site``: this case's run
    may change the site (the miswired router gets its automation accounts before the uplink check
    refuses it; the full runs), so it attaches afresh and leaves nothing for the next case to reuse."""
    if changes_site or _ATTACHED.get("miswire") is not miswire:
        _ATTACHED.clear()
        blank.add(county_inv, CODE, password, miswire=miswire, log=lambda m: None)
    if not changes_site:
        _ATTACHED["miswire"] = miswire
    reports = os.path.join(county_inv, "..", f"reports-{secrets.token_hex(3)}")
    os.makedirs(reports)
    return reports


def bootstrap(inv, reports, password, *extra, timeout=1200):
    """Run ``jincai bootstrap`` as a technician would (password in the environment)."""
    env = {**os.environ, pf.PASSWORD_ENV: password}
    return subprocess.run([JINCAI, "bootstrap", CODE, "-i", inv, "--accept-host-keys", "--reports-dir", reports,
                           *extra], capture_output=True, text=True, env=env, timeout=timeout, check=False)


def site_state(reports):
    with open(os.path.join(reports, CODE, "state.json"), encoding="utf-8") as fh:
        return json.load(fh)["steps"]


def root_password_login_works(inv, reports, password, host_name):
    site = pf.resolve_site(inv, CODE)
    host = next(h for h in site.hosts if h.name == host_name)
    try:
        pf.check_root_password(host, password, os.path.join(reports, CODE, "known_hosts"))
    except pf.BootstrapError:
        return False
    return True


def test_wrong_password_stops_naming_the_host_and_changes_nothing(county):
    inv, password = county
    reports = attach(inv, password)
    res = bootstrap(inv, reports, "not-the-password")
    assert res.returncode == 4, res.stdout + res.stderr
    assert "220104-rtr (router, " in res.stdout and "the root password was refused" in res.stdout
    assert "[FAIL] Router: automation accounts" in res.stdout
    # No worse than before: the right password still works, nothing was created.
    assert root_password_login_works(inv, reports, password, "220104-rtr")
    assert site_state(reports)["hostkeys"]["status"] == "passed"


def test_unplugged_management_cable_names_the_host(county):
    inv, password = county
    reports = attach(inv, password)
    ns = f"jlab-{CODE}-app1"
    subprocess.run(["ip", "-n", ns, "link", "set", "eth0", "down"], check=True)
    try:
        res = bootstrap(inv, reports, password, "--timeout", "2")
    finally:
        subprocess.run(["ip", "-n", ns, "link", "set", "eth0", "up"], check=True)
    assert res.returncode == 3
    assert "220104-app1 (server, " in res.stdout and "management cable" in res.stdout
    assert "[FAIL] Every host answers on SSH" in res.stdout


def test_host_key_mismatch_stops_before_any_login(county):
    inv, password = county
    reports = attach(inv, password)
    assert bootstrap(inv, reports, password, "--preflight").returncode == 0
    kh = os.path.join(reports, CODE, "known_hosts")
    with open(kh, encoding="ascii") as fh:
        lines = fh.read().splitlines()
    other = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(reports, "fake")],
                           check=True)
    assert other.returncode == 0
    with open(os.path.join(reports, "fake.pub"), encoding="ascii") as fh:
        fake = fh.read().split()[1]
    with open(kh, "w", encoding="ascii") as fh:
        for ln in lines:
            name, kind, _key = ln.split()[:3]
            fh.write(f"{name} {kind} {fake if name.startswith(CODE + '-app1') and kind == 'ssh-ed25519' else _key}\n")
    res = bootstrap(inv, reports, password)
    assert res.returncode == 3
    assert "HOST KEY MISMATCH: 220104-app1" in res.stdout + res.stderr
    assert f"jincai bootstrap {CODE} --forget-host 220104-app1" in res.stdout + res.stderr
    assert "router_access" not in site_state(reports)


def test_wan_line_in_the_wrong_port_is_named(county):
    inv, password = county
    reports = attach(inv, password, miswire=True, changes_site=True)
    res = bootstrap(inv, reports, password)
    assert res.returncode == 4, res.stdout[-3000:]
    assert "uplink port eth1" in res.stdout and "wrong port" in res.stdout
    assert "[FAIL] Router: uplink and routing config" in res.stdout


@pytest.mark.long
def test_blank_county_comes_up_and_a_second_run_changes_nothing(county):
    """The out-of-band bootstrap, full run then ``--full`` again. Not in CI (``long``: make test-slow): CI's
    slow phase proves blank -> verified and changed=0 on a second run by the in-band day-0 proof
    (test_bootstrap_day0.py), which uses the same engine and roles."""
    inv, password = county
    reports = attach(inv, password, changes_site=True)
    first = bootstrap(inv, reports, password)  # how long it takes: benchmarks/bootstrap.py
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert "is on the WAN, compliant and verified" in first.stdout
    second = bootstrap(inv, reports, password, "--full")
    assert second.returncode == 0, second.stdout[-4000:]
    steps = site_state(reports)
    changed = {k: v.get("changed") for k, v in steps.items() if v.get("changed")}
    assert changed == {}, f"second run changed something: {changed}"
    # Password and root login are off now.
    assert not root_password_login_works(inv, reports, password, "220104-app1")


@pytest.mark.long
def test_a_killed_bootstrap_completes_when_run_again(county):
    """Kill mid-way, then the same command completes. Not in CI (``long``: make test-slow), for CI's
    budget: blank -> verified and a second run with changed=0 are proven in CI by the in-band day-0 proof."""
    inv, password = county
    reports = attach(inv, password, changes_site=True)
    env = {**os.environ, pf.PASSWORD_ENV: password}
    proc = subprocess.Popen([JINCAI, "bootstrap", CODE, "-i", inv, "--accept-host-keys", "--reports-dir", reports],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    for line in proc.stdout:
        if "Servers: security baseline" in line:  # mid-way: router done, baseline starting
            time.sleep(20)
            # the whole process group, as a closed terminal or a power cut would: ansible-playbook too
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    res = bootstrap(inv, reports, password)
    assert res.returncode == 0, res.stdout[-4000:]
    assert "[DONE] Router: uplink and routing config" in res.stdout
    assert "is on the WAN, compliant and verified" in res.stdout
    # Password and root login are off now.
    assert not root_password_login_works(inv, reports, password, f"{CODE}-app1")
