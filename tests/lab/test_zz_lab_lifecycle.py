"""Lab lifecycle: ``up`` reboots a stopped container, ``down`` leaves nothing behind, ``up`` recovers
from a crashed run, fresh sites are isolated until routing runs. Runs LAST (file name): it rebuilds the lab, so whatever earlier tests
provisioned is gone afterwards; the lab is left up (fresh, unprovisioned).
"""

import os
import signal
import subprocess
import time

import pytest

from conftest import JINCAI, hostvars, jincai_lab, lab_state, run_on
from jincai.lab import lab as labmod
from jincai.lab import net

pytestmark = pytest.mark.lifecycle


def _ours(path):
    return path.startswith(labmod.LAB_DIR + "/") or path.startswith(f"{net.NETNS_DIR}/jlab-")


def snapshot():
    """What the lab adds to the control node: namespaces, host links, mounts, nspawn files.

    Other engineers may run their own namespaces and containers on the same machine, so mounts are
    compared by the lab's own paths, and the rest by set difference.
    """
    netns = sorted(os.listdir(net.NETNS_DIR)) if os.path.isdir(net.NETNS_DIR) else []
    links = sorted(os.listdir("/sys/class/net"))
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        mounts = sorted(line.split()[4] for line in fh if _ours(line.split()[4]))
    nspawn = []
    for sub in ("locks", "propagate"):
        path = f"/run/systemd/nspawn/{sub}"
        nspawn += sorted(f"{sub}/{n}" for n in os.listdir(path)) if os.path.isdir(path) else []
    return {"netns": netns, "links": links, "mounts": mounts, "nspawn": nspawn}


def container_processes(state):
    """Return every PID of the lab: the systemd-nspawn processes and all processes inside."""
    pids = set()
    for rec in state["hosts"].values():
        pids.add(rec["pid"])
        leader = labmod.leader_pid(rec["pid"])
        if leader:
            pids.update(labmod.pid_namespace_members(leader))
    return pids


@pytest.fixture(scope="module")
def before(lab_up):
    """The control node with the lab up, before the lab is taken down."""
    state = lab_state()
    return {"snap": snapshot(), "state": state, "pids": container_processes(state)}


def test_up_reboots_a_stopped_container_and_leaves_the_others(lab_up):
    state = lab_state()
    victim = "bu0002"
    rec = state["hosts"][victim]
    os.kill(rec["pid"], signal.SIGTERM)  # powers the container off, like `poweroff` inside
    deadline = time.monotonic() + 60
    while labmod.alive(rec["pid"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not labmod.alive(rec["pid"])
    res = jincai_lab("up")
    assert res.returncode == 0, res.stderr + res.stdout
    assert f"restarting 1 stopped container(s), the others keep running: {victim}" in res.stdout
    after = lab_state()["hosts"]
    assert {h: r["pid"] for h, r in after.items() if h != victim} == {
        h: r["pid"] for h, r in state["hosts"].items() if h != victim}
    assert after[victim]["pid"] != rec["pid"] and labmod.is_ours(after[victim])
    assert run_on(victim, "hostname", sudo=False).stdout.strip() == victim


def test_down_leaves_nothing_behind(before):
    assert len(before["pids"]) > 2 * len(before["state"]["hosts"])
    res = jincai_lab("down")
    assert res.returncode == 0, res.stderr
    after = snapshot()
    assert [n for n in after["netns"] if n.startswith("jlab-")] == []
    # (>=: extra hosts attached by jincai.lab.blank live in the lab's namespaces and go too)
    assert set(before["snap"]["netns"]) - set(after["netns"]) >= {r["netns"] for r in
                                                                  before["state"]["hosts"].values()} | {"jlab-sw"}
    assert set(before["snap"]["links"]) - set(after["links"]) == {net.HOST_LINK}
    assert set(after["links"]) <= set(before["snap"]["links"])
    hosts = len(before["state"]["hosts"])
    assert len(before["snap"]["mounts"]) >= 2 * hosts + 1  # overlay roots, host netns, switch netns
    assert after["mounts"] == []
    assert set(after["nspawn"]) <= set(before["snap"]["nspawn"])
    alive = [p for p in before["pids"] if labmod.alive(p)]  # zombies awaiting the init's reaping are gone
    assert alive == [], f"still running after down: {alive}"
    assert not os.path.exists(labmod.HOSTS_DIR)
    assert [m for m in labmod.cgroup_mounts() if os.path.exists(os.path.join(m, labmod.CGROUP_NAME))] == []
    assert lab_state() == {}
    status = jincai_lab("status")
    assert status.returncode == 3 and "lab is down" in status.stdout
    again = jincai_lab("down")
    assert again.returncode == 0 and "nothing was running" in again.stdout


def test_up_clears_the_leftovers_of_a_crashed_up(before):
    """Kill `jincai lab up` once containers run; the next `up` must clear them and succeed."""
    proc = subprocess.Popen([JINCAI, "lab", "up"], stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if "hosts booted" in line and not line.split()[-1].startswith("0/"):
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    crashed = lab_state()
    assert crashed and not crashed.get("complete")
    orphans = container_processes(crashed)
    assert orphans, "the killed run left no containers: nothing to test"
    start = time.monotonic()
    res = jincai_lab("up")
    assert res.returncode == 0, res.stderr + res.stdout
    assert "clearing the previous lab" in res.stdout
    assert [p for p in orphans if labmod.alive(p)] == []
    assert time.monotonic() - start < 120
    after = snapshot()
    state = lab_state()
    lab_netns = {r["netns"] for r in state["hosts"].values()} | {"jlab-sw"}
    assert {n for n in after["netns"] if n.startswith("jlab-")} == lab_netns
    assert set(after["links"]) == set(before["snap"]["links"])
    assert set(after["mounts"]) == {f"{net.NETNS_DIR}/{n}" for n in lab_netns} | {
        r["root"] for r in state["hosts"].values()}
    assert state["complete"] and set(state["hosts"]) == set(before["state"]["hosts"])


def test_fresh_lab_sites_cannot_reach_each_other_before_routing():
    state = lab_state()
    assert state.get("complete"), "the lab is not up"
    res = run_on("220102-rtr", "ip route show proto ospf; ip route show proto 188", check=True)
    assert res.stdout.strip() == "", "routing is already configured on a fresh lab"
    target = hostvars("220103-app1")["jincai_address"]  # another county's LAN
    gateway = hostvars("220102-app1")["jincai_site"]["gateway"]
    assert target in run_on("220103-app1", "ip -o -4 addr show", sudo=False).stdout
    res = run_on("220102-app1", f"ping -n -c 2 -W 1 {target}", sudo=False)
    assert res.returncode != 0, f"220102-app1 reached {target} before routing: {res.stdout}"
    assert run_on("220102-app1", f"ping -n -c 1 -W 1 {gateway}", sudo=False).returncode == 0
