"""The process ansible-runner starts in place of ``ansible-playbook``: it arms the parent-death signal,
then becomes ansible-playbook (exec, same PID).

ansible-runner spawns the playbook in a new session on a pseudo-terminal (pexpect) and ignores SIGHUP,
so a jincai command killed outright (SIGKILL of its process group, a closed terminal, a power cut of
the operator's session) would leave ansible-playbook running on the hosts. With PR_SET_PDEATHSIG the
kernel sends ansible-playbook SIGTERM when the jincai process that started it dies.

Usage (written by jincai.run.runner): ``python -m jincai.run.child ANSIBLE_PLAYBOOK ARGS...``.
"""

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1
#: Environment variable every process of one run inherits (set by jincai.run.runner): :func:`reap`
#: finds what a canceled run left behind by it, whatever session or process group it moved to.
RUN_TOKEN_ENV = "JINCAI_RUN_TOKEN"


def reap(token, sig=signal.SIGKILL):
    """Kill every process still carrying ``RUN_TOKEN_ENV=token`` in its environment; return their PIDs.

    A canceled run's ansible-playbook is killed with its process group by ansible-runner, but a
    process of it outside that group (measured: ansible-playbook processes of canceled unit-test runs
    still asleep 40 minutes later) would keep running; this catches those.
    """
    needle = f"{RUN_TOKEN_ENV}={token}".encode()
    killed = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                if needle not in fh.read().split(b"\0"):
                    continue
            os.kill(int(name), sig)
            killed.append(int(name))
        except (OSError, ValueError):
            continue  # gone already, or not ours to read
    return killed


def arm_parent_death_signal(sig=signal.SIGTERM):
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux; no-op elsewhere)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)
    except OSError:
        pass


def main(argv=None):
    """Arm the parent-death signal, then exec ``argv[0]`` with the remaining arguments."""
    argv = sys.argv[1:] if argv is None else argv
    parent = os.getppid()
    arm_parent_death_signal()
    if os.getppid() != parent:  # the parent died before the signal was armed
        sys.exit(143)
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
