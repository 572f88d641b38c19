"""``jincai site add CODE [--write]`` and ``jincai site show CODE``.

``add`` allocates the next free blocks for a city or county (see :mod:`jincai.source.allocate`), shows the
YAML it would append and writes it only with ``--write``, after validating the whole source *with*
the new site. ``show`` prints a site's plan: addresses, links, hosts, applications, and with
``--draw FILE.svg`` draws the site and its neighbours (:mod:`jincai.topology`).
"""

from __future__ import annotations

import os
import sys

import yaml

from jincai.source import allocate, model, schema, validate

#: Keys of a site in the order the hand-written files use: the schema's order (jincai/source/schema.py).
SITE_KEY_ORDER = tuple(schema.site_schema()["properties"])
MAX_FLOW = 130


def _flow(value):
    """One-line YAML for a scalar, list or mapping (keys kept in order)."""
    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, sort_keys=False,
                          width=10_000).strip().removesuffix("...").strip()


def render_site(site, indent=2):
    """YAML text of one site as a list item, in the style of the hand-written source files."""
    pad = " " * indent
    lines = []
    first = True
    for key in SITE_KEY_ORDER:
        if key not in site:
            continue
        value = site[key]
        lead = f"{pad}- " if first else f"{pad}  "
        first = False
        if isinstance(value, list) and value:
            lines.append(f"{lead}{key}:")
            for item in value:
                text = _flow(item)
                if len(text) + indent + 6 <= MAX_FLOW:
                    lines.append(f"{pad}    - {text}")
                else:
                    block = yaml.safe_dump(item, allow_unicode=True, sort_keys=False, width=10_000).splitlines()
                    lines.append(f"{pad}    - {block[0]}")
                    lines.extend(f"{pad}      {b}" for b in block[1:])
        else:
            lines.append(f"{lead}{key}: {_flow(value)}")
    return "\n".join(lines) + "\n"


def site_file(src, site):
    """The sites/*.yml file that holds (or would hold) a site: the city's file for a county."""
    sitedir = os.path.join(src.source_dir, "sites")
    city = site["code"] if site["tier"] == "city" else site["parent"]
    for file, s in src.sites:
        if isinstance(s, dict) and s.get("code") == city:
            return os.path.abspath(file)
    return os.path.join(sitedir, f"{city}.yml")


def plan_add(inventory_dir, code):
    """Return ``(path, old_text, new_text, site)`` for adding ``code``; raise ValueError with the reason."""
    src = model.load(inventory_dir)
    errors = [f for f in validate.check(src) if f.severity == "error"]
    if errors:
        raise ValueError("the source has errors; fix them first:\n" + "\n".join(str(f) for f in errors))
    code = str(code)
    div = src.divisions().get(code)
    if div is None:
        raise ValueError(f"{code} is not a Jilin division (GB/T 2260); see jincai/data/jilin-divisions.tsv")
    if code in src.site_map():
        raise ValueError(f"site {code} ({div.name_zh}) is already present")
    if div.level == "province":
        raise ValueError(f"{code} is the province; only cities and counties can be added")
    if div.parent not in src.site_map():
        raise ValueError(f"the parent {div.parent} of {code} ({div.name_zh}) is not in the source; "
                         f"add it first: jincai site add {div.parent}")
    try:
        site = allocate.Allocator(src).new_site(div)
    except allocate.AllocationError as exc:
        raise ValueError(str(exc)) from None
    path = site_file(src, site)
    old = ""
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fh:
            old = fh.read()
        new = old + ("" if old.endswith("\n") else "\n") + render_site(site)
    else:
        new = f"---\n# City {div.name_zh} and its counties.\nsites:\n" + render_site(site)
    check = model.load(inventory_dir, overrides={path: new})
    errors = [f for f in validate.check(check) if f.severity == "error"]
    if errors:
        raise ValueError("the allocation would not validate (a bug or a full pool):\n" +
                         "\n".join(str(f) for f in errors))
    return path, old, new, site


def port_moves(inventory_dir, path, new):
    """Ports of existing routers that the new source would renumber: ``[(router, segment, old, new)]``.

    A moved port means re-cabling a working router before its config is pushed (or the push cuts the
    link off), so ``add`` shows every move and writes only when the operator allows it."""
    before = model.build(model.load(inventory_dir)).hosts
    after = model.build(model.load(inventory_dir, overrides={path: new})).hosts
    moves = []
    for name, host in sorted(before.items()):
        if host.kind != "router" or name not in after:
            continue
        now = {i.segment: i.name for i in after[name].interfaces}
        for i in host.interfaces:
            if i.segment in now and now[i.segment] != i.name:
                moves.append((name, i.segment, i.name, now[i.segment]))
    return moves


