"""Helpers and fixtures for tests that run on the live lab (``jincai lab up`` first).

For other engineers' lab tests:

* ``run_on(host, cmd)`` runs ``cmd`` on a lab host over SSH as ``jincai`` with the lab key (through
  ``sudo`` by default) and returns a ``subprocess.CompletedProcess`` (text output);
* ``inventory()`` / the ``lab_inventory`` fixture: the inventory dict (``ansible-inventory --list``
  shape) of ``inventories/lab``; ``hostvars(host)`` is one host's vars;
* ``lab_state()`` / the ``lab_up`` fixture: the lab's state file (hosts, PIDs, management addresses);
  ``lab_up`` fails the test with a clear message when the lab is not running.

Every test collected under tests/lab/ gets the ``lab`` marker.
"""

import functools
import os
import subprocess

import pytest

from jincai import ROOT
from jincai.lab import lab as labmod
from jincai.run import run as run_playbook

LAB_INVENTORY = os.path.join(ROOT, "inventories", "lab")
JINCAI = os.path.join(ROOT, ".venv", "bin", "jincai")
CONTROL_DIR = labmod.CONTROL_DIR


def pytest_collection_modifyitems(config, items):
    """Mark every test in this directory as a lab test."""
    here = os.path.dirname(os.path.abspath(__file__))
    for item in items:
        if str(item.fspath).startswith(here + os.sep):
            item.add_marker(pytest.mark.lab)


@functools.lru_cache(maxsize=1)
def inventory():
    """Return the lab inventory dict (built once per test session)."""
    from jincai import inventory as invmod

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
def wan_provisioned(lab_up):
    """The lab WAN as site.yml leaves it, once per pytest session (the bootstrap proofs need a working
    WAN for the new county to join; a fresh lab, e.g. after the lifecycle tests, has no routing). Quick
    on a provisioned lab: an idempotent run."""
    res = run_playbook("playbooks/site.yml", inventory=os.path.join(ROOT, "inventories", "lab"))
    assert res.rc == 0, res.output[-4000:]
    return lab_up

