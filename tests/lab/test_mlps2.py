"""MLPS level 3, second pass (issue #18), proven on the live lab: separation of duties, TLS, host hardening.

Written without lab time (the lab was busy): NOT RUN YET. Each test is short (one or two SSH round
trips per person, one TLS scan per app server, one `jincai compliance --skip-drift` of one host) and
reads the intended state from the inventory. They assume a provisioned lab (test_00_site runs first).

* the auditor reads the audit trail and can change nothing; a technician runs their listed service
  operations and cannot become root (sudo with the person's own key and a temporary password);
* a TLS scan of every frontend of every app server accepts only the policy's AEAD suites;
* a row written before the nightly backup is back after the restore drill (scratch database);
* compliance flags each new control kind when it is broken by hand, then everything is restored.
"""

import contextlib
import json
import os
import shlex
import subprocess
import uuid

import pytest
import yaml

from jincai import ROOT
from jincai.lab import passwords
from jincai.lab import lab as labmod
from jincai.policy import tls

import hoststate
from conftest import hostvars, inventory, mgmt_address, run_on

pytestmark = pytest.mark.lab

JINCAI = os.path.join(ROOT, ".venv", "bin", "jincai")


def control(unit):
    """Tag a test with the MLPS test unit it proves (as tests/lab/test_baseline.py does)."""

    def wrap(func):
        func.mlps_control = unit
        return func

    return wrap


def county_app_server():
    """A county app server whose site lists present technicians (the people these tests act as)."""
    for host in sorted(inventory()["app_servers"]["hosts"]):
        hv = hostvars(host)
        if hv["jincai_tier"] == "county" and any(t["state"] == "present" for t in hv["jincai_technicians"]):
            return host
    pytest.fail("the lab has no county app server with technicians")
    return None


def person(host, role):
    """The first present administrator with ``role`` (system, security, audit), or a technician."""
    hv = hostvars(host)
    if role == "technician":
        people = [t for t in hv["jincai_technicians"] if t["state"] == "present"]
    else:
        people = [a for a in hv["jincai_admins"] if a["state"] == "present" and a.get("roles") == [role]]
    if not people:
        pytest.fail(f"the lab source lists no present {role} (inventories/lab/source)")
    return people[0]["user"]


def as_person(host, user, cmd):
    """Run ``cmd`` on ``host`` over SSH as ``user`` with their own lab key; return the CompletedProcess."""
    argv = ["ssh", "-i", os.path.join(labmod.KEYS_DIR, user), "-o", f"UserKnownHostsFile={labmod.KNOWN_HOSTS}",
            "-o", "StrictHostKeyChecking=yes", "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", f"{user}@{mgmt_address(host)}", cmd]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def sudo(host, user, password, command):
    """``sudo -S COMMAND`` as ``user`` (the password is the second factor); return the CompletedProcess."""
    return as_person(host, user, f"echo {shlex.quote(password)} | sudo -S -p '' {command}")


def shadow_hash(host, user):
    """The password field of ``user``'s shadow entry on ``host`` (testinfra's ``user.password``)."""
    return hoststate.host(host).user(user).password


def chpasswd(host, user, password):
    """``chpasswd`` of ``user:password`` as root on ``host`` (through PAM: pam_pwquality judges it)."""
    return run_on(host, f"printf '%s\\n' {shlex.quote(user + ':' + password)} | chpasswd")


@contextlib.contextmanager
def temporary_password(host, user):
    """Give ``user`` a password for the test (the lab sets none) and put the shadow field back after.

    The password is drawn for the policy roles/accounts deploys on ``host`` (its variables, not a guess):
    chpasswd goes through pam_pwquality, which refuses root too (enforce_for_root)."""
    saved = shadow_hash(host, user)
    password = passwords.generate(passwords.policy(hostvars(host)), user)
    res = chpasswd(host, user, password)
    assert res.returncode == 0, f"{host}: the policy refused a password drawn for it: {res.stdout}{res.stderr}"
    run_on(host, f"faillock --user {user} --reset", check=True)
    try:
        yield password
    finally:
        run_on(host, f"usermod -p {shlex.quote(saved)} {user} && faillock --user {user} --reset", check=True)


