"""The day-0 kit of an in-band site (``jincai bootstrap CODE --day0``), rendered for sites of the
production source (inventories/jilin) on each router platform: addresses from the inventory, the
same lines as the regular router config, the automation key, no secret, and a checklist in Chinese
and English. Nothing is contacted."""

import base64
import os
import re
import shutil
import subprocess

import jinja2
import pytest
import yaml

from jincai import ROOT, cli
from jincai.bootstrap import day0
from jincai.bootstrap.preflight import BootstrapError
from jincai.source import model

JILIN = os.path.join(ROOT, "inventories", "jilin")
SITES = {"frr": "220102", "huawei_vrp": "220103", "h3c_comware": "220105", "cisco_ios": "220112",
         "huawei_vrpv8": "220103"}  # no county runs VRP V8: 220103 is switched to it in a copy


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    for kind, extra in (("rsa", ["-b", "2048"]), ("ed25519", [])):
        subprocess.run(["ssh-keygen", "-q", "-t", kind, *extra, "-N", "", "-C", f"day0-{kind}",
                        "-f", str(d / kind)], check=True)
    return {k: str(d / f"{k}.pub") for k in ("rsa", "ed25519")} | {"private": str(d / "rsa")}


@pytest.fixture(scope="module")
def vrpv8_inventory(tmp_path_factory):
    inv = tmp_path_factory.mktemp("jilin") / "jilin"
    shutil.copytree(JILIN, inv)
    path = inv / "source" / "sites" / "220100.yml"
    text = path.read_text(encoding="utf-8")
    old = "router: {platform: huawei_vrp, loopback: 10.22.254.4}"
    assert text.count(old) == 1
    path.write_text(text.replace(old, old.replace("huawei_vrp,", "huawei_vrpv8,")), encoding="utf-8")
    return str(inv)


def _inventory(platform, vrpv8_inventory):
    return vrpv8_inventory if platform == "huawei_vrpv8" else JILIN


def _kit(platform, keys, vrpv8_inventory):
    key = keys["ed25519"] if platform == "frr" else keys["rsa"]
    return day0.build_kit(_inventory(platform, vrpv8_inventory), SITES[platform], key, keys["ed25519"])


def _hostvars(inventory):
    return model.derive(model.load(inventory)).hosts


