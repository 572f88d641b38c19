"""The HTML report renders in headless Chromium (Debian package ``chromium``): screenshot + DOM, and
its WAN map (jincai.topology) shows each site in its state's colour."""

import json
import os

import pytest

from jincai import ROOT
from jincai.compliance import report, screenshot
from tests.unit.test_compliance import _findings_report

SHOTS = os.path.join(ROOT, "reports", "screenshots")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    if not screenshot.chromium():
        pytest.fail("chromium is not installed: apt-get install chromium (make deps installs it)")
    out = tmp_path_factory.mktemp("html")
    paths = report.write_all(_findings_report(), str(out / "run"), str(out / "history.json"))
    return paths["html"]


def test_report_renders_in_headless_chromium_with_a_screenshot(page):
    os.makedirs(SHOTS, exist_ok=True)
    png = os.path.join(SHOTS, "compliance-fixture.png")
    width, height = screenshot.screenshot(page, png)
    assert (width, height) == (1280, 1600)
    assert os.path.getsize(png) > 20000, "the screenshot is (nearly) blank"


def test_rendered_dom_has_the_summary_site_tables_and_findings(page):
    dom = screenshot.dump_dom(page)
    assert "Province summary" in dom and "Cities and counties" in dom
    assert dom.count("<table") >= 4
    assert "L3-SMC1-09" in dom and "unreachable" in dom and "220203" in dom
    assert "<script>alert" not in dom  # the diff stays text


# ---------------------------------------------------------------- the WAN map in the report

INVENTORIES = {"lab": os.path.join(ROOT, "inventories", "lab"), "jilin": os.path.join(ROOT, "inventories", "jilin")}
WIDTH = 1280
#: The geometry of the map as laid out, written into the page title by a probe script.
PROBE = ("<script>const r = document.querySelector('.map svg').getBoundingClientRect();"
         "document.title = JSON.stringify([r.left, r.top, r.width, r.height]);</script>")
#: (inventory, run): the site made unreachable and the one drifted (none: every host clean).
CASES = {("lab", "clean"): None, ("lab", "faulted"): ("220103", "220202"), ("jilin", "faulted"): ("220523", "220102")}


@pytest.fixture(scope="module")
def map_reports(tmp_path_factory):
    """Reports with the WAN map: the lab clean, the lab and Jilin with one county unreachable, one drifted.

    Returns ``{case: (html path, {code: expected state}, topology)}``. Nothing is contacted: the facts
    are the compliant fixtures of test_compliance, the faults records of the kind the runs write.
    """
    from jincai.compliance import model, resolve_scope
    from jincai.source import inventory as invmod
    from jincai.topology import graph
    from tests.unit.test_compliance import CATALOGUE, _collected

    out = tmp_path_factory.mktemp("map")
    pages = {}
    for (inv_name, run), faults in CASES.items():
        inv = invmod.build(INVENTORIES[inv_name])
        scope, _ = resolve_scope(inv, None)
        records, expect = [], {}
        if faults:
            down, drifted = faults
            hosts = [h for h in scope if h.startswith(f"{down}-")]
            assert hosts, f"{inv_name} has hosts at county {down}"
            records = [{"host": h, "status": "unreachable", "task": "Gathering Facts", "role": "",
                        "msg": "ssh: connect to host: No route to host"} for h in hosts]
            records.append({"host": f"{drifted}-app1", "status": "changed", "task": "Render the app config",
                            "role": "apps", "diff": "-port = 8101\n+port = 8111\n"})
            expect = {down: "unreachable", drifted: "drift"}
        rep = model.build_report(inv, scope, _collected(scope), {"records": records}, CATALOGUE,
                                 {"run_id": f"20261201T01000{len(pages)}Z"})
        topo = graph.load(INVENTORIES[inv_name])
        paths = report.write_all(rep, str(out / f"{inv_name}-{run}"), None, topology=topo)
        pages[(inv_name, run)] = (paths["html"], expect, topo)
    return pages


def _map_of(page_text):
    from jincai.topology import svg

    return svg.read_map(page_text[page_text.index("<svg"):page_text.index("</svg>") + len("</svg>")])


def test_report_embeds_the_map_with_each_site_linked_to_its_row(map_reports):
    import re

    from jincai.topology import state

    for case, (page, expect, topo) in map_reports.items():
        text = open(page, encoding="utf-8").read()
        drawn = _map_of(text)
        assert set(drawn.sites) == set(topo.sites), case
        rows = set(re.findall(r'<tr id="site-(\d+)">', text))
        for code, shape in drawn.sites.items():
            assert shape.href == f"#site-{code}" and code in rows, (case, code)
            assert shape.fill == state.SITE_STATES[expect.get(code, "clean")][0], (case, code)
        for code in expect:
            assert f'id="findings-{code}"' in text and f'href="#findings-{code}"' in text


