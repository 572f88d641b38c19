"""What ``jincai verify`` checks on each host: the intended state, from the inventory alone.

:func:`checks_for` turns one host's variables (jincai/source/inventory.py), the roles' defaults, the control
catalogue's tables (jincai/policy/intended.py, shared with ``jincai compliance``) and the release the network
runs into a list of :class:`Check` records. The testinfra modules in jincai/verify/tests/ are
parametrised with them: each test function receives the checks whose ``test`` is its name and judges
one on the live host. No address, port or path is written in the tests; they all come from here.
Nothing in this module contacts a host.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

from jincai import ROOT
from jincai.policy import intended
from jincai.source.model import VPN_KINDS

LAB_INVENTORY = os.path.join(ROOT, "inventories", "lab")
#: The groups whose hosts jincai verify checks: routers, the machine rooms and the VPN clients (budget
#: units and township finance offices).
SCOPE_GROUPS = ("routers", "machine_room", *(k.group for k in VPN_KINDS.values()))
AREAS = ("router", "baseline", "vpn", "apps", "services")
#: Sysctl a forwarding host (router, VPN concentrator) needs.
FORWARDING = "net.ipv4.ip_forward"
#: A backup older than this (hours) after the daily timer has run is stale (backup_calendar: daily).
BACKUP_MAX_AGE_H = 50
#: A VPN client's connection on the client (roles/vpn_client/templates/province.conf.j2); each client's
#: on its concentrator is ``<namespace>-<code>`` (roles/vpn_concentrator: bu-<code> for a budget unit,
#: tw-<code> for a township finance office: the namespace of its kind, VPN_KINDS).
CLIENT_CONNECTION = "province"


@dataclass
class Check:
    """One check of one host: which test judges it, with what parameters, expecting what."""

    host: str
    site: str
    area: str
    test: str
    id: str
    title: str
    expected: str
    params: dict = field(default_factory=dict)
    skip: str = ""

    @property
    def pytest_id(self):
        """The test id: ``<host>:<check id>`` (jincai.verify.report parses it back)."""
        return f"{self.host}:{self.id}"


class Network:
    """An inventory as the plan reads it: host vars, groups, catalogue tables, applications, release."""

    def __init__(self, inventory_dir, inventory=None):
        from jincai import release as relmod
        from jincai.compliance import model
        from jincai.source import inventory as invmod

        self.dir = os.path.abspath(inventory_dir)
        self.inventory = inventory if inventory is not None else invmod.build(self.dir)
        self.hostvars = self.inventory["_meta"]["hostvars"]
        self.exp = model.load_controls()["expected"]
        apps_vars = relmod.inventory_vars(self.dir)
        self.catalog = apps_vars.get("apps_catalog") or {}
        release_id = apps_vars.get("apps_release") or ""
        self.release = relmod.load_release(release_id) if release_id else None
        self._vpn_placements = {}

    def group(self, name):
        """Host names of a group (empty when the inventory has none)."""
        return list((self.inventory.get(name) or {}).get("hosts") or [])

    def inv_vars(self, host):
        """The plain vars the inventory's files give ``host`` (connection settings, role overrides)."""
        return intended.inventory_vars(self.dir, host, intended.host_groups(self.inventory, host))

    def var(self, host, name):
        """A role variable as ``host`` gets it (host vars, inventory files, role default)."""
        return intended.role_var(name, self.hostvars[host], self.inv_vars(host))

    def hosted_apps(self, host):
        """{app: version}: the applications the release deploys on ``host`` (its tier's, of jincai_apps)."""
        hv = self.hostvars[host]
        if not self.release:
            return {}
        return {a: self.release["apps"][a]["version"] for a in hv.get("jincai_apps") or []
                if a in self.release["apps"] and hv.get("jincai_tier") in self.release["apps"][a]["tiers"]}

    def vpn_placement(self, client):
        """Where VPN client ``client`` is served now: ``{"concentrator", "server", "pool"}``.

        The concentrator whose registry holds the unit active (jincai.pki.placement, as
        roles/vpn_client reads it: a unit moved with ``jincai pki move`` is checked at its new
        concentrator); where the registries cannot say (not onboarded yet, no PKI on this machine),
        where the source places it."""
        from jincai.pki.placement import vpn_client_placement

        cache = self._vpn_placements
        if client not in cache:
            hv = self.hostvars[client]
            cv = hv.get("jincai_vpn_client") or {}
            out = {"concentrator": cv.get("concentrator"), "server": cv.get("server"), "pool": cv.get("pool")}
            code = self.inv_vars(client).get("vpn_client_code") or client
            pki_dir = ((self.inventory.get("all") or {}).get("vars") or {}).get("jincai_pki_dir")  # an all var
            if pki_dir and cv.get("registries"):
                where = vpn_client_placement(pki_dir, code, cv["registries"])
                conc = where["concentrator"]
                if not where["error"] and conc in self.hostvars and conc != out["concentrator"]:
                    out = {"concentrator": conc, "server": where["server"],
                           "pool": (self.hostvars[conc].get("jincai_vpn") or {}).get("pool")}
            cache[client] = out
        return cache[client]

    def site_of(self, host):
        return self.hostvars[host].get("jincai_site_code") or "unknown"


