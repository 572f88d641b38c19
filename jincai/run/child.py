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
