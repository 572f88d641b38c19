"""The server baseline (playbooks/baseline.yml) proven on the live lab, control by control.

Every test names the MLPS level-3 test unit it proves (GB/T 28448-2019: L3-CES1-xx computing
environment, L3-SMC1-xx management centre) first in its docstring and in ``CONTROL`` so the
compliance report can quote it. Host checks are batched: one SSH round trip per host collects
everything (``report(host)``) and the assertions run on the control node.

Cross-site tests (county logs reaching the collector, WAN cut, clocks following the city, backups
copied from a county) need routing between sites; they skip with a clear reason until the
routers are configured (``_routed``), and run as soon as they are.
"""

import functools
import os
import re
import shlex
import subprocess
import time
import uuid

import pytest

from jincai import ROOT
from jincai.lab import lab as labmod
from jincai.run import run

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


# ------------------------------------------------------------------ one report per host

REPORT = r"""
sec() { echo "=== $1"; }
sec hostname; hostname
sec timezone; readlink /etc/localtime; cat /etc/timezone
sec locale; cat /etc/default/locale
sec uid0; awk -F: '$3==0{print $1}' /etc/passwd
sec emptypw; awk -F: '$2==""{print $1}' /etc/shadow
sec passwd; getent passwd | awk -F: '$3>=1000 && $3<60000 {print $1":"$7}'
sec locked; for u in $(getent passwd | awk -F: '$3>=1000 && $3<60000 {print $1}'); do echo "$u $(passwd -S "$u" | awk '{print $2}') $(chage -l "$u" | awk -F': ' '/Account expires/{print $2}')"; done
sec chage; for u in $(getent group jincai-technicians jincai-admins | cut -d: -f4 | tr ',' ' '); do echo "$u $(chage -l "$u" | awk -F': ' '/Maximum/{print $2}')"; done
sec logindefs; grep -E '^PASS_(MAX|MIN|WARN)' /etc/login.defs
sec pwquality; grep -Ev '^#|^$' /etc/security/pwquality.conf
sec faillock; grep -Ev '^#|^$' /etc/security/faillock.conf
sec commonauth; grep -Ev '^#|^$' /etc/pam.d/common-auth
sec commonpassword; grep -Ev '^#|^$' /etc/pam.d/common-password
sec tmout; bash -lc 'echo TMOUT=$TMOUT'
sec sudo; visudo -c >/dev/null && echo valid; cat /etc/sudoers.d/jincai-baseline
sec keys; ls -l /etc/ssh/authorized_keys/ | awk 'NR>1{print $1, $3, $NF}'
sec sshdT; sshd -T 2>&1
sec sshdbackup; ls /etc/ssh/ | grep -c '^sshd_config\..*~$'
sec packages; dpkg-query -W -f='${Package} ${Status}\n' 2>/dev/null | awk '$4=="installed"{print $1}'
sec listen; ss -Htlnu | awk '{print $1, $5}'
sec nft; nft list table inet jincai
sec nftboot; systemctl is-enabled nftables
sec nftbackup; ls /etc/ | grep -c '^nftables\.conf\..*~$'
sec chrony; systemctl is-active chrony; cat /etc/default/chrony | grep DAEMON_OPTS; chronyc -n sources 2>&1; chronyc -n tracking 2>&1
sec chronydropin; cat /etc/systemd/system/chrony.service.d/jincai-container.conf 2>/dev/null
sec rsyslog; systemctl is-active rsyslog; ls /etc/rsyslog.d/; rsyslogd -N1 2>&1 | tail -1
sec logperms; stat -c '%a %n' /var/log/syslog /var/log/auth.log 2>/dev/null
sec auditrules; augenrules --check 2>&1; cat /etc/audit/audit.rules
sec auditd; systemctl is-active auditd; auditctl -s 2>&1 | head -3; cat /etc/audit/JINCAI-NOT-RUNNING 2>/dev/null
sec aide; ls -l /var/lib/aide/; systemctl is-enabled jincai-aide-check.timer; systemctl is-active jincai-aide-check.timer
sec backup; systemctl is-enabled jincai-backup.timer; ls -l /usr/local/sbin/jincai-backup
sec services; systemctl is-enabled apt-daily.timer apt-daily-upgrade.timer 2>&1
"""


