"""Budget units at the CITY concentrators of the province twin, live (issue 16): a revoked unit is
refused at its city's concentrator while its neighbours stay up, and a unit moved to another city's
concentrator is refused at the old one and configured at the new one with a fixed address from the new
pool, and its client follows it there and connects. Each test puts the twin back (re-onboarding, moving
back) and the last one proves the twin's VPN is left as found: vpn.yml over the whole twin converges, a
second run changes nothing, every client that was up is up again with the same registry entry. Units and concentrators are picked from the twin's
inventory (the first city concentrators in code order, each one's first unit of its own site).

**A moved unit connects at its new concentrator**
(``test_moved_unit_is_refused_at_the_old_concentrator_and_configured_at_the_new``): after ``jincai pki move``, roles/vpn_client takes the unit's registry, its concentrator's access address
and its own site's LAN from the registry where the unit is now active (the ``vpn_client_placement``
filter over ``jincai_vpn_client.registries``), not from where the source places the client; and every
concentrator and client of the twin shares ONE VPN access segment (``vpnaccess-<province code>``,
``jincai.source.model.vpn_access_segment``: one bridge in the lab switch, one subnet ``plan.vpn_access``),
as a carrier access network does in production, so the client reaches the new concentrator on-link. A
twin booted before that change has one access bridge per concentrator: rebuild it (``make province``).
"""

import ipaddress
import json
import os
import re
import subprocess
import sys
import time

import pytest

from jincai import ROOT
from jincai.lab.topology import SWITCH_NS
from jincai.pki import store
from jincai.run import env as runenv
from jincai.run import run

from conftest import group, hostvars, parallel, run_on, wait

PLAYBOOK = "playbooks/vpn.yml"
_LEFT_AS_FOUND = []  # set by the last test; otherwise the module's teardown converges vpn.yml once more


def _tail(res, n=40):
    return "\n".join(res.output.splitlines()[-n:])


def _city_concentrators():
    return [h for h in group("vpn_concentrators") if hostvars(h)["jincai_tier"] == "city"]


def _clients():
    return group("budget_unit_clients") + group("township_clients")


def _concentrator_of(client):
    return hostvars(client)["jincai_vpn_client"]["concentrator"]


def _own_unit(concentrator):
    """The first budget unit (by name) whose own site is the concentrator's (bundle enrolment)."""
    site = hostvars(concentrator)["jincai_site_code"]
    units = [c for c in _clients() if _concentrator_of(c) == concentrator
             and hostvars(c)["jincai_vpn_client"]["kind"] == "budget_unit"
             and hostvars(c)["jincai_vpn_client"]["home"] == site
             and hostvars(c)["jincai_vpn_client"]["enrolment"] == "bundle"]
    assert units, f"{concentrator} has no budget-unit client of its own site in the twin"
    return units[0]


def _served_lan(concentrator, site):
    return next(s["lan"] for s in hostvars(concentrator)["jincai_vpn"]["served"] if s["site"] == site)


def _pki(twin, *args):
    """``python -m jincai.pki -i TWIN ARGS`` on the control node (the twin's vault password); its stdout."""
    env = dict(os.environ, JINCAI_INVENTORY=twin, **runenv.vault_env(twin))
    res = subprocess.run([sys.executable, "-m", "jincai.pki", "-i", twin, *args], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=600, check=False)
    assert res.returncode == 0, f"jincai pki {' '.join(args)} exited {res.returncode}: {res.stderr}{res.stdout}"
    return res.stdout


def _registry(twin, concentrator):
    """{code: entry} of a concentrator's registry (``<pki>/<jincai_vpn.registry>/units.json``)."""
    path = os.path.join(store.default_dir(twin), hostvars(concentrator)["jincai_vpn"]["registry"], "units.json")
    with open(path, encoding="utf-8") as fh:
        return {u["code"]: u for u in json.load(fh)["units"]}


def _conn(entry):
    """The concentrator's connection name of a registry entry (the vpn_connection filter): bu-/tw-<code>."""
    return f"{entry['identity'].split('.')[1]}-{entry['code']}"


def _vpn(twin, *args, check=False):
    return run(PLAYBOOK, inventory=twin, args=args, check=check)


def _blocks(text):
    """{name: text block} of swanctl's listings (a block starts at a line that is not indented)."""
    blocks, name = {}, None
    for line in text.splitlines():
        if line and not line.startswith(" "):
            name = line.split(":")[0]
            blocks[name] = line + "\n"
        elif name:
            blocks[name] += line + "\n"
    return blocks


def _sas(host):
    """Established IKE SAs on ``host``: {name: block} of ``swanctl --list-sas`` (none while charon is down)."""
    out = run_on(host, "swanctl --list-sas --noblock", timeout=60).stdout
    return {n: t for n, t in _blocks(out).items() if "ESTABLISHED" in t.splitlines()[0]}


