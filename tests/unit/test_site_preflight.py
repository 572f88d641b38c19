"""site.yml refuses bad input and production inventories before any host is contacted.

These run ansible-playbook for real, against copies of the lab inventory on disk; they need no lab
because nothing may be contacted: the proof is that the recap names no managed host.
"""

import os
import shutil
import subprocess
import sys

import pytest

from jincai import ROOT
from jincai.run import run

LAB = os.path.join(ROOT, "inventories", "lab")
JILIN = os.path.join(ROOT, "inventories", "jilin")


@pytest.fixture()
def lab_copy(tmp_path):
    """A private copy of the lab inventory that a test may break."""
    dst = tmp_path / "lab"
    shutil.copytree(LAB, dst)
    return dst


def _break(path, old, new):
    text = path.read_text(encoding="utf-8")
    assert old in text, f"fixture drifted: {old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_bad_field_stops_site_yml_before_any_host(lab_copy):
    sites = lab_copy / "source" / "sites" / "220100.yml"
    _break(sites, "router: {platform: frr, loopback: 198.18.254.4}",
           "router: {platform: junos, loopback: 198.18.254.4}")
    res = run("playbooks/site.yml", inventory=str(lab_copy))
    assert res.rc != 0
    assert res.recap == {}, f"hosts were contacted: {sorted(res.recap)}"
    assert "220100.yml" in res.output and "220102" in res.output and "platform" in res.output


def test_jincai_validate_names_file_site_and_field(lab_copy):
    sites = lab_copy / "source" / "sites" / "220100.yml"
    _break(sites, "lan: 198.18.17.0/24", "lan: 198.18.99.0/24")
    proc = subprocess.run([sys.executable, "-m", "jincai.cli", "validate", str(lab_copy)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "220100.yml" in proc.stderr and "220102" in proc.stderr and "lan" in proc.stderr


def test_production_inventory_with_the_lab_catalogue_is_refused_before_any_host(lab_copy):
    # A lab copy marked production: its addresses are still the lab's, and every host is pointed at a
    # closed loopback port, so even a failing guard could only ever show UNREACHABLE on 127.0.0.1.
    # Check mode is allowed on production (the nightly drift run, issue 17), but not the test
    # applications the lab's catalogue points at. (tests/unit/test_production_guard.py: the rest.)
    _break(lab_copy / "source" / "network.yml", "environment: lab", "environment: production")
    res = run("playbooks/site.yml", inventory=str(lab_copy), check=True,
              args=["-e", "ansible_host=127.0.0.1", "-e", "ansible_port=1"])
    assert res.rc != 0
    assert f"{lab_copy}: apps_build_fixtures is true" in res.output
    assert (f"{lab_copy}: apps_catalog.treasury.versions.2.0.0: sha256 is the test application "
            "treasury-2.0.0.tar.gz") in res.output
    assert "releases/lab-2.yml: application budget: sha256 is the test application" in res.output
    assert "UNREACHABLE" not in res.output and "PLAY [Configure the WAN routers" not in res.output
    # the validation play runs once, delegated to the control node, in the name of the first host
    assert len(res.recap) == 1 and res.total("unreachable") == 0, f"hosts were contacted: {res.recap}"