@functools.lru_cache(maxsize=None)
def report(host):
    """Return {section: text} collected from ``host`` in one SSH round trip."""
    res = run_on(host, REPORT, timeout=120)
    sections, name = {}, None
    for line in res.stdout.splitlines():
        if line.startswith("=== "):
            name = line[4:].strip()
            sections[name] = []
        elif name:
            sections[name].append(line)
    return {k: "\n".join(v) for k, v in sections.items()}


def sshd_t(host):
    """Effective sshd settings (sshd -T) as {keyword: value}."""
    out = {}
    for line in report(host)["sshdT"].splitlines():
        key, _, value = line.partition(" ")
        key = key.lower()
        # Multi-valued keywords (allowusers...) come one per line: join them with spaces.
        out[key] = f"{out[key]} {value}" if key in out else value
    return out


HOSTS = pytest.mark.parametrize("host", machine_room())


# ------------------------------------------------------------------ base system

@HOSTS
@control("L3-CES1-16")
def test_base_system(converged, host):
    """L3-CES1-16 minimal install: host name from the source of truth, Asia/Shanghai, UTF-8 locale."""
    r = report(host)
    assert r["hostname"].strip() == host
    assert r["timezone"].splitlines() == ["/usr/share/zoneinfo/Asia/Shanghai", "Asia/Shanghai"]
    assert r["locale"].strip() == "LANG=en_US.UTF-8"


@HOSTS
@control("L3-CES1-16")
def test_no_clear_text_or_legacy_service_packages(converged, host):
    """L3-CES1-16/L3-CES1-03: no telnet, ftp, rsh, talk, nis, tftp or xinetd packages; apt timers off."""
    installed = set(report(host)["packages"].split())
    forbidden = {"telnet", "telnetd", "inetutils-telnet", "inetutils-telnetd", "ftp", "inetutils-ftp", "ftpd",
                 "vsftpd", "rsh-client", "rsh-server", "rsh-redone-client", "talk", "talkd", "nis", "tftp",
                 "tftpd-hpa", "xinetd"}
    assert not installed & forbidden
    assert "enabled" not in report(host)["services"].split()


# ------------------------------------------------------------------ accounts

@HOSTS
@control("L3-CES1-01")
def test_unique_named_accounts_no_empty_passwords(converged, host):
    """L3-CES1-01 identification: only root has UID 0, no empty password, one account per person of this site."""
    r = report(host)
    assert r["uid0"].split() == ["root"]
    assert r["emptypw"].strip() == ""
    users = dict(line.split(":") for line in r["passwd"].splitlines())
    hv = hostvars(host)
    for person in hv["jincai_admins"] + hv["jincai_technicians"]:
        if person["state"] == "present":
            assert users.get(person["user"]) == "/bin/bash", person["user"]
    assert users.get("jincai") == "/bin/bash", "the automation account must stay usable"


@HOSTS
@control("L3-CES1-01")
def test_password_ageing_and_quality(converged, host):
    """L3-CES1-01 complexity and periodic change: 90/2/7 days, pwquality length 8 with four classes."""
    r = report(host)
    assert sorted(r["logindefs"].split()) == sorted(
        ["PASS_MAX_DAYS", "90", "PASS_MIN_DAYS", "2", "PASS_WARN_AGE", "7"])
    for line in r["chage"].splitlines():
        assert line.endswith(" 90"), line
    pwq = dict(re.split(r"\s*=\s*", l, maxsplit=1) for l in r["pwquality"].splitlines() if "=" in l)
    assert int(pwq["minlen"]) >= 8 and pwq["minclass"] == "4"
    assert all(pwq[k] == "-1" for k in ("dcredit", "ucredit", "lcredit", "ocredit"))
    assert "pam_pwquality.so" in r["commonpassword"]


