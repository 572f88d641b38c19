"""The lab WAN as cabled by ``jincai lab up``: hosts, addresses, links, segments, management network.

These checks hold whether or not routing has been configured yet (they use TTL 1 and the
management network, which routing never touches); the one check that only holds before routing
runs is in test_zz_lab_lifecycle.py, on a freshly rebuilt lab.
"""

import os
import re
import subprocess

import pytest

import hoststate
from conftest import LAB_INVENTORY, hostvars, lab_state, run_on
from jincai.lab import lab as labmod
from jincai.lab import topology

PLAN = topology.plan(topology.load(LAB_INVENTORY), source=LAB_INVENTORY)
HOSTS = sorted(PLAN.hosts)
WAN = [s for s in PLAN.segments.values() if s.point_to_point]
SHARED = [s for s in PLAN.segments.values() if not s.point_to_point]


def ping(host, address, ttl=None, iface=None):
    """Return True when one ICMP echo from ``host`` to ``address`` is answered."""
    opts = f"-c 1 -W 2{f' -t {ttl}' if ttl else ''}{f' -I {iface}' if iface else ''}"
    return run_on(host, f"ping -n {opts} {address}", sudo=False).returncode == 0


@pytest.fixture(scope="module", autouse=True)
def _lab(lab_up):
    return lab_up


@pytest.mark.parametrize("host", HOSTS)
def test_host_answers_ssh_with_its_hostname_and_has_its_addresses(host):
    res = run_on(host, "hostname; ip -o -4 addr show", sudo=False, check=True)
    lines = res.stdout.splitlines()
    assert lines[0] == host
    have = {(m.group(1), m.group(2)) for m in re.finditer(r"^\d+: (\S+)\s+inet (\S+)", res.stdout, re.M)}
    want = {(i["name"], i["address"]) for i in hostvars(host)["jincai_interfaces"]}
    assert want <= have, f"missing on {host}: {sorted(want - have)}"
    for lo in PLAN.hosts[host].loopbacks:
        assert ("lo", lo.with_prefixlen) in have


@pytest.mark.parametrize("seg", WAN, ids=[s.id for s in WAN])
def test_wan_link_carries_traffic_between_its_two_routers(seg):
    (a, ia), (b, ib) = seg.members
    assert ping(a, ib.address.ip, ttl=1, iface=ia.name), f"{a} {ia.name} -> {b} {ib.address.ip}"
    assert ping(b, ia.address.ip, ttl=1, iface=ib.name), f"{b} {ib.name} -> {a} {ia.address.ip}"


@pytest.mark.parametrize("seg", SHARED, ids=[s.id for s in SHARED])
def test_shared_segment_connects_every_member_at_layer_2(seg):
    first, first_if = seg.members[0]
    for other, other_if in seg.members[1:]:
        assert ping(first, other_if.address.ip, ttl=1), f"{first} -> {other} on {seg.id}"


@pytest.mark.parametrize("seg", WAN, ids=[s.id for s in WAN])
def test_wan_link_is_a_cable_between_exactly_its_two_routers(seg):
    """No bridge in between: each end is a veth whose other end sits in the peer's namespace."""
    (a, ia), (b, ib) = seg.members
    for (h, i), (peer, _) in (((a, ia), (b, ib)), ((b, ib), (a, ia))):
        res = subprocess.run(["ip", "-n", PLAN.hosts[h].netns, "-d", "link", "show", i.name],
                             capture_output=True, text=True, check=True)
        assert "veth" in res.stdout and "master" not in res.stdout
        assert f"link-netns {PLAN.hosts[peer].netns}" in res.stdout, res.stdout


@pytest.mark.parametrize("site", sorted({h.site for h in PLAN.hosts.values() if h.is_router}))
def test_site_lan_is_its_own_segment(site):
    """A server reaches its own router directly (TTL 1) but no other site's LAN host directly."""
    lan = PLAN.segments[f"lan-{site}"]
    servers = [(h, i) for h, i in lan.members if not PLAN.hosts[h].is_router]
    router = [(h, i) for h, i in lan.members if PLAN.hosts[h].is_router]
    assert servers and router
    host, _ = servers[0]
    assert ping(host, router[0][1].address.ip, ttl=1)
    others = [i for s in SHARED if s.id.startswith("lan-") and s.id != lan.id
              for h, i in s.members if not PLAN.hosts[h].is_router]
    assert not ping(host, others[0].address.ip, ttl=1), f"{host} reached {others[0].address.ip} directly"


