"""``jincai bootstrap CODE``: bring a new county (or city) site onto the WAN in one command.

Run after ``jincai site add CODE --write``. The steps (see docs/runbook.en.md):

1. validate   the source of truth, the site is added (no host is contacted before this passes);
2. reach      every host answers on SSH over the management network;
3. hostkeys   SSH host keys are recorded at first contact (``reports/bootstrap/CODE/known_hosts``),
              their fingerprints shown for the technician to confirm; a later mismatch stops;
4. router     first login (root password, asked for and never stored), automation accounts and key,
              key login proven before password and root login are turned off; then the router's
              uplink and routing config (``playbooks/routers.yml``), the uplink and the way to the
              province checked;
5. servers    the same first login, then the baseline and the tier's applications;
6. verify     end-to-end checks: the province answers, logs arrive, the clock follows the city,
              applications are healthy and reachable from the province; then ``jincai verify -l
              site_CODE`` (docs/verify.md: the testinfra checks of the site's hosts, changing nothing);
7. a checklist for the technician: each step passed or failed, and what to do next.

Every step is idempotent; ``reports/bootstrap/CODE/state.json`` only lets a resumed run skip the
expensive steps that already passed for the same site plan (``--full`` repeats them all).
"""

from __future__ import annotations

import argparse
import fcntl
import getpass
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time

from jincai import ROOT
from jincai.bootstrap.preflight import (PASSWORD_ENV, BootstrapError, check_reachable, check_root_password,
                                        combine_known_hosts, compare_keys, key_login_works, merge_known_hosts,
                                        parse_known_hosts, resolve_site, scan_host_keys, write_known_hosts)
from jincai.bootstrap.state import STEPS, State, checklist
from jincai.run import PlaybookRun

PLAYBOOK = "playbooks/bootstrap.yml"
LAB_DIR = "/var/lib/jincai-lab"  # the lab's own files (jincai lab); bootstrap never writes there
DEFAULT_INVENTORY = os.path.join(ROOT, "inventories", "jilin")
ROOT_KEY_ENV = "JINCAI_BOOTSTRAP_ROOT_KEY"
PRODUCTION_ENV = "JINCAI_ALLOW_PRODUCTION"
VERIFY_TIMEOUT = 900  # seconds for jincai verify of one site (a few seconds when the hosts answer)
CONTACTS = ["province network team / 省财政厅信息中心网络组 (see docs/runbook.en.md, 'Who to call')"]


class Interrupted(Exception):
    """SIGTERM or SIGINT arrived; the current step is recorded as not finished."""


def _say(msg=""):
    print(msg, flush=True)


# ---------------------------------------------------------------- ansible runs


