"""``jincai compliance --waves``: the waves of a scope and the merge of their records (jincai.run.waves,
jincai.compliance.collect_in_waves). The whole-twin run itself is proven by tests/province."""

import json
import os

import pytest

from jincai import ROOT, compliance
from jincai.run import waves as waves_mod
from jincai.source import inventory


@pytest.fixture(scope="module")
def lab_inv():
    return inventory.build(os.path.join(ROOT, "inventories", "lab"))


def test_waves_of_a_scope_keep_only_its_hosts_province_first(lab_inv):
    every = waves_mod.waves(lab_inv)
    assert every[0][0] == "province"
    assert sorted(h for _, hs in every for h in hs) == sorted(lab_inv["_meta"]["hostvars"])
    scope = ["220102-app1", "220000-svc", "220100-rtr"]
    got = waves_mod.waves(lab_inv, scope)
    assert got == [("province", ["220000-svc"]), ("city 220100 and its counties", ["220100-rtr", "220102-app1"])]


def test_a_scope_without_the_province_starts_with_a_city(lab_inv):
    got = waves_mod.waves(lab_inv, ["220102-rtr"])
    assert got == [("city 220100 and its counties", ["220102-rtr"])]


def test_records_of_waves_merge_as_one_run():
    a = {"check_mode": True, "records": [{"host": "h1", "status": "changed"}], "stats": {"h1": {"ok": 3}},
         "host_seconds": {"h1": 1.5}}
    b = {"check_mode": True, "records": [{"host": "h2", "status": "ok"}], "stats": {"h2": {"ok": 4}},
         "host_seconds": {"h2": 2.0}}
    got = waves_mod.merge_records([a, None, b])
    assert got["check_mode"] is True
    assert [r["host"] for r in got["records"]] == ["h1", "h2"]
    assert got["stats"] == {"h1": {"ok": 3}, "h2": {"ok": 4}} and got["host_seconds"] == {"h1": 1.5, "h2": 2.0}


def test_the_worst_wave_decides_the_merged_rc_and_its_tail_is_kept():
    waves = [{"drift": {"rc": 0, "seconds": 10, "recap": {"a": {}}, "tail": "ok 1"}},
             {"drift": {"rc": 1, "seconds": 5, "recap": {"b": {}}, "tail": "ERROR: syntax"}},
             {"drift": {"rc": 4, "seconds": 7, "recap": {"c": {}}, "tail": "unreachable"}}]
    got = compliance.merge_runs(waves)["drift"]
    assert got["rc"] == 1 and got["tail"] == "ERROR: syntax"  # a run that failed outranks an unreachable host
    assert got["seconds"] == 22 and sorted(got["recap"]) == ["a", "b", "c"]
    ok = compliance.merge_runs([{"collect": {"rc": 0, "seconds": 1}}, {"collect": {"rc": 4, "seconds": 1, "tail": "u"}}])
    assert ok["collect"]["rc"] == 4 and ok["collect"]["tail"] == "u"


def test_collect_in_waves_runs_each_wave_and_writes_one_merged_raw_dir(lab_inv, tmp_path, monkeypatch):
    calls = []

    def fake_collect(inventory_dir, limit, extra_vars, raw_dir, skip_drift=False, **_fast):
        hosts = limit.split(",")
        calls.append(hosts)
        for h in hosts:  # what compliance.yml's collector writes: one document per host in facts/
            with open(os.path.join(raw_dir, "facts", f"{h}.json"), "w", encoding="utf-8") as fh:
                json.dump({"host": h}, fh)
        for key in ("collect", "drift"):
            with open(os.path.join(raw_dir, f"{key}.json"), "w", encoding="utf-8") as fh:
                json.dump({"check_mode": key == "drift", "records": [{"host": h} for h in hosts],
                           "stats": {h: {"ok": 1} for h in hosts}, "host_seconds": {}}, fh)
        return {"collect": {"rc": 0, "seconds": 1}, "drift": {"rc": 0, "seconds": 2}}

    monkeypatch.setattr(compliance, "collect", fake_collect)
    scope, limit = compliance.resolve_scope(lab_inv, "220100")
    raw = tmp_path / "raw"
    runs = compliance.collect_in_waves(lab_inv, "inv", limit, [], str(raw), log=lambda m: None)
    assert calls == [sorted(limit.split(","))]  # one city: one wave
    assert runs["drift"]["seconds"] == 2
    facts = compliance._load_facts(str(raw / "facts"))  # pylint: disable=protected-access
    assert set(scope) <= set(facts)
    with open(raw / "drift.json", encoding="utf-8") as fh:
        assert {r["host"] for r in json.load(fh)["records"]} == set(limit.split(","))

    calls.clear()
    compliance.collect_in_waves(lab_inv, "inv", None, [], str(tmp_path / "raw2"), log=lambda m: None)
    assert len(calls) == len(waves_mod.waves(lab_inv)) >= 2 and "220000-svc" in calls[0]