def test_management_hosts_cannot_reach_each_other():
    state = lab_state()["hosts"]
    pairs = [("220102-app1", "220103-app1"), ("220000-rtr", "220100-rtr"), ("bu0001", "bu0002")]
    for a, b in pairs:
        assert ping(a, "198.19.0.1", iface="eth0"), f"{a} cannot reach the control node"
        assert not ping(a, state[b]["mgmt"], iface="eth0"), f"{a} reached {b} over the management network"


@pytest.mark.parametrize("host", [h for h in HOSTS if PLAN.hosts[h].is_router])
def test_router_boots_with_frr_ospfd_and_forwards(host):
    h = hoststate.host(host)
    hoststate.expect(host, "frr.service", h.service("frr").is_running, "active", "not active")
    hoststate.expect(host, "ospfd process", h.run("pidof ospfd").rc == 0, "running", "none")
    hoststate.equal(host, "net.ipv4.ip_forward", h.sysctl("net.ipv4.ip_forward"), 1)


@pytest.mark.parametrize("host", [h for h in HOSTS if PLAN.hosts[h].is_router][:2])
def test_netops_gets_vtysh_for_netmiko(host):
    res = run_on(host, "show version", sudo=False, user="netops")
    assert res.returncode == 0, res.stderr
    assert "FRRouting" in res.stdout


def test_image_boots_without_the_services_roles_manage(lab_up):
    """Roles enable what they manage; the image itself starts none of it (19 hosts would)."""
    units = ["frr", "nginx", "postgresql", "strongswan", "chrony", "rsyslog", "auditd", "cron"]
    res = subprocess.run(["systemctl", f"--root={lab_up['image']}", "is-enabled"] + units,
                         capture_output=True, text=True, check=False)
    assert res.stdout.split() == ["disabled"] * len(units), res.stdout + res.stderr


def test_image_holds_every_listed_package(lab_up):
    """Lab hosts reach no mirror: every package in packages.txt is installed in the image."""
    from jincai.lab import image

    res = subprocess.run(["dpkg-query", f"--admindir={lab_up['image']}/var/lib/dpkg", "-W",
                          "-f", "${Package} ${db:Status-Status}\n"] + image.packages(),
                         capture_output=True, text=True, check=False)
    installed = {line.split()[0] for line in res.stdout.splitlines() if line.endswith(" installed")}
    assert set(image.packages()) - installed == set(), res.stderr


def test_every_container_has_its_own_cgroups(lab_up):
    """Containers side by side in one cgroup would manage each other's units (219/CGROUP)."""
    seen = {}
    for host, rec in lab_up["hosts"].items():
        leader = labmod.leader_pid(rec["pid"])
        with open(f"/proc/{leader}/cgroup", encoding="ascii") as fh:
            paths = {line.split(":", 2)[2].strip() for line in fh
                     if line.startswith("0::") or ":name=systemd:" in line}
        assert paths == {f"/{labmod.CGROUP_NAME}/{host}/payload/init.scope"}, paths
        seen[host] = paths
    assert len(seen) == len(lab_up["hosts"])


def test_every_host_has_its_own_ssh_host_key():
    state = lab_state()["hosts"]
    keys = {h: labmod.host_keys(r["root"])[0] for h, r in state.items()}
    assert len(set(keys.values())) == len(keys)
    with open(labmod.KNOWN_HOSTS, encoding="ascii") as fh:
        known = fh.read()
    for host, key in keys.items():
        assert f"{host},{state[host]['mgmt']} {key}" in known


def test_technician_key_pairs_exist():
    techs = PLAN.technicians
    assert techs, "the lab inventory lists no technician with key_file"
    for user, key_file in techs:
        assert key_file.endswith(".pub")
        with open(key_file, encoding="ascii") as fh:
            assert fh.read().startswith("ssh-ed25519 ")
        assert os.path.exists(key_file[:-4])


def test_up_twice_changes_nothing():
    from conftest import jincai_lab

    before = {h: (r["pid"], r["start"]) for h, r in lab_state()["hosts"].items()}
    res = jincai_lab("up")
    assert res.returncode == 0, res.stderr
    assert "nothing changed" in res.stdout
    after = {h: (r["pid"], r["start"]) for h, r in lab_state()["hosts"].items()}
    assert after == before



def test_jincai_lab_ssh_runs_commands_keeping_their_quoting():
    from conftest import jincai_lab

    res = jincai_lab("ssh", "220000-rtr", "sudo", "vtysh", "-c", "show version")
    assert res.returncode == 0, res.stderr
    assert "FRRouting" in res.stdout
    res = jincai_lab("ssh", "bu0001", "hostname; echo 'a  b'")
    assert res.stdout.splitlines() == ["bu0001", "a  b"]
