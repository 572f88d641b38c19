"""Unit tests of the compliance checks, drift mapping, report model and renderers (pure: fixture facts)."""

import copy
import json
import os
import re
import xml.etree.ElementTree as ET

import pytest
import yaml

from jincai.compliance import checks, model, report

CATALOGUE = model.load_controls()
EXP = CATALOGUE["expected"]

NFT_GOOD = {"nftables": [
    {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
    {"table": {"family": "inet", "name": "filter", "handle": 1}},
    {"set": {"family": "inet", "name": "mgmt", "table": "filter", "type": "ipv4_addr", "handle": 2,
             "flags": ["interval"], "elem": [{"prefix": {"addr": "198.18.33.0", "len": 24}},
                                             {"prefix": {"addr": "198.19.0.0", "len": 24}}]}},
    {"chain": {"family": "inet", "table": "filter", "name": "input", "handle": 1, "type": "filter",
               "hook": "input", "prio": 0, "policy": "drop"}},
    {"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 3, "expr": [
        {"match": {"op": "==", "left": {"meta": {"key": "iif"}}, "right": "lo"}}, {"accept": None}]}},
    {"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 4, "expr": [
        {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}},
        {"accept": None}]}},
    {"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 5, "expr": [
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "@mgmt"}},
        {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 22}},
        {"accept": None}]}},
    {"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 9, "expr": [
        {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                   "right": {"set": [8101, 8102, 8103, 8104]}}}, {"accept": None}]}},
    {"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 10, "expr": [
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "protocol"}}, "right": "icmp"}},
        {"accept": None}]}},
    {"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 11, "expr": [
        {"log": {"prefix": "drop "}}, {"counter": {"packets": 0, "bytes": 0}}, {"drop": None}]}},
]}

CTX = {"site_code": "220202", "functions": ["app_server"], "apps": ["budget", "treasury"],
       "applications": {"budget": {"port": 8101}, "treasury": {"port": 8102}}, "addresses": ["198.18.33.10", "198.19.0.29"],
       "management_networks": ["198.19.0.0/24", "198.18.33.0/24"], "ntp_servers": ["198.18.32.1", "198.18.0.11"],
       "province_services": {"collector": "198.18.0.11", "ntp": "198.18.0.11"}, "automation_user": "jincai",
       "admins": [{"user": "jcadmin", "state": "present", "roles": ["system"]},
                  {"user": "jcaudit", "state": "present", "roles": ["audit"]}],
       "technicians": [{"user": "t220202a", "state": "present"}, {"user": "t220202b", "state": "absent"}]}

SSHD = {"permitrootlogin": ["no"], "maxauthtries": ["3"], "clientaliveinterval": ["300"],
        "clientalivecountmax": ["2"], "passwordauthentication": ["no"], "authenticationmethods": ["publickey"],
        "ciphers": ["chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-ctr"],
        "macs": ["hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com"],
        "kexalgorithms": ["sntrup761x25519-sha512@openssh.com,curve25519-sha256,diffie-hellman-group16-sha512"],
        "banner": ["/etc/issue.net"],
        "allowusers": ["jincai@198.19.0.0/24", "jincai@198.18.33.0/24", "jcadmin@198.19.0.0/24",
                       "t220202a@198.18.33.0/24"]}


def _svc(*names):
    return {f"{n}.service": {"load": "loaded", "active": "active", "sub": "running", "enabled": "enabled"}
            for n in names}


NOW = 1796000000
BANNER = "吉林省财政厅金财工程专网：仅限授权人员使用。\nauthorised users only.\n"
#: the kernel parameters roles/base sets (base_sysctl)
with open(os.path.join(os.path.dirname(__file__), "..", "..", "roles", "base", "defaults", "main.yml"),
          encoding="utf-8") as _fh:
    SYSCTL = yaml.safe_load(_fh)["base_sysctl"]


def sudo_list(user, *rules):
    """``sudo -l -U USER`` output with ``rules`` (sudo 1.9's format)."""
    return (f"Matching Defaults entries for {user} on 220202-app1:\n    env_reset, mail_badpass, use_pty,\n"
            f"    logfile=/var/log/sudo.log, timestamp_timeout=5\n\n"
            f"User {user} may run the following commands on 220202-app1:\n"
            + "".join(f"    {r}\n" for r in rules))


