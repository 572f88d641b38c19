"""The budget-unit VPN: every client's tunnel is up on the concentrator and on the client, and the
client holds its address from the pool. The concentrator's strongSwan, IKE listeners and forwarding
are judged by the shared tests in test_baseline.py (checks of area ``vpn``).
"""

import ipaddress

from jincai.verify import support


def _established(host, name):
    """{IKE SA name: first line} of the established SAs (``swanctl --list-sas``, once per host)."""
    out = support.output(host, name, "swanctl --list-sas --noblock").stdout
    sas = {}
    for line in out.splitlines():
        if line and not line.startswith(" ") and ":" in line:
            sas[line.split(":")[0]] = line.strip()
    return {n: first for n, first in sas.items() if "ESTABLISHED" in first}


def test_vpn_tunnel(host, check):
    """The IKE SA of the connection is ESTABLISHED."""
    sas = _established(host, check.host)
    support.expect(check, check.params["sa"] in sas,
                   "established: " + (", ".join(sorted(sas)) or "none"))


def test_vpn_virtual_ip(host, check):
    """The client holds an address of the budget-unit pool (its virtual IP, assigned by the concentrator)."""
    pool = ipaddress.ip_network(check.params["pool"])
    addrs = support.json_output(host, check.host, "ip -j -4 addr show") or []
    mine = [a["local"] for i in addrs for a in i.get("addr_info") or [] if "local" in a]
    support.expect(check, any(ipaddress.ip_address(a) in pool for a in mine), "addresses " + ", ".join(mine))