def sudo_rights(host, user, password):
    """The commands ``sudo -l`` lists for ``user`` (what they themselves are told)."""
    res = sudo(host, user, password, "-l")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.split("may run the following commands", 1)[-1].splitlines()[1:]
    return [c.strip() for line in lines if line.strip().startswith("(")
            for c in line.split(")", 1)[1].split(", ")]


@control("L3-CES1-01")
def test_the_password_policy_refuses_weak_passwords_and_takes_a_compliant_one(lab_up):
    """L3-CES1-01 password quality: chpasswd (PAM, pam_pwquality with enforce_for_root) refuses a short
    password and a dictionary word with every class, and takes one drawn for the deployed policy. Without
    cracklib's dictionary every password fails ("error loading dictionary"): the last step proves it is there."""
    host = county_app_server()
    user = person(host, "technician")
    pol = passwords.policy(hostvars(host))
    saved = shadow_hash(host, user)
    try:
        for weak in ("Ab1!" + "x" * max(int(pol["minlen"]) - 6, 0), "Password1!"):
            res = chpasswd(host, user, weak)
            assert res.returncode != 0, (weak, res.stdout, res.stderr)
        good = chpasswd(host, user, passwords.generate(pol, user))
        assert good.returncode == 0, good.stdout + good.stderr
        stored = shadow_hash(host, user)
        hoststate.expect(host, f"shadow hash of {user} after a compliant chpasswd", stored.startswith("$y$"),
                         "yescrypt ($y$...)", repr(stored[:4]))
    finally:
        run_on(host, f"usermod -p {shlex.quote(saved)} {user} && faillock --user {user} --reset", check=True)


@control("L3-CES1-08")
def test_the_auditor_reads_the_audit_trail_and_can_change_nothing(lab_up):
    """L3-CES1-08 separation of duties: the audit administrator's sudo reads logs and the audit trail only;
    every state-changing command is refused (and logged), and the state is as before."""
    host = county_app_server()
    user = person(host, "audit")

    def probe():
        h = hoststate.host(host)
        return {"rsyslog.service running": h.service("rsyslog").is_running,
                "/etc/jcmp-auditor exists": h.file("/etc/jcmp-auditor").exists,
                "passwd -S root": hoststate.read(host, "passwd -S root").strip()}

    before = probe()
    with temporary_password(host, user) as pw:
        assert sudo_rights(host, user, pw) == ["/usr/local/sbin/jincai-audit-read"]
        refused = {cmd: sudo(host, user, pw, cmd) for cmd in (
            "/usr/bin/systemctl stop rsyslog.service", "/usr/bin/touch /etc/jcmp-auditor",
            "/bin/sh -c id", "-i", "/usr/sbin/usermod -L root",
            "/usr/local/sbin/jincai-secadm unlock " + person(host, "technician"))}
        assert all(r.returncode != 0 for r in refused.values()), {c: r.stdout for c, r in refused.items()}
        bad_arg = sudo(host, user, pw, "/usr/local/sbin/jincai-audit-read search --checkpoint=/etc/jcmp-auditor")
        assert bad_arg.returncode == 2 and "bad argument" in bad_arg.stderr
        trail = sudo(host, user, pw, "/usr/local/sbin/jincai-audit-read sudo-log")
        assert trail.returncode == 0, trail.stderr
        logged = " ".join(trail.stdout.split())  # sudo wraps its log lines at 80 columns
        assert f"{user} : command not allowed" in logged and "COMMAND=/usr/bin/systemctl stop rsyslog" in logged
        assert sudo(host, user, pw, "/usr/local/sbin/jincai-audit-read auth-log").returncode == 0
    after = probe()
    hoststate.equal(host, "rsyslog, /etc/jcmp-auditor and root's password status after the auditor's attempts",
                    after, before)
    hoststate.equal(host, "rsyslog running, /etc/jcmp-auditor absent",
                    (after["rsyslog.service running"], after["/etc/jcmp-auditor exists"]), (True, False))