class ScopeError(Exception):
    """A --limit / --hosts that names nothing of the inventory (the message says what is accepted)."""


def resolve_scope(net, limit):
    """Sorted host names in scope: the SCOPE_GROUPS hosts matched by ``limit`` (tier, site code,
    group or host, comma-separated; all of them when empty). Raises ScopeError."""
    from jincai import compliance

    try:
        hosts, _ = compliance.resolve_scope(net.inventory, limit, groups=SCOPE_GROUPS)
    except compliance.UsageError as exc:
        raise ScopeError(str(exc)) from None
    return hosts


def _ip(cidr):
    return str(ipaddress.ip_interface(cidr).ip)


def _area_of_unit(unit, functions):
    if unit.startswith("jincai-") and not unit.endswith(".timer"):
        return "apps"
    if unit == "strongswan":
        return "vpn"
    if unit in ("nginx", "postgresql"):
        return "apps" if "app_server" in functions else "services"
    return "baseline"


def _area_of_listener(lst, functions):
    why = lst["why"]
    if lst["service"].startswith("jincai-") or why.startswith("jincai_applications"):
        return "apps"
    for fn, area in (("services", "services"), ("vpn_concentrator", "vpn"), ("app_server", "apps")):
        if why.startswith(f"firewall_function_rules.{fn} "):
            return area
    return _area_of_unit(lst["service"], functions) if lst["service"] else "baseline"


def checks_for(net, host):
    """Every :class:`Check` of ``host``, in a stable order."""
    hv = net.hostvars[host]
    functions = list(hv.get("jincai_functions") or [])
    site = net.site_of(host)
    out = []

    def add(area, test, cid, title, expected, skip="", **params):
        out.append(Check(host, site, area, test, cid, title, expected, params, skip))

    if "router" in functions:
        _router_checks(net, host, hv, add)
    if {"app_server", "services", "vpn_concentrator"} & set(functions):
        _machine_room_checks(net, host, hv, functions, add)
    if {k.function for k in VPN_KINDS.values()} & set(functions):
        _client_checks(net, host, hv, add)
    return out


def _interface_checks(hv, add, area, roles_skipped=("mgmt",), test="test_interface_address", **extra):
    for iface in hv.get("jincai_interfaces") or []:
        if iface["role"] in roles_skipped or not iface.get("address"):
            continue
        add(area, test, f"interface.{iface['name']}", f"{iface['name']} ({iface['role']}) "
            f"carries its address", f"{_ip(iface['address'])} on {iface['name']}, link up",
            name=iface["name"], address=_ip(iface["address"]), **extra)


def wan_neighbours(net, router):
    """[(peer, router id, interface)]: the OSPF neighbours a router must have, one per WAN link
    (``jincai_router.interfaces`` of role uplink/downlink whose peer is in the inventory). The one
    definition the FRR and the vendor checks share."""
    out = []
    for iface in router.get("interfaces") or []:
        peer = iface.get("peer")
        if iface["role"] in ("uplink", "downlink") and peer in net.hostvars:
            out.append((peer, (net.hostvars[peer].get("jincai_router") or {}).get("router_id"), iface["name"]))
    return out


def other_site_lans(net, hv):
    """The LAN prefix of every other site's router (sorted): what a router must have a route to."""
    own = hv.get("jincai_site", {}).get("lan")
    return sorted({net.hostvars[r]["jincai_site"]["lan"] for r in net.group("routers")
                   if net.hostvars[r].get("jincai_site", {}).get("lan") not in (None, own)})