def _conns(host):
    return _blocks(run_on(host, "swanctl --list-conns", check=True, timeout=60).stdout)


def _pools(host):
    """{pool name: base address} of ``swanctl --list-pools`` (one single-address pool per unit)."""
    out = run_on(host, "swanctl --list-pools", check=True, timeout=60).stdout
    return {f[0]: f[1] for f in (line.split() for line in out.splitlines()) if len(f) >= 2}


def _has_addr(text, address):
    return re.search(rf"(?<![\d.]){re.escape(address)}(?![\d])", text) is not None


def _up(client, concentrator, conn, address):
    """The client's tunnel is established on both sides with ``address`` as its virtual IP."""
    return (_has_addr(_sas(concentrator).get(conn, ""), address)
            and _has_addr(_sas(client).get("province", ""), address))


def _now(host):
    return run_on(host, "date '+%Y-%m-%d %H:%M:%S'", check=True).stdout.strip()


def _journal(concentrator, since):
    return run_on(concentrator, f"journalctl -u strongswan --since '{since}' --no-pager -o cat",
                  check=True, timeout=60).stdout


def _refused_as_revoked(concentrator, code, since, reason):
    """charon's lines (since ``since``) that checked ``code``'s certificate and found it revoked for
    ``reason`` (a regex), or None."""
    lines = _journal(concentrator, since).splitlines()
    for i, line in enumerate(lines):
        if "checking certificate status of" in line and re.search(rf"CN={re.escape(code)}\b", line):
            for later in lines[i + 1:i + 40]:
                if re.search(rf"certificate was revoked on .*reason: {reason}", later, re.I):
                    return f"{line.strip()}\n{later.strip()}"
    return None


def _journal_tail(concentrator, since, n=30):
    return "\n".join(_journal(concentrator, since).splitlines()[-n:])


def _nft(host):
    return run_on(host, "nft list table ip jincai_vpn", check=True, timeout=60).stdout


def _cabled_to(host):
    """The segment (bridge alias in the lab switch) that ``host``'s VPN access port is cabled to."""
    iface = next(i for i in hostvars(host)["jincai_interfaces"] if i["role"] == "vpn_access")
    res = subprocess.run(["ip", "-n", SWITCH_NS, "-j", "link", "show"], capture_output=True, text=True, check=True)
    links = json.loads(res.stdout)
    by_name = {link["ifname"]: link for link in links}
    port = next(link for link in links if link.get("ifalias") == f"{iface['segment']} {host} {iface['name']}")
    return by_name[port["master"]].get("ifalias")


def _crl_refuses(twin, concentrator, unit, conn, since, reason):
    """Push only the CRL to ``concentrator``; the unit's SA must end, and its next initiation be refused
    as revoked for ``reason`` (a regex of strongSwan's wording) in the concentrator's journal since
    ``since``, with no SA on either side afterwards."""
    crl = _vpn(twin, "--tags", "vpn_crl", "--limit", concentrator)
    assert crl.rc == 0, _tail(crl)
    dropped, _ = wait(lambda: conn not in _sas(concentrator), 20)
    assert dropped, f"{concentrator}: {unit}'s SA {conn} was not terminated by the CRL push"
    run_on(unit, "swanctl --initiate --child province --timeout 15", timeout=60)
    refused, _ = wait(lambda: _refused_as_revoked(concentrator, unit, since, reason), 30, 2)
    assert refused, (f"{concentrator}: no 'certificate was revoked ... {reason}' for {unit} in strongSwan's "
                     f"journal since {since}:\n{_journal_tail(concentrator, since)}")
    print(f"{concentrator} refused {unit}:\n{refused}")
    time.sleep(3)
    assert conn not in _sas(concentrator), f"{concentrator}: the revoked {unit} has an SA"
    assert "province" not in _sas(unit), f"{unit}: holds an SA with its revoked certificate"


@pytest.fixture(scope="module")
def found(twin):
    """The twin's VPN as this module finds it: every client's registry entry (at its own concentrator)
    and which clients are up; the clients of the concentrators the tests touch must be up. Teardown:
    unless the last test proved the twin left as found, converge vpn.yml over the whole twin once more."""
    clients = _clients()
    entries = {c: _registry(twin, _concentrator_of(c))[c] for c in clients}

    def up(client):
        e = entries[client]
        return wait(lambda: e["status"] == "active" and _up(client, _concentrator_of(client), _conn(e),
                                                             e["address"]), 60, 3)[0]

    up_now = dict(zip(clients, parallel(up, clients)))
    touched = set(_city_concentrators()[:2])
    down = sorted(c for c in clients if _concentrator_of(c) in touched and not up_now[c])
    assert not down, (f"not established before the tests: {down} (provision the twin first: site.yml, or "
                      "playbooks/vpn.yml)")
    print(f"clients up at the start: {sum(up_now.values())} of {len(clients)}")
    yield {"entries": entries, "up": up_now}
    if not _LEFT_AS_FOUND:
        res = _vpn(twin)
        print(f"teardown: vpn.yml over the twin rc={res.rc}")


