"""The audit trail on the lab: ARA holds the lab suite's runs with their diffs, and a hand-made change
on site 220102 and its revert appear with user and time in ``jincai history --site 220102``.

The lab suite itself runs with ARA off (`make lab-test` sets ANSIBLE_CALLBACKS_ENABLED=jincai_timer: the
offline client costs ~25 ms of control-node CPU per task result, minutes over the suite); these tests turn
it on for their own runs (``callbacks=("jincai_ara",)``), as ansible.cfg does for every operator run. The
lab's store is ``/var/lib/jincai/ara/lab`` (plugins/callback/jincai_ara.py).
"""

import getpass
import os
import subprocess

import pytest

from jincai import ROOT, audit, release
from jincai.audit import history as hist
from jincai.run import run
import hoststate
from conftest import JINCAI, LAB_INVENTORY, run_on

pytestmark = pytest.mark.lab

HOST = "220102-app1"
PWQUALITY = "/etc/security/pwquality.conf"
MARK = "# hand-made change (tests/lab/test_audit_lab.py)"


ARA = ("jincai_ara",)


@pytest.fixture(scope="module")
def client(lab_up):
    """ARA's client on the lab's store, after one recorded site.yml run (check mode, one site)."""
    res = run("playbooks/site.yml", inventory=LAB_INVENTORY, check=True, args=["--limit", "site_220102"],
              callbacks=ARA)
    assert res.rc == 0, res.output[-3000:]
    assert os.path.isfile(os.path.join(audit.store_dir("lab"), audit.DB_FILE)), "no ARA store for the lab"
    return hist.client_for("lab")


def test_site_runs_are_recorded_with_results(client, lab_up):
    runs = hist.history(client, since=hist.parse_since("1d"))
    site_runs = [r for r in runs if r.get("path", "").endswith("playbooks/site.yml")]
    assert site_runs, "no site.yml run in the audit trail"
    labels = {label["name"] for label in site_runs[0]["labels"]}
    assert "network:lab" in labels and any(name.startswith("commit:") for name in labels)
    assert f"release:{release.inventory_vars(LAB_INVENTORY)['apps_release']}" in labels
    assert any(name.startswith("site:") for name in labels)
    assert any(r["status"] == "completed" for r in site_runs)


def test_a_hand_made_change_and_its_revert_appear_with_user_and_time(client, lab_up):
    run_on(HOST, f"echo '{MARK}' >> {PWQUALITY}", check=True)
    try:
        check = run("playbooks/baseline.yml", inventory=LAB_INVENTORY, check=True, diff=True,
                    args=["--limit", HOST], callbacks=ARA)
        assert check.rc == 0 and any(h == HOST for _t, h in check.changed), check.changed_tasks()
    finally:
        revert = run("playbooks/baseline.yml", inventory=LAB_INVENTORY, diff=True, args=["--limit", HOST],
                     callbacks=ARA)
    assert revert.rc == 0 and any(h == HOST for _t, h in revert.changed), revert.changed_tasks()
    assert MARK not in hoststate.host(HOST).file(PWQUALITY).content_string
    runs = hist.history(client, site="220102", since=hist.parse_since("30m"), host=HOST, diff=True)
    recent = [r for r in runs if r.get("path", "").endswith("playbooks/baseline.yml")][:2]
    assert len(recent) == 2, [r.get("path") for r in runs]
    applied, checked = recent  # newest first
    assert {label["name"] for label in checked["labels"]} >= {"check:True", f"subset:{HOST}", "site:220102"}
    assert {label["name"] for label in applied["labels"]} >= {"check:False", "site:220102"}
    for pb in (checked, applied):
        assert pb["user"] == getpass.getuser() and pb["started"] and pb["controller"]
        assert any(MARK in (r.get("diff") or "") for r in pb["results"]), pb["results"]
    out = subprocess.run([JINCAI, "history", "--site", "220102", "--since", "30m", "--diff"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "playbooks/baseline.yml" in out.stdout and MARK in out.stdout and getpass.getuser() in out.stdout
