"""The one IPsec policy (jincai/data/ipsec.yml): both ends of every tunnel read it, and a unit's bundle
carries the connection the vpn_client role renders (its own template and defaults), not a copy."""

import io
import os
import sys
import tarfile

import jinja2
import yaml

from jincai import ROOT
from jincai.pki import registry, vpn
from jincai.policy import ipsec
from jincai.source import inventory

sys.path.insert(0, os.path.join(ROOT, "plugins", "filter"))
import jincai_vpn  # noqa: E402

LAB = os.path.join(ROOT, "inventories", "lab")
POLICY = ipsec.ansible_vars()["jincai_ipsec"]


def _defaults(role):
    with open(os.path.join(ROOT, "roles", role, "defaults", "main.yml"), encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _resolve(value, variables):
    """A role default as Ansible resolves it (Jinja over the host's variables)."""
    return jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(str(value)).render(variables)


def test_the_inventory_gives_every_host_the_policy():
    assert POLICY == {"ike_proposals": "aes256gcm16-prfsha384-ecp384", "esp_proposals": "aes256-sha384-ecp384"}
    assert inventory.build(LAB)["all"]["vars"]["jincai_ipsec"] == POLICY


def test_both_ends_of_a_tunnel_propose_the_policy():
    hostvars = ipsec.ansible_vars()
    for role in ("vpn_concentrator", "vpn_client"):
        d = _defaults(role)
        assert _resolve(d[f"{role}_proposals"], hostvars) == POLICY["ike_proposals"], role
        assert _resolve(d[f"{role}_esp_proposals"], hostvars) == POLICY["esp_proposals"], role


def test_the_proposals_are_written_once():
    """No role, template, playbook, inventory or module of jincai spells a proposal but the policy file."""
    found = []
    for top in ("roles", "playbooks", "templates", "jincai", "inventories", "plugins", "library", "module_utils"):
        for base, dirs, files in os.walk(os.path.join(ROOT, top)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in files:
                path = os.path.join(base, name)
                with open(path, "rb") as fh:
                    data = fh.read()
                if b"prfsha384" in data or b"aes256-sha384" in data:
                    found.append(os.path.relpath(path, ROOT))
    assert found == ["jincai/data/ipsec.yml"], found


def test_a_bundle_carries_the_connection_the_vpn_client_role_renders(pkidir):
    """bu0001's bundle against what roles/vpn_client renders on the lab's bu0001 (kernel ESP), with
    the role's defaults resolved over bu0001's host vars as Ansible does."""
    inv = inventory.build(LAB)
    hv = dict(inv["all"]["vars"], **inv["_meta"]["hostvars"]["bu0001"], inventory_hostname="bu0001")
    reg = registry.UnitRegistry(vpn.plan(LAB))
    registry.sync(reg)
    with tarfile.open(fileobj=io.BytesIO(open(reg.bundle("bu0001"), "rb").read())) as tar:
        conf = tar.extractfile("bu0001/swanctl/conf.d/province.conf").read().decode()
    role = {k: _resolve(v, hv) for k, v in _defaults("vpn_client").items()
            if k in ("vpn_client_code", "vpn_client_proposals", "vpn_client_esp_proposals", "vpn_client_dpd_delay")}
    # the role's facts: where the unit is active (the vpn_client_placement filter, tasks/main.yml)
    where = jincai_vpn.vpn_client_placement(str(pkidir), "bu0001", hv["jincai_vpn_client"]["registries"])
    assert where["error"] == "" and where["registry"] == "vpn"
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(ROOT, "roles", "vpn_client", "templates")),
                             trim_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    expected = env.get_template("province.conf.j2").render(
        ansible_managed="jincai pki bundle bu0001", _vpn_client_unit=where["unit"], _vpn_client_registry=where,
        _vpn_client_server=where["server"], _vpn_client_remote_ts=where["lan"], _vpn_client_backend="kernel", **role)
    assert conf == expected
    assert f"proposals = {POLICY['ike_proposals']}" in conf and f"esp_proposals = {POLICY['esp_proposals']}" in conf
    assert f"remote_addrs = {hv['jincai_vpn_client']['server']}" in conf and "encap" not in conf
