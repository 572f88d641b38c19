"""A picture of the WAN: the province, its cities and counties drawn from the source of truth.

* :mod:`jincai.topology.graph`: sites and WAN links read from the inventory (what the roles configure);
* :mod:`jincai.topology.draw`: Graphviz DOT text and its SVG (``dot -Tsvg``, Debian package graphviz);
* :mod:`jincai.topology.state`: the colour of a site per compliance result, of a link per OSPF state;
* :mod:`jincai.topology.ospf`: FRR's ``show ip ospf neighbor json`` parsed, and links marked up or down;
* :mod:`jincai.topology.live`: those neighbours read from the lab's routers (``--live``);
* :mod:`jincai.topology.cli`: ``jincai topology [-i INVENTORY] [-o FILE.svg] [--live]``.

The compliance HTML report embeds the map with each site coloured by its result
(:func:`jincai.compliance.report.render_html`); ``jincai site show CODE --draw FILE.svg`` draws one
site and its neighbours. See docs/topology.md.

May import: :mod:`jincai`, :mod:`jincai.source` (the typed model), :mod:`jincai.lab` (``live`` only:
the lab's routers and state).
"""