def server_facts():
    """Facts of a compliant county app server (what the baseline roles provision)."""
    return {
        "schema": 1, "hostname": "220202-app1",
        "files": {
            "/etc/login.defs": "# x\nPASS_MAX_DAYS\t\t90\nPASS_MIN_DAYS\t\t2\nPASS_WARN_AGE\t\t7\n"
                               "ENCRYPT_METHOD\t\tYESCRYPT\nYESCRYPT_COST_FACTOR\t6\n",
            "/etc/issue": BANNER, "/etc/issue.net": BANNER,
            "/etc/security/limits.d/60-jincai-core.conf": "*\thard\tcore\t0\n*\tsoft\tcore\t0\n",
            "/etc/modprobe.d/60-jincai-protocols.conf": "".join(f"install {m} /bin/false\nblacklist {m}\n"
                                                                for m in ("dccp", "sctp", "rds", "tipc")),
            "/etc/sysctl.d/60-jincai-hardening.conf": "".join(f"{k} = {v}\n" for k, v in sorted(SYSCTL.items())),
            "/etc/security/pwquality.conf": "minlen = 8\nminclass = 4\ndcredit = -1\nucredit = -1\n",
            "/etc/security/faillock.conf": "deny = 5\nunlock_time = 900\naudit\n",
            "/etc/pam.d/common-auth": "auth requisite pam_faillock.so preauth\nauth [success=2 default=ignore] "
                                      "pam_unix.so\nauth [default=die] pam_faillock.so authfail\n",
            "/etc/pam.d/common-password": "password requisite pam_pwquality.so retry=3\npassword [success=1 "
                                          "default=ignore] pam_unix.so obscure use_authtok yescrypt rounds=6\n",
            "/etc/profile.d/jincai-tmout.sh": "if [ -z \"${TMOUT:-}\" ]; then\n    TMOUT=600\n    readonly TMOUT\nfi\n",
            "/etc/sudoers": "Defaults env_reset\nroot ALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n",
            "/etc/sudoers.d/jincai": "%jincai-admins ALL=(ALL:ALL) ALL\n",
            "/etc/sudoers.d/automation": "jincai ALL=(ALL) NOPASSWD: ALL\n",
            "/etc/rsyslog.d/90-forward.conf": 'action(type="omfwd" target="198.18.0.11" port="514" protocol="tcp")\n',
            "/etc/chrony/chrony.conf": "server 198.18.32.1 iburst\nserver 198.18.0.11 iburst\n",
            "/etc/audit/rules.d/50-jincai.rules": "-w /etc/passwd -p wa -k identity\n",
            checks.BACKUP_STATUS: json.dumps({"time": NOW - 3600, "offsite_time": NOW - 3600, "offsite": "ok",
                                              "archive": "220202-app1-x.tar.gz", "databases": ["jincai_budget"]}),
        },
        "stat": {"/var/log/auth.log": {"mode": "0640", "uid": 0, "gid": 4, "size": 1},
                 "/var/log/syslog": {"mode": "0640", "uid": 0, "gid": 4, "size": 1},
                 "/var/lib/aide/aide.db": {"mode": "0600", "uid": 0, "gid": 0, "size": 1},
                 "/var/cache/cracklib/cracklib_dict.pwd": {"mode": "0644", "uid": 0, "gid": 0, "size": 1}},
        "accounts": [
            {"user": "root", "uid": 0, "gid": 0, "home": "/root", "shell": "/bin/bash", "password": "locked"},
            {"user": "daemon", "uid": 1, "gid": 1, "home": "/", "shell": "/usr/sbin/nologin", "password": "locked"},
            {"user": "jincai", "uid": 1000, "gid": 1000, "home": "/home/jincai", "shell": "/bin/bash",
             "password": "locked"},
            {"user": "jcadmin", "uid": 1001, "gid": 1001, "home": "/home/jcadmin", "shell": "/bin/bash",
             "password": "set", "max_days": "90", "scheme": "yescrypt"},
            {"user": "t220202a", "uid": 1002, "gid": 1002, "home": "/home/t220202a", "shell": "/bin/bash",
             "password": "set", "max_days": "90"},
            {"user": "t220202b", "uid": 1003, "gid": 1003, "home": "/home/t220202b", "shell": "/usr/sbin/nologin",
             "password": "locked"},
            {"user": "nobody", "uid": 65534, "gid": 65534, "home": "/", "shell": "/usr/sbin/nologin",
             "password": "locked"},
        ],
        "sshd": {"rc": 0, "err": "", "config": copy.deepcopy(SSHD)},
        "sudo": {"jincai": {"rc": 0, "out": sudo_list("jincai", "(ALL) NOPASSWD: ALL")},
                 "jcadmin": {"rc": 0, "out": sudo_list("jcadmin", "(ALL : ALL) ALL")},
                 "jcaudit": {"rc": 0, "out": sudo_list("jcaudit", "(root) /usr/local/sbin/jincai-audit-read")},
                 "t220202a": {"rc": 0, "out": sudo_list(
                     "t220202a", "(root) /usr/bin/systemctl restart jincai-budget.service, "
                     "/usr/bin/systemctl --no-pager status nginx.service, "
                     "/usr/bin/journalctl --no-pager -n 500 -u nginx.service")}},
        "virt": "none",
        "services": dict(_svc("ssh", "rsyslog", "chrony", "nftables", "nginx", "postgresql", "auditd", "jincai-budget"),
                         **{f"{t}.timer": {"load": "loaded", "active": "active", "sub": "waiting", "enabled": "enabled"}
                            for t in ("jincai-aide-check", "jincai-backup")}),
        "listening": [{"proto": "tcp", "address": "0.0.0.0", "port": 22, "process": 'users:(("sshd",pid=1,fd=3))'},
                      {"proto": "tcp", "address": "0.0.0.0", "port": 8101, "process": ""},
                      {"proto": "tcp", "address": "127.0.0.1", "port": 9999, "process": ""}],
        "nft": copy.deepcopy(NFT_GOOD),
        "packages": ["openssh-server", "nftables"],
        "sysctl": {k: str(v) for k, v in SYSCTL.items()},
        "modules": ["nf_tables", "ext4"],
        "manager": {"DefaultLimitCORE": "0"},
        "homes": {"jincai": {"mode": "0755", "uid": 1000, "gid": 1000, "size": 1},
                  "jcadmin": {"mode": "0750", "uid": 1001, "gid": 1001, "size": 1},
                  "t220202a": {"mode": "0700", "uid": 1002, "gid": 1002, "size": 1}},
        "loose_logs": {"/var/log/wtmp": "0664", "/var/log/lastlog": "0664"},
        "collected_at": NOW,
    }


ROUTER_OK = """frr version 8.4.4
frr defaults traditional
hostname 220202-rtr
log syslog informational
service integrated-vtysh-config
!
interface eth1
 ip ospf area 0.0.0.0
exit
!
access-list vty-mgmt seq 5 permit 198.19.0.0/24
access-list vty-mgmt seq 10 permit 198.18.33.0/24
access-list vty-mgmt seq 15 deny any
!
line vty
 exec-timeout 10 0
 access-class vty-mgmt
exit
!
end
"""
ROUTER_CTX = {"site_code": "220202", "functions": ["router"], "platform": "frr",
              "management_networks": ["198.19.0.0/24", "198.18.33.0/24"]}


