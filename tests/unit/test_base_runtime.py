"""roles/base's two runtime shells (kernel parameters and log modes; the running host name), rendered from
the role and run in a sandbox whose /proc/sys is a directory of tmp_path: what a server, a container and
check mode each get. Nothing outside tmp_path is read or written."""

import os
import subprocess

import pytest

from test_role_tasks import JINJA, _flow, role_vars

TASKS = {t["name"]: t for t in [*_flow("base"), *_flow("base", "log_permissions.yml")]}
SYSCTL = TASKS["Apply the kernel parameters that differ"]
LOGS = TASKS["Take group write and other access off the log files"]
HOSTNAME = TASKS["Set the running host name when it differs"]


@pytest.fixture
def sandbox(tmp_path):
    """(run, proc, logs): run(task, container=, check=) renders and runs a task's shell there."""
    proc, logs, fake = tmp_path / "proc" / "sys", tmp_path / "log", tmp_path / "bin"
    for d in (proc, logs, fake):
        d.mkdir(parents=True)
    ctx = role_vars("base")
    ctx.update(base_log_dirs=[str(logs)], base_hostname="220202-app1")
    for key in ctx["base_sysctl"]:
        path = proc / key.replace(".", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("9\n", encoding="ascii")
    (proc / "kernel" / "hostname").write_text("jincai-lab\n", encoding="ascii")

    def run(task, container=False, check=False):
        detect = fake / "systemd-detect-virt"
        detect.write_text(f"#!/bin/sh\nexit {0 if container else 1}\n", encoding="ascii")
        detect.chmod(0o755)
        cmd = JINJA.from_string(task["ansible.builtin.shell"]["cmd"]).render(dict(ctx, ansible_check_mode=check))
        cmd = cmd.replace("/proc/sys", str(proc))
        env = dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}")
        return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=env, check=False)

    return run, proc, logs


def value(proc, key):
    return (proc / key.replace(".", "/")).read_text(encoding="ascii").strip()


def test_a_server_gets_every_kernel_parameter_and_a_second_run_changes_nothing(sandbox):
    run, proc, _logs = sandbox
    first = run(SYSCTL)
    assert first.returncode == 0, first.stderr
    assert value(proc, "kernel.randomize_va_space") == "2" and value(proc, "net.ipv4.tcp_syncookies") == "1"
    assert "set kernel.kptr_restrict=2" in first.stdout.splitlines()
    again = run(SYSCTL)
    assert again.returncode == 0 and again.stdout == ""


def test_a_container_sets_its_own_network_keys_and_never_the_host_kernel(sandbox):
    run, proc, _logs = sandbox
    res = run(SYSCTL, container=True)
    assert res.returncode == 0, res.stderr
    assert value(proc, "net.ipv4.conf.all.accept_redirects") == "0"
    assert value(proc, "kernel.randomize_va_space") == "9" and value(proc, "fs.suid_dumpable") == "9"
    assert "host-kernel kernel.yama.ptrace_scope" in res.stdout.splitlines()
    assert not [line for line in res.stdout.splitlines() if line.startswith("set ") and "net." not in line]


def test_a_refused_key_is_reported_not_failed(sandbox):
    run, proc, _logs = sandbox
    target = proc / "net" / "ipv4" / "tcp_syncookies"
    target.unlink()
    target.mkdir()  # writing it fails, as a key the kernel refuses does
    res = run(SYSCTL)
    assert res.returncode == 0, res.stderr
    assert "read-only net.ipv4.tcp_syncookies" in res.stdout.splitlines()


def test_check_mode_reports_and_writes_nothing(sandbox):
    run, proc, logs = sandbox
    (logs / "app.log").write_text("x", encoding="ascii")
    (logs / "app.log").chmod(0o644)
    (logs / "wtmp").write_text("", encoding="ascii")
    (logs / "wtmp").chmod(0o664)
    (logs / "README").symlink_to(logs / "app.log")  # a link is not a log file (Debian's /var/log/README)
    res = run(SYSCTL, check=True)
    assert res.returncode == 0 and "set kernel.randomize_va_space=2" in res.stdout
    assert value(proc, "kernel.randomize_va_space") == "9"
    res = run(LOGS, check=True)
    assert res.returncode == 0 and res.stdout == f"chmod {logs}/app.log\n", res.stdout
    assert oct((logs / "app.log").stat().st_mode)[-3:] == "644"
    assert run(LOGS).stdout == f"chmod {logs}/app.log\n"
    assert oct((logs / "app.log").stat().st_mode)[-3:] == "640" and oct((logs / "wtmp").stat().st_mode)[-3:] == "664"
    assert run(LOGS).stdout == ""  # a second run changes nothing


def test_the_running_host_name_is_set_on_a_server_and_reported_in_a_container(sandbox):
    run, proc, _logs = sandbox
    check = run(HOSTNAME, check=True)
    assert check.returncode == 0 and check.stdout == "set 220202-app1\n" and value(proc, "kernel.hostname") == "jincai-lab"
    assert run(HOSTNAME).stdout == "set 220202-app1\n" and value(proc, "kernel.hostname") == "220202-app1"
    assert run(HOSTNAME).stdout == ""  # converged: nothing to do
    (proc / "kernel" / "hostname").unlink()
    (proc / "kernel" / "hostname").mkdir()  # cannot be written (no CAP_SYS_ADMIN in the container)
    inside = run(HOSTNAME, container=True)
    assert inside.returncode == 0 and inside.stdout.startswith("container: ")
    outside = run(HOSTNAME)
    assert outside.returncode == 1 and "cannot set the running host name" in outside.stderr
