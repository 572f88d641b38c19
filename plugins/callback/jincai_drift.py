"""Ansible callback: record every changed, failed or unreachable task result as JSON.

Enabled by ``jincai compliance`` for its runs (``ANSIBLE_CALLBACKS_ENABLED`` plus
``JINCAI_DRIFT_FILE=/path/out.json``); silent otherwise. With ``JINCAI_FACTS_DIR`` set, the JSON stdout
of every task carrying the task var ``compliance_capture`` (playbooks/compliance.yml) is stored as
``<dir>/<host>.json`` (``<host>.<capture>.json`` for other capture kinds, e.g. ``nft``). In check mode a *changed* task is drift: the
host differs from the intended state. Each record carries host, play, task name, role, module, the
rendered diff (``--diff``) and the message; the file also holds every host's recap counters.
"""

import json
import os
import time

from ansible import context
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
---
name: jincai_drift
type: aggregate
short_description: write changed/failed/unreachable task results (drift) to a JSON file
description:
  - Writes one JSON document to the path in the JINCAI_DRIFT_FILE environment variable at the end
    of the run; does nothing when the variable is unset.
requirements:
  - enable in callbacks_enabled (jincai compliance does it through ANSIBLE_CALLBACKS_ENABLED)
"""

MAX_DIFF = 20000


class CallbackModule(CallbackBase):
    """Collect drift records and write them at the end of the playbook."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "jincai_drift"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._path = os.environ.get("JINCAI_DRIFT_FILE")
        self._facts_dir = os.environ.get("JINCAI_FACTS_DIR") or None
        self._records = []
        self._play = ""
        self._check_mode = None
        self._started = {}
        self._host_seconds = {}

    def v2_playbook_on_play_start(self, play):
        """Remember the play name (and whether the run is in check mode: --check)."""
        self._play = play.get_name()
        if self._check_mode is None:
            self._check_mode = bool(context.CLIARGS.get("check", False))

    def _diff_text(self, result):
        diffs = []
        res = result._result
        items = res.get("results") if isinstance(res.get("results"), list) else [res]
        for item in items:
            if not isinstance(item, dict) or "diff" not in item:
                continue
            if not item.get("changed", res.get("changed")):
                continue
            try:
                text = self._get_diff(item["diff"])
            except Exception:  # noqa: BLE001 - a diff we cannot render is still drift
                text = json.dumps(item["diff"], default=str)[:MAX_DIFF]
            if text:
                diffs.append(text)
        return "".join(diffs)[:MAX_DIFF]

    def v2_runner_on_start(self, host, task):
        """Note when a task starts on a host (per-host time for the benchmark)."""
        self._started[(host.get_name(), task._uuid)] = time.monotonic()

    def _account(self, result):
        key = (result._host.get_name(), result._task._uuid)
        start = self._started.pop(key, None)
        if start is not None:
            self._host_seconds[key[0]] = self._host_seconds.get(key[0], 0.0) + time.monotonic() - start

    def v2_runner_on_skipped(self, result):
        """A skipped task still took time on the host."""
        self._account(result)

    def _record(self, result, status):
        task = result._task
        role = task._role.get_name() if getattr(task, "_role", None) else ""
        res = result._result
        msg = res.get("msg") or res.get("stderr") or ""
        if isinstance(msg, list):
            msg = "\n".join(str(m) for m in msg)
        self._records.append({
            "host": result._host.get_name(),
            "status": status,
            "play": self._play,
            "task": task.name or task.get_name(),
            "role": role,
            "action": task.action,
            "diff": self._diff_text(result) if status == "changed" else "",
            "msg": str(msg)[:4000],
            "ignored": bool(getattr(task, "ignore_errors", False)) if status == "failed" else False,
        })

    def _capture(self, result):
        """Store the JSON stdout of a task marked ``compliance_capture`` as <facts dir>/<host>.json."""
        capture = (getattr(result._task, "vars", None) or {}).get("compliance_capture")
        if not self._facts_dir or not capture:
            return
        host = result._host.get_name()
        out = result._result.get("stdout") or ""
        try:
            json.loads(out)
        except ValueError:
            self._record(result, "failed")
            err = result._result.get("stderr") or result._result.get("msg") or ""
            self._records[-1]["msg"] = (f"exit {result._result.get('rc')}: {err}"[:1500] if err
                                        else "collector output is not JSON: " + out[:500])
            return
        os.makedirs(self._facts_dir, exist_ok=True)
        suffix = "" if capture in ("server", "router") else "." + str(capture)
        path = os.path.join(self._facts_dir, host + suffix + ".json")
        with open(path + ".tmp", "w", encoding="utf-8") as fh:
            fh.write(out)
        os.replace(path + ".tmp", path)

    def v2_runner_on_ok(self, result):
        """A changed result in check mode is drift; a marked collection result is stored."""
        self._account(result)
        self._capture(result)
        if result._result.get("changed"):
            self._record(result, "changed")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        """A failed task: the state could not be established on that host."""
        self._account(result)
        self._record(result, "failed")
        if ignore_errors:
            self._records[-1]["ignored"] = True

    def v2_runner_on_unreachable(self, result):
        """The host did not answer."""
        self._account(result)
        self._record(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        """Write the records and the recap counters."""
        if not self._path:
            return
        hosts = {}
        for host in sorted(stats.processed.keys()):
            hosts[host] = stats.summarize(host)
        doc = {"check_mode": self._check_mode, "records": self._records, "stats": hosts,
               "host_seconds": {h: round(v, 3) for h, v in sorted(self._host_seconds.items())}}
        tmp = self._path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1, sort_keys=True, default=str)
        os.replace(tmp, self._path)
