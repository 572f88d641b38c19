"""A blank county in the running lab: freshly installed hosts for ``jincai bootstrap`` to bring up.

``add(inventory, code)`` takes a lab inventory that holds the new county (a copy of inventories/lab
after ``jincai site add CODE --write -i COPY``) and attaches the county's hosts to the running lab:

* servers boot from the lab image with only what an installer leaves: a hostname, their addresses
  (management and LAN, default route via the site router), a root password, and sshd allowing root
  password login; there is no jincai account and no key (their SSH host keys are their own);
* the router boots with FRR running but an empty config and only its management address; its other
  ports are cabled (the WAN line to the parent router, the LAN switch) but unnumbered;
* the parent router's end of the new WAN line is cabled but unnumbered too: bootstrap configures it.

The model numbers a router's ports in order (uplinks, LAN, metro, downlinks), so a new county's
downlink normally takes the parent's next free port. Should a new code sort before an existing
sibling (``jincai site add`` then reports a PORT MOVE), ``add``, like a technician re-patching, renames the parent's kernel
interfaces to the new plan's names and ``remove`` renames them back (the parent's FRR config must then
be pushed again from the original inventory: ``remove(..., restore_inventory=...)`` does it).

``miswire=True`` plugs the WAN line into the router's LAN port (and the LAN into the uplink port): the
fault "cable in the wrong port" for the bootstrap tests.

Everything made here is recorded in ``/var/lib/jincai-lab/blank.json``; the hosts live under the
lab's own directories and namespaces, so ``jincai lab down`` removes them too. ``add`` and ``remove``
hold the lab's lock; neither touches the lab's known_hosts (bootstrap records the keys it meets).

CLI: ``python -m jincai.lab.blank add CODE -i INVENTORY [--miswire]`` (root password from
``JINCAI_BOOTSTRAP_PASSWORD``), ``remove CODE``, ``status``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from jincai.lab import lab, net, topology

BLANK_STATE = os.path.join(lab.LAB_DIR, "blank.json")
PASSWORD_ENV = "JINCAI_BOOTSTRAP_PASSWORD"
SSHD_DROPIN = "etc/ssh/sshd_config.d/50-jincai-blank.conf"
BOOT_TIMEOUT = 120


class BlankError(RuntimeError):
    """The blank county cannot be made; the message says why."""


def load_state():
    """Return ``{code: record}`` of the blank sites made so far."""
    try:
        with open(BLANK_STATE, encoding="utf-8") as fh:
            return json.load(fh)
    except (FileNotFoundError, ValueError):
        return {}


def save_state(state):
    """Write the blank sites' record atomically."""
    tmp = BLANK_STATE + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(state, fh, indent=1, sort_keys=True)
    os.replace(tmp, BLANK_STATE)


def _ns_links(ns):
    """``{ifname: [addresses with prefix]}`` of a namespace (loopback excluded)."""
    res = net.ip("-j", "addr", "show", ns=ns)
    out = {}
    for link in json.loads(res.stdout or "[]"):
        if link["ifname"] == "lo":
            continue
        out[link["ifname"]] = [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])
                               if a.get("family") == "inet"]
    return out


def _ns_index(ns):
    """``{ifindex: ifname}`` of a namespace (an index survives renames)."""
    res = net.ip("-j", "link", "show", ns=ns)
    return {str(link["ifindex"]): link["ifname"] for link in json.loads(res.stdout or "[]") if link["ifname"] != "lo"}


def plan_renames(existing, wanted):
    """Return ``[(old, new)]`` renames that give each address in ``wanted`` ({name: address}) its name.

    ``existing`` is ``{ifname: [addresses]}`` from the kernel. Interfaces whose address is not in
    ``wanted`` keep their names. Raises BlankError when a wanted name is held by an interface that
    would not move away.
    """
    by_addr = {a: name for name, addrs in existing.items() for a in addrs}
    renames = [(by_addr[addr], name) for name, addr in wanted.items() if addr in by_addr and by_addr[addr] != name]
    moving = {old for old, _ in renames}
    for _, new in renames:
        if new in existing and new not in moving:
            raise BlankError(f"interface {new} exists and is not being renamed; cannot give its name away")
    return renames


def _rename(ns, renames):
    """Rename interfaces in ``ns`` (two phases through temporary names, so swaps work)."""
    for i, (old, _new) in enumerate(renames):
        net.ip("link", "set", "dev", old, "down", ns=ns)
        net.ip("link", "set", "dev", old, "name", f"jbtmp{i}", ns=ns)
    for i, (_old, new) in enumerate(renames):
        net.ip("link", "set", "dev", f"jbtmp{i}", "name", new, ns=ns)
        net.ip("link", "set", "dev", new, "up", ns=ns)


