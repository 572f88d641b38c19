"""Helpers and fixtures for tests that run on the live lab (``jincai lab up`` first).

For other engineers' lab tests (host *state* is read with testinfra: ``tests/lab/hoststate.py``,
``hoststate.host(name).file(...)``, ``.service(...)``, ``hoststate.read(name, cmd)``; ``run_on`` is for
*actions*: breaking and restoring things, traffic from a host or namespace, restarts):

* ``run_on(host, cmd)`` runs ``cmd`` on a lab host over SSH as ``jincai`` with the lab key (through
  ``sudo`` by default) and returns a ``subprocess.CompletedProcess`` (text output);
* ``inventory()`` / the ``lab_inventory`` fixture: the inventory dict (``ansible-inventory --list``
  shape) of ``inventories/lab``; ``hostvars(host)`` is one host's vars;
* ``lab_state()`` / the ``lab_up`` fixture: the lab's state file (hosts, PIDs, management addresses);
  ``lab_up`` fails the test with a clear message when the lab is not running;
* ``wait_routes_converged(deadline_s)``: after a test changed routing (a config push, a cut link),
  wait until every lab router's table holds every site LAN of the inventory; returns what is still
  missing (``{}`` when converged). OSPF adjacencies Full is not enough: SPF throttling can install the
  routes seconds later.

Every test collected under tests/lab/ gets the ``lab`` marker.
"""

import functools
import ipaddress
import json
import os
import subprocess
import time

import pytest

from jincai import ROOT
from jincai.lab import lab as labmod
from jincai.run import run as run_playbook

LAB_INVENTORY = os.path.join(ROOT, "inventories", "lab")
JINCAI = os.path.join(ROOT, ".venv", "bin", "jincai")
CONTROL_DIR = labmod.CONTROL_DIR


def pytest_collection_modifyitems(config, items):
    """Mark every test in this directory as a lab test, and run the ``slow`` ones (the county bootstrap
    proofs, which attach and remove a blank county) after all others, lifecycle last: one session then
    proves the provisioned lab and bootstraps a county onto it with one site.yml run, not two."""
    here = os.path.dirname(os.path.abspath(__file__))
    for item in items:
        if str(item.fspath).startswith(here + os.sep):
            item.add_marker(pytest.mark.lab)
    items.sort(key=lambda item: (item.get_closest_marker("lifecycle") is not None,
                                 item.get_closest_marker("slow") is not None))


@functools.lru_cache(maxsize=1)
def inventory():
    """Return the lab inventory dict (built once per test session)."""
    from jincai.source import inventory as invmod

    return invmod.build(LAB_INVENTORY)


def hostvars(host):
    """Return one lab host's variables."""
    return inventory()["_meta"]["hostvars"][host]


def lab_state():
    """Return the lab's recorded state (empty dict when the lab is down)."""
    return labmod.load_state()


def mgmt_address(host):
    """Return the management address the control node uses for ``host``."""
    rec = (lab_state().get("hosts") or {}).get(host)
    return rec["mgmt"] if rec else hostvars(host)["jincai_mgmt_address"]


def run_on(host, cmd, sudo=True, user="jincai", check=False, timeout=60):
    """Run ``cmd`` (a shell string) on ``host`` over SSH; return the CompletedProcess
    (:func:`jincai.lab.lab.run_on`: ``sudo`` runs it as root, ``check`` raises AssertionError)."""
    return labmod.run_on(host, cmd, sudo=sudo, user=user, check=check, timeout=timeout,
                         address=None if host in (lab_state().get("hosts") or {}) else mgmt_address(host))


def site_lans():
    """``{prefix: site code}``: every site's LAN in the inventory (``jincai_site.lan`` of its hosts)."""
    out = {}
    for hv in inventory()["_meta"]["hostvars"].values():
        site = hv.get("jincai_site") or {}
        if site.get("lan"):
            out[str(ipaddress.ip_network(site["lan"], strict=False))] = site.get("code") or hv.get("jincai_site_code")
    return out


