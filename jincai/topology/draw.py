"""Draw a :class:`~jincai.topology.graph.Topology`: Graphviz DOT text, laid out by ``dot -Tsvg``.

The layout is Graphviz's (Debian package ``graphviz``), left to right by tier: the province, then the
cities, each city boxed with its counties, which wrap into ``columns`` columns so 70 sites stay
readable (a city with up to MIN_ROWS counties keeps them in one column). A node is a site: code and
Chinese name, its VPN concentrator and external parties as a line of badges under the name (for the
sites in ``party_nodes``: as nodes of their own beside it). Primary uplinks are solid, backup
uplinks dashed (and weigh nothing in the layout). In the SVG every site is
``<g id="site-node-CODE" class="node site TIER STATE">`` and every link
``<g id="<segment>" class="edge link ROLE [STATE]">``.
"""
from __future__ import annotations

import html
import math
import re
import shutil
import subprocess

from jincai.topology import state as statemod
from jincai.topology.graph import TopologyError

FONT = "WenQuanYi Micro Hei"
#: Plain map (no state given): fill and text colour per tier.
TIER_COLOURS = {"province": ("#bbdefb", "#0d2b4e"), "city": ("#e3f2fd", "#0d2b4e"), "county": ("#ffffff", "#1d2733")}
LINK_STYLE = {"primary": {"style": "solid", "penwidth": "1.6", "color": "#37474f"},
              "backup": {"style": "dashed", "penwidth": "1.3", "color": "#1e88e5"}}
PARTY_LABELS = {"peoples_bank": "人行", "commercial_bank": "银行", "tax_bureau": "税务"}
DOT_TIMEOUT = 60
#: A city's counties stay in one column up to this many; more wrap into ``columns`` columns.
MIN_ROWS = 3


def node_id(code):
    """The SVG id of a site's node."""
    return f"site-node-{code}"


