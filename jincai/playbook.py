"""Run ansible-playbook from Python and read its PLAY RECAP.

Used by ``make site`` (jincai.site_run) and by the lab tests that prove idempotency and check mode,
so both read a run's outcome the same way.
"""

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field

from jincai import ROOT

RECAP_RE = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)\s+skipped=(?P<skipped>\d+)\s+rescued=(?P<rescued>\d+)\s+ignored=(?P<ignored>\d+)"
)


@dataclass
class RunResult:
    """Outcome of one ansible-playbook run: exit code, per-host recap and full output."""

    rc: int
    recap: dict = field(default_factory=dict)
    output: str = ""

    def total(self, key):
        """Sum one recap counter (``changed``, ``failed``...) over every host."""
        return sum(h[key] for h in self.recap.values())

    def hosts_with(self, key):
        """Hosts whose recap counter ``key`` is non-zero, sorted."""
        return sorted(h for h, c in self.recap.items() if c[key])


def parse_recap(text):
    """Return {host: {ok, changed, unreachable, failed, ...}} from an ansible-playbook output."""
    recap = {}
    in_recap = False
    for line in text.splitlines():
        if line.startswith("PLAY RECAP"):
            in_recap = True
            continue
        if in_recap:
            m = RECAP_RE.match(line.strip())
            if m:
                d = m.groupdict()
                host = d.pop("host")
                recap[host] = {k: int(v) for k, v in d.items()}
    return recap


def run(playbook, inventory=None, args=(), check=False, diff=False, echo=False, env=None):
    """Run ``playbook`` (path relative to the repo root) and return a RunResult.

    ``echo`` streams the output to stdout while it runs (for people watching a long run).
    """
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), playbook]
    if inventory:
        cmd += ["-i", inventory]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    cmd += list(args)
    full_env = dict(os.environ)
    full_env.setdefault("ANSIBLE_CONFIG", os.path.join(ROOT, "ansible.cfg"))
    full_env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + full_env.get("PATH", "")
    full_env.setdefault("ANSIBLE_FORCE_COLOR", "0")
    full_env["ANSIBLE_NOCOLOR"] = "1"
    if env:
        full_env.update(env)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if echo:
            sys.stdout.write(line)
            sys.stdout.flush()
    rc = proc.wait()
    out = "".join(lines)
    return RunResult(rc=rc, recap=parse_recap(out), output=out)


TASK_RE = re.compile(r"^(?:TASK|RUNNING HANDLER) \[(?P<task>.*)\]")
CHANGED_RE = re.compile(r"^changed: \[(?P<host>[^\]]+)\]")


def changed_tasks(text):
    """Return [(task name, host)] for every 'changed' line of an ansible-playbook output.

    Used to say *which* task broke idempotency, not only that one did.
    """
    found, task = [], None
    for line in text.splitlines():
        m = TASK_RE.match(line)
        if m:
            task = m.group("task")
            continue
        m = CHANGED_RE.match(line)
        if m:
            found.append((task, m.group("host").split(" -> ")[0]))
    return found
