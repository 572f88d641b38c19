"""The inventory builder and the `jincai` Ansible inventory plugin, through real ansible-inventory runs."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from jincai import ROOT
from jincai.source import inventory

LAB = os.path.join(ROOT, "inventories", "lab")
JILIN = os.path.join(ROOT, "inventories", "jilin")
BIN = os.path.dirname(sys.executable)


def ansible_inventory(*args, env=None):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), PATH=f"{BIN}:{os.environ['PATH']}",
               **(env or {}))
    return subprocess.run([os.path.join(BIN, "ansible-inventory"), *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, check=False)


def test_build_has_the_list_shape():
    data = inventory.build(LAB)
    hosts = set(data["_meta"]["hostvars"])
    assert "ungrouped" in data["all"]["children"]
    for group in data["all"]["children"]:
        assert set(data[group]["hosts"]) <= hosts
    grouped = {h for g in data["all"]["children"] for h in data[g]["hosts"]}
    assert grouped == hosts  # every host is in some group


@pytest.mark.parametrize("inv,hosts", [(LAB, 20), (JILIN, 152)])
def test_ansible_inventory_list_matches_build_without_warnings(inv, hosts):
    r = ansible_inventory("-i", inv, "--list")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # no warnings: the source's own files are claimed by the plugin
    listed = json.loads(r.stdout)
    built = inventory.build(inv)
    assert len(listed["_meta"]["hostvars"]) == len(built["_meta"]["hostvars"]) == hosts
    for group in built["all"]["children"]:
        if group != "ungrouped":
            assert sorted(listed[group]["hosts"]) == sorted(built[group]["hosts"]), group
    for name, hv in built["_meta"]["hostvars"].items():
        got = listed["_meta"]["hostvars"][name]
        for key, value in hv.items():
            assert got[key] == value, (name, key)  # plain values, not __ansible_unsafe wrappers


def test_lab_group_vars_apply():
    listed = json.loads(ansible_inventory("-i", LAB, "--list").stdout)["_meta"]["hostvars"]
    assert listed["220102-app1"]["ansible_user"] == "jincai"
    assert listed["220102-app1"]["ansible_become"] is True
    assert listed["220102-rtr"]["ansible_connection"] == "local"
    assert listed["220102-rtr"]["jincai_netmiko_user"] == "netops"
    assert "vault_snmp_auth" in listed["bu0001"]


def test_plugin_config_file_can_be_given_directly():
    r = ansible_inventory("-i", os.path.join(LAB, "jincai.yml"), "--graph", "routers")
    assert r.returncode == 0, r.stderr
    assert "220202-rtr" in r.stdout


@pytest.mark.parametrize("target,env", [
    ("jincai.yml", {}),
    # a directory inventory fails hard only with [inventory] any_unparsed_is_failed (requested for ansible.cfg)
    ("", {"ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "True"}),
])
def test_plugin_refuses_an_invalid_source_with_the_validators_messages(tmp_path, target, env):
    inv = tmp_path / "lab"
    shutil.copytree(LAB, inv)
    p = inv / "source/sites/220100.yml"
    p.write_text(p.read_text().replace('{peer: "220100", subnet: 198.18.248.12/30',
                                       '{peer: "229999", subnet: 198.18.248.12/30'))
    r = ansible_inventory("-i", str(inv / target), "--list", env=env)
    assert r.returncode != 0
    assert "jincai: invalid source of truth (1 errors)" in r.stderr
    assert "site 220103: uplinks[0].peer: link to unknown site 229999" in r.stderr


def test_cli_inventory_prints_json(capsys):
    assert inventory.main(LAB) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["_meta"]["hostvars"]["220000-svc"]["jincai_functions"] == ["services"]


def test_cli_inventory_refuses_invalid(tmp_path, capsys):
    inv = tmp_path / "lab"
    shutil.copytree(LAB, inv)
    (inv / "group_vars/all/vault.yml").write_text("---\nvault_jincai_db_passwords: {}\n")
    assert inventory.main(str(inv)) == 1
    assert "vault_snmp_auth: missing vault secret" in capsys.readouterr().err


@pytest.mark.parametrize("inv", [LAB, JILIN])
def test_directories_parse_fully_under_any_unparsed_is_failed(inv):
    """Every file Ansible sees in the inventory dirs is claimed by a plugin, so the stricter setting is safe."""
    r = ansible_inventory("-i", inv, "--graph", env={"ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "True"})
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_benchmark_synthetic_source_is_valid_and_ten_times_larger(tmp_path):
    """benchmarks/inventory.py measures a real, valid 700-site source built by the allocator."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_inventory", os.path.join(ROOT, "benchmarks", "inventory.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    inv = str(tmp_path / "synthetic")
    assert bench.synthetic_source(inv) == 700
    from jincai.source import validate

    assert validate.findings(inv) == []
    data = inventory.build(inv)
    assert len(data["_meta"]["hostvars"]) > 10 * 140
    assert len(data["county"]["hosts"]) == 2 * 609


@pytest.mark.parametrize("inv,name", [(LAB, "lab"), (JILIN, "jilin")])
def test_state_dirs_are_per_network_and_outside_the_checkout(inv, name, tmp_path):
    """Every checkout driving a network must find the same CA and generated passwords."""
    env = {"JINCAI_STATE_DIR": str(tmp_path), "JINCAI_PKI_DIR": ""}
    r = ansible_inventory("-i", inv, "--list", env=env)
    assert r.returncode == 0, r.stderr
    hv = json.loads(r.stdout)["_meta"]["hostvars"]["220000-rtr"]
    assert hv["jincai_pki_dir"] == os.path.join(str(tmp_path), "pki", name)
    assert hv["jincai_secrets_dir"] == os.path.join(str(tmp_path), "secrets", name)
    assert hv["jincai_network_name"] == name
    assert not hv["jincai_pki_dir"].startswith(ROOT)


def test_pki_dir_follows_the_inventory_and_the_environment(tmp_path, monkeypatch):
    from jincai.pki import store

    monkeypatch.delenv("JINCAI_PKI_DIR", raising=False)
    monkeypatch.setenv("JINCAI_STATE_DIR", str(tmp_path))
    assert store.default_dir(JILIN) == os.path.join(str(tmp_path), "pki", "jilin")
    assert store.default_dir() == os.path.join(str(tmp_path), "pki", "lab")
    monkeypatch.setenv("JINCAI_PKI_DIR", str(tmp_path / "elsewhere"))
    assert store.default_dir(JILIN) == str(tmp_path / "elsewhere")
