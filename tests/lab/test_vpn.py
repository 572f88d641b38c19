"""Budget-unit VPN on the live lab: fixed addresses, least access, revocation, restart, idempotency.

Needs the lab (`jincai lab up`) with routing at the province (220000-rtr routes the budget-unit pool
to the concentrator: the router role's static route from the plan). The tests run in file order.
"""

import json
import os
import shlex
import subprocess
import sys
import time

import pytest

from jincai import ROOT
from jincai.pki import store
from jincai.run import run

import hoststate
from conftest import hostvars, run_on

pytestmark = pytest.mark.lab

LAB = os.path.join(ROOT, "inventories", "lab")
VPN = "220000-vpn"
APP = "220000-app1"
UNITS = ("bu0001", "bu0002")
JINCAI = [sys.executable, "-m", "jincai.pki", "-i", LAB]

# A one-shot TCP server on the app host that answers each connection with the peer's address: proves
# which source address the application sees (the unit's own virtual IP).
ECHO_PEER = ("import socket,sys\n"
             "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
             "s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen(16)\n"
             "while True:\n"
             "    c, a = s.accept(); c.sendall((a[0] + '\\n').encode()); c.close()\n")


def _tail(res, n=40):
    return "\n".join(res.output.splitlines()[-n:])


def _registry():
    with open(os.path.join(store.default_dir(), "vpn", "units.json"), encoding="utf-8") as fh:
        return {u["code"]: u for u in json.load(fh)["units"]}


def _sas(host):
    """Established IKE SAs on ``host``: {name: raw text block} from `swanctl --list-sas` (read with testinfra;
    none while charon is down, e.g. just after a restart: the callers poll)."""
    out = hoststate.run(host, "swanctl --list-sas --noblock").stdout
    sas, name = {}, None
    for line in out.splitlines():
        if line and not line.startswith(" "):
            name = line.split(":")[0]
            sas[name] = line + "\n"
        elif name:
            sas[name] += line + "\n"
    return {n: t for n, t in sas.items() if "ESTABLISHED" in t.splitlines()[0]}


def _wait(predicate, timeout, step=1.0):
    """Poll ``predicate`` until it is truthy or ``timeout`` seconds pass; return (value, seconds)."""
    start = time.monotonic()
    while True:
        value = predicate()
        elapsed = time.monotonic() - start
        if value or elapsed > timeout:
            return value, elapsed
        time.sleep(step)


def _all_up():
    return all("province" in _sas(u) for u in UNITS)


def _tcp_from(unit, address, port, timeout=2):
    """Connect from ``unit`` to address:port; return (connected, first line received)."""
    res = run_on(unit, f"nc -w {timeout} {address} {port} </dev/null; echo rc=$?", timeout=timeout + 30)
    lines = res.stdout.strip().splitlines()
    return lines[-1] == "rc=0", (lines[0] if len(lines) > 1 else "")


@pytest.fixture(scope="module")
def provisioned():
    """The VPN playbook converged on the lab (PKI on the control node, concentrator, both clients)."""
    # `jincai lab up` enables forwarding on VPN concentrators (a container cannot write /proc/sys);
    # the role checks it and fails clearly when it is off.
    res = run("playbooks/vpn.yml", inventory=LAB)
    assert res.rc == 0, _tail(res)
    up, _ = _wait(_all_up, 60)
    assert up, f"units not established: {hoststate.run(VPN, 'swanctl --list-sas').stdout}"
    return res


@pytest.fixture(scope="module")
def app_ports(provisioned):
    """Listeners on the province app host: the apps' own when deployed, else temporary echo-peer
    servers (treasury 8102 and nontax 8103), stopped afterwards."""
    started = []
    for port in (8102, 8103):
        if not hoststate.listening_on(APP, port):
            unit = f"jincai-vpntest-{port}"
            run_on(APP, f"systemctl reset-failed {unit} 2>/dev/null; systemd-run --unit={unit} --collect --quiet python3 -c {shlex.quote(ECHO_PEER)} {port}", check=True)
            started.append(unit)
    _wait(lambda: all(hoststate.listening_on(APP, p) for p in (8102, 8103)), 10, 0.5)
    yield {"temporary": [u.rsplit("-", 1)[1] for u in started]}
    for unit in started:
        run_on(APP, f"systemctl stop {unit}")