def _drop_stray(rec, ns, wanted, log):
    """After re-patching, drop addresses FRR re-applied to an interface that now has another role.

    zebra keeps an interface's config by name: the new link that takes an old name gets the old
    address back. Remove it from FRR's running config (vtysh in the container) and from the kernel.
    """
    leader = lab.leader_pid(rec["pid"]) if lab.is_ours(rec) else None
    for _ in range(8):  # zebra applies the old name's config a moment after the link appears
        time.sleep(0.5)
        for name, addrs in _ns_links(ns).items():
            for addr in addrs:
                if addr != wanted.get(name) and addr in wanted.values():
                    if leader:
                        subprocess.run(["nsenter", "-t", str(leader), "-a", "vtysh", "-c", "configure terminal",
                                        "-c", f"interface {name}", "-c", f"no ip address {addr}", "-c", "no description"],
                                       capture_output=True, check=False)
                    net.ip("addr", "del", addr, "dev", name, ns=ns, check=False)
                    log(f"blank: dropped {addr} that FRR re-applied to the re-patched {name}")


def _prepare_root(host, image, password):
    """Mount the host's overlay and make it look freshly installed (no jincai account, root password)."""
    root = lab.mount_root(host.name, image)
    with open(os.path.join(root, "etc/hostname"), "w", encoding="ascii") as fh:
        fh.write(host.name + "\n")
    with open(os.path.join(root, "etc/hosts"), "w", encoding="ascii") as fh:
        fh.write(f"127.0.0.1\tlocalhost\n127.0.1.1\t{host.name}\n")
    subprocess.run(["chroot", root, "userdel", "--remove", "jincai"], check=True, capture_output=True)
    for path in ("etc/sudoers.d/jincai",):
        if os.path.exists(os.path.join(root, path)):
            os.unlink(os.path.join(root, path))
    subprocess.run(["chroot", root, "chpasswd"], input=f"root:{password}\n", text=True, check=True,
                   capture_output=True)
    with open(os.path.join(root, SSHD_DROPIN), "w", encoding="ascii") as fh:
        fh.write("# jincai lab: a freshly installed host (the installer allowed root password login)\n"
                 "PermitRootLogin yes\nPasswordAuthentication yes\n")
    if host.is_router:
        lab.prepare_router_os(root)
    with open(os.path.join(root, "etc/jincai-lab-host"), "w", encoding="ascii") as fh:
        fh.write(f"{host.name} blank\n")
    return root


def _wait(records, log, timeout=BOOT_TIMEOUT):
    """Wait until each host generated its host keys and answers on port 22."""
    deadline = time.monotonic() + timeout
    pending = dict(records)
    while pending:
        for name, rec in list(pending.items()):
            if not lab.is_ours(rec):
                raise BlankError(f"{name}: systemd-nspawn exited; see {lab.host_dir(name)}/console.log")
            if lab.host_keys(rec["root"]):
                try:
                    with socket.create_connection((rec["mgmt"], 22), timeout=1) as sock:
                        sock.settimeout(2)
                        if sock.recv(4) == b"SSH-":
                            pending.pop(name)
                except OSError:
                    pass
        if pending and time.monotonic() > deadline:
            raise BlankError(f"blank hosts not answering SSH after {timeout} s: {sorted(pending)}")
        time.sleep(0.3)
    log(f"blank: {len(records)} hosts booted and answering SSH")


def add(inventory, code, password, miswire=False, log=print):
    """Attach site ``code`` of ``inventory`` to the running lab as a blank site; return its record.

    Holds the lab's lock (as ``jincai lab up/down`` do), so it never races a lab bring-up.
    """
    with lab.locked(log):
        return _add(inventory, code, password, miswire, log)


