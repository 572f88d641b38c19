"""Pre-flight of ``jincai bootstrap``: the site, its hosts, reachability, host keys, first login.

Every failure is a :class:`BootstrapError` whose message names the host (and address) and the likely
fix, in words a county technician can act on. Nothing here changes a host: the probes only open
TCP connections, read host keys (``ssh-keyscan``) and try logins.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import os
import re
import socket
import subprocess
from dataclasses import dataclass, field

from jincai.source import model
from jincai.source import inventory as invmod

#: Addresses the lab may contact (the benchmark range); production inventories are never probed by tests.
LAB_RANGE = ipaddress.ip_network("198.18.0.0/15")
CODE_RE = re.compile(r"^\d{6}$")
PASSWORD_ENV = "JINCAI_BOOTSTRAP_PASSWORD"
KEY_TYPES = ("ed25519", "ecdsa", "rsa")


class BootstrapError(RuntimeError):
    """A bootstrap step cannot continue; ``str()`` says what is wrong, where, and what to do."""

    def __init__(self, message, fix="", host=None):
        self.message = message
        self.fix = fix
        self.host = host
        super().__init__(self.text())

    def text(self):
        """The message and the fix, two lines."""
        return self.message + (f"\n  fix: {self.fix}" if self.fix else "")


@dataclass
class SiteHost:
    """One host of the site as bootstrap sees it."""

    name: str
    address: str  # what the control node connects to (ansible_host)
    functions: list
    platform: str | None = None
    hostvars: dict = field(default_factory=dict, repr=False)

    @property
    def is_router(self):
        """True for the site's router."""
        return "router" in self.functions

    @property
    def kind(self):
        """Word used in messages: router or server."""
        return "router" if self.is_router else "server"


@dataclass
class Site:
    """The site to bootstrap, resolved from a valid source of truth."""

    code: str
    name_zh: str
    tier: str
    inventory: str
    environment: str
    hosts: list  # [SiteHost], router first
    parent_router: str | None
    uplinks: list  # router interfaces with role uplink (jincai_interfaces entries)
    fingerprint: str
    parent_address: str | None = None  # the parent router's end of the first uplink (the day-0 peer)

    @property
    def router(self):
        """The site's router (a county has exactly one)."""
        return next((h for h in self.hosts if h.is_router), None)

    @property
    def servers(self):
        """The site's servers (every host but the router)."""
        return [h for h in self.hosts if not h.is_router]


def _division_name(src, code):
    try:
        div = src.divisions().get(code)
    except OSError:
        return None
    return div