def test_revoked_unit_is_refused_live_at_a_city_concentrator(twin, found):
    concentrator = _city_concentrators()[0]
    unit = _own_unit(concentrator)
    before = _registry(twin, concentrator)[unit]
    conn = _conn(before)
    neighbours = {c: _conn(found["entries"][c]) for c in _clients()
                  if _concentrator_of(c) == concentrator and c != unit}
    assert neighbours, f"{concentrator} serves no other client in the twin"
    since = _now(concentrator)
    t0 = time.monotonic()
    try:
        _pki(twin, "revoke", unit, "--reason", "keyCompromise")
        assert _registry(twin, concentrator)[unit]["status"] == "revoked"
        # only the CRL, only to this concentrator: the connection stays configured, so what refuses the
        # unit is its certificate on the CRL (revocation = strict), not a missing connection
        _crl_refuses(twin, concentrator, unit, conn, since, "key ?compromise")
        assert conn in _conns(concentrator), f"{concentrator}: {conn} is no longer configured after a CRL-only push"
        concentrator_sas = _sas(concentrator)
        still = {c: n in concentrator_sas for c, n in neighbours.items()}
        assert all(still.values()), f"revoking {unit} disturbed its neighbours at {concentrator}: {still}"
        print(f"revocation at {concentrator}: revoked, CRL pushed and refused in {time.monotonic() - t0:.0f} s; "
              f"neighbours still up: {sorted(neighbours)}")
    finally:
        # re-onboard at its own concentrator (new key and certificate, same address and entry), converge
        _pki(twin, "-c", concentrator, "add", unit, before["name"])
        again = _vpn(twin, "--limit", f"{concentrator},{unit}")
        assert again.rc == 0, _tail(again)
    after = _registry(twin, concentrator)[unit]
    assert after["serial"] != before["serial"], "re-onboarding did not issue a new certificate"
    assert {k: v for k, v in after.items() if k != "serial"} == {k: v for k, v in before.items() if k != "serial"}
    back, seconds = wait(lambda: _up(unit, concentrator, conn, before["address"]), 60, 2)
    assert back, f"{unit} did not come back at {concentrator} with {before['address']} after re-onboarding"
    print(f"{unit} re-onboarded and up again with {before['address']} ({seconds:.0f} s after the converge)")


