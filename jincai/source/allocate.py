"""Deterministic address allocation for new sites.

Everything already recorded in the source is taken as used; a new site gets the lowest free block,
link, loopback and address of each pool (see docs/source-of-truth.md, "Address plan"). Nothing that is
already allocated is ever changed, so adding a site never renumbers another.
"""

from __future__ import annotations

import bisect
import ipaddress

from jincai.source import model


class AllocationError(Exception):
    """A pool is exhausted or the request cannot be satisfied."""


def _rng(n):
    return int(n.network_address), int(n.broadcast_address)


class Allocator:
    """Allocates from a (valid) source's plan, avoiding everything the source records."""

    def __init__(self, src):
        self.src = src
        self.plan = src.plan
        self.sites = src.site_map()
        self.used_nets = []  # (first, last) integer ranges of allocated prefixes
        self.used_addrs = set()
        mg = self.plan.get("management") or {}
        if mg.get("control_node"):
            self.used_addrs.add(int(ipaddress.ip_address(mg["control_node"])))
        for site in self.sites.values():
            self._record_site(site)

    # ------------------------------------------------------------------ bookkeeping

    def _record_site(self, site):
        for key in ("block", "lan", "metro", "vpn_pool"):
            if site.get(key):
                self.used_nets.append(_rng(model.net(site[key])))
        for up in site.get("uplinks") or []:
            self.used_nets.append(_rng(model.net(up["subnet"])))
        rtr = site.get("router") or {}
        if rtr.get("loopback"):
            self.used_addrs.add(int(ipaddress.ip_address(rtr["loopback"])))
        for lst in ("hosts", "parties", "vpn_clients"):
            for h in site.get(lst) or []:
                for key in ("address", "mgmt", "vpn_access"):
                    if h.get(key):
                        self.used_addrs.add(int(ipaddress.ip_address(h[key])))

    def _free_subnet(self, container, prefix, avoid=(), what="prefix"):
        """Lowest /prefix inside container overlapping nothing used (nor the ranges in avoid)."""
        container = model.net(container)
        lo, hi = _rng(container)
        # ranges inside/overlapping the container, except those covering it whole (e.g. the city
        # block when allocating a county inside it), merged and sorted for a bisect per candidate
        blockers = sorted(r for r in list(self.used_nets) + list(avoid)
                          if r[0] <= hi and r[1] >= lo and not (r[0] <= lo and r[1] >= hi))
        merged = []
        for a, b in blockers:
            if merged and a <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        ends = [b for _, b in merged]
        for cand in container.subnets(new_prefix=prefix):
            a, b = _rng(cand)
            i = bisect.bisect_left(ends, a)  # first merged range ending at or after the candidate's start
            if i == len(merged) or merged[i][0] > b:
                self.used_nets.append((a, b))
                return cand
        raise AllocationError(f"no free /{prefix} left in {container} for the {what}")

    def _free_addr(self, container, offset=1, what="address"):
        """Lowest unused host address in container at or after host number ``offset``."""
        container = model.net(container)
        first = int(container.network_address)
        last = int(container.broadcast_address)
        for i in range(first + offset, last):
            if i not in self.used_addrs:
                self.used_addrs.add(i)
                return str(ipaddress.ip_address(i))
        raise AllocationError(f"no free address left in {container} for the {what}")

    def _pool_ranges(self):
        return [_rng(model.net(self.plan[k])) for k in
                ("loopbacks", "wan_links", "vpn_pool", "city_vpn_pools", "vpn_access") if self.plan.get(k)]

    # ------------------------------------------------------------------ allocation

    def new_site(self, division, defaults=None):
        """Return a new site dict for a city or county division, allocating everything it needs."""
        network = self.src.network
        defaults = defaults if defaults is not None else (network.get("defaults") or {})
        tier = division.level
        if tier not in ("city", "county"):
            raise AllocationError(f"{division.code} is a {tier}; only cities and counties can be added")
        parent = self.sites.get(division.parent)
        if parent is None:
            raise AllocationError(f"parent {division.parent} of {division.code} is not in the source")
        plan = self.plan
        if tier == "city":
            block = self._free_subnet(plan["supernet"], plan["city_block_prefix"], self._pool_ranges(), "city block")
        else:
            block = self._free_subnet(parent["block"], plan["county_block_prefix"], what="county block")
        # lan first, then the metro segment (only where the tier has external parties) inside the block
        lan = next(block.subnets(new_prefix=plan["lan_prefix"][tier]))
        parties_spec = (defaults.get("parties") or {}).get(tier) or []
        metro = None
        if parties_spec:
            lan_r = _rng(lan)
            metro = next(c for c in block.subnets(new_prefix=plan["metro_prefix"][tier])
                         if not (_rng(c)[0] <= lan_r[1] and _rng(c)[1] >= lan_r[0]))
            self.used_nets.append(_rng(metro))
        self.used_nets.append(_rng(lan))
        platform = (defaults.get("platform") or {}).get(tier, "frr")
        oob = (plan.get("management") or {}).get("mode") == "out_of_band"
        mgmt_net = (plan.get("management") or {}).get("network")
        mgmt_off = (plan.get("management") or {}).get("host_offset", 2)
        site = {"code": division.code, "tier": tier, "parent": division.parent, "name_zh": division.name_zh,
                "pinyin": division.pinyin, "block": str(block), "lan": str(lan)}
        if metro:
            site["metro"] = str(metro)
        site["router"] = {"platform": platform, "loopback": self._free_addr(plan["loopbacks"], 1, "loopback")}
        site["uplinks"] = []
        for role in (defaults.get("uplinks") or {}).get(tier, ["primary"]):
            sn = self._free_subnet(plan["wan_links"], plan["wan_link_prefix"], what="WAN link")
            site["uplinks"].append({"peer": division.parent, "subnet": str(sn), "role": role})
        hosts = []
        offset = plan.get("host_offset", 10)
        for spec in (defaults.get("hosts") or {}).get(tier) or [{"name": "rtr", "function": "router"}]:
            h = {"name": spec["name"], "function": spec["function"]}
            if spec["function"] == "router":
                h["address"] = self._free_addr(lan, 1, "router")
            else:
                h["address"] = self._free_addr(lan, offset, spec["name"])
            if spec["function"] == "vpn_concentrator":
                h["vpn_access"] = self._free_addr(plan["vpn_access"], 1, "VPN access address")
                site["vpn_pool"] = str(self._free_subnet(plan["city_vpn_pools"], plan["city_vpn_pool_prefix"],
                                                         what="budget-unit VPN pool"))
            if oob:
                h["mgmt"] = self._free_addr(mgmt_net, mgmt_off, "management address")
            hosts.append(h)
        site["hosts"] = hosts
        if parties_spec:
            parties = []
            for spec in parties_spec:
                p = {"name": spec["name"], "kind": spec["kind"],
                     "org": spec.get("org", "").format(name_zh=division.name_zh, short=_short(division.name_zh)),
                     "apps": list(spec.get("apps") or []),
                     "address": self._free_addr(metro, offset, spec["name"])}
                if spec.get("managed"):
                    p["managed"] = True
                    if oob:
                        p["mgmt"] = self._free_addr(mgmt_net, mgmt_off, "management address")
                parties.append(p)
            site["parties"] = parties
        for kind in model.VPN_KINDS.values():  # budget units; a county's township finance offices
            bu = (defaults.get(kind.key) or {}).get(tier)
            if bu:
                site[kind.key] = {"count": bu["count"], "apps": list(bu["apps"])}
        site["technicians"] = []
        self.sites[division.code] = site
        return site


def _short(name_zh):
    """Name without its administrative suffix (长春市 -> 长春), for organisation names."""
    for suffix in ("朝鲜族自治州", "自治县", "市", "区", "县", "州"):
        if name_zh.endswith(suffix) and len(name_zh) > len(suffix) + 1:
            return name_zh[: -len(suffix)]
    return name_zh