def _add(inventory, code, password, miswire, log):
    if not password:
        raise BlankError(f"no root password for the blank hosts (set {PASSWORD_ENV})")
    labstate = lab.load_state()
    if not labstate.get("complete") or not all(lab.is_ours(r) for r in (labstate.get("hosts") or {}).values()):
        raise BlankError("the lab is not up: run jincai lab up first")
    plan = topology.plan(topology.load(inventory), source=inventory)
    hosts = [h for h in plan.hosts.values() if h.site == str(code)]
    if not hosts:
        raise BlankError(f"site {code} has no hosts in {inventory} (add it: jincai site add {code} --write -i {inventory})")
    clash = sorted(h.name for h in hosts if h.name in labstate["hosts"])
    if clash:
        raise BlankError(f"{', '.join(clash)} already run in the main lab; a blank site must be new")
    _remove(code, log=log)
    names = {h.name for h in hosts}
    record = {"inventory": os.path.abspath(inventory), "hosts": {}, "netns": [], "bridges": [], "renames": [],
              "parent_ns": None, "miswire": miswire}
    state = load_state()
    state[str(code)] = record
    save_state(state)  # before anything exists: remove() cleans up after a crash

    # Wiring: namespaces, management ports, the WAN line to the parent, the LAN switch.
    used = set(_ns_links(topology.SWITCH_NS))
    for host in hosts:
        net.new_namespace(host.netns)
        record["netns"].append(host.netns)
        save_state(state)
        port = next(f"bk{i}" for i in range(1000) if f"bk{i}" not in used)
        used.add(port)
        net.ip("link", "add", port, "type", "veth", "peer", "name", host.mgmt.name, "netns", host.netns,
               ns=topology.SWITCH_NS)
        net.ip("link", "set", port, "alias", f"mgmt {host.name} (blank)", "master", net.MGMT_BRIDGE,
               ns=topology.SWITCH_NS)
        subprocess.run(["bridge", "-n", topology.SWITCH_NS, "link", "set", "dev", port, "isolated", "on"], check=True)
        net.ip("link", "set", port, "up", ns=topology.SWITCH_NS)
        net.ip("addr", "add", host.mgmt.address.with_prefixlen, "dev", host.mgmt.name, ns=host.netns)
        net.ip("link", "set", host.mgmt.name, "up", ns=host.netns)
    router = next((h for h in hosts if h.is_router), None)
    swap = {}
    if miswire and router:
        up = next(i.name for i in router.interfaces if i.role == "uplink")
        lan = next(i.name for i in router.interfaces if i.role == "lan")
        swap = {up: lan, lan: up}
    for sidx, seg in enumerate(s for s in plan.segments.values() if any(h in names for h, _ in s.members)):
        if seg.point_to_point:
            (ha, ia), (hb, ib) = seg.members
            outer = ha if ha not in names else hb
            outer_if = ia if ha == outer else ib
            inner, inner_if = (hb, ib) if ha == outer else (ha, ia)
            parent = plan.hosts[outer]
            record["parent_ns"] = parent.netns
            record["parent_names"] = _ns_index(parent.netns)  # to give every port its name back
            save_state(state)
            wanted = {i.name: i.address.with_prefixlen for i in parent.interfaces}
            renames = plan_renames(_ns_links(parent.netns), wanted)
            if renames:
                log(f"blank: {outer}: the new plan renumbers its ports {renames}; re-patching")
                _rename(parent.netns, renames)
                record["renames"] = renames
                save_state(state)
            net.ip("link", "add", outer_if.name, "netns", parent.netns, "type", "veth", "peer", "name",
                   swap.get(inner_if.name, inner_if.name), "netns", plan.hosts[inner].netns, ns=topology.SWITCH_NS)
            record.setdefault("parent_links", []).append(outer_if.name)
            save_state(state)
            net.ip("link", "set", outer_if.name, "up", ns=parent.netns)
            _drop_stray(labstate["hosts"][outer], parent.netns, wanted, log)
            continue
        bridge = f"bb{code}{sidx}"[:15]
        net.ip("link", "add", bridge, "type", "bridge", "mcast_snooping", "0", ns=topology.SWITCH_NS)
        record["bridges"].append(bridge)
        save_state(state)
        net.ip("link", "set", bridge, "alias", f"{seg.id} (blank)", "up", ns=topology.SWITCH_NS)
        for hidx, (hname, iface) in enumerate(seg.members):
            port = f"bp{code}{sidx}{hidx}"[:15]
            ifname = swap.get(iface.name, iface.name) if hname == (router.name if router else None) else iface.name
            net.ip("link", "add", port, "type", "veth", "peer", "name", ifname, "netns", plan.hosts[hname].netns,
                   ns=topology.SWITCH_NS)
            net.ip("link", "set", port, "master", bridge, "up", ns=topology.SWITCH_NS)
    for host in hosts:
        for iface in host.interfaces:
            name = swap.get(iface.name, iface.name) if host.is_router else iface.name
            if not host.is_router:  # the installer numbered the servers; the router stays unnumbered
                net.ip("addr", "add", iface.address.with_prefixlen, "dev", name, ns=host.netns)
            net.ip("link", "set", name, "up", ns=host.netns)
        if not host.is_router:
            for dest, via in host.routes:
                net.ip("route", "replace", str(dest), "via", str(via), ns=host.netns)
        else:
            net.sysctl(host.netns, net__ipv4__ip_forward=1)

    # Roots and containers.
    image = labstate["image"]
    for host in hosts:
        root = _prepare_root(host, image, password)
        record["hosts"][host.name] = lab.start_container(host, root)
        save_state(state)
    _wait(record["hosts"], log)
    log(f"blank: site {code} attached: {', '.join(sorted(names))}"
        + (" (WAN line in the LAN port: miswired on purpose)" if miswire else ""))
    return record


