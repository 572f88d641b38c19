"""``jincai lab up | down | status | ssh HOST [CMD]``.

Every check that can fail (root, tools, kernel features, the topology itself) runs before anything
is created, and fails with one line.
"""

import concurrent.futures
import ipaddress
import os
import shlex
import shutil
import socket
import subprocess
import sys

from jincai import ROOT
from jincai.lab import inject, lab, net, topology, twin
from jincai.lab import image as imagemod
from jincai.source import model

TOOLS = ("systemd-nspawn", "ip", "bridge", "mount", "umount", "chroot", "nsenter", "ssh", "ssh-keygen",
         "sysctl", "unshare")


class PreflightError(RuntimeError):
    """The machine cannot run the lab; one line says why."""


def _say(msg):
    print(f"jincai lab: {msg}", flush=True)


def check_root(euid=None):
    """Refuse to run without root."""
    if (os.geteuid() if euid is None else euid) != 0:
        raise PreflightError("must run as root (network namespaces, mounts and systemd-nspawn need it)")


def check_tools(need_debootstrap, which=shutil.which):
    """Refuse to run when a command the lab needs is missing (naming its Debian package)."""
    packages = {"systemd-nspawn": "systemd-container", "debootstrap": "debootstrap", "ip": "iproute2",
                "bridge": "iproute2", "ssh": "openssh-client", "ssh-keygen": "openssh-client",
                "nsenter": "util-linux", "unshare": "util-linux", "sysctl": "procps"}
    tools = TOOLS + (("debootstrap",) if need_debootstrap else ())
    for tool in tools:
        if not which(tool):
            raise PreflightError(f"command {tool!r} not found: apt-get install "
                                 f"{packages.get(tool, tool)}")


def check_kernel(filesystems="/proc/filesystems"):
    """Refuse to run without overlayfs, network/PID namespaces, veth and bridges."""
    with open(filesystems, encoding="ascii") as fh:
        have_overlay = any(line.split()[-1] == "overlay" for line in fh if line.strip())
    if not have_overlay and shutil.which("modprobe"):
        subprocess.run(["modprobe", "overlay"], capture_output=True, check=False)
        with open(filesystems, encoding="ascii") as fh:
            have_overlay = any(line.split()[-1] == "overlay" for line in fh if line.strip())
    if not have_overlay:
        raise PreflightError("kernel feature missing: overlayfs (modprobe overlay)")
    for ns in ("net", "pid", "mnt", "uts", "ipc"):
        if not os.path.exists(f"/proc/self/ns/{ns}"):
            raise PreflightError(f"kernel feature missing: {ns} namespaces")
    # veth and bridge, probed in a throwaway namespace that dies with the command.
    probe = subprocess.run(["unshare", "--net", "sh", "-c",
                            "ip link add jp0 type veth peer name jp1 && ip link add jpb type bridge"],
                           capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        raise PreflightError(f"kernel feature missing: veth or bridge links ({probe.stderr.strip()})")


def check_mgmt_free(mgmt_network=topology.MGMT_NETWORK):
    """Refuse to run when the control node already uses the management subnet elsewhere."""
    res = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True)
    for line in res.stdout.splitlines():
        parts = line.split()
        dev, addr = parts[1], ipaddress.ip_interface(parts[3])
        if dev != net.HOST_LINK and addr.network.overlaps(mgmt_network):
            raise PreflightError(f"{addr} on {dev} overlaps the lab management network "
                                 f"{mgmt_network}; remove it first")


def load_plan(inventory):
    """Load and validate the topology (raises TopologyError with one line)."""
    return topology.plan(topology.load(inventory), source=inventory)


def default_inventory(args):
    """``-i`` when given, else the inventory the running lab was brought up from, else the small lab."""
    if getattr(args, "inventory", None):
        return args.inventory
    source = lab.load_state().get("source")
    if source and os.path.exists(source):
        return source
    return os.path.join(ROOT, "inventories", "lab")