def _router_state_checks(net, hv, router, add, tests, **extra):
    """The routing checks every router gets, whatever its platform: interfaces, OSPF neighbours, routes to
    the other sites' LANs, static routes. ``tests`` maps each kind (interface, ospf, routes, route) to the
    test function that judges it (testinfra on FRR, netmiko on a vendor CLI); ids, titles and expected
    values are the same on every platform. ``extra`` is added to every check's params."""
    _interface_checks(hv, add, "router", test=tests["interface"], **extra)
    if tests.get("after_interfaces"):
        tests["after_interfaces"]()
    neighbours = wan_neighbours(net, router)
    parallel = {p for p in (n[0] for n in neighbours) if sum(1 for n in neighbours if n[0] == p) > 1}
    for peer, rid, name in neighbours:
        # several links to one peer (primary and backup): one check per link, the interface in the id
        cid = f"ospf.neighbour.{peer}" + (f".{name}" if peer in parallel else "")
        add("router", tests["ospf"], cid, f"OSPF adjacency with {peer} is Full",
            f"neighbour {rid} Full on {name}", peer=peer, router_id=rid, interface=name, **extra)
    lans = other_site_lans(net, hv)
    if lans:
        add("router", tests["routes"], "routes.site_lans", "a route to every other site's LAN",
            f"{len(lans)} site LAN prefixes in the routing table", prefixes=lans, **extra)
    for r in router.get("static_routes") or []:
        add("router", tests["route"], f"route.{r['prefix']}", f"static route to {r['prefix']}",
            f"{r['prefix']} via {r['via']}", to=r["prefix"], via=r["via"], **extra)


def _router_checks(net, host, hv, add):
    router = hv.get("jincai_router") or {}
    platform = router.get("platform")
    if platform != "frr":
        _vendor_router_checks(net, host, hv, router, platform, add)
        return
    add("router", "test_service", "service.frr", "FRR runs and starts at boot", "running, enabled",
        unit="frr", running=True, enabled=True)

    def forwarding():
        add("router", "test_sysctl", f"sysctl.{FORWARDING}", "the router forwards", f"{FORWARDING} = 1",
            key=FORWARDING, value=1)

    _router_state_checks(net, hv, router, add, {"interface": "test_interface_address", "after_interfaces": forwarding,
                                                "ospf": "test_ospf_neighbour", "routes": "test_routes",
                                                "route": "test_route"})


def _vendor_router_checks(net, host, hv, router, platform, add):
    """A vendor router (Huawei VRP/VRP V8, H3C Comware, Cisco IOS): the routing checks of an FRR router,
    judged over one netmiko session with show/display commands (jincai/verify/vendor.py), plus what its
    running config must carry: the management and metro ACLs, the NTP source, the syslog host."""
    from jincai.verify import vendor

    if platform not in vendor.CLIS:
        add("router", "test_router_state", "router.platform", "router state", "a platform jincai verify knows",
            skip=f"{platform}: no show/display commands known for this platform")
        return
    cli = vendor.CLIS[platform]
    _router_state_checks(net, hv, router, add, {"interface": "test_vendor_interface", "ospf": "test_vendor_ospf_neighbour",
                                                "routes": "test_vendor_routes", "route": "test_vendor_route"},
                         platform=platform)
    mgmt = list(hv.get("jincai_management_networks") or [])
    add("router", "test_vendor_acl", "acl.management", "the management ACL admits the management networks",
        f"{cli.mgmt_acl} permits {', '.join(mgmt)}; {cli.mgmt_acl_use}", platform=platform, kind="management",
        acl=cli.mgmt_acl, networks=mgmt)
    for iface in router.get("interfaces") or []:
        if iface["role"] == "metro":
            add("router", "test_vendor_acl", "acl.metro", "the metro ACL filters the metro network",
                f"{cli.metro_acl} with rules, {cli.metro_use} on {iface['name']}", platform=platform, kind="metro",
                acl=cli.metro_acl, interface=iface["name"])
    own = [hv.get("jincai_address"), hv.get("jincai_mgmt_address")]
    chain = intended.ntp_chain(hv.get("jincai_ntp_servers"), own)
    if chain:
        add("router", "test_vendor_ntp", "ntp.source", "the clock follows the intended source",
            f"NTP server {chain[0]} configured, clock synchronised to it", platform=platform, source=chain[0],
            chain=chain)
    collector = (hv.get("jincai_province_services") or {}).get("collector")
    if intended.log_role(collector, own) == "sender":
        add("router", "test_vendor_syslog", "logs.forwarding", "logs go to the province collector",
            f"syslog host {collector} configured", platform=platform, collector=collector)