def test_moved_unit_is_refused_at_the_old_concentrator_and_configured_at_the_new(twin, found):
    old, new = _city_concentrators()[1], _city_concentrators()[0]
    old_site, new_site = hostvars(old)["jincai_site_code"], hostvars(new)["jincai_site_code"]
    unit = _own_unit(old)
    before = _registry(twin, old)[unit]
    conn = _conn(before)
    new_pool = ipaddress.ip_network(hostvars(new)["jincai_vpn"]["pool"])
    new_lan = _served_lan(new, new_site)
    others = {c: (_concentrator_of(c), _conn(found["entries"][c])) for c in _clients()
              if _concentrator_of(c) in (old, new) and c != unit and found["up"][c]}
    since = _now(old)
    try:
        out = _pki(twin, "move", unit, "--to", new_site)
        print(out.strip())
        moved = _registry(twin, new)[unit]
        left = _registry(twin, old)[unit]
        assert moved["status"] == "active" and moved["home"] == new_site and moved["site"] == new_site, moved
        assert ipaddress.ip_address(moved["address"]) in new_pool, f"{moved['address']} is not in {new}'s pool {new_pool}"
        assert moved["address"] != before["address"] and moved["identity"] == before["identity"]
        assert moved["serial"] != before["serial"], "the move did not issue a certificate at the new concentrator"
        assert left["status"] == "revoked" and left["address"] == before["address"], left

        # refused at the old one: the CRL (the old certificate, affiliationChanged) to the old concentrator
        _crl_refuses(twin, old, unit, conn, since, "affiliation ?changed")

        # both concentrators converged (docs/vpn.md: after a move, --tags vpn for both)
        conv = _vpn(twin, "--tags", "vpn", "--limit", f"{old},{new}")
        assert conv.rc == 0, _tail(conv)
        assert conn not in _conns(old), f"{old}: {conn} still configured after the move"
        assert not _has_addr(_nft(old), before["address"]), f"{old}: the firewall still lets {before['address']} in"
        block = _conns(new).get(conn, "")
        assert moved["identity"] in block and new_lan in block, (
            f"{new}: {conn} not configured for {moved['identity']} with traffic selector {new_lan}:\n{block}")
        assert _pools(new).get(conn) == moved["address"], f"{new}: pool {conn} is not {moved['address']}: {_pools(new)}"
        assert _has_addr(_nft(new), moved["address"]), f"{new}: no firewall entry for {moved['address']}"
        sas = {h: _sas(h) for h in (old, new)}
        still = {c: n in sas[h] for c, (h, n) in others.items()}
        assert all(still.values()), f"the move disturbed other units: {still}"

        # the client follows the move: roles/vpn_client serves it from the registry where it is active
        # (vpn_client_placement), over the one VPN access segment every concentrator and client shares
        new_server = hostvars(new)["jincai_vpn"]["access_address"]
        segments = (_cabled_to(unit), _cabled_to(new))
        ping = run_on(unit, f"ping -n -c 2 -W 1 {new_server}", timeout=30)
        assert segments[0] == segments[1] and ping.returncode == 0, (
            f"{unit} has no path to {new} ({new_server}): segments {segments}, ping rc {ping.returncode} "
            "(the twin predates the shared VPN access segment: rebuild it, `make province`)")
        dry = _vpn(twin, "--limit", unit, check=True)
        assert dry.rc == 0, f"roles/vpn_client in check mode after the move:\n{_tail(dry)}"
        role = _vpn(twin, "--limit", unit)
        assert role.rc == 0, f"roles/vpn_client after the move:\n{_tail(role)}"
        conf = run_on(unit, "cat /etc/swanctl/conf.d/province.conf", check=True).stdout
        assert f"remote_addrs = {new_server}" in conf and f"remote_ts = {new_lan}" in conf, (
            f"{unit}: not configured toward {new} ({new_server}, {new_lan}):\n{conf}")
        connected, seconds = wait(lambda: _up(unit, new, conn, moved["address"]), 60, 2)
        assert connected, (f"{unit} configured toward {new} but not established there with {moved['address']}:\n"
                           f"{_journal_tail(new, since)}")
        sas = {h: _sas(h) for h in (old, new)}
        still = {c: n in sas[h] for c, (h, n) in others.items()}
        assert all(still.values()), f"the moved unit's tunnel disturbed other units: {still}"
        print(f"{unit} moved {old} -> {new}: configured toward {new_server} ({new_lan}) by roles/vpn_client and "
              f"established with {moved['address']} {seconds:.0f} s after the run; segments {segments[0]}")
    finally:
        # back to its old concentrator: a move again (revoked at the new one), its old address back
        _pki(twin, "move", unit, "--to", old_site)
        back = _vpn(twin, "--limit", f"{old},{new},{unit}")
        assert back.rc == 0, _tail(back)
    after = _registry(twin, old)[unit]
    assert after["status"] == "active" and after["address"] == before["address"] and after["home"] == before["home"]
    assert _registry(twin, new)[unit]["status"] == "revoked"
    assert conn not in _conns(new), f"{new}: {conn} still configured after the unit moved back"
    up, seconds = wait(lambda: _up(unit, old, conn, before["address"]), 60, 2)
    assert up, f"{unit} did not come back at {old} with {before['address']}"
    print(f"{unit} back at {old} with {before['address']} ({seconds:.0f} s after the converge)")


def test_the_twin_vpn_is_left_as_found(twin, found):
    """vpn.yml over the whole twin (the CRL to every concentrator and the services host) converges, a
    second run changes nothing, every client that was up is up again with its registry entry unchanged
    (the two units that went through the tests: a new certificate, nothing else)."""
    t0 = time.monotonic()
    first = _vpn(twin)
    assert first.rc == 0, _tail(first)
    t1 = time.monotonic()
    second = _vpn(twin)
    assert second.rc == 0, _tail(second)
    assert second.total("changed") == 0, f"vpn.yml not idempotent on the twin: {second.changed_tasks()[:20]}"
    print(f"vpn.yml over the twin: {t1 - t0:.0f} s (changed={first.total('changed')}), "
          f"again {time.monotonic() - t1:.0f} s changed=0, {len(second.recap)} hosts")
    entries = {c: _registry(twin, _concentrator_of(c))[c] for c in _clients()}
    touched = {_own_unit(_city_concentrators()[0]), _own_unit(_city_concentrators()[1])}
    for client, was in found["entries"].items():
        now = entries[client]
        if client in touched:
            now, was = ({k: v for k, v in e.items() if k != "serial"} for e in (now, was))
        assert now == was, f"{client}: registry entry changed: {was} -> {now}"

    def up(client):
        e = entries[client]
        return wait(lambda: _up(client, _concentrator_of(client), _conn(e), e["address"]), 60, 3)[0]

    expected = [c for c in _clients() if found["up"][c]]
    down = [c for c, ok in zip(expected, parallel(up, expected)) if not ok]
    assert not down, f"not up again: {down}"
    _LEFT_AS_FOUND.append(True)