def failed(results):
    return {(r.check, r.control) for r in results if not r.passed}


# ---------------------------------------------------------------- server checks

def test_compliant_server_passes_every_check():
    results = checks.evaluate_server(server_facts(), CTX, EXP)
    assert failed(results) == set(), [r for r in results if not r.passed]
    assert len(results) > 20


@pytest.mark.parametrize("mutate, check_id, control", [
    (lambda f: f["sshd"]["config"].update(permitrootlogin=["yes"]), "access.root_login", "L3-CES1-06"),
    (lambda f: f["sshd"]["config"].update(maxauthtries=["10"]), "ssh.session_limits", "L3-CES1-02"),
    (lambda f: f["sshd"]["config"].update(clientaliveinterval=["0"]), "ssh.session_limits", "L3-CES1-02"),
    (lambda f: f["sshd"]["config"].update(ciphers=["aes128-cbc,aes256-ctr"]), "ssh.crypto", "L3-CES1-03"),
    (lambda f: f["sshd"]["config"].update(macs=["hmac-sha1"]), "ssh.crypto", "L3-CES1-03"),
    (lambda f: f["sshd"]["config"].update(allowusers=["jincai"]), "access.management_sources", "L3-CES1-18"),
    (lambda f: f["sshd"]["config"].pop("allowusers"), "access.management_sources", "L3-CES1-18"),
    (lambda f: f["sshd"]["config"].update(allowusers=["jincai@0.0.0.0/0"]), "access.management_sources",
     "L3-CES1-18"),
    (lambda f: f["accounts"][3].update(password="empty"), "auth.empty_passwords", "L3-CES1-01"),
    (lambda f: f["accounts"].append({"user": "toor", "uid": 0, "gid": 0, "home": "/", "shell": "/bin/sh",
                                     "password": "locked"}), "auth.uid0", "L3-CES1-01"),
    (lambda f: f["accounts"][4].update(max_days="99999"), "auth.account_ageing", "L3-CES1-01"),
    (lambda f: f["files"].update({"/etc/login.defs": "PASS_MAX_DAYS 99999\nPASS_MIN_DAYS 0\nPASS_WARN_AGE 7\n"}),
     "auth.password_ageing", "L3-CES1-01"),
    (lambda f: f["files"].update({"/etc/security/pwquality.conf": "minlen = 6\n"}), "auth.password_quality",
     "L3-CES1-01"),
    # dictcheck (on unless set off) without cracklib's dictionary: every new password is refused
    (lambda f: f["stat"].update({"/var/cache/cracklib/cracklib_dict.pwd": None}), "auth.password_quality",
     "L3-CES1-01"),
    (lambda f: f["files"].update({"/etc/security/faillock.conf": "deny = 10\n"}), "auth.lockout", "L3-CES1-02"),
    (lambda f: f["files"].pop("/etc/profile.d/jincai-tmout.sh"), "auth.idle_timeout", "L3-CES1-02"),
    (lambda f: f["files"].update({"/etc/sudoers.d/x": "t220202a ALL=(ALL) NOPASSWD: ALL\n"}), "ssh.two_factor",
     "L3-CES1-04"),
    (lambda f: f["files"].update({"/etc/sudoers.d/x": "ALL ALL=(ALL) ALL\n"}), "access.sudo", "L3-CES1-08"),
    (lambda f: f["sudo"]["jcaudit"].update(out=sudo_list("jcaudit", "(ALL : ALL) ALL")), "access.sudo_roles",
     "L3-CES1-08"),
    (lambda f: f["sudo"]["jcaudit"].update(out=sudo_list("jcaudit", "(root) /usr/local/sbin/jincai-audit-read",
                                                        "(root) /usr/bin/vi /var/log/audit/audit.log")),
     "access.sudo_roles", "L3-CES1-08"),
    (lambda f: f["sudo"]["t220202a"].update(out=sudo_list("t220202a", "(root) /usr/bin/systemctl")),
     "access.sudo_roles", "L3-CES1-08"),
    (lambda f: f["sudo"]["t220202a"].update(out=sudo_list("t220202a", "(root) NOPASSWD: /bin/bash")),
     "access.sudo_roles", "L3-CES1-08"),
    (lambda f: f["sudo"]["t220202a"].update(out=sudo_list("t220202a", "(ALL) /usr/bin/systemctl restart x.service")),
     "access.sudo_roles", "L3-CES1-08"),
    (lambda f: f["sudo"]["t220202a"].update(out=sudo_list("t220202a", "(root) /usr/bin/systemctl stop rsyslog.service")),
     "access.sudo_roles", "L3-CES1-08"),
    (lambda f: f["sudo"].update(stranger={"rc": 0, "out": sudo_list("stranger", "(root) /usr/bin/journalctl "
                                                                   "--no-pager -n 5 -u x")}),
     "access.sudo_roles", "L3-CES1-08"),
    (lambda f: f["sudo"]["jcaudit"].update(rc=1, out="", err="sudo: unable to resolve host"), "access.sudo_roles",
     "L3-CES1-08"),
    (lambda f: f["files"].update({"/etc/issue.net": "Debian GNU/Linux 12\n"}), "access.banner", "L3-CES1-05"),
    (lambda f: f["sshd"]["config"].update(banner=["none"]), "access.banner", "L3-CES1-05"),
    (lambda f: f["manager"].update(DefaultLimitCORE="infinity"), "hardening.core_dumps", "L3-CES1-31"),
    (lambda f: f["files"].pop("/etc/security/limits.d/60-jincai-core.conf"), "hardening.core_dumps", "L3-CES1-31"),
    (lambda f: f["sysctl"].update({"fs.suid_dumpable": "2"}), "hardening.core_dumps", "L3-CES1-31"),
    (lambda f: f["sysctl"].update({"net.ipv4.conf.all.accept_redirects": "1"}), "hardening.kernel_network",
     "L3-CES1-17"),
    (lambda f: f["sysctl"].update({"kernel.randomize_va_space": "0"}), "hardening.kernel_memory", "L3-CES1-20"),
    (lambda f: (f.update(virt="systemd-nspawn"), f["files"].update({"/etc/sysctl.d/60-jincai-hardening.conf": ""})),
     "hardening.kernel_memory", "L3-CES1-20"),
    (lambda f: f["modules"].append("sctp"), "hardening.protocols", "L3-CES1-16"),
    (lambda f: f["files"].update({"/etc/modprobe.d/60-jincai-protocols.conf": "blacklist dccp\n"}),
     "hardening.protocols", "L3-CES1-16"),
    (lambda f: f["files"].update({"/etc/pam.d/common-password": "password [success=1 default=ignore] pam_unix.so "
                                                               "obscure md5\n"}), "auth.password_hashing", "L3-CES1-27"),
    (lambda f: f["files"].update({"/etc/login.defs": "PASS_MAX_DAYS 90\nPASS_MIN_DAYS 2\nPASS_WARN_AGE 7\n"
                                                    "ENCRYPT_METHOD YESCRYPT\nYESCRYPT_COST_FACTOR 3\n"}),
     "auth.password_hashing", "L3-CES1-27"),
    (lambda f: f["accounts"][3].update(scheme="md5"), "auth.password_hashing", "L3-CES1-27"),
    (lambda f: f["homes"]["t220202a"].update(mode="0755"), "access.home_permissions", "L3-CES1-10"),
    (lambda f: f["loose_logs"].update({"/var/log/apt/history.log": "0644"}), "audit.log_permissions", "L3-CES1-14"),
    (lambda f: f["accounts"][0].update(password="set", max_days="99999"), "auth.account_ageing", "L3-CES1-01"),
    (lambda f: f["files"].pop(checks.BACKUP_STATUS), "backup.offsite", "L3-CES1-29"),
    (lambda f: f.update(collected_at=NOW + 26 * 3600), "backup.offsite", "L3-CES1-29"),
    (lambda f: f["files"].update({checks.BACKUP_STATUS: json.dumps({"time": NOW, "offsite_time": 0,
                                                                     "offsite": "failed"})}),
     "backup.offsite", "L3-CES1-29"),
    (lambda f: f["files"].update({checks.BACKUP_STATUS: "{"}), "backup.offsite", "L3-CES1-29"),
    (lambda f: f["accounts"][5].update(shell="/bin/bash"), "access.accounts", "L3-CES1-07"),
    (lambda f: f["accounts"].append({"user": "admin", "uid": 1010, "gid": 1010, "home": "/", "shell": "/bin/bash",
                                     "password": "set", "max_days": "90"}), "access.accounts", "L3-CES1-07"),
    (lambda f: f["packages"].append("telnetd"), "ssh.no_plaintext", "L3-CES1-03"),
    (lambda f: f["listening"].append({"proto": "tcp", "address": "0.0.0.0", "port": 23, "process": ""}),
     "ssh.no_plaintext", "L3-CES1-03"),
    (lambda f: f["listening"].append({"proto": "tcp", "address": "0.0.0.0", "port": 3306, "process": ""}),
     "ports.listening", "L3-CES1-17"),
    # township's port (8104): an application of the catalogue this app server does not run
    (lambda f: f["listening"].append({"proto": "tcp", "address": "0.0.0.0", "port": 8104, "process": ""}),
     "ports.listening", "L3-CES1-17"),
    (lambda f: f["services"]["rsyslog.service"].update(active="inactive"), "services.rsyslog", "L3-SMC1-10"),
    (lambda f: f["services"]["chrony.service"].update(active="failed"), "services.chrony", "L3-CES1-13"),
    (lambda f: f["services"].pop("nginx.service"), "services.nginx", "L3-SMC1-09"),
    (lambda f: f["services"]["jincai-budget.service"].update(active="inactive"), "services.jincai-budget",
     "L3-SMC1-09"),
    (lambda f: f["services"]["jincai-backup.timer"].update(active="inactive"), "services.jincai-backup.timer",
     "L3-CES1-28"),
    (lambda f: f["services"]["auditd.service"].update(active="inactive"), "audit.auditd", "L3-CES1-12"),
    (lambda f: (f.update(virt="systemd-nspawn"), f["files"].pop("/etc/audit/rules.d/50-jincai.rules")),
     "audit.auditd", "L3-CES1-12"),
    (lambda f: f["files"].pop("/etc/rsyslog.d/90-forward.conf"), "audit.log_forwarding", "L3-SMC1-10"),
    (lambda f: f["stat"].update({"/var/log/auth.log": {"mode": "0644", "uid": 0, "gid": 0, "size": 1}}),
     "audit.log_permissions", "L3-CES1-14"),
    (lambda f: f["files"].update({"/etc/chrony/chrony.conf": "pool 2.debian.pool.ntp.org iburst\n"}),
     "time.sources", "L3-CES1-13"),
    (lambda f: f["stat"].pop("/var/lib/aide/aide.db"), "integrity.aide", "L3-CES1-21"),
    (lambda f: f.update(nft={"error": "Operation not permitted"}), "firewall.default_deny", "L3-CES1-17"),
    (lambda f: f["nft"]["nftables"][3]["chain"].update(policy="accept"), "firewall.default_deny", "L3-CES1-17"),
    (lambda f: f["services"]["nftables.service"].update(enabled="disabled"), "services.nftables_enabled",
     "L3-CES1-17"),
    (lambda f: f["nft"]["nftables"].insert(4, {"rule": {
        "family": "inet", "table": "filter", "chain": "input", "handle": 50,
        "expr": [{"counter": None}, {"accept": None}]}}), "firewall.default_deny", "L3-CES1-17"),
    (lambda f: f["nft"]["nftables"].insert(4, {"rule": {
        "family": "inet", "table": "filter", "chain": "input", "handle": 51,
        "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 22}},
                 {"accept": None}]}}), "firewall.management_sources", "L3-CES1-18"),
    (lambda f: f["nft"]["nftables"].insert(4, {"rule": {
        "family": "inet", "table": "filter", "chain": "input", "handle": 52,
        "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                            "right": {"prefix": {"addr": "10.0.0.0", "len": 8}}}},
                 {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                            "right": {"set": [22, 443]}}}, {"accept": None}]}}),
     "firewall.management_sources", "L3-CES1-18"),
])
def test_each_violation_fails_its_check_with_its_control(mutate, check_id, control):
    facts = server_facts()
    mutate(facts)
    assert (check_id, control) in failed(checks.evaluate_server(facts, CTX, EXP))