def test_both_units_connect_with_their_own_fixed_addresses(provisioned):
    reg = _registry()
    concentrator = _sas(VPN)
    for unit in UNITS:
        vip = reg[unit]["address"]
        hoststate.expect(VPN, "established IKE SAs (swanctl --list-sas)", f"bu-{unit}" in concentrator,
                         f"bu-{unit} ({unit})", sorted(concentrator))
        block = concentrator[f"bu-{unit}"]
        hoststate.expect(VPN, f"IKE SA bu-{unit}", f"{reg[unit]['identity']}" in block and vip in block,
                         f"identity {reg[unit]['identity']} and virtual IP {vip}", block)
        own = _sas(unit)
        hoststate.expect(unit, "IKE SA province (swanctl --list-sas)", vip in own.get("province", ""),
                         f"established with virtual IP {vip}", own)
        addrs = hoststate.read(unit, "ip -4 -o addr show")
        hoststate.expect(unit, "IPv4 addresses (ip -4 -o addr show)", f" {vip}/32 " in addrs, f"{vip}/32", addrs)
    assert reg["bu0001"]["address"] != reg["bu0002"]["address"]
    # fixed: a unit reconnecting gets the same address again
    run_on("bu0001", "swanctl --terminate --ike province --timeout 10")
    run_on("bu0001", "swanctl --initiate --child province --timeout 20")
    again = _sas("bu0001").get("province", "")
    hoststate.expect("bu0001", "IKE SA province after a reconnect", reg["bu0001"]["address"] in again,
                     f"the same virtual IP {reg['bu0001']['address']}", again or "no established SA")


def test_units_reach_the_treasury_application_as_themselves(provisioned, app_ports):
    reg = _registry()
    app = hostvars(APP)["jincai_address"]
    route = hoststate.read("220000-rtr", "ip route get %s", reg["bu0001"]["address"])
    assert hostvars(VPN)["jincai_address"] in route, (
        f"220000-rtr does not route the budget-unit pool to the concentrator ({route.strip()}): the router "
        "role installs it from the plan (playbooks/routers.yml, part of site.yml)")
    for unit in UNITS:
        ok, seen = _tcp_from(unit, app, 8102)
        assert ok, f"{unit} cannot reach treasury {app}:8102"
        if "8102" in app_ports["temporary"]:
            assert seen == reg[unit]["address"], f"{unit}: the app saw {seen!r}, not the unit's virtual IP"


def test_units_reach_nothing_else(provisioned, app_ports):
    reg = _registry()
    app = hostvars(APP)["jincai_address"]
    vpn_lan = hostvars(VPN)["jincai_address"]
    for unit in UNITS:
        other = reg["bu0002" if unit == "bu0001" else "bu0001"]["address"]
        assert not _tcp_from(unit, app, 8103)[0], f"{unit} reached another application (nontax 8103)"
        assert not _tcp_from(unit, app, 22)[0], f"{unit} reached SSH on the app server"
        assert not _tcp_from(unit, vpn_lan, 22)[0], f"{unit} reached SSH on the concentrator"
        ping = run_on(unit, f"ping -c 1 -W 2 {other}")
        assert ping.returncode != 0, f"{unit} reached the other unit {other}"
    # the refusals were the concentrator's firewall dropping tunnelled packets, not a missing route
    ruleset = hoststate.read(VPN, "nft list table ip jincai_vpn")
    drops = [line for line in ruleset.splitlines() if "counter packets" in line and line.strip().endswith("drop")]
    hoststate.expect(VPN, "drop counters of nft table ip jincai_vpn",
                     any(int(line.split("counter packets ")[1].split()[0]) > 0 for line in drops),
                     "a drop rule that counted packets", ruleset)