def _q(value):
    """A DOT double-quoted string."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Html(str):
    """A Graphviz HTML-like label (written as ``<...>``, not quoted)."""


def _attrs(**kw):
    return "[" + " ".join(f"{k}={v if isinstance(v, _Html) else _q(v)}" for k, v in kw.items() if v is not None) + "]"


def _e(text):
    return html.escape(str(text or ""), quote=True)


def _badges(site, vpn):
    """The badge line of a site: its VPN concentrator (``vpn``: :attr:`Topology.vpn` of the site) and its
    parties, grouped by kind."""
    out = []
    if vpn:
        out.append(f"VPN {vpn.get('budget_units', 0)}")
    counts = {}
    for p in site.parties:
        counts[p.kind] = counts.get(p.kind, 0) + 1
    for kind in PARTY_LABELS:
        if counts.get(kind):
            out.append(PARTY_LABELS[kind] + (f"×{counts[kind]}" if counts[kind] > 1 else ""))
    for kind in sorted(set(counts) - set(PARTY_LABELS)):
        out.append(f"{kind}×{counts[kind]}")
    return " · ".join(out)


def _site_label(site, badges):
    rows = [f"<TR><TD><B>{_e(site.code)}</B>&#160;{_e(site.name_zh)}</TD></TR>"]
    if badges:
        rows.append(f'<TR><TD><FONT POINT-SIZE="8">{_e(badges)}</FONT></TD></TR>')
    return _Html(f'<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">{"".join(rows)}</TABLE>>')


def _site_node(site, vpn, state, href, as_nodes, focus=False):
    if state is None:
        fill, text = TIER_COLOURS.get(site.tier, TIER_COLOURS["county"])
    else:
        fill, text = statemod.colours(state)
    tip = f"{site.code} {site.name_zh} ({site.pinyin}), {site.tier}"
    if site.platform:
        tip += f", router {site.platform}"
    if state is not None:
        tip += f": {state}"
    return (f"  {_q('s' + site.code)} " + _attrs(
        id=node_id(site.code), label=_site_label(site, "" if as_nodes else _badges(site, vpn)),
        fillcolor=fill, fontcolor=text, penwidth="3.5" if focus else "2" if site.tier != "county" else "1",
        color="#0d47a1" if focus else None, tooltip=tip, href=href(site.code) if href else None,
        **{"class": f"site {site.tier} {state or 'plain'}" + (" focus" if focus else "")}))


def _party_nodes(site, vpn):
    lines = []
    for p in site.parties:
        label = _Html(f"<{_e(PARTY_LABELS.get(p.kind, p.kind))} {_e(p.name)}<BR/>"
                      f"<FONT POINT-SIZE=\"8\">{_e(p.org)}</FONT>>")
        lines.append(f"    {_q('p' + p.name)} " + _attrs(id=f"party-{p.name}", label=label, shape="note",
                                                          fillcolor="#fff8e1", fontsize="9",
                                                          **{"class": f"party {p.kind}"}))
        lines.append(f"    {_q('s' + site.code)} -> {_q('p' + p.name)} "
                     + _attrs(style="dotted", color="#8d6e63", **{"class": "metro"}))
    if vpn:
        host = vpn["host"]
        units = vpn.get("budget_units", 0)
        label = _Html(f"<VPN {_e(host)}<BR/><FONT POINT-SIZE=\"8\">{units} 预算单位</FONT>>")
        lines.append(f"    {_q('v' + host)} " + _attrs(id=f"vpn-{host}", label=label, shape="component",
                                                       fillcolor="#f3e5f5", fontsize="9", **{"class": "vpn"}))
        lines.append(f"    {_q('s' + site.code)} -> {_q('v' + host)} "
                     + _attrs(style="dotted", color="#8e24aa", **{"class": "vpn-access"}))
    return lines


def to_dot(topo, site_states=None, link_states=None, href=None, columns=3, party_nodes=(), title=None,
           focus=None):
    """Return the DOT text of ``topo``.

    ``site_states``: ``{code: state}`` (see :mod:`jincai.topology.state`; a site missing from it is
    ``unchecked``), None for the plain map coloured by tier. ``link_states``: ``{segment: up|down|
    unknown}`` or None. ``href``: a function code -> link target of the site's node. ``columns``: the
    counties of a city wrap into this many columns. ``party_nodes``: codes of the sites whose parties
    and VPN concentrator are drawn as nodes of their own (one site's drawing) instead of badges.
    ``focus``: the code of a site drawn with a heavy blue border (the subject of a site's drawing).
    """
    lines = ["digraph wan {",
             "  " + " ".join(f"{k}={_q(v)}" for k, v in dict(
                 rankdir="LR", newrank="true", nodesep="0.12", ranksep="0.45", fontname=FONT, fontsize="12",
                 bgcolor="white", pad="0.1", labelloc="t", labeljust="l", label=title or "").items()),
             "  node " + _attrs(shape="box", style="filled", fontname=FONT, fontsize="11", margin="0.06,0.03",
                                color="#455a64"),
             "  edge " + _attrs(arrowhead="none", fontname=FONT, fontsize="8")]

    def state_of(code):
        return None if site_states is None else site_states.get(code, "unchecked")

    def node(site, indent="  "):
        as_nodes = site.code in party_nodes
        vpn = topo.vpn.get(site.code)
        out = [indent + _site_node(site, vpn, state_of(site.code), href, as_nodes, site.code == focus).strip()]
        if as_nodes:
            out += _party_nodes(site, vpn)
        return out

    placed = set()
    for site in topo.sites.values():
        if site.tier == "province":
            lines += node(site)
            placed.add(site.code)
    for city in [s for s in topo.sites.values() if s.tier == "city"]:
        counties = [topo.sites[c] for c in topo.children(city.code) if c in topo.sites
                    and topo.sites[c].tier == "county"]
        lines.append(f"  subgraph {_q('cluster_' + city.code)} {{")
        lines.append("    " + " ".join(f"{k}={_q(v)}" for k, v in dict(
            id=f"city-{city.code}", label="", style="rounded", color="#b0bec5", penwidth="1").items()))
        lines += node(city, "    ")
        placed.add(city.code)
        for county in counties:
            lines += node(county, "    ")
            placed.add(county.code)
        # wrap the counties into columns: invisible edges push column k+1 one rank to the right
        rows = max(MIN_ROWS, math.ceil(len(counties) / max(1, columns)))
        for i in range(rows, len(counties)):
            lines.append(f"    {_q('s' + counties[i - rows].code)} -> {_q('s' + counties[i].code)} [style=invis]")
        lines.append("  }")
    for site in topo.sites.values():  # counties without a city in the drawing (a site's neighbourhood)
        if site.code not in placed:
            lines += node(site)
    for link in topo.links:
        style = dict(LINK_STYLE[link.role])
        css = f"link {link.role}"
        link_state = None
        if link_states is not None:
            link_state = link_states.get(link.segment) or "unknown"
            style["color"] = statemod.LINK_STATES[link_state]
            css += f" {link_state}"
            if link_state == "down":
                style["penwidth"] = "3"
        tip = f"{link.segment} {link.subnet or ''} ({link.role}{', ' + link_state if link_state else ''})"
        lines.append(f"  {_q('s' + link.parent)} -> {_q('s' + link.child)} " + _attrs(
            id=link.segment, tooltip=tip, weight="1" if link.role == "primary" else "0",
            xlabel="down" if link_state == "down" else None, fontcolor=style["color"],
            **style, **{"class": css}))
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_svg(dot_text, timeout=DOT_TIMEOUT):
    """Lay out DOT text with Graphviz and return the SVG text (TopologyError when dot is missing or fails)."""
    dot = shutil.which("dot")
    if not dot:
        raise TopologyError("command 'dot' not found: apt-get install graphviz (make deps installs it)")
    try:
        res = subprocess.run([dot, "-Tsvg"], input=dot_text, capture_output=True, text=True, timeout=timeout,
                             check=False)
    except subprocess.TimeoutExpired:
        raise TopologyError(f"dot -Tsvg took more than {timeout} s") from None
    if res.returncode != 0 or "<svg" not in res.stdout:
        raise TopologyError(f"dot -Tsvg failed (rc {res.returncode}): {res.stderr.strip()[-1000:]}")
    return res.stdout


def inline(svg):
    """The SVG element alone (no XML declaration, DOCTYPE or comments), for embedding in an HTML page."""
    start = svg.find("<svg")
    return re.sub(r"<!--.*?-->\n?", "", svg[start:], flags=re.S).strip()


def draw(topo, **kw):
    """``render_svg(to_dot(topo, **kw))``."""
    return render_svg(to_dot(topo, **kw))