def test_ssh_accept_hidden_in_a_jumped_to_chain_is_found():
    facts = server_facts()
    nft = facts["nft"]["nftables"]
    nft.append({"chain": {"family": "inet", "table": "filter", "name": "sub", "handle": 20}})
    nft.insert(4, {"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 21,
                            "expr": [{"jump": {"target": "sub"}}]}})
    nft.append({"rule": {"family": "inet", "table": "filter", "chain": "sub", "handle": 22, "expr": [
        {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 22}},
        {"accept": None}]}})
    assert ("firewall.management_sources", "L3-CES1-18") in failed(checks.evaluate_server(facts, CTX, EXP))


def test_the_collector_host_is_judged_as_receiver_and_the_ntp_server_by_its_upstream():
    facts = server_facts()
    facts["files"]["/etc/rsyslog.d/90-forward.conf"] = 'module(load="imtcp")\ninput(type="imtcp" port="514")\n'
    facts["files"]["/etc/chrony/chrony.conf"] = "local stratum 8\nallow 198.18.0.0/15\n"
    ctx = dict(CTX, functions=["services"], addresses=["198.18.0.11", "198.19.0.11"], ntp_servers=["198.18.0.11"])
    facts["services"].pop("postgresql.service")
    res = {r.check: r for r in checks.evaluate_server(facts, ctx, EXP)}
    assert res["audit.log_forwarding"].passed
    assert res["time.sources"].passed


