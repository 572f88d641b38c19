"""The day-0 kit (``jincai bootstrap CODE --day0``) on a blank county of the live lab.

The kit is applied the way a technician applies it: the router's script through its console (here
``nsenter`` into the blank router's container stands in for the console cable; the script drives
FRR with vtysh's configuration file), each server's first-boot script as root on its console. Then
``jincai bootstrap`` completes from the province with the key the kit installed (no root password is
given to it). That a second bootstrap run changes nothing is proven once, in test_bootstrap.py (the
same engine and roles; each extra run of a county costs minutes of the CI budget).

What this does not prove yet (needs jincai/lab/blank.py to attach a county without its out-of-band
management link, and the inventory copy switched to ``plan.management.mode: inband``): that the
province reaches the county only over the WAN. See docs/runbook.en.md, "In-band sites (day 0)".
Marked ``slow`` like the other bootstrap proofs.
"""

import os
import secrets
import shutil
import subprocess
import sys

import pytest

from jincai import ROOT
from jincai import bootstrap_day0 as day0
from jincai.lab import blank
from jincai.lab import lab as labmod

pytestmark = pytest.mark.slow

CODE = "220104"
JINCAI = os.path.join(os.path.dirname(sys.executable), "jincai")
LAB_INVENTORY = os.path.join(ROOT, "inventories", "lab")


@pytest.fixture(scope="module")
def county(tmp_path_factory, wan_provisioned):
    """(inventory copy, kit dir) of a blank county attached to the lab, its day-0 kit written."""
    base = tmp_path_factory.mktemp("day0")
    inv = str(base / "lab")
    shutil.copytree(LAB_INVENTORY, inv)
    res = subprocess.run([JINCAI, "site", "add", CODE, "--write", "-i", inv], capture_output=True, text=True,
                         check=False)
    assert res.returncode == 0, res.stderr
    kit = str(base / "kit")
    res = subprocess.run([JINCAI, "bootstrap", CODE, "--day0", "-i", inv, "-o", kit], capture_output=True,
                         text=True, check=False)
    assert res.returncode == 0, res.stderr
    blank.add(inv, CODE, "Lab-" + secrets.token_urlsafe(12), log=lambda m: None)
    yield inv, kit
    blank.remove(CODE, restore_inventory=LAB_INVENTORY)


def on_console(host, script_path):
    """Run a kit script as root inside the blank host's container (the console stand-in)."""
    rec = blank.load_state()[CODE]["hosts"][host]
    leader = labmod.leader_pid(rec["pid"])
    assert leader, f"{host}: container not running"
    with open(script_path, encoding="utf-8") as fh:
        return subprocess.run(["nsenter", "-t", str(leader), "-a", "sh", "-s"], stdin=fh, capture_output=True,
                              text=True, timeout=300, check=False)


def test_day0_kit_then_bootstrap_completes_with_the_kits_key_only(county, tmp_path):
    inv, kit = county
    site = day0.resolve_site(inv, CODE)
    res = on_console(site.router.name, os.path.join(kit, f"{site.router.name}.day0.sh"))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    for host in site.servers:
        res = on_console(host.name, os.path.join(kit, f"{host.name}.firstboot.sh"))
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    reports = str(tmp_path / "reports")
    env = {k: v for k, v in os.environ.items() if k != "JINCAI_BOOTSTRAP_PASSWORD"}  # the kit's key only
    first = subprocess.run([JINCAI, "bootstrap", CODE, "-i", inv, "--accept-host-keys", "--reports-dir", reports],
                           capture_output=True, text=True, env=env, timeout=1800, check=False, stdin=subprocess.DEVNULL)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert "first login on" not in first.stdout  # the kit's key already worked everywhere
    assert "is on the WAN, compliant and verified" in first.stdout
