"""Routing and metro policy on the live lab (FRR routers in systemd-nspawn, driven by netmiko).

Proves on the real lab: playbooks/routers.yml converges and a second run changes nothing; OSPF
adjacencies are Full; county servers reach the province through their city; a county cannot reach
another county's routers' management plane; metro parties reach only the services the policy grants;
a hand-made change shows in --check --diff and is reverted; a push with an invalid line fails, the
router is rolled back and stays reachable; the FRR configs pass `vtysh --dryrun`.
"""

import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from jincai import ROOT
from jincai import netconfig as nc  # module_utils/jincai_netconfig.py
from jincai.run import run

import hoststate
from conftest import changed_on, hostvars, inventory, mgmt_address, run_on, wait_routes_converged

pytestmark = pytest.mark.lab

LAB = os.path.join(ROOT, "inventories", "lab")
PLAYBOOK = "playbooks/routers.yml"


def _tail(res, n=40):
    return "\n".join(res.output.splitlines()[-n:])


def _router_group_vars():
    """The lab's group_vars/routers.yml (netmiko user and key), which ansible-inventory merges in."""
    import yaml

    with open(os.path.join(LAB, "group_vars", "routers.yml"), encoding="utf-8") as fh:
        return yaml.safe_load(fh)


NETMIKO_USER = _router_group_vars()["jincai_netmiko_user"]
NETMIKO_KEY = _router_group_vars()["jincai_netmiko_key_file"]


def routers():
    return sorted(inventory()["routers"]["hosts"])


def vtysh(host, command):
    """The output of one vtysh ``show`` command on ``host``, read with testinfra as ``jincai verify`` reads FRR:
    the automation account, ``sudo vtysh -c COMMAND`` (the netmiko user's own vtysh login is what
    :func:`device` and the playbook use)."""
    return hoststate.read(host, "vtysh -c %s", command)


def device(host):
    """A jincai_netconfig Device connected to ``host`` (close with .conn.disconnect())."""
    hv = hostvars(host)
    platform = nc.get_platform(hv["jincai_router"]["platform"])
    conn = nc.connect(platform, mgmt_address(host), NETMIKO_USER, key_file=NETMIKO_KEY)
    return nc.Device(conn, platform)


def reach(src, address, port, timeout=3):
    """True when ``src`` opens a TCP connection to address:port."""
    res = run_on(src, f"nc -z -w {timeout} {address} {port}", sudo=False, timeout=timeout + 30)
    return res.returncode == 0


@pytest.fixture(scope="module")
def converged(site_first):
    """The routers as the session's whole-lab site.yml left them (tests/lab/conftest.py; the modules
    before this one restore what they break), then OSPF given time to converge: the adjacencies Full and
    every site LAN installed on every router."""
    res = site_first
    assert res.rc == 0, _tail(res)
    _wait_for_full_adjacencies()
    missing = wait_routes_converged()
    assert not missing, f"site LANs missing from routing tables after routers.yml: {missing}"
    return res


def _expected_neighbors(host):
    hv = hostvars(host)
    peers = [i["peer"] for i in hv["jincai_interfaces"] if i["role"] in ("uplink", "downlink") and i["peer"]]
    return {hostvars(p)["jincai_router"]["router_id"] for p in peers}


def _full_neighbors(host):
    data = json.loads(vtysh(host, "show ip ospf neighbor json"))
    full = set()
    for rid, entries in (data.get("neighbors") or {}).items():
        if any(str(e.get("nbrState", e.get("state", ""))).startswith("Full") for e in entries):
            full.add(rid)
    return full


def _wait_for_full_adjacencies(deadline_s=60):
    import time

    end = time.monotonic() + deadline_s
    while True:
        missing = {h: _expected_neighbors(h) - _full_neighbors(h) for h in routers()}
        missing = {h: m for h, m in missing.items() if m}
        if not missing or time.monotonic() > end:
            return missing
        time.sleep(2)


def _assert_routing_settled():
    """The ending of a test that changed routing: the adjacencies Full again, then every site LAN back in
    every router's table (SPF throttling can install the routes seconds after Full), so the next test,
    tests/lab/test_verify.py's included, finds the WAN converged."""
    adjacencies = _wait_for_full_adjacencies()
    missing = wait_routes_converged()
    assert not adjacencies, f"adjacencies not Full: {adjacencies}"
    assert not missing, f"site LANs missing from routing tables: {missing}"