def test_auditd_in_a_container_needs_only_its_rules():
    facts = server_facts()
    facts["virt"] = "systemd-nspawn"
    facts["services"]["auditd.service"]["active"] = "inactive"
    res = {r.check: r for r in checks.evaluate_server(facts, CTX, EXP)}
    assert res["audit.auditd"].passed and "not applicable in a container" in res["audit.auditd"].found


def test_an_app_not_installed_on_the_host_is_not_required():
    res = {r.check for r in checks.evaluate_server(server_facts(), CTX, EXP)}
    assert "services.jincai-budget" in res and "services.jincai-treasury" not in res


def test_a_broken_fact_is_a_failed_check_not_a_crash():
    facts = server_facts()
    facts["accounts"] = [{"user": "x"}]  # no uid: malformed
    res = {r.check: r for r in checks.evaluate_server(facts, CTX, EXP)}
    assert not res["auth.uid0"].passed and "could not evaluate" in res["auth.uid0"].found


# ---------------------------------------------------------------- router checks

def test_compliant_router_passes():
    assert failed(checks.evaluate_router(ROUTER_OK, ROUTER_CTX, EXP)) == set()


@pytest.mark.parametrize("edit, check_id, control", [
    (lambda c: c.replace("access-list vty-mgmt seq 15 deny any\n",
                         "access-list vty-mgmt seq 12 permit any\naccess-list vty-mgmt seq 15 deny any\n"),
     "router.acl_specific", "L3-ABS1-07"),
    (lambda c: c.replace("access-list vty-mgmt seq 15 deny any\n", ""), "router.acl_default_deny", "L3-ABS1-05"),
    (lambda c: c.replace(" exec-timeout 10 0", " exec-timeout 0 0"), "router.exec_timeout", "L3-CES1-02"),
    (lambda c: c.replace(" exec-timeout 10 0", " exec-timeout 30 0"), "router.exec_timeout", "L3-CES1-02"),
    (lambda c: c.replace("seq 5 permit 198.19.0.0/24", "seq 5 permit 10.1.0.0/16"), "router.vty_acl", "L3-CES1-18"),
    (lambda c: c.replace("log syslog informational\n", ""), "router.syslog", "L3-SMC1-10"),
])
def test_router_violations(edit, check_id, control):
    assert (check_id, control) in failed(checks.evaluate_router(edit(ROUTER_OK), ROUTER_CTX, EXP))


def test_cisco_style_named_acls_are_parsed():
    _top, _sections, acls = checks.parse_router_config(
        "ip access-list extended METRO\n 10 permit tcp host 1.1.1.1 any eq 8102\n 20 deny ip any any log\n!\n")
    assert acls["METRO"] == [("permit", "tcp host 1.1.1.1 any eq 8102"), ("deny", "ip any any log")]


# ---------------------------------------------------------------- drift mapping