class Runner:
    """Runs the bootstrap playbook for one site (jincai.run) and keeps each run's output in the site's dir."""

    def __init__(self, site, state, verbose=False):
        self.site = site
        self.state = state
        self.verbose = verbose
        self.current = None  # the jincai.run.PlaybookRun in progress
        self.conn = None  # the automation user and key, set by Bootstrap.connection()
        self.last_output = ""
        self.stop_reason = None

    def run(self, step, tags, limit, password=None, root_key=None, extra=None):
        """Run the bootstrap playbook with ``tags`` on ``limit``; return ``(rc, recap, failures)``
        (failures: ``[(host, message)]``). Raises Interrupted when :meth:`stop` ended the run."""
        if self.conn:
            combine_known_hosts(self.conn["run_known_hosts"], self.conn["site_known_hosts"], self.conn["known_hosts"])
        args = ["--tags", ",".join(tags), "--limit", limit, "-e", f"jincai_bootstrap_site={self.site.code}"]
        login = "key"
        env = {PASSWORD_ENV: "", ROOT_KEY_ENV: ""}
        if password is not None:
            env[PASSWORD_ENV] = password
            login = "password"
        elif root_key:
            env[ROOT_KEY_ENV] = root_key
        args += ["-e", f"jincai_bootstrap_login={login}"]
        if self.conn:
            args += ["-e", json.dumps({"jincai_bootstrap_automation_user": self.conn["user"],
                                       "jincai_bootstrap_automation_key": self.conn["key"],
                                       "ansible_ssh_common_args": self.conn["ssh_args"]})]
        for key, value in (extra or {}).items():
            args += ["-e", f"{key}={value}"]
        env["ANSIBLE_SSH_RETRIES"] = os.environ.get("ANSIBLE_SSH_RETRIES", "3")  # a freshly booted host or a busy WAN may drop one attempt
        self.current = PlaybookRun(PLAYBOOK, inventory=self.site.inventory, args=args, echo=self.verbose, env=env,
                                   on_event=None if self.verbose else self._echo,
                                   log_path=os.path.join(self.state.dir, f"{step}.log"))
        try:
            res = self.current.run()
        finally:
            self.current = None
        self.last_output = res.output
        if res.status == "canceled":
            raise Interrupted(self.stop_reason or "stopped")
        return res.rc, res.recap, [(f.host, f"unreachable: {f.message}" if f.unreachable else f.message)
                                   for f in res.failures]

    @staticmethod
    def _echo(event):
        """The short progress view: each task's name, and the lines of failed or unreachable results."""
        data = event.get("event_data") or {}
        if event.get("event") == "playbook_on_task_start":
            name = f"{data['role']} : {data.get('task', '')}" if data.get("role") else data.get("task", "")
            if "Validating arguments against arg spec" not in name:
                _say(f"      - {name}")
        elif event.get("event") in ("runner_on_failed", "runner_on_unreachable", "runner_item_on_failed"):
            for line in (event.get("stdout") or "").splitlines():
                if line.startswith(("fatal:", "failed:")):
                    _say("      " + line.rstrip()[:400])

    def stop(self, reason=None):
        """End a running playbook (its hosts keep what it finished); False when none runs."""
        self.stop_reason = reason
        if self.current is not None:
            self.current.stop()
            return True
        return False


# ---------------------------------------------------------------- jincai verify of the site


def site_verify_argv(site, out_dir, known_hosts=None):
    """``jincai verify`` of the site alone (``-l site_<code>``), its report into ``out_dir``, the host keys
    checked against ``known_hosts`` (the file bootstrap builds from its record and the inventory's)."""
    argv = [os.path.join(os.path.dirname(sys.executable), "jincai"), "verify", "-i", site.inventory,
            "-l", f"site_{site.code}", "-o", out_dir]
    return argv + (["--known-hosts", known_hosts] if known_hosts else [])


def run_site_verify(argv, log_path, timeout=VERIFY_TIMEOUT):
    """Run ``argv`` (:func:`site_verify_argv`) with SSH masters of its own, closed afterwards; keep its whole
    output in ``log_path``; return ``(exit code, output)``. An interrupt ends the run (its process group)
    before it propagates; a run past ``timeout`` is ended and counts as not run (2)."""
    with tempfile.TemporaryDirectory(prefix="jincai-bv-") as control:
        proc = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, "JINCAI_VERIFY_CONTROL_DIR": control},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            out, rc = proc.communicate(timeout=timeout)[0], proc.returncode
        except subprocess.TimeoutExpired:
            _killpg(proc)
            out, rc = (proc.communicate()[0] or "") + f"\njincai verify: no result within {timeout} s (stopped)\n", 2
        except BaseException:  # Interrupted (SIGTERM, SIGINT): end the run first
            _killpg(proc)
            proc.wait()
            raise
        finally:
            for sock in os.listdir(control):  # else the masters linger ControlPersist seconds
                subprocess.run(["ssh", "-o", f"ControlPath={os.path.join(control, sock)}", "-O", "exit", "master"],
                               capture_output=True, check=False, timeout=10)
    with open(log_path, "w", encoding="utf-8") as fh:
        fh.write(out)
    return rc, out


