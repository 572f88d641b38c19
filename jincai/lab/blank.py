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

``inband=True`` attaches the county as production has it (``plan.management.mode: inband``; make the
copy in-band with :func:`switch_to_inband` before ``jincai site add``): **no management link** at all
(the hosts have no ``eth0``), the router only its WAN line to the parent, the servers only the LAN; the
router has no address at all (factory state: the day-0 kit numbers it). The control node then reaches
the county only over the WAN, through the province router, as in production:

* the province's in-band **management zone** (``plan.management.network`` of the copy, 198.18.2.0/24
  as production's 10.22.2.0/24 maps in the twin) is made a segment of the province router: a veth
  ``jlab-ib`` in the control node's namespace holds the control node's zone address (the zone's last
  address), its peer ``mgmtzone`` in the province router's namespace the router's (the zone's first
  address, as the model gives production's province router); the province's FRR advertises the zone in
  OSPF, passive (the lines roles/router renders for an in-band province), so the county routes back;
* the control node routes the county's in-band addresses (router loopback /32, LAN) via the province
  router's zone address: :func:`inband_routes`, all inside 198.18.0.0/15.

Nothing else changes in the running lab (its hosts keep their out-of-band management), and ``remove``
undoes all of it (link, routes, the province's OSPF lines).

Everything made here is recorded in ``/var/lib/jincai-lab/blank.json``; the hosts live under the
lab's own directories and namespaces, so ``jincai lab down`` removes them too. ``add`` and ``remove``
hold the lab's lock; neither touches the lab's known_hosts (bootstrap records the keys it meets).

CLI: ``python -m jincai.lab.blank add CODE -i INVENTORY [--miswire] [--inband]`` (root password from
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

import ipaddress

import yaml

from jincai.lab import lab, net, topology

BLANK_STATE = os.path.join(lab.LAB_DIR, "blank.json")
PASSWORD_ENV = "JINCAI_BOOTSTRAP_PASSWORD"
SSHD_DROPIN = "etc/ssh/sshd_config.d/50-jincai-blank.conf"
BOOT_TIMEOUT = 120
#: The province's in-band management zone of an in-band lab copy: the lab province block's third /24,
#: where the twin puts production's zone (10.22.2.0/24 -> 198.18.2.0/24).
INBAND_ZONE = "198.18.2.0/24"
#: The zone's link: the control node's end (its own namespace) and the province router's end.
ZONE_HOST_LINK = "jlab-ib"
ZONE_ROUTER_LINK = "mgmtzone"


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


def switch_to_inband(inventory_dir, zone=INBAND_ZONE):
    """Make a lab inventory copy in-band: ``plan.management`` becomes ``{mode: inband, network: zone}``.

    Sites already in the copy keep their ``mgmt`` addresses (the running lab still manages them out of
    band); a site added afterwards (``jincai site add``) records none, so its hosts' management
    addresses (``ansible_host``) are their in-band ones: the router's loopback, the servers' LAN
    addresses. Rewrites ``source/network.yml`` (a copy: its comments are not kept)."""
    path = os.path.join(inventory_dir, "source", "network.yml")
    with open(path, encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    zone_net = ipaddress.ip_network(zone)
    if not zone_net.subnet_of(topology.LAB_RANGE):
        raise BlankError(f"in-band management zone {zone} is outside the lab range {topology.LAB_RANGE}")
    doc["network"]["plan"]["management"] = {"mode": "inband", "network": str(zone_net)}
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write("---\n# jincai lab: an in-band copy (jincai.lab.blank.switch_to_inband)\n")
        yaml.safe_dump(doc, fh, allow_unicode=True, sort_keys=False, default_flow_style=False)
    os.replace(tmp, path)
    return path


def inband_hosts(hostvars, code):
    """Names of site ``code``'s hosts that have no out-of-band management port (managed in-band)."""
    return sorted(n for n, hv in hostvars.items() if str(hv.get("jincai_site_code")) == str(code)
                  and not any(i.get("role") == "mgmt" and i.get("segment") == "mgmt"
                              for i in hv.get("jincai_interfaces") or []))


def inband_routes(hostvars, code):
    """The prefixes the control node routes via the province to reach site ``code`` in-band.

    One per management address (``ansible_host``) of the site's hosts: the router's loopback as a /32,
    a server's LAN prefix. All must lie in the lab range (nothing else is ever routed)."""
    out = set()
    for name in inband_hosts(hostvars, code):
        hv = hostvars[name]
        addr = ipaddress.ip_address(str(hv["jincai_mgmt_address"]).split("/")[0])
        loopback = (hv.get("jincai_router") or {}).get("loopback")
        if loopback and addr == ipaddress.ip_address(str(loopback).split("/")[0]):
            prefix = ipaddress.ip_network(f"{addr}/32")
        else:
            prefix = next((ipaddress.ip_interface(i["address"]).network for i in hv.get("jincai_interfaces") or []
                           if addr in ipaddress.ip_interface(i["address"]).network), None)
            if prefix is None:
                raise BlankError(f"{name}: management address {addr} is on none of its interfaces")
        if not prefix.subnet_of(topology.LAB_RANGE):
            raise BlankError(f"{name}: in-band prefix {prefix} is outside the lab range {topology.LAB_RANGE}")
        out.add(prefix)
    return sorted(out)


def inband_zone(inv, code):
    """The in-band management zone of an in-band lab inventory dict, for attaching site ``code``.

    Returns ``{network, router, router_address, control_address, area, routes}``: the province router
    holds the zone's first address (as the model gives production's province router), the control node
    the zone's last; ``routes`` are :func:`inband_routes`. Raises BlankError when the copy is not in-band
    (the zone must be a prefix of the lab range that the management networks of the site name)."""
    hostvars = (inv.get("_meta") or {}).get("hostvars") or {}
    site = [hv for hv in hostvars.values() if str(hv.get("jincai_site_code")) == str(code)]
    if not site:
        raise BlankError(f"site {code} has no hosts in the inventory")
    nets = site[0].get("jincai_management_networks") or []
    zone = ipaddress.ip_network(nets[0]) if nets else None
    if zone is None or not zone.subnet_of(topology.LAB_RANGE) or zone.subnet_of(topology.MGMT_RANGE):
        raise BlankError(f"site {code}: the management network {zone} is not an in-band zone of the lab range "
                         "(make the copy in-band first: jincai.lab.blank.switch_to_inband)")
    province = [n for n in ((inv.get("province") or {}).get("hosts") or [])
                if n in set((inv.get("routers") or {}).get("hosts") or [])]
    if len(province) != 1:
        raise BlankError(f"the inventory has {len(province)} province routers; the zone needs exactly one")
    hosts = list(zone.hosts())
    routes = inband_routes(hostvars, code)
    for prefix in routes:
        if prefix.overlaps(zone):
            raise BlankError(f"site {code}: in-band prefix {prefix} overlaps the management zone {zone}")
    area = str(hostvars[province[0]]["jincai_router"]["ospf"]["area"])
    if area.isdigit():
        area = str(ipaddress.ip_address(int(area)))
    return {"network": str(zone), "router": province[0],
            "router_address": f"{hosts[0]}/{zone.prefixlen}", "control_address": f"{hosts[-1]}/{zone.prefixlen}",
            "area": area, "routes": [str(p) for p in routes]}


def zone_frr_commands(ifname, area):
    """vtysh lines that advertise the zone port in the province router's OSPF, passive: what
    templates/router/frr.j2 renders for an in-band province's management-zone interface."""
    return ["configure terminal", f"interface {ifname}", "description mgmt (in-band management zone, lab)",
            f"ip ospf area {area}", "ip ospf passive", "end"]


def lab_plan(inv, source, code, inband):
    """The lab plan of the inventory directory ``source`` (``inv`` is its inventory dict); with
    ``inband``, site ``code``'s hosts have ``mgmt=None``: jincai/lab/topology.py plans them with no port
    on the lab's out-of-band management network (``without_mgmt``). Refuses a site whose hosts do not match ``inband`` (a copy not switched, or switched and not asked)."""
    hostvars = inv["_meta"]["hostvars"]
    names = sorted(n for n, hv in hostvars.items() if str(hv.get("jincai_site_code")) == str(code))
    inb = inband_hosts(hostvars, code)
    if inband and set(inb) != set(names):
        raise BlankError(f"site {code}: {', '.join(sorted(set(names) - set(inb)))} have out-of-band management "
                         "addresses; for an in-band site switch the copy first (switch_to_inband), then site add")
    if not inband and inb:
        raise BlankError(f"site {code}: {', '.join(inb)} have no out-of-band management address: "
                         "attach it in-band (--inband)")
    m = topology.load(source)
    return topology.plan(m, source=source, without_mgmt=inb if inband else ())


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


def sshd_listening(netns):
    """True when something listens on TCP port 22 in ``netns`` (read with ss(8); sends nothing)."""
    res = subprocess.run(["ss", "-N", netns, "-H", "-l", "-t", "-n", "sport = :22"], capture_output=True,
                         text=True, check=False)
    return res.returncode == 0 and bool(res.stdout.strip())


def _wait(records, log, timeout=BOOT_TIMEOUT):
    """Wait until each host generated its host keys and answers on port 22 (an in-band host, which
    the control node cannot reach before its day-0 kit: until sshd listens in its namespace)."""
    deadline = time.monotonic() + timeout
    pending = dict(records)
    while pending:
        for name, rec in list(pending.items()):
            if not lab.is_ours(rec):
                raise BlankError(f"{name}: systemd-nspawn exited; see {lab.host_dir(name)}/console.log")
            if lab.host_keys(rec["root"]) and rec.get("inband"):
                if sshd_listening(rec["netns"]):
                    pending.pop(name)
            elif lab.host_keys(rec["root"]):
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


def add(inventory, code, password, miswire=False, log=print, inband=False):
    """Attach site ``code`` of ``inventory`` to the running lab as a blank site; return its record.

    ``inband``: no management link; the control node reaches the site over the WAN only (module doc).
    Holds the lab's lock (as ``jincai lab up/down`` do), so it never races a lab bring-up.
    """
    with lab.locked(log):
        return _add(inventory, code, password, miswire, log, inband)


def _root_conflicts(zone, routes):
    """What in the control node's own namespace already uses the zone or the county's prefixes."""
    nets = [ipaddress.ip_network(zone)] + [ipaddress.ip_network(r) for r in routes]
    found = []
    for link in json.loads(net.ip("-j", "addr", "show").stdout or "[]"):
        if link["ifname"] == ZONE_HOST_LINK:
            continue
        for a in link.get("addr_info", []):
            if a.get("family") == "inet":
                addr = ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}")
                if any(addr.network.overlaps(n) for n in nets):
                    found.append(f"{addr} on {link['ifname']}")
    for route in json.loads(net.ip("-j", "route", "show").stdout or "[]"):
        dst = route.get("dst")
        if route.get("dev") == ZONE_HOST_LINK or not dst or dst == "default":
            continue
        if any(ipaddress.ip_network(dst, strict=False).overlaps(n) for n in nets):
            found.append(f"route {dst} dev {route.get('dev')}")
    return found


def _vtysh(rec, commands):
    """Run vtysh ``commands`` in a lab router's container; raise BlankError on an FRR error."""
    leader = lab.leader_pid(rec["pid"]) if lab.is_ours(rec) else None
    if not leader:
        raise BlankError("the province router is not running")
    argv = ["nsenter", "-t", str(leader), "-a", "vtysh"]
    for c in commands:
        argv += ["-c", c]
    res = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    if res.returncode != 0 or "% " in res.stdout:
        raise BlankError(f"vtysh {commands}: {(res.stdout + res.stderr).strip()[-400:]}")


def _attach_zone(record, state, zone, labstate, log):
    """The province's in-band management zone and the control node's routes to the county."""
    others = [c for c, r in load_state().items() if r.get("zone") and c != record["code"]]
    router_ns = topology.NS_PREFIX + zone["router"]
    record["zone"] = dict(zone, router_ns=router_ns)
    save_state(state)
    if not others:
        conflicts = _root_conflicts(zone["network"], zone["routes"])
        if conflicts:
            raise BlankError(f"the control node already uses the zone or the county's prefixes: {'; '.join(conflicts)}")
        net.ip("link", "delete", ZONE_HOST_LINK, check=False)  # a leftover of a crashed run (the name is the lab's)
        net.ip("link", "add", ZONE_HOST_LINK, "type", "veth", "peer", "name", ZONE_ROUTER_LINK, "netns", router_ns)
        with open(f"/proc/sys/net/ipv6/conf/{ZONE_HOST_LINK}/disable_ipv6", "w", encoding="ascii") as fh:
            fh.write("1")
        net.ip("addr", "add", zone["control_address"], "dev", ZONE_HOST_LINK)
        net.ip("link", "set", ZONE_HOST_LINK, "alias", "jincai lab: in-band management zone", "up")
        net.ip("addr", "add", zone["router_address"], "dev", ZONE_ROUTER_LINK, ns=router_ns)
        net.ip("link", "set", ZONE_ROUTER_LINK, "up", ns=router_ns)
        _vtysh(labstate["hosts"][zone["router"]], zone_frr_commands(ZONE_ROUTER_LINK, zone["area"]))
        log(f"blank: management zone {zone['network']}: control node {zone['control_address']} "
            f"<-> {zone['router']} {ZONE_ROUTER_LINK} {zone['router_address']} (OSPF area {zone['area']}, passive)")
    via = zone["router_address"].split("/")[0]
    for prefix in zone["routes"]:
        net.ip("route", "replace", prefix, "via", via, "dev", ZONE_HOST_LINK)
    log(f"blank: control node routes {', '.join(zone['routes'])} via {zone['router']} ({via})")


def _detach_zone(record, code, log):
    zone = record.get("zone")
    if not zone:
        return
    for prefix in zone["routes"]:
        net.ip("route", "del", prefix, "dev", ZONE_HOST_LINK, check=False)
    others = [c for c, r in load_state().items() if r.get("zone") and c != str(code)]
    if others:
        return
    net.ip("link", "delete", ZONE_HOST_LINK, check=False)  # both ends
    labstate = lab.load_state()
    rec = (labstate.get("hosts") or {}).get(zone["router"])
    if rec and lab.is_ours(rec):
        for attempt in range(20):  # zebra learns that the port is gone a moment after the link is deleted
            try:
                _vtysh(rec, ["configure terminal", f"no interface {ZONE_ROUTER_LINK}", "end"])
                break
            except BlankError as exc:
                if attempt == 19:
                    log(f"blank: {zone['router']}: could not drop the zone port's FRR config: {exc}")
                time.sleep(0.3)
    log(f"blank: management zone {zone['network']} removed")


def _add(inventory, code, password, miswire, log, inband=False):
    if not password:
        raise BlankError(f"no root password for the blank hosts (set {PASSWORD_ENV})")
    labstate = lab.load_state()
    if not labstate.get("complete") or not all(lab.is_ours(r) for r in (labstate.get("hosts") or {}).values()):
        raise BlankError("the lab is not up: run jincai lab up first")
    from jincai.source import inventory as invmod

    inv = invmod.build(inventory)
    if not any(str(hv.get("jincai_site_code")) == str(code) for hv in inv["_meta"]["hostvars"].values()):
        raise BlankError(f"site {code} has no hosts in {inventory} (add it: jincai site add {code} --write -i {inventory})")
    plan = lab_plan(inv, inventory, code, inband)
    zone = inband_zone(inv, code) if inband else None
    hosts = [h for h in plan.hosts.values() if h.site == str(code)]
    clash = sorted(h.name for h in hosts if h.name in labstate["hosts"])
    if clash:
        raise BlankError(f"{', '.join(clash)} already run in the main lab; a blank site must be new")
    _remove(code, log=log)
    names = {h.name for h in hosts}
    record = {"inventory": os.path.abspath(inventory), "hosts": {}, "netns": [], "bridges": [], "renames": [],
              "parent_ns": None, "miswire": miswire, "inband": inband, "code": str(code)}
    state = load_state()
    state[str(code)] = record
    save_state(state)  # before anything exists: remove() cleans up after a crash

    # Wiring: namespaces, management ports, the WAN line to the parent, the LAN switch.
    used = set(_ns_links(topology.SWITCH_NS))
    for host in hosts:
        net.new_namespace(host.netns)
        record["netns"].append(host.netns)
        save_state(state)
        if host.mgmt is None:
            continue  # in-band: no management link at all
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

    if zone:
        _attach_zone(record, state, zone, labstate, log)

    # Roots and containers.
    image = labstate["image"]
    hostvars = inv["_meta"]["hostvars"]
    for host in hosts:
        root = _prepare_root(host, image, password)
        rec = lab.start_container(host, root)
        if host.mgmt is None:  # in-band: managed on its loopback / LAN address, over the WAN
            rec.update(mgmt=str(hostvars[host.name]["jincai_mgmt_address"]), inband=True)
        record["hosts"][host.name] = rec
        save_state(state)
    _wait(record["hosts"], log)
    log(f"blank: site {code} attached: {', '.join(sorted(names))}"
        + (" (WAN line in the LAN port: miswired on purpose)" if miswire else "")
        + (" (in-band: no management link; reached over the WAN only)" if inband else ""))
    return record


#: seconds a blank host gets to power off before it is killed: it is thrown away (its root is deleted
#: next), so nothing on it needs a clean shutdown, and systemd-nspawn took over 40 s to exit after the
#: container halted (measured: every removal ended in the kill after lab.STOP_TIMEOUT, one host at a time)
STOP_GRACE = 3


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
    lab.stop_processes(record["hosts"], log=lambda _m: None, timeout=STOP_GRACE, strays=False)
    for name in record["hosts"]:
        root = os.path.join(lab.host_dir(name), "root")
        if os.path.ismount(root):
            subprocess.run(["umount", root], check=False, capture_output=True)
            if os.path.ismount(root):
                subprocess.run(["umount", "-l", root], check=False)
        shutil.rmtree(lab.host_dir(name), ignore_errors=True)
    _detach_zone(record, code, log)
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
    a.add_argument("--inband", action="store_true",
                   help="no management link: reached over the WAN only (an in-band copy, switch_to_inband)")
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
                inband=args.inband, log=lambda m: print(m, flush=True))
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
