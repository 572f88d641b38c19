"""Process identity and the decision whether `up` keeps the running lab."""

import os
import time

import pytest

from jincai import ROOT
from jincai.lab import lab, net, topology



def test_a_recorded_pid_is_ours_only_with_the_same_start_time_and_command():
    me = os.getpid()
    start = lab.proc_start_time(me)
    assert isinstance(start, int)
    rec = {"pid": me, "start": start, "root": "/var/lib/jincai-lab/hosts/x/root"}
    assert not lab.is_ours(rec)  # this process is no systemd-nspawn
    assert not lab.is_ours(dict(rec, start=start + 1))
    assert lab.proc_start_time(2**22 + 7) is None


@pytest.fixture
def plan():
    return topology.plan(topology.load(os.path.join(ROOT, "inventories", "lab")))


@pytest.fixture
def healthy(plan, monkeypatch):
    monkeypatch.setattr(lab, "is_ours", lambda rec: True)
    monkeypatch.setattr(net, "host_link_exists", lambda: True)
    monkeypatch.setattr(lab.os.path, "exists", lambda p: True)
    hosts = {n: {"pid": 1, "netns": h.netns} for n, h in plan.hosts.items()}
    return {"complete": True, "image": "/img", "fingerprint": plan.fingerprint(), "hosts": hosts}


def test_up_keeps_a_healthy_unchanged_lab(plan, healthy):
    assert lab.stale_reason(healthy, plan, "/img") is None


def test_up_rebuilds_when_the_image_changed(plan, healthy):
    assert "image changed" in lab.stale_reason(healthy, plan, "/other")


def test_up_rebuilds_after_an_unfinished_up(plan, healthy):
    assert "did not finish" in lab.stale_reason(dict(healthy, complete=False), plan, "/img")


def test_up_rebuilds_when_the_topology_changed(plan, healthy):
    del healthy["hosts"]["bu0002"]
    assert "topology" in lab.stale_reason(healthy, plan, "/img")


def test_up_rebuilds_when_a_container_died(plan, healthy, monkeypatch):
    monkeypatch.setattr(lab, "is_ours", lambda rec: rec is not healthy["hosts"]["bu0001"])
    assert lab.stale_reason(healthy, plan, "/img") == "containers gone: bu0001"


def test_alive_treats_a_dead_child_as_gone():
    import subprocess

    child = subprocess.Popen(["sleep", "30"])
    assert lab.alive(child.pid)
    child.kill()
    for _ in range(100):
        if not lab.alive(child.pid):
            break
        time.sleep(0.05)
    assert not lab.alive(child.pid)


def test_cgroup_mounts_finds_the_hierarchies_systemd_uses(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text(
        "30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n"
        "31 30 0:27 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
        "32 30 0:28 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n"
        "33 30 0:29 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n")
    assert lab.cgroup_mounts(str(info)) == ["/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd"]