def test_second_run_changes_nothing(converged, site_second):
    """The routers' share of the session's second site.yml run: changed=0 on every router."""
    assert site_second.rc == 0, _tail(site_second)
    assert changed_on(site_second, routers()) == {}, f"not idempotent: {site_second.changed_tasks()}"


def test_check_mode_reports_no_drift(converged, site_check):
    """The routers' share of the session's site.yml --check --diff: no drift on any router."""
    assert site_check.rc == 0, _tail(site_check)
    assert changed_on(site_check, routers()) == {}, f"{site_check.changed_tasks()}\n{_tail(site_check, 80)}"


def test_ospf_adjacencies_are_full(converged):
    missing = _wait_for_full_adjacencies()
    assert not missing, f"adjacencies not Full: {missing}"
    for host in routers():
        assert _expected_neighbors(host), f"{host} has no WAN neighbours in the inventory"


def _counties():
    return sorted(h for h in inventory()["county"]["hosts"] if h in inventory()["app_servers"]["hosts"])


def test_every_county_server_reaches_the_province_through_its_city(converged):
    province_app = next(h for h in inventory()["province"]["hosts"] if h in inventory()["app_servers"]["hosts"])
    target = hostvars(province_app)["jincai_address"]
    for app in _counties():
        hv = hostvars(app)
        city_rtr = f"{hv['jincai_site']['parent']}-rtr"
        city_addrs = {i["address"].split("/")[0] for i in hostvars(city_rtr)["jincai_interfaces"]}
        ok = run_on(app, f"ping -n -c 1 -W 2 {target}", sudo=False)
        assert ok.returncode == 0, f"{app} cannot reach {target}: {ok.stdout}{ok.stderr}"
        # TTL 2 expires at the second hop: that router must be the county's city router
        hop = run_on(app, f"ping -n -c 1 -W 2 -t 2 {target}", sudo=False)
        m = re.search(r"From (\S+) .*Time to live exceeded", hop.stdout)
        assert m, f"{app}: no time-exceeded at hop 2: {hop.stdout}"
        assert m.group(1) in city_addrs, f"{app}: hop 2 is {m.group(1)}, not its city router {city_rtr}"
        # and the county router's own forwarding decision points at the city
        rtr = f"{hv['jincai_site_code']}-rtr"
        route = hoststate.read(rtr, "ip route get %s", target)
        uplink = next(i for i in hostvars(rtr)["jincai_interfaces"] if i["role"] == "uplink")
        hoststate.expect(rtr, f"ip route get {target}", f"dev {uplink['name']}" in route,
                         f"via its uplink dev {uplink['name']}", route.strip())


def test_a_county_cannot_reach_another_countys_management_plane(converged):
    counties = _counties()
    assert len(counties) >= 2
    for src in counties:
        own_site = hostvars(src)["jincai_site_code"]
        for other in counties:
            other_site = hostvars(other)["jincai_site_code"]
            rtr = f"{other_site}-rtr"
            rhv = hostvars(rtr)
            lan = next(i for i in rhv["jincai_interfaces"] if i["role"] == "lan")["address"].split("/")[0]
            targets = [lan, rhv["jincai_router"]["loopback"]]
            for address in targets:
                allowed = other_site == own_site
                assert reach(src, address, 22) is allowed, \
                    f"{src} -> {rtr} {address}:22 should be {'open' if allowed else 'closed'}"


@pytest.fixture(scope="module")
def listeners(converged):
    """Tiny TCP listeners for every app port on the province app server (stopped afterwards)."""
    app = next(h for h in inventory()["province"]["hosts"] if h in inventory()["app_servers"]["hosts"])
    address = hostvars(app)["jincai_address"]
    ports = sorted(_catalogue_ports(_catalogue()))
    started = []
    listening = hoststate.listening(app)
    for port in ports:
        if not {f"tcp://0.0.0.0:{port}", f"tcp://:::{port}", f"tcp://{address}:{port}"} & listening:
            unit = f"jincai-test-listen-{port}"
            run_on(app, f"systemd-run --unit={unit} --collect python3 -m http.server {port} --bind {address}",
                   check=True)
            started.append(unit)
    import time

    time.sleep(1)
    yield app, address
    for unit in started:
        run_on(app, f"systemctl stop {unit}")


def _catalogue():
    """The application catalogue of the source of truth (network.yml applications)."""
    return hostvars("220000-rtr")["jincai_applications"]