def _killpg(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------- the bootstrap


class Bootstrap:
    """One ``jincai bootstrap`` run for one site."""

    def __init__(self, args, site, state):
        self.args = args
        self.site = site
        self.state = state
        self.current = {}
        self.runner = Runner(site, state, verbose=args.verbose)
        self.known_hosts = os.path.join(state.dir, "known_hosts")
        self._password = None
        self.conn = None

    # ------------------------------------------------------------ helpers

    def _step(self, key):
        step = next(s for s in STEPS if s.key == key)
        _say(f"\n== {STEPS.index(step) + 1}. {step.title} / {step.title_zh}")
        return time.monotonic()

    def _pass(self, key, t0, detail="", changed=None):
        self.current[key] = "passed"
        self.state.record(key, "passed", detail, time.monotonic() - t0, changed)
        _say(f"   PASS ({time.monotonic() - t0:.0f} s){': ' + detail if detail else ''}")

    def _fail(self, key, t0, detail):
        self.current[key] = "failed"
        self.state.record(key, "failed", detail, time.monotonic() - t0)
        _say(f"   FAIL: {detail}")
        return False

    def connection(self):
        """The automation user, key and the inventory's known_hosts file (from ansible-inventory)."""
        if self.conn:
            return self.conn
        name = self.site.hosts[0].name
        res = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-inventory"), "-i",
                              self.site.inventory, "--host", name], capture_output=True, text=True, cwd=ROOT,
                             check=False, env={**os.environ, "ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg")})
        if res.returncode != 0:
            raise BootstrapError(f"ansible-inventory cannot read {self.site.inventory}: {res.stderr.strip()[-300:]}",
                                 "fix the inventory, then re-run")
        hv = json.loads(res.stdout)
        # The router's group may say "local" (netmiko); servers and the first login use ssh as this user.
        servers = [h for h in self.site.hosts if not h.is_router]
        if servers:
            res2 = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-inventory"), "-i",
                                   self.site.inventory, "--host", servers[0].name], capture_output=True, text=True,
                                  cwd=ROOT, check=False,
                                  env={**os.environ, "ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg")})
            if res2.returncode == 0:
                hv = {**hv, **json.loads(res2.stdout)}
        args = str(hv.get("ansible_ssh_common_args", ""))
        m = re.search(r"UserKnownHostsFile=(\S+)", args)
        key = hv.get("ansible_ssh_private_key_file")
        if not key or not os.path.isfile(key):
            raise BootstrapError(f"the automation key {key!r} (ansible_ssh_private_key_file) does not exist on this "
                                 "control node", "install the province's automation key pair, then re-run")
        if not os.path.isfile(key + ".pub"):
            raise BootstrapError(f"{key}.pub is missing (bootstrap installs this public key on the new hosts)",
                                 f"recreate it: ssh-keygen -y -f {key} > {key}.pub")
        known = os.path.expanduser(m.group(1)) if m else os.path.expanduser("~/.ssh/known_hosts")
        # Every bootstrap connection (ssh and the routers' netmiko) checks one file: the site's record
        # plus the inventory's file, rebuilt before each run (the inventory's file is only read).
        self.run_known_hosts = os.path.join(self.state.dir, "known_hosts.run")
        opt = f"-o UserKnownHostsFile={self.run_known_hosts}"
        ssh_args = re.sub(r"-o\s+UserKnownHostsFile=\S+", lambda _m: opt, args) if m else f"{args} {opt}".strip()
        if "StrictHostKeyChecking" not in ssh_args:
            ssh_args += " -o StrictHostKeyChecking=yes"
        self.conn = {"user": hv.get("ansible_user", "jincai"), "key": key, "known_hosts": known,
                     "run_known_hosts": self.run_known_hosts, "site_known_hosts": self.known_hosts,
                     "ssh_args": ssh_args, "netops": hv.get("jincai_netmiko_user", "netops")}
        self.runner.conn = self.conn
        return self.conn

    def password(self):
        """The first-login password: env, stdin or prompt; kept in memory only."""
        if self._password is not None:
            return self._password
        pw = os.environ.get(PASSWORD_ENV)
        if pw is None and self.args.password_stdin:
            pw = sys.stdin.readline().rstrip("\n")
        if pw is None:
            if not sys.stdin.isatty():
                raise BootstrapError("the hosts need their first login and no root password was given",
                                     f"run in a terminal (it asks), or set {PASSWORD_ENV}, or use --password-stdin, "
                                     "or --root-key FILE")
            pw = getpass.getpass(f"Root password of the new hosts at site {self.site.code} (not stored): ")
        if not pw:
            raise BootstrapError("empty root password", "type the password the installer set for root")
        self._password = pw
        return pw

    def logged_in(self, host):
        """True when the automation account (and on a Linux router, netops) logs in with the key."""
        c = self.connection()
        if not key_login_works(host, c["user"], c["key"], self.known_hosts, "sudo -n true"):
            return False
        if host.is_router and host.platform == "frr":
            return key_login_works(host, c["netops"], c["key"], self.known_hosts, "show version")
        return True

    # ------------------------------------------------------------ steps

    def reach(self):
        """Step 2: every host answers on SSH."""
        t0 = self._step("reach")
        problems = check_reachable(self.site, timeout=self.args.timeout)
        if problems:
            return self._fail("reach", t0, "\n".join(p.text() for p in problems.values()))
        self._pass("reach", t0, f"{len(self.site.hosts)} hosts answer")
        return True

    def hostkeys(self):
        """Step 3: record host keys at first contact, confirm new ones, stop on a mismatch."""
        t0 = self._step("hostkeys")
        try:
            with open(self.known_hosts, encoding="ascii") as fh:
                recorded = parse_known_hosts(fh.read())
        except FileNotFoundError:
            recorded = {}
        checks, errors = [], []
        scanned = scan_host_keys([h.address for h in self.site.hosts], timeout=self.args.timeout)
        for host in self.site.hosts:
            try:
                checks.append(compare_keys(host, scanned[host.address], recorded.get(host.name, {}), self.site.code))
            except BootstrapError as exc:
                errors.append(exc)
        if errors:
            return self._fail("hostkeys", t0, "\n".join(e.text() for e in errors))
        new = [c for c in checks if c.new]
        if new:
            _say("   First contact: compare these fingerprints with each host's console")
            _say("   首次连接：请在各主机控制台核对以下指纹 (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub)")
            for c in new:
                _say(f"     {c.host.name} ({c.host.address})")
                for line in c.lines():
                    _say(f"       {line}")
            if not self._confirm():
                return self._fail("hostkeys", t0, "fingerprints not confirmed; nothing was changed on the hosts")
        write_known_hosts(self.known_hosts, {c.host.name: (c.host, {**c.recorded, **c.scanned}) for c in checks})
        detail = f"{len(new)} recorded now, {len(checks) - len(new)} match the record"
        glob = self.connection()["known_hosts"]
        # Hand the confirmed keys to the inventory's own file for the regular playbooks; the lab's file
        # belongs to `jincai lab` (rewritten by every `lab up`), so it is left alone there.
        if not glob.startswith(LAB_DIR + os.sep) and merge_known_hosts(glob, [(c.host, c.scanned) for c in checks]):
            detail += f"; added to {glob}"
        self._pass("hostkeys", t0, detail)
        return True

    def _confirm(self):
        if self.args.accept_host_keys:
            _say("   accepted (--accept-host-keys)")
            return True
        if not sys.stdin.isatty():
            raise BootstrapError("new host keys need the technician's confirmation and this is not a terminal",
                                 "compare the fingerprints above with the consoles, then re-run with --accept-host-keys")
        answer = input("   Do they match the consoles? 是否一致？ [yes/no] ").strip().lower()
        return answer in ("y", "yes", "是")

    def access(self, key, hosts):
        """Steps 4a/5a: first login where the key does not work yet, then lock down every host."""
        t0 = self._step(key)
        if not hosts:
            self._pass(key, t0, "no hosts")
            return True
        need = [h for h in hosts if not self.logged_in(h)]
        if not need and self.state.passed(key) and not self.args.full:
            self.current[key] = "resumed"
            _say("   key login works and the lock-down passed earlier: not repeated")
            return True
        changed = 0
        if need:
            _say(f"   first login on {', '.join(h.name for h in need)}")
            password = None
            if not self.args.root_key:
                password = self.password()
                for host in need:
                    try:
                        check_root_password(host, password, self.known_hosts)
                    except BootstrapError as exc:
                        return self._fail(key, t0, exc.text())
            rc, recap, fails = self.runner.run(key, ["first_login"], ",".join(h.name for h in need),
                                               password=password, root_key=self.args.root_key)
            changed += sum(r["changed"] for r in recap.values())
            if rc != 0:
                return self._fail(key, t0, self._fail_text(fails, rc))
            still = [h.name for h in need if not self.logged_in(h)]
            if still:
                return self._fail(key, t0, f"{', '.join(still)}: key login still refused after the first login; "
                                  "password login stays on (nothing locked). fix: check /home/jincai/.ssh on the host")
        rc, recap, fails = self.runner.run(key, ["lockdown"], ",".join(h.name for h in hosts))
        changed += sum(r["changed"] for r in recap.values())
        if rc != 0:
            return self._fail(key, t0, self._fail_text(fails, rc))
        self._pass(key, t0, f"changed={changed}", changed)
        return True

    def playbook_step(self, key, tags, limit, extra=None, expect=(), then=None):
        """Run one tagged part of the bootstrap playbook as a step (skipped when resumed).

        ``expect`` names hosts that must appear in the run's recap: a step that ran on no host is a
        failure, never a pass. ``then``: a second part of the step after the playbook passed, returning
        ``(passed, detail)``.
        """
        t0 = self._step(key)
        if self.state.passed(key) and not self.args.full and key in self.resumable:
            check = self.quick_checks.get(key)
            if check is None or self.runner.run(f"{key}-check", [check], limit)[0] == 0:
                self.current[key] = "resumed"
                _say("   passed earlier for this site plan: not repeated (--full repeats it)")
                return True
            _say(f"   passed earlier, but its check ({check}) fails now: doing it again")
        rc, recap, fails = self.runner.run(key, tags, limit, extra=extra)
        changed = sum(r["changed"] for r in recap.values())
        if rc != 0:
            return self._fail(key, t0, self._fail_text(fails, rc))
        missing = [h for h in expect if h not in recap]
        if missing:
            return self._fail(key, t0, f"{', '.join(missing)}: the step ran no task there (limit {limit}); "
                              "fix: check the host is in the inventory groups the playbook targets")
        detail = f"changed={changed} on {len(recap)} hosts"
        if then is not None:
            passed, more = then()
            if not passed:
                return self._fail(key, t0, more)
            detail += f"; {more}"
        self._pass(key, t0, detail, changed)
        return True

    def site_checks(self):
        """The verify step's second part: ``jincai verify -l site_<code>``, the testinfra checks of every host
        of the site (docs/verify.md). Returns ``(passed, detail)``: the totals, or the failed checks."""
        c = self.connection()
        combine_known_hosts(c["run_known_hosts"], c["site_known_hosts"], c["known_hosts"])
        out_dir = os.path.join(self.state.dir, "verify")
        log = os.path.join(self.state.dir, "verify-site.log")
        _say(f"      - jincai verify -l site_{self.site.code}")
        rc, output = run_site_verify(site_verify_argv(self.site, out_dir, c["run_known_hosts"]), log)
        # its failures, the site's line and the total (not pytest's progress, nor its opening line)
        shown = [ln for ln in output.splitlines() if ln.startswith(("FAILED ", f"{self.site.code} ", "jincai verify"))
                 and "; report " not in ln]
        for line in shown:
            _say(f"      {line[:400]}")
        if rc == 0:
            try:
                with open(os.path.join(out_dir, "summary.json"), encoding="utf-8") as fh:
                    s = json.load(fh)
                return True, f"jincai verify: {s['checks']} checks on {s['hosts']} hosts, {s['skipped']} skipped"
            except (OSError, ValueError, KeyError):
                return True, "jincai verify passed"
        failed = [ln[len("FAILED "):] for ln in shown if ln.startswith("FAILED ")]
        return False, "\n".join([f"jincai verify -l site_{self.site.code} exited {rc}:"]
                                 + (failed[:4] or shown[-2:] or output.strip().splitlines()[-2:])
                                 + [f"full output: {log}"])

    #: A cheap check re-run before a resumed step is skipped (the router may have been reset since).
    quick_checks = {"router_config": "uplink"}

    @property
    def resumable(self):
        """Steps a resumed run may skip when they passed (the expensive ones)."""
        return {"router_config", "baseline", "apps"}

    def _fail_text(self, fails, rc):
        if not fails:
            tail = [ln.strip() for ln in getattr(self.runner, "last_output", "").splitlines() if ln.strip()][-3:]
            return (f"ansible-playbook exited {rc}: " + " / ".join(tail)[-600:] +
                    f"\nfull output: {self.state.dir}/")
        lines = []
        for host, msg in fails[:6]:
            lines.append(msg[:600] if msg.startswith(host.split(" ")[0]) else f"{host}: {msg[:600]}")
        return "\n".join(lines)

    # ------------------------------------------------------------ the whole run

    def run(self):
        """Run every step in order; stop at the first failure. Returns the exit code."""
        site = self.site
        router = site.router
        servers = site.servers
        if not self.reach() or not self.hostkeys():
            return 3
        if router and router.platform != "frr":
            t0 = self._step("router_access")
            self.current["router_access"] = "skipped"
            self.state.record("router_access", "skipped", f"{router.platform}: the netmiko account is created on the "
                              "console (runbook section 1); the router config step proves its login")
            _say(f"   SKIP: {router.platform} router: its automation account is set up on the console "
                 f"({time.monotonic() - t0:.0f} s)")
        elif router and not self.access("router_access", [router]):
            return 4
        # Host patterns: unions first, then intersections: (the site + its parent router) & routers.
        router_limit = ":".join([f"site_{site.code}"] + ([site.parent_router] if site.parent_router else []) + ["&routers"])
        if router and not self.playbook_step("router_config", ["router"], router_limit, expect=[router.name]):
            return 4
        if not self.access("server_access", servers):
            return 5
        server_limit = f"site_{site.code}:&machine_room"
        names = [h.name for h in servers]
        if not self.playbook_step("baseline", ["baseline"], server_limit, expect=names):
            return 5
        if not self.playbook_step("apps", ["apps"], server_limit, expect=names):
            return 5
        nonce = secrets.token_hex(6)
        if not self.playbook_step("verify", ["verify"], f"site_{site.code}", expect=names,
                                  extra={"bootstrap_verify_nonce": nonce}, then=self.site_checks):
            return 6
        return 0


