"""Vendor routers for ``jincai verify``: the read-only commands, their parsers, one netmiko session per router.

A vendor CLI (Huawei VRP V5, VRP V8, H3C Comware 7, Cisco IOS) has no shell for testinfra; its state is
read over the same path the push and ``jincai compliance`` use (``jincai.netconfig``: the platform table,
``connect`` with the inventory's netmiko user, key and known_hosts, ``Device.send`` up to the prompt).
Only ``display``/``show`` commands are sent (:meth:`RouterSession.output` refuses anything else); no
configuration mode is entered. Each command's output is read once per router and run, and parsed by the
small parsers below. Their input formats are the vendors' documented output, cited per parser:

* Huawei: *HUAWEI AR Series Access Routers Command Reference* (V200R010; VRP V8: *NE40E/CE Command
  Reference*, the same columns): ``display ospf peer brief`` (OSPF), ``display ip routing-table`` (IP
  routing), ``display ip interface brief`` (IP service), ``display ntp-service status`` (system management).
* H3C: *H3C Comware 7 Layer 3 - IP Routing Command Reference* (``display ospf peer``, ``display ip
  routing-table``), *Layer 3 - IP Services Command Reference* (``display ip interface brief``), *Network
  Management and Monitoring Command Reference* (``display ntp-service status``).
* Cisco: *Cisco IOS IP Routing: OSPF Command Reference* (``show ip ospf neighbor``), *IP Routing:
  Protocol-Independent Command Reference* (``show ip route``), *IP Addressing Services Command Reference*
  (``show ip interface brief``), *Basic System Management Command Reference* (``show ntp status``).

The ACLs, the NTP servers and the syslog host are judged on the running config (the platform's
``show_running``), parsed by the push engine's own parser, so verify and the push read it alike. The ACL
numbers and names are those of templates/router/<platform>.j2 (tests/unit/test_verify_vendor.py renders
the templates into the simulated routers and passes).
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass

from jincai import netconfig as nc

_IP = r"\d{1,3}(?:\.\d{1,3}){3}"
#: Only these may be sent to a router by jincai verify (queries; netmiko's own session preparation
#: sends the platform's terminal settings, which change nothing either).
READ_ONLY = re.compile(r"^(?:display|show) [\w .:/-]+$")


@dataclass(frozen=True)
class Cli:
    """What jincai verify sends to one platform and what its config must carry."""

    ospf: str
    routes: str
    interfaces: str
    ntp: str
    mgmt_acl: str  # the ACL section header of templates/router/<platform>.j2
    mgmt_acl_use: str  # where that ACL is applied (a line of the running config, shown in the expected value)
    mgmt_use_path: tuple  # (section header or "", line) that applies it
    metro_acl: str
    metro_use: str  # the line inside the metro interface that filters it inbound
    ntp_server_re: str
    loghost_re: str


_HUAWEI = dict(ospf="display ospf peer brief", routes="display ip routing-table",
               interfaces="display ip interface brief", ntp="display ntp-service status",
               mgmt_acl="acl number 2001", mgmt_acl_use="ssh server acl 2001", mgmt_use_path=("", "ssh server acl 2001"),
               metro_acl="acl number 3001", metro_use="traffic-filter inbound acl 3001",
               ntp_server_re=rf"^ntp-service unicast-server ({_IP})", loghost_re=rf"^info-center loghost ({_IP})")

CLIS = {
    "huawei_vrp": Cli(**_HUAWEI),
    "huawei_vrpv8": Cli(**_HUAWEI),
    "h3c_comware": Cli(ospf="display ospf peer", routes="display ip routing-table",
                       interfaces="display ip interface brief", ntp="display ntp-service status",
                       mgmt_acl="acl basic 2001", mgmt_acl_use="ssh server acl 2001",
                       mgmt_use_path=("", "ssh server acl 2001"), metro_acl="acl advanced 3001",
                       metro_use="packet-filter 3001 inbound", ntp_server_re=rf"^ntp-service unicast-server ({_IP})",
                       loghost_re=rf"^info-center loghost ({_IP})"),
    "cisco_ios": Cli(ospf="show ip ospf neighbor", routes="show ip route", interfaces="show ip interface brief",
                     ntp="show ntp status", mgmt_acl="ip access-list standard JINCAI-MGMT",
                     mgmt_acl_use="access-class JINCAI-MGMT in on line vty 0 4",
                     mgmt_use_path=("line vty 0 4", "access-class JINCAI-MGMT in"),
                     metro_acl="ip access-list extended JINCAI-METRO-IN", metro_use="ip access-group JINCAI-METRO-IN in",
                     ntp_server_re=rf"^ntp server ({_IP})", loghost_re=rf"^logging host ({_IP})"),
}

# ------------------------------------------------------------------------------------ interface names

#: The abbreviations the CLIs print (Comware's ``GE1/0/1``, ``Loop0``; IOS ``Gi0/1``): compared in
#: one canonical form.
_IF_ABBREV = {"gigabitethernet": "ge", "ge": "ge", "gi": "ge", "gigabit": "ge", "loopback": "loop", "loop": "loop",
              "lo": "loop", "ethernet": "eth", "eth": "eth", "vlanif": "vlan", "vlan-interface": "vlan", "vlan": "vlan",
              "tengigabitethernet": "xge", "xge": "xge", "te": "xge", "null": "null", "inloop": "inloop"}


def canonical_ifname(name):
    """``GigabitEthernet1/0/1``, ``GE1/0/1`` and ``Gi1/0/1`` -> ``ge1/0/1`` (other names lower-cased)."""
    m = re.match(r"^([A-Za-z-]+)\s*(\d.*)$", name or "")
    if not m:
        return (name or "").lower()
    return _IF_ABBREV.get(m.group(1).lower(), m.group(1).lower()) + m.group(2)


# ------------------------------------------------------------------------------------ parsers


def parse_ospf_peers(platform, text):
    """[{router_id, interface, state}] of ``display ospf peer brief`` / ``display ospf peer`` / ``show ip
    ospf neighbor`` (the documented column layouts, module docstring).

    * Huawei: ``Area Id  Interface  Neighbor id  State`` (``0.0.0.1  GigabitEthernet0/0/1  10.22.254.2  Full``)
    * H3C: ``Router ID  Address  Pri  Dead-Time  State  Interface`` (``10.22.254.2  10.22.248.21  1  37
      Full/ -  GE1/0/1``; the state of a point-to-point adjacency carries a space)
    * Cisco: ``Neighbor ID  Pri  State  Dead Time  Address  Interface`` (``10.22.254.2  0  FULL/  -
      00:00:33  10.22.248.29  GigabitEthernet0/1``)
    """
    out = []
    for line in text.replace("\r", "").splitlines():
        if platform.startswith("huawei"):
            m = re.match(rf"^\s*(?:{_IP}|\d+)\s+(\S+)\s+({_IP})\s+(\S+)\s*$", line)
            if m:
                out.append({"router_id": m.group(2), "interface": m.group(1), "state": m.group(3)})
        elif platform == "h3c_comware":
            m = re.match(rf"^\s*({_IP})\s+{_IP}\s+\d+\s+\d+\s+(\S+/\s*\S+|\S+)\s+(\S+)\s*$", line)
            if m:
                out.append({"router_id": m.group(1), "interface": m.group(3), "state": m.group(2).replace(" ", "")})
        elif platform == "cisco_ios":
            m = re.match(rf"^\s*({_IP})\s+\d+\s+(\S+/\s*\S+|\S+)\s+\S+\s+{_IP}\s+(\S+)\s*$", line)
            if m:
                out.append({"router_id": m.group(1), "interface": m.group(3), "state": m.group(2).replace(" ", "")})
    return out


def _net(prefix):
    return str(ipaddress.ip_network(prefix, strict=False))


def parse_routes(platform, text):
    """{prefix: [{proto, via, interface}]} of ``display ip routing-table`` / ``show ip route``.

    * Huawei (VRP V5 and V8): ``Destination/Mask  Proto  Pre  Cost  Flags  NextHop  Interface``; an
      equal-cost path repeats the row without the destination.
    * H3C: ``Destination/Mask  Proto  Pre  Cost  NextHop  Interface`` (no flags column).
    * Cisco: a code, the prefix (a bare network under a ``... is subnetted`` line takes that line's
      mask), then ``is directly connected, <if>`` or ``[AD/metric] via <next hop>[, <age>][, <if>]``; an
      equal-cost path is a row ``[AD/metric] via ...`` alone.
    """
    routes = {}
    last = None
    if platform in ("huawei_vrp", "huawei_vrpv8", "h3c_comware"):
        row = re.compile(rf"^\s*({_IP}/\d+)?\s+([A-Za-z_]+\d?)\s+(\d+)\s+(\d+)\s+(?:([A-Z]+)\s+)?({_IP})\s+(\S+)\s*$")
        for line in text.replace("\r", "").splitlines():
            m = row.match(line)
            if not m:
                continue
            prefix = _net(m.group(1)) if m.group(1) else last
            if prefix is None:
                continue
            last = prefix
            routes.setdefault(prefix, []).append({"proto": m.group(2), "via": m.group(6), "interface": m.group(7)})
        return routes
    mask = None
    entry = re.compile(rf"^([A-Za-z*+%]{{1,2}}\*?(?: [A-Z][A-Z0-9]?)?)\s+({_IP})(/\d+)?\s+(.*)$")
    for line in text.replace("\r", "").splitlines():
        sub = re.match(rf"^\s+({_IP})(/\d+) is (?:variably )?subnetted", line)
        if sub:
            mask = sub.group(2) if "variably" not in line else None
            continue
        m = entry.match(line)
        if m and not line.startswith(("Codes", "Gateway")):
            plen = m.group(3) or mask or ""
            if not plen:
                continue
            prefix, rest = _net(m.group(2) + plen), m.group(4)
            last = prefix
            routes.setdefault(prefix, []).append(_ios_path(m.group(1), rest))
            continue
        cont = re.match(r"^\s+(\[\d+/\d+\] via .*)$", line)
        if cont and last:
            routes[last].append(_ios_path(routes[last][0]["proto"], cont.group(1)))
    return routes


def _ios_path(code, rest):
    m = re.match(r"is directly connected, (\S+)", rest)
    if m:
        return {"proto": code.strip(), "via": "", "interface": m.group(1)}
    m = re.match(rf"\[\d+/\d+\] via ({_IP})(?:, [\dwdhms:.]+)?(?:, (\S+))?", rest)
    return {"proto": code.strip(), "via": m.group(1) if m else "", "interface": (m.group(2) or "") if m else ""}


def parse_interfaces(platform, text):
    """{canonical name: {name, address, physical, protocol}} of ``display/show ip interface brief``.

    * Huawei: ``Interface  IP Address/Mask  Physical  Protocol`` (V8 adds a ``VPN`` column); ``*down`` is
      administratively down.
    * H3C: ``Interface  Physical  Protocol  IP address  VPN instance  Description`` (names abbreviated:
      ``GE1/0/1``, ``Loop0``; the address without its mask).
    * Cisco: ``Interface  IP-Address  OK?  Method  Status  Protocol`` (``administratively down``).
    """
    out = {}
    for line in text.replace("\r", "").splitlines():
        m = None
        if platform.startswith("huawei"):
            m = re.match(rf"^(\S+)\s+({_IP})(?:/\d+)?\s+(\S+)\s+(\S+)(?:\s+\S+)?\s*$", line)
            fields = (m.group(1), m.group(2), m.group(3), m.group(4)) if m else None
        elif platform == "h3c_comware":
            m = re.match(rf"^(\S+)\s+(\S+)\s+(\S+)\s+({_IP})(?:/\d+)?(?:\s+.*)?$", line)
            fields = (m.group(1), m.group(4), m.group(2), m.group(3)) if m else None
        else:
            m = re.match(rf"^(\S+)\s+({_IP})\s+(?:YES|NO)\s+\S+\s+(up|down|administratively down)\s+(up|down)\s*$", line)
            fields = (m.group(1), m.group(2), m.group(3), m.group(4)) if m else None
        if fields:
            name, address, physical, protocol = fields
            out[canonical_ifname(name)] = {"name": name, "address": address, "physical": physical,
                                           "protocol": protocol}
    return out


def parse_ntp_status(platform, text):
    """{synchronised, reference} of ``display ntp-service status`` / ``show ntp status``.

    * Huawei: ``clock status: synchronized`` / ``unsynchronized``, ``reference clock ID: <address>``.
    * H3C: ``Clock status: synchronized``, ``System peer: <address>`` (also ``Reference clock ID``).
    * Cisco: ``Clock is synchronized, stratum 4, reference is <address>`` / ``Clock is unsynchronized, ...``.
    """
    text = text.replace("\r", "")
    if platform == "cisco_ios":
        m = re.search(r"Clock is (\w+)(?:, stratum \d+)?(?:, reference is (\S+))?", text)
        return {"synchronised": bool(m and m.group(1) == "synchronized"), "reference": (m.group(2) or "") if m else ""}
    status = re.search(r"(?im)^\s*clock status:\s*(\S+)", text)
    ref = re.search(rf"(?im)^\s*(?:system peer|reference clock id):\s*({_IP})", text)
    return {"synchronised": bool(status and status.group(1).lower() == "synchronized"),
            "reference": ref.group(1) if ref else ""}


def config_tree(platform, text):
    """The running config as the push engine parses it (``jincai.netconfig.parse``)."""
    return nc.parse(text, nc.get_platform(platform))


def acl_networks(lines):
    """The networks an ACL's rules permit (``rule 5 permit source A W`` / ``10 permit A W`` / ``permit host A``)."""
    nets = []
    for line in lines:
        m = re.search(rf"\bpermit (?:source )?(?:host )?({_IP})(?: ({_IP}))?(?:\s|$)", line)
        if m:
            wildcard = m.group(2) or "0.0.0.0"
            nets.append(str(ipaddress.ip_network(f"{m.group(1)}/{wildcard}", strict=False)))
    return nets


