"""Runs in waves: the province, then each city with its counties, one ansible-playbook run each.

With Mitogen every target of a run keeps its interpreters alive until the run ends (about 60 MiB PSS
per host, measured on the province twin; twice that while compliance's drift and collection runs go
side by side). On the province twin every target shares this machine's memory: one site.yml over its
172 hosts reached 18 GiB and the machine ran out. Long runs over the twin therefore go wave by wave
(``make province``, ``jincai compliance --waves``). A wave is a whole subtree, so each site's province
dependencies (log collector, NTP, artifact repository, CA) are in a wave before it.
"""


def waves(inv, hosts=None):
    """``[(label, [host, ...])]``: the province's hosts, then each city's with its counties'.

    ``inv`` is the inventory dict (``ansible-inventory --list`` shape); ``hosts`` restricts the waves to
    those hosts (a compliance scope). Every host appears once; empty waves are left out; the order is
    stable (province first, then cities by code, hosts sorted).
    """
    hostvars = inv["_meta"]["hostvars"]
    keep = None if hosts is None else set(hosts)
    buckets = {}
    for name, hv in sorted(hostvars.items()):
        if keep is not None and name not in keep:
            continue
        site = hv.get("jincai_site") or {}
        buckets.setdefault(site.get("city_code") or "province", []).append(name)
    order = (["province"] if "province" in buckets else []) + sorted(k for k in buckets if k != "province")
    return [(("province" if k == "province" else f"city {k} and its counties"), buckets[k]) for k in order]


def merge_records(docs):
    """One jincai_drift record document from the documents of several waves (None ones skipped)."""
    out = {"check_mode": False, "records": [], "stats": {}, "host_seconds": {}}
    for doc in docs:
        if not doc:
            continue
        out["check_mode"] = out["check_mode"] or bool(doc.get("check_mode"))
        out["records"].extend(doc.get("records") or [])
        out["stats"].update(doc.get("stats") or {})
        out["host_seconds"].update(doc.get("host_seconds") or {})
    return out
