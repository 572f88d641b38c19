"""Benchmark: time to render the Jilin WAN map (70 sites, 92 links) to SVG (goal < 2 s).

Contacts nothing. Times each step five times and prints the median: building the model from the
source of truth (load, validate, build), the graph, the DOT text and Graphviz's layout (``dot -Tsvg``), and the whole
``jincai topology -o FILE.svg`` command as an operator runs it (a fresh Python process).
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time

from jincai import ROOT
from jincai.source import inventory as invmod
from jincai.topology import draw, graph, state

JILIN = os.path.join(ROOT, "inventories", "jilin")
GOAL_S = 2.0
RUNS = 5


def _median(fn):
    times, result = [], None
    for _ in range(RUNS):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main():
    """Print the figures; exit 0 when the whole command stays under the goal."""
    t_inv, (m, _) = _median(lambda: invmod.build_checked(JILIN))
    t_graph, topo = _median(lambda: graph.from_model(m))
    t_dot, dot_text = _median(lambda: draw.to_dot(topo))
    t_svg, svg = _median(lambda: draw.render_svg(dot_text))
    states = {code: list(state.SITE_STATES)[i % 4] for i, code in enumerate(topo.sites)}
    t_state, _ = _median(lambda: draw.draw(topo, site_states=states, href=lambda c: f"#site-{c}"))
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "jilin.svg")
        argv = [sys.executable, "-m", "jincai.cli", "topology", "-i", JILIN, "-o", out]
        t_cmd, _ = _median(lambda: subprocess.run(argv, check=True, capture_output=True, cwd=ROOT))
    print(f"jilin map: {len(topo.sites)} sites, {len(topo.links)} links, SVG {len(svg) / 1024:.0f} KiB "
          f"(median of {RUNS})")
    print(f"  model build          {t_inv:6.3f} s")
    print(f"  graph                {t_graph:6.3f} s")
    print(f"  DOT text             {t_dot:6.3f} s")
    print(f"  dot -Tsvg layout     {t_svg:6.3f} s")
    print(f"  coloured map, report {t_state:6.3f} s")
    print(f"  jincai topology -o   {t_cmd:6.3f} s  (goal < {GOAL_S:.0f} s: {'met' if t_cmd < GOAL_S else 'MISSED'})")
    return 0 if t_cmd < GOAL_S else 1


if __name__ == "__main__":
    sys.exit(main())
