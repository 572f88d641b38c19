"""``jincai topology [-i INVENTORY] [-o FILE.svg] [--live]``: the WAN map as SVG (or DOT text).

Reads only the source of truth, except with ``--live`` (lab inventories only), which asks each lab
router for its OSPF neighbours and draws every WAN link up (green) or down (red, thick).
``--compliance REPORT.json`` colours each site by its result in a compliance run's report.
"""

import argparse
import os
import sys
import time

from jincai import ROOT

DEFAULT_INVENTORY = os.path.join(ROOT, "inventories", "jilin")


def build_parser():
    """The command line of ``jincai topology``."""
    p = argparse.ArgumentParser(prog="jincai topology", description=__doc__.splitlines()[0])
    p.add_argument("-i", "--inventory", default=DEFAULT_INVENTORY, help="inventory directory (default: jilin)")
    p.add_argument("-o", "--output", help="write the SVG here (default: standard output)")
    p.add_argument("--columns", type=int, default=3, help="columns the counties of a city wrap into (default 3)")
    p.add_argument("--dot", action="store_true", help="print the Graphviz DOT text instead of the SVG")
    p.add_argument("--live", action="store_true",
                   help="lab only: colour each WAN link by the routers' OSPF adjacencies (contacts the lab routers)")
    p.add_argument("--compliance", metavar="REPORT.json",
                   help="colour each site by its result in this compliance report (jincai compliance's report.json)")
    p.add_argument("--title", help="title drawn above the map (default: the network's name)")
    return p


def load_site_states(path):
    """``{site code: state}`` from a compliance report.json; TopologyError naming the file when unreadable."""
    import json

    from jincai.topology import graph, state

    try:
        with open(path, encoding="utf-8") as fh:
            rep = json.load(fh)
        return state.site_states_from_report(rep)
    except OSError as exc:
        raise graph.TopologyError(f"--compliance {path}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise graph.TopologyError(f"--compliance {path}: not a compliance report.json ({exc})") from None


def write(path, text):
    """Write ``text`` to ``path`` atomically (a partial SVG is never left behind)."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def main(argv=None):
    """Entry point; 0 drawn, 1 drawn but some router did not answer (--live), 2 bad input or no Graphviz."""
    from jincai.source import model
    from jincai.source import inventory as invmod
    from jincai.topology import draw, graph, live, ospf

    args = build_parser().parse_args(argv)
    if args.columns < 1:
        print("jincai topology: --columns must be at least 1", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    rc = 0
    try:
        m, _warnings = invmod.build_checked(args.inventory)
        topo = graph.from_model(m)
        link_states = None
        site_states = load_site_states(args.compliance) if args.compliance else None
        if args.live:
            neighbours, errors = live.collect(topo, m)
            for err in errors:
                print(f"jincai topology: {err}", file=sys.stderr)
            rc = 1 if errors else 0
            link_states = ospf.link_states(topo, neighbours)
        title = args.title or f"{topo.network} WAN: {len(topo.sites)} sites, {len(topo.links)} links"
        dot_text = draw.to_dot(topo, site_states=site_states, link_states=link_states, columns=args.columns,
                               title=title)
        text = dot_text if args.dot else draw.render_svg(dot_text)
    except invmod.InvalidSource as exc:
        print(f"jincai topology: invalid source (run jincai validate):\n{exc}", file=sys.stderr)
        return 2
    except (graph.TopologyError, model.SourceError, OSError) as exc:
        print(f"jincai topology: {exc}", file=sys.stderr)
        return 2
    if args.output:
        write(args.output, text)
        down = sorted(s for s, v in (link_states or {}).items() if v != "up")
        print(f"jincai topology: {len(topo.sites)} sites, {len(topo.links)} links -> {args.output} "
              f"({time.monotonic() - t0:.2f} s)" + (f"; not up: {', '.join(down)}" if down else ""))
    else:
        sys.stdout.write(text)
    return rc


if __name__ == "__main__":
    sys.exit(main())