@control("L3-CES1-08")
def test_a_technician_runs_the_listed_service_operations_and_cannot_become_root(lab_up):
    """L3-CES1-08: a county technician's sudo is this host's listed service operations, nothing else."""
    host = county_app_server()
    user = person(host, "technician")
    with temporary_password(host, user) as pw:
        rights = sudo_rights(host, user, pw)
        assert rights and all(c.split()[0] in ("/usr/bin/systemctl", "/usr/bin/journalctl") for c in rights), rights
        assert "/usr/bin/systemctl stop rsyslog.service" not in rights
        assert sudo(host, user, pw, "/usr/bin/systemctl --no-pager status rsyslog.service").returncode == 0
        assert sudo(host, user, pw, "/usr/bin/journalctl --no-pager -n 500 -u rsyslog.service").returncode == 0
        for cmd in ("-i", "-s", "/bin/bash", "/usr/bin/su -", "/usr/bin/id", "/usr/bin/systemctl stop rsyslog.service",
                    "/usr/bin/systemctl --no-pager status rsyslog.service --dry-run",
                    "/usr/bin/journalctl -u rsyslog.service"):
            res = sudo(host, user, pw, cmd)
            assert res.returncode != 0 and "uid=0" not in res.stdout, (cmd, res.stdout, res.stderr)
    hoststate.expect(host, "rsyslog.service after the technician's attempts",
                     hoststate.host(host).service("rsyslog").is_running, "running", "not running")


# One scan per app server, on the host itself against its data-plane address: every TLS 1.2 suite its
# OpenSSL knows, offered alone; TLS 1.0 and 1.1; TLS 1.3.
SCAN = r"""
import json, socket, ssl, sys, warnings
warnings.simplefilter("ignore")
addr, ports = json.loads(sys.argv[1])
def hello(port, low, high, ciphers=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version, ctx.maximum_version = low, high
    if ciphers: ctx.set_ciphers(ciphers)
    try:
        with socket.create_connection((addr, port), timeout=3) as raw, ctx.wrap_socket(raw) as c:
            return c.cipher()[0]
    except (OSError, ValueError):
        return None
probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); probe.set_ciphers("ALL:@SECLEVEL=0")
suites = sorted({c["name"] for c in probe.get_ciphers() if c["protocol"] != "TLSv1.3"})
V = ssl.TLSVersion
out = {}
for port in ports:
    out[port] = {"tls12": [s for s in suites if hello(port, V.TLSv1_2, V.TLSv1_2, s + ":@SECLEVEL=0")],
                 "legacy": hello(port, V.TLSv1, V.TLSv1_1, "ALL:@SECLEVEL=0"),
                 "tls13": hello(port, V.TLSv1_3, V.TLSv1_3)}
print(json.dumps(out))
"""


@control("L3-CES1-26")
def test_every_tls_frontend_accepts_only_the_policys_aead_suites(lab_up):
    """L3-CES1-26 confidentiality in transit: a scan of every frontend (443 and each application port) of
    every app server accepts TLS 1.3 and, at TLS 1.2, only suites of jincai/data/tls.yml; no CBC, no 1.0/1.1."""
    allowed = set(tls.policy()["tls12_ciphers"])
    problems = {}
    for host in sorted(inventory()["app_servers"]["hosts"]):
        hv = hostvars(host)
        ports = [443] + [hv["jincai_applications"][a]["port"] for a in hv.get("jincai_apps") or []]
        res = run_on(host, f"python3 -c {shlex.quote(SCAN)} {shlex.quote(json.dumps([hv['jincai_address'], ports]))}",
                     sudo=False, timeout=60)
        assert res.returncode == 0, f"{host}: {res.stderr[-500:]}"
        for port, got in json.loads(res.stdout.strip().splitlines()[-1]).items():
            bad = [s for s in got["tls12"] if s not in allowed or not tls.is_aead(s)]
            if bad or got["legacy"] or not got["tls13"] or not got["tls12"]:
                problems[f"{host}:{port}"] = got
    assert not problems, problems