def resolve_site(inventory_dir, code):
    """Load and validate the source, and return the :class:`Site` for ``code``.

    Raises :class:`BootstrapError` for a malformed, unknown or not-yet-added code, or an invalid
    source (the validator's findings, each naming file, site and field). No host is contacted.
    """
    code = str(code).strip()
    try:
        src = model.load(inventory_dir)
    except model.SourceError as exc:
        raise BootstrapError(f"inventory: {exc}", "pass the inventory directory with -i (e.g. -i inventories/jilin)")
    shown = model.display_path(src.source_dir)
    if not CODE_RE.match(code):
        raise BootstrapError(f"site code {code!r}: not a 6-digit GB/T 2260 code",
                             "use the county's code, e.g. jincai bootstrap 220104 (see jincai/data/jilin-divisions.tsv)")
    sites = src.site_map()
    if code not in sites:
        div = _division_name(src, code)
        if div is None:
            raise BootstrapError(f"site {code}: not a Jilin division (GB/T 2260), and not in {shown}",
                                 "check the code on the county's work order (jincai/data/jilin-divisions.tsv lists them)")
        raise BootstrapError(f"site {code} ({div.name_zh}) is not added to {shown} yet",
                             f"add it first: jincai site add {code} --write -i {model.display_path(src.inv_dir)} "
                             "(the province adds sites; ask the province network team if this is not your job)")
    site = sites[code]
    if site.get("tier") == "province":
        raise BootstrapError(f"site {code}: the province is not bootstrapped with this command",
                             "bootstrap cities and counties; the province runs make site")
    try:
        m, _warnings = invmod.build_checked(inventory_dir)
    except invmod.InvalidSource as exc:
        raise BootstrapError(f"the source of truth has {len(exc.findings)} error(s); nothing was contacted:\n"
                             + "\n".join(f"  {f}" for f in exc.findings),
                             "fix each file and field named above, then re-run")
    typed = m.sites[code]
    hosts = []
    for name in typed.hosts:  # the site's router and machine-room servers (not parties, not VPN clients)
        h = m.hosts[name]
        if h.kind not in ("router", "server"):
            continue
        hosts.append(SiteHost(name=name, address=str(h.mgmt), functions=list(h.functions),
                              platform=typed.platform if h.kind == "router" else None, hostvars=m.hostvars(name)))
    hosts.sort(key=lambda h: (not h.is_router, h.name))
    uplinks = [i.vars() for i in m.hosts[typed.router].interfaces_of("uplink")]
    first = typed.uplinks[0] if typed.uplinks else None
    parent_router = m.sites[first.parent].router if first else None
    fp_data = {h.name: h.hostvars for h in hosts}
    if parent_router:
        fp_data[parent_router] = m.hostvars(parent_router)
    fingerprint = hashlib.sha256(json.dumps(fp_data, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Site(code=code, name_zh=typed.name_zh, tier=typed.tier, inventory=src.inv_dir,
                environment=m.environment, hosts=hosts, parent_router=parent_router, uplinks=uplinks,
                fingerprint=fingerprint, parent_address=first.address("parent") if first else None)


def guard_address(site, host):
    """Refuse to contact a lab-inventory host outside the lab range (never touch a real address)."""
    if site.environment != "lab":
        return
    try:
        addr = ipaddress.ip_address(host.address)
    except ValueError:
        raise BootstrapError(f"{host.name}: ansible_host {host.address!r} is not an IP address",
                             "fix the host's mgmt address in the source of truth", host.name) from None
    if addr not in LAB_RANGE and not addr.is_loopback:
        raise BootstrapError(f"{host.name}: lab inventory address {addr} is outside {LAB_RANGE}; refusing to contact it",
                             "lab sources use 198.18.0.0/15 only", host.name)


# ---------------------------------------------------------------- reachability


def probe_ssh(address, port=22, timeout=5.0):
    """Return ``None`` when an SSH server answers at ``address``, else a short reason."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            banner = sock.recv(64)
    except socket.timeout:
        return f"no answer within {timeout:.0f} s"
    except ConnectionRefusedError:
        return "connection refused (the machine is up but nothing listens on port 22)"
    except OSError as exc:
        return exc.strerror or str(exc)
    if not banner.startswith(b"SSH-"):
        return f"port {port} answers but is not SSH ({banner[:20]!r})"
    return None


def unreachable_error(host, reason, port=22):
    """The message for a host that does not answer on SSH."""
    if host.is_router:
        fix = (f"check the router is powered on, its management port is cabled to the management switch and "
               f"configured with {host.address} (console: display ip interface brief / ip addr), and that SSH is enabled")
    else:
        fix = (f"check the server is powered on and booted, its management cable is in the management switch, and its "
               f"address is {host.address} (on its console: ip addr); the installer must enable the SSH server")
    if "refused" in reason:
        fix = f"the {host.kind} is up but SSH is not running: on its console, start it (systemctl enable --now ssh)"
    return BootstrapError(f"{host.name} ({host.kind}, {host.address}:{port}): {reason}", fix, host.name)


def check_reachable(site, hosts=None, timeout=5.0, probe=probe_ssh):
    """Probe every host; return ``{name: BootstrapError}`` for those that do not answer."""
    problems = {}
    for host in hosts if hosts is not None else site.hosts:
        guard_address(site, host)
        reason = probe(host.address, 22, timeout)
        if reason:
            problems[host.name] = unreachable_error(host, reason)
    return problems


# ---------------------------------------------------------------- host keys


def fingerprint(key_b64):
    """OpenSSH ``SHA256:...`` fingerprint of a base64 public key blob."""
    digest = hashlib.sha256(base64.b64decode(key_b64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def parse_known_hosts(text):
    """Return ``{name: {keytype: key_b64}}`` from known_hosts lines ``name,addr type key``."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3 or line.startswith("#"):
            continue
        for label in parts[0].split(","):
            out.setdefault(label, {})[parts[1]] = parts[2]
    return out


def scan_host_keys(addresses, timeout=5, run=subprocess.run):
    """Return ``{address: {keytype: key_b64}}`` read with one ssh-keyscan (hosts scanned in parallel)."""
    res = run(["ssh-keyscan", "-T", str(int(timeout)), "-t", ",".join(KEY_TYPES)] + list(addresses),
              capture_output=True, text=True, check=False, timeout=timeout * 4 + 10)
    keys = {a: {} for a in addresses}
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and not line.startswith("#") and parts[0] in keys:
            keys[parts[0]][parts[1]] = parts[2]
    return keys


@dataclass
class KeyCheck:
    """Outcome of comparing a host's current keys with the site's record."""

    host: SiteHost
    scanned: dict
    recorded: dict
    new: bool = False

    def lines(self):
        """Fingerprint lines for the technician (the strongest key type first)."""
        order = ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa"]
        return [f"{t:<20} {fingerprint(k)}" for t, k in sorted(self.scanned.items(),
                                                                key=lambda kv: order.index(kv[0]) if kv[0] in order else 9)]


def compare_keys(host, scanned, recorded, code="CODE"):
    """Return a :class:`KeyCheck`; raise :class:`BootstrapError` on a mismatch with the record."""
    if not scanned:
        raise BootstrapError(f"{host.name} ({host.address}): answered but offered no SSH host key",
                             "check the SSH server on its console (ssh-keygen -A; systemctl restart ssh)", host.name)
    if not recorded:
        return KeyCheck(host, scanned, recorded, new=True)
    common = set(scanned) & set(recorded)
    changed = sorted(t for t in common if not hmac.compare_digest(scanned[t], recorded[t]))
    if changed or not common:
        t = changed[0] if changed else sorted(recorded)[0]
        was = fingerprint(recorded[t])
        now = fingerprint(scanned[t]) if t in scanned else "no such key offered"
        raise BootstrapError(
            f"HOST KEY MISMATCH: {host.name} ({host.address}) now shows {t} {now}, "
            f"but {was} was recorded at first contact. Another machine may be answering on this address. "
            "Nothing was sent to it.",
            f"if (and only if) {host.name} was reinstalled, compare the new fingerprint on its console "
            f"(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then: jincai bootstrap {code} --forget-host {host.name}; "
            "otherwise stop and call the province network team", host.name)
    return KeyCheck(host, scanned, recorded, new=False)


def known_hosts_lines(host, keys):
    """known_hosts lines for ``host`` (name and address as labels)."""
    return [f"{host.name},{host.address} {t} {k}" for t, k in sorted(keys.items())]


def write_known_hosts(path, entries):
    """Write ``{name: (SiteHost, keys)}`` to ``path`` (0600), sorted, atomically."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    lines = []
    for name in sorted(entries):
        host, keys = entries[name]
        lines += known_hosts_lines(host, keys)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write("".join(line + "\n" for line in lines))
    os.replace(tmp, path)


def merge_known_hosts(path, hosts_keys):
    """Make ``path`` hold exactly ``keys`` for each (host, keys) given; keep every other line.

    Returns True when the file changed. Used to hand the confirmed keys to the inventory's own
    known_hosts, so the regular playbooks and the checks reach the new site with strict checking.
    """
    try:
        with open(path, encoding="ascii") as fh:
            old = fh.read().splitlines()
    except FileNotFoundError:
        old = []
    labels = set()
    for host, _keys in hosts_keys:
        labels |= {host.name, host.address}
    kept = [ln for ln in old if ln.strip() and not (set(ln.split()[0].split(",")) & labels)]
    new = kept + [ln for host, keys in hosts_keys for ln in known_hosts_lines(host, keys)]
    if new == old:
        return False
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="ascii") as fh:
        fh.write("".join(ln + "\n" for ln in new))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return True


def combine_known_hosts(path, site_file, inventory_file):
    """Write ``path``: the site's recorded keys, then the inventory file's lines for every other host."""
    def read(p):
        try:
            with open(p, encoding="ascii") as fh:
                return [ln for ln in fh.read().splitlines() if ln.strip() and not ln.startswith("#")]
        except FileNotFoundError:
            return []
    site = read(site_file)
    labels = {lab for ln in site for lab in ln.split()[0].split(",")}
    lines = site + [ln for ln in read(inventory_file) if not set(ln.split()[0].split(",")) & labels]
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write("".join(ln + "\n" for ln in lines))
    os.replace(tmp, path)


# ---------------------------------------------------------------- logins


def ssh_argv(address, user, known_hosts, key_file=None, password=False, timeout=8):
    """ssh argv with strict host key checking against ``known_hosts`` only."""
    argv = ["ssh", "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes", "-o", f"ConnectTimeout={timeout}", "-o", "LogLevel=ERROR",
            "-o", "ControlMaster=no", "-o", "ControlPath=none"]
    if password:
        argv += ["-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive",
                 "-o", "NumberOfPasswordPrompts=1"]
    else:
        argv += ["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"]
        if key_file:
            argv += ["-i", key_file]
    return argv + [f"{user}@{address}"]


def key_login_works(host, user, key_file, known_hosts, command="true", run=subprocess.run):
    """True when ``user`` logs in to ``host`` with ``key_file`` (and ``command`` succeeds)."""
    res = run(ssh_argv(host.address, user, known_hosts, key_file) + [command],
              capture_output=True, text=True, check=False, timeout=30, stdin=subprocess.DEVNULL)
    return res.returncode == 0


#: sshpass exit codes (sshpass(1)).
SSHPASS_WRONG_PASSWORD = 5
SSHPASS_HOSTKEY_UNKNOWN = 6
SSHPASS_HOSTKEY_CHANGED = 7


def check_root_password(host, password, known_hosts, user="root", run=subprocess.run):
    """Try one password login as ``user``; raise :class:`BootstrapError` naming the host if refused.

    The password goes to sshpass through its environment (``SSHPASS``), never on a command line.
    """
    env = dict(os.environ)
    env.pop(PASSWORD_ENV, None)
    env["SSHPASS"] = password
    res = run(["sshpass", "-e"] + ssh_argv(host.address, user, known_hosts, password=True) + ["true"],
              capture_output=True, text=True, check=False, timeout=40, env=env, stdin=subprocess.DEVNULL)
    if res.returncode == 0:
        return
    err = (res.stderr or "").strip().splitlines()
    last = err[-1] if err else f"exit {res.returncode}"
    if res.returncode == SSHPASS_WRONG_PASSWORD or "Permission denied" in (res.stderr or ""):
        raise BootstrapError(
            f"{host.name} ({host.kind}, {host.address}): the {user} password was refused",
            f"type the installer's {user} password again (check the keyboard layout and Caps Lock); if the "
            f"installer disabled {user} password login, on the {host.kind}'s console set 'PermitRootLogin yes' "
            "and 'PasswordAuthentication yes' in /etc/ssh/sshd_config.d/ (bootstrap turns both off again) or "
            "use --root-key", host.name)
    if res.returncode in (SSHPASS_HOSTKEY_UNKNOWN, SSHPASS_HOSTKEY_CHANGED) or "Host key" in (res.stderr or ""):
        raise BootstrapError(f"{host.name} ({host.address}): host key not accepted ({last})",
                             "re-run: the host key step records and compares the keys first", host.name)
    raise BootstrapError(f"{host.name} ({host.address}): password login as {user} failed ({last})",
                         "check the host answers on SSH and allows password login for the first login", host.name)
