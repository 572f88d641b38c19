"""Provision the whole lab with playbooks/site.yml, then prove the standards on it.

Runs first among the lab tests (file name): the role, routing, VPN and app tests that follow check
the lab this file provisioned. Idempotency and check mode are proven here once for every play.
"""

import pytest

pytestmark = pytest.mark.lab


def _tail(res, n=60):
    return "\n".join(res.output.splitlines()[-n:])


@pytest.fixture(scope="module")
def first_run(site_first):
    """The converging run of site.yml (whatever state the lab was in): the session's, tests/lab/conftest.py."""
    return site_first


def test_site_playbook_provisions_every_lab_host(first_run, lab_inventory):
    assert first_run.rc == 0, _tail(first_run)
    assert first_run.hosts_with("failed") == []
    assert first_run.hosts_with("unreachable") == []
    # every host jincai manages; external parties (banks, tax bureau) are not ours to configure
    external = set(lab_inventory.get("external_parties", {}).get("hosts", []))
    assert external, "the lab inventory has no external_parties group"
    managed = set(lab_inventory["_meta"]["hostvars"]) - external
    assert not external & set(first_run.recap), "site.yml touched an external party's host"
    missing = managed - set(first_run.recap)
    assert not missing, f"site.yml never touched: {sorted(missing)}"


def test_second_run_changes_nothing(first_run, site_second):
    assert first_run.rc == 0, "the first run failed; idempotency is meaningless"
    second = site_second
    assert second.rc == 0, _tail(second)
    assert second.total("changed") == 0, f"not idempotent: {second.changed_tasks()}"


def test_check_mode_with_diff_is_clean_and_changes_nothing(first_run, site_check):
    assert first_run.rc == 0, "the first run failed"
    check = site_check
    assert check.rc == 0, _tail(check)
    assert check.total("changed") == 0, f"check mode reports drift: {check.changed_tasks()}"