def test_screenshots_show_each_site_in_its_state_colour(map_reports):
    """Headless Chromium renders each report; the pixels at every site's node have its state's colour."""
    import html
    import re
    import shutil

    from jincai.topology import state, svg

    os.makedirs(SHOTS, exist_ok=True)
    seen = {}
    for (inv_name, run), (page, expect, topo) in map_reports.items():
        probe = page.replace(".html", ".probe.html")
        shutil.copy(page, probe)
        with open(probe, "a", encoding="utf-8") as fh:
            fh.write(PROBE)
        drawn = _map_of(open(page, encoding="utf-8").read())
        png = os.path.join(SHOTS, f"compliance-map-{inv_name}-{run}.png")
        # one Chromium run: the screenshot, and the DOM whose title the probe set to the map's position
        shot_height = 700 + int(drawn.height * 96 / 72)  # the page above the map is < 700 px high
        size, dom = screenshot.screenshot_and_dom(probe, png, width=WIDTH, height=shot_height)
        assert size == (WIDTH, shot_height)
        rect = json.loads(html.unescape(re.search(r"<title>(.*?)</title>", dom).group(1)))
        left, top, width, height = rect
        assert top + height <= shot_height, f"{inv_name}: the map does not fit the screenshot: {rect}"
        # readable: the map is not shrunk below its natural size (11 pt labels, 96/72 px per pt)
        assert width / drawn.width * 11 >= 14, f"{inv_name}: labels render at {width / drawn.width * 11:.1f} px"
        pixels = screenshot.read_png(png)
        for code in topo.sites:
            want = state.SITE_STATES[expect.get(code, "clean")][0]
            rgb = tuple(int(want[i:i + 2], 16) for i in (1, 3, 5))
            x0, y0, x1, y1 = svg.to_viewport(drawn.sites[code].box, rect, drawn)
            # the node's four corners, 5 px inside its border (clear of the centred label)
            for x, y in ((x0 + 5, y0 + 5), (x1 - 5, y0 + 5), (x0 + 5, y1 - 5), (x1 - 5, y1 - 5)):
                got = pixels.rgb(int(x), int(y))
                assert all(abs(g - w) <= 8 for g, w in zip(got, rgb)), (inv_name, run, code, (int(x), int(y)), got)
            seen[(inv_name, run, code)] = pixels.rgb(int((x0 + x1) / 2), int(y0 + 5))
        # outside the nodes the map is white: the colours above are the nodes', not the page's
        assert pixels.rgb(int(left + 2), int(top + 2)) == (255, 255, 255)
    assert seen[("lab", "clean", "220103")] != seen[("lab", "faulted", "220103")]


def _png(path, width, height, rows, kinds, colour=6):
    """Write a PNG whose scanline y is filtered with ``kinds[y]`` (the encoder side of PNG spec section 9)."""
    import struct
    import zlib

    bpp = 4 if colour == 6 else 3

    def paeth(a, b, c):
        pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
        return a if pa <= pb and pa <= pc else b if pb <= pc else c

    raw, prev = bytearray(), bytes(width * bpp)
    for row, kind in zip(rows, kinds):
        out = bytearray()
        for i, v in enumerate(row):
            a = row[i - bpp] if i >= bpp else 0
            c = prev[i - bpp] if i >= bpp else 0
            pred = {0: 0, 1: a, 2: prev[i], 3: (a + prev[i]) // 2, 4: paeth(a, prev[i], c)}[kind]
            out.append((v - pred) & 255)
        raw += bytes([kind]) + out
        prev = row

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0))
                 + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b""))


def test_png_reader_undoes_every_filter(tmp_path):
    import random

    rng = random.Random(23)
    for colour, bpp in ((6, 4), (2, 3)):
        width, height = 7, 10
        rows = [bytes(rng.randrange(256) for _ in range(width * bpp)) for _ in range(height)]
        path = str(tmp_path / f"t{colour}.png")
        _png(path, width, height, rows, [y % 5 for y in range(height)], colour)
        pixels = screenshot.read_png(path)
        assert (pixels.width, pixels.height) == (width, height)
        for y in range(height):
            for x in range(width):
                assert pixels.rgb(x, y) == tuple(rows[y][x * bpp:x * bpp + 3]), (colour, x, y)
    with pytest.raises(IndexError):
        pixels.rgb(width, 0)
    (tmp_path / "x.png").write_bytes(b"GIF89a")
    with pytest.raises(ValueError, match="not a PNG"):
        screenshot.read_png(str(tmp_path / "x.png"))


def test_without_graphviz_the_report_says_so_and_is_otherwise_complete(map_reports, monkeypatch, tmp_path):
    page, _expect, topo = map_reports[("lab", "faulted")]
    rep = json.load(open(os.path.join(os.path.dirname(page), "report.json"), encoding="utf-8"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` on this PATH
    page = report.render_html(rep, [report.history_entry(rep)], topo)
    assert "the map could not be drawn" in page and "apt-get install graphviz" in page
    assert "<svg" in page  # the trend chart is still there
    assert 'id="findings-220103"' in page and "Cities and counties" in page
