"""Lab bring-up and tear-down: overlay roots, per-host customisation, systemd-nspawn containers.

Everything the lab creates is recorded in ``/var/lib/jincai-lab/state.json`` as it is created
(namespaces, mounts, container PIDs with their kernel start time), so ``down`` and the clean-up
that ``up`` does first remove exactly what a previous run made, even after a crash. Processes are
stopped by the PIDs recorded there (SIGTERM to systemd-nspawn, which powers the container off);
they are never looked up by a process name.
"""

import concurrent.futures
import contextlib
import fcntl
import json
import os
import shlex
import signal
import socket
import subprocess
import time

from jincai.lab import image as imagemod
from jincai.lab import net

LAB_DIR = "/var/lib/jincai-lab"
HOSTS_DIR = os.path.join(LAB_DIR, "hosts")
SSH_DIR = os.path.join(LAB_DIR, "ssh")
KEYS_DIR = os.path.join(LAB_DIR, "keys")
LAB_KEY = os.path.join(SSH_DIR, "id_ed25519")
KNOWN_HOSTS = os.path.join(SSH_DIR, "known_hosts")
STATE_FILE = os.path.join(LAB_DIR, "state.json")
LOCK_FILE = "/run/jincai-lab.lock"
CAPABILITIES = "CAP_NET_ADMIN,CAP_NET_RAW,CAP_SYS_ADMIN"
BOOT_TIMEOUT = 240
STOP_TIMEOUT = 30


class LabError(RuntimeError):
    """A lab operation failed; the message is meant for the operator."""


# ---------------------------------------------------------------- state and process identity


@contextlib.contextmanager
def locked(log=print):
    """Serialise ``up``/``down`` between engineers sharing the machine (flock on LOCK_FILE)."""
    with open(LOCK_FILE, "a", encoding="ascii") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("waiting for another `jincai lab` command to finish")
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def load_state():
    """Return the recorded state (empty dict when the lab was never brought up)."""
    try:
        with open(STATE_FILE, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return {}
    except ValueError:
        return {"corrupt": True}


def save_state(state):
    """Write the state atomically."""
    os.makedirs(LAB_DIR, exist_ok=True)
    tmp = STATE_FILE + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(state, fh, indent=1, sort_keys=True)
    os.replace(tmp, STATE_FILE)


def proc_start_time(pid):
    """Return the kernel start time (clock ticks since boot) of ``pid``, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            stat = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def alive(pid):
    """True when ``pid`` runs (a zombie counts as gone; our own zombie children are reaped)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def is_ours(rec):
    """True when the recorded process still runs and is the very process we started."""
    pid = rec.get("pid")
    if not pid or proc_start_time(pid) != rec.get("start"):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
    except FileNotFoundError:
        return False
    return bool(argv) and argv[0].endswith(b"systemd-nspawn") and \
        b"--directory=" + rec["root"].encode() in argv


def leader_pid(nspawn_pid):
    """Return the PID of the container's init (the child of systemd-nspawn), or None."""
    try:
        for task in os.listdir(f"/proc/{nspawn_pid}/task"):
            with open(f"/proc/{nspawn_pid}/task/{task}/children", encoding="ascii") as fh:
                kids = fh.read().split()
            if kids:
                return int(kids[0])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def pss_kib(pids):
    """Return the summed proportional set size (KiB) of ``pids`` (from smaps_rollup)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def pid_namespace_members(leader):
    """Return every PID in the PID namespace whose init is ``leader`` (the container's processes)."""
    try:
        target = os.readlink(f"/proc/{leader}/ns/pid")
    except FileNotFoundError:
        return []
    if target == os.readlink("/proc/self/ns/pid"):
        return [leader]  # not yet in its own PID namespace (container still starting)
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") == target:
                    members.append(int(entry))
            except (FileNotFoundError, PermissionError):
                continue
    return members


def host_memory_kib(rec):
    """Return the PSS (KiB) of a host: systemd-nspawn plus every process in the container."""
    leader = leader_pid(rec["pid"]) if is_ours(rec) else None
    if not leader:
        return 0
    return pss_kib(pid_namespace_members(leader) + [rec["pid"]])


# ---------------------------------------------------------------- cgroups

CGROUP_NAME = "jincai-lab"


def cgroup_mounts(mountinfo="/proc/self/mountinfo"):
    """Return the mount points of the hierarchies systemd uses: cgroup2 and cgroup v1 name=systemd."""
    found = []
    with open(mountinfo, encoding="utf-8") as fh:
        for line in fh:
            left, right = line.split(" - ", 1)
            fstype, _source, options = right.split()[:3]
            if fstype == "cgroup2" or (fstype == "cgroup" and "name=systemd" in options.split(",")):
                found.append(left.split()[4])
    return found


def make_cgroups(name):
    """Create the host's own cgroup in each systemd hierarchy; return their directories.

    With --keep-unit and no systemd on the control node, systemd-nspawn puts its container below
    the cgroup it was started in. Started side by side from one cgroup, every container's systemd
    would manage the same ``/payload/system.slice/...`` cgroups (units of one container failing
    with 219/CGROUP, or stopping another container's processes), so each host gets its own.
    """
    dirs = []
    for mount in cgroup_mounts():
        path = os.path.join(mount, CGROUP_NAME, name)
        os.makedirs(path, exist_ok=True)
        dirs.append(path)
    return dirs


def remove_cgroups():
    """Remove the lab's (empty) cgroups, deepest first; cgroups still holding processes stay."""
    for mount in cgroup_mounts():
        top = os.path.join(mount, CGROUP_NAME)
        if not os.path.isdir(top):
            continue
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


# ---------------------------------------------------------------- keys


def ensure_keys(plan, log=print):
    """Create the lab key pair and one key pair per technician that lists ``key_file``."""
    os.makedirs(SSH_DIR, mode=0o700, exist_ok=True)
    os.makedirs(KEYS_DIR, mode=0o700, exist_ok=True)
    pairs = [(LAB_KEY, "jincai-lab")]
    for user, key_file in plan.technicians:
        base = key_file[:-4] if key_file.endswith(".pub") else key_file
        if not os.path.isabs(base) or os.path.dirname(base) != KEYS_DIR:
            base = os.path.join(KEYS_DIR, user)
        pairs.append((base, f"{user}@jincai-lab"))
    for path, comment in pairs:
        if not os.path.exists(path):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path],
                           check=True)
            log(f"keys: generated {path}")
    with open(LAB_KEY + ".pub", encoding="ascii") as fh:
        return fh.read().strip()


