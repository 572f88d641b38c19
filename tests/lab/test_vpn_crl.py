"""The CRL lifecycle on the live lab (issue 16): a CRL near expiry is re-issued by the CRL timer's own
command (`jincai pki crl --if-due --push`, roles/vpn_crl_timer) and reloaded on the concentrator
without dropping the established tunnels; the province services host serves that CRL over HTTP.

One playbook run (`vpn.yml --tags vpn_crl`), well under a minute. Needs the units up (tests/lab/
test_vpn.py, which runs first, converges them). The concentrator's state is read with testinfra
(tests/lab/hoststate.py); the HTTP fetch from the concentrator stays on ``run_on`` (traffic).
"""

import datetime
import os
import re
import subprocess
import sys

import pytest
from cryptography import x509

from jincai import ROOT
from jincai.pki import store

import hoststate
from conftest import hostvars, inventory, run_on

pytestmark = pytest.mark.lab

LAB = os.path.join(ROOT, "inventories", "lab")
JINCAI = [sys.executable, "-m", "jincai.pki", "-i", LAB]


def group(name):
    return inventory().get(name, {}).get("hosts", [])


def _concentrator():
    return next(h for h in group("vpn_concentrators") if hostvars(h)["jincai_tier"] == "province")


def _ike_ids(host):
    """``{connection: IKE SA unique id}`` of the ESTABLISHED SAs on ``host`` (a re-established SA gets a new id)."""
    out = hoststate.read(host, "swanctl --list-sas --noblock")
    return {m.group(1): m.group(2) for m in re.finditer(r"^(\S+): #(\d+), ESTABLISHED", out, re.M)}


def _remote_crl(host):
    """crlNumber and nextUpdate of the CRL the concentrator loads."""
    out = hoststate.read(host, "openssl crl -in /etc/swanctl/x509crl/province.crl -noout -crlnumber -nextupdate")
    number = int(re.search(r"crlNumber=(?:0x)?([0-9A-Fa-f]+)", out).group(1), 16)
    nxt = datetime.datetime.strptime(" ".join(re.search(r"nextUpdate=(.+)", out).group(1).split()),
                                     "%b %d %H:%M:%S %Y %Z").replace(tzinfo=datetime.timezone.utc)
    return number, nxt


def test_a_crl_near_expiry_is_reissued_by_the_timer_and_reloaded_without_dropping_tunnels():
    vpn = _concentrator()
    units = [u for u in group("budget_unit_clients") if hostvars(u)["jincai_vpn_client"]["concentrator"] == vpn]
    before = _ike_ids(vpn)
    assert all(f"bu-{u}" in before for u in units), f"units not up on {vpn} (run tests/lab/test_vpn.py): {before}"
    # a CRL three days from expiry on the control node (within the compliance limit, past half its life)
    short = subprocess.run(JINCAI + ["crl", "--days", "3"], capture_output=True, text=True, check=False)
    assert short.returncode == 0, short.stderr
    pem = os.path.join(store.default_dir(LAB), "crl.pem")
    with open(pem, "rb") as fh:
        short_number = x509.load_pem_x509_crl(fh.read()).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    # what jincai-vpn-crl.service runs
    timer = subprocess.run(JINCAI + ["crl", "--if-due", "--push"], capture_output=True, text=True, check=False,
                           timeout=300)
    assert timer.returncode == 0, timer.stdout[-3000:] + timer.stderr[-2000:]
    assert ": published," in timer.stdout, timer.stdout[-2000:]
    with open(pem, "rb") as fh:
        local = x509.load_pem_x509_crl(fh.read())
    number = local.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number > short_number and local.next_update_utc - local.last_update_utc > datetime.timedelta(days=29)
    remote_number, remote_next = _remote_crl(vpn)
    assert remote_number == number, f"{vpn} loads CRL {remote_number}, the control node published {number}"
    assert remote_next - datetime.datetime.now(datetime.timezone.utc) > datetime.timedelta(days=29)
    after = _ike_ids(vpn)
    kept = {c: i for c, i in before.items() if c.startswith("bu-") and after.get(c) == i}
    assert set(kept) >= {f"bu-{u}" for u in units}, f"tunnels dropped by the reload: before {before}, after {after}"


def test_the_services_host_serves_the_crl_the_control_node_signed():
    svc = next(h for h in group("services") if hostvars(h)["jincai_tier"] == "province")
    address = hostvars(svc)["jincai_address"]
    fetch = ("python3 -c \"import sys, urllib.request; "
             f"sys.stdout.write(urllib.request.urlopen('http://{address}/crl/province.crl.pem', timeout=10).read().decode())\"")
    served = run_on(_concentrator(), fetch, sudo=False, check=True).stdout
    with open(os.path.join(store.default_dir(LAB), "crl.pem"), encoding="ascii") as fh:
        assert served.strip() == fh.read().strip()
