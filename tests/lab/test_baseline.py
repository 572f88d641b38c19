"""The server baseline (playbooks/baseline.yml) proven on the live lab, control by control.

Every test names the MLPS level-3 test unit it proves (GB/T 28448-2019: L3-CES1-xx computing
environment, L3-SMC1-xx management centre) first in its docstring and in ``CONTROL`` so the
compliance report can quote it. Host state is read with testinfra (tests/lab/hoststate.py: files,
services, packages, users, sockets, and the outputs of read-only commands such as ``sshd -T`` and
``nft list``) over one SSH master per host; ``run_on`` only acts (plants a file, logs a line, runs a
backup, pings from a county). Failures name the host, what was checked, expected and found.

Cross-site tests (county logs reaching the collector, WAN cut, clocks following the city, backups
copied from a county) need routing between sites; they skip with a clear reason until the
routers are configured (``_routed``), and run as soon as they are.
"""

import functools
import os
import re
import subprocess
import time
import uuid

import pytest

from jincai import ROOT
from jincai.lab import lab as labmod
from jincai.run import run

import hoststate
from conftest import changed_on, hostvars, inventory, lab_state, mgmt_address, run_on, wait_routes_converged

pytestmark = pytest.mark.lab

LAB = os.path.join(ROOT, "inventories", "lab")
PLAYBOOK = "playbooks/baseline.yml"
KEYS_DIR = labmod.KEYS_DIR


def control(unit):
    """Tag a test with the MLPS test unit it proves (read by the compliance report)."""

    def wrap(func):
        func.mlps_control = unit
        return func

    return wrap


def machine_room():
    """The lab hosts the baseline applies to."""
    return sorted(inventory()["machine_room"]["hosts"])


def services_host():
    """The province services host (collector, NTP, backup receiver)."""
    return inventory()["services"]["hosts"][0]


def by_tier(tier):
    """Machine-room hosts of one tier."""
    return [h for h in machine_room() if hostvars(h)["jincai_tier"] == tier]


def _tail(res, n=60):
    return "\n".join(res.output.splitlines()[-n:])


# ------------------------------------------------------------------ playbook runs

@pytest.fixture(scope="module")
def converged(site_first):
    """The baseline converged: the session's whole-lab site.yml (tests/lab/conftest.py), whose baseline
    play is this module's subject; the modules before this one restore what they break."""
    assert site_first.rc == 0, _tail(site_first)
    return site_first


@control("L3-SMC1-11")
def test_baseline_applies_to_every_machine_room_host_and_nothing_else(converged):
    """L3-SMC1-11 central configuration management: the baseline converges every server, only servers."""
    listed = subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "-i", LAB, "--list-hosts",
                             PLAYBOOK], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    hosts = sorted({line.strip() for line in listed.splitlines()
                    if line.startswith("      ") and not line.strip().startswith(("play #", "pattern:", "hosts"))})
    assert hosts == machine_room(), listed
    assert not set(machine_room()) - set(converged.recap), "site.yml's run missed a machine-room host"
    assert not {h for h in machine_room() if converged.recap[h]["failed"] or converged.recap[h]["unreachable"]}


@control("L3-SMC1-11")
def test_second_run_changes_nothing(site_second):
    """L3-SMC1-11: a second run reports changed=0 on every server (idempotent; the session's second site.yml)."""
    assert site_second.rc == 0, _tail(site_second)
    assert changed_on(site_second, machine_room()) == {}, f"not idempotent: {site_second.changed_tasks()}"


@control("L3-SMC1-11")
def test_check_mode_is_clean(site_check):
    """L3-SMC1-11: --check --diff on a converged lab fails nowhere and reports no drift on any server."""
    assert site_check.rc == 0, _tail(site_check)
    assert changed_on(site_check, machine_room()) == {}, f"check mode reports drift: {site_check.changed_tasks()}"


# ------------------------------------------------------------------ host state (testinfra)

def _conf_lines(text):
    """The lines of a config file that are neither comments nor empty (``grep -Ev '^#|^$'``)."""
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def _conf(name, path):
    """The non-comment, non-empty lines of ``path`` on lab host ``name`` (it must exist)."""
    f = hoststate.host(name).file(path)
    hoststate.expect(name, f"{path} exists", f.exists, "a file", "nothing")
    return _conf_lines(f.content_string)


@functools.lru_cache(maxsize=None)
def sshd_t(host):
    """Effective sshd settings (``sshd -T`` on ``host``) as {keyword: value} (read once per session)."""
    out = {}
    for line in hoststate.read(host, "sshd -T 2>&1").splitlines():
        key, _, value = line.partition(" ")
        key = key.lower()
        # Multi-valued keywords (allowusers...) come one per line: join them with spaces.
        out[key] = f"{out[key]} {value}" if key in out else value
    return out


@functools.lru_cache(maxsize=None)
def nft_ruleset(host):
    """``nft list table inet jincai`` on ``host`` (read once per session)."""
    return hoststate.read(host, "nft list table inet jincai")


HOSTS = pytest.mark.parametrize("host", machine_room())


# ------------------------------------------------------------------ base system