def make_twin(production, out=None):
    """Write the twin of ``production``, render its routers' production-platform configs beside it
    (``<out>-vendor-configs/``, checked by the push engine's parser); return (out, plan)."""
    out = out or twin.default_out_dir(production)
    twin.translate(production, out)
    m = topology.load(out)
    plan = topology.plan(m, source=out)
    configs = twin.vendor_configs(m.derived().hosts, out.rstrip("/") + "-vendor-configs")
    platforms = sorted({p for p, _ in configs.values()})
    _say(f"twin of {production} written to {out}: {len(plan.hosts)} hosts, {len(plan.stubs)} party "
         f"stubs, {len(plan.segments)} segments, management {plan.control}; {len(configs)} router configs "
         f"rendered and parsed for their production platforms ({', '.join(platforms)})")
    return out, plan


def cmd_twin(args):
    """Write the twin inventory of a production source; print where and what it holds."""
    make_twin(args.production, args.output)
    return 0


def cmd_up(args):
    """Build the image if needed and bring the lab up (no-op when already up)."""
    check_root()
    if args.twin:
        args.inventory, plan = make_twin(args.twin)
    else:
        args.inventory = default_inventory(args)
        plan = load_plan(args.inventory)
    cached = os.path.isfile(os.path.join(imagemod.image_path(), ".jincai-image"))
    check_tools(need_debootstrap=not cached)
    check_kernel()
    check_mgmt_free(plan.mgmt_network)
    with lab.locked(log=_say):
        lab.up(plan, log=_say)
    return 0


def cmd_down(args):
    """Remove every container, namespace, link, mount and directory the lab made."""
    check_root()
    with lab.locked(log=_say):
        had = lab.teardown(log=_say)
    _say("lab down" if had else "lab down (nothing was running)")
    return 0


#: Above this many hosts, ``status`` prints a summary per tier and only the hosts that are not well.
DETAIL_LIMIT = 30


def tier_of(name):
    """Tier of a lab host from its site code prefix (``220000`` province, ``220100`` city, else county);
    budget-unit and township clients (the twin's ``bu<code>-N``, ``tw<code>-N``) count with their
    concentrator's site."""
    code = name[2:8] if name.startswith(("bu", "tw")) and name[2:8].isdigit() else name[:6]
    if not code.isdigit():
        return "other"
    return "province" if code[2:] == "0000" else "city" if code[4:] == "00" else "county"


def cmd_status(args):
    """Print the lab's hosts: one line each, or for a large lab a summary per tier (``--all`` for
    every line), the hosts that are not running or not SSH-ready, and any injected failure."""
    state = lab.load_state()
    hosts = state.get("hosts") or {}
    if not hosts:
        _say("lab is down")
        return 3
    names = sorted(hosts)
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        ready = dict(zip(names, pool.map(lambda n: lab.is_ours(hosts[n]) and lab.ssh_ready(n, hosts[n]),
                                         names)))
    detail = getattr(args, "all", False) or len(hosts) <= DETAIL_LIMIT
    rows, tiers = [], {}
    for name in names:
        rec = hosts[name]
        mine = lab.is_ours(rec)
        mem = lab.host_memory_kib(rec) / 1024
        t = tiers.setdefault(tier_of(name), [0, 0, 0, 0.0])
        t[0], t[1], t[2], t[3] = t[0] + 1, t[1] + mine, t[2] + ready[name], t[3] + mem
        if detail or not (mine and ready[name]):
            rows.append(f"{name:18} {rec['pid']:>8} {rec['mgmt']:15} {'running' if mine else 'GONE':8} "
                        f"{'ready' if ready[name] else 'no':5} {mem:7.1f}")
    if not detail:
        print(f"{'tier':10} {'hosts':>5} {'running':>7} {'ssh':>5} {'PSS MiB':>8}")
        for tier in ("province", "city", "county", "other"):
            if tier in tiers:
                n, run, ok, mem = tiers[tier]
                print(f"{tier:10} {n:5} {run:7} {ok:5} {mem:8.0f}")
        print(f"{len(state.get('stubs') or {})} party stubs (namespaces only); `jincai lab status --all` "
              "lists every host")
    if rows:
        if not detail:
            print("not well:")
        print(f"{'host':18} {'pid':>8} {'mgmt':15} {'process':8} {'ssh':5} {'PSS MiB':>7}")
        print("\n".join(rows))
    for seg in state.get("cuts") or []:
        print(f"injected: link {seg} is cut (`jincai lab link up ...` restores it)")
    for name in state.get("stopped") or []:
        print(f"injected: host {name} powered off (`jincai lab host start {name}`)")
    alive = sum(t[1] for t in tiers.values())
    ok = sum(t[2] for t in tiers.values())
    total = sum(t[3] for t in tiers.values())
    print(f"{alive}/{len(hosts)} running, {ok}/{len(hosts)} SSH ready, {total:.0f} MiB PSS in all; "
          f"{'complete' if state.get('complete') else 'INCOMPLETE (run `jincai lab up`)'}; "
          f"inventory {state.get('source')}; image {state.get('image')}")
    return 0 if ok == len(hosts) else 1