def _stop(rec):
    pid = rec.get("pid")
    if not lab.is_ours(rec):
        return
    leader = lab.leader_pid(pid)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + lab.STOP_TIMEOUT
    while time.monotonic() < deadline and lab.proc_start_time(pid) == rec.get("start"):
        time.sleep(0.2)
    if lab.proc_start_time(pid) == rec.get("start"):
        for p in (leader, pid):
            try:
                if p:
                    os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def remove(code, log=print, restore_inventory=None):
    """Remove blank site ``code`` (containers, mounts, namespaces, bridges); undo the parent's re-patching.

    With ``restore_inventory``, push the parent router's config again from that inventory (the lab's
    own), so it forgets the downlink bootstrap gave it. Returns True when something was removed.
    Holds the lab's lock like ``add``.
    """
    with lab.locked(log):
        return _remove(code, log, restore_inventory)


def _remove(code, log=print, restore_inventory=None):
    state = load_state()
    record = state.get(str(code))
    if not record:
        return False
    for rec in record["hosts"].values():
        _stop(rec)
    for name in record["hosts"]:
        root = os.path.join(lab.host_dir(name), "root")
        if os.path.ismount(root):
            subprocess.run(["umount", root], check=False, capture_output=True)
            if os.path.ismount(root):
                subprocess.run(["umount", "-l", root], check=False)
        shutil.rmtree(lab.host_dir(name), ignore_errors=True)
    parent_ns = record.get("parent_ns")
    parent_alive = parent_ns and os.path.exists(os.path.join(net.NETNS_DIR, parent_ns))
    for name in record.get("parent_links", []) if parent_alive else []:
        net.ip("link", "delete", name, ns=parent_ns, check=False)  # the parent's end of the new line
    for ns in record["netns"]:
        if os.path.exists(os.path.join(net.NETNS_DIR, ns)):
            net.ip("netns", "delete", ns, check=False)
    for bridge in record["bridges"]:
        net.ip("link", "delete", bridge, ns=topology.SWITCH_NS, check=False)
    if parent_alive and record.get("parent_names"):
        # Give each of the parent's ports its name from before (by ifindex; a rebuilt lab has other
        # indexes and is left alone).
        now = _ns_index(parent_ns)
        back = [(now[i], name) for i, name in record["parent_names"].items() if i in now and now[i] != name]
        if back:
            _rename(parent_ns, back)
    state.pop(str(code), None)
    save_state(state)
    log(f"blank: site {code} removed")
    if restore_inventory and parent_ns:
        from jincai.run import run as run_playbook

        parent = parent_ns[len(topology.NS_PREFIX):]
        res = run_playbook("playbooks/routers.yml", inventory=restore_inventory, args=["--limit", parent])
        if res.rc != 0:
            raise BlankError(f"{parent}: pushing its config from {restore_inventory} failed:\n{res.output[-2000:]}")
        log(f"blank: {parent}: config restored from {restore_inventory}")
    return True


def main(argv=None):
    """``python -m jincai.lab.blank add|remove|status``."""
    p = argparse.ArgumentParser(prog="python -m jincai.lab.blank", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("add", help="attach a blank site (root password from $" + PASSWORD_ENV + ")")
    a.add_argument("code")
    a.add_argument("-i", "--inventory", required=True, help="a lab inventory holding the site (a copy)")
    a.add_argument("--miswire", action="store_true", help="plug the WAN line into the LAN port")
    r = sub.add_parser("remove", help="remove a blank site")
    r.add_argument("code")
    r.add_argument("--restore-inventory", help="push the parent router's config again from this inventory")
    sub.add_parser("status", help="list blank sites")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("jincai lab blank: must run as root", file=sys.stderr)
        return 2
    try:
        if args.cmd == "add":
            add(args.inventory, args.code, os.environ.get(PASSWORD_ENV, ""), miswire=args.miswire,
                log=lambda m: print(m, flush=True))
        elif args.cmd == "remove":
            remove(args.code, restore_inventory=args.restore_inventory, log=lambda m: print(m, flush=True))
        else:
            for code, rec in sorted(load_state().items()):
                alive = sum(lab.is_ours(r) for r in rec["hosts"].values())
                print(f"{code}: {alive}/{len(rec['hosts'])} running ({', '.join(sorted(rec['hosts']))})")
    except (BlankError, topology.TopologyError, net.NetError, subprocess.CalledProcessError) as exc:
        print(f"jincai lab blank: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
