"""Compliance fact collector, run on a managed server as root (one SSH round trip per host).

Shipped as the argument of ``python3 -c`` by playbooks/compliance.yml (no file is written on the host),
with the host's intended context (JSON) as its one argument; prints one JSON document on stdout,
``{host, kind: server, context, facts}``, that the jincai_drift callback stores on the control node. Standard library only; strictly read-only: it reads files
and runs query commands (``sshd -T``, ``systemctl list-units``, ``ss``, ``nft list``, ``dpkg-query``).
Password hashes never leave the host: only whether an account's password is empty, locked or set.
The checks that judge these facts live on the control node (jincai/compliance/checks.py).
"""

import glob
import grp
import hashlib
import json
import os
import pwd
import socket
import ssl
import stat
import subprocess
import sys
import time
import warnings

TEXT_FILES = [
    "/etc/login.defs", "/etc/security/pwquality.conf", "/etc/security/faillock.conf",
    "/etc/pam.d/common-auth", "/etc/pam.d/common-password", "/etc/pam.d/common-account",
    "/etc/pam.d/sshd", "/etc/sudoers", "/etc/sudoers.d/*", "/etc/profile", "/etc/profile.d/*.sh",
    "/etc/bash.bashrc", "/etc/rsyslog.conf", "/etc/rsyslog.d/*.conf", "/etc/chrony/chrony.conf",
    "/etc/chrony/conf.d/*.conf", "/etc/chrony/sources.d/*.sources", "/etc/nftables.conf",
    "/etc/audit/auditd.conf", "/etc/audit/rules.d/*.rules", "/etc/aide/aide.conf",
    "/etc/issue", "/etc/issue.net", "/etc/security/limits.conf", "/etc/security/limits.d/*.conf",
    "/etc/systemd/system.conf", "/etc/systemd/system.conf.d/*.conf", "/etc/modprobe.d/*.conf",
    "/etc/sysctl.conf", "/etc/sysctl.d/*.conf", "/var/backups/jincai/last-backup.json",
]
#: Kernel parameters the hardening checks judge (read from /proc/sys: what is in force).
SYSCTL_KEYS = [
    "net.ipv4.conf.all.accept_source_route", "net.ipv4.conf.default.accept_source_route",
    "net.ipv4.conf.all.accept_redirects", "net.ipv4.conf.default.accept_redirects",
    "net.ipv4.conf.all.secure_redirects", "net.ipv4.conf.default.secure_redirects",
    "net.ipv4.conf.all.send_redirects", "net.ipv4.conf.default.send_redirects",
    "net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter",
    "net.ipv4.conf.all.log_martians", "net.ipv4.conf.default.log_martians",
    "net.ipv4.icmp_echo_ignore_broadcasts", "net.ipv4.icmp_ignore_bogus_error_responses", "net.ipv4.tcp_syncookies",
    "net.ipv6.conf.all.accept_redirects", "net.ipv6.conf.default.accept_redirects",
    "net.ipv6.conf.all.accept_source_route", "kernel.randomize_va_space", "kernel.kptr_restrict",
    "kernel.dmesg_restrict", "kernel.yama.ptrace_scope", "fs.suid_dumpable", "fs.protected_hardlinks",
    "fs.protected_symlinks", "kernel.core_pattern",
]
LOG_DIR = "/var/log"
MAX_LOG_FILES = 20000
STAT_FILES = [
    "/var/log/auth.log", "/var/log/syslog", "/var/log/sudo.log", "/var/log/audit/audit.log",
    "/var/log/messages", "/var/lib/aide/aide.db", "/var/lib/aide/aide.db.gz", "/etc/shadow",
    "/etc/ssh/sshd_config", "/var/cache/cracklib/cracklib_dict.pwd",
]
MAX_TEXT = 65536
#: Tools that ask a D-Bus-activated systemd service (systemd-hostnamed, -timedated, -localed, -logind,
#: -resolved, -networkd, -machined, ...) and so start it, even to read: the collector changes nothing on a
#: host (tests/lab/test_compliance_lab.py compares the active services before and after), so run() refuses
#: them. The host name comes from the kernel (socket.gethostname), never from hostnamectl.
DBUS_ACTIVATED = frozenset({
    "hostnamectl", "timedatectl", "localectl", "loginctl", "busctl", "machinectl", "resolvectl", "systemd-resolve",
    "networkctl", "homectl", "portablectl", "userdbctl", "gdbus", "dbus-send", "qdbus",
})