def add(inventory_dir, code, write=False, allow_port_moves=False):
    """Show (and with ``write`` append) the new site; 0 on success, 1 when refused."""
    try:
        path, old, new, site = plan_add(inventory_dir, code)
    except (ValueError, model.SourceError) as exc:
        print(f"jincai site add: {exc}", file=sys.stderr)
        return 1
    shown = model.display_path(path)
    added = new[len(old):]
    verb = "appending to" if old else "creating"
    print(f"# {verb} {shown}:")
    for line in added.splitlines():
        print(f"+ {line}")
    moves = port_moves(inventory_dir, path, new)
    for router, segment, was, now in moves:
        print(f"! PORT MOVE: {router}: {segment} moves from {was} to {now} (re-cable it before the router's "
              "config is pushed, or the push cuts that link off)")
    if not write:
        print(f"# dry run: nothing written; run again with --write to add site {site['code']}")
        return 0
    if moves and not allow_port_moves:
        print(f"jincai site add: {len(moves)} port(s) of working routers would move (listed above); nothing "
              "written. Plan the re-cabling, then run again with --write --allow-port-moves", file=sys.stderr)
        return 1
    tmp = path + ".tmp"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(new)
    os.replace(tmp, path)
    print(f"# wrote {shown}; technicians still to be listed (jincai validate warns until they are)")
    return 0


def describe(src, code):
    """Lines describing one site's plan (from the typed model: the site, its router's links, its hosts)."""
    m = model.build(src)
    site = m.sites[code]
    raw = site.source
    out = [f"site {code} {site.name_zh} ({site.pinyin}), {site.tier}"
           + (f", parent {site.parent}" if site.parent else "")]
    out.append(f"  block {site.block}  lan {site.lan}" + (f"  metro {site.metro}" if site.metro else "")
               + (f"  vpn pool {site.vpn_pool}" if site.vpn_pool else ""))
    out.append(f"  router {site.platform}  loopback {site.loopback}")
    out.append("  links:")
    for i in m.hosts[site.router].interfaces:
        if i.role in ("uplink", "downlink"):
            out.append(f"    {i.name:<24} {i.role:<8} {i.address:<18} -> {i.peer} "
                       f"(cost {i.ospf_cost}, area {i.ospf_area})")
    out.append("  hosts:")
    for name in site.hosts:
        h = m.hosts[name]
        extra = "  apps: " + ", ".join(site.apps) if "app_server" in h.functions else ""
        out.append(f"    {name:<14} {','.join(h.functions):<18} {h.address:<15} mgmt {h.mgmt}{extra}")
    for p in site.parties:
        short = p.name.removeprefix(f"{code}-")
        out.append(f"    party {code}-{short:<8} {p.kind:<16} {p.address or '-':<15} {p.org or ''} "
                   f"-> {', '.join(p.apps)}")
    bu = raw.get("budget_units")
    if bu:
        out.append(f"  budget units: {bu['count']} -> {', '.join(bu['apps'])}")
    tw = raw.get("townships")
    if tw:
        out.append(f"  township finance offices: {tw['count']} -> {', '.join(tw['apps'])} "
                   f"(served by {model.township_concentrator(raw)}'s concentrator)")
    out.append(f"  applications ({site.tier}): {', '.join(site.apps)}")
    techs = raw.get("technicians") or []
    out.append(f"  technicians: {len(techs)}" + ("  " + ", ".join(f"{t['user']} {t.get('name', '')}"
                                                                    for t in techs) if techs else ""))
    return out


def draw_site(src, code, path):
    """Draw site ``code`` with its parent(s), children, parties and VPN concentrator into ``path`` (SVG)."""
    from jincai.topology import draw, graph
    from jincai.topology import cli as topocli

    near = graph.neighbourhood(graph.from_source(src), code)
    site = near.sites[code]
    title = f"{code} {site.name_zh} ({site.pinyin}) and its neighbours"
    topocli.write(path, draw.draw(near, party_nodes={code}, focus=code, title=title))
    return near


def show(inventory_dir, code, draw=None):
    """Print a site's plan (and with ``draw`` an SVG of it and its neighbours); 1 when the code is
    unknown, the source invalid or the drawing failed."""
    try:
        src = model.load(inventory_dir)
    except model.SourceError as exc:
        print(f"jincai site show: {exc}", file=sys.stderr)
        return 1
    errors = [f for f in validate.check(src) if f.severity == "error"]
    if errors:
        print("jincai site show: the source has errors (run jincai validate)", file=sys.stderr)
        return 1
    if str(code) not in src.site_map():
        print(f"jincai site show: no site {code} in {model.display_path(src.inv_dir)}", file=sys.stderr)
        return 1
    print("\n".join(describe(src, str(code))))
    if draw:
        from jincai.topology.graph import TopologyError

        try:
            near = draw_site(src, str(code), draw)
        except (TopologyError, OSError) as exc:
            print(f"jincai site show: --draw {draw}: {exc}", file=sys.stderr)
            return 1
        print(f"  drawn: {draw} ({len(near.sites)} sites, {len(near.links)} links)")
    return 0
