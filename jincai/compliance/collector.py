"""Compliance fact collector, run on a managed server as root (one SSH round trip per host).

Shipped as the argument of ``python3 -c`` by playbooks/compliance.yml (no file is written on the host),
with the host's intended context (JSON) as its one argument; prints one JSON document on stdout,
``{host, kind: server, context, facts}``, that the jincai_drift callback stores on the control node. Standard library only; strictly read-only: it reads files
and runs query commands (``sshd -T``, ``systemctl list-units``, ``ss``, ``nft list``, ``dpkg-query``).
Password hashes never leave the host: only whether an account's password is empty, locked or set.
The checks that judge these facts live on the control node (jincai/compliance/checks.py).
"""

import glob
import json
import os
import socket
import stat
import subprocess
import sys
import time

TEXT_FILES = [
    "/etc/login.defs", "/etc/security/pwquality.conf", "/etc/security/faillock.conf",
    "/etc/pam.d/common-auth", "/etc/pam.d/common-password", "/etc/pam.d/common-account",
    "/etc/pam.d/sshd", "/etc/sudoers", "/etc/sudoers.d/*", "/etc/profile", "/etc/profile.d/*.sh",
    "/etc/bash.bashrc", "/etc/rsyslog.conf", "/etc/rsyslog.d/*.conf", "/etc/chrony/chrony.conf",
    "/etc/chrony/conf.d/*.conf", "/etc/chrony/sources.d/*.sources", "/etc/nftables.conf",
    "/etc/audit/auditd.conf", "/etc/audit/rules.d/*.rules", "/etc/aide/aide.conf",
]
STAT_FILES = [
    "/var/log/auth.log", "/var/log/syslog", "/var/log/sudo.log", "/var/log/audit/audit.log",
    "/var/log/messages", "/var/lib/aide/aide.db", "/var/lib/aide/aide.db.gz", "/etc/shadow",
    "/etc/ssh/sshd_config",
]
MAX_TEXT = 65536


def run(argv, timeout=20):
    """Run a read-only query; return {rc, out, err} (never raises)."""
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
                shadow[f[0]] = {"password": state, "max_days": f[4] or None, "min_days": f[3] or None}
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


def main():
    """Collect everything and print one JSON document (with the context passed as argument 1, if any)."""
    context = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    facts = {
        "schema": 1,
        "hostname": socket.gethostname(),
        "virt": run(["systemd-detect-virt"])["out"].strip() or "none",
        "files": text_files(),
        "stat": {p: file_stat(p) for p in STAT_FILES},
        "accounts": accounts(),
        "sshd": sshd_effective(),
        "services": services(),
        "listening": listening(),
        "nft": nft_ruleset(),
        "packages": packages(),
        "crls": crls(),
        "collected_at": int(time.time()),
    }
    print(json.dumps({"host": context.get("host") or facts["hostname"], "kind": "server", "context": context,
                      "facts": facts}, sort_keys=True))


if __name__ == "__main__":
    main()
