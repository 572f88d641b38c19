"""Run one playbook through ansible-runner and read its outcome from Ansible's events.

The operator sees Ansible's usual output live (``echo``); the outcome comes from the structured
events ansible-runner's callback emits, never from the text: the recap from ``playbook_on_stats``,
changed, failed and unreachable results from ``runner_on_*``. A run can be stopped from another
thread or a signal handler (:meth:`PlaybookRun.stop`); a jincai process killed outright takes its
ansible-playbook with it (jincai.run.child).
"""

import os
import shlex
import shutil
import sys
import tempfile
import threading
import uuid
from dataclasses import dataclass, field

from jincai import ROOT
from jincai.run.child import RUN_TOKEN_ENV, reap
from jincai.run.env import BIN_DIR, ansible_env

#: recap counter -> the playbook_on_stats field that holds it (Ansible's own names in PLAY RECAP)
STATS_FIELDS = {"ok": "ok", "changed": "changed", "unreachable": "dark", "failed": "failures",
                "skipped": "skipped", "rescued": "rescued", "ignored": "ignored"}
RESULT_EVENTS = ("runner_on_ok", "runner_on_failed", "runner_on_unreachable")


@dataclass
class Failure:
    """One failed or unreachable task result (not ignored, not rescued away: as Ansible reported it)."""

    host: str
    task: str
    message: str
    unreachable: bool = False

    def text(self):
        """``host: message`` (``unreachable: `` before the message of an unreachable host)."""
        return f"{self.host}: {'unreachable: ' if self.unreachable else ''}{self.message}"


@dataclass
class RunResult:
    """Outcome of one playbook run: exit code, per-host recap, results read from events, output."""

    rc: int
    recap: dict = field(default_factory=dict)
    output: str = ""
    changed: list = field(default_factory=list)  # [(task name, host)] in the order they happened
    failures: list = field(default_factory=list)  # [Failure]
    status: str = ""  # ansible-runner's: successful, failed, canceled, timeout
    reaped: list = field(default_factory=list)  # PIDs of the run's processes killed after it ended

    def total(self, key):
        """Sum one recap counter (``changed``, ``failed``...) over every host."""
        return sum(h[key] for h in self.recap.values())

    def hosts_with(self, key):
        """Hosts whose recap counter ``key`` is non-zero, sorted."""
        return sorted(h for h, c in self.recap.items() if c[key])

    def changed_tasks(self):
        """``[(task, host)]`` of every changed result: says *which* task broke idempotency."""
        return list(self.changed)


def recap_from_stats(event_data):
    """``{host: {ok, changed, unreachable, failed, skipped, rescued, ignored}}`` from the event data
    of ``playbook_on_stats``: every host Ansible's PLAY RECAP lists (the processed ones)."""
    hosts = set(event_data.get("processed") or {})
    for name in STATS_FIELDS.values():
        hosts |= set(event_data.get(name) or {})
    return {h: {k: int((event_data.get(src) or {}).get(h, 0)) for k, src in STATS_FIELDS.items()}
            for h in sorted(hosts)}


def _message(res):
    """The one-line message of a failed result (for a loop: the failed items' messages)."""
    items = [r for r in res.get("results") or [] if isinstance(r, dict) and r.get("failed")]
    if items:
        return "; ".join(_message(r) for r in items)
    msg = res.get("msg") or res.get("stderr") or res.get("stdout") or res.get("reason") or ""
    if isinstance(msg, list):
        msg = " ".join(str(m) for m in msg)
    return " ".join(str(msg).split())