@HOSTS
@control("L3-CES1-02")
def test_failed_login_lockout_and_idle_timeout(converged, host):
    """L3-CES1-02 login failure handling: pam_faillock deny=5 unlock_time=900; TMOUT=600; sshd idle limit."""
    r = report(host)
    conf = dict(re.split(r"\s*=\s*", l) for l in r["faillock"].splitlines() if "=" in l)
    assert conf["deny"] == "5" and conf["unlock_time"] == "900"
    auth = r["commonauth"].splitlines()
    assert "pam_faillock.so preauth" in auth[0] and any("pam_faillock.so authfail" in l for l in auth)
    assert "nullok" not in r["commonauth"]
    assert "TMOUT=600" in r["tmout"]
    s = sshd_t(host)
    assert int(s["clientaliveinterval"]) * int(s["clientalivecountmax"]) <= 600


@HOSTS
@control("L3-CES1-08")
def test_sudo_rules_per_role(converged, host):
    """L3-CES1-08 least privilege: sudo per role (only system administrators have ALL), validated, logged;
    password asked."""
    r = report(host)
    assert r["sudo"].splitlines()[0] == "valid"
    assert "%jincai-sysadmins\tALL=(ALL:ALL) ALL" in r["sudo"]
    assert "%jincai-admins" not in r["sudo"] and "%jincai-technicians\tALL=(ALL" not in r["sudo"]
    assert "NOPASSWD" not in r["sudo"]
    assert 'logfile="/var/log/sudo.log"' in r["sudo"]


@HOSTS
@control("L3-CES1-07")
def test_keys_are_central_and_root_owned(converged, host):
    """L3-CES1-07: each present person's key is a root-owned file; nobody else's key is there."""
    r = report(host)
    files = {line.split()[-1]: line.split() for line in r["keys"].splitlines()}
    hv = hostvars(host)
    expected = {p["user"] for p in hv["jincai_admins"] + hv["jincai_technicians"] if p["state"] == "present"}
    if "services" in hv["jincai_functions"]:
        expected.add("jincai-backup")
    assert set(files) == expected
    assert all(f[1] == "root" and f[0] == "-rw-r--r--" for f in files.values())


# ------------------------------------------------------------------ sshd

@HOSTS
@control("L3-CES1-03")
def test_sshd_keys_only_strong_algorithms(converged, host):
    """L3-CES1-03 encrypted remote management / L3-CES1-06 no root login: keys only, strong algorithms."""
    s = sshd_t(host)
    assert s["passwordauthentication"] == "no"
    assert s["kbdinteractiveauthentication"] == "no"
    assert s["permitrootlogin"] == "no"
    assert s["authenticationmethods"] == "publickey"
    assert not [c for c in s["ciphers"].split(",") if "cbc" in c or "3des" in c or "arcfour" in c]
    assert not [m for m in s["macs"].split(",") if "md5" in m or m in ("hmac-sha1", "umac-64@openssh.com")]
    assert "diffie-hellman-group1-sha1" not in s["kexalgorithms"]
    assert "diffie-hellman-group14-sha1" not in s["kexalgorithms"]
    assert int(report(host)["sshdbackup"]) >= 1, "the previous sshd_config is kept as a way back"


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
        out = run_on(host, "passwd -S t999stale; getent passwd t999stale; chage -l t999stale", check=True).stdout
        assert out.split()[1] == "L", out
        assert out.splitlines()[1].endswith(":/usr/sbin/nologin"), out
        assert re.search(r"Account expires\s*:\s*\w+ \d+, 1970", out), out
    finally:
        run_on(host, "userdel -r t999stale 2>/dev/null")