@HOSTS
@control("L3-CES1-16")
def test_base_system(converged, host):
    """L3-CES1-16 minimal install: host name from the source of truth, Asia/Shanghai, UTF-8 locale."""
    h = hoststate.host(host)
    hoststate.equal(host, "hostname", h.check_output("hostname"), host)
    hoststate.equal(host, "/etc/localtime link", h.check_output("readlink /etc/localtime"),
                    "/usr/share/zoneinfo/Asia/Shanghai")
    hoststate.equal(host, "/etc/timezone", h.file("/etc/timezone").content_string.strip(), "Asia/Shanghai")
    hoststate.equal(host, "/etc/default/locale", h.file("/etc/default/locale").content_string.strip(),
                    "LANG=en_US.UTF-8")


FORBIDDEN_PACKAGES = ("telnet", "telnetd", "inetutils-telnet", "inetutils-telnetd", "ftp", "inetutils-ftp", "ftpd",
                      "vsftpd", "rsh-client", "rsh-server", "rsh-redone-client", "talk", "talkd", "nis", "tftp",
                      "tftpd-hpa", "xinetd")


@HOSTS
@control("L3-CES1-16")
def test_no_clear_text_or_legacy_service_packages(converged, host):
    """L3-CES1-16/L3-CES1-03: no telnet, ftp, rsh, talk, nis, tftp or xinetd packages; apt timers off."""
    h = hoststate.host(host)
    installed = [p for p in FORBIDDEN_PACKAGES if h.package(p).is_installed]
    hoststate.equal(host, "clear-text or legacy service packages installed", installed, [])
    for timer in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        state = h.run("systemctl is-enabled %s", timer).stdout.strip()
        hoststate.expect(host, f"{timer} at boot", state != "enabled", "not enabled", state)


# ------------------------------------------------------------------ accounts

def _passwd(name):
    """{user: shell} of host ``name``'s accounts with 1000 <= UID < 60000 (``getent passwd``)."""
    out = {}
    for line in hoststate.read(name, "getent passwd").splitlines():
        fields = line.split(":")
        if len(fields) >= 7 and 1000 <= int(fields[2]) < 60000:
            out[fields[0]] = fields[6]
    return out


@HOSTS
@control("L3-CES1-01")
def test_unique_named_accounts_no_empty_passwords(converged, host):
    """L3-CES1-01 identification: only root has UID 0, no empty password, one account per person of this site."""
    h = hoststate.host(host)
    passwd = [line.split(":") for line in h.file("/etc/passwd").content_string.splitlines() if line]
    hoststate.equal(host, "accounts with UID 0 in /etc/passwd", [f[0] for f in passwd if f[2] == "0"], ["root"])
    shadow = [line.split(":") for line in h.file("/etc/shadow").content_string.splitlines() if line]
    hoststate.equal(host, "accounts with an empty password in /etc/shadow", [f[0] for f in shadow if f[1] == ""], [])
    users = _passwd(host)
    hv = hostvars(host)
    for person in hv["jincai_admins"] + hv["jincai_technicians"]:
        if person["state"] == "present":
            hoststate.equal(host, f"login shell of {person['user']}", users.get(person["user"]), "/bin/bash")
    hoststate.equal(host, "login shell of the automation account jincai", users.get("jincai"), "/bin/bash")


@HOSTS
@control("L3-CES1-01")
def test_password_ageing_and_quality(converged, host):
    """L3-CES1-01 complexity and periodic change: 90/2/7 days, pwquality length 8 with four classes."""
    h = hoststate.host(host)
    logindefs = [line for line in h.file("/etc/login.defs").content_string.splitlines()
                 if re.match(r"PASS_(MAX|MIN|WARN)", line)]
    hoststate.equal(host, "PASS_* settings of /etc/login.defs", sorted(" ".join(logindefs).split()),
                    sorted(["PASS_MAX_DAYS", "90", "PASS_MIN_DAYS", "2", "PASS_WARN_AGE", "7"]))
    groups = hoststate.read(host, "getent group jincai-technicians jincai-admins")
    people = [u for line in groups.splitlines() for u in line.split(":")[3].split(",") if u]
    for user in people:
        hoststate.equal(host, f"maximum password age of {user}", h.user(user).password_max_days, 90)
    pwq = dict(re.split(r"\s*=\s*", l, maxsplit=1) for l in _conf(host, "/etc/security/pwquality.conf") if "=" in l)
    hoststate.expect(host, "pwquality minlen, minclass", int(pwq["minlen"]) >= 8 and pwq["minclass"] == "4",
                     "minlen >= 8, minclass 4", f"minlen {pwq['minlen']}, minclass {pwq['minclass']}")
    credits = {k: pwq.get(k) for k in ("dcredit", "ucredit", "lcredit", "ocredit")}
    hoststate.equal(host, "pwquality credits", credits, dict.fromkeys(credits, "-1"))
    common = _conf(host, "/etc/pam.d/common-password")
    hoststate.expect(host, "pam_pwquality.so in /etc/pam.d/common-password",
                     "pam_pwquality.so" in "\n".join(common), "present", common)