@pytest.mark.parametrize("record, control", [
    ({"role": "sshd", "task": "Render sshd_config", "diff": "-PermitRootLogin no\n+PermitRootLogin yes"},
     "L3-CES1-06"),
    ({"role": "sshd", "task": "Render sshd_config", "diff": "-MaxAuthTries 3\n+MaxAuthTries 10"}, "L3-CES1-02"),
    ({"role": "firewall", "task": "Render the ruleset", "diff": "+tcp dport 22 accept"}, "L3-CES1-18"),
    ({"role": "firewall", "task": "Render the ruleset", "diff": "+tcp dport 8105 accept"}, "L3-CES1-17"),
    ({"role": "routers", "task": "Push the router config", "diff": "+access-list metro seq 5 permit any"},
     "L3-ABS1-07"),
    ({"role": "apps", "task": "Render the application config", "diff": "-pool_size = 10\n+pool_size = 99"},
     "L3-CES1-25"),
    ({"role": "chrony", "task": "Keep chrony enabled and running", "diff": "",
      "action": "ansible.builtin.systemd_service"}, "L3-CES1-13"),
    ({"role": "rsyslog", "task": "Start rsyslog", "diff": ""}, "L3-SMC1-10"),
    ({"role": "apps", "task": "Start the release", "diff": "", "action": "ansible.builtin.systemd_service"},
     "L3-SMC1-09"),
    ({"role": "apps", "task": "Write each application's environment and its hardened systemd unit",
      "diff": "-X=1\n+X=2", "action": "ansible.builtin.template"}, "L3-CES1-25"),
])
def test_drift_maps_to_the_control_of_its_role_and_content(record, control):
    assert model.drift_control(record, CATALOGUE["drift_rules"]) == control


def test_restarts_that_follow_a_diff_are_folded_into_it():
    drift = {"records": [
        {"host": "220202-app1", "status": "changed", "role": "apps", "task": "Write the environment",
         "action": "ansible.builtin.template", "diff": "-A=1\n+A=2\n"},
        {"host": "220202-app1", "status": "changed", "role": "apps", "task": "Start the release",
         "action": "ansible.builtin.systemd_service", "diff": ""},
        {"host": "220202-app1", "status": "changed", "role": "chrony", "task": "Keep chrony running",
         "action": "ansible.builtin.systemd_service", "diff": ""}]}
    rep = model.build_report(_inventory(), ["220202-app1"], _collected(["220202-app1"]), drift, CATALOGUE)
    got = {(f["role"], f["control"]): f for f in rep["findings"]}
    assert sorted(got) == [("apps", "L3-CES1-25"), ("chrony", "L3-CES1-13")]
    assert "would also: Start the release" in got[("apps", "L3-CES1-25")]["found"]


def test_catalogue_errors_name_file_and_field(tmp_path):
    bad = tmp_path / "c.yml"
    bad.write_text("controls:\n  L3-X:\n    clause: a\n    text: b\n    summary: c\n"
                   "drift_rules:\n  - {role: x, control: L3-NOPE}\n")
    with pytest.raises(model.ControlsError, match=r"c\.yml: drift_rules\[0\]\.control: unknown control 'L3-NOPE'"):
        model.load_controls(str(bad))
    bad.write_text("controls:\n  L3-X: {clause: a, text: b}\n")
    with pytest.raises(model.ControlsError, match=r"controls\.L3-X\.summary: missing"):
        model.load_controls(str(bad))


# ---------------------------------------------------------------- the report model

def _inventory():
    def hv(code, tier, city, fn):
        return {"jincai_site_code": code, "jincai_tier": tier, "jincai_functions": [fn],
                "jincai_site": {"code": code, "tier": tier, "city_code": city, "name_zh": "站" + code,
                                "pinyin": "Site " + code, "parent": None}}
    return {"_meta": {"hostvars": {
        "220000-app1": hv("220000", "province", None, "app_server"),
        "220200-rtr": hv("220200", "city", "220200", "router"),
        "220202-app1": hv("220202", "county", "220200", "app_server"),
        "220202-rtr": hv("220202", "county", "220200", "router"),
        "220203-app1": hv("220203", "county", "220200", "app_server"),
    }}}


def _collected(hosts):
    out = {}
    for h in hosts:
        if h.endswith("rtr"):
            out[h] = {"host": h, "kind": "router", "context": ROUTER_CTX, "config": ROUTER_OK}
        else:
            out[h] = {"host": h, "kind": "server", "context": CTX, "facts": server_facts()}
    return out


SCOPE = ["220000-app1", "220200-rtr", "220202-app1", "220202-rtr", "220203-app1"]


def test_clean_run_is_clean():
    rep = model.build_report(_inventory(), SCOPE, _collected(SCOPE), {"records": []}, CATALOGUE)
    assert rep["status"] == "clean" and rep["exit_code"] == 0
    assert rep["summary"]["passed"] == 5 and rep["summary"]["findings"] == 0
    assert all(s["status"] == "passed" for s in rep["sites"])


def test_unreachable_host_is_never_passed_and_drift_and_failures_land_at_their_site():
    collected = _collected(SCOPE)
    del collected["220203-app1"]
    collected["220202-app1"]["facts"]["sshd"]["config"]["permitrootlogin"] = ["yes"]
    drift = {"records": [
        {"host": "220203-app1", "status": "unreachable", "task": "Render", "role": "sshd", "msg": "timed out"},
        {"host": "220202-rtr", "status": "changed", "task": "Push the router config", "role": "routers",
         "diff": "+access-list vty-mgmt seq 12 permit any\n", "play": "Routers"},
        {"host": "220000-app1", "status": "failed", "task": "x", "role": "apps", "msg": "boom", "ignored": True},
    ]}
    rep = model.build_report(_inventory(), SCOPE, collected, drift, CATALOGUE)
    assert rep["status"] == "findings" and rep["exit_code"] == 1
    hosts = rep["hosts"]
    assert hosts["220203-app1"]["status"] == "unreachable"
    assert hosts["220202-rtr"]["status"] == "drifted"
    assert hosts["220202-app1"]["status"] == "failed"
    assert hosts["220000-app1"]["status"] == "passed"  # ignored errors are not findings
    sites = {s["code"]: s for s in rep["sites"]}
    assert sites["220203"]["status"] == "unreachable" and sites["220203"]["counts"]["passed"] == 0
    assert sites["220203"]["counts"]["unreachable"] == 1
    assert sites["220202"]["counts"] == {"passed": 0, "failed": 1, "drifted": 1, "unreachable": 0}
    f = {(x["host"], x["kind"], x["control"]) for x in rep["findings"]}
    assert ("220202-app1", "check", "L3-CES1-06") in f
    assert ("220202-rtr", "drift", "L3-ABS1-07") in f
    assert ("220203-app1", "unreachable", "L3-SMC1-09") in f
    drift_f = next(x for x in rep["findings"] if x["kind"] == "drift")
    assert drift_f["clause"].startswith("8.1.3.2") and "permit any" in drift_f["diff"]