@control("L3-CES1-18")
def test_broken_sshd_setting_is_refused_before_going_live(converged):
    """L3-CES1-18 never locked out: sshd -t rejects a broken setting; the live config and logins are untouched."""
    host = by_tier("county")[0]
    before = run_on(host, "sha256sum /etc/ssh/sshd_config", check=True).stdout
    res = run(PLAYBOOK, inventory=LAB, args=["--limit", host, "--tags", "sshd",
                                             "-e", '{"sshd_settings_extra": {"Ciphers": "no-such-cipher"}}'])
    assert res.rc != 0 and res.hosts_with("failed") == [host]
    assert "failed to validate" in res.output or "Bad SSH2 cipher" in res.output, _tail(res)
    after = run_on(host, "sha256sum /etc/ssh/sshd_config; systemctl is-active ssh", check=True).stdout
    assert after.splitlines()[0] == before.strip() and after.splitlines()[1] == "active"


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
    nft = report(host)["nft"]
    assert "policy drop;" in nft
    tcp, udp, esp = _expected_ports(host)
    accepted_tcp = {int(p) for m in re.findall(r"tcp dport (\{[^}]*\}|\d+)", nft)
                    for p in re.findall(r"\d+", m)}
    accepted_udp = {int(p) for m in re.findall(r"udp dport (\{[^}]*\}|\d+)", nft)
                    for p in re.findall(r"\d+", m)}
    assert accepted_tcp == tcp
    assert accepted_udp == udp
    assert ("meta l4proto esp accept" in nft) == esp
    assert report(host)["nftboot"].strip() == "enabled"


@HOSTS
@control("L3-CES1-18")
def test_firewall_ssh_only_from_management_networks(converged, host):
    """L3-CES1-18: ssh is accepted only from the management set (plus site LANs for backups on the services host)."""
    nft = report(host)["nft"]
    ssh_rules = [l.strip() for l in nft.splitlines() if "tcp dport 22 " in l]
    assert ssh_rules and all("ip saddr @management" in l or "ip saddr @ssh_extra" in l for l in ssh_rules)
    mgmt = re.search(r"set management \{.*?elements = \{([^}]*)\}", nft, re.S).group(1)
    for net in hostvars(host)["jincai_management_networks"]:
        assert net in mgmt


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
    listen = report(host)["listen"]
    ports = {int(a.rsplit(":", 1)[1]) for a in (line.split()[1] for line in listen.splitlines()) if ":" in a}
    risky = {21, 23, 69, 111, 512, 513}
    if "services" not in hostvars(host)["jincai_functions"]:
        risky.add(514)
    assert not ports & risky


# ------------------------------------------------------------------ time

@HOSTS
@control("L3-CES1-13")
def test_chrony_runs_on_the_chain_from_the_source_of_truth(converged, host):
    """L3-CES1-13 accurate timestamps: chronyd runs (with -x in containers) and polls the configured chain."""
    r = report(host)["chrony"]
    assert r.splitlines()[0] == "active"
    servers = hostvars(host)["jincai_ntp_servers"]
    for server in servers:
        assert re.search(rf"^\^.\s+{re.escape(server)}\s", r, re.M), f"{server} not a source:\n{r}"
    if not servers:
        assert "Reference ID    : 7F7F0101" in r or "Stratum         : 10" in r, r
    assert "-x" in r and "ConditionCapability=" in report(host)["chronydropin"]


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
        out = run_on(city, "chronyc -n sources").stdout
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
            out = run_on(county, "chronyc -n sources").stdout
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
    r = report(host)
    lines = r["rsyslog"].splitlines()
    assert lines[0] == "active"
    if host == services_host():
        assert "10-jincai-collector.conf" in lines
    else:
        assert "60-jincai-forward.conf" in lines
    for line in r["logperms"].splitlines():
        assert int(line.split()[0], 8) & 0o027 == 0, f"log readable by others or group-writable: {line}"