@HOSTS
@control("L3-CES1-02")
def test_failed_login_lockout_and_idle_timeout(converged, host):
    """L3-CES1-02 login failure handling: pam_faillock deny=5 unlock_time=900; TMOUT=600; sshd idle limit."""
    conf = dict(re.split(r"\s*=\s*", l) for l in _conf(host, "/etc/security/faillock.conf") if "=" in l)
    hoststate.equal(host, "faillock deny, unlock_time", (conf.get("deny"), conf.get("unlock_time")), ("5", "900"))
    auth = _conf(host, "/etc/pam.d/common-auth")
    hoststate.expect(host, "pam_faillock in /etc/pam.d/common-auth",
                     "pam_faillock.so preauth" in auth[0] and any("pam_faillock.so authfail" in l for l in auth),
                     "preauth first, then authfail", auth)
    hoststate.expect(host, "nullok in /etc/pam.d/common-auth", "nullok" not in "\n".join(auth), "absent", auth)
    tmout = hoststate.read(host, "bash -lc 'echo TMOUT=$TMOUT'")
    hoststate.expect(host, "TMOUT of a login shell", "TMOUT=600" in tmout, "TMOUT=600", tmout.strip())
    s = sshd_t(host)
    idle = int(s["clientaliveinterval"]) * int(s["clientalivecountmax"])
    hoststate.expect(host, "sshd idle limit (ClientAliveInterval x ClientAliveCountMax)", idle <= 600, "<= 600 s",
                     f"{idle} s")


@HOSTS
@control("L3-CES1-08")
def test_sudo_rules_per_role(converged, host):
    """L3-CES1-08 least privilege: sudo per role (only system administrators have ALL), validated, logged;
    password asked."""
    h = hoststate.host(host)
    visudo = h.run("visudo -c")
    hoststate.expect(host, "visudo -c", visudo.rc == 0, "valid", (visudo.stdout + visudo.stderr).strip())
    sudo = h.file("/etc/sudoers.d/jincai-baseline").content_string
    what = "/etc/sudoers.d/jincai-baseline"
    hoststate.expect(host, what, "%jincai-sysadmins\tALL=(ALL:ALL) ALL" in sudo, "sysadmins ALL", sudo)
    hoststate.expect(host, what, "%jincai-admins" not in sudo and "%jincai-technicians\tALL=(ALL" not in sudo,
                     "no ALL for admins or technicians", sudo)
    hoststate.expect(host, what, "NOPASSWD" not in sudo, "no NOPASSWD", sudo)
    hoststate.expect(host, what, 'logfile="/var/log/sudo.log"' in sudo, 'logfile="/var/log/sudo.log"', sudo)


@HOSTS
@control("L3-CES1-07")
def test_keys_are_central_and_root_owned(converged, host):
    """L3-CES1-07: each present person's key is a root-owned file; nobody else's key is there."""
    h = hoststate.host(host)
    names = h.file("/etc/ssh/authorized_keys").listdir()
    hv = hostvars(host)
    expected = {p["user"] for p in hv["jincai_admins"] + hv["jincai_technicians"] if p["state"] == "present"}
    if "services" in hv["jincai_functions"]:
        expected.add("jincai-backup")
    hoststate.equal(host, "files in /etc/ssh/authorized_keys", sorted(names), sorted(expected))
    for name in names:
        f = h.file(f"/etc/ssh/authorized_keys/{name}")
        found = (f.is_file and not f.is_symlink, f.user, oct(f.mode))
        hoststate.equal(host, f"/etc/ssh/authorized_keys/{name} (regular file, owner, mode)", found,
                        (True, "root", "0o644"))


# ------------------------------------------------------------------ sshd

@HOSTS
@control("L3-CES1-03")
def test_sshd_keys_only_strong_algorithms(converged, host):
    """L3-CES1-03 encrypted remote management / L3-CES1-06 no root login: keys only, strong algorithms."""
    s = sshd_t(host)
    for key, want in (("passwordauthentication", "no"), ("kbdinteractiveauthentication", "no"),
                      ("permitrootlogin", "no"), ("authenticationmethods", "publickey")):
        hoststate.equal(host, f"sshd -T {key}", s.get(key), want)
    weak = [c for c in s["ciphers"].split(",") if "cbc" in c or "3des" in c or "arcfour" in c]
    hoststate.equal(host, "weak sshd ciphers", weak, [])
    weak = [m for m in s["macs"].split(",") if "md5" in m or m in ("hmac-sha1", "umac-64@openssh.com")]
    hoststate.equal(host, "weak sshd MACs", weak, [])
    weak = [k for k in s["kexalgorithms"].split(",")
            if "diffie-hellman-group1-sha1" in k or "diffie-hellman-group14-sha1" in k]
    hoststate.equal(host, "weak sshd key exchanges", weak, [])
    backups = [n for n in hoststate.host(host).file("/etc/ssh").listdir() if re.match(r"sshd_config\..*~$", n)]
    hoststate.expect(host, "previous sshd_config kept as a way back (/etc/ssh/sshd_config.*~)", len(backups) >= 1,
                     ">= 1 backup", "none")


@HOSTS
@control("L3-CES1-18")
def test_sshd_allows_named_people_from_management_networks_only(converged, host):
    """L3-CES1-18 management sources: AllowUsers = user@management network for jincai and this site's people."""
    hv = hostvars(host)
    allow = set(sshd_t(host)["allowusers"].split())
    people = ["jincai"] + [p["user"] for p in hv["jincai_admins"] + hv["jincai_technicians"]
                           if p["state"] == "present"]
    expected = {f"{u}@{n}" for u in people for n in hv["jincai_management_networks"]}
    if "services" in hv["jincai_functions"]:
        lans = {hostvars(h)["jincai_site"]["lan"] for h in machine_room()}
        expected |= {f"jincai-backup@{n}" for n in lans}
    assert allow == expected