def _slice(base, hosts, drift_hosts=(), rc=0):
    raw = base / "raw"
    (raw / "facts").mkdir(parents=True)
    for h in hosts:
        (raw / "facts" / f"{h}.json").write_text(json.dumps({"host": h}))
    (raw / "drift.json").write_text(json.dumps(
        {"check_mode": True, "records": [{"host": h, "status": "changed", "task": "t"} for h in drift_hosts],
         "stats": {h: {"ok": 1} for h in hosts}, "host_seconds": {h: 1.0 for h in hosts}}))
    (raw / "runs.json").write_text(json.dumps({"drift": {"rc": rc, "seconds": 3, "tail": f"rc {rc}"}}))
    return str(base)


def test_slices_of_a_nightly_run_merge_into_one_raw_dir(tmp_path):
    a = _slice(tmp_path / "s1", ["h1", "h2"], drift_hosts=["h2"])
    b = _slice(tmp_path / "s2", ["h3"], rc=4)
    raw = compliance.merge_slices([os.path.join(a, "raw"), os.path.join(b, "raw")], str(tmp_path / "out" / "raw"))
    assert sorted(os.listdir(os.path.join(raw, "facts"))) == ["h1.json", "h2.json", "h3.json"]
    with open(os.path.join(raw, "drift.json"), encoding="utf-8") as fh:
        drift = json.load(fh)
    assert [r["host"] for r in drift["records"]] == ["h2"] and sorted(drift["stats"]) == ["h1", "h2", "h3"]
    with open(os.path.join(raw, "runs.json"), encoding="utf-8") as fh:
        assert json.load(fh)["drift"] == {"rc": 4, "seconds": 6, "recap": {}, "tail": "rc 4"}


def test_overlapping_slices_are_refused_naming_the_host(tmp_path):
    a = _slice(tmp_path / "s1", ["h1"])
    b = _slice(tmp_path / "s2", ["h1"])
    with pytest.raises(compliance.UsageError, match="h1.json is in two slices"):
        compliance.merge_slices([os.path.join(a, "raw"), os.path.join(b, "raw")], str(tmp_path / "o"))


def test_compliance_from_two_slices_reports_both_and_contacts_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(compliance, "collect", lambda *a, **k: pytest.fail("contacted"))
    lab = os.path.join(ROOT, "inventories", "lab")
    a = _slice(tmp_path / "s1", ["220202-app1"], drift_hosts=["220202-app1"])
    b = _slice(tmp_path / "s2", ["220202-rtr"])
    out = tmp_path / "rep"
    rc = compliance.main(["-i", lab, "--limit", "220202", "--from", a, "--from", b, "-o", str(out), "-q",
                          "--skip-drift"])
    rep = json.loads((out / "report.json").read_text())
    assert rc in (1, 2) and os.path.isdir(out / "raw" / "facts")
    assert rep["hosts"]["220202-app1"]["is_drifted"] is True
    assert rep["hosts"]["220202-rtr"]["is_drifted"] is False