with open(os.path.join(ROOT, "inventories", "lab", "group_vars", "all", "apps.yml"), encoding="utf-8") as _fh:
    CATALOG = yaml.safe_load(_fh)["apps_catalog"]


@control("L3-CES1-28")
def test_a_row_written_before_the_nightly_backup_is_back_after_the_restore_drill(lab_up):
    """L3-CES1-28/29 finance data backup: the nightly run dumps every database (and copies it to the
    province); the restore drill restores the newest dump into a scratch database and verifies it row
    for row; a row written just before the backup is in the scratch database."""
    host = county_app_server()
    app = next(a for a in hostvars(host)["jincai_apps"] if CATALOG.get(a, {}).get("database"))
    db = CATALOG[app]["database"]
    marker = uuid.uuid4().hex
    psql = "runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1"
    run_on(host, f"{psql} -d {db} -c \"CREATE TABLE IF NOT EXISTS jcmp_drill (marker text); "
                 f"INSERT INTO jcmp_drill VALUES ('{marker}')\"", check=True)
    try:
        night = run_on(host, "jincai-backup", timeout=120)  # rc 1 only when the province cannot be reached
        assert night.returncode in (0, 1) and "database dumps:" in night.stdout and db in night.stdout, night.stdout
        drill = run_on(host, f"jincai-backup restore-drill --keep {db}", timeout=120)
        assert drill.returncode == 0 and "restore drill OK" in drill.stdout, drill.stdout + drill.stderr
        got = hoststate.read(host, f"{psql} -d jincai_drill_{db} -c 'SELECT marker FROM jcmp_drill'").split()
        hoststate.expect(host, f"jcmp_drill rows of the restored scratch database jincai_drill_{db}", marker in got,
                         f"the marker {marker}", got)
        status = json.loads(hoststate.host(host).file("/var/backups/jincai/last-backup.json").content_string)
        hoststate.expect(host, "databases of /var/backups/jincai/last-backup.json", db in status["databases"],
                         f"{db} listed", status["databases"])
    finally:
        run_on(host, f"{psql} -d {db} -c 'DROP TABLE IF EXISTS jcmp_drill'; "
                     f"runuser -u postgres -- dropdb --if-exists jincai_drill_{db}", check=True)


def compliance(out_dir, *args, timeout=300):
    """Run `jincai compliance -o out_dir ARGS`; return (exit code, report dict or None, output)."""
    proc = subprocess.run([JINCAI, "compliance", "-o", str(out_dir), *args], capture_output=True, text=True,
                          timeout=timeout, check=False, cwd=ROOT)
    path = os.path.join(str(out_dir), "report.json")
    if not os.path.exists(path):
        return proc.returncode, None, proc.stdout + proc.stderr
    with open(path, encoding="utf-8") as fh:
        return proc.returncode, json.load(fh), proc.stdout + proc.stderr


SYSCTL = "/etc/sysctl.d/60-jincai-hardening.conf"


