"""The production guard of playbooks/validate.yml, on a production-marked copy of the lab inventory
(nothing but localhost is ever contacted: validate.yml runs on the control node only).

- a production inventory whose catalogue or release points at the test applications is refused;
- the nightly drift run of ``jincai compliance`` (site.yml in check mode, as the timer runs it) passes
  the validation play without ``jincai_allow_production``; a run that can change anything is refused.
"""

import os
import shutil

import pytest

from jincai import ROOT, compliance
from jincai.playbook import run as run_playbook

LAB = os.path.join(ROOT, "inventories", "lab")
JILIN_APPS = os.path.join(ROOT, "inventories", "jilin", "group_vars", "all", "apps.yml")


def _production_copy(tmp_path, with_fixtures):
    inv = tmp_path / "inv"
    shutil.copytree(LAB, inv)
    network = inv / "source" / "network.yml"
    text = network.read_text(encoding="utf-8")
    assert "  environment: lab\n" in text
    network.write_text(text.replace("  environment: lab\n", "  environment: production\n"), encoding="utf-8")
    if not with_fixtures:  # the catalogue production ships: applications without the test artifacts
        shutil.copy(JILIN_APPS, inv / "group_vars" / "all" / "apps.yml")
    return str(inv)


def test_production_refuses_a_catalogue_and_release_of_test_applications(tmp_path):
    inv = _production_copy(tmp_path, with_fixtures=True)
    res = run_playbook("playbooks/validate.yml", inventory=inv, check=True)
    assert res.rc != 0
    assert f"{inv}: apps_build_fixtures is true" in res.output
    assert f"{inv}: apps_catalog.treasury.versions.2.0.0: sha256 is the test application treasury-2.0.0.tar.gz" \
        in res.output
    assert "releases/lab-2.yml: application budget: sha256 is the test application" in res.output


@pytest.fixture(scope="module")
def clean_production(tmp_path_factory):
    return _production_copy(tmp_path_factory.mktemp("prod"), with_fixtures=False)


def test_the_nightly_drift_run_passes_validation_on_production_without_the_flag(clean_production, tmp_path):
    # Exactly what `jincai compliance` (the timer's command) runs for drift: site.yml --check --diff, limited
    # to one app server whose address is a closed loopback port: the validation play (control node) runs
    # in full, then the first contact with the host fails at once as unreachable, nothing else is reached.
    timings = {}
    compliance._play("playbooks/site.yml", clean_production, "220102-app1",
                     ["ansible_host=127.0.0.1", "ansible_port=1"], str(tmp_path / "drift.json"), True,
                     str(tmp_path / "drift.log"), timings, "drift", str(tmp_path / "facts"))
    log = (tmp_path / "drift.log").read_text(encoding="utf-8")
    assert timings["drift"]["rc"] in compliance.RUN_OK, log[-3000:]
    assert ("TASK [Refuse to change the production network unless the operator says so] *****\n"
            "ok: [220102-app1 -> localhost") in log
    assert "PRODUCTION network" not in log and "production refuses" not in log
    # the run went past validation to the managed host (which the closed port makes unreachable)
    assert timings["drift"]["recap"]["220102-app1"] == dict(timings["drift"]["recap"]["220102-app1"], failed=0,
                                                             unreachable=1), log[-3000:]


def test_a_changing_run_on_production_is_refused_without_the_flag_even_under_limit(clean_production):
    # --limit used to skip the validation play (hosts: localhost matched nothing), guard included.
    res = run_playbook("playbooks/validate.yml", inventory=clean_production, args=["--limit", "site_220102"])
    assert res.rc != 0
    assert f"this inventory is the PRODUCTION network ({clean_production}) and this run can change it" in res.output
