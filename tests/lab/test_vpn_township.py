"""A township finance office (乡镇财政所) on the live lab (issue 16, item 5): the lab client ``tw0001``
(``kind: township``, home 220102, served by the province's concentrator: the lab's city 220100 has
none) connects with its own certificate identity (``tw0001.tw.<domain>``), gets its fixed address
from the registry, and reaches 220102-app1's township application (乡财县管) and nothing else: not
220102's budget or treasury ports, not SSH, not another county's township application, not the
province's applications.

Everything expected comes from the inventory (the client's ``jincai_vpn_client``, the catalogue, the
registry). Needs a lab built and provisioned from this source (`jincai lab up`, site.yml: vpn.yml
configures tw0001); when tw0001's tunnel is not up yet, the fixture converges only the concentrator
and tw0001. Cheap on a provisioned lab (one SSH round trip per check, the refusals probed in parallel).
"""

import ipaddress
import json
import os
import re
import shlex
import time

import pytest

from jincai import ROOT
from jincai.pki import store
from jincai.run import run

import hoststate
from conftest import hostvars, inventory, run_on

pytestmark = pytest.mark.lab

LAB = os.path.join(ROOT, "inventories", "lab")
CLIENT = "tw0001"
# A one-shot TCP server answering each connection with the peer's address (as in test_vpn.py): shows
# that the township application sees the office's own virtual IP.
ECHO_PEER = ("import socket,sys\n"
             "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
             "s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen(16)\n"
             "while True:\n"
             "    c, a = s.accept(); c.sendall((a[0] + '\\n').encode()); c.close()\n")


def _client():
    return hostvars(CLIENT)["jincai_vpn_client"]


def _entry():
    vc = _client()
    with open(os.path.join(store.default_dir(LAB), vc["registry"], "units.json"), encoding="utf-8") as fh:
        doc = json.load(fh)
    return next(u for u in doc["units"] if u["code"] == CLIENT), doc


def _up():
    """tw0001's tunnel installed (read with testinfra; not while charon is down: the callers poll)."""
    return "INSTALLED" in hoststate.run(CLIENT, "swanctl --list-sas --ike province --noblock").stdout


def _wait(predicate, timeout, step=0.5):
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > end:
            return value
        time.sleep(step)


def _probe(host, targets, timeout=2):
    """``{(address, port): open?}`` from ``host``, every target probed in parallel (one SSH call)."""
    script = " ".join(f"(nc -z -w {timeout} {a} {p} </dev/null && echo 'open {a} {p}' || echo 'closed {a} {p}') &"
                      for a, p in targets) + " wait"
    out = run_on(host, script, timeout=timeout + 30).stdout
    got = {(a, int(p)): state == "open" for state, a, p in re.findall(r"^(open|closed) (\S+) (\d+)$", out, re.M)}
    assert set(got) == set(targets), out
    return got


def _app(site):
    return next(h for h in inventory()["app_servers"]["hosts"] if hostvars(h)["jincai_site_code"] == site)


def _pool_drops(vpn):
    """Packets the concentrator's firewall dropped from the pool (forward chain's final drop)."""
    out = hoststate.read(vpn, "nft list chain ip jincai_vpn forward")
    m = re.search(r"ip saddr \S+ counter packets (\d+) bytes \d+ drop\s*$", out, re.M)
    hoststate.expect(vpn, "nft chain ip jincai_vpn forward", m, "a final counted drop of the pool", out)
    return int(m.group(1))


@pytest.fixture(scope="module")
def township():
    """tw0001's tunnel up (converging only the concentrator and tw0001 when it is not)."""
    vc = _client()
    assert vc["kind"] == "township" and vc["home"] == "220102", vc
    if not _up():
        res = run("playbooks/vpn.yml", inventory=LAB, args=("--limit", f"{vc['concentrator']},{CLIENT}"))
        assert res.rc == 0, "\n".join(res.output.splitlines()[-40:])
    hoststate.expect(CLIENT, "IKE SA province within 30 s", _wait(_up, 30), "INSTALLED",
                     hoststate.run(vc["concentrator"], "swanctl --list-sas --noblock").stdout)
    return vc


