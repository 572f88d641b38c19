"""The HTML report renders in headless Chromium (Debian package ``chromium``): screenshot + DOM."""

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
