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
from jincai.playbook import run

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


def test_production_inventory_is_refused_without_explicit_consent(lab_copy):
    # A lab copy marked production: its addresses are still the lab's, so even a failing guard
    # could only ever reach 198.18.0.0/15 (the real Jilin inventory is never used for this).
    _break(lab_copy / "source" / "network.yml", "environment: lab", "environment: production")
    res = run("playbooks/site.yml", inventory=str(lab_copy), check=True)
    assert res.rc != 0
    assert "PRODUCTION" in res.output
    assert set(res.recap) == {"localhost"}, f"hosts were contacted: {sorted(res.recap)}"
