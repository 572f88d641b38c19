"""`jincai lab` refuses to start, with one line, when the machine or the input cannot work.

Nothing may be created before the refusal: the CLI cases check the lab's state file and the
network namespaces are unchanged.
"""

import json
import os
import shutil
import subprocess

import pytest

from jincai import ROOT
from jincai.lab import cli, lab, net, topology

JINCAI = os.path.join(ROOT, ".venv", "bin", "jincai")
JILIN = os.path.join(ROOT, "inventories", "jilin")


def lab_footprint():
    """What a lab run would change first: state file contents and lab namespaces."""
    try:
        with open(lab.STATE_FILE, "rb") as fh:
            state = fh.read()
    except FileNotFoundError:
        state = None
    return state, net.lab_namespaces(), net.host_link_exists()


def test_not_root_is_refused():
    with pytest.raises(cli.PreflightError, match="must run as root"):
        cli.check_root(euid=1000)
    cli.check_root(euid=0)


@pytest.mark.parametrize("tool,package", [("systemd-nspawn", "systemd-container"),
                                          ("debootstrap", "debootstrap"), ("ip", "iproute2")])
def test_missing_tool_is_refused_naming_its_package(tool, package):
    def which(name):
        return None if name == tool else "/usr/bin/" + name

    with pytest.raises(cli.PreflightError) as exc:
        cli.check_tools(need_debootstrap=True, which=which)
    assert str(exc.value) == f"command {tool!r} not found: apt-get install {package}"


def test_debootstrap_is_only_needed_to_build_the_image():
    cli.check_tools(need_debootstrap=False, which=lambda n: None if n == "debootstrap" else "/x")


def test_missing_overlayfs_is_refused(tmp_path):
    fake = tmp_path / "filesystems"
    fake.write_text("nodev\tsysfs\nnodev\ttmpfs\n\text4\n")
    with pytest.raises(cli.PreflightError, match="overlayfs"):
        cli.check_kernel(filesystems=str(fake))


@pytest.mark.skipif(os.geteuid() != 0, reason="probing veth/bridge needs root")
def test_this_machine_has_the_kernel_features():
    cli.check_kernel()


def run_cli(*args, user=None):
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if user else []
    return subprocess.run(prefix + [JINCAI, "lab", *args], capture_output=True, text=True, timeout=120,
                          check=False)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_cli_up_as_non_root_fails_with_one_line_and_creates_nothing():
    before = lab_footprint()
    res = run_cli("up", "-i", JILIN, user="nobody")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "jincai lab: must run as root (network namespaces, mounts and systemd-nspawn need it)"]
    assert lab_footprint() == before


def test_the_topology_check_refuses_a_production_inventory_and_inventory_json(tmp_path):
    """What the two CLI cases below pass: refused by the topology check, which runs before anything
    is created (checked here first, in-process, so the CLI cases never reach a lab bring-up)."""
    with pytest.raises(topology.TopologyError, match="outside the lab range"):
        cli.load_plan(JILIN)
    bad = tmp_path / "inventory.json"
    bad.write_text("{}")
    with pytest.raises(topology.TopologyError, match="not from inventory JSON"):
        cli.load_plan(str(bad))


@pytest.mark.skipif(os.geteuid() != 0, reason="the topology check runs after the root check")
def test_cli_up_with_a_production_inventory_fails_with_one_line_and_creates_nothing():
    with pytest.raises(topology.TopologyError):
        cli.load_plan(JILIN)  # never let the CLI below get past the topology check
    before = lab_footprint()
    res = run_cli("up", "-i", JILIN)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"jincai lab: {JILIN}: site 220000, host 220000-app1: jincai_interfaces[0].address")
    assert "outside the lab range" in lines[0]
    assert lab_footprint() == before


@pytest.mark.skipif(os.geteuid() != 0, reason="the topology check runs after the root check")
def test_cli_up_with_inventory_json_fails_with_one_line_and_creates_nothing(tmp_path):
    bad = tmp_path / "inventory.json"
    bad.write_text(json.dumps({"_meta": {"hostvars": {}}}))
    with pytest.raises(topology.TopologyError):
        cli.load_plan(str(bad))
    before = lab_footprint()
    res = run_cli("up", "-i", str(bad))
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.strip().splitlines() == [
        f"jincai lab: {bad}: no such inventory directory (the lab is built from a source of truth, not from "
        "inventory JSON)"]
    assert lab_footprint() == before


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_cli_ssh_to_an_unknown_host_fails_with_one_line():
    res = run_cli("ssh", "nosuchhost", "true")
    assert res.returncode == 2
    assert res.stderr.strip() == "jincai lab: no lab host 'nosuchhost' (see `jincai lab status`)"