def build_parser():
    """The argument parser of ``jincai bootstrap``."""
    p = argparse.ArgumentParser(prog="jincai bootstrap", description=__doc__.splitlines()[0],
                                epilog="Runbook: docs/runbook.en.md (中文: docs/runbook.zh.md)")
    p.add_argument("code", help="the site's GB/T 2260 code, e.g. 220104 (add it first: jincai site add CODE --write)")
    p.add_argument("-i", "--inventory", default=DEFAULT_INVENTORY, help="inventory directory (default: %(default)s)")
    p.add_argument("--password-stdin", action="store_true",
                   help=f"read the root password from the first line of stdin (or set {PASSWORD_ENV})")
    p.add_argument("--root-key", metavar="FILE", help="first login as root with this private key instead of a password")
    p.add_argument("-y", "--accept-host-keys", action="store_true",
                   help="accept new host keys without asking (only after comparing the fingerprints)")
    p.add_argument("--full", action="store_true", help="repeat every step, even those that passed before")
    p.add_argument("--preflight", action="store_true", help="only validate, probe and record host keys; change nothing")
    p.add_argument("--forget-host", metavar="HOST", action="append", default=[],
                   help="drop HOST's recorded host keys (after a verified reinstall), then continue")
    p.add_argument("--allow-production", action="store_true",
                   help=f"contact the hosts of a production inventory (province control node; or {PRODUCTION_ENV}=1)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each host to answer")
    p.add_argument("-v", "--verbose", action="store_true", help="show the full Ansible output")
    p.add_argument("--reports-dir", default=None, help=argparse.SUPPRESS)
    return p


