"""Steps, per-site state file and the technician's checklist of ``jincai bootstrap``.

The state (``reports/bootstrap/<code>/state.json``, gitignored) records each step's outcome. Every
step is idempotent on its own, so the state is only used to skip expensive steps that already
passed for the same site plan (a resumed run) and to print the checklist. It never holds secrets.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from jincai import ROOT

REPORTS_DIR = os.path.join(ROOT, "reports", "bootstrap")


@dataclass(frozen=True)
class Step:
    """One step of the bootstrap: its key, checklist title, and what to do when it fails."""

    key: str
    title: str
    fix: str
    title_zh: str = ""
    #: Skipped on a resumed run when it passed before for the same site plan.
    resumable: bool = False


STEPS = (
    Step("validate", "Source of truth valid, site added", "fix the source file named above, then re-run",
         "数据源有效、站点已添加"),
    Step("reach", "Every host answers on SSH (management network)",
         "check power, the management cable and the address on the host's console, then re-run",
         "所有主机管理口 SSH 可达"),
    Step("hostkeys", "SSH host keys recorded and confirmed",
         "compare the fingerprints with the consoles; on a mismatch call the province network team",
         "SSH 主机密钥已记录并确认"),
    Step("router_access", "Router: automation accounts, key login, password and root login off",
         "check the router's root password / console, then re-run", "路由器：自动化账号与密钥登录", True),
    Step("router_config", "Router: uplink and routing config; the site joins the WAN",
         "check the WAN cable is in the uplink port named above and the line is up, then re-run",
         "路由器：上联与路由配置，接入广域网", True),
    Step("server_access", "Servers: automation account, key login, password and root login off",
         "check the servers' root password, then re-run", "服务器：自动化账号与密钥登录", True),
    Step("baseline", "Servers: security baseline (MLPS level 3)", "read the failed task above; re-run",
         "服务器：安全基线（等保三级）", True),
    Step("apps", "Servers: applications of the site's tier", "read the failed task above; re-run",
         "服务器：本级业务应用", True),
    Step("verify", "Verification: site checks and end-to-end (province, logs, clock, apps)",
         "read the failed check above; call the province network team if it persists",
         "验证：站点检查与端到端（省厅、日志、时钟、应用）"),
)
STEP_KEYS = tuple(s.key for s in STEPS)
BY_KEY = {s.key: s for s in STEPS}


def site_dir(code, base=None):
    """Directory holding the site's state, known_hosts and logs."""
    return os.path.join(base or REPORTS_DIR, str(code))


class State:
    """The per-site state file: ``{"code", "plan", "steps": {key: {...}}}``."""

    def __init__(self, code, base=None):
        self.code = str(code)
        self.dir = site_dir(code, base)
        self.path = os.path.join(self.dir, "state.json")
        self.data = {"code": self.code, "plan": None, "steps": {}}
        try:
            with open(self.path, encoding="utf-8") as fh:
                loaded = json.load(fh)
            if isinstance(loaded, dict) and isinstance(loaded.get("steps"), dict):
                self.data = loaded
        except (FileNotFoundError, ValueError):
            pass

    @property
    def steps(self):
        """``{step key: record}`` of this site."""
        return self.data["steps"]

    def save(self):
        """Write the state atomically (0600: it names hosts, never secrets)."""
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        tmp = self.path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(self.data, fh, indent=1, sort_keys=True, ensure_ascii=False)
        os.replace(tmp, self.path)

    def set_plan(self, fingerprint):
        """Record the site plan the steps ran against; a different plan forgets resumable results."""
        if self.data.get("plan") != fingerprint:
            for key in list(self.steps):
                if BY_KEY.get(key) and BY_KEY[key].resumable:
                    self.steps.pop(key)
            self.data["plan"] = fingerprint

    def passed(self, key):
        """True when ``key`` passed in an earlier run for the current plan."""
        return (self.steps.get(key) or {}).get("status") == "passed"

    def record(self, key, status, detail="", seconds=None, changed=None):
        """Record one step's outcome and save at once (a kill right after keeps it)."""
        rec = {"status": status, "detail": detail, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if seconds is not None:
            rec["seconds"] = round(seconds, 1)
        if changed is not None:
            rec["changed"] = changed
        self.steps[key] = rec
        self.save()

    def forget(self, keys=None):
        """Forget the outcome of ``keys`` (all steps when None)."""
        for key in list(self.steps):
            if keys is None or key in keys:
                self.steps.pop(key)
        self.save()


MARKS = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP", "resumed": "DONE", None: "----"}


def checklist(state, current=None, contacts=None):
    """Return the technician's checklist as text: one line per step, then what to do next.

    ``current`` maps step keys to this run's statuses (``passed``, ``failed``, ``skipped``,
    ``resumed``); steps absent from it show the recorded status of an earlier run, or "not run".
    """
    current = current or {}
    lines = [f"==== jincai bootstrap {state.code}: checklist / 检查清单 ===="]
    first_failed = None
    for n, step in enumerate(STEPS, 1):
        rec = state.steps.get(step.key) or {}
        status = current.get(step.key)
        note = ""
        if status is None and rec:
            status = rec.get("status")
            note = f" (earlier run {rec.get('at', '?')})"
        if status == "resumed":
            note = f" (passed earlier, {rec.get('at', '?')}; not repeated)"
        mark = MARKS.get(status, "----")
        lines.append(f" {n:>2}. [{mark}] {step.title} / {step.title_zh}{note}")
        if status == "failed":
            detail = rec.get("detail") or ""
            for d in detail.splitlines()[:6]:
                lines.append(f"        {d}")
            if first_failed is None:
                first_failed = step
    done = all(current.get(s.key) in ("passed", "resumed", "skipped") or
               (current.get(s.key) is None and state.passed(s.key)) for s in STEPS)
    lines.append("")
    if done:
        lines.append(f"RESULT: site {state.code} is on the WAN, compliant and verified. Nothing left to do.")
        lines.append(f"结果：站点 {state.code} 已接入广域网，合规，验证通过。")
    elif first_failed is not None:
        lines.append(f"RESULT: stopped at step {STEP_KEYS.index(first_failed.key) + 1} ({first_failed.title}).")
        lines.append(f"NEXT: {first_failed.fix}; then run the same command again: jincai bootstrap {state.code}")
        lines.append(f"下一步：按上面的提示处理后，重新运行同一命令：jincai bootstrap {state.code}")
    else:
        lines.append(f"RESULT: not finished. NEXT: run jincai bootstrap {state.code} again (it continues).")
        lines.append(f"下一步：重新运行 jincai bootstrap {state.code}（从中断处继续）。")
    if contacts:
        lines.append("CALL / 联系: " + "; ".join(contacts))
    return "\n".join(lines)
