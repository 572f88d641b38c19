"""Pieces of ``make site``'s driver (jincai/site_run.py) that need no lab."""

import os
import re
import sys

from jincai import site_run
from jincai.verify import plan


def test_verification_output_is_echoed_live_and_kept(capfd):
    rc, out = site_run._run_echoed([sys.executable, "-c",
                                    "import sys; sys.stdout.write('..F'); sys.stdout.flush(); "
                                    "print(); print('1 failed, 2 passed in 0.1s'); sys.exit(1)"])
    assert rc == 1
    assert out.splitlines()[-1] == "1 failed, 2 passed in 0.1s"
    assert "..F" in capfd.readouterr().out


def test_pytest_closing_line_is_counted():
    assert site_run._pytest_counts("3 failed, 250 passed, 2 errors in 900.1s (0:15:00)") == (250, 5)
    assert site_run._pytest_counts("no tests ran in 0.01s") == (0, 0)


# ---------------------------------------------------------------- the verification step: jincai verify

def test_the_lab_is_verified_by_jincai_verify_of_the_whole_lab_not_by_the_lab_tests():
    argv = site_run.verify_argv(site_run.LAB_INVENTORY, "/r/site-1")
    assert os.path.basename(argv[0]) == "jincai" and argv[1:] == ["verify", "-i", site_run.LAB_INVENTORY,
                                                                   "-o", "/r/site-1"]
    assert not {"-l", "--limit", "-k"} & set(argv)  # the whole lab


def _fake_site(monkeypatch, tmp_path, verify_rc, failed=()):
    """main() with the lab, site.yml and jincai verify replaced: returns the argv jincai verify got."""
    from jincai.run import RunResult
    from jincai.verify import report

    net = plan.Network(site_run.LAB_INVENTORY)
    scope = plan.resolve_scope(net, None)
    calls = []
    monkeypatch.setattr(site_run, "VERIFY_REPORTS", str(tmp_path))
    monkeypatch.setattr(site_run.subprocess, "call", lambda argv, **kw: calls.append(("up", argv)) or 0)
    monkeypatch.setattr(site_run, "run_playbook", lambda *a, **kw: calls.append(("playbook", a)) or RunResult(
        rc=0, recap={h: {"changed": 0, "failed": 0, "unreachable": 0} for h in scope}))

    def fake_echoed(argv):
        calls.append(("verify", argv))
        out = argv[argv.index("-o") + 1]
        os.makedirs(out)
        results = [{"host": h, "check": c.id, "test": c.test, "seconds": 0.1,
                    "outcome": "failed" if (h, c.id) in failed else "passed",
                    "message": f"{h}: {c.id} ({c.title}): expected {c.expected}, found x" * ((h, c.id) in failed)}
                   for h in scope for c in plan.checks_for(net, h)]
        report.write_summary(report.summarise(results, net.hostvars, scope), os.path.join(out, "summary.json"))
        return verify_rc, ""

    monkeypatch.setattr(site_run, "_run_echoed", fake_echoed)
    return calls, net, scope


def test_make_site_runs_jincai_verify_after_site_yml_and_prints_each_site(monkeypatch, tmp_path, capsys):
    calls, net, scope = _fake_site(monkeypatch, tmp_path, 0)
    assert site_run.main([]) == 0
    assert [kind for kind, _ in calls] == ["up", "playbook", "verify"]
    argv = calls[-1][1]
    assert argv[:-1] == site_run.verify_argv(site_run.LAB_INVENTORY, "")[:-1]
    assert os.path.dirname(argv[-1]) == str(tmp_path) and os.path.basename(argv[-1]).startswith("site-")
    out = capsys.readouterr().out
    planned = sum(len(plan.checks_for(net, h)) for h in scope)
    sites = len({net.site_of(h) for h in scope})
    assert f"verify:       {planned} checks on {len(scope)} hosts in {sites} sites, {planned} passed, 0 failed" in out
    assert re.search(r"^  220102 \S+ county: PASSED 2 hosts", out, re.M)
    assert "tests/lab" not in " ".join(map(str, argv)) and "result:       OK" in out


def test_make_site_fails_when_verify_fails(monkeypatch, tmp_path, capsys):
    _calls, _net, _scope = _fake_site(monkeypatch, tmp_path, 1, failed={("220102-app1", "service.rsyslog")})
    assert site_run.main([]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^  220102 \S+ county: FAILED 2 hosts, \d+ passed, 1 failed.*\[220102-app1 service.rsyslog\]",
                     out, re.M)
    assert "result:       FAILED" in out


def test_make_site_fails_when_verify_could_not_run(monkeypatch, tmp_path, capsys):
    _fake_site(monkeypatch, tmp_path, 2)
    monkeypatch.setattr(site_run, "_run_echoed", lambda argv: (2, ""))
    assert site_run.main([]) == 1
    out = capsys.readouterr().out
    assert "the run failed (jincai verify exit 2, no check result)" in out and "result:       FAILED" in out


def test_make_province_verifies_the_twin_with_jincai_verify_then_its_flows(monkeypatch, capsys):
    from jincai.lab import twin
    from jincai.run import RunResult

    calls = []
    monkeypatch.setattr(site_run.subprocess, "call", lambda argv, **kw: calls.append(("up", argv)) or 0)
    monkeypatch.setattr(site_run, "provision_in_waves", lambda inv: calls.append(("waves", inv)) or RunResult(
        rc=0, recap={"220000-rtr": {"changed": 0, "failed": 0, "unreachable": 0}}))
    summary = {"checks": 9, "hosts": 1, "sites_total": 1, "passed": 8, "failed": 1, "skipped": 0, "sites": []}
    monkeypatch.setattr(site_run, "run_verify", lambda inv: calls.append(("verify", inv)) or (1, summary, "/r"))
    monkeypatch.setattr(site_run, "verify_lines", lambda rc, s, d: [f"verify:       {s['checks']} checks, rc {rc}"])
    monkeypatch.setattr(site_run, "_run_echoed", lambda argv: calls.append(("flows", argv)) or (0, "3 passed in 1s"))
    assert site_run.main(["--twin", "inventories/jilin"]) == 1  # a failed check fails the run, flows passed
    inventory = twin.default_out_dir("inventories/jilin")
    assert [kind for kind, _ in calls] == ["up", "waves", "verify", "flows"]
    assert calls[1][1] == inventory and calls[2][1] == inventory
    assert "tests/province/test_wan.py" in calls[3][1]
    out = capsys.readouterr().out
    assert "verify:       9 checks, rc 1" in out and "flows:        3 passed, 0 failed" in out
    assert "result:       FAILED" in out