def _lock(state):
    os.makedirs(state.dir, mode=0o700, exist_ok=True)
    fh = open(os.path.join(state.dir, ".lock"), "a+", encoding="ascii")  # noqa: SIM115 (held for the run)
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        raise BootstrapError(f"another jincai bootstrap {state.code} is running (pid {fh.read().strip() or '?'})",
                             "wait for it to finish, or stop it, then re-run") from None
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    return fh


def _forget(state, names):
    path = os.path.join(state.dir, "known_hosts")
    try:
        with open(path, encoding="ascii") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return
    kept = [ln for ln in lines if not set(ln.split()[0].split(",")) & set(names)]
    with open(path, "w", encoding="ascii") as fh:
        fh.write("".join(ln + "\n" for ln in kept))
    _say(f"forgot the recorded host keys of {', '.join(names)}")


def main(argv=None):
    """Entry point of ``jincai bootstrap``; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.root_key and not os.path.isfile(args.root_key):
        print(f"jincai bootstrap: --root-key {args.root_key}: no such file", file=sys.stderr)
        return 2
    _say(f"== 1. Source of truth valid, site added / 数据源有效、站点已添加 ({args.inventory})")
    t0 = time.monotonic()
    try:
        site = resolve_site(args.inventory, args.code)
    except BootstrapError as exc:
        print(f"jincai bootstrap: {exc.text()}", file=sys.stderr)
        _say("   FAIL: nothing was contacted and nothing changed")
        return 2
    if site.environment == "production" and not (args.allow_production or os.environ.get(PRODUCTION_ENV) == "1"):
        print(f"jincai bootstrap: {site.inventory} is a production inventory: this would contact the real hosts of "
              f"site {site.code} ({', '.join(h.address for h in site.hosts)})\n"
              f"  fix: on the province control node pass --allow-production (or set {PRODUCTION_ENV}=1 there); "
              "in the lab use -i inventories/lab", file=sys.stderr)
        _say("   FAIL: nothing was contacted and nothing changed")
        return 2
    state = State(site.code, args.reports_dir)
    try:
        lock = _lock(state)
    except BootstrapError as exc:
        print(f"jincai bootstrap: {exc.text()}", file=sys.stderr)
        return 2
    state.set_plan(site.fingerprint)
    if args.forget_host:
        unknown = sorted(set(args.forget_host) - {h.name for h in site.hosts})
        if unknown:
            print(f"jincai bootstrap: --forget-host {', '.join(unknown)}: not a host of site {site.code} "
                  f"({', '.join(h.name for h in site.hosts)})", file=sys.stderr)
            return 2
        _forget(state, args.forget_host)
    run = Bootstrap(args, site, state)
    run._pass("validate", t0, f"site {site.code} {site.name_zh} ({site.tier}): "
              f"{', '.join(h.name for h in site.hosts)}")

    def _on_signal(signum, _frame):
        if not run.runner.stop(signal.Signals(signum).name):  # a playbook in progress ends first, then raises Interrupted
            raise Interrupted(signal.Signals(signum).name)

    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        if args.preflight:
            rc = 0 if (run.reach() and run.hostkeys()) else 3
        else:
            rc = run.run()
    except BootstrapError as exc:
        print(f"jincai bootstrap: {exc.text()}", file=sys.stderr)
        rc = 2
    except Interrupted as exc:
        _say(f"\njincai bootstrap: interrupted ({exc}); run the same command again to continue")
        rc = 130
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        lock.close()
    _say("")
    _say(checklist(state, run.current, CONTACTS))
    return rc


if __name__ == "__main__":
    sys.exit(main())
