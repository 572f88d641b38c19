"""The production guard of playbooks/validate.yml, on a production-marked copy of the lab inventory
(nothing but localhost is ever contacted: validate.yml runs on the control node only).

- a production inventory whose catalogue or release points at the test applications is refused
  (tests/unit/test_site_preflight.py, which also proves no host is contacted);
- the nightly drift run of ``jincai compliance`` (site.yml in check mode, as the timer runs it) passes
  the validation play without ``jincai_allow_production``; a run that can change anything is refused.
"""

import json
import os
import shlex
import shutil
import subprocess
import sys

import jinja2
import pytest
import yaml

from jincai import ROOT
from jincai.run import run as run_playbook

LAB = os.path.join(ROOT, "inventories", "lab")
JILIN_APPS = os.path.join(ROOT, "inventories", "jilin", "group_vars", "all", "apps.yml")


@pytest.fixture(scope="module")
def clean_production(tmp_path_factory):
    """A production-marked copy of the lab inventory with production's catalogue (no test artifacts)."""
    inv = tmp_path_factory.mktemp("prod") / "inv"
    shutil.copytree(LAB, inv)
    network = inv / "source" / "network.yml"
    text = network.read_text(encoding="utf-8")
    assert "  environment: lab\n" in text
    network.write_text(text.replace("  environment: lab\n", "  environment: production\n"), encoding="utf-8")
    shutil.copy(JILIN_APPS, inv / "group_vars" / "all" / "apps.yml")
    return str(inv)


def _timer_command(inventory, reports):
    """The compliance timer's command (roles/compliance_timer defaults), for this checkout."""
    with open(os.path.join(ROOT, "roles", "compliance_timer", "defaults", "main.yml"), encoding="utf-8") as fh:
        defaults = yaml.safe_load(fh)
    command = jinja2.Template(defaults["compliance_timer_command"]).render(
        compliance_timer_venv=os.path.dirname(os.path.dirname(sys.executable)),
        compliance_timer_inventory=inventory, compliance_timer_reports_dir=reports)
    return shlex.split(command)


def test_the_nightly_timer_command_runs_on_production_without_the_flag(clean_production, tmp_path):
    # The timer's exact command, plus extra args (compliance_timer_extra_args) that limit it to one app
    # server pointed at a closed loopback port: validation runs in full in the drift run
    # (site.yml --check), then the host is unreachable at once; nothing else is contacted.
    argv = _timer_command(clean_production, str(tmp_path / "reports"))
    assert argv[1:3] == ["compliance", "--inventory"] and "--quiet" in argv
    res = subprocess.run(argv + ["--limit", "220102-app1", "-e", "ansible_host=127.0.0.1", "-e", "ansible_port=1"],
                         cwd=ROOT, capture_output=True, text=True, check=False, timeout=600)
    # 1 = findings (the unreachable host): the run worked. It was 2 (the run failed) before issue 17.
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-3000:]
    run_dir = next(d for d in (tmp_path / "reports").iterdir() if d.is_dir())
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    assert report["errors"] == [] and report["drift_checked"] is True, report["errors"]
    drift_log = (run_dir / "raw" / "drift.log").read_text(encoding="utf-8")
    assert ("TASK [Refuse to change the production network unless the operator says so] *****\n"
            "ok: [220102-app1 -> localhost") in drift_log
    assert "PRODUCTION network" not in drift_log and "production refuses" not in drift_log


def test_a_changing_run_on_production_is_refused_without_the_flag_even_under_limit(clean_production):
    # --limit used to skip the validation play (hosts: localhost matched nothing), guard included.
    res = run_playbook("playbooks/validate.yml", inventory=clean_production, args=["--limit", "site_220102"])
    assert res.rc != 0
    assert f"this inventory is the PRODUCTION network ({clean_production}) and this run can change it" in res.output
