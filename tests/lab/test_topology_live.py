"""``jincai topology --live`` on the live lab: the routers' OSPF adjacencies drawn on the WAN map.

On the converged lab every WAN link is drawn up; a link cut by failure injection (``jincai lab link
down 220100 220103``: the cable pulled) is drawn down, the other links stay up, and the link is drawn
up again once it is restored (``jincai lab link up``), with every site LAN back in every router's table.
"""

import subprocess
import time

import pytest

from conftest import JINCAI, LAB_INVENTORY, hostvars, inventory, jincai_lab, wait_routes_converged
from jincai.topology import svg

pytestmark = pytest.mark.lab

CITY, COUNTY = "220100", "220103"
SEGMENT = f"wan-{CITY}-{COUNTY}"


def _live(path):
    """Run ``jincai topology --live`` into ``path``; return (result, {segment: up|down|unknown})."""
    res = subprocess.run([JINCAI, "topology", "-i", LAB_INVENTORY, "--live", "-o", str(path)],
                         capture_output=True, text=True, timeout=180, check=False)
    return res, svg.read_map(path.read_text(encoding="utf-8")).link_states() if path.exists() else {}


def _wait_for(path, predicate, deadline_s=90):
    """Poll --live until ``predicate(states)`` holds (OSPF needs its dead interval to notice a cut)."""
    end = time.monotonic() + deadline_s
    while True:
        res, states = _live(path)
        if predicate(states) or time.monotonic() > end:
            return res, states
        time.sleep(3)


def test_every_link_is_up_on_the_converged_lab(lab_up, tmp_path):
    res, states = _wait_for(tmp_path / "live.svg", lambda s: s and set(s.values()) == {"up"})
    assert res.returncode == 0, res.stderr
    wan = {i["segment"] for h in inventory()["routers"]["hosts"] for i in hostvars(h)["jincai_interfaces"]
           if i["role"] == "uplink"}
    assert set(states) == wan and set(states.values()) == {"up"}, states


def test_a_cut_link_is_drawn_down_then_up_again(lab_up, tmp_path):
    res = jincai_lab("link", "down", CITY, COUNTY, timeout=60)
    assert res.returncode == 0, res.stderr
    try:
        res, states = _wait_for(tmp_path / "cut.svg", lambda s: s.get(SEGMENT) == "down")
        assert states.get(SEGMENT) == "down", (res.stderr, states)
        assert {seg: st for seg, st in states.items() if seg != SEGMENT and st != "up"} == {}
    finally:
        restored = jincai_lab("link", "up", CITY, COUNTY, timeout=60)
        # the cut withdrew routes: every site LAN back in every router's table before the next test
        missing = wait_routes_converged(90)
    assert restored.returncode == 0, restored.stderr
    _res, states = _wait_for(tmp_path / "back.svg", lambda s: s.get(SEGMENT) == "up")
    assert states.get(SEGMENT) == "up", states
    assert not missing, f"site LANs missing from routing tables 90 s after the link came back: {missing}"