def _machine_room_checks(net, host, hv, functions, add):
    exp = net.exp
    hosted = net.hosted_apps(host)
    # services and boot units (jincai.policy.intended: the same table as compliance's services.* checks)
    wanted = intended.services(functions, list(hosted), exp)
    for unit in sorted(wanted):
        add(_area_of_unit(unit, functions), "test_service", f"service.{unit}", f"{unit} runs and starts at boot",
            "running, enabled", unit=unit, running=True, enabled=True)
    for unit in sorted(set(intended.enabled_units(functions, exp)) - set(wanted)):
        add("baseline", "test_service", f"service.{unit}", f"{unit} starts at boot", "enabled",
            unit=unit, running=False, enabled=True)
    # listeners: what the host serves, where (jincai.policy.intended.listeners)
    inv_vars = net.inv_vars(host)
    wanted_listeners = intended.listeners(functions, list(hosted), hv.get("jincai_applications"), exp, hv, inv_vars)
    for lst in wanted_listeners:
        area = _area_of_listener(lst, functions)
        where = "loopback only" if lst["bind"] == "loopback" else "reachable"
        add(area, "test_listener", f"listener.{lst['proto']}.{lst['port']}",
            f"{lst['service'] or '?'} listens on {lst['proto']}/{lst['port']} ({where})",
            f"{lst['proto']}/{lst['port']} listening, {where}", **lst)
    allowed = intended.allowed_ports(functions, exp, intended.listeners(
        functions, hv.get("jincai_apps"), hv.get("jincai_applications"), exp, hv, inv_vars))
    add("baseline", "test_only_intended_listeners", "listeners.only_intended", "nothing else listens beyond "
        "loopback", "only " + ",".join(map(str, allowed)), allowed=allowed)
    # addresses and routes
    _interface_checks(hv, add, "baseline")
    for r in hv.get("jincai_routes") or []:
        add("baseline", "test_route", f"route.{r['to']}", f"route {r['to']} via the site router",
            f"{r['to']} via {r['via']}", to=r["to"], via=r["via"])
    # time: chrony follows the first source of the chain that is not the host itself
    # (jincai.policy.intended: the chain and the collector's role as compliance's time.sources and
    # audit.log_forwarding judge them)
    own = [hv.get("jincai_address"), hv.get("jincai_mgmt_address")]
    chain = intended.ntp_chain(hv.get("jincai_ntp_servers"), own)
    if chain:
        add("baseline", "test_ntp_source", "ntp.source", "the clock follows the intended source",
            f"chrony synchronised to {chain[0]}", source=chain[0], chain=chain)
    else:
        add("services" if "services" in functions else "baseline", "test_ntp_source", "ntp.source",
            "the time server keeps time", "chrony synchronised (local reference)", source=None, chain=[])
    # logs: forwarded to the collector; the collector receives every machine room's
    collector = (hv.get("jincai_province_services") or {}).get("collector")
    port = net.var(host, "rsyslog_port")
    role = intended.log_role(collector, own)
    if role == "sender":
        add("baseline", "test_log_forwarding", "logs.forwarding", "logs reach the province collector",
            f"rsyslog connected to {collector}:{port}", collector=collector, port=port)
    elif role == "collector":
        remote = net.var(host, "rsyslog_remote_dir")
        for src in sorted(net.group("machine_room")):
            if src != host:
                add("services", "test_logs_received", f"logs.received.{src}", f"the collector receives {src}'s logs",
                    f"{remote}/{src}: a log written in the last 24 h", source=src, dir=f"{remote}/{src}")
    # integrity and backups
    add("baseline", "test_file_present", "integrity.aide", "the AIDE database exists",
        " or ".join(exp["aide_databases"]), paths=list(exp["aide_databases"]))
    add("baseline", "test_backup", "backup.local", "the daily backup ran (or is scheduled) and is recent",
        f"{net.var(host, 'backup_dir')}/{host}-*.tar.gz younger than {BACKUP_MAX_AGE_H} h once the timer ran",
        dir=net.var(host, "backup_dir"), archive_prefix=f"{host}-", max_age_h=BACKUP_MAX_AGE_H)
    if "services" in functions:
        _services_checks(net, host, add)
    if "vpn_concentrator" in functions:
        _concentrator_checks(net, host, hv, add)
    if "app_server" in functions:
        _app_checks(net, host, hv, hosted, add)


