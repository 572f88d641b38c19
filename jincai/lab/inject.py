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
    suffix = "-backup" if backup else ""
    for first, second in ((ra, rb), (rb, ra)):
        seg_id = f"wan-{first.site}-{second.site}{suffix}"
        seg = plan.segments.get(seg_id)
        if seg is not None:
            ends = {h: i.name for h, i in seg.members}
            return seg_id, [(first.name, ends[first.name]), (second.name, ends[second.name])]
    kind = "backup" if backup else "primary"
    raise InjectError(f"no {kind} WAN link between {ra.site} and {rb.site}")


def set_link(plan, a, b, action, backup=False, log=print):
    """Cut (``down``) or restore (``up``) a WAN link; returns the segment id."""
    seg_id, ends = find_link(plan, a, b, backup)
    state = lab.load_state()
    cuts = set(state.get("cuts") or [])
    (parent, pif), (child, cif) = ends
    if action == "down":
        net.ip("link", "set", pif, "down", ns=plan.netns(parent))
        cuts.add(seg_id)
        log(f"link {seg_id} cut ({parent} {pif} down; {child} {cif} lost carrier)")
    else:
        net.ip("link", "set", pif, "up", ns=plan.netns(parent))
        net.ip("link", "set", cif, "up", ns=plan.netns(child))
        cuts.discard(seg_id)
        log(f"link {seg_id} restored")
    state["cuts"] = sorted(cuts)
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
