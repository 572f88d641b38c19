"""The PLAY RECAP parser that idempotency tests and `make site` rely on."""

from jincai.playbook import RunResult, parse_recap

SAMPLE = """
PLAY [x] ***
TASK [y] ***
ok: [220000-rtr]

PLAY RECAP *********************************************************************
220000-app1                : ok=12   changed=3    unreachable=0    failed=0    skipped=1    rescued=0    ignored=0
220102-rtr                 : ok=2    changed=0    unreachable=1    failed=0    skipped=0    rescued=0    ignored=0
localhost                  : ok=1    changed=0    unreachable=0    failed=2    skipped=0    rescued=0    ignored=0

Wednesday 25 November 2026  15:00:00 +0000 (0:00:01.000)       0:00:10.000 ****
"""


def test_parse_recap_reads_every_host_and_counter():
    recap = parse_recap(SAMPLE)
    assert set(recap) == {"220000-app1", "220102-rtr", "localhost"}
    assert recap["220000-app1"]["changed"] == 3
    assert recap["220000-app1"]["skipped"] == 1
    assert recap["220102-rtr"]["unreachable"] == 1
    assert recap["localhost"]["failed"] == 2


def test_run_result_totals_and_offenders():
    res = RunResult(rc=2, recap=parse_recap(SAMPLE))
    assert res.total("changed") == 3
    assert res.hosts_with("failed") == ["localhost"]
    assert res.hosts_with("unreachable") == ["220102-rtr"]


def test_parse_recap_ignores_text_before_the_recap():
    assert parse_recap("220000-app1 : ok=1 changed=1 unreachable=0 failed=0 skipped=0 rescued=0 ignored=0") == {}


def test_changed_tasks_names_the_task_and_host():
    from jincai.playbook import changed_tasks

    out = (
        "TASK [sshd : Render sshd_config] ***\n"
        "ok: [220000-app1]\n"
        "changed: [220102-app1]\n"
        "TASK [chrony : Start chrony] ***\n"
        "changed: [220103-app1 -> localhost]\n"
        "RUNNING HANDLER [sshd : Reload sshd] ***\n"
        "changed: [220102-app1]\n"
    )
    assert changed_tasks(out) == [
        ("sshd : Render sshd_config", "220102-app1"),
        ("chrony : Start chrony", "220103-app1"),
        ("sshd : Reload sshd", "220102-app1"),
    ]