def _services_checks(net, host, add):
    server_dir = net.var(host, "backup_server_dir")
    for src in sorted(net.group("machine_room")):
        add("services", "test_backup_received", f"backup.received.{src}", f"{src}'s backups have a place here",
            f"{server_dir}/{src} present", dir=f"{server_dir}/{src}", source=src)
    root = net.var(host, "artifact_repo_root")
    if net.release:
        for app, entry in sorted(net.release["apps"].items()):
            artifact = ((net.catalog.get(app) or {}).get("versions") or {}).get(entry["version"], {}).get("artifact")
            if artifact:
                add("services", "test_artifact_present", f"artifact.{app}", f"the repository serves {app} "
                    f"{entry['version']}", f"{root}/apps/{artifact}", path=f"{root}/apps/{artifact}")


def _concentrator_checks(net, host, hv, add):
    add("vpn", "test_sysctl", f"sysctl.{FORWARDING}", "the concentrator forwards", f"{FORWARDING} = 1",
        key=FORWARDING, value=1)
    clients = [c for kind in VPN_KINDS.values() for c in net.group(kind.group)]
    for client in sorted(clients):
        cv = net.hostvars[client].get("jincai_vpn_client") or {}
        if net.vpn_placement(client)["concentrator"] != host:
            continue
        code = net.inv_vars(client).get("vpn_client_code") or client
        sa = f"{VPN_KINDS[cv.get('kind', 'budget_unit')].namespace}-{code}"
        add("vpn", "test_vpn_tunnel", f"vpn.tunnel.{client}", f"{client}'s tunnel is up",
            f"IKE SA {sa} ESTABLISHED", sa=sa)


def _client_checks(net, host, hv, add):
    cv = net.vpn_placement(host)  # where the unit is active now (it follows `jincai pki move`)
    add("vpn", "test_service", "service.strongswan", "strongSwan runs and starts at boot", "running, enabled",
        unit="strongswan", running=True, enabled=True)
    _interface_checks(hv, add, "vpn")
    add("vpn", "test_vpn_tunnel", "vpn.tunnel", f"the tunnel to {cv.get('concentrator')} is up",
        f"IKE SA {CLIENT_CONNECTION} ESTABLISHED with {cv.get('server')}", sa=CLIENT_CONNECTION)
    if cv.get("pool"):
        add("vpn", "test_vpn_virtual_ip", "vpn.virtual_ip", "the unit holds its address from the pool",
            f"an address in {cv['pool']}", pool=cv["pool"])


def _app_checks(net, host, hv, hosted, add):
    if not net.release:
        add("apps", "test_app_release_record", "apps.release", "the release this network runs", "a release",
            skip="the inventory's apps_release is empty: no application is deployed yet")
        return
    # the record (roles/apps record.yml; what `jincai release status` reads): the release and the version
    # of each application it deploys here, as read from the host's `current` links
    record = net.var(host, "apps_release_record")
    versions = "".join(f", {app} {version}" for app, version in sorted(hosted.items()))
    add("apps", "test_app_release_record", "apps.release", "the host records the network's release and its versions",
        f"{record} names {net.release['release']}{versions}", path=record, release=net.release["release"],
        apps=dict(sorted(hosted.items())))
    tls = net.var(host, "apps_tls_dir")
    root = net.var(host, "apps_root")
    for app, version in sorted(hosted.items()):
        cat = net.catalog.get(app) or {}
        port = (hv.get("jincai_applications") or {}).get(app, {}).get("port")
        add("apps", "test_app_health", f"app.{app}.health", f"{app} answers healthy at the release's version",
            f"https://{hv['jincai_address']}:{port}{cat.get('health_path', '/health')}: status ok, version {version}",
            app=app, address=hv["jincai_address"], port=port, path=cat.get("health_path", "/health"),
            version=version, ca=f"{tls}/ca.crt")
        add("apps", "test_app_current", f"app.{app}.current", f"{app}'s active release is {version}",
            f"{root}/{app}/current -> {version}", path=f"{root}/{app}/current", version=version)
