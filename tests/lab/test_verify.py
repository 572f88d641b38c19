"""``jincai verify`` on the provisioned lab (issue 19): every planned check passes, and a hand-made
breakage (an application's service stopped on one app server) fails exactly the matching checks, each
naming host, check and expected vs found; the service is started again afterwards.

Needs the provisioned lab (tests/lab/test_00_site.py). Lab time: one whole-lab run (goal < 30 s) and
two runs limited to one host (a few seconds each).
"""

import json
import subprocess
import time

import pytest

from conftest import JINCAI, LAB_INVENTORY, hostvars, inventory, run_on
from jincai.verify import plan, report

pytestmark = pytest.mark.lab


def verify(tmp_path, *args, timeout=240):
    """Run ``jincai verify ARGS`` into ``tmp_path``; return (exit code, stdout, summary dict, results)."""
    out = tmp_path / f"run-{time.monotonic_ns()}"
    res = subprocess.run([JINCAI, "verify", "-i", LAB_INVENTORY, "-o", str(out), *args], capture_output=True,
                         text=True, timeout=timeout, check=False)
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else None
    results = report.parse_junit(str(out / "junit.xml")) if (out / "junit.xml").exists() else []
    return res.returncode, res.stdout + res.stderr, summary, results


def _county_app_server():
    return sorted(h for h in inventory()["county"]["hosts"] if h in inventory()["app_servers"]["hosts"])[0]


def test_verify_passes_on_the_provisioned_lab(lab_up, tmp_path):
    t0 = time.monotonic()
    rc, out, summary, results = verify(tmp_path)
    seconds = time.monotonic() - t0
    assert rc == 0, out[-4000:]
    net = plan.Network(LAB_INVENTORY)
    scope = plan.resolve_scope(net, None)
    planned = sum(len(plan.checks_for(net, h)) for h in scope)
    assert summary["status"] == "passed" and summary["checks"] == planned == len(results)
    assert {r["host"] for r in results} == set(scope)
    assert len(summary["sites"]) == len({hostvars(h)["jincai_site_code"] for h in scope})
    print(f"\njincai verify, whole lab: {planned} checks on {len(scope)} hosts in {seconds:.1f} s "
          f"({planned / seconds:.0f} checks/s)")


def test_a_stopped_service_fails_its_checks_naming_host_check_expected_and_found(lab_up, tmp_path):
    host = _county_app_server()
    app = sorted(hostvars(host)["jincai_apps"])[-1]
    unit = f"jincai-{app}"
    run_on(host, f"systemctl stop {unit}", check=True)
    try:
        rc, out, summary, results = verify(tmp_path, "-l", host)
    finally:
        run_on(host, f"systemctl start {unit}", check=True)
    assert rc == 1, out[-3000:]
    failed = {r["check"]: r["message"] for r in results if r["outcome"] in ("failed", "error")}
    assert f"service.{unit}" in failed and f"app.{app}.health" in failed, failed
    assert failed[f"service.{unit}"] == (f"{host}: service.{unit} ({unit} runs and starts at boot): "
                                         f"expected running, enabled, found inactive, enabled")
    assert failed[f"app.{app}.health"].startswith(f"{host}: app.{app}.health (")
    assert "expected https://" in failed[f"app.{app}.health"] and ", found " in failed[f"app.{app}.health"]
    # only what the stopped service explains fails: its unit, its health, its loopback backend listener
    backend = next(c.id for c in plan.checks_for(plan.Network(LAB_INVENTORY), host)
                   if c.test == "test_listener" and c.params.get("service") == unit)
    assert set(failed) <= {f"service.{unit}", f"app.{app}.health", backend}, failed
    assert f"FAILED {failed[f'service.{unit}']}" in out
    site = hostvars(host)["jincai_site_code"]
    assert any(line.startswith(f"{site} ") and "FAILED" in line and f"{host} service.{unit}" in line
               for line in out.splitlines()), out[-2000:]
    # started again: the same checks pass (the application needs a moment to answer its health check)
    for _attempt in range(10):
        rc, out, summary, _ = verify(tmp_path, "-l", host, "-k", app)
        if rc == 0:
            break
        time.sleep(1)
    assert rc == 0, out[-3000:]

