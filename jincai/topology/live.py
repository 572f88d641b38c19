"""Read the OSPF neighbours of the lab's routers (``jincai topology --live``).

Each router is asked ``show ip ospf neighbor json`` over the lab's SSH (:func:`jincai.lab.lab.run_on`:
the key, known-hosts file and management address of ``jincai lab ssh HOST``), in parallel. Works on
the small lab and on the province twin (``jincai lab up --twin inventories/jilin``). Lab inventories
only: a production inventory is refused before anything is contacted, and so is any management
address outside the lab's address range (198.18.0.0/15).
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import shlex
import subprocess

from jincai.topology import ospf
from jincai.topology.graph import TopologyError

SSH_TIMEOUT = 30


def _mgmt_addresses(topo, m):
    """``{site code: (router host, management address)}`` of every router, checked to be in the lab:
    the running lab's record of it, else its management address in the model ``m``."""
    from jincai.lab import lab as labmod
    from jincai.lab import topology as labtopo

    if topo.environment != "lab":
        raise TopologyError(f"--live reads routers of a lab only; this inventory's environment is "
                            f"{topo.environment or 'unset'} (production routers are never contacted)")
    hosts = labmod.load_state().get("hosts") or {}
    out = {}
    for code, site in topo.sites.items():
        if not site.router:
            continue
        rec = hosts.get(site.router) or {}
        mgmt = rec.get("mgmt") or m.hosts[site.router].mgmt
        if not mgmt or ipaddress.ip_address(mgmt) not in labtopo.LAB_RANGE:
            raise TopologyError(f"{site.router} (site {code}): management address {mgmt} is not in the lab "
                                f"range {labtopo.LAB_RANGE}; refusing to contact it")
        out[code] = (site.router, mgmt)
    return out


def _ask(host, mgmt, timeout):
    """``(neighbours or None, error or None)`` of one router, asked over the lab's SSH as root."""
    from jincai.lab import lab as labmod

    try:
        res = labmod.run_on(host, f"vtysh -c {shlex.quote(ospf.COMMAND)}", timeout=timeout, address=mgmt)
    except subprocess.TimeoutExpired:
        return None, f"{host}: no answer in {timeout} s"
    if res.returncode != 0:
        return None, f"{host}: `{ospf.COMMAND}` exited {res.returncode}: {res.stderr.strip()[-300:]}"
    try:
        return ospf.parse_neighbors(res.stdout, router=host), None
    except TopologyError as exc:
        return None, str(exc)


def collect(topo, m, timeout=SSH_TIMEOUT):
    """Return ``({site code: [Neighbor] or None}, [error lines])`` for the routers of ``topo`` (of the
    model ``m``); a router that did not answer is None."""
    targets = _mgmt_addresses(topo, m)
    out, errors = {}, []
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        futures = {code: pool.submit(_ask, host, mgmt, timeout) for code, (host, mgmt) in targets.items()}
        for code, fut in futures.items():
            nbrs, err = fut.result()
            out[code] = nbrs
            if err:
                errors.append(err)
    return out, errors
