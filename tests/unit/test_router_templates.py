"""Router templates: golden files per platform, syntax checks, one policy on every platform.

Host vars come from the production source (inventories/jilin) through jincai.source.model, with the
router platform overridden so that a province, a city and a county router render on each of the
five platforms. Regenerate the golden files after an intended change with
``JINCAI_UPDATE_GOLDEN=1 pytest tests/unit/test_router_templates.py``.
"""

import functools
import json
import os
import re
import shutil
import subprocess
import sys

import jinja2
import pytest
import yaml
from ciscoconfparse import CiscoConfParse  # pinned: a missing one is an error, not a skip

from jincai import netconfig as nc  # module_utils/jincai_netconfig.py

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEMPLATES = os.path.join(ROOT, "templates", "router")
GOLDEN = os.path.join(ROOT, "tests", "unit", "golden", "router")
POLICY = os.path.join(ROOT, "policy", "metro.yml")
PLATFORMS = ["frr", "huawei_vrp", "huawei_vrpv8", "h3c_comware", "cisco_ios"]
ROUTERS = {"province": "220000-rtr", "city": "220100-rtr", "county": "220102-rtr"}
SNMP = {"user": "jincai-snmp", "auth_key": "GOLDEN-AUTH-KEY", "priv_key": "GOLDEN-PRIV-KEY"}
UPDATE = os.environ.get("JINCAI_UPDATE_GOLDEN") == "1"


@functools.lru_cache(maxsize=None)
def hostvars(platform):
    """Host vars of the production source with every router on ``platform``."""
    from jincai.source import model

    src = model.load(os.path.join(ROOT, "inventories", "jilin"))
    for site in src.site_map().values():
        site["router"]["platform"] = platform
    return model.derive(src).hosts


def policy():
    with open(POLICY, encoding="utf-8") as fh:
        return yaml.safe_load(fh)["metro_policy"]


def render(platform, host, template=None):
    """Render ``template`` (default: the platform's) for ``host`` as Ansible does (trim_blocks)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), trim_blocks=True,
                             undefined=jinja2.StrictUndefined)
    hv = dict(hostvars(platform)[host], router_metro_policy=policy(), router_snmp=SNMP)
    return env.get_template(template or f"{platform}.j2").render(**hv) + "\n"


CASES = [(p, tier) for p in PLATFORMS for tier in ROUTERS]


@pytest.mark.parametrize("platform,tier", CASES)
def test_golden(platform, tier):
    """The rendered config equals the reviewed golden file."""
    text = render(platform, ROUTERS[tier])
    path = os.path.join(GOLDEN, f"{platform}-{tier}.cfg")
    if UPDATE:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    with open(path, encoding="utf-8") as fh:
        assert text == fh.read(), f"{path} differs; review and regenerate with JINCAI_UPDATE_GOLDEN=1"


@pytest.mark.parametrize("tier", list(ROUTERS))
def test_golden_nftables(tier):
    """The FRR router's nftables ruleset equals its golden file."""
    text = render("frr", ROUTERS[tier], "nftables.j2")
    path = os.path.join(GOLDEN, f"nftables-{tier}.nft")
    if UPDATE:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    with open(path, encoding="utf-8") as fh:
        assert text == fh.read()


@pytest.mark.parametrize("platform,tier", CASES)
def test_config_is_stable_under_the_diff_engine(platform, tier):
    """Every rendered line survives parsing (nothing silently dropped) and plans to nothing against itself."""
    text = render(platform, ROUTERS[tier])
    p = nc.get_platform(platform)
    tree = nc.parse(text, p)
    assert nc.plan(tree, tree, p) == []
    meaningful = [ln.strip() for ln in text.splitlines() if ln.strip() and ln.strip() not in p.drop_lines
                  and not ln.strip().startswith(("!", "#"))]
    meaningful = {ln for ln in meaningful if ln not in nc.write_only_lines(text, p)}

    def texts(t):
        for node in t.values():
            yield node.text
            yield from texts(node.children)

    kept = set(texts(tree))
    assert meaningful - {"frr defaults traditional"} == kept
    # from nothing, the plan creates every line
    assert kept <= {c.strip() for c in nc.plan({}, tree, p)}


def _acl_rules(platform, text):
    """(source, destination, port) triples the platform's metro ACL permits."""
    if platform == "frr":
        return {(m.group(1), m.group(2).removesuffix("/32"), int(m.group(3))) for m in
                re.finditer(r"ip saddr (\S+) ip daddr (\S+) tcp dport (\d+) accept", text)}
    if platform == "cisco_ios":
        return {(m.group(1), m.group(2), int(m.group(3))) for m in
                re.finditer(r"permit tcp host (\S+) (\S+) 0\.0\.0\.0 eq (\d+)", text)}
    return {(m.group(1), m.group(2), int(m.group(3))) for m in
            re.finditer(r"permit tcp source (\S+) 0 destination (\S+) 0\.0\.0\.0 destination-port eq (\d+)", text)}


