"""roles/compliance_timer on a lab host standing in for the provincial control node: the timer is
installed and scheduled, runs never overlap (flock), old run directories are removed, and the role is
idempotent and check-mode clean. The real `jincai compliance` is replaced by a stub command (the lab
hosts carry no jincai checkout); everything is removed again at the end.
"""

import os
import textwrap

import pytest

from jincai import ROOT
from jincai.run import run

import hoststate
from conftest import run_on

pytestmark = pytest.mark.lab

LAB = os.path.join(ROOT, "inventories", "lab")
HOST = "220000-svc"
UNIT = "jincai-compliance-test"
REPORTS = "/var/lib/jincai-compliance-test"
LOCK = "/run/lock/jincai-compliance-test.lock"
STUB = "/usr/local/bin/jcmp-stub"
STUB_TEXT = '#!/bin/sh\nsleep 2\nd={reports}/$(date -u +%Y%m%dT%H%M%SZ)\nmkdir -p "$d"\necho {{}} > "$d/report.json"\n'


@pytest.fixture(scope="module")
def playbook(tmp_path_factory):
    path = tmp_path_factory.mktemp("timer") / "timer.yml"
    path.write_text(textwrap.dedent(f"""\
        ---
        - name: Install the compliance timer (test)
          hosts: {HOST}
          gather_facts: false
          become: true
          roles:
            - role: compliance_timer
              vars:
                compliance_timer_unit: {UNIT}
                compliance_timer_repo_dir: /
                compliance_timer_reports_dir: {REPORTS}
                compliance_timer_lock_file: {LOCK}
                compliance_timer_keep_days: 30
                compliance_timer_command: {STUB}
        """))
    return str(path)


def sh(cmd):
    """An action on HOST (write the stub, start a unit, make directories); state is read with hoststate."""
    res = run_on(HOST, cmd, timeout=120)
    assert res.returncode == 0, f"{cmd}: {res.stdout} {res.stderr}"
    return res.stdout


def test_timer_role_installs_schedules_locks_and_prunes(playbook):
    sh(f"cat > {STUB} <<'EOS'\n{STUB_TEXT.format(reports=REPORTS)}EOS\nchmod 0755 {STUB}")
    try:
        first = run(playbook, inventory=LAB)
        assert first.rc == 0, first.output[-3000:]
        second = run(playbook, inventory=LAB)
        assert second.rc == 0 and second.total("changed") == 0, second.output[-3000:]
        check = run(playbook, inventory=LAB, check=True, diff=True)
        assert check.rc == 0 and check.total("changed") == 0, check.output[-3000:]

        timer = hoststate.host(HOST).service(f"{UNIT}.timer")
        hoststate.expect(HOST, f"{UNIT}.timer", timer.is_enabled and timer.is_running, "enabled and active",
                         f"enabled {timer.is_enabled}, active {timer.is_running}")
        timers = hoststate.read(HOST, "systemctl list-timers --all --no-legend")
        assert f"{UNIT}.timer" in timers and f"{UNIT}-full.timer" in timers  # nightly fast, weekly full drift
        assert "--drift full" in hoststate.read(HOST, f"systemctl cat {UNIT}-full.service")
        assert "--drift" not in hoststate.read(HOST, f"systemctl show -p ExecStart {UNIT}.service")
        hoststate.read(HOST, f"systemd-analyze verify /etc/systemd/system/{UNIT}.service "
                             f"/etc/systemd/system/{UNIT}.timer")  # fails naming the host and the output

        # overlap: while another run holds the lock, a new run exits 75 at once and does nothing
        sh(f"rm -rf {REPORTS}/2*; systemd-run --unit=jcmp-holder --collect flock {LOCK} sleep 30")
        sh(f"systemctl start {UNIT}.service")
        show = hoststate.read(HOST, f"systemctl show {UNIT}.service -p ExecMainStatus -p Result")
        assert "ExecMainStatus=75" in show and "Result=success" in show, show
        assert not [x for x in hoststate.host(HOST).file(REPORTS).listdir() if x.startswith("2")]
        sh("systemctl stop jcmp-holder.service")

        # retention: a run directory older than keep_days goes after the next run, a recent one stays
        sh(f"mkdir -p {REPORTS}/20250101T000000Z {REPORTS}/20990101T000000Z && "
           f"touch -d '200 days ago' {REPORTS}/20250101T000000Z")
        sh(f"systemctl start {UNIT}.service")
        listing = hoststate.host(HOST).file(REPORTS).listdir()
        assert "20250101T000000Z" not in listing and "20990101T000000Z" in listing
        assert len([x for x in listing if x.startswith("2026") or x.startswith("2027")]) == 1  # the stub's run
        show = hoststate.read(HOST, f"systemctl show {UNIT}.service -p ExecMainStatus -p Result")
        assert "ExecMainStatus=0" in show and "Result=success" in show, show
    finally:
        run_on(HOST, f"systemctl stop jcmp-holder.service 2>/dev/null; systemctl disable --now {UNIT}.timer {UNIT}-full.timer; "
                     f"rm -f /etc/systemd/system/{UNIT}.service /etc/systemd/system/{UNIT}.timer "
                     f"/etc/systemd/system/{UNIT}-full.service /etc/systemd/system/{UNIT}-full.timer {STUB} {LOCK}; "
                     f"rm -rf {REPORTS}; systemctl daemon-reload; systemctl reset-failed", timeout=60)