def cmd_link(args):
    """Cut or restore a WAN link (failure injection)."""
    check_root()
    plan = load_plan(default_inventory(args))
    with lab.locked(log=_say):
        inject.set_link(plan, args.a, args.b, args.action, backup=args.backup, inband=args.inband, log=_say)
    return 0


def cmd_host(args):
    """Power a host off or boot it again (failure injection)."""
    check_root()
    with lab.locked(log=_say):
        if args.action == "stop":
            inject.stop_host(args.host, log=_say)
        else:
            inject.start_host(load_plan(default_inventory(args)), args.host, log=_say)
    return 0


def cmd_ssh(args):
    """Open a shell (or run a command) on a lab host: SSH as jincai, nsenter if SSH is not up."""
    state = lab.load_state()
    rec = (state.get("hosts") or {}).get(args.host)
    if rec is None:
        raise PreflightError(f"no lab host {args.host!r} (see `jincai lab status`)")
    command = [c for c in args.command if c != "--"] if args.command else []
    try:
        with socket.create_connection((rec["mgmt"], 22), timeout=2):
            reachable = True
    except OSError:
        reachable = False
    if reachable:
        argv = lab.ssh_base(rec["mgmt"], batch=False)
        if not command and sys.stdin.isatty():
            argv.insert(1, "-t")
        # One argument is a shell string ('ip a; ip r'); several keep their quoting (vtysh -c 'show ...').
        remote = command if len(command) <= 1 else [shlex.join(command)]
        os.execvp("ssh", argv + remote)
    check_root()
    leader = lab.leader_pid(rec["pid"]) if lab.is_ours(rec) else None
    if not leader:
        raise PreflightError(f"{args.host}: container is not running")
    _say(f"{args.host}: SSH not reachable, entering the container with nsenter")
    os.execvp("nsenter", ["nsenter", "-t", str(leader), "-a", "--"] + (command or ["/bin/bash", "-l"]))
    return 1


def run(args):
    """Dispatch ``jincai lab <cmd>``; returns the exit code."""
    handlers = {"up": cmd_up, "down": cmd_down, "status": cmd_status, "ssh": cmd_ssh, "twin": cmd_twin,
                "link": cmd_link, "host": cmd_host}
    try:
        return handlers[args.lab_cmd](args)
    except (PreflightError, topology.TopologyError, twin.TwinError, inject.InjectError,
            model.SourceError) as exc:
        print(f"jincai lab: {exc}", file=sys.stderr)
        return 2
    except (lab.LabError, net.NetError, subprocess.CalledProcessError, OSError) as exc:
        print(f"jincai lab: {args.lab_cmd} failed: {exc}", file=sys.stderr)
        if args.lab_cmd == "up":
            print("jincai lab: the next `jincai lab up` clears what this run left; "
                  "`jincai lab down` removes it now", file=sys.stderr)
        return 1