# ------------------------------------------------------------------------------------ connections


def connection(net, name):
    """(platform, host, port, user, key file, known_hosts, timeout) of router ``name``, as the router role
    and the compliance collection build them (roles/router/defaults/main.yml: ``jincai_netmiko_user``,
    ``jincai_netmiko_key_file``, the ``UserKnownHostsFile`` of ``ansible_ssh_common_args``)."""
    from jincai.verify import support

    hv = net.hostvars[name]
    ivars = net.inv_vars(name)

    def get(key, default=None):
        return ivars[key] if key in ivars else hv.get(key, default)

    known = os.environ.get(support.KNOWN_HOSTS_ENV) or get("router_known_hosts")
    if not known:
        m = re.search(r"UserKnownHostsFile=(\S+)", str(get("ansible_ssh_common_args") or ""))
        known = m.group(1) if m else None
    key = get("jincai_netmiko_key_file")
    return {"platform": hv["jincai_router"]["platform"], "host": get("ansible_host") or name,
            "port": int(get("ansible_port") or 22), "user": get("jincai_netmiko_user") or "netops",
            "key_file": os.path.expanduser(str(key)) if key else None,
            "known_hosts": os.path.expanduser(str(known)) if known else None,
            "timeout": int(net.var(name, "router_netmiko_timeout") or 20)}