def _wait_for_line(marker, timeout=60):
    collector = services_host()
    deadline = time.time() + timeout
    while True:
        res = run_on(collector, f"grep -rl {shlex.quote(marker)} /var/log/remote/ || true")
        if res.stdout.strip():
            return res.stdout.strip()
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
    res = run_on(services_host(), "systemctl is-enabled jincai-log-retention.timer; "
                                  "systemctl cat jincai-log-retention.service; stat -c '%a %U %G' /var/log/remote",
                 check=True)
    assert res.stdout.splitlines()[0] == "enabled"
    days = [int(d) for d in re.findall(r"-mtime \+(\d+) -delete", res.stdout)]
    assert days and min(days) >= 180
    assert res.stdout.splitlines()[-1] == "750 root adm"


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
    r = report(host)["auditrules"]
    assert "No change" in r.splitlines()[0], r.splitlines()[0]
    for needle in ("-w /etc/passwd -p wa -k identity", "-w /etc/sudoers -p wa -k scope",
                   "-F path=/usr/bin/sudo -F perm=x", "-k privileged", "-e 2"):
        assert needle in r, needle


@HOSTS
@control("L3-CES1-12")
def test_auditd_runs_or_its_limitation_is_recorded(converged, host):
    """L3-CES1-12: auditd runs where the kernel audit interface answers; otherwise the reason is on the host."""
    r = report(host)["auditd"]
    if r.splitlines()[0] == "active":
        assert "enabled" in r
    else:
        assert "Kernel audit is only reachable from the initial network namespace" in r, r


# ------------------------------------------------------------------ integrity and backups

@HOSTS
@control("L3-CES1-21")
def test_aide_database_and_daily_check(converged, host):
    """L3-CES1-21 intrusion detection: the AIDE database exists and the daily check timer is active."""
    r = report(host)["aide"]
    assert "aide.db.gz" in r
    assert r.splitlines()[-2:] == ["enabled", "active"]


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
    res = run_on(host, "jincai-backup --local && jincai-backup restore-test && "
                       "stat -c '%a' $(ls -1t /var/backups/jincai/*.tar.gz | head -n 1)", timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "restore test OK" in res.stdout
    assert res.stdout.splitlines()[-1] == "600"


@control("L3-CES1-29")
def test_backup_is_copied_to_the_province_services_host(converged):
    """L3-CES1-29 off-site copy: a province server's backup lands on the services host (write-only rrsync)."""
    host = next(h for h in by_tier("province") if h != services_host())
    res = run_on(host, "jincai-backup", timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    name = re.search(r"local backup (\S+)", res.stdout).group(1).rsplit("/", 1)[1]
    copied = run_on(services_host(), f"cd /srv/backups/{host} && sha256sum -c {name}.sha256", check=True)
    assert f"{name}: OK" in copied.stdout


@control("L3-CES1-29")
def test_county_backup_is_copied_to_the_province(routed):
    """L3-CES1-29: a county server's backup crosses the WAN to the province services host."""
    host = by_tier("county")[0]
    res = run_on(host, "jincai-backup", timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    name = re.search(r"local backup (\S+)", res.stdout).group(1).rsplit("/", 1)[1]
    run_on(services_host(), f"cd /srv/backups/{host} && sha256sum -c {name}.sha256", check=True)


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
    bad = run(PLAYBOOK, inventory=LAB, args=["--limit", host, "--tags", "sshd", "-e", "sshd_port=2222",
                                              "-e", "sshd_rollback_seconds=45"])
    try:
        assert bad.rc != 0 and bad.hosts_with("changed") == [host], _tail(bad)
        assert "Prove the automation account can still log in" in bad.output
        deadline = time.monotonic() + 120
        while not _fresh_login(host) and time.monotonic() < deadline:
            time.sleep(2)
        assert _fresh_login(host), "sshd rollback did not restore a config Ansible can log in with"
        cfg = run_on(host, "grep ^Port /etc/ssh/sshd_config; systemctl is-active jincai-sshd-rollback.timer || true")
        assert cfg.stdout.split() == ["Port", "22", "inactive"], cfg.stdout
        assert "rolled back" in run_on(host, "journalctl -q -t jincai-sshd --no-pager | tail -1").stdout
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
