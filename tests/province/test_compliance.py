"""``jincai compliance --waves`` over the whole converged twin, with one hand-made drift.

The drift run is ``site.yml --check --diff`` on every managed host, so this is also the proof that
check mode is clean over the twin: the one file changed by hand is the only drift reported, every
host of every site is reached, and no run fails. The file is put back by site.yml afterwards. Runs
after test_00_converge (file order) and before the failure-injection tests.
"""

import json
import os

from conftest import group, jincai, run_on
from jincai.run import run as run_playbook

MARK = "# drift made by tests/province/test_compliance.py"


def test_whole_twin_compliance_reports_the_one_drift_made_and_nothing_else(twin, tmp_path):
    app = group("app_servers")[-1]  # a county's, far from the province
    run_on(app, f"echo '{MARK}' >> /etc/chrony/chrony.conf", check=True)
    try:
        out = tmp_path / "report"
        res = jincai("compliance", "--waves", "-i", twin, "-o", str(out), "--history", str(tmp_path / "h.json"),
                     timeout=5400)
        assert os.path.exists(out / "report.json"), res.stdout[-3000:] + res.stderr[-3000:]
        with open(out / "report.json", encoding="utf-8") as fh:
            rep = json.load(fh)
    finally:
        fix = run_playbook("playbooks/site.yml", inventory=twin, args=["--limit", app])
    assert not rep.get("errors"), rep["errors"]
    managed = set(group("routers")) | set(group("machine_room"))
    assert set(rep["hosts"]) == managed
    assert rep["summary"]["unreachable"] == 0, [h for h, d in rep["hosts"].items() if d["status"] == "unreachable"]
    drifted = sorted(h for h, d in rep["hosts"].items() if d["is_drifted"])
    assert drifted == [app], [f for f in rep["findings"] if f["kind"] == "drift"][:10]
    drift = [f for f in rep["findings"] if f["kind"] == "drift"]
    assert any("chrony" in (f.get("task") or "") + (f.get("found") or "") for f in drift), drift
    assert rep["timing"]["runs"]["drift"] and rep["timing"]["runs"]["collect"]
    print(f"\ntwin compliance --waves: {rep['summary']['hosts']} hosts, {rep['summary']['sites']} sites, "
          f"{rep['duration_s']} s (drift {rep['timing']['runs']['drift']} s, collect "
          f"{rep['timing']['runs']['collect']} s summed over waves); failed checks "
          f"{rep['summary']['checks_failed']}")
    assert fix.rc == 0 and any(h == app for _t, h in fix.changed), fix.changed_tasks()