def test_revoked_unit_is_refused_on_its_next_attempt(provisioned):
    since = hoststate.read(VPN, "date '+%Y-%m-%d %H:%M:%S'").strip()
    try:
        res = subprocess.run(JINCAI + ["revoke", "bu0002", "--reason", "keyCompromise"], capture_output=True,
                             text=True, check=False)
        assert res.returncode == 0, res.stderr
        # deploy only the CRL (the connection stays configured: the refusal is revocation = strict)
        crl = run("playbooks/vpn.yml", inventory=LAB, args=("--tags", "vpn_crl"))
        assert crl.rc == 0, _tail(crl)
        assert "bu-bu0002" not in _sas(VPN)
        run_on("bu0002", "swanctl --initiate --child province --timeout 15")
        journal = f"journalctl -u strongswan --since '{since}' --no-pager"
        refused, _ = _wait(lambda: "revoked" in hoststate.read(VPN, journal), 30)
        hoststate.expect(VPN, f"strongswan's journal since {since}", refused, "bu0002's certificate refused as revoked",
                         "\n".join(hoststate.read(VPN, journal).splitlines()[-30:]))
        time.sleep(3)
        assert "bu-bu0002" not in _sas(VPN)
        assert "province" not in _sas("bu0002")
        assert "bu-bu0001" in _sas(VPN), "revoking one unit disturbed another"
    finally:
        # re-onboard (new key and certificate, same address) and converge, for the tests that follow
        subprocess.run(JINCAI + ["add", "bu0002", "bu0002"], capture_output=True, text=True, check=False)
        again = run("playbooks/vpn.yml", inventory=LAB)
        assert again.rc == 0, _tail(again)
    up, _ = _wait(_all_up, 60)
    assert up, "bu0002 did not come back after re-onboarding"
    assert _registry()["bu0002"]["address"] in _sas("bu0002")["province"]


def test_clients_reconnect_after_a_concentrator_restart(provisioned):
    run_on(VPN, "systemctl restart strongswan", check=True)
    up, seconds = _wait(_all_up, 90)
    assert up, f"not reconnected after {seconds:.0f}s: {hoststate.run(VPN, 'swanctl --list-sas').stdout}"
    print(f"both units re-established {seconds:.1f}s after the concentrator restart")


def test_vpn_playbook_is_idempotent_and_clean_in_check_mode(provisioned):
    second = run("playbooks/vpn.yml", inventory=LAB)
    assert second.rc == 0, _tail(second)
    assert second.total("changed") == 0, second.changed_tasks()
    check = run("playbooks/vpn.yml", inventory=LAB, check=True, diff=True)
    assert check.rc == 0, _tail(check)
    assert check.total("changed") == 0, check.changed_tasks()


def test_vpn_events_reach_the_province_collector(provisioned):
    """charon logs to the journal; rsyslog (roles/rsyslog, part of site.yml) forwards to the collector."""
    collector = next(h for h in ("220000-svc",) if hostvars(h)["jincai_address"]
                     == hostvars(VPN)["jincai_province_services"]["collector"])
    marker = f"jincai-vpn-log-check-{int(time.time())}"
    run_on(VPN, f"swanctl --terminate --ike bu-bu0001 --timeout 10; logger -t charon-test {marker}")
    assert _wait(_all_up, 60)[0], "bu0001 did not reconnect"

    def arrived():
        out = hoststate.read(collector, f"cat /var/log/remote/{VPN}/*.log 2>/dev/null | grep -F -e {marker} "
                                        "-e 'IKE_SA bu-bu0001[' | tail -50")
        return marker in out and "charon-systemd" in out and "IKE_SA bu-bu0001[" in out
    found, _ = _wait(arrived, 30)
    assert found, f"no charon events of {VPN} at the collector {collector} (is the baseline's rsyslog applied?)"