def _catalogue_ports(apps):
    return {_catalogue()[a]["port"] for a in apps}


def _parties(kind):
    return sorted(p["name"] for p in hostvars("220000-rtr")["jincai_parties"] if p["kind"] == kind)


def _allowed(name):
    """Applications the party ``name`` asks for that the catalogue lets its kind reach."""
    party = next(p for p in hostvars("220000-rtr")["jincai_parties"] if p["name"] == name)
    return {a for a in party["apps"] if party["kind"] in _catalogue()[a].get("parties", [])}


def _check_party_reach(party, address):
    """``party`` reaches exactly the ports of the applications it may reach at ``address``; not SSH."""
    allowed = _catalogue_ports(_allowed(party))
    assert allowed, f"{party} may reach no application: nothing to prove"
    for port in sorted(allowed):
        assert reach(party, address, port), f"{party} cannot reach {address}:{port}"
    for port in sorted(_catalogue_ports(_catalogue()) - allowed) + [22]:
        assert not reach(party, address, port, timeout=2), f"{party} reaches {address}:{port}"


def _deny_counter(rtr):
    out = hoststate.read(rtr, "nft list chain inet jincai_router metro_in")
    m = re.search(r"counter packets (\d+) bytes \d+ log prefix", out)
    hoststate.expect(rtr, "nft chain inet jincai_router metro_in", m, "a counted, logged deny rule", out)
    return int(m.group(1))


def test_banks_reach_treasury_payment_and_nothing_else(listeners):
    app, address = listeners
    banks = _parties("commercial_bank") + _parties("peoples_bank")
    assert banks
    before = _deny_counter("220000-rtr")
    for bank in banks:
        assert _allowed(bank) == {"treasury"}, _allowed(bank)  # the lab's banks ask for treasury only
        _check_party_reach(bank, address)
        assert run_on(bank, f"ping -n -c 1 -W 2 {address}", sudo=False).returncode != 0
    assert _deny_counter("220000-rtr") > before, "the denied attempts were not counted/logged"


def test_tax_bureau_reaches_only_nontax_revenue(listeners):
    app, address = listeners
    (tax,) = _parties("tax_bureau")
    assert _allowed(tax) == {"nontax"}, _allowed(tax)
    _check_party_reach(tax, address)


def test_the_denied_ports_are_open_from_the_province_lan(listeners):
    """The denials above are the metro policy, not closed ports: the province LAN reaches them all."""
    app, address = listeners
    ports = _catalogue_ports(a for a, spec in _catalogue().items() if "province" in spec["tiers"])
    for port in sorted(ports) + [22]:
        assert reach("220000-svc", address, port), f"220000-svc cannot reach {address}:{port}"


def test_metro_parties_cannot_log_in_to_the_router(converged):
    for party in _parties("commercial_bank") + _parties("tax_bureau"):
        assert not reach(party, "198.18.1.1", 22, timeout=2)


def test_hand_made_change_shows_in_check_diff_and_is_reverted(converged):
    host = "220202-rtr"
    uplink = next(i for i in hostvars(host)["jincai_interfaces"] if i["role"] == "uplink")["name"]
    dev = device(host)
    try:
        dev.apply([f"interface {uplink}", "ip ospf cost 55", "exit"])
    finally:
        dev.conn.disconnect()
    try:
        assert "ip ospf cost 55" in vtysh(host, "show running-config")
        check = run(PLAYBOOK, inventory=LAB, check=True, diff=True, args=["--limit", host])
        assert check.rc == 0, _tail(check)
        assert check.recap[host]["changed"] == 1
        assert re.search(r"^-\s*ip ospf cost 55$", check.output, re.M), _tail(check, 80)
        assert "ip ospf cost 55" in vtysh(host, "show running-config"), "check mode changed the router"
        backups = os.path.join(ROOT, "backups", hostvars(host)["jincai_site_code"], host)
        known = set(os.listdir(backups)) if os.path.isdir(backups) else set()
        fix = run(PLAYBOOK, inventory=LAB, args=["--limit", host])
        assert fix.rc == 0 and fix.recap[host]["changed"] == 1, _tail(fix)
        running = vtysh(host, "show running-config")
        assert "ip ospf cost 55" not in running and "ip ospf cost 10" in running
        new = set(os.listdir(backups)) - known
        assert len(new) == 1, f"expected one new backup under {backups}, got {new}"
        with open(os.path.join(backups, new.pop()), encoding="utf-8") as fh:
            assert "ip ospf cost 55" in fh.read(), "the backup is not the pre-change running config"
    finally:
        if "ip ospf cost 55" in vtysh(host, "show running-config"):  # the test stopped before the fix
            run(PLAYBOOK, inventory=LAB, args=["--limit", host])
        _assert_routing_settled()