# ---------------------------------------------------------------- host roots


def host_dir(name):
    """Return the directory holding a host's overlay (upper, work, root) and console log."""
    return os.path.join(HOSTS_DIR, name)


def _passwd_ids(root, user):
    with open(os.path.join(root, "etc/passwd"), encoding="utf-8") as fh:
        for line in fh:
            parts = line.split(":")
            if parts[0] == user:
                return int(parts[2]), int(parts[3])
    raise LabError(f"user {user} missing from the image")


def _authorize(root, user, home, pubkey):
    uid, gid = _passwd_ids(root, user)
    ssh = os.path.join(root, home.lstrip("/"), ".ssh")
    os.makedirs(ssh, mode=0o700, exist_ok=True)
    path = os.path.join(ssh, "authorized_keys")
    with open(path, "w", encoding="ascii") as fh:
        fh.write(pubkey + "\n")
    os.chmod(path, 0o600)
    for p in (ssh, path):
        os.chown(p, uid, gid)


def prepare_router_os(root):
    """Make an overlay root a router's OS: FRR with ospfd enabled at boot, IP forwarding on."""
    daemons = os.path.join(root, "etc/frr/daemons")
    with open(daemons, encoding="utf-8") as fh:
        text = fh.read()
    with open(daemons, "w", encoding="utf-8") as fh:
        fh.write(text.replace("ospfd=no", "ospfd=yes"))
    with open(os.path.join(root, "etc/sysctl.d/90-jincai-lab-router.conf"), "w", encoding="ascii") as fh:
        fh.write("# jincai lab: a router forwards packets\nnet.ipv4.ip_forward = 1\n")
    subprocess.run(["systemctl", f"--root={root}", "--quiet", "enable", "frr.service"], check=True)


def mount_root(name, image):
    """Mount host *name*'s overlay (image below, the host's own upper layer above); return its root."""
    hdir = host_dir(name)
    upper, work, root = (os.path.join(hdir, d) for d in ("upper", "work", "root"))
    for d in (upper, work, root):
        os.makedirs(d, exist_ok=True)
    if not os.path.ismount(root):
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={image},upperdir={upper},workdir={work}", root], check=True)
    return root