def run(argv, timeout=20):
    """Run a read-only query; return {rc, out, err} (never raises; never a D-Bus-activated tool)."""
    if os.path.basename(argv[0]) in DBUS_ACTIVATED:
        return {"rc": 126, "out": "", "err": f"{argv[0]}: refused (starts a D-Bus-activated service)"}
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        return {"rc": p.returncode, "out": p.stdout, "err": p.stderr[-2000:]}
    except (OSError, subprocess.SubprocessError) as exc:
        return {"rc": 127, "out": "", "err": str(exc)}


def file_stat(path):
    """Return mode (octal string), owner uid/gid and size of ``path``, or None when missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return {"mode": format(stat.S_IMODE(st.st_mode), "04o"), "uid": st.st_uid, "gid": st.st_gid,
            "size": st.st_size}


def text_files():
    """Return {path: text} for every existing config file the checks read."""
    out = {}
    for pattern in TEXT_FILES:
        for path in sorted(glob.glob(pattern)):
            try:
                with open(path, encoding="utf-8", errors="replace") as fh:
                    out[path] = fh.read(MAX_TEXT)
            except OSError:
                continue
    return out


def _scheme(password):
    """The hashing method of a shadow password field, never the hash: yescrypt, sha512, ... or none."""
    pw = password.lstrip("!*")
    if not pw:
        return "none"
    ids = {"y": "yescrypt", "gy": "gost-yescrypt", "7": "scrypt", "2b": "bcrypt", "2y": "bcrypt", "6": "sha512",
           "5": "sha256", "1": "md5"}
    return ids.get(pw.split("$")[1], "unknown") if pw.startswith("$") and pw.count("$") >= 2 else "des"


def sysctl():
    """The kernel parameters in force: {key: value} of SYSCTL_KEYS that exist."""
    out = {}
    for key in SYSCTL_KEYS:
        try:
            with open("/proc/sys/" + key.replace(".", "/"), encoding="ascii") as fh:
                out[key] = fh.read().strip()
        except OSError:
            continue
    return out


def loaded_modules():
    """Names of the loaded kernel modules (in a container: the host's)."""
    try:
        with open("/proc/modules", encoding="ascii") as fh:
            return sorted(line.split()[0] for line in fh if line.strip())
    except OSError:
        return []


def manager_limits():
    """systemd's DefaultLimitCORE in force (what services start with)."""
    res = run(["systemctl", "show", "--property=DefaultLimitCORE"])
    return dict(line.split("=", 1) for line in res["out"].splitlines() if "=" in line)


def homes(users):
    """Mode of the home directory of every personal account (UID 1000-59999)."""
    return {a["user"]: file_stat(a["home"]) for a in users if 1000 <= a["uid"] < 60000 and a["home"].startswith("/home/")}


def loose_logs():
    """{path: mode} of the files under /var/log with more than 0640 (group write, any access for others).
    Symbolic links are not log files (Debian's /var/log/README points into /usr/share/doc), as for the
    base role's sweep (find -type f)."""
    out, seen = {}, 0
    for dirpath, _dirs, files in os.walk(LOG_DIR):
        for name in files:
            if os.path.islink(os.path.join(dirpath, name)):
                continue
            seen += 1
            if seen > MAX_LOG_FILES or len(out) >= 300:
                return out
            st = file_stat(os.path.join(dirpath, name))
            if st and int(st["mode"], 8) & 0o137:
                out[os.path.join(dirpath, name)] = st["mode"]
    return out


def accounts():
    """Return passwd entries joined with the state (not the hash) of each shadow password."""
    shadow = {}
    try:
        with open("/etc/shadow", encoding="utf-8") as fh:
            for line in fh:
                f = line.rstrip("\n").split(":")
                if len(f) < 5:
                    continue
                pw = f[1]
                state = "empty" if pw == "" else "locked" if pw.startswith(("!", "*")) else "set"
                shadow[f[0]] = {"password": state, "max_days": f[4] or None, "min_days": f[3] or None,
                                "warn_days": (f[5] if len(f) > 5 else "") or None, "scheme": _scheme(pw)}
    except OSError:
        pass
    users = []
    with open("/etc/passwd", encoding="utf-8") as fh:
        for line in fh:
            f = line.rstrip("\n").split(":")
            if len(f) < 7:
                continue
            users.append({"user": f[0], "uid": int(f[2]), "gid": int(f[3]), "home": f[5], "shell": f[6],
                          **shadow.get(f[0], {"password": "unknown"})})
    return users


def services():
    """Return {unit: {active, sub, enabled}} for every service and timer unit systemd knows."""
    units = {}
    res = run(["systemctl", "list-units", "--type=service,timer", "--all", "--no-legend", "--plain",
               "--no-pager"])
    for line in res["out"].splitlines():
        f = line.split(None, 4)
        if len(f) >= 4:
            units[f[0]] = {"load": f[1], "active": f[2], "sub": f[3]}
    res = run(["systemctl", "list-unit-files", "--type=service,timer", "--no-legend", "--no-pager"])
    for line in res["out"].splitlines():
        f = line.split()
        if len(f) >= 2:
            units.setdefault(f[0], {"load": "loaded", "active": "inactive", "sub": "dead"})["enabled"] = f[1]
    return units


def listening():
    """Return the listening TCP/UDP sockets: proto, local address, port, process."""
    socks = []
    res = run(["ss", "-Hlntup"])
    for line in res["out"].splitlines():
        f = line.split()
        if len(f) < 5:
            continue
        addr, _, port = f[4].rpartition(":")
        proc = f[6] if len(f) > 6 else ""
        socks.append({"proto": f[0], "address": addr.strip("[]"), "port": int(port) if port.isdigit() else port,
                      "process": proc})
    return socks


def sshd_effective():
    """Return ``sshd -T`` as {keyword: [values...]} (keywords lower case, as sshd prints them)."""
    res = run(["/usr/sbin/sshd", "-T"])
    conf = {}
    for line in res["out"].splitlines():
        key, _, value = line.partition(" ")
        conf.setdefault(key.lower(), []).append(value.strip())
    return {"rc": res["rc"], "err": res["err"], "config": conf}


def nft_ruleset():
    """Return the live nftables ruleset as nft's JSON (or the error)."""
    res = run(["nft", "-j", "list", "ruleset"])
    if res["rc"] != 0:
        return {"error": res["err"].strip() or f"nft exited {res['rc']}"}
    try:
        return json.loads(res["out"] or "{}")
    except ValueError as exc:
        return {"error": f"nft -j output is not JSON: {exc}"}


def crls():
    """Return {path: {next_update, rc}} for the CRLs a VPN concentrator loads (``openssl crl``)."""
    out = {}
    for path in sorted(glob.glob("/etc/swanctl/x509crl/*.crl")):
        res = run(["openssl", "crl", "-noout", "-nextupdate", "-in", path])
        value = res["out"].strip().partition("=")[2].strip()
        out[path] = {"rc": res["rc"], "next_update": value or None, "err": res["err"][-300:]}
    return out


def packages():
    """Return the names of the installed Debian packages."""
    res = run(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Abbrev}\n"])
    return sorted(line.split()[0] for line in res["out"].splitlines()
                  if len(line.split()) > 1 and line.split()[1].startswith("ii"))


def _handshake(port, low, high, ciphers=None):
    """Protocol and suite a TLS handshake with 127.0.0.1:``port`` agrees on, or None when refused."""
    try:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with warnings.catch_warnings():  # asking for TLS 1.0/1.1 is the point (does the server refuse them?)
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version, ctx.maximum_version = low, high
        if ciphers:
            ctx.set_ciphers(ciphers)
        with socket.create_connection(("127.0.0.1", port), timeout=3) as raw, ctx.wrap_socket(raw) as conn:
            return f"{conn.version()} {conn.cipher()[0]}"
    except (OSError, ValueError):  # ssl.SSLError is an OSError; ValueError: the client cannot offer it
        return None


def tls_probes(socks):
    """For every TCP port nginx listens on (the TLS frontends): what a client is granted when it offers
    only TLS 1.2 CBC suites, only TLS 1.0/1.1, TLS 1.2 AEAD suites, TLS 1.3. Local handshakes only."""
    tls = ssl.TLSVersion
    out = {}
    for port in sorted({s["port"] for s in socks if s["proto"] == "tcp" and '"nginx"' in s["process"]}):
        out[str(port)] = {
            "tls12_cbc": _handshake(port, tls.TLSv1_2, tls.TLSv1_2, "ALL:!AESGCM:!CHACHA20:!AESCCM:!ARIAGCM:@SECLEVEL=0"),
            "legacy": _handshake(port, tls.TLSv1, tls.TLSv1_1, "ALL:@SECLEVEL=0"),
            "tls12_aead": _handshake(port, tls.TLSv1_2, tls.TLSv1_2, "ECDHE+AESGCM:ECDHE+CHACHA20"),
            "tls13": _handshake(port, tls.TLSv1_3, tls.TLSv1_3),
        }
    return out


def postgres_tls():
    """PostgreSQL's TLS settings in force (``SHOW``), when it runs."""
    res = run(["runuser", "-u", "postgres", "--", "psql", "-XAtc",
               "select name, setting from pg_settings where name in ('ssl', 'ssl_min_protocol_version', 'ssl_ciphers')"])
    if res["rc"] != 0:
        return None
    return dict(line.split("|", 1) for line in res["out"].splitlines() if "|" in line)


def _login_shell(shell):
    return bool(shell) and not shell.endswith(("nologin", "/false", "/sync", "/halt", "/shutdown"))


def sudo_rights(users):
    """``sudo -n -l -U USER`` of every personal account that can log in (UID 1000-59999): the rights sudo
    itself resolves (every sudoers file, groups, aliases), as its raw output (parsed on the control node)."""
    out = {}
    for a in users:
        if 1000 <= a["uid"] < 60000 and _login_shell(a["shell"]):
            res = run(["sudo", "-n", "-l", "-U", a["user"]], timeout=10)
            out[a["user"]] = {"rc": res["rc"], "out": res["out"][-16000:], "err": res["err"][-300:]}
    return out


MAX_HASH = 64 * 1024 * 1024


def _name(table, ident):
    try:
        return table(ident)[0]
    except KeyError:
        return str(ident)


def manifest_file(path):
    """What fast drift compares of one managed path: existence, type, mode, owner, group and (regular
    files up to 64 MiB) the sha256 of the content. Symbolic links are not followed."""
    try:
        st = os.lstat(path)
    except OSError:
        return {"exists": False}
    kind = ("file" if stat.S_ISREG(st.st_mode) else "directory" if stat.S_ISDIR(st.st_mode)
            else "link" if stat.S_ISLNK(st.st_mode) else "other")
    out = {"exists": True, "type": kind, "mode": format(stat.S_IMODE(st.st_mode), "04o"),
           "owner": _name(pwd.getpwuid, st.st_uid), "group": _name(grp.getgrgid, st.st_gid)}
    if kind == "file" and st.st_size <= MAX_HASH:
        h = hashlib.sha256()
        try:
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            out["sha256"] = h.hexdigest()
        except OSError as exc:
            out["error"] = str(exc)
    return out


def group_names():
    """The names of the groups in /etc/group."""
    return sorted(g.gr_name for g in grp.getgrall())


def readback(paths):
    """{path: manifest_file} of the managed ``paths`` (fast drift's file facts)."""
    return {p: manifest_file(p) for p in paths}


def main():
    """Collect everything and print one JSON document (with the context passed as argument 1, if any)."""
    context = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    if context.get("readback"):  # playbooks/manifest.yml, right after a successful site.yml: what it left
        units = services()
        print(json.dumps({"host": context.get("host") or socket.gethostname(), "kind": "readback",
                          "files": readback(context.get("manifest_paths") or []),
                          "services": {u: units.get(u) or {} for u in context.get("manifest_units") or []},
                          "packages": packages()}, sort_keys=True))
        return
    users = accounts()
    socks = listening()
    facts = {
        "schema": 1,
        "hostname": socket.gethostname(),
        "virt": run(["systemd-detect-virt"])["out"].strip() or "none",
        "files": text_files(),
        "stat": {p: file_stat(p) for p in STAT_FILES},
        "accounts": users,
        "sudo": sudo_rights(users),
        "sshd": sshd_effective(),
        "services": services(),
        "listening": socks,
        "tls": tls_probes(socks),
        "sysctl": sysctl(),
        "modules": loaded_modules(),
        "manager": manager_limits(),
        "homes": homes(users),
        "loose_logs": loose_logs(),
        "postgres_tls": postgres_tls(),
        "nft": nft_ruleset(),
        "packages": packages(),
        "crls": crls(),
        "collected_at": int(time.time()),
    }
    if context.get("manifest_paths") is not None:  # fast drift: the manifest's paths and the group names
        facts["manifest_files"] = readback(context["manifest_paths"])
        facts["groups"] = group_names()
    print(json.dumps({"host": context.get("host") or facts["hostname"], "kind": "server", "context": context,
                      "facts": facts}, sort_keys=True))


if __name__ == "__main__":
    main()
