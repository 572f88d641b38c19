"""jincai converge's decision (issue 14), offline: which hosts site.yml runs on and why, from the fast
path's plan (manifest digests) and the collection's read; bad input refused before anything is
contacted. tests/lab/test_converge.py proves it on the live lab."""

import os

import pytest

from jincai import ROOT, compliance, converge
from jincai.source import inventory as invmod

LAB = os.path.join(ROOT, "inventories", "lab")

MANIFEST = {
    "files": {"/etc/issue.net": {"check": ["exists", "sha256", "mode"], "role": "base", "task": "Render",
                                 "module": "template", "expected": {"exists": True, "sha256": "aa", "mode": "0644"}}},
    "packages": {"chrony": {"installed": True, "role": "chrony", "task": "Install", "module": "apt"}},
    "services": {"chrony.service": {"state": "started", "enabled": True, "role": "chrony", "task": "Keep",
                                    "module": "systemd_service"}},
    "uncovered": {"command": 3, "lineinfile": 1},
}
FACTS = {"manifest_files": {"/etc/issue.net": {"exists": True, "sha256": "aa", "mode": "0644"}},
         "packages": ["chrony"], "services": {"chrony.service": {"active": "active", "enabled": "enabled"}}}
ROUTER = {"router": {"platform": "frr", "lines": ["hostname r1", "router ospf", "router ospf > ospf router-id 198.18.0.1"]}}


def _doc(**facts):
    return {"kind": "server", "facts": dict(FACTS, **facts)}


def test_a_host_runs_only_when_its_intent_changed_it_drifted_or_it_gave_no_answer():
    fast = {"manifests": {"a": MANIFEST, "b": MANIFEST, "c": MANIFEST, "d": MANIFEST},
            "fallback": {"e": "no manifest (no successful site.yml has recorded this host)",
                         "f": "host vars changed since the manifest was written"}}
    collected = {
        "a": _doc(),
        "b": _doc(manifest_files={"/etc/issue.net": {"exists": True, "sha256": "bb", "mode": "0644"}}),
        "c": _doc(services={"chrony.service": {"active": "inactive", "enabled": "enabled"}}, packages=[]),
        # d: no answer
    }
    run = converge.decide(["a", "b", "c", "d", "e", "f", "vpnclient"], ["a", "b", "c", "d", "e", "f"], fast, collected)
    assert sorted(run) == ["b", "c", "d", "e", "f", "vpnclient"]
    assert run["b"] == "drifted: base: file /etc/issue.net (sha256)"
    assert run["c"] == "drifted: chrony: package chrony (installed) and 1 more"
    assert run["d"] == converge.NO_READ_REASON
    assert run["e"].startswith("no manifest") and run["f"].startswith("host vars changed")
    assert run["vpnclient"] == converge.OUTSIDE_REASON
    assert converge.not_compared(fast, ["a"]) == {"command": 3, "lineinfile": 1}
    assert converge.not_compared(fast, ["a", "b"]) == {"command": 6, "lineinfile": 2}


def test_a_router_runs_when_a_line_was_added_or_removed_by_hand():
    fast = {"manifests": {"r1": ROUTER, "r2": ROUTER, "r3": ROUTER}, "fallback": {}}
    same = "hostname r1\nrouter ospf\n ospf router-id 198.18.0.1\n"
    collected = {"r1": {"kind": "router", "config": same},
                 "r2": {"kind": "router", "config": same + "access-list x seq 5 permit any\n"},
                 "r3": {"kind": "router", "config": "hostname r1\nrouter ospf\n"}}
    run = converge.decide(["r1", "r2", "r3"], ["r1", "r2", "r3"], fast, collected)
    assert sorted(run) == ["r2", "r3"]
    assert run["r2"] == "drifted: router: router running-config (added lines)"
    assert run["r3"] == "drifted: router: router running-config (removed lines)"


def test_the_hosts_are_site_yml_s_and_the_scope_is_the_fast_paths():
    inv = invmod.build(LAB)
    hosts, scope = converge.managed_hosts(inv, "")
    assert {"bu0001", "bu0002", "tw0001"} <= set(hosts) and not {"bu0001", "tw0001"} & set(scope)
    assert set(scope) < set(hosts) and "220102-app1" in scope
    hosts, scope = converge.managed_hosts(inv, "220102")
    assert hosts == scope == ["220102-app1", "220102-rtr"]
    with pytest.raises(compliance.UsageError, match="--limit 999999"):
        converge.managed_hosts(inv, "999999")


def test_bad_input_is_refused_before_any_host_is_contacted(tmp_path, capsys):
    assert converge.main(["-i", str(tmp_path / "nowhere"), "--plan"]) == 2
    assert "nothing was contacted" in capsys.readouterr().err
    assert converge.main(["-i", LAB, "--limit", "999999", "--plan"]) == 2
    err = capsys.readouterr().err
    assert "--limit 999999" in err and "nothing was contacted" in err


def test_waves_read_and_run_the_province_first_then_each_city_with_its_counties(twin_dir):
    inv = invmod.build(twin_dir)
    hosts, _scope = converge.managed_hosts(inv, "")
    waves = converge.batches(inv, hosts, waves=True, max_hosts=1)
    assert waves[0][0] == "province" and len(waves) == 10
    flat = [h for _label, wave in waves for h in wave]
    assert sorted(flat) == sorted(hosts) and len(flat) == len(set(flat))
    # merged while a batch holds at most 40 hosts, in the same order (the province's hosts first)
    merged = converge.batches(inv, hosts, waves=True)
    assert [h for _label, wave in merged for h in wave] == flat and 1 < len(merged) < 10
    assert all(len(wave) <= 40 for _label, wave in merged) and merged[0][0].startswith("province, city ")
    clients = [h for h in hosts if h.startswith(("bu", "tw"))]
    assert len(converge.batches(inv, clients, waves=True)) == 1 and len(clients) == 29
    assert converge.batches(inv, hosts[:3], waves=False) == [("all", sorted(hosts[:3]))]


def test_a_changing_run_on_production_needs_the_operators_flag_and_is_refused_before_any_read(capsys):
    jilin = os.path.join(ROOT, "inventories", "jilin")
    assert converge.main(["-i", jilin, "--limit", "220102"]) == 2
    err = capsys.readouterr().err
    assert "PRODUCTION network" in err and "-e jincai_allow_production=true" in err and "nothing was contacted" in err
    m, _w = invmod.build_checked(jilin)
    for ok in (["--plan"], ["--check"], ["-e", "jincai_allow_production=true"], ["-e", '{"jincai_allow_production": true}']):
        assert converge.production_refusal(m, converge.build_parser().parse_args(["-i", jilin, *ok])) == "", ok
    lab, _w = invmod.build_checked(LAB)
    assert converge.production_refusal(lab, converge.build_parser().parse_args(["-i", LAB])) == ""