def prepare_root(host, image, pubkey, control):
    """Mount the host's overlay root and customise it (hostname, keys, router bits) once.

    ``control`` is the control node's management address (``jincai-control`` in /etc/hosts)."""
    root = mount_root(host.name, image)
    marker = os.path.join(root, "etc/jincai-lab-host")
    if os.path.exists(marker):
        return root
    with open(os.path.join(root, "etc/hostname"), "w", encoding="ascii") as fh:
        fh.write(host.name + "\n")
    with open(os.path.join(root, "etc/hosts"), "w", encoding="ascii") as fh:
        fh.write(f"127.0.0.1\tlocalhost\n127.0.1.1\t{host.name}\n{control.ip}\tjincai-control\n")
    _authorize(root, "jincai", "/home/jincai", pubkey)
    if host.is_router:
        subprocess.run(["chroot", root, "useradd", "--create-home", "--shell", "/usr/bin/vtysh",
                        "--groups", "frr,frrvty", "--comment", "jincai netmiko (vtysh)", "netops"],
                       check=True)
        with open(os.path.join(root, "etc/shells"), "a", encoding="ascii") as fh:
            fh.write("/usr/bin/vtysh\n")
        _authorize(root, "netops", "/home/netops", pubkey)
        prepare_router_os(root)
    with open(marker, "w", encoding="ascii") as fh:
        fh.write(f"{host.name}\n")
    return root


def start_container(host, root):
    """Start systemd-nspawn for ``host`` in the background; return its state record."""
    log = open(os.path.join(host_dir(host.name), "console.log"), "ab")  # noqa: SIM115 (kept by child)
    cmd = ["systemd-nspawn", "--quiet", "--boot", "--register=no", "--keep-unit",
           f"--directory={root}", f"--machine={host.name}",
           f"--network-namespace-path={net.NETNS_DIR}/{host.netns}",
           f"--capability={CAPABILITIES}", "--resolv-conf=off", "--timezone=off",
           "--link-journal=no", "--console=read-only"]
    cgroups = make_cgroups(host.name)

    def enter_cgroups():  # runs in the child, before exec
        for path in cgroups:
            with open(os.path.join(path, "cgroup.procs"), "w", encoding="ascii") as fh:
                fh.write("0")

    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, close_fds=True, preexec_fn=enter_cgroups)
    log.close()
    start = None
    for _ in range(50):
        start = proc_start_time(proc.pid)
        if start is not None:
            break
        time.sleep(0.01)
    return {"pid": proc.pid, "start": start, "root": root, "netns": host.netns,
            "mgmt": str(host.mgmt.address.ip) if host.mgmt else None,  # None: in-band (jincai/lab/blank.py)
            "router": host.is_router, "cgroups": cgroups}


# ---------------------------------------------------------------- SSH


