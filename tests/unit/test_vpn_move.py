"""A unit moved between concentrators (issue 16): after ``jincai pki move`` the client is served by
the concentrator where it is now active, on the next vpn_client run, without a change of the source.

The source places each lab client at one concentrator (``jincai_vpn_client``); every client also
carries every concentrator's registry, server and served LANs (``jincai_vpn_client.registries``,
:func:`jincai.source.model.vpn_registries`), and roles/vpn_client takes its registry entry, server,
server identity and traffic selector from the registry where the unit is active (the
``vpn_client_placement`` filter of plugins/filter/jincai_vpn.py). Exercised here on the province twin's
inventory with a throw-away PKI, the role's own task expressions and template (no host is touched)."""

import ipaddress
import json
import os
import sys

import jinja2
import pytest
import yaml
from jinja2.nativetypes import NativeEnvironment

from jincai import ROOT
from jincai.pki import cli, registry
from jincai.pki import vpn as vpnplans
from jincai.source import inventory

sys.path.insert(0, os.path.join(ROOT, "plugins", "filter"))
import jincai_vpn  # noqa: E402

JILIN = os.path.join(ROOT, "inventories", "jilin")
ROLE = os.path.join(ROOT, "roles", "vpn_client")
UNIT = "bu220200-1"  # a unit of Jilin city's own site (220200) in the twin; moved to Changchun (220100)


@pytest.fixture(scope="module")
def hostvars(twin_dir):
    inv = inventory.build(twin_dir)
    return {h: dict(inv["all"]["vars"], **v, inventory_hostname=h) for h, v in inv["_meta"]["hostvars"].items()}


