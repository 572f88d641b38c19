"""`jincai validate` on the real sources, its output contract, and robustness against any damage."""

import copy
import os
import subprocess
import sys

import pytest

from jincai import ROOT
from jincai.source import model, validate

LAB = os.path.join(ROOT, "inventories", "lab")
JILIN = os.path.join(ROOT, "inventories", "jilin")
JINCAI = os.path.join(os.path.dirname(sys.executable), "jincai")


@pytest.mark.parametrize("inv", [LAB, JILIN])
def test_real_sources_are_valid_without_warnings(inv, capsys):
    assert validate.findings(inv) == []
    assert validate.run(inv) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "valid" in out


def test_quiet_prints_nothing(capsys):
    assert validate.run(LAB, quiet=True) == 0
    assert capsys.readouterr() == ("", "")


def test_jilin_counts():
    src = model.load(JILIN)
    tiers = [s["tier"] for _, s in src.sites]
    assert (tiers.count("province"), tiers.count("city"), tiers.count("county")) == (1, 9, 60)


def test_cli_exit_codes(tmp_path):
    ok = subprocess.run([JINCAI, "validate", "-q", LAB], capture_output=True, text=True, check=False)
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "", "")
    missing = subprocess.run([JINCAI, "validate", str(tmp_path / "nope")], capture_output=True, text=True, check=False)
    assert missing.returncode == 1
    assert "no such inventory directory" in missing.stderr


def test_marked_direct_uplink_is_accepted():
    src = model.load(LAB)
    site = src.site_map()["220102"]
    site["uplinks"].append({"peer": "220000", "subnet": "198.18.248.100/30", "role": "backup", "direct": True})
    assert [f for f in validate.check(src) if f.severity == "error"] == []
    d = model.derive(src)
    up = [i for i in d.hosts["220102-rtr"]["jincai_interfaces"] if i["role"] == "uplink"]
    assert [(i["name"], i["peer"], i["ospf_cost"]) for i in up] == [("eth1", "220100-rtr", 10), ("eth2", "220000-rtr", 100)]
    assert up[1]["segment"] == "wan-220000-220102-backup"
    down = [i["peer"] for i in d.hosts["220000-rtr"]["jincai_interfaces"] if i["role"] == "downlink"]
    assert down == ["220100-rtr", "220102-rtr", "220200-rtr"]  # sorted by peer site code


def _mutations():
    """(site index, path, replacement) for every field of every lab site: deleted or mistyped."""
    src = model.load(LAB)
    out = []
    for i, (_, site) in enumerate(src.sites):
        for key, value in site.items():
            for repl in ("<delete>", None, 7, "x", [], {}):
                out.append((i, (key,), repl))
            if isinstance(value, list) and value and isinstance(value[0], dict):
                for sub in value[0]:
                    for repl in ("<delete>", 7, "x"):
                        out.append((i, (key, 0, sub), repl))
            if isinstance(value, dict):
                for sub in value:
                    for repl in ("<delete>", 7, "x"):
                        out.append((i, (key, sub), repl))
    return out


def _damage_validate_derive(base, part, path, repl):
    """In a copy of the source ``base``, replace (or with ``"<delete>"`` delete) the value at ``path``
    of ``part(copy)``, validate it (which must not raise) and, when it has no error, derive it."""
    src = copy.deepcopy(base)
    target = part(src)
    for p in path[:-1]:
        target = target[p]
    if repl == "<delete>":
        del target[path[-1]]
    else:
        target[path[-1]] = repl
    if not [f for f in validate.check(src) if f.severity == "error"]:
        model.derive(src)


def test_no_damage_crashes_the_validator_and_valid_means_derivable():
    """Delete or mistype any field of any lab site: validation never raises, and whatever it accepts
    derive() can build (so the inventory plugin never crashes on a source the validator passed)."""
    base = model.load(LAB)
    checked = 0
    for i, path, repl in _mutations():
        _damage_validate_derive(base, lambda src, i=i: src.sites[i][1], path, repl)
        checked += 1
    assert checked > 300


def test_no_damage_to_network_yml_crashes_the_validator():
    """The same for every setting of network.yml (plan, management, OSPF, the application catalogue)."""
    base = model.load(LAB)
    paths = [(k,) for k in base.network]
    paths += [("plan", k) for k in base.plan] + [("plan", "management", k) for k in base.plan["management"]]
    paths += [("ospf", k) for k in base.network["ospf"]]
    paths += [("applications", "budget"), ("defaults", "hosts")]
    paths += [("applications", "budget", k) for k in base.network["applications"]["budget"]]
    paths += [("applications", "treasury", "tiers", k) for k in base.network["applications"]["treasury"]["tiers"]]
    checked = 0
    for path in paths:
        for repl in ("<delete>", None, 7, "x", [], {}):
            _damage_validate_derive(base, lambda src: src.network, path, repl)
            checked += 1
    assert checked > 200