def breakages(host):
    """(kind, break, restore, check id, control) for every new control kind, on one host."""
    tech = person(host, "technician")
    audit = person(host, "audit")
    return [
        ("sudo rights", f"printf '%s ALL=(ALL:ALL) ALL\\n' {audit} > /etc/sudoers.d/zz-jcmp && "
                        "chmod 0440 /etc/sudoers.d/zz-jcmp && visudo -c >/dev/null",
         "rm -f /etc/sudoers.d/zz-jcmp", "access.sudo_roles", "L3-CES1-08"),
        ("banner", "cp -p /etc/issue.net /root/jcmp-issue.net && echo 'Debian GNU/Linux 12' > /etc/issue.net",
         "mv /root/jcmp-issue.net /etc/issue.net", "access.banner", "L3-CES1-05"),
        ("core dumps", "mv /etc/security/limits.d/60-jincai-core.conf /root/jcmp-core.conf",
         "mv /root/jcmp-core.conf /etc/security/limits.d/60-jincai-core.conf", "hardening.core_dumps", "L3-CES1-31"),
        # the file only: a container's kernel is the host's (on a real server the check reads /proc/sys)
        ("kernel parameters", f"cp -p {SYSCTL} /root/jcmp-sysctl.conf && "
                              f"sed -i -e 's/^kernel.randomize_va_space = 2$/kernel.randomize_va_space = 0/' "
                              f"-e 's/^net.ipv4.conf.all.accept_redirects = 0$/net.ipv4.conf.all.accept_redirects = 1/'"
                              f" {SYSCTL} && grep -q 'randomize_va_space = 0' {SYSCTL}",
         f"mv /root/jcmp-sysctl.conf {SYSCTL}", "hardening.kernel_memory", "L3-CES1-20"),
        ("kernel network", "true", "true", "hardening.kernel_network", "L3-CES1-17"),  # broken by the edit above
        ("protocols", "mv /etc/modprobe.d/60-jincai-protocols.conf /root/jcmp-protocols.conf",
         "mv /root/jcmp-protocols.conf /etc/modprobe.d/60-jincai-protocols.conf", "hardening.protocols", "L3-CES1-16"),
        ("hashing", "cp -p /etc/pam.d/common-password /root/jcmp-common-password && "
                    "sed -i 's/ rounds=[0-9]*/ rounds=3/' /etc/pam.d/common-password && "
                    "grep -q 'rounds=3' /etc/pam.d/common-password",
         "mv /root/jcmp-common-password /etc/pam.d/common-password", "auth.password_hashing", "L3-CES1-27"),
        ("home", f"stat -c %a /home/{tech} > /root/jcmp-home.mode && chmod 0755 /home/{tech}",
         f"chmod $(cat /root/jcmp-home.mode) /home/{tech} && rm /root/jcmp-home.mode",
         "access.home_permissions", "L3-CES1-10"),
        ("log file", "install -m 0644 /dev/null /var/log/jcmp-test.log", "rm -f /var/log/jcmp-test.log",
         "audit.log_permissions", "L3-CES1-14"),
        ("tls", "cp -p /etc/nginx/conf.d/jincai-apps.conf /root/jcmp-nginx.conf && "
                "sed -i 's/^\\(    ssl_ciphers [^;]*\\);/\\1:ECDHE-RSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA;/' "
                "/etc/nginx/conf.d/jincai-apps.conf && nginx -t -q && systemctl reload nginx",
         "mv /root/jcmp-nginx.conf /etc/nginx/conf.d/jincai-apps.conf && systemctl reload nginx",
         "tls.endpoints", "L3-CES1-26"),
    ]


@control("L3-CES1-08")
def test_compliance_flags_each_new_control_when_broken_by_hand(lab_up, tmp_path):
    """Every new control kind (sudo per role, banner, core dumps, kernel, protocols, hashing, homes, logs,
    TLS) broken by hand on one host is reported under its control; everything is restored after."""
    host = county_app_server()
    cases = breakages(host)
    if hoststate.run(host, "systemd-detect-virt -c -q").rc != 0:
        # a real server's check reads the live /proc/sys, which this test leaves alone
        cases = [c for c in cases if not c[3].startswith("hardening.kernel")]
    broken = []
    try:
        for kind, breaker, restore, _check, _control in cases:
            res = run_on(host, breaker)
            assert res.returncode == 0, f"could not break {kind}: {res.stderr}"
            broken.append((kind, restore))
        rc, rep, out = compliance(tmp_path / "broken", "--skip-drift", "--limit", host)
        assert rep is not None and rc == 1, out[-2000:]
        found = {(r["check"], r["control"]) for r in rep["hosts"][host]["checks"] if not r["passed"]}
        missing = [(kind, c, ctl) for kind, _b, _r, c, ctl in cases if (c, ctl) not in found]
        assert not missing, f"not flagged: {missing}\nfound: {sorted(found)}"
    finally:
        errors = [f"{kind}: {r.stderr}" for kind, restore in reversed(broken)
                  if (r := run_on(host, restore)).returncode != 0]
        assert not errors, f"restore failed on {host}: {errors}"