@pytest.mark.parametrize("tier", list(ROUTERS))
def test_one_policy_on_every_platform(tier):
    """Every platform permits exactly the same metro flows, computed independently from the data."""
    host = ROUTERS[tier]
    hv = hostvars("frr")[host]
    catalogue = hv["jincai_applications"]
    expected = set()
    for party in hv["jincai_parties"]:
        for app in party["apps"]:
            if party["kind"] in catalogue[app]["parties"]:
                for t in party["targets"]:
                    if t["app"] == app:
                        expected.add((party["address"], t["address"], catalogue[app]["port"]))
    nft = render("frr", host, "nftables.j2")
    seen = {"frr": _acl_rules("frr", nft)}
    for platform in PLATFORMS[1:]:
        seen[platform] = _acl_rules(platform, render(platform, host))
    for platform, rules in seen.items():
        assert rules == expected, platform


def test_policy_denies_what_the_kind_does_not_allow():
    """A party asking for a service its kind may not reach gets no rule for it (and the role refuses it)."""
    from jincai.source import model

    src = model.load(os.path.join(ROOT, "inventories", "jilin"))
    province = src.site_map()["220000"]
    pbc = next(p for p in province["parties"] if p["kind"] == "peoples_bank")
    pbc["apps"] = ["treasury", "nontax"]  # what validate refuses (the catalogue: nontax is not for the PBC)
    hv = dict(model.derive(src).hosts["220000-rtr"], router_metro_policy=policy(), router_snmp=SNMP)
    assert "peoples_bank" not in hv["jincai_applications"]["nontax"]["parties"]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), trim_blocks=True,
                             undefined=jinja2.StrictUndefined)
    text = env.get_template("cisco_ios.j2").render(**hv)
    address = next(p["address"] for p in hv["jincai_parties"] if p["kind"] == "peoples_bank")
    port = hv["jincai_applications"]["nontax"]["port"]
    assert re.search(rf"host {re.escape(address)} \S+ \S+ eq {hv['jincai_applications']['treasury']['port']}", text)
    assert not re.search(rf"host {re.escape(address)} \S+ \S+ eq {port}", text)


@pytest.mark.parametrize("platform", PLATFORMS[1:])
def test_acl_ends_with_a_logged_deny(platform):
    """The metro ACL's last rule denies everything and logs it, on every vendor platform."""
    text = render(platform, "220000-rtr")
    comment = "!" if platform == "cisco_ios" else "#"
    parse = CiscoConfParse(text.splitlines(), comment=comment, ignore_blank_lines=True)
    header = r"^ip access-list extended JINCAI-METRO-IN" if platform == "cisco_ios" else r"^acl (number|advanced) 3001"
    acls = parse.find_objects(header)
    assert len(acls) == 1
    last = acls[0].children[-1].text.strip()
    assert "deny ip" in last and last.endswith(("log", "logging")), last


@pytest.mark.parametrize("platform", PLATFORMS)
def test_syntax_structure(platform):
    """Parsed as IOS-style hierarchy: every WAN interface has its OSPF area, hello 1 / dead 4 unless
    overridden, and the management plane (SSH restricted, syslog, NTP) is present."""
    text = render(platform, "220100-rtr")
    comment = "#" if platform in ("huawei_vrp", "huawei_vrpv8", "h3c_comware") else "!"
    parse = CiscoConfParse(text.splitlines(), comment=comment, ignore_blank_lines=True)
    ifaces = parse.find_objects(r"^interface ")
    hv = hostvars(platform)["220100-rtr"]
    wan = [i for i in hv["jincai_interfaces"] if i["role"] in ("uplink", "downlink")]
    assert wan
    area_re = {"frr": r"ip ospf area", "cisco_ios": r"ip ospf 1 area", "huawei_vrp": r"ospf enable 1 area",
               "huawei_vrpv8": r"ospf enable 1 area", "h3c_comware": r"ospf 1 area"}[platform]
    for i in wan:
        obj = next(o for o in ifaces if o.text.strip() == f"interface {i['name']}")
        kids = [c.text.strip() for c in obj.children]
        assert any(re.match(area_re, k) for k in kids), (i["name"], kids)
        assert any(re.search(r"hello(-interval)? " + str(hv["jincai_router"]["ospf"]["hello"]), k) for k in kids)
    if platform != "frr":
        assert parse.find_objects(r"^\s*(logging host|info-center loghost) ")
        assert parse.find_objects(r"^\s*(ntp server|ntp-service unicast-server) ")
        assert parse.find_objects(r"^\s*snmp-(server group|agent group v3) .*(priv|privacy)")
        vty = parse.find_objects(r"^(line vty|user-interface vty)")
        assert vty and any("ssh" in c.text for c in vty[0].children)


