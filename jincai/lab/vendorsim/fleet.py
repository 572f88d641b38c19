"""The vendor CLI twins as a fleet that ``playbooks/routers.yml`` pushes to (issue 15 part 5).

One simulated router per vendor platform (VRP, VRP V8, Comware, IOS), each standing in for a real
production router of that platform: its host vars are the province twin's for that router
(``jincai lab twin inventories/jilin``, translated offline: nothing is booted and no production
address is contacted), seen as its production platform (:func:`jincai.lab.twin.as_platform`:
vendor interface names). So the configuration pushed is the one jincai renders for that production
router, by the real router role, the real ``jincai_netconfig`` module and netmiko over real SSH.

Placement: management plane only, on loopback (``127.0.0.1``, a free port each; the lab's network
rule allows loopback). The data plane stays FRR in the lab and the twin: a twin routes nothing, so
no OSPF proof applies to it. Each simulator keeps its state in a file (the device survives
sessions and restarts), starts from its platform's realistic config (``start/<platform>.cfg``:
factory defaults plus operator lines) and accepts only the lab key for ``netops``; its host key is
written into a known_hosts file the push checks strictly.

    fleet = Fleet(work_dir)          # picks one router per platform from the twin of inventories/jilin
    fleet.start()                    # simulators up; fleet.inventory is an inventory directory
    ansible-playbook -i <fleet.inventory> playbooks/routers.yml
    fleet.stop()

Used by tests/unit/test_vendor_routers_playbook.py (in `make test`'s fast phase: no lab needed).

:class:`VerifyFleet` is the same four platforms as production's own routers, for ``jincai verify``: a
copy of the production inventory in which only the four routers' connection is pointed at their
simulators on loopback (``host_vars/<router>.yml``), each simulator holding the configuration jincai
renders for that router (templates/router/<platform>.j2, as the lab twin renders vendor configs) and an
operational state seeded from the host vars (show.py: every WAN neighbour Full, a route to every other
router's LAN and loopback over the shortest path). Used by tests/unit/test_verify_vendor.py.
"""

import copy
import ipaddress
import os
import shutil
import subprocess

import yaml

from jincai import ROOT

from . import start as start_sim
from .server import authorized_keys, host_key

START_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "start")
VENDOR_PLATFORMS = ("huawei_vrp", "huawei_vrpv8", "h3c_comware", "cisco_ios")
PRODUCTION = os.path.join(ROOT, "inventories", "jilin")
#: Not secrets: the SNMPv3 keys the simulated routers are given (production's come from its vault).
SNMP_PLACEHOLDER = {"user": "jincai-snmp", "auth": "Twin-Snmp-Auth-Placeholder", "priv": "Twin-Snmp-Priv-Placeholder"}


def pick(hostvars, platforms=VENDOR_PLATFORMS, key="twin_of"):
    """``{platform: router}``: for each platform the first router (by name) of the twin whose
    production platform (``jincai_router.twin_of``; ``key="platform"`` on production's own host vars) it
    is; county routers are preferred (the most common kind), a city's or the province's when a platform
    has no county router."""
    found = {}
    for name, hv in sorted(hostvars.items(), key=lambda kv: (kv[1].get("jincai_tier") != "county", kv[0])):
        platform = (hv.get("jincai_router") or {}).get(key)
        if platform in platforms and platform not in found:
            found[platform] = name
    missing = [p for p in platforms if p not in found]
    if missing:
        raise ValueError(f"no router of platform {', '.join(missing)} in the twin")
    return {p: found[p] for p in platforms}


def twin_hostvars(production=PRODUCTION, out_dir=None):
    """The province twin's host vars (translated offline into ``out_dir``)."""
    from jincai.lab import twin
    from jincai.source import inventory as invmod

    out_dir = out_dir or twin.default_out_dir(production)
    twin.translate(production, out_dir)
    return invmod.build(out_dir)["_meta"]["hostvars"]