class PlaybookRun:
    """One ansible-playbook run (see :func:`run` for the arguments)."""

    def __init__(self, playbook, inventory=None, args=(), check=False, diff=False, echo=False, env=None,
                 callbacks=(), on_event=None, log_path=None):
        self.argv = [playbook] + (["-i", inventory] if inventory else []) + (["--check"] if check else []) \
            + (["--diff"] if diff else []) + [str(a) for a in args]
        self.env = ansible_env(inventory, callbacks, env)
        self.token = uuid.uuid4().hex
        self.env[RUN_TOKEN_ENV] = self.token  # what reap() finds the run's processes by
        self.echo = echo
        self.on_event = on_event
        self.log_path = log_path
        self._stop = threading.Event()
        self._log = None
        self.private_dir = None  # ansible-runner's private data dir while the run lasts
        self.result = RunResult(rc=-1)

    def command(self):
        """The ansible-playbook command line (for logs)."""
        return shlex.join(["ansible-playbook"] + self.argv)

    def stop(self):
        """Ask the run to end now (ansible-runner kills ansible-playbook; finished tasks stay done)."""
        self._stop.set()

    def _event(self, event):
        name = event.get("event", "")
        data = event.get("event_data") or {}
        if self._log is not None and event.get("stdout"):
            self._log.write(event["stdout"] + "\n")
            self._log.flush()
        if name == "playbook_on_stats":
            self.result.recap = recap_from_stats(data)
        elif name in RESULT_EVENTS:
            res = data.get("res") or {}
            host = data.get("host", "")
            task = f"{data['role']} : {data.get('task', '')}" if data.get("role") else data.get("task", "")
            if name == "runner_on_ok" and res.get("changed"):
                self.result.changed.append((task, host))
            elif name in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
                self.result.failures.append(Failure(host, task, _message(res),
                                                    unreachable=name == "runner_on_unreachable"))
        if self.on_event is not None:
            self.on_event(event)
        return True

    def _status(self, status, runner_config=None):
        # The environment may hold secrets (a root password handed to the bootstrap playbook): no env/
        # files (suppress_env_files), and artifacts/<ident>/command, which ansible-runner writes with
        # the whole environment before it starts the process, is removed at once.
        if status.get("status") == "running" and runner_config is not None:
            try:
                os.remove(os.path.join(runner_config.artifact_dir, "command"))
            except FileNotFoundError:
                pass

    def run(self):
        """Run the playbook to its end (or :meth:`stop`); return the :class:`RunResult`."""
        import ansible_runner

        private = self.private_dir = tempfile.mkdtemp(prefix="jincai-run-")
        try:
            if self.log_path:
                os.makedirs(os.path.dirname(os.path.abspath(self.log_path)), exist_ok=True)
                self._log = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115 (closed below)
                self._log.write("$ " + self.command() + "\n")
            cmdline = shlex.join(["-m", "jincai.run.child", os.path.join(BIN_DIR, "ansible-playbook")] + self.argv)
            runner = ansible_runner.run(
                private_data_dir=private, project_dir=ROOT, binary=sys.executable, cmdline=cmdline,
                envvars=self.env, suppress_env_files=True, quiet=not self.echo, event_handler=self._event, status_handler=self._status,
                cancel_callback=self._stop.is_set, settings={"pexpect_timeout": 1, "suppress_ansible_output":
                                                              not self.echo})
            self.result.rc = runner.rc
            self.result.status = runner.status
            with open(os.path.join(runner.config.artifact_dir, "stdout"), encoding="utf-8", errors="replace") as fh:
                self.result.output = fh.read().replace("\r\n", "\n")
        finally:
            # nothing of this run outlives it (a canceled run left ansible-playbook processes behind)
            self.result.reaped = reap(self.token)
            if self._log is not None:
                self._log.close()
                self._log = None
            shutil.rmtree(private, ignore_errors=True)
        return self.result


def run(playbook, inventory=None, args=(), check=False, diff=False, echo=False, env=None, callbacks=(),
        on_event=None, log_path=None):
    """Run ``playbook`` (path relative to the repository root) and return a :class:`RunResult`.

    ``args``: more ansible-playbook arguments (``--limit``, ``-e``, ``--tags``...); ``echo`` streams
    Ansible's output to stdout while it runs; ``env``: environment variables for this run;
    ``callbacks``: callback plugins enabled on top of ansible.cfg's; ``on_event(event)`` sees every
    ansible-runner event; ``log_path`` receives the output as it comes.
    """
    return PlaybookRun(playbook, inventory, args, check, diff, echo, env, callbacks, on_event, log_path).run()