def test_a_host_without_facts_and_without_an_unreachable_record_is_failed_not_passed():
    collected = _collected(SCOPE)
    del collected["220000-app1"]
    rep = model.build_report(_inventory(), SCOPE, collected, None, CATALOGUE)
    assert rep["hosts"]["220000-app1"]["status"] == "failed"
    assert rep["exit_code"] == 1


def test_run_errors_make_exit_code_2():
    rep = model.build_report(_inventory(), SCOPE, _collected(SCOPE), None, CATALOGUE,
                             {"errors": ["playbooks/site.yml failed to run (rc 1)"]})
    assert rep["status"] == "error" and rep["exit_code"] == 2


# ---------------------------------------------------------------- renderers and history

def _findings_report():
    collected = _collected(SCOPE)
    del collected["220203-app1"]
    drift = {"records": [
        {"host": "220203-app1", "status": "unreachable", "task": "t", "role": "", "msg": "No route"},
        {"host": "220202-app1", "status": "changed", "task": "Render the app config", "role": "apps",
         "diff": "-a = 1\n+a = <script>alert(1)</script>\n"}]}
    return model.build_report(_inventory(), SCOPE, collected, drift, CATALOGUE,
                              {"run_id": "20261125T010000Z", "started": "2026-11-25T01:00:00+00:00"})


def test_writers_produce_json_junit_and_escaped_html(tmp_path):
    rep = _findings_report()
    paths = report.write_all(rep, str(tmp_path / "run"), str(tmp_path / "history.json"))
    assert json.load(open(paths["json"], encoding="utf-8"))["summary"] == rep["summary"]
    root = ET.parse(paths["junit"]).getroot()
    assert int(root.get("errors")) == 1  # the unreachable host
    assert int(root.get("failures")) == 1  # the drift
    assert {s.get("name").split()[0] for s in root} == {"220000", "220200", "220202", "220203"}
    page = open(paths["html"], encoding="utf-8").read()
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)" in page
    assert "L3-SMC1-09" in page and "L3-CES1-25" in page and "220203" in page
    assert "unreachable" in page


def test_history_keeps_runs_and_the_html_shows_the_trend(tmp_path):
    hist_path = str(tmp_path / "history.json")
    clean = model.build_report(_inventory(), SCOPE, _collected(SCOPE), None, CATALOGUE,
                               {"run_id": "20261124T010000Z"})
    report.write_all(clean, str(tmp_path / "a"), hist_path)
    rep = _findings_report()
    paths = report.write_all(rep, str(tmp_path / "b"), hist_path)
    hist = report.load_history(hist_path)
    assert [h["run_id"] for h in hist] == ["20261124T010000Z", "20261125T010000Z"]
    assert hist[0]["findings"] == 0 and hist[1]["findings"] == rep["summary"]["findings"]
    page = open(paths["html"], encoding="utf-8").read()
    assert "<svg" in page and "20261124T010000Z" in page


def test_prune_removes_only_old_run_directories(tmp_path):
    for name in ("old", "new"):
        d = tmp_path / name
        d.mkdir()
        (d / "report.json").write_text("{}")
    (tmp_path / "keepme").mkdir()
    old = tmp_path / "old"
    os.utime(old, (1, 1))
    assert report.prune_runs(str(tmp_path), keep_days=30) == ["old"]
    assert sorted(os.listdir(tmp_path)) == ["keepme", "new"]


# ---------------------------------------------------------------- a Linux (FRR) router's packet filter

def _m(proto, field, right):
    return {"match": {"op": "==", "left": {"payload": {"protocol": proto, "field": field}}, "right": right}}


def _rule(chain, handle, *expr):
    return {"rule": {"family": "inet", "table": "jincai_router", "chain": chain, "handle": handle, "expr": list(expr)}}


def router_nft():
    """The lab router ruleset shape (templates/router/nftables.j2): input, forward, metro_in."""
    iif = {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eth0"}}
    est = {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}}
    return {"nftables": [
        {"chain": {"family": "inet", "table": "jincai_router", "name": "input", "hook": "input", "policy": "drop"}},
        {"chain": {"family": "inet", "table": "jincai_router", "name": "forward", "hook": "forward",
                   "policy": "accept"}},
        {"chain": {"family": "inet", "table": "jincai_router", "name": "metro_in"}},
        _rule("input", 1, est, {"accept": None}),
        _rule("input", 2, iif, _m("tcp", "dport", 22), {"accept": None}),
        _rule("input", 3, _m("ip", "saddr", {"set": [{"prefix": {"addr": "198.19.0.0", "len": 24}}]}),
              _m("tcp", "dport", 22), {"accept": None}),
        _rule("input", 4, {"counter": None}, {"drop": None}),
        _rule("metro_in", 5, est, {"accept": None}),
        _rule("metro_in", 6, _m("ip", "saddr", "198.18.0.130"), _m("ip", "daddr", "198.18.0.0/24"),
              _m("tcp", "dport", 8102), {"accept": None}),
        _rule("metro_in", 7, {"counter": None}, {"drop": None}),
    ]}


RCTX = dict(ROUTER_CTX, mgmt_interfaces=["eth0"])