class Fleet:
    """Four simulated vendor routers and the inventory that reaches them (see the module docstring)."""

    def __init__(self, work_dir, production=PRODUCTION, platforms=VENDOR_PLATFORMS):
        self.work_dir = os.path.abspath(work_dir)
        self.production = production
        self.platforms = platforms
        self.inventory = os.path.join(self.work_dir, "inventory")
        self.key_file = os.path.join(self.work_dir, "netops_ed25519")
        self.known_hosts = os.path.join(self.work_dir, "known_hosts")
        self.servers = {}  # router name -> SimServer
        self.routers = {}  # platform -> router name

    def start(self):
        """Start one simulator per platform and write the inventory; returns ``{platform: router}``."""
        os.makedirs(self.work_dir, exist_ok=True)
        if not os.path.exists(self.key_file):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "jincai-vendor-fleet",
                            "-f", self.key_file], check=True)
        hostvars = twin_hostvars(self.production, os.path.join(self.work_dir, "twin"))
        self.routers = pick(hostvars, self.platforms)
        keys = authorized_keys(self.key_file + ".pub")
        hosts, known = {}, []
        for platform, name in self.routers.items():
            with open(os.path.join(START_DIR, f"{platform}.cfg"), encoding="utf-8") as fh:
                start_config = fh.read()
            key = host_key(os.path.join(self.work_dir, f"{name}.hostkey"))
            server = start_sim(platform, os.path.join(self.work_dir, f"{name}.state.json"), start_config,
                               key=key, authorized=keys)
            self.servers[name] = server
            known.append(f"[127.0.0.1]:{server.port} {key.get_name()} {key.get_base64()}")
            hosts[name] = self._host_vars(hostvars[name], platform, server.port)
        with open(self.known_hosts, "w", encoding="ascii") as fh:
            fh.write("\n".join(known) + "\n")
        self._write_inventory(hosts)
        return dict(self.routers)

    def _host_vars(self, hv, platform, port):
        from jincai.lab import twin

        hv = twin.as_platform(hv, platform)
        keep = {k: v for k, v in hv.items() if k.startswith("jincai_") and k != "jincai_lab"}
        keep.update(ansible_host="127.0.0.1", ansible_port=port, ansible_connection="local",
                    ansible_python_interpreter="{{ ansible_playbook_python }}",
                    jincai_netmiko_user="netops", jincai_netmiko_key_file=self.key_file,
                    ansible_ssh_common_args=f"-o UserKnownHostsFile={self.known_hosts}",
                    vault_snmp_auth=SNMP_PLACEHOLDER,
                    router_backup_dir=os.path.join(self.work_dir, "backups"))
        return keep

    def _write_inventory(self, hosts):
        os.makedirs(self.inventory, exist_ok=True)
        doc = {"all": {"children": {"routers": {"hosts": hosts}}}}
        with open(os.path.join(self.inventory, "hosts.yml"), "w", encoding="utf-8") as fh:
            fh.write("---\n# Written by jincai.lab.vendorsim.fleet: simulated vendor routers on loopback.\n")
            yaml.safe_dump(doc, fh, allow_unicode=True, sort_keys=True)

    def host_vars(self, name):
        """The host vars the inventory gives router ``name``."""
        with open(os.path.join(self.inventory, "hosts.yml"), encoding="utf-8") as fh:
            return yaml.safe_load(fh)["all"]["children"]["routers"]["hosts"][name]

    def running_config(self, name):
        """The simulated router's running configuration, as the device displays it."""
        device = self.servers[name].device
        return device.render(device.running)

    def stop(self):
        """Stop every simulator (their state files stay)."""
        for server in self.servers.values():
            server.close()
            server.device.close()
        self.servers = {}


# ------------------------------------------------------------------------------ jincai verify's fleet


def _links(hostvars):
    """{router: [(interface, peer, peer address, cost, area)]}: the WAN links of every router, matched by
    segment (each end's ``jincai_router.interfaces`` entry)."""
    ends = {}
    for name, hv in hostvars.items():
        for i in (hv.get("jincai_router") or {}).get("interfaces") or []:
            if i.get("segment") and i["role"] in ("uplink", "downlink"):
                ends.setdefault(i["segment"], []).append((name, i))
    links = {}
    for pair in ends.values():
        if len(pair) != 2:
            continue
        for (a, ia), (b, ib) in (pair, pair[::-1]):
            links.setdefault(a, []).append((ia["name"], b, str(ipaddress.ip_interface(ib["address"]).ip),
                                            ia.get("ospf_cost") or 10, ia.get("ospf_area") or "0.0.0.0"))
    return links