def _yaml(*parts):
    with open(os.path.join(ROLE, *parts), encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _expr(text):
    """The Jinja expression of a ``"{{ ... }}"`` task argument."""
    text = " ".join(str(text).split())
    assert text.startswith("{{ ") and text.endswith(" }}"), text
    return text[3:-3]


def _env(native=False):
    env = (NativeEnvironment if native else jinja2.Environment)(
        undefined=jinja2.StrictUndefined, trim_blocks=True, keep_trailing_newline=True,
        loader=jinja2.FileSystemLoader(os.path.join(ROLE, "templates")))
    env.filters.update(jincai_vpn.FilterModule().filters())
    return env


def _role_vars(hv, pki_dir):
    """The role's defaults as Ansible resolves them over the client's host vars."""
    out = dict(hv, jincai_pki_dir=str(pki_dir))
    for k, v in _yaml("defaults", "main.yml").items():
        out[k] = _env(native=True).from_string(str(v)).render(out) if "{{" in str(v) else v
    return out


def _task(tasks, name_start):
    return next(t for t in tasks if t["name"].startswith(name_start))


def _run_role_head(hv, pki_dir):
    """What the role's first tasks compute (tasks/main.yml, templated as Ansible does): the placement
    fact, the assert, the facts the copy tasks and the template read. Returns (facts, assert_ok)."""
    tasks = _yaml("tasks", "main.yml")
    v = _role_vars(hv, pki_dir)
    find = _task(tasks, "Find the concentrator that serves the unit now")["ansible.builtin.set_fact"]
    assert _expr(find["_vpn_client_placement"]) == (
        "vpn_client_pki_dir | vpn_client_placement(vpn_client_code, vpn_client_registries)")
    v["_vpn_client_placement"] = _env(native=True).compile_expression(_expr(find["_vpn_client_placement"]))(**v)
    check = _task(tasks, "Check that the unit is onboarded and active")["ansible.builtin.assert"]
    ok = all(_env().compile_expression(c)(**v) for c in check["that"])
    assert _expr(check["fail_msg"]) == "_vpn_client_placement.error"
    if ok:
        take = _task(tasks, "Take the unit's entry")["ansible.builtin.set_fact"]
        for k, e in take.items():
            v[k] = _env(native=True).compile_expression(_expr(e))(**v)
    return v, ok


def _render(v):
    ctx = dict(v, ansible_managed="test", _vpn_client_backend="libipsec")
    return _env().get_template("province.conf.j2").render(ctx)


def _pki(twin_dir, *args):
    assert cli.main(["-i", twin_dir, *args]) == 0


def test_every_client_carries_every_concentrators_registry_server_and_lans_from_the_source(hostvars):
    clients = {h: v["jincai_vpn_client"] for h, v in hostvars.items() if "jincai_vpn_client" in v}
    concentrators = {v["jincai_vpn"]["registry"]: (h, v["jincai_vpn"]) for h, v in hostvars.items() if "jincai_vpn" in v}
    assert len(concentrators) == 10 and len(clients) >= 20
    expected = {reg: {"concentrator": h, "server": vpn["access_address"],
                      "lans": {s["site"]: s["lan"] for s in vpn["served"] + vpn["township_served"]}}
                for reg, (h, vpn) in concentrators.items()}
    for name, vc in clients.items():
        assert vc["registries"] == expected, name
        own = vc["registries"][vc["registry"]]  # where the source places it: the same facts
        assert (own["concentrator"], own["server"], own["lans"][vc["home"]]) == (vc["concentrator"], vc["server"],
                                                                                   vc["lan"]), name


def test_a_unit_moved_with_pki_move_is_served_by_its_new_concentrator_on_the_next_run(pkidir, twin_dir, hostvars):
    hv = hostvars[UNIT]
    old, new = hostvars["220200-vpn"]["jincai_vpn"], hostvars["220100-vpn"]["jincai_vpn"]
    _pki(twin_dir, "sync")
    before, ok = _run_role_head(hv, pkidir)
    assert ok and before["_vpn_client_registry"]["registry"] == "vpn/220200"
    conf = _render(before)
    assert f"remote_addrs = {old['access_address']}" in conf and "remote_ts = 198.18.32.0/24" in conf

    _pki(twin_dir, "move", UNIT, "--to", "220100")
    after, ok = _run_role_head(hv, pkidir)
    assert ok, after["_vpn_client_placement"]["error"]
    entry = json.loads((pkidir / "vpn" / "220100" / "units.json").read_text())
    entry = next(u for u in entry["units"] if u["code"] == UNIT)
    assert after["_vpn_client_unit"] == entry and entry["home"] == "220100"
    assert after["_vpn_client_registry"]["registry"] == "vpn/220100"
    conf = _render(after)
    new_lan = next(s["lan"] for s in new["served"] if s["site"] == "220100")
    assert f"remote_addrs = {new['access_address']}" in conf and new["access_address"] != old["access_address"]
    assert f"remote_ts = {new_lan}" in conf
    assert "id = 220100-vpn.jilin-twin.jincai.test" in conf and f"Virtual IP assigned by the province: {entry['address']}" in conf
    # the copy tasks read the new registry's certificate and vaulted key
    tasks = _yaml("tasks", "main.yml")
    crt = _env().from_string(_task(tasks, "Install the province CA certificate")["loop"][1]["src"]).render(after)
    assert crt == str(pkidir / "vpn" / "220100" / "units" / f"{UNIT}.crt") and os.path.exists(crt)
    key = after["_vpn_client_registry"]["key_vault"]  # what the key task's unvault lookup reads
    assert key == str(pkidir / "vpn" / "220100" / entry["key_vault"]) and os.path.exists(key)
    assert key.startswith(str(pkidir / "vpn" / "220100" / "keys") + os.sep)


def test_the_role_refuses_a_unit_active_nowhere_naming_every_registry_file_and_the_fix(pkidir, twin_dir, hostvars):
    _pki(twin_dir, "sync")
    _pki(twin_dir, "revoke", UNIT)
    v, ok = _run_role_head(hostvars[UNIT], pkidir)
    err = v["_vpn_client_placement"]["error"]
    assert not ok and f"unit {UNIT} is not an active unit in any concentrator's registry" in err
    for reg in ("vpn", "vpn/220100", "vpn/220200", "vpn/222400"):
        assert str(pkidir / reg / "units.json") in err
    assert f"jincai pki add {UNIT} NAME" in err and "jincai pki sync" in err


def test_the_role_refuses_a_unit_active_at_two_concentrators_naming_both(pkidir, twin_dir, hostvars):
    _pki(twin_dir, "sync")
    # onboarded again elsewhere, behind the CLI's back (`jincai pki add -c` refuses it: test_pki_add.py)
    reg = registry.UnitRegistry(vpnplans.plan(twin_dir, "220100"), str(pkidir))
    assert reg.add(UNIT, "twice")
    reg.save()
    v, ok = _run_role_head(hostvars[UNIT], pkidir)
    err = v["_vpn_client_placement"]["error"]
    assert not ok and f"unit {UNIT} is active in more than one registry" in err
    assert f"{pkidir / 'vpn' / '220100' / 'units.json'} (220100-vpn)" in err
    assert f"{pkidir / 'vpn' / '220200' / 'units.json'} (220200-vpn)" in err
    assert f"jincai pki -c CONCENTRATOR revoke {UNIT}" in err


def test_a_registry_not_written_yet_holds_no_unit_and_a_broken_one_is_named(tmp_path):
    registries = {"vpn": {"concentrator": "p-vpn", "server": "198.18.232.1", "lans": {"p": "198.18.0.0/24"}},
                  "vpn/c": {"concentrator": "c-vpn", "server": "198.18.232.2", "lans": {"c": "198.18.16.0/24"}}}
    (tmp_path / "vpn" / "c").mkdir(parents=True)
    (tmp_path / "vpn" / "c" / "units.json").write_text(json.dumps({"server_identity": "c-vpn.d", "units": [
        {"code": "u1", "status": "active", "site": "c", "home": "c", "address": "198.18.200.1"}]}))
    got = jincai_vpn.vpn_client_placement(str(tmp_path), "u1", registries)  # vpn/units.json does not exist
    assert (got["error"], got["registry"], got["server"], got["lan"], got["server_identity"]) == (
        "", "vpn/c", "198.18.232.2", "198.18.16.0/24", "c-vpn.d")
    (tmp_path / "vpn" / "units.json").write_text("{not json")
    got = jincai_vpn.vpn_client_placement(str(tmp_path), "u1", registries)
    assert got["error"].startswith(f"{tmp_path / 'vpn' / 'units.json'}: not a readable registry") and not got["server"]


def test_a_csr_unit_enrols_at_the_concentrator_where_it_is_active(pkidir, twin_dir, hostvars):
    """tasks/enrol.yml: a moved CSR unit enrols at its new concentrator with its entry's own site (at the
    source's, `enrol` would onboard it a second time at its old concentrator)."""
    tasks = _yaml("tasks", "enrol.yml")
    enrol = _task(tasks, "Enrol | Have the province certify")
    v = _role_vars(hostvars[UNIT], pkidir)
    v.update(ansible_playbook_python="python3", inventory_dir=twin_dir)

    def argv():
        w = dict(v, _where=_env(native=True).compile_expression(_expr(enrol["vars"]["_where"]))(**v))
        return _env(native=True).compile_expression(_expr(enrol["ansible.builtin.command"]["argv"]))(**w)

    first = argv()  # not onboarded anywhere yet: where the source places it
    assert first[first.index("-c") + 1] == "220200-vpn" and first[first.index("--site") + 1] == "220200"
    _pki(twin_dir, "sync")
    _pki(twin_dir, "move", UNIT, "--to", "220100")
    moved = argv()
    assert moved[moved.index("-c") + 1] == "220100-vpn" and moved[moved.index("--site") + 1] == "220100"


# --------------------------------------------------------------------------- one access segment (twin)

def test_every_concentrator_and_client_of_the_twin_shares_one_vpn_access_segment(twin_dir):
    """As a carrier's access network does in production: every concentrator's access port and every
    client's are on ONE segment, one subnet (plan.vpn_access), so a unit reaches any concentrator."""
    from jincai.lab import topology
    from jincai.source import model

    m = topology.load(twin_dir)
    plan = topology.plan(m, twin_dir)
    access = ipaddress.ip_network(m.network["plan"]["vpn_access"])
    ports = {h: i for h, host in plan.hosts.items() for i in host.interfaces if i.role == "vpn_access"}
    concentrators = {c.host for c in m.concentrators}
    clients = {h.name for h in m.hosts.values() if h.vpn_client}
    assert len(concentrators) == 10 and len(clients) >= 20 and set(ports) == concentrators | clients
    segment = model.vpn_access_segment(m)
    assert segment == "vpnaccess-220000" and {i.segment for i in ports.values()} == {segment}
    seg = plan.segments[segment]
    assert {h for h, _ in seg.members} == set(ports) and not seg.point_to_point
    for h, i in ports.items():
        assert i.address.network == access and i.address.ip in topology.LAB_RANGE, (h, i.address)
    # a unit of Jilin city reaches Changchun's concentrator on-link, on its own segment
    assert ipaddress.ip_address(m.hosts["220100-vpn"].vpn.access_address) in ports[UNIT].address.network
    # the small lab's one concentrator keeps its segment id (its topology fingerprint is unchanged)
    lab = topology.load(os.path.join(ROOT, "inventories", "lab"))
    assert model.vpn_access_segment(lab) == "vpnaccess-220000"


def test_the_lab_cables_the_shared_access_segment_as_one_bridge(twin_dir, monkeypatch):
    """jincai.lab.net.build's commands for the twin (captured, nothing created): one bridge for the
    access segment, one port on it per concentrator and client."""
    from jincai.lab import net, topology

    plan = topology.plan(topology.load(twin_dir), twin_dir)
    lines = []
    monkeypatch.setattr(net, "batch", lambda cmds, ns=None, tool="ip": lines.extend(cmds))
    monkeypatch.setattr(net, "sysctl", lambda ns, **values: None)
    monkeypatch.setattr(net, "ip", lambda *args, **kw: None)
    monkeypatch.setattr(net, "open", lambda *args, **kw: open(os.devnull, "w", encoding="ascii"), raising=False)
    net.build(plan, log=lambda msg: None)
    bridges = [ln.split()[2] for ln in lines if ln.startswith("link set b") and '"vpnaccess-' in ln]
    assert len(bridges) == 1
    ports = [ln for ln in lines if ln.startswith("link set s") and f" master {bridges[0]} up" in ln]
    names = {ln.split('"')[1].split()[1] for ln in ports}
    assert len(ports) == 39 and {"220000-vpn", "220100-vpn", "222400-vpn", UNIT, "tw220100-1"} <= names


def test_jincai_verify_checks_a_moved_unit_at_its_new_concentrator(pkidir, twin_dir):
    """jincai.verify.plan follows the registries as the role does: the moved unit's tunnel is checked
    at its new concentrator (with the new server and pool), not at the one the source names."""
    from jincai.verify import plan

    def checks():
        net = plan.Network(twin_dir)
        by_host = {h: {c.id: c for c in plan.checks_for(net, h)} for h in (UNIT, "220100-vpn", "220200-vpn")}
        return net, by_host

    _pki(twin_dir, "sync")
    net, before = checks()
    old = net.hostvars["220200-vpn"]["jincai_vpn"]
    assert f"vpn.tunnel.{UNIT}" in before["220200-vpn"] and f"vpn.tunnel.{UNIT}" not in before["220100-vpn"]
    assert before[UNIT]["vpn.tunnel"].expected.endswith(f"with {old['access_address']}")
    assert before[UNIT]["vpn.virtual_ip"].params["pool"] == old["pool"]

    _pki(twin_dir, "move", UNIT, "--to", "220100")
    net, after = checks()
    new = net.hostvars["220100-vpn"]["jincai_vpn"]
    assert f"vpn.tunnel.{UNIT}" in after["220100-vpn"] and f"vpn.tunnel.{UNIT}" not in after["220200-vpn"]
    assert after[UNIT]["vpn.tunnel"].title == "the tunnel to 220100-vpn is up"
    assert after[UNIT]["vpn.tunnel"].expected.endswith(f"with {new['access_address']}")
    assert after[UNIT]["vpn.virtual_ip"].params["pool"] == new["pool"] != old["pool"]
    # the source still places it at its old concentrator: only the registries moved it
    assert net.hostvars[UNIT]["jincai_vpn_client"]["concentrator"] == "220200-vpn"