@pytest.fixture(scope="module")
def listening(township):
    """Listeners on the home county's app server for every catalogue port: the deployed applications'
    own, else temporary echo-peer servers (stopped afterwards)."""
    app = _app(township["home"])
    ports = sorted({a["port"] for a in hostvars(CLIENT)["jincai_applications"].values()})
    started = []
    for port in ports:
        if not hoststate.listening_on(app, port):
            unit = f"jincai-twtest-{port}"
            run_on(app, f"systemctl reset-failed {unit} 2>/dev/null; systemd-run --unit={unit} --collect --quiet "
                        f"python3 -c {shlex.quote(ECHO_PEER)} {port}", check=True)
            started.append(port)
    up = _wait(lambda: all(hoststate.listening_on(app, p) for p in started), 10)
    hoststate.expect(app, f"temporary echo-peer listeners on tcp ports {started} within 10 s", up, "listening",
                     {p: sorted(hoststate.listening_on(app, p)) for p in started})
    yield {"app": app, "temporary": started}
    for port in started:
        run_on(app, f"systemctl stop jincai-twtest-{port}")


def test_the_township_office_connects_with_its_identity_and_fixed_address(township):
    entry, doc = _entry()
    assert entry["status"] == "active" and entry.get("kind") == "township" and entry["home"] == "220102"
    assert entry["identity"] == f"{CLIENT}.tw.{hostvars(CLIENT)['jincai_domain']}"
    # a fixed address of the concentrator's pool, taken by no budget unit (townships fill it from the top)
    pool = ipaddress.ip_network(township["pool"])
    vip = entry["address"]
    assert ipaddress.ip_address(vip) in pool and vip not in {u["address"] for u in doc["units"] if u["code"] != CLIENT}
    sas = hoststate.read(township["concentrator"], f"swanctl --list-sas --ike tw-{CLIENT} --noblock")
    hoststate.expect(township["concentrator"], f"IKE SA tw-{CLIENT}",
                     "ESTABLISHED" in sas and entry["identity"] in sas and vip in sas,
                     f"ESTABLISHED with identity {entry['identity']} and virtual IP {vip}", sas)
    addrs = hoststate.read(CLIENT, "ip -4 -o addr show")
    hoststate.expect(CLIENT, "IPv4 addresses (ip -4 -o addr show)", f" {vip}/32 " in addrs, f"{vip}/32", addrs)
    # fixed: a reconnect gets the same address again
    run_on(CLIENT, "swanctl --terminate --ike province --timeout 10")
    run_on(CLIENT, "swanctl --initiate --child province --timeout 20")
    hoststate.expect(CLIENT, "IKE SA province within 20 s of a reconnect", _wait(_up, 20), "INSTALLED", "not installed")
    again = hoststate.read(CLIENT, "swanctl --list-sas --ike province --noblock")
    hoststate.expect(CLIENT, "IKE SA province after a reconnect", vip in again, f"the same virtual IP {vip}", again)


def test_it_reaches_its_countys_township_application_and_nothing_else(township, listening):
    entry, _ = _entry()
    catalogue = hostvars(CLIENT)["jincai_applications"]
    allowed = {(t["address"], t["port"]) for t in township["targets"]}
    assert allowed == {(hostvars(listening["app"])["jincai_address"], catalogue["township"]["port"])}
    home_app = hostvars(listening["app"])["jincai_address"]
    other_county = hostvars(_app("220103"))["jincai_address"]
    province_app = hostvars(_app("220000"))["jincai_address"]
    vpn_lan = hostvars(township["concentrator"])["jincai_address"]
    refused = {(home_app, a["port"]) for a in catalogue.values()} - allowed  # its own county's other apps
    refused |= {(home_app, 22), (other_county, catalogue["township"]["port"]), (vpn_lan, 22)}
    refused |= {(province_app, a["port"]) for n, a in catalogue.items() if "province" in a["tiers"]}
    # the refused services are there: the concentrator itself (outside the tunnel) reaches the apps
    control = _probe(township["concentrator"], sorted(a for a in refused if a[1] != 22 and a[0] != vpn_lan))
    assert all(control.values()), f"a listener is missing, the refusals below would prove nothing: {control}"
    before = _pool_drops(township["concentrator"])
    got = _probe(CLIENT, sorted(allowed | refused))
    assert {t for t, ok in got.items() if ok} == allowed, got
    # the refusals of its own county's other ports were the concentrator's least-access firewall
    assert _pool_drops(township["concentrator"]) > before
    if catalogue["township"]["port"] in listening["temporary"]:
        port = catalogue["township"]["port"]
        seen = run_on(CLIENT, f"nc -w 2 {home_app} {port} </dev/null").stdout.strip()
        assert seen == entry["address"], f"the township app saw {seen!r}, not the office's virtual IP"