def oper_state(hostvars, name):
    """The operational state of router ``name`` as the network would have it (show.py): an OSPF neighbour
    Full on every WAN link, and routes to every other router's LAN and loopback over the cheapest path
    (Dijkstra over the links' OSPF costs; the first hop gives the next hop and interface)."""
    import heapq

    links = _links(hostvars)
    peers = [{"router_id": hostvars[b]["jincai_router"]["router_id"], "address": addr, "interface": ifname,
              "area": area, "state": "Full"} for ifname, b, addr, _c, area in links.get(name, [])]
    best = {name: (0, None)}
    queue = [(0, name, None)]
    while queue:
        cost, node, first = heapq.heappop(queue)
        if cost > best.get(node, (float("inf"),))[0]:
            continue
        for ifname, b, addr, c, _a in links.get(node, []):
            hop = first or (ifname, addr)
            if cost + c < best.get(b, (float("inf"),))[0]:
                best[b] = (cost + c, hop)
                heapq.heappush(queue, (cost + c, b, hop))
    own_area = hostvars[name]["jincai_router"]["ospf"]["area"]
    routes = []
    for other, (cost, hop) in sorted(best.items()):
        if other == name or hop is None:
            continue
        hv = hostvars[other]
        prefixes = [hv["jincai_site"]["lan"], f"{hv['jincai_router']['loopback']}/32"]
        for prefix in prefixes:
            routes.append({"prefix": str(ipaddress.ip_network(prefix, strict=False)), "via": hop[1],
                           "interface": hop[0], "cost": cost,
                           "inter_area": hv["jincai_router"]["ospf"]["area"] != own_area})
    return {"links_down": [], "ospf_peers": peers, "ospf_routes": routes, "ntp_synchronised": True}


class VerifyFleet(Fleet):
    """Four simulated routers standing in for production's own (see the module docstring); the inventory
    ``jincai verify -i <fleet.inventory> -l <fleet.limit>`` reads."""

    def __init__(self, work_dir, production=PRODUCTION, platforms=VENDOR_PLATFORMS):
        super().__init__(work_dir, production, platforms)
        self.hostvars = {}

    @property
    def limit(self):
        """The ``--limit`` of the four routers."""
        return ",".join(sorted(self.servers))

    def start(self):
        """Copy the inventory, render and start the four routers, point their connection at them."""
        from jincai.lab import twin
        from jincai.source import inventory as invmod

        os.makedirs(self.work_dir, exist_ok=True)
        shutil.copytree(self.production, self.inventory, dirs_exist_ok=True)
        if not os.path.exists(self.key_file):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "jincai-verify-fleet",
                            "-f", self.key_file], check=True)
        self.hostvars = invmod.build(self.inventory)["_meta"]["hostvars"]
        self.routers = pick(self.hostvars, self.platforms, key="platform")
        as_twin = {}
        for platform, name in self.routers.items():
            hv = copy.deepcopy(self.hostvars[name])
            hv["jincai_router"]["twin_of"] = platform
            as_twin[name] = hv
        configs = twin.vendor_configs(as_twin)
        keys = authorized_keys(self.key_file + ".pub")
        known = []
        for platform, name in self.routers.items():
            key = host_key(os.path.join(self.work_dir, f"{name}.hostkey"))
            server = start_sim(platform, os.path.join(self.work_dir, f"{name}.state.json"), configs[name][1],
                               key=key, authorized=keys)
            server.device.set_oper(**oper_state(self.hostvars, name))
            self.servers[name] = server
            known.append(f"[127.0.0.1]:{server.port} {key.get_name()} {key.get_base64()}")
            with open(os.path.join(self.inventory, "host_vars", f"{name}.yml"), "w", encoding="utf-8") as fh:
                fh.write("---\n# Written by jincai.lab.vendorsim.fleet.VerifyFleet: this router is a simulator on "
                         "loopback.\n")
                yaml.safe_dump({"ansible_host": "127.0.0.1", "ansible_port": server.port,
                                "jincai_netmiko_user": "netops", "jincai_netmiko_key_file": self.key_file,
                                "ansible_ssh_common_args": f"-o UserKnownHostsFile={self.known_hosts}"}, fh)
        with open(self.known_hosts, "w", encoding="ascii") as fh:
            fh.write("\n".join(known) + "\n")
        return dict(self.routers)

    def device(self, name):
        """The simulated router ``name`` (``SimDevice``: its config, operational state and history)."""
        return self.servers[name].device