def _full_config(hv):
    """The regular router config (what roles/router renders) of the same router."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(day0.ROUTER_TEMPLATES), trim_blocks=True,
                             undefined=jinja2.StrictUndefined)
    with open(day0.POLICY, encoding="utf-8") as fh:
        policy = yaml.safe_load(fh)["metro_policy"]
    snmp = {"user": "u", "auth_key": "A", "priv_key": "P"}
    return env.get_template(f"{hv['jincai_router']['platform']}.j2").render(
        **hv, router_metro_policy=policy, router_snmp=snmp)


@pytest.mark.parametrize("platform", sorted(SITES))
def test_the_router_day0_config_comes_from_the_inventory_and_the_platform_template(platform, keys,
                                                                                   vrpv8_inventory):
    inventory = _inventory(platform, vrpv8_inventory)
    code = SITES[platform]
    hv = _hostvars(inventory)[f"{code}-rtr"]
    assert hv["jincai_router"]["platform"] == platform
    files = _kit(platform, keys, vrpv8_inventory)
    name = f"{code}-rtr.day0.{'sh' if platform == 'frr' else 'txt'}"
    text = files[name]
    uplink = next(i for i in hv["jincai_interfaces"] if i["role"] == "uplink")
    lan = next(i for i in hv["jincai_interfaces"] if i["role"] == "lan")
    others = [i for i in hv["jincai_interfaces"] if i["role"] not in ("uplink", "lan")]
    addr, plen = uplink["address"].split("/")
    assert uplink["name"] in text and addr in text
    # the LAN too: the servers' gateway (their in-band management addresses are on the LAN)
    assert lan["name"] in text and lan["address"].split("/")[0] in text
    assert hv["jincai_router"]["loopback"] in text and hv["jincai_mgmt_address"] == hv["jincai_router"]["loopback"]
    for net in hv["jincai_management_networks"]:
        assert net.split("/")[0] in text, net
    assert f"area {hv['jincai_router']['ospf']['area']}" in text
    # only the uplink, the LAN and the loopback: no metro or other interface, no metro ACL, no static route
    for i in others:
        assert i["address"].split("/")[0] not in text, i
    assert not re.search(r"acl (number|advanced) 3001|JINCAI-METRO-IN|ip route", text)
    # the automation key, in the platform's form
    key = day0.parse_public_key(open(keys["ed25519" if platform == "frr" else "rsa"]).read(), "k")
    if platform == "cisco_ios":
        assert day0._chunks(key["b64"], 72)[0] in text
    elif platform == "h3c_comware":
        assert day0.rsa_spki_der(key["blob"]).hex().upper()[:64] in text
    else:
        assert key["line"] in text
    # no secret: no SNMP, no password or cipher, no private key
    assert not re.search(r"snmp|password|cipher|secret|PRIVATE KEY", text, re.I), text
    # every routing and ACL line of day 0 is a line of the regular config (one template, not a copy)
    full = set(_full_config(hv).splitlines())
    if platform != "frr":
        account = set(day0._env().get_template(
            {"cisco_ios": "day0/_cisco_ios_accounts.j2", "h3c_comware": "day0/_h3c_comware_accounts.j2"}
            .get(platform, "day0/_huawei_accounts.j2")).render(**day0.router_day0_vars(
                day0.resolve_site(inventory, code), key, "jincai", "netops")).splitlines())
        assert [line for line in text.splitlines() if line not in full and line not in account] == []


def test_the_frr_day0_is_a_shell_script_with_the_routing_filter_and_accounts(keys, vrpv8_inventory):
    text = _kit("frr", keys, vrpv8_inventory)["220102-rtr.day0.sh"]
    assert subprocess.run(["sh", "-n"], input=text, text=True, check=False).returncode == 0
    frr = text.split("<<'JINCAI_FRR'\n", 1)[1].split("\nJINCAI_FRR\n", 1)[0]
    assert "interface eth3" not in frr and "hostname 220102-rtr" in frr
    assert "ip address 10.22.248.10/30" in frr and "ip address 10.22.254.3/32" in frr
    # the LAN (the servers' gateway), passive: the province reaches the servers through it
    lan = frr.split("interface eth2\n", 1)[1].split("exit\n", 1)[0]
    assert " ip address 10.22.18.1/25\n" in lan and " ip ospf passive\n" in lan
    nft = text.split("<<'JINCAI_NFT'\n", 1)[1].split("\nJINCAI_NFT\n", 1)[0]
    assert 'ip saddr { 10.22.2.0/24, 10.22.18.0/25 } tcp dport 22 accept' in nft
    assert "useradd -m -s /usr/bin/vtysh -G frr,frrvty" in text and "NOPASSWD" in text


def test_the_server_first_boot_files_carry_address_route_and_key(keys, vrpv8_inventory):
    files = _kit("huawei_vrp", keys, vrpv8_inventory)
    hv = _hostvars(JILIN)["220103-app1"]
    script = files["220103-app1.firstboot.sh"]
    assert subprocess.run(["sh", "-n"], input=script, text=True, check=False).returncode == 0
    lan = hv["jincai_interfaces"][0]["address"]
    gateway = next(r["via"] for r in hv["jincai_routes"] if r["to"] == "default")
    assert f"ADDRESS={lan}" in script and f"ip route replace default via {gateway}" in script
    assert f"    gateway {gateway}" in script
    assert open(keys["ed25519"]).read().strip() in script
    preseed = files["220103-app1.preseed.cfg"]
    assert f"d-i netcfg/get_ipaddress string {lan.split('/')[0]}" in preseed
    assert "d-i netcfg/get_netmask string 255.255.255.128" in preseed
    assert f"d-i netcfg/get_gateway string {gateway}" in preseed
    b64 = re.search(r"late_command string echo (\S+) \| base64 -d", preseed).group(1)
    assert base64.b64decode(b64).decode() == script
    assert not re.search(r"passwd/root-password|password string|PRIVATE KEY", preseed + script)


def test_the_checklist_is_in_chinese_and_english_and_names_every_file(keys, vrpv8_inventory):
    files = _kit("cisco_ios", keys, vrpv8_inventory)
    text = files["CHECKLIST.md"]
    for name in files:
        if name != "CHECKLIST.md":
            assert name in text
    assert "开通检查清单" in text and "Day-0 checklist" in text
    assert "copy running-config startup-config" in text and "crypto key generate rsa modulus 2048" in text
    assert "jincai bootstrap 220112 -i inventories/jilin" in text and "changed=0" in text
    assert day0.parse_public_key(open(keys["rsa"]).read(), "k")["fingerprint"] in text


def test_a_vendor_router_refuses_a_key_type_it_cannot_load(keys):
    with pytest.raises(BootstrapError, match=r"220103-rtr \(huawei_vrp\): the automation key is ssh-ed25519"):
        day0.build_kit(JILIN, "220103", keys["ed25519"], keys["ed25519"])


def test_a_private_key_is_refused(keys):
    with pytest.raises(BootstrapError, match="is a private key"):
        day0.build_kit(JILIN, "220102", keys["private"], keys["ed25519"])


def test_the_default_keys_are_the_inventorys_automation_keys():
    assert day0.default_key_paths(JILIN) == ("~/.ssh/jincai_ed25519.pub", "~/.ssh/jincai_ed25519.pub")


def test_jincai_bootstrap_day0_writes_the_kit(keys, tmp_path, capsys):
    out = tmp_path / "kit"
    rc = cli.main(["bootstrap", "220105", "--day0", "-i", JILIN, "-o", str(out), "--router-key", keys["rsa"],
                   "--server-key", keys["ed25519"]])
    assert rc == 0, capsys.readouterr()
    assert sorted(os.listdir(out)) == ["220105-app1.firstboot.sh", "220105-app1.preseed.cfg",
                                       "220105-rtr.day0.txt", "CHECKLIST.md"]
    assert os.stat(out / "220105-app1.firstboot.sh").st_mode & 0o777 == 0o755
    # the province's own step before day 0: the city router's end of the new line
    assert f"ansible-playbook playbooks/routers.yml -i {JILIN} --limit 220100-rtr -e jincai_allow_production=true" in capsys.readouterr().out
    assert cli.main(["bootstrap", "229999", "--day0", "-i", JILIN, "-o", str(out)]) == 1
    assert "site 229999" in capsys.readouterr().err