def test_backup_uplink_costs_more():
    """A primary/backup pair of links: the backup link carries the higher OSPF cost on every platform."""
    hv = hostvars("frr")["220000-rtr"]
    costs = {i["segment"]: i["ospf_cost"] for i in hv["jincai_interfaces"] if i["role"] == "downlink"}
    backups = {s: c for s, c in costs.items() if s.endswith("-backup")}
    assert backups, "the production source has backup links"
    primaries = [c for s, c in costs.items() if not s.endswith("-backup")]
    assert min(backups.values()) > max(primaries)
    text = render("frr", "220000-rtr")
    assert f"ip ospf cost {max(backups.values())}" in text


@pytest.mark.skipif(not shutil.which("nft"), reason="nft not installed on this control node")
@pytest.mark.parametrize("tier", list(ROUTERS))
def test_nftables_ruleset_parses(tier, tmp_path):
    """`nft -c` (check only, nothing loaded) accepts the ruleset."""
    path = tmp_path / "r.nft"
    path.write_text(render("frr", ROUTERS[tier], "nftables.j2"))
    res = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_ansible_renders_like_the_tests(tmp_path):
    """Ansible's template lookup (what the role uses) renders byte-for-byte what these tests render."""
    out = tmp_path / "out.json"
    play = tmp_path / "p.yml"
    play.write_text(yaml.safe_dump([{
        "name": "Render", "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "Render every platform", "ansible.builtin.copy": {
            "dest": str(out), "mode": "0600",
            "content": "{{ _r | to_json }}"},
            "vars": {"_r": {p: "{{ lookup('ansible.builtin.template', '%s/%s.j2') }}" % (TEMPLATES, p)
                            for p in ("huawei_vrp",)}}}]}]))
    inv = tmp_path / "inv.yml"
    inv.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    for platform in ("huawei_vrp",):  # one run (~5 s); FRR is rendered by Ansible in the lab tests
        hv = dict(hostvars(platform)["220100-rtr"], router_metro_policy=policy(), router_snmp=SNMP)
        extra = tmp_path / "vars.json"
        extra.write_text(json.dumps(hv))
        env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"))
        res = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(inv),
                              "-e", f"@{extra}", str(play)], capture_output=True, text=True,
                             cwd=ROOT, env=env)
        assert res.returncode == 0, res.stdout + res.stderr
        got = json.loads(out.read_text())
        assert got[platform].rstrip("\n") == render(platform, "220100-rtr").rstrip("\n")


@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_province_advertises_its_inband_management_zone(platform):
    """In-band management (production): the control node sits in the province's management zone, a
    segment of the province router. Every site must route back to it, so the zone is in OSPF, passive,
    on every platform (before this, no county had a route to 10.22.2.0/24: in-band first contact
    could not work). The lab's out-of-band port (role mgmt, no area) stays out of the routing config."""
    hv = hostvars(platform)["220000-rtr"]
    zone = next(i for i in hv["jincai_interfaces"] if i["role"] == "mgmt")
    assert zone["address"] == "10.22.2.1/24" and zone["ospf_area"] is not None and zone["ospf_passive"] is True
    assert {"prefix": "10.22.2.0/24", "area": zone["ospf_area"]} in hv["jincai_router"]["networks"]
    text = render(platform, "220000-rtr")
    block = text.split(f"\ninterface {zone['name']}\n", 1)[1].split("\n!" if platform in ("frr", "cisco_ios") else "\n#", 1)[0]
    area = "0.0.0.0"
    enabled = {"frr": f" ip ospf area {area}", "cisco_ios": f" ip ospf 1 area {area}",
               "h3c_comware": f" ospf 1 area {area}"}.get(platform, f" ospf enable 1 area {area}")
    assert enabled in block.splitlines(), block
    assert "hello" not in block and "point-to-point" not in block and "p2p" not in block  # passive: no adjacency
    if platform == "frr":
        assert " ip ospf passive" in block.splitlines()
    elif platform in ("huawei_vrp", "huawei_vrpv8", "h3c_comware"):
        assert f" silent-interface {zone['name']}" in text.splitlines()
    else:
        assert " passive-interface default" in text.splitlines()
        assert f" no passive-interface {zone['name']}" not in text.splitlines()


def test_the_labs_out_of_band_port_is_not_in_the_routing_config():
    from jincai.source import model

    hv = model.derive(model.load(os.path.join(ROOT, "inventories", "lab"))).hosts["220000-rtr"]
    assert any(i["role"] == "mgmt" and i["ospf_area"] is None for i in hv["jincai_interfaces"])
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), trim_blocks=True,
                             undefined=jinja2.StrictUndefined)
    text = env.get_template("frr.j2").render(**hv, router_metro_policy=policy(), router_snmp=SNMP)
    assert "interface eth0" not in text and "198.19." not in text
    assert not any(n["prefix"].startswith("198.19.") for n in hv["jincai_router"]["networks"])
