"""Read a drawn map back: which sites and links an SVG from :mod:`jincai.topology.draw` shows, and where.

:func:`read_map` parses the SVG (ElementTree; Graphviz's output) into the sites (id, classes, fill
colour, link target, text, bounding box in SVG viewport units) and links (id, classes, stroke,
dashing). The tests check the picture with it, and turn a node's box into screenshot pixels with
:func:`to_viewport` and the rendered size.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

NS = {"svg": "http://www.w3.org/2000/svg", "xlink": "http://www.w3.org/1999/xlink"}
SITE_PREFIX = "site-node-"


@dataclass
class Shape:
    """One drawn site (a node) or link (an edge)."""

    id: str
    classes: list
    fill: str = ""
    stroke: str = ""
    dashed: bool = False
    href: str = ""
    text: str = ""
    box: tuple = ()  # (x0, y0, x1, y1) in viewport units (the viewBox), y down


@dataclass
class Map:
    """What an SVG map shows: its viewBox size, the sites by code and the links by segment id."""

    width: float
    height: float
    sites: dict = field(default_factory=dict)
    links: dict = field(default_factory=dict)
    others: list = field(default_factory=list)  # ids of other nodes (parties, VPN concentrators)

    def site_states(self):
        """``{site code: state}`` as drawn (a class of jincai.topology.state.SITE_STATES; None if plain)."""
        from jincai.topology.state import SITE_STATES

        return {code: next((c for c in s.classes if c in SITE_STATES), None) for code, s in self.sites.items()}

    def link_states(self):
        """``{segment: up | down | unknown}`` as drawn (None for a link drawn without state)."""
        from jincai.topology.state import LINK_STATES

        return {seg: next((c for c in s.classes if c in LINK_STATES), None) for seg, s in self.links.items()}


def _tag(el):
    return el.tag.rsplit("}", 1)[-1]


def _points(el):
    """The (x, y) points of a polygon, or of a path's absolute coordinates."""
    raw = el.get("points") if _tag(el) == "polygon" else re.sub(r"[A-Za-z]", " ", el.get("d", ""))
    nums = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", raw or "")]
    return list(zip(nums[0::2], nums[1::2]))


def _transform(root):
    """``(sx, sy, tx, ty)`` of the graph group's ``scale(sx sy) rotate(0) translate(tx ty)`` (Graphviz's)."""
    graph = root.find("svg:g", NS)
    transform = (graph.get("transform") if graph is not None else "") or ""
    scale = re.search(r"scale\(([-\d.]+)(?:[ ,]+([-\d.]+))?\)", transform)
    move = re.search(r"translate\(([-\d.]+)[ ,]+([-\d.]+)\)", transform)
    sx = float(scale.group(1)) if scale else 1.0
    sy = float(scale.group(2) or sx) if scale else 1.0
    return sx, sy, (float(move.group(1)) if move else 0.0), (float(move.group(2)) if move else 0.0)


def read_map(svg_text):
    """Parse a map SVG into a :class:`Map` (raises ValueError when it is not an SVG)."""
    try:
        root = ET.fromstring(svg_text)
    except ET.ParseError as exc:
        raise ValueError(f"not an SVG document: {exc}") from None
    if _tag(root) != "svg":
        raise ValueError(f"not an SVG document: root element <{_tag(root)}>")
    vb = [float(v) for v in (root.get("viewBox") or "0 0 0 0").split()]
    out = Map(width=vb[2], height=vb[3])
    sx, sy, tx, ty = _transform(root)
    for g in root.iter(f"{{{NS['svg']}}}g"):
        classes = (g.get("class") or "").split()
        gid = g.get("id") or ""
        if "node" in classes:
            shape = Shape(gid, classes)
            first = next((el for el in g.iter() if _tag(el) in ("polygon", "path", "ellipse")), None)
            if first is not None:
                shape.fill = first.get("fill", "")
                shape.stroke = first.get("stroke", "")
                pts = _points(first) if _tag(first) != "ellipse" else [
                    (float(first.get("cx")) - float(first.get("rx")), float(first.get("cy")) - float(first.get("ry"))),
                    (float(first.get("cx")) + float(first.get("rx")), float(first.get("cy")) + float(first.get("ry")))]
                xs, ys = [(p[0] + tx) * sx for p in pts], [(p[1] + ty) * sy for p in pts]
                shape.box = (min(xs), min(ys), max(xs), max(ys))
            link = next((a for a in g.iter(f"{{{NS['svg']}}}a")), None)
            if link is not None:
                shape.href = link.get(f"{{{NS['xlink']}}}href") or link.get("href") or ""
            shape.text = " ".join(t.text.strip() for t in g.iter(f"{{{NS['svg']}}}text") if t.text and t.text.strip())
            if gid.startswith(SITE_PREFIX):
                code = gid[len(SITE_PREFIX):]
                if code in out.sites:
                    raise ValueError(f"site {code} is drawn more than once")
                out.sites[code] = shape
            else:
                out.others.append(gid)
        elif "edge" in classes and "link" in classes:
            path = next((el for el in g.iter(f"{{{NS['svg']}}}path")), None)
            shape = Shape(gid, classes)
            if path is not None:
                shape.stroke = path.get("stroke", "")
                shape.dashed = bool(path.get("stroke-dasharray"))
            if gid in out.links:
                raise ValueError(f"link {gid} is drawn more than once")
            out.links[gid] = shape
    return out


def to_viewport(box, rendered, svg_map):
    """Scale a viewBox box to page pixels: ``rendered`` is the SVG element's (left, top, width, height)."""
    left, top, width, height = rendered
    sx, sy = width / svg_map.width, height / svg_map.height
    x0, y0, x1, y1 = box
    return (left + x0 * sx, top + y0 * sy, left + x1 * sx, top + y1 * sy)