def test_invalid_line_fails_rolls_back_and_router_stays_reachable(converged):
    host = "220103-rtr"
    uplink = next(i for i in hostvars(host)["jincai_interfaces"] if i["role"] == "uplink")["name"]
    before = vtysh(host, "show running-config")
    extra = {"router_extra_lines": ["hostname must-not-stay", f"interface {uplink}", " ip ospf cost 77",
                                    " ip ospf frobnicate 3", "exit"]}
    res = run(PLAYBOOK, inventory=LAB, args=["--limit", host, "-e", json.dumps(extra)])
    try:
        assert res.rc != 0 and res.recap[host]["failed"] == 1, _tail(res)
        assert "device refused ' ip ospf frobnicate 3'" in res.output or "frobnicate" in res.output
        assert "rolled back to its previous config" in res.output, _tail(res)
        after = vtysh(host, "show running-config")
        p = nc.PLATFORMS["frr"]
        assert nc.same(nc.parse(after, p), nc.parse(before, p)), nc.unified_diff(nc.normalize(after, p),
                                                                                  nc.normalize(before, p))
        assert not _wait_for_full_adjacencies(30)
        ok = run(PLAYBOOK, inventory=LAB, args=["--limit", host])
        assert ok.rc == 0 and ok.recap[host]["changed"] == 0, _tail(ok)
    finally:
        running = vtysh(host, "show running-config")
        if "must-not-stay" in running or "ip ospf cost 77" in running:  # not rolled back: put the plan back
            run(PLAYBOOK, inventory=LAB, args=["--limit", host])
        _assert_routing_settled()


NFT_FILE = "/etc/nftables.conf"  # roles/router router_nftables_file
NFT_STAMP = "/run/jincai-router-nftables.loaded"


def _nft_state(host, strict=True):
    """What the FRR router's packet filter looks like: file digest and mode, the stamp, the kernel table,
    nftables.service at boot (``strict``: the table must be loaded and every command succeed)."""
    tail = "" if strict else " 2>&1; true"
    return run_on(host, f"sha1sum {NFT_FILE}; stat -c %U:%G:%a {NFT_FILE}; cat {NFT_STAMP}; "
                        f"nft list table inet jincai_router > /dev/null && echo table-loaded; "
                        f"systemctl is-enabled nftables.service{tail}", check=strict).stdout


def test_packet_filter_drift_of_each_kind_shows_in_check_and_is_restored_in_one_ssh_command(converged):
    """roles/router's one-SSH-command packet filter (library/jincai_nftables.py) on an FRR router: a
    hand-edited file (and its mode), a flushed kernel table and a disabled nftables.service each show in
    --check --diff without being touched, and one run restores all three; the next run changes nothing."""
    host = "220102-rtr"
    good = _nft_state(host)
    assert "table-loaded" in good and good.rstrip().endswith("enabled"), good
    run_on(host, f"echo '# hand-made' >> {NFT_FILE}; chmod 0600 {NFT_FILE}; nft delete table inet jincai_router; "
                 "systemctl disable nftables.service 2>/dev/null", check=True)
    try:
        broken = _nft_state(host, strict=False)
        check = run(PLAYBOOK, inventory=LAB, check=True, diff=True, args=["--limit", host])
        assert check.rc == 0, _tail(check)
        assert check.recap[host]["changed"] == 1, _tail(check)
        assert re.search(r"^-# hand-made$", check.output, re.M), _tail(check, 80)
        assert _nft_state(host, strict=False) == broken, "check mode changed the router"
        fix = run(PLAYBOOK, inventory=LAB, args=["--limit", host])
        assert fix.rc == 0 and fix.recap[host]["changed"] == 1, _tail(fix)
        assert _nft_state(host) == good
        again = run(PLAYBOOK, inventory=LAB, args=["--limit", host])
        assert again.rc == 0 and again.recap[host]["changed"] == 0, _tail(again)
    finally:
        if _nft_state(host, strict=False) != good:
            run(PLAYBOOK, inventory=LAB, args=["--limit", host])
        _assert_routing_settled()


