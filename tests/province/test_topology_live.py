"""``jincai topology --live`` on the province twin: all 92 WAN links of the 70 sites drawn from the
routers' OSPF adjacencies; a backup link cut by failure injection is drawn down, then up again."""

import time

from conftest import group, hostvars, jincai
from jincai.topology import svg


def _states(twin, path):
    """Draw the twin's live map into ``path``; return (result, {segment: up|down|unknown})."""
    res = jincai("topology", "-i", twin, "--live", "-o", str(path), timeout=600)
    return res, svg.read_map(path.read_text(encoding="utf-8")).link_states() if path.exists() else {}


def _until(twin, path, predicate, seconds=120):
    end = time.monotonic() + seconds
    res, states = _states(twin, path)
    while not predicate(states) and time.monotonic() < end:
        time.sleep(3)
        res, states = _states(twin, path)
    return res, states


def test_every_twin_link_is_drawn_up_and_a_cut_backup_down(twin, tmp_path):
    wan = {i["segment"] for r in group("routers") for i in hostvars(r)["jincai_interfaces"] if i["role"] == "uplink"}
    res, states = _until(twin, tmp_path / "all.svg", lambda s: set(s.values()) == {"up"})
    assert res.returncode == 0, res.stderr
    assert set(states) == wan and set(states.values()) == {"up"}, {s: v for s, v in states.items() if v != "up"}
    backup = sorted(s for s in wan if s.endswith("-backup"))[0]
    _wan, parent, child, _b = backup.split("-")
    cut = jincai("lab", "link", "down", parent, child, "--backup", timeout=60)
    assert cut.returncode == 0, cut.stderr
    try:
        _res, states = _until(twin, tmp_path / "cut.svg", lambda s: s.get(backup) == "down")
        assert states.get(backup) == "down"
        assert {s: v for s, v in states.items() if s != backup and v != "up"} == {}
    finally:
        restored = jincai("lab", "link", "up", parent, child, "--backup", timeout=60)
    assert restored.returncode == 0, restored.stderr
    _res, states = _until(twin, tmp_path / "back.svg", lambda s: s.get(backup) == "up")
    assert states.get(backup) == "up"
