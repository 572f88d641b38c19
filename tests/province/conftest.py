"""Fixtures for the province twin proofs (``make test-province``; not part of ``make test``/CI).

They run against the lab booted by ``jincai lab up --twin inventories/jilin``: the inventory is the
one the running lab was brought up from (``build/twin/<name>``), so nothing here names a host or an
address: every expectation is read from the twin's inventory (itself derived from production's).
"""

import concurrent.futures
import functools
import os
import subprocess
import time

import pytest

from jincai import ROOT
from jincai.lab import lab as labmod
from jincai.source import inventory as invmod

JINCAI = os.path.join(ROOT, ".venv", "bin", "jincai")
TWIN_DIR = os.path.join(ROOT, "build", "twin")


def pytest_collection_modifyitems(config, items):
    """Mark every test here ``province`` (they need the twin, not the small lab)."""
    here = os.path.dirname(os.path.abspath(__file__))
    for item in items:
        if str(item.fspath).startswith(here + os.sep):
            item.add_marker(pytest.mark.province)


def twin_inventory_dir():
    """The inventory the running lab came from; fails unless it is a twin."""
    source = labmod.load_state().get("source") or ""
    if not os.path.abspath(source).startswith(TWIN_DIR + os.sep):
        pytest.fail(f"the lab running is not the province twin (source {source!r}): "
                    "run `jincai lab up --twin inventories/jilin` (or `make province`) first")
    return os.path.abspath(source)


@functools.lru_cache(maxsize=1)
def inventory():
    """The twin's inventory dict."""
    return invmod.build(twin_inventory_dir())


def hostvars(host):
    """One twin host's variables."""
    return inventory()["_meta"]["hostvars"][host]


def group(name):
    """Hosts of an inventory group (sorted)."""
    return sorted((inventory().get(name) or {}).get("hosts") or [])


def run_on(host, cmd, **kw):
    """Run a shell command on a twin host over SSH (:func:`jincai.lab.lab.run_on`)."""
    return labmod.run_on(host, cmd, **kw)


def in_netns(name, argv, timeout=10):
    """Run ``argv`` in the lab namespace of host or party stub ``name`` (traffic from that namespace)."""
    return subprocess.run(["ip", "netns", "exec", f"jlab-{name}", *argv], capture_output=True, text=True,
                          timeout=timeout, check=False)


def tcp_open(src_ns, address, port, timeout=1.5):
    """True when a TCP connection from namespace ``src_ns`` to address:port is accepted."""
    res = in_netns(src_ns, ["timeout", str(timeout), "bash", "-c", f"exec 3<>/dev/tcp/{address}/{port}"],
                   timeout=timeout + 5)
    return res.returncode == 0


def wait(predicate, timeout, step=1.0):
    """Poll ``predicate`` until it is truthy or ``timeout`` seconds pass; return (value, seconds)."""
    start = time.monotonic()
    while True:
        value = predicate()
        elapsed = time.monotonic() - start
        if value or elapsed > timeout:
            return value, elapsed
        time.sleep(step)


def parallel(fn, items, workers=16):
    """``[fn(item) for item in items]`` on a thread pool (SSH and namespace probes wait, not compute)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


def jincai(*args, timeout=3600):
    """Run the ``jincai`` command; return the CompletedProcess."""
    return subprocess.run([JINCAI, *args], capture_output=True, text=True, timeout=timeout, check=False,
                          cwd=ROOT)


@pytest.fixture(scope="session")
def twin():
    """The twin's inventory dir (the lab must be up and complete)."""
    path = twin_inventory_dir()
    if not labmod.load_state().get("complete"):
        pytest.fail("the twin is not completely up: run `jincai lab up --twin inventories/jilin`")
    return path
