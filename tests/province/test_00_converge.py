"""The province twin converges: site.yml succeeds on every host, a second pass changes nothing, and
``--check --diff`` reports no drift. Each pass runs wave by wave (province, then each city with its
counties: jincai.site_run.provision_in_waves, as `make province` does; jincai.lab.twin.waves says why)."""

import time

import pytest

from jincai.run import run
from jincai.site_run import provision_in_waves

from conftest import group

PLAYBOOK = "playbooks/site.yml"


def _tail(res, n=60):
    return "\n".join(res.output.splitlines()[-n:])


@pytest.fixture(scope="module")
def converged(twin):
    t0 = time.monotonic()
    res = provision_in_waves(twin, echo=False)
    print(f"site.yml on the twin: {time.monotonic() - t0:.0f} s, changed={res.total('changed')}")
    assert res.rc == 0, _tail(res)
    assert res.total("failed") == 0 and res.total("unreachable") == 0, _tail(res)
    return twin


def test_every_managed_host_was_provisioned(converged):
    res = run(PLAYBOOK, inventory=converged, args=["--list-hosts"])
    assert res.rc == 0
    for name in group("routers") + group("machine_room"):
        assert name in res.output, f"{name} is not in site.yml's plays"


def test_second_run_changes_nothing(converged):
    t0 = time.monotonic()
    again = provision_in_waves(converged, echo=False)
    print(f"idempotent site.yml on the twin: {time.monotonic() - t0:.0f} s")
    assert again.rc == 0, _tail(again)
    assert again.total("changed") == 0, f"not idempotent: {again.changed_tasks()[:20]}"
    assert len(again.recap) >= len(group("routers")) + len(group("machine_room"))


def test_check_diff_is_clean(converged):
    check = provision_in_waves(converged, check=True, diff=True, echo=False)
    assert check.rc == 0, _tail(check)
    assert check.total("changed") == 0, f"drift in check mode: {check.changed_tasks()[:20]}"