def _ssh(host, user, key, *opts, cmd="id -un"):
    argv = ["ssh", "-i", key, "-o", f"UserKnownHostsFile={labmod.KNOWN_HOSTS}", "-o", "StrictHostKeyChecking=yes",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes", *opts, f"{user}@{mgmt_address(host)}", cmd]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


@HOSTS
@control("L3-CES1-03")
def test_password_ssh_login_is_refused(converged, host):
    """L3-CES1-03/L3-CES1-04: the server offers public key authentication only; password login fails."""
    res = _ssh(host, "jincai", "/dev/null", "-o", "PubkeyAuthentication=no",
               "-o", "PreferredAuthentications=password,keyboard-interactive")
    assert res.returncode == 255
    assert "Permission denied (publickey)" in res.stderr


@HOSTS
@control("L3-CES1-03")
def test_weak_cipher_is_refused(converged, host):
    """L3-CES1-03: a client offering only a CBC cipher cannot connect."""
    res = _ssh(host, "jincai", labmod.LAB_KEY, "-o", "Ciphers=aes128-cbc")
    assert res.returncode == 255 and "no matching cipher" in res.stderr, res.stderr


def _technicians(host):
    return [t for t in hostvars(host)["jincai_technicians"] if t["state"] == "present"]


@control("L3-CES1-05")
def test_technician_logs_in_at_own_county_only(converged):
    """L3-CES1-05/L3-CES1-07: a county technician logs in at their county and is refused at another county."""
    counties = by_tier("county")
    assert len(counties) >= 2
    own, other = counties[0], counties[1]
    tech = _technicians(own)[0]["user"]
    key = os.path.join(KEYS_DIR, tech)
    ok = _ssh(own, tech, key)
    assert ok.returncode == 0 and ok.stdout.strip() == tech, ok.stderr
    refused = _ssh(other, tech, key)
    assert refused.returncode == 255 and "Permission denied" in refused.stderr


@control("L3-CES1-05")
def test_province_admin_logs_in_everywhere(converged):
    """L3-CES1-05: the province administrator's key works on every machine-room server."""
    admin = hostvars(machine_room()[0])["jincai_admins"][0]["user"]
    key = os.path.join(KEYS_DIR, admin)
    failures = {h: r.stderr for h in machine_room() if (r := _ssh(h, admin, key)).returncode != 0}
    assert not failures


@control("L3-CES1-07")
def test_unlisted_technician_is_locked_not_left_behind(converged):
    """L3-CES1-07 stale accounts: an account left in the technicians group but not in the source is locked."""
    host = by_tier("county")[0]
    run_on(host, "id t999stale >/dev/null 2>&1 || useradd -m -s /bin/bash -G jincai-technicians t999stale; "
                 "usermod -p '$y$j9T$abcdefgh$0123456789012345678901234567890123456789012' t999stale", check=True)
    try:
        res = run(PLAYBOOK, inventory=LAB, args=["--limit", host, "--tags", "accounts"])
        assert res.rc == 0, _tail(res)
        h = hoststate.host(host)
        status = hoststate.read(host, "passwd -S t999stale").split()
        hoststate.equal(host, "password status of t999stale (passwd -S)", status[1], "L")
        hoststate.equal(host, "login shell of t999stale", h.user("t999stale").shell, "/usr/sbin/nologin")
        expires = hoststate.read(host, "getent shadow t999stale").split(":")[7]
        # days since 1970-01-01: a date in 1970 (what `chage -l` shows as "Account expires: ..., 1970")
        hoststate.expect(host, "account expiry of t999stale (days since 1970-01-01)",
                         expires.isdigit() and int(expires) < 365, "a day of 1970", expires or "never")
    finally:
        run_on(host, "userdel -r t999stale 2>/dev/null")


@control("L3-CES1-18")
def test_broken_sshd_setting_is_refused_before_going_live(converged):
    """L3-CES1-18 never locked out: sshd -t rejects a broken setting; the live config and logins are untouched."""
    host = by_tier("county")[0]
    before = hoststate.host(host).file("/etc/ssh/sshd_config").sha256sum
    res = run(PLAYBOOK, inventory=LAB, args=["--limit", host, "--tags", "sshd",
                                             "-e", '{"sshd_settings_extra": {"Ciphers": "no-such-cipher"}}'])
    assert res.rc != 0 and res.hosts_with("failed") == [host]
    assert "failed to validate" in res.output or "Bad SSH2 cipher" in res.output, _tail(res)
    h = hoststate.host(host)
    hoststate.equal(host, "sha256 of /etc/ssh/sshd_config after the refused run", h.file("/etc/ssh/sshd_config").sha256sum,
                    before)
    hoststate.expect(host, "ssh.service", h.service("ssh").is_running, "running", "not running")


# ------------------------------------------------------------------ firewall

def _expected_ports(host):
    hv = hostvars(host)
    tcp, udp, esp = {22}, set(), False
    if "app_server" in hv["jincai_functions"]:
        tcp |= {443} | {hv["jincai_applications"][a]["port"] for a in hv["jincai_apps"]}
    if "services" in hv["jincai_functions"]:
        tcp |= {514, 80}
        udp |= {123}
    if "ntp_server" in hv["jincai_functions"]:  # a city's time server for its counties
        udp |= {123}
    if "vpn_concentrator" in hv["jincai_functions"]:
        udp |= {500, 4500}
        esp = True
    return tcp, udp, esp


@HOSTS
@control("L3-CES1-17")
def test_firewall_default_deny_with_only_the_functions_ports(converged, host):
    """L3-CES1-17 no unneeded ports: inbound policy drop; accepted ports are exactly the host's functions'."""
    nft = nft_ruleset(host)
    hoststate.expect(host, "inbound policy of table inet jincai", "policy drop;" in nft, "policy drop", nft)
    tcp, udp, esp = _expected_ports(host)
    accepted_tcp = {int(p) for m in re.findall(r"tcp dport (\{[^}]*\}|\d+)", nft)
                    for p in re.findall(r"\d+", m)}
    accepted_udp = {int(p) for m in re.findall(r"udp dport (\{[^}]*\}|\d+)", nft)
                    for p in re.findall(r"\d+", m)}
    hoststate.equal(host, "TCP ports accepted by nft", sorted(accepted_tcp), sorted(tcp))
    hoststate.equal(host, "UDP ports accepted by nft", sorted(accepted_udp), sorted(udp))
    hoststate.equal(host, "ESP accepted by nft", "meta l4proto esp accept" in nft, esp)
    hoststate.expect(host, "nftables.service at boot", hoststate.host(host).service("nftables").is_enabled,
                     "enabled", "not enabled")


@HOSTS
@control("L3-CES1-18")
def test_firewall_ssh_only_from_management_networks(converged, host):
    """L3-CES1-18: ssh is accepted only from the management set (plus site LANs for backups on the services host)."""
    nft = nft_ruleset(host)
    ssh_rules = [l.strip() for l in nft.splitlines() if "tcp dport 22 " in l]
    hoststate.expect(host, "nft rules accepting tcp dport 22",
                     ssh_rules and all("ip saddr @management" in l or "ip saddr @ssh_extra" in l for l in ssh_rules),
                     "only from @management or @ssh_extra", ssh_rules)
    found = re.search(r"set management \{.*?elements = \{([^}]*)\}", nft, re.S)
    mgmt = found.group(1) if found else ""
    for net in hostvars(host)["jincai_management_networks"]:
        hoststate.expect(host, f"management network {net} in nft set management", net in mgmt, net, mgmt or nft)


@control("L3-CES1-18")
def test_ssh_from_outside_the_management_networks_is_dropped(converged):
    """L3-CES1-18: a budget-unit client on the VPN access segment cannot reach the concentrator's sshd."""
    vpn = inventory()["vpn_concentrators"]["hosts"][0]
    access = [i for i in hostvars(vpn)["jincai_interfaces"] if i["role"] == "vpn_access"]
    client = inventory()["budget_unit_clients"]["hosts"][0]
    if not access:
        pytest.skip("the VPN concentrator has no access-segment interface in this inventory")
    addr = access[0]["address"].split("/")[0]
    res = run_on(client, f"nc -z -w 3 {addr} 22 && echo OPEN || echo CLOSED")
    assert res.stdout.strip().endswith("CLOSED"), res.stdout + res.stderr


@HOSTS
@control("L3-CES1-17")
def test_listening_sockets_are_expected(converged, host):
    """L3-CES1-17: nothing listens on a high-risk clear-text port (21, 23, 69, 111, 512-514 on non-collectors)."""
    ports = {int(s.rsplit(":", 1)[1]) for s in hoststate.listening(host)}
    risky = {21, 23, 69, 111, 512, 513}
    if "services" not in hostvars(host)["jincai_functions"]:
        risky.add(514)
    hoststate.equal(host, "high-risk ports listening", sorted(ports & risky), [])


# ------------------------------------------------------------------ time

@HOSTS
@control("L3-CES1-13")
def test_chrony_runs_on_the_chain_from_the_source_of_truth(converged, host):
    """L3-CES1-13 accurate timestamps: chronyd runs (with -x in containers) and polls the configured chain."""
    h = hoststate.host(host)
    hoststate.expect(host, "chrony.service", h.service("chrony").is_running, "running", "not running")
    sources = hoststate.read(host, "chronyc -n sources 2>&1")
    servers = hostvars(host)["jincai_ntp_servers"]
    for server in servers:
        hoststate.expect(host, f"chrony source {server}", re.search(rf"^\^.\s+{re.escape(server)}\s", sources, re.M),
                         "a source", sources)
    if not servers:
        tracking = hoststate.read(host, "chronyc -n tracking 2>&1")
        hoststate.expect(host, "chrony local reference", "Reference ID    : 7F7F0101" in tracking
                         or "Stratum         : 10" in tracking, "local clock, stratum 10", tracking)
    opts = [l for l in h.file("/etc/default/chrony").content_string.splitlines() if "DAEMON_OPTS" in l]
    hoststate.expect(host, "chronyd options (/etc/default/chrony DAEMON_OPTS)", "-x" in "\n".join(opts), "-x", opts)
    dropin = h.file("/etc/systemd/system/chrony.service.d/jincai-container.conf")
    hoststate.expect(host, "chrony container drop-in", dropin.exists and "ConditionCapability=" in dropin.content_string,
                     "ConditionCapability= reset", dropin.content_string if dropin.exists else "no file")


def _routed():
    """True when the county LANs reach the province collector (routers configured)."""
    county = by_tier("county")[0]
    collector = hostvars(county)["jincai_province_services"]["collector"]
    return run_on(county, f"ping -c 1 -W 2 {collector}", sudo=False).returncode == 0


@pytest.fixture(scope="module")
def routed(converged):
    """A precondition that fails, not skips: the tests below need routing between sites (in the suite,
    test_00_site's site.yml configured the routers; alone, run `playbooks/routers.yml` first). A
    skip here once turned a routing regression into six quiet skips."""
    assert _routed(), "no route from the counties to the province collector: routers not configured (or broken)"
    return converged


@control("L3-CES1-13")
def test_city_clients_follow_the_province(routed):
    """L3-CES1-13: a city server synchronises to the province NTP server."""
    city = by_tier("city")[0]
    want = hostvars(city)["jincai_ntp_servers"][0]
    # chronyd backs off while a source is unreachable (before routing): ask for a burst of samples now.
    run_on(city, "chronyc -a 'burst 4/4' >/dev/null")
    deadline = time.time() + 120
    while True:
        out = hoststate.read(city, "chronyc -n sources")
        if re.search(rf"^\^\*\s+{re.escape(want)}\s", out, re.M):
            return
        assert time.time() < deadline, f"{city} does not follow {want}:\n{out}"
        time.sleep(5)


@control("L3-CES1-13")
def test_each_county_follows_its_city(routed):
    """L3-CES1-13: each county server's selected source is its city's NTP server (province as fallback)."""
    failures = {}
    counties = by_tier("county")
    for county in counties:
        run_on(county, "chronyc -a 'burst 4/4' >/dev/null")
    deadline = time.time() + 120
    pending = set(counties)
    while pending and time.time() < deadline:
        for county in sorted(pending):
            want = hostvars(county)["jincai_ntp_servers"][0]
            out = hoststate.read(county, "chronyc -n sources")
            if re.search(rf"^\^\*\s+{re.escape(want)}\s", out, re.M):
                pending.discard(county)
            else:
                failures[county] = out
        if pending:
            time.sleep(5)
    silent_cities = set()
    for county in sorted(pending):
        city, province = hostvars(county)["jincai_ntp_servers"][:2]
        out = failures[county]
        # The fallback works: the province is selected while the city's server is silent.
        assert re.search(rf"^\^\*\s+{re.escape(province)}\s", out, re.M), f"{county} has no usable source:\n{out}"
        reach = re.search(rf"^\^.\s+{re.escape(city)}\s+\d+\s+\d+\s+(\d+)\s", out, re.M)
        if reach and reach.group(1) == "0":
            silent_cities.add(city)
    # No xfail: a city time server that does not answer is a broken chain (the fallback above still
    # keeps the counties on time, which is why it is checked first, but the design is city first).
    assert not silent_cities, f"city NTP servers {sorted(silent_cities)} do not answer NTP (chrony_serve on the city)"
    assert not pending, {c: failures[c] for c in pending}


# ------------------------------------------------------------------ logging and audit

@HOSTS
@control("L3-CES1-14")
def test_rsyslog_forwards_or_collects(converged, host):
    """L3-CES1-14 audit records protected: rsyslog runs, config valid, forwards over TCP (collector: receives)."""
    h = hoststate.host(host)
    hoststate.expect(host, "rsyslog.service", h.service("rsyslog").is_running, "running", "not running")
    dropins = h.file("/etc/rsyslog.d").listdir()
    want = "10-jincai-collector.conf" if host == services_host() else "60-jincai-forward.conf"
    hoststate.expect(host, "/etc/rsyslog.d", want in dropins, want, dropins)
    for path in ("/var/log/syslog", "/var/log/auth.log"):
        log = h.file(path)
        if log.exists:
            hoststate.expect(host, f"mode of {path} (no group write, nothing for others)", log.mode & 0o027 == 0,
                             "& 0o027 == 0", oct(log.mode))


def _wait_for_line(marker, timeout=60):
    collector = services_host()
    deadline = time.time() + timeout
    while True:
        found = hoststate.read(collector, "grep -rl -- %s /var/log/remote/ || true", marker).strip()
        if found:
            return found
        if time.time() > deadline:
            return ""
        time.sleep(2)


@control("L3-SMC1-10")
def test_province_log_line_reaches_the_collector(converged):
    """L3-SMC1-10 central log collection: a line logged at a province server is stored at the collector."""
    host = next(h for h in by_tier("province") if h != services_host())
    marker = f"jincai-baseline-{uuid.uuid4().hex}"
    run_on(host, f"logger -t baseline-test {marker}", check=True)
    found = _wait_for_line(marker)
    assert found.startswith(f"/var/log/remote/{host}/"), found


@control("L3-SMC1-10")
def test_collector_keeps_logs_180_days(converged):
    """L3-SMC1-10: collected logs are expired after >= 180 days only (retention timer), files 0640 root:adm."""
    svc = services_host()
    h = hoststate.host(svc)
    hoststate.expect(svc, "jincai-log-retention.timer at boot", h.service("jincai-log-retention.timer").is_enabled,
                     "enabled", "not enabled")
    unit = hoststate.read(svc, "systemctl cat jincai-log-retention.service")
    days = [int(d) for d in re.findall(r"-mtime \+(\d+) -delete", unit)]
    hoststate.expect(svc, "retention of jincai-log-retention.service (find -mtime +N -delete)",
                     days and min(days) >= 180, ">= 180 days", days or unit)
    remote = h.file("/var/log/remote")
    hoststate.equal(svc, "/var/log/remote (mode, owner, group)", (oct(remote.mode), remote.user, remote.group),
                    ("0o750", "root", "adm"))


@control("L3-SMC1-10")
def test_county_log_line_reaches_the_collector(routed):
    """L3-SMC1-10: a line logged at a county server is stored at the province collector."""
    for host in by_tier("county"):
        marker = f"jincai-baseline-{uuid.uuid4().hex}"
        run_on(host, f"logger -t baseline-test {marker}", check=True)
        assert _wait_for_line(marker).startswith(f"/var/log/remote/{host}/"), host


@control("L3-SMC1-10")
def test_lines_logged_while_the_wan_is_down_arrive_after_it_returns(routed):
    """L3-SMC1-10 nothing lost: lines logged at a county while its WAN link is down arrive once it is back."""
    county = by_tier("county")[0]
    router = next(h for h in inventory()["routers"]["hosts"]
                  if hostvars(h)["jincai_site_code"] == hostvars(county)["jincai_site_code"])
    uplink = next(i["name"] for i in hostvars(router)["jincai_interfaces"] if i["role"] == "uplink")
    netns = lab_state()["hosts"][router]["netns"]
    markers = [f"jincai-wan-{uuid.uuid4().hex}-{n}" for n in range(5)]
    subprocess.run(["ip", "-n", netns, "link", "set", uplink, "down"], check=True)
    try:
        assert run_on(county, f"ping -c 1 -W 2 {hostvars(county)['jincai_province_services']['collector']}",
                      sudo=False).returncode != 0, "the WAN link did not go down"
        for marker in markers:
            run_on(county, f"logger -t baseline-test {marker}", check=True)
            time.sleep(1)
        time.sleep(5)
    finally:
        subprocess.run(["ip", "-n", netns, "link", "set", uplink, "up"], check=True)
        # the cut withdrew the county's routes: every site LAN back in every router's table before the next test
        unconverged = wait_routes_converged()
    missing = [m for m in markers if not _wait_for_line(m, timeout=120)]
    assert not missing, f"lines lost while the WAN was down: {missing}"
    assert not unconverged, f"site LANs missing from routing tables after the link came back: {unconverged}"


@HOSTS
@control("L3-CES1-12")
def test_audit_rules_installed_and_compiled(converged, host):
    """L3-CES1-12/L3-CES1-15 audit: rules for identity, sudo, privileged commands compiled; immutable (-e 2)."""
    check = (hoststate.run(host, "augenrules --check 2>&1").stdout.splitlines() or [""])[0]
    hoststate.expect(host, "augenrules --check", "No change" in check, "No change", check)
    rules = hoststate.host(host).file("/etc/audit/audit.rules").content_string
    for needle in ("-w /etc/passwd -p wa -k identity", "-w /etc/sudoers -p wa -k scope",
                   "-F path=/usr/bin/sudo -F perm=x", "-k privileged", "-e 2"):
        hoststate.expect(host, "/etc/audit/audit.rules", needle in rules, needle, "not there")


@HOSTS
@control("L3-CES1-12")
def test_auditd_runs_or_its_limitation_is_recorded(converged, host):
    """L3-CES1-12: auditd runs where the kernel audit interface answers; otherwise the reason is on the host."""
    h = hoststate.host(host)
    if h.service("auditd").is_running:
        status = hoststate.run(host, "auditctl -s 2>&1 | head -3").stdout
        hoststate.expect(host, "auditctl -s", "enabled" in status, "enabled", status)
    else:
        note = h.file("/etc/audit/JINCAI-NOT-RUNNING")
        found = note.content_string if note.exists else "auditd not running, no /etc/audit/JINCAI-NOT-RUNNING"
        hoststate.expect(host, "why auditd does not run", "Kernel audit is only reachable from the initial network "
                         "namespace" in found, "the kernel audit limitation recorded", found)


# ------------------------------------------------------------------ integrity and backups

@HOSTS
@control("L3-CES1-21")
def test_aide_database_and_daily_check(converged, host):
    """L3-CES1-21 intrusion detection: the AIDE database exists and the daily check timer is active."""
    h = hoststate.host(host)
    names = h.file("/var/lib/aide").listdir()
    hoststate.expect(host, "/var/lib/aide", any("aide.db.gz" in n for n in names), "aide.db.gz", names)
    timer = h.service("jincai-aide-check.timer")
    hoststate.equal(host, "jincai-aide-check.timer (enabled, active)", (timer.is_enabled, timer.is_running),
                    (True, True))


@control("L3-CES1-21")
def test_aide_detects_a_planted_binary(converged):
    """L3-CES1-21: a file planted under /usr/local/sbin is reported by the AIDE check."""
    host = by_tier("county")[0]
    try:
        run_on(host, "echo '#!/bin/sh' > /usr/local/sbin/jincai-planted; chmod 755 /usr/local/sbin/jincai-planted",
               check=True)
        res = run_on(host, "aide --config /etc/aide/aide.conf --check", timeout=300)
        assert res.returncode not in (0, 14, 15, 16, 17, 18, 19), res.stdout[-2000:] + res.stderr
        assert res.returncode & 1 and "/usr/local/sbin/jincai-planted" in res.stdout
    finally:
        run_on(host, "rm -f /usr/local/sbin/jincai-planted")


@HOSTS
@control("L3-CES1-28")
def test_local_backup_and_restore_test(converged, host):
    """L3-CES1-28 backup and recovery: a local archive of /etc (mode 0600) restores byte for byte."""
    res = run_on(host, "jincai-backup --local && jincai-backup restore-test", timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "restore test OK" in res.stdout
    newest = hoststate.read(host, "ls -1t /var/backups/jincai/*.tar.gz | head -n 1").strip()
    hoststate.equal(host, f"mode of the newest archive {newest}", oct(hoststate.host(host).file(newest).mode), "0o600")


@control("L3-CES1-29")
def test_backup_is_copied_to_the_province_services_host(converged):
    """L3-CES1-29 off-site copy: a province server's backup lands on the services host (write-only rrsync)."""
    host = next(h for h in by_tier("province") if h != services_host())
    res = run_on(host, "jincai-backup", timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    name = re.search(r"local backup (\S+)", res.stdout).group(1).rsplit("/", 1)[1]
    copied = hoststate.read(services_host(), f"cd /srv/backups/{host} && sha256sum -c %s", f"{name}.sha256")
    hoststate.expect(services_host(), f"sha256sum -c of /srv/backups/{host}/{name}", f"{name}: OK" in copied,
                     f"{name}: OK", copied)


@control("L3-CES1-29")
def test_county_backup_is_copied_to_the_province(routed):
    """L3-CES1-29: a county server's backup crosses the WAN to the province services host."""
    host = by_tier("county")[0]
    res = run_on(host, "jincai-backup", timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    name = re.search(r"local backup (\S+)", res.stdout).group(1).rsplit("/", 1)[1]
    copied = hoststate.read(services_host(), f"cd /srv/backups/{host} && sha256sum -c %s", f"{name}.sha256")
    hoststate.expect(services_host(), f"sha256sum -c of /srv/backups/{host}/{name}", f"{name}: OK" in copied,
                     f"{name}: OK", copied)


def _fresh_login(host):
    """True when a new SSH login (no multiplexed master) as the automation account succeeds."""
    base = labmod.ssh_base(mgmt_address(host))
    argv = base[:1] + ["-o", "ControlPath=none", "-o", "ConnectTimeout=5"] + base[1:] + ["true"]
    return subprocess.run(argv, capture_output=True, timeout=30, check=False).returncode == 0


@control("L3-CES1-03")
def test_sshd_change_that_locks_ansible_out_is_rolled_back(converged):
    """L3-CES1-03 way back: an sshd_config that passes sshd -t but locks Ansible out (sshd moved to
    another port) fails the run at the re-login proof, and the armed timer puts the previous file back:
    a fresh login works again and the next run changes nothing."""
    host = by_tier("county")[0]
    # 25 s: the re-login proof fails within seconds of the reload (port 22 refuses at once); a rollback
    # that fired before it would let the proof pass and fail this test, never hide a defect
    bad = run(PLAYBOOK, inventory=LAB, args=["--limit", host, "--tags", "sshd", "-e", "sshd_port=2222",
                                              "-e", "sshd_rollback_seconds=25"])
    try:
        assert bad.rc != 0 and bad.hosts_with("changed") == [host], _tail(bad)
        assert "Prove the automation account can still log in" in bad.output
        deadline = time.monotonic() + 120
        while not _fresh_login(host) and time.monotonic() < deadline:
            time.sleep(2)
        assert _fresh_login(host), "sshd rollback did not restore a config Ansible can log in with"
        h = hoststate.host(host)
        ports = [l.split() for l in h.file("/etc/ssh/sshd_config").content_string.splitlines() if l.startswith("Port")]
        hoststate.equal(host, "Port lines of /etc/ssh/sshd_config after the rollback", ports, [["Port", "22"]])
        timer = hoststate.run(host, "systemctl is-active jincai-sshd-rollback.timer").stdout.strip()
        hoststate.equal(host, "jincai-sshd-rollback.timer after the rollback", timer, "inactive")
        last = hoststate.read(host, "journalctl -q -t jincai-sshd --no-pager | tail -1")
        hoststate.expect(host, "last jincai-sshd journal line", "rolled back" in last, "rolled back", last.strip())
    finally:
        again = run(PLAYBOOK, inventory=LAB, args=["--limit", host, "--tags", "sshd"])
    assert again.rc == 0 and again.total("changed") == 0, again.changed_tasks()


@control("L3-CES1-18")
def test_firewall_rollback_timer_restores_the_previous_rules(converged):
    """L3-CES1-18 way back: the armed rollback timer puts the previous firewall file back and loads it."""
    host = by_tier("county")[-1]
    script = (
        "set -e; cp -p /etc/nftables.conf /root/nft-good; "
        "sed 's/comment \"nginx\"/comment \"nginx\"\\n        tcp dport 9 accept comment \"rollback-probe\"/' "
        "/root/nft-good > /etc/nftables.conf; nft -f /etc/nftables.conf; nft list table inet jincai | grep -c rollback-probe; "
        "systemd-run --quiet --unit=jincai-firewall-rollback-test --on-active=2 --timer-property=AccuracySec=1s /usr/local/sbin/jincai-firewall-rollback /root/nft-good; "
        "for i in $(seq 1 45); do nft list table inet jincai | grep -q rollback-probe || break; sleep 1; done; "
        "nft list table inet jincai | grep -c rollback-probe || true; cmp /etc/nftables.conf /root/nft-good && echo SAME; "
        "systemctl stop jincai-firewall-rollback-test.timer 2>/dev/null || true; rm -f /root/nft-good")
    res = run_on(host, script, timeout=120)
    assert res.stdout.split() == ["1", "0", "SAME"], res.stdout + res.stderr