def ssh_base(address, user="jincai", batch=True):
    """Return the ssh argv prefix for a lab host (lab key, lab known_hosts, strict checking)."""
    argv = ["ssh", "-i", LAB_KEY, "-o", f"UserKnownHostsFile={KNOWN_HOSTS}", "-o", "StrictHostKeyChecking=yes",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=3", "-o", "LogLevel=ERROR"]
    if batch:
        argv += ["-o", "BatchMode=yes"]
    return argv + [f"{user}@{address}"]


CONTROL_DIR = "/tmp/jincai-lab-cp"


def run_on(host, cmd, sudo=True, user="jincai", check=False, timeout=60, state=None, address=None):
    """Run ``cmd`` (a shell string) on lab host ``host`` over SSH; return the CompletedProcess.

    With ``sudo`` the command runs as root through ``sudo -n sh -c``. With ``check`` a non-zero exit
    raises AssertionError showing stdout and stderr (this is what the lab tests call). One multiplexed
    connection per container instance (its nspawn PID is in the path, so a rebooted or rebuilt host
    never reuses a dead one) and user; it exits 30 s after last use. ``address`` serves hosts the
    state file does not list (a blank county attached by the bootstrap tests).
    """
    remote = f"sudo -n sh -c {shlex.quote(cmd)}" if sudo else cmd
    rec = ((state or load_state()).get("hosts") or {}).get(host) or {}
    if not (rec.get("mgmt") or address):
        raise LabError(f"no lab host {host!r} in the lab's state (is the lab up?)")
    base = ssh_base(rec.get("mgmt") or address, user=user)
    os.makedirs(CONTROL_DIR, mode=0o700, exist_ok=True)
    argv = base[:1] + ["-o", "ControlMaster=auto", "-o", f"ControlPath={CONTROL_DIR}/{host}-{rec.get('pid')}-%r",
                       "-o", "ControlPersist=30s", "-o", "ServerAliveInterval=5"] + base[1:] + [remote]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and res.returncode != 0:
        raise AssertionError(f"{host}: `{cmd}` exited {res.returncode}\nstdout: {res.stdout}\n"
                             f"stderr: {res.stderr}")
    return res


def host_keys(root):
    """Return the host's public SSH host keys as ``type base64`` strings (empty until generated)."""
    keys = []
    for kind in ("ed25519", "ecdsa"):
        path = os.path.join(root, f"etc/ssh/ssh_host_{kind}_key.pub")
        try:
            with open(path, encoding="ascii") as fh:
                keys.append(" ".join(fh.read().split()[:2]))
        except FileNotFoundError:
            return []
    return keys


def write_known_hosts(records):
    """Record every host's keys (read from its own root, not over the network) in KNOWN_HOSTS."""
    lines = []
    for name, rec in sorted(records.items()):
        for key in host_keys(rec["root"]):
            lines.append(f"{name},{rec['mgmt']} {key}\n")
    tmp = KNOWN_HOSTS + ".tmp"
    with open(tmp, "w", encoding="ascii") as fh:
        fh.writelines(lines)
    os.replace(tmp, KNOWN_HOSTS)


def ssh_ready(name, rec):
    """True when the host answers SSH as jincai with its own hostname."""
    try:
        with socket.create_connection((rec["mgmt"], 22), timeout=1):
            pass
    except OSError:
        return False
    res = subprocess.run(ssh_base(rec["mgmt"]) + ["hostname"], capture_output=True, text=True,
                         timeout=15, check=False)
    return res.returncode == 0 and res.stdout.strip() == name


def boot_timeout(count):
    """Seconds to wait for ``count`` hosts to boot and answer SSH: BOOT_TIMEOUT for the small lab,
    plus 2 s per host beyond 20 (two cores boot the province twin's 172 hosts in a few minutes)."""
    return BOOT_TIMEOUT + 2 * max(0, count - 20)


def wait_ready(records, log=print, timeout=None):
    """Wait until every host generated its keys (booted) and answers SSH; print N/M progress."""
    total = len(records)
    timeout = timeout or boot_timeout(total)
    deadline = time.monotonic() + timeout
    booted, last, last_log = set(), -1, 0.0
    while len(booted) < total:
        for name, rec in records.items():
            if name not in booted and host_keys(rec["root"]):
                booted.add(name)
            if not is_ours(rec):
                raise LabError(f"{name}: systemd-nspawn exited; see {host_dir(name)}/console.log")
        if len(booted) != last and (len(booted) - last >= max(1, total // 10) or len(booted) == total
                                    or time.monotonic() - last_log > 5):
            log(f"hosts booted {len(booted)}/{total}")
            last, last_log = len(booted), time.monotonic()
        if time.monotonic() > deadline:
            raise LabError(f"hosts not booted after {timeout} s: {sorted(set(records) - booted)}")
        time.sleep(0.5)
    write_known_hosts(records)
    ready, last = set(), -1
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        while len(ready) < total:
            todo = [n for n in records if n not in ready]
            for name, ok in zip(todo, pool.map(lambda n: ssh_ready(n, records[n]), todo)):
                if ok:
                    ready.add(name)
            if len(ready) != last:
                log(f"SSH ready {len(ready)}/{total}")
                last = len(ready)
            if len(ready) < total:
                if time.monotonic() > deadline:
                    raise LabError(f"no SSH after {timeout} s: {sorted(set(records) - ready)}")
                time.sleep(1)


# ---------------------------------------------------------------- up / down


def stray_nspawn_pids():
    """Return PIDs of systemd-nspawn processes running one of OUR host roots (crash leftovers).

    Only processes whose command line names a directory under HOSTS_DIR qualify: this finds the
    lab's own containers when the state file is lost, never anything else.
    """
    found = []
    marker = (HOSTS_DIR + "/").encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except (FileNotFoundError, ProcessLookupError):
            continue
        if argv and argv[0].endswith(b"systemd-nspawn") and any(
                a.startswith(b"--directory=" + marker) for a in argv):
            found.append(int(entry))
    return found


def stop_processes(records, log=print, timeout=STOP_TIMEOUT, strays=True):
    """SIGTERM our systemd-nspawn processes together, wait up to ``timeout`` s, then kill what is left
    (by recorded PID); ``strays``: also every other systemd-nspawn of the lab (a crashed run's)."""
    live = {}
    for name, rec in records.items():
        if is_ours(rec):
            live[name] = (rec["pid"], leader_pid(rec["pid"]))
    for pid in stray_nspawn_pids() if strays else []:
        if pid not in {p for p, _ in live.values()}:
            live[f"pid {pid}"] = (pid, leader_pid(pid))
    for pid, _ in live.values():
        os.kill(pid, signal.SIGTERM)
    if live:
        log(f"stopping {len(live)} containers")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p, _ in live.values()):
        time.sleep(0.2)
    for name, (pid, leader) in live.items():
        if alive(pid):
            log(f"{name}: did not power off in {timeout} s, killing its container")
            if leader:
                try:
                    os.kill(leader, signal.SIGKILL)  # init of the PID namespace: takes it all down
                except ProcessLookupError:
                    pass
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(p) for p, _ in live.values()):
        time.sleep(0.2)