def frr_routers():
    """The lab's routers with a shell (FRR): the ones whose table ``vtysh`` shows."""
    return sorted(h for h in inventory()["routers"]["hosts"]
                  if (hostvars(h).get("jincai_router") or {}).get("platform") == "frr")


def installed_prefixes(host):
    """The prefixes of ``host``'s routing table that are installed in the kernel (``show ip route json``:
    a selected route with ``installed``, or a connected one; read with testinfra, tests/lab/hoststate.py);
    raises AssertionError naming host, command and exit code when vtysh fails."""
    import hoststate  # tests/lab/hoststate.py

    table = json.loads(hoststate.read(host, "vtysh -c %s", "show ip route json") or "{}")
    return {prefix for prefix, entries in table.items()
            if any(e.get("installed") or (e.get("protocol") == "connected" and e.get("selected")) for e in entries)}


def wait_routes_converged(deadline_s=60):
    """Poll every lab router (FRR, every 2 s, at most ``deadline_s``) until each has every site LAN of the
    inventory (:func:`site_lans`) installed. Returns ``{router: ["<prefix> (<site>)", ...]}`` of what is still
    missing, ``{}`` once converged (a router vtysh cannot read shows the reason instead)."""
    lans = site_lans()
    end = time.monotonic() + deadline_s
    while True:
        missing = {}
        for router in frr_routers():
            try:
                have = installed_prefixes(router)
            except (AssertionError, ValueError, subprocess.TimeoutExpired) as exc:
                missing[router] = [f"table unreadable: {str(exc).splitlines()[0][:200]}"]
                continue
            lost = [f"{prefix} ({code})" for prefix, code in sorted(lans.items()) if prefix not in have]
            if lost:
                missing[router] = lost
        if not missing or time.monotonic() > end:
            return missing
        time.sleep(2)


def jincai_lab(*args, timeout=600):
    """Run ``jincai lab ARGS`` on the control node; return the CompletedProcess."""
    return subprocess.run([JINCAI, "lab", *args], capture_output=True, text=True, timeout=timeout,
                          check=False)


@pytest.fixture(scope="session")
def lab_inventory():
    """The lab inventory dict (``ansible-inventory --list`` shape)."""
    return inventory()


@pytest.fixture(scope="session")
def lab_up():
    """The lab state; fails clearly when the lab is not running."""
    state = lab_state()
    if not state.get("complete"):
        pytest.fail("the lab is not up: run `jincai lab up` (or `make lab-test`) first")
    return state


@pytest.fixture(scope="session")
def site_first(lab_up):
    """site.yml's converging run on the whole lab, once per pytest session, whatever state the lab was in
    (tests/lab/test_00_site.py proves it; the modules after it start from the lab it provisioned)."""
    return run_playbook("playbooks/site.yml", inventory=LAB_INVENTORY)


@pytest.fixture(scope="session")
def site_second(site_first):
    """A second whole-lab site.yml right after the first: the idempotency proof of every play (the
    baseline, routing and VPN modules read their hosts' share of it instead of re-running their play)."""
    assert site_first.rc == 0, "the first site.yml run failed; idempotency is meaningless"
    return run_playbook("playbooks/site.yml", inventory=LAB_INVENTORY)


@pytest.fixture(scope="session")
def site_check(site_second):
    """``site.yml --check --diff`` on the converged lab, after the second run: the check-mode proof."""
    return run_playbook("playbooks/site.yml", inventory=LAB_INVENTORY, check=True, diff=True)


def changed_on(res, hosts):
    """``{host: changed count}`` of a run's recap, for the ``hosts`` that changed something."""
    return {h: res.recap[h]["changed"] for h in hosts if h in res.recap and res.recap[h]["changed"]}


@pytest.fixture(scope="session")
def wan_provisioned(lab_up, site_first):
    """The lab WAN as site.yml leaves it, once per pytest session (the bootstrap proofs need a working
    WAN for the new county to join; a fresh lab, e.g. after the lifecycle tests, has no routing): the
    session's :func:`site_first` (quick on a provisioned lab: an idempotent run)."""
    assert site_first.rc == 0, site_first.output[-4000:]
    return lab_up