def test_an_invalid_packet_filter_is_refused_before_it_is_installed(converged):
    """jincai_nftables with a ruleset nft -c refuses: the task fails with nft's message and the router's
    file, stamp, table and unit are as they were."""
    host = "220202-rtr"
    good = _nft_state(host)
    import yaml

    with open(os.path.join(LAB, "group_vars", "all", "connection.yml"), encoding="utf-8") as fh:
        conn = yaml.safe_load(fh)  # how the role reaches the router (ansible_user, key, SSH options)
    args = json.dumps({"host": mgmt_address(host), "user": conn["ansible_user"],
                       "key_file": conn["ansible_ssh_private_key_file"],
                       "ssh_args": conn["ansible_ssh_common_args"], "path": NFT_FILE,
                       "content": "table inet jincai_router {\n chain input { frobnicate; }\n}\n",
                       "table": "inet jincai_router", "stamp": NFT_STAMP})
    res = subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible"), "localhost", "-M", os.path.join(ROOT, "library"),
                          "-m", "jincai_nftables", "-a", args], cwd=ROOT, capture_output=True, text=True,
                         check=False, timeout=120)
    assert res.returncode != 0, res.stdout
    assert "not valid" in res.stdout and "frobnicate" in res.stdout, res.stdout[-2000:]
    assert _nft_state(host) == good


def _render(host, template):
    """Render a router template with the lab host vars, as the role does (trim_blocks)."""
    import jinja2
    import yaml

    with open(os.path.join(ROOT, "policy", "metro.yml"), encoding="utf-8") as fh:
        policy = yaml.safe_load(fh)["metro_policy"]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(ROOT, "templates", "router")),
                             trim_blocks=True, undefined=jinja2.StrictUndefined)
    return env.get_template(template).render(**hostvars(host), router_metro_policy=policy,
                                             router_snmp={"user": "u", "auth_key": "a", "priv_key": "p"})


def test_frr_configs_pass_vtysh_dry_run(converged):
    """The FRR parser itself (`vtysh --dryrun`) accepts every rendered lab config, and refuses a bad one."""
    for host in routers():
        cfg = shlex.quote(_render(host, "frr.j2"))
        res = run_on(host, f"printf '%s\\n' {cfg} > /tmp/jincai-dryrun.conf && vtysh -C -f /tmp/jincai-dryrun.conf")
        assert res.returncode == 0, f"{host}: {res.stdout}{res.stderr}"
    bad = run_on(routers()[0], "printf 'interface eth1\\n ip ospf frobnicate 3\\n' > /tmp/jincai-bad.conf && "
                               "vtysh -C -f /tmp/jincai-bad.conf")
    assert bad.returncode != 0


def test_per_city_areas_county_routes_are_inter_area_through_the_city(converged, tmp_path):
    """The production design (one OSPF area per city) on the lab: counties reach the province with
    inter-area routes through their city router (the ABR); then the lab's own inventory is restored."""
    import shutil

    import yaml

    inv = tmp_path / "lab-per-city"
    shutil.copytree(LAB, inv)
    net_file = inv / "source" / "network.yml"
    data = yaml.safe_load(net_file.read_text(encoding="utf-8"))
    data["network"]["ospf"]["areas"] = "per_city"
    net_file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    try:
        res = run(PLAYBOOK, inventory=str(inv))
        assert res.rc == 0, _tail(res)
        assert not _wait_for_full_adjacencies(), "adjacencies not Full with per-city areas"
        county, city = "220102-rtr", "220100-rtr"
        assert "0.0.0.1" in vtysh(county, "show running-config")
        province_lan = hostvars("220000-rtr")["jincai_site"]["lan"]
        import time

        deadline = time.monotonic() + 30
        while True:
            routes = json.loads(vtysh(county, "show ip ospf route json"))
            entry = routes.get(province_lan) or {}
            if entry.get("routeType") == "N IA" or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert entry.get("routeType") == "N IA", f"{province_lan} on {county}: {entry}"
        abr = json.loads(vtysh(city, "show ip ospf json"))
        assert abr.get("abrType") and len(abr.get("areas", {})) == 2, abr.get("areas", {}).keys()
        app = "220102-app1"
        target = hostvars("220000-app1")["jincai_address"]
        assert run_on(app, f"ping -n -c 1 -W 2 {target}", sudo=False).returncode == 0
    finally:
        back = run(PLAYBOOK, inventory=LAB)
        assert back.rc == 0, _tail(back)
        _assert_routing_settled()