def test_router_packet_filter_passes_and_each_violation_is_found():
    assert failed(checks.evaluate_router(ROUTER_OK, RCTX, EXP, router_nft())) == set()
    nft = router_nft()
    nft["nftables"].insert(7, _rule("metro_in", 50, {"accept": None}))
    assert ("router.metro_specific", "L3-ABS1-07") in failed(checks.evaluate_router(ROUTER_OK, RCTX, EXP, nft))
    nft = router_nft()
    nft["nftables"].pop()
    assert ("router.metro_default_deny", "L3-ABS1-05") in failed(checks.evaluate_router(ROUTER_OK, RCTX, EXP, nft))
    nft = router_nft()
    nft["nftables"].insert(4, _rule("input", 51, _m("tcp", "dport", 22), {"accept": None}))
    assert ("router.filter_management", "L3-CES1-18") in failed(checks.evaluate_router(ROUTER_OK, RCTX, EXP, nft))
    nft = router_nft()
    nft["nftables"][0]["chain"]["policy"] = "accept"
    assert ("router.filter_default_deny", "L3-CES1-17") in failed(checks.evaluate_router(ROUTER_OK, RCTX, EXP, nft))


def test_sudo_list_parsing_and_a_person_without_rights():
    text = sudo_list("t1", "(root) NOPASSWD: NOEXEC: /usr/bin/a x, /usr/bin/b", "(ALL : ALL) ALL")
    assert checks.parse_sudo_list(text) == [("root", "/usr/bin/a x"), ("root", "/usr/bin/b"), ("ALL:ALL", "ALL")]
    assert checks.parse_sudo_list("User t1 is not allowed to run sudo on 220202-app1.\n") == []
    facts = server_facts()
    facts["sudo"]["t220202a"] = {"rc": 1, "out": "User t220202a is not allowed to run sudo on 220202-app1.\n"}
    res = {r.check: r for r in checks.evaluate_server(facts, CTX, EXP)}
    assert res["access.sudo_roles"].passed, res["access.sudo_roles"]
    facts["sudo"]["t220202a"] = {"rc": 0, "out": sudo_list("t220202a", "(ALL : ALL) ALL")}
    res = {r.check: r for r in checks.evaluate_server(facts, CTX, EXP)}
    assert res["access.sudo_roles"].found == "t220202a (technician): (ALL:ALL) ALL"


def test_raw_data_of_an_older_run_without_sudo_rights_is_not_judged():
    facts = server_facts()
    facts.pop("sudo")
    assert "access.sudo_roles" not in {r.check for r in checks.evaluate_server(facts, CTX, EXP)}


def test_the_collector_asks_sudo_for_every_person_who_can_log_in(monkeypatch):
    from jincai.compliance import collector  # noqa: PLC0415

    asked = []
    monkeypatch.setattr(collector, "run", lambda argv, timeout=20: asked.append(argv) or {"rc": 0, "out": "x",
                                                                                            "err": ""})
    got = collector.sudo_rights(server_facts()["accounts"])
    assert sorted(got) == ["jcadmin", "jincai", "t220202a"]  # not root, daemons, nobody or locked t220202b
    assert ["sudo", "-n", "-l", "-U", "jcadmin"] in asked


def test_in_a_container_the_kernel_is_judged_as_configured_and_said_to_be_the_hosts():
    facts = server_facts()
    facts.update(virt="systemd-nspawn", modules=["sctp"])
    facts["sysctl"]["kernel.randomize_va_space"] = "0"  # the host's, read-only here
    facts["sysctl"]["fs.suid_dumpable"] = "2"
    res = {r.check: r for r in checks.evaluate_server(facts, CTX, EXP)}
    assert res["hardening.kernel_memory"].passed and "not applicable in a container" in res["hardening.kernel_memory"].found
    assert res["hardening.core_dumps"].passed and "the host kernel's" in res["hardening.core_dumps"].found
    assert res["hardening.protocols"].passed and "not applicable in a container" in res["hardening.protocols"].found


def test_the_catalogue_expects_what_the_roles_set():
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "roles", "base", "defaults", "main.yml"),
              encoding="utf-8") as fh:
        base = yaml.safe_load(fh)
    from jincai.compliance import collector  # noqa: PLC0415

    judged = {**EXP["sysctl_network"], **EXP["sysctl_memory"], "fs.suid_dumpable": 0}
    assert set(judged) == set(base["base_sysctl"])
    for key, want in judged.items():
        assert base["base_sysctl"][key] in (want if isinstance(want, list) else [want]), key
    assert set(judged) <= set(collector.SYSCTL_KEYS)
    assert EXP["disabled_protocols"] == base["base_disabled_protocols"]
    assert EXP["log_mode_exempt"] == base["base_log_exempt"]
    assert re.search(EXP["banner_pattern"], base["base_banner"])


def test_a_failed_last_copy_passes_while_the_province_still_holds_one_from_the_last_day():
    facts = server_facts()
    facts["files"][checks.BACKUP_STATUS] = json.dumps({"time": NOW, "offsite_time": NOW - 20 * 3600,
                                                       "offsite": "failed", "databases": []})
    res = {r.check: r for r in checks.evaluate_server(facts, CTX, EXP)}
    assert res["backup.offsite"].passed and "20.0 h old (last run: failed" in res["backup.offsite"].found


def test_a_missing_password_dictionary_fails_only_while_dictcheck_is_on():
    facts = server_facts()
    facts["stat"]["/var/cache/cracklib/cracklib_dict.pwd"] = None
    res = {r.check: r for r in checks.evaluate_server(facts, CTX, EXP)}
    assert not res["auth.password_quality"].passed and "install cracklib-runtime" in res["auth.password_quality"].found
    facts["files"]["/etc/security/pwquality.conf"] += "dictcheck = 0\n"
    assert {r.check: r for r in checks.evaluate_server(facts, CTX, EXP)}["auth.password_quality"].passed
    older = server_facts()  # raw data of a run before the collector stat'ed the dictionary: not judged
    older["stat"].pop("/var/cache/cracklib/cracklib_dict.pwd")
    assert {r.check: r for r in checks.evaluate_server(older, CTX, EXP)}["auth.password_quality"].passed