class RouterSession:
    """One netmiko session to one router, opened at the first query and kept for the run; every command's
    output read once (several checks read the same table)."""

    def __init__(self, params):
        self.params = params
        self.platform = nc.get_platform(params["platform"])
        self.conn = None
        self.device = None
        self.outputs = {}
        self.sent = []  # every command sent, in order (the read-only proof of the unit tests)

    def _open(self):
        p = self.params
        self.conn = nc.connect(self.platform, p["host"], p["user"], port=p["port"], key_file=p["key_file"],
                               timeout=p["timeout"], known_hosts=p["known_hosts"])
        self.device = nc.Device(self.conn, self.platform, line_timeout=max(30, p["timeout"]))

    def output(self, command):
        """The router's answer to a read-only ``command`` (raises ValueError for anything else)."""
        if not READ_ONLY.match(command):
            raise ValueError(f"jincai verify sends only display/show commands, not {command!r}")
        if command not in self.outputs:
            if self.device is None:
                self._open()
            self.sent.append(command)
            self.outputs[command] = self.device.send(command)
        return self.outputs[command]

    def running(self):
        """The running config text (the platform's ``show_running``, as compliance reads it)."""
        return self.output(self.platform.show_running)

    def close(self):
        """Leave the router (the platform's logout from the user view)."""
        if self.conn is not None:
            try:
                self.conn.disconnect()
            except Exception:  # noqa: BLE001 - the session may already be gone; nothing to undo
                pass
            self.conn = self.device = None
