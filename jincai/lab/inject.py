"""Failure injection on the running lab: cut and restore WAN links, power hosts off and on.

Used by operators (``jincai lab link down 220100 220102``, ``jincai lab host stop 220102-app1``) and by
tests (the province twin's reconvergence and unreachable-site proofs). Every action is recorded in the
lab's state file (``cuts``, ``stopped``), so ``jincai lab status`` shows what was injected, and is undone
by the matching ``up``/``start`` (or by ``jincai lab down``, which removes everything).

A cut link is a pulled cable: the parent router's port is set down, so both routers lose the link at
once (the child's end of the veth pair loses its carrier) and OSPF on both sides drops the adjacency
immediately, as it would on a real line failure. The router's own configuration is not touched.
"""

import os
import signal
import time

from jincai.lab import lab, net
from jincai.source import model


class InjectError(RuntimeError):
    """The requested link or host does not exist, or is already in that state."""


def _router(plan, name):
    """The router of a site code (``220100``) or a router host name (``220100-rtr``)."""
    if name in plan.hosts and plan.hosts[name].is_router:
        return plan.hosts[name]
    routers = [h for h in plan.hosts.values() if h.is_router and h.site == name]
    if not routers:
        raise InjectError(f"no router for {name!r} (give a site code or a router name)")
    return routers[0]


def find_link(plan, a, b, backup=False):
    """Return ``(segment id, [(host, ifname), (host, ifname)])`` of the WAN link between two sites,
    parent first."""
    ra, rb = _router(plan, a), _router(plan, b)
    for first, second in ((ra, rb), (rb, ra)):
        seg_id = model.wan_segment(first.site, second.site, "backup" if backup else "primary")
        seg = plan.segments.get(seg_id)
        if seg is not None:
            ends = {h: i.name for h, i in seg.members}
            return seg_id, [(first.name, ends[first.name]), (second.name, ends[second.name])]
    kind = "backup" if backup else "primary"
    raise InjectError(f"no {kind} WAN link between {ra.site} and {rb.site}")


def isolated_hosts(plan, child_site, cuts):
    """Hosts cut off from the province once the links in ``cuts`` are down: those of ``child_site``
    when none of its uplinks is left, and of every site below it that has no live uplink elsewhere."""
    links = [p for p in map(model.parse_wan_segment, plan.segments) if p]  # (parent, child, role)
    if any(model.wan_segment(*p) not in cuts for p in links if p[1] == child_site):
        return []
    below = {child_site}
    changed = True
    while changed:  # sites every live uplink of which leads into `below` (220184's backup to the
        changed = False  # province keeps it reachable when its city is cut off)
        for parent, child, _role in links:
            if parent in below and child not in below and all(
                    p in below or model.wan_segment(p, c, r) in cuts for p, c, r in links if c == child):
                below.add(child)
                changed = True
    return sorted(h.name for h in plan.hosts.values() if h.site in below)


def set_link(plan, a, b, action, backup=False, inband=False, log=print):
    """Cut (``down``) or restore (``up``) a WAN link; returns the segment id.

    ``inband`` shows what production (in-band management) sees: the management ports of every host
    the cut isolates from the province go down with it, so the control node loses them too.
    """
    seg_id, ends = find_link(plan, a, b, backup)
    state = lab.load_state()
    cuts = set(state.get("cuts") or [])
    dark = dict(state.get("dark") or {})  # segment -> hosts whose management went down with it
    (parent, pif), (child, cif) = ends
    if action == "down":
        net.ip("link", "set", pif, "down", ns=plan.netns(parent))
        cuts.add(seg_id)
        log(f"link {seg_id} cut ({parent} {pif} down; {child} {cif} lost carrier)")
        if inband:
            hosts = isolated_hosts(plan, plan.hosts[child].site, cuts)
            for name in hosts:
                net.ip("link", "set", plan.hosts[name].mgmt.name, "down", ns=plan.netns(name))
            dark[seg_id] = hosts
            log(f"in-band: management lost to {len(hosts)} isolated host(s): {' '.join(hosts) or 'none'}")
    else:
        net.ip("link", "set", pif, "up", ns=plan.netns(parent))
        net.ip("link", "set", cif, "up", ns=plan.netns(child))
        cuts.discard(seg_id)
        for name in dark.pop(seg_id, []):
            net.ip("link", "set", plan.hosts[name].mgmt.name, "up", ns=plan.netns(name))
        log(f"link {seg_id} restored")
    state["cuts"] = sorted(cuts)
    state["dark"] = dark
    lab.save_state(state)
    return seg_id


def stop_host(name, log=print, timeout=lab.STOP_TIMEOUT):
    """Power a lab host off (SIGTERM to its systemd-nspawn, like pressing the power button)."""
    state = lab.load_state()
    rec = (state.get("hosts") or {}).get(name)
    if rec is None:
        raise InjectError(f"no lab host {name!r}")
    if not lab.is_ours(rec):
        raise InjectError(f"{name} is not running")
    os.kill(rec["pid"], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while lab.alive(rec["pid"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    if lab.alive(rec["pid"]):
        raise InjectError(f"{name} did not power off in {timeout} s")
    state["stopped"] = sorted(set(state.get("stopped") or []) | {name})
    lab.save_state(state)
    log(f"host {name} powered off")


def start_host(plan, name, log=print):
    """Boot a stopped lab host again (its disk state kept) and wait for SSH."""
    state = lab.load_state()
    rec = (state.get("hosts") or {}).get(name)
    if rec is None or name not in plan.hosts:
        raise InjectError(f"no lab host {name!r}")
    if lab.is_ours(rec):
        raise InjectError(f"{name} is already running")
    state["hosts"][name] = lab.start_container(plan.hosts[name], rec["root"])
    state["stopped"] = sorted(set(state.get("stopped") or []) - {name})
    lab.save_state(state)
    lab.wait_ready({name: state["hosts"][name]}, log=lambda _msg: None)
    log(f"host {name} booted and SSH-ready")