def teardown(log=print):
    """Remove everything a (possibly crashed) earlier run made: processes, mounts, links, dirs."""
    state = load_state()
    records = state.get("hosts", {}) if isinstance(state.get("hosts"), dict) else {}
    stop_processes(records, log)
    mounts = imagemod.mounts_under(HOSTS_DIR) if os.path.isdir(HOSTS_DIR) else []
    for point in mounts:
        subprocess.run(["umount", point], check=False, capture_output=True)
    for point in imagemod.mounts_under(HOSTS_DIR) if os.path.isdir(HOSTS_DIR) else []:
        subprocess.run(["umount", "-l", point], check=False)
    net.teardown(state.get("netns"))
    remove_cgroups()
    if os.path.isdir(HOSTS_DIR):
        imagemod.remove_tree(HOSTS_DIR)
    if os.path.exists(STATE_FILE):
        os.unlink(STATE_FILE)
    return bool(records or mounts)


def stale_reason(state, plan, image):
    """Return why the recorded lab cannot be kept as it is, or None when it is up and unchanged."""
    hosts = state.get("hosts") or {}
    if not state:
        return "no lab recorded"
    if not state.get("complete"):
        return "an earlier `up` did not finish"
    if state.get("image") != image:
        return "the image changed (packages.txt or build-image.sh)"
    if state.get("fingerprint") != plan.fingerprint() or set(hosts) != set(plan.hosts):
        return "the topology in the inventory changed"
    dead = sorted(n for n, r in hosts.items() if not is_ours(r))
    if dead:
        return f"containers gone: {', '.join(dead)}"
    missing = sorted(r["netns"] for r in hosts.values()
                     if not os.path.exists(os.path.join(net.NETNS_DIR, r["netns"])))
    if missing or not net.host_link_exists():
        return "network namespaces or the management link are gone"
    return None


def revivable(state, plan, image):
    """Return the hosts whose container stopped (poweroff, crash) in an otherwise intact lab.

    Their namespaces (with every link and address) and overlay roots are still there, so they are
    simply booted again, like a rebooted machine; the rest of the lab is left untouched.
    """
    hosts = state.get("hosts") or {}
    if not (state.get("complete") and state.get("image") == image
            and state.get("fingerprint") == plan.fingerprint() and set(hosts) == set(plan.hosts)
            and net.host_link_exists()):
        return []
    dead = sorted(n for n, r in hosts.items() if not is_ours(r))
    if any(alive(hosts[n]["pid"]) and proc_start_time(hosts[n]["pid"]) == hosts[n].get("start")
           for n in dead):
        return []  # a recorded process still runs but does not look like ours: start afresh
    for name in dead:
        rec = hosts[name]
        if not (os.path.ismount(rec["root"]) and os.path.exists(os.path.join(net.NETNS_DIR, rec["netns"]))
                and leader_pid(rec["pid"]) is None):
            return []
    return dead


#: Kernel limits a lab of N hosts needs on the machine (each container's systemd takes inotify
#: instances and keys; the default 128 inotify instances per user stop the ~60th container with
#: "Failed to allocate manager object: Too many open files"). Raised, never lowered.
HOST_LIMITS = {"fs/inotify/max_user_instances": lambda n: 128 + 40 * n,
               "fs/inotify/max_user_watches": lambda n: 65536 + 8192 * n,
               "kernel/keys/maxkeys": lambda n: 200 + 20 * n,
               "kernel/keys/maxbytes": lambda n: 20000 + 1000 * n}


def raise_host_limits(count, log=print, proc="/proc/sys"):
    """Raise the machine's kernel limits (HOST_LIMITS) to what ``count`` containers need."""
    for key, need in HOST_LIMITS.items():
        path = os.path.join(proc, key)
        with open(path, encoding="ascii") as fh:
            have = int(fh.read().split()[0])
        want = need(count)
        if have < want:
            with open(path, "w", encoding="ascii") as fh:
                fh.write(str(want))
            log(f"host limit {key.replace('/', '.')}: {have} -> {want} (for {count} containers)")


def up(plan, log=print):
    """Bring the lab up for ``plan``; a no-op when it is already up and unchanged."""
    raise_host_limits(len(plan.hosts), log)
    image = imagemod.ensure(log=log)
    # also on a lab that is up: a person added to the source since needs a key pair (not part of the topology)
    pubkey = ensure_keys(plan, log)
    state = load_state()
    reason = stale_reason(state, plan, image)
    if reason is None:
        log(f"lab already up: {len(plan.hosts)} hosts, nothing changed")
        wait_ready(state["hosts"], log=log)
        return state
    dead = revivable(state, plan, image)
    if dead:
        log(f"restarting {len(dead)} stopped container(s), the others keep running: {', '.join(dead)}")
        for name in dead:
            state["hosts"][name] = start_container(plan.hosts[name], state["hosts"][name]["root"])
            state["stopped"] = sorted(set(state.get("stopped") or []) - {name})  # `lab host stop` undone
            save_state(state)
        wait_ready(state["hosts"], log=log)
        log(f"lab up: {len(plan.hosts)} hosts")
        return state
    if state or net.lab_namespaces() or net.host_link_exists() or stray_nspawn_pids() or (
            os.path.isdir(HOSTS_DIR) and os.listdir(HOSTS_DIR)):
        log(f"clearing the previous lab: {reason if state else 'leftovers without a state file'}")
        teardown(log)
    t0 = time.monotonic()
    state = {"version": 1, "image": image, "fingerprint": plan.fingerprint(), "source": plan.source,
             "netns": [net.SWITCH_NS] + [h.netns for h in plan.hosts.values()]
             + [s.netns for s in plan.stubs.values()], "hosts": {},
             "stubs": {n: {"netns": s.netns, "address": str(s.iface.address.ip), "site": s.site, "kind": s.kind}
                       for n, s in plan.stubs.items()},
             "complete": False}
    save_state(state)  # before anything exists: a crash from here on is cleaned by the next run
    net.build(plan, log)
    roots = {}
    for host in plan.hosts.values():
        roots[host.name] = prepare_root(host, image, pubkey, plan.control)
    log(f"roots: {len(roots)} overlays on {os.path.basename(image)}")
    for idx, host in enumerate(plan.hosts.values(), 1):
        state["hosts"][host.name] = start_container(host, roots[host.name])
        save_state(state)
    log(f"containers: {len(plan.hosts)} started in {time.monotonic() - t0:.1f} s")
    wait_ready(state["hosts"], log=log)
    state["complete"] = True
    state["ready_seconds"] = round(time.monotonic() - t0, 1)
    save_state(state)
    for old in imagemod.stale_images():
        imagemod.remove_tree(old)
        log(f"image: removed the superseded {old}")
    log(f"lab up: {len(plan.hosts)} hosts, all SSH-ready in {state['ready_seconds']} s; "
        f"key {LAB_KEY}, known_hosts {KNOWN_HOSTS}")
    return state

