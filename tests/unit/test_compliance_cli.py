"""``jincai compliance`` command line: scope resolution, bad input before any contact, re-evaluation
of a raw run directory, and the jincai_drift callback in a real (local, check-mode) Ansible run."""

import json
import os
import subprocess
import sys

import pytest

import jincai.compliance as comp
from jincai import ROOT
from jincai.source import inventory as invmod

LAB = os.path.join(ROOT, "inventories", "lab")


@pytest.fixture(scope="module")
def lab_inventory():
    return invmod.build(LAB)


def test_scope_is_routers_and_machine_room(lab_inventory):
    scope, limit = comp.resolve_scope(lab_inventory, None)
    assert limit is None
    assert "220000-rtr" in scope and "220202-app1" in scope and "220000-svc" in scope
    assert not any(h.startswith("bu") for h in scope)  # budget-unit clients are not managed hosts
    assert "220000-pbc" not in scope


def test_limit_by_tier_site_and_host(lab_inventory):
    assert comp.resolve_scope(lab_inventory, "220202")[0] == ["220202-app1", "220202-rtr"]
    county, _ = comp.resolve_scope(lab_inventory, "county")
    assert county and all(lab_inventory["_meta"]["hostvars"][h]["jincai_tier"] == "county" for h in county)
    assert comp.resolve_scope(lab_inventory, "220202,220000-svc")[0] == ["220000-svc", "220202-app1", "220202-rtr"]


def test_unknown_limit_fails_before_any_contact(monkeypatch, capsys):
    def boom(*a, **k):
        raise AssertionError("a host was about to be contacted")

    monkeypatch.setattr(comp, "collect", boom)
    assert comp.main(["-i", LAB, "--limit", "229999", "-o", "/tmp/jincai-compliance-unused"]) == 2
    assert "--limit 229999: not a tier" in capsys.readouterr().err


def test_invalid_inventory_fails_before_any_contact(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(comp, "collect", lambda *a, **k: pytest.fail("contacted"))
    assert comp.main(["-i", str(tmp_path / "nope"), "-o", str(tmp_path / "out")]) == 2
    assert "nothing was contacted" in capsys.readouterr().err


def test_from_reevaluates_a_raw_run_without_contacting(tmp_path, lab_inventory, monkeypatch):
    from tests.unit.test_compliance import CTX, ROUTER_CTX, ROUTER_OK, server_facts

    monkeypatch.setattr(comp, "collect", lambda *a, **k: pytest.fail("contacted"))
    raw = tmp_path / "earlier" / "raw"
    (raw / "facts").mkdir(parents=True)
    (raw / "facts" / "220202-app1.json").write_text(json.dumps(
        {"host": "220202-app1", "kind": "server", "context": CTX, "facts": server_facts()}))
    (raw / "facts" / "220202-rtr.json").write_text(json.dumps(
        {"host": "220202-rtr", "kind": "router", "context": ROUTER_CTX,
         "config": ROUTER_OK.replace("seq 15 deny any", "seq 14 permit any\naccess-list vty-mgmt seq 15 deny any")}))
    (raw / "collect.json").write_text(json.dumps({"records": [], "stats": {}}))
    (raw / "drift.json").write_text(json.dumps({"records": [], "stats": {}}))
    (raw / "runs.json").write_text(json.dumps({"collect": {"rc": 0, "seconds": 1}, "drift": {"rc": 0, "seconds": 1}}))
    out = tmp_path / "reports" / "again"
    rc = comp.main(["-i", LAB, "--limit", "220202", "--from", str(tmp_path / "earlier"), "-o", str(out), "-q"])
    assert rc == 1
    rep = json.loads((out / "report.json").read_text())
    assert [(f["host"], f["control"]) for f in rep["findings"]] == [("220202-rtr", "L3-ABS1-07")]
    assert (tmp_path / "reports" / "history.json").exists()
    assert (out / "junit.xml").exists() and (out / "report.html").exists()
    # the WAN map of the whole lab: the site in --limit coloured by its result and linked, the others unchecked
    from jincai.topology import state, svg

    page = (out / "report.html").read_text(encoding="utf-8")
    drawn = svg.read_map(page[page.index("<svg"):page.index("</svg>") + len("</svg>")])
    assert len(drawn.sites) == 6
    county = drawn.sites["220202"]
    assert county.fill == state.SITE_STATES["findings"][0] and county.href == "#site-220202"
    unchecked = {c for c, s in drawn.sites.items() if "unchecked" in s.classes and not s.href}
    assert unchecked == set(drawn.sites) - {"220202"}


def test_failed_playbook_run_is_exit_2(tmp_path, monkeypatch):
    monkeypatch.setattr(comp, "collect", lambda *a, **k: pytest.fail("contacted"))
    raw = tmp_path / "earlier" / "raw"
    (raw / "facts").mkdir(parents=True)
    (raw / "runs.json").write_text(json.dumps({"collect": {"rc": 1, "seconds": 1, "tail": "ERROR! syntax"}}))
    rc = comp.main(["-i", LAB, "--limit", "220202", "--from", str(tmp_path / "earlier"),
                    "-o", str(tmp_path / "o"), "-q"])
    assert rc == 2


PLAYBOOK = """---
- name: Local drift probe
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - probe
"""
ROLE_TASKS = """---
- name: Render the probe file
  ansible.builtin.copy:
    content: "wanted = 1\\n"
    dest: "{{ probe_dest }}"
    mode: "0600"
- name: Leave the other file alone
  ansible.builtin.copy:
    content: "same\\n"
    dest: "{{ probe_same }}"
    mode: "0600"
- name: Collect facts as JSON
  ansible.builtin.command:
    argv: [echo, '{"host": "localhost", "kind": "server", "facts": {"x": 1}}']
  vars:
    compliance_capture: server
  changed_when: false
  check_mode: false
"""


def test_drift_callback_records_changed_tasks_with_role_and_diff_and_captures_facts(tmp_path):
    (tmp_path / "roles" / "probe" / "tasks").mkdir(parents=True)
    (tmp_path / "roles" / "probe" / "tasks" / "main.yml").write_text(ROLE_TASKS)
    (tmp_path / "pb.yml").write_text(PLAYBOOK)
    dest, same = tmp_path / "probe.conf", tmp_path / "same.conf"
    dest.write_text("wanted = 2\n")
    same.write_text("same\n")
    os.chmod(same, 0o600)
    out = tmp_path / "drift.json"
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
               ANSIBLE_CALLBACK_PLUGINS=os.path.join(ROOT, "plugins", "callback"),
               ANSIBLE_CALLBACKS_ENABLED="jincai_drift", JINCAI_DRIFT_FILE=str(out),
               JINCAI_FACTS_DIR=str(tmp_path / "facts"),
               ANSIBLE_ROLES_PATH=str(tmp_path / "roles"), ANSIBLE_INVENTORY_ENABLED="ansible.builtin.host_list",
               ANSIBLE_LOCALHOST_WARNING="false")
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}",
                           "--check", "--diff", str(tmp_path / "pb.yml"), "-e", f"probe_dest={dest}",
                           "-e", f"probe_same={same}"], cwd=str(tmp_path), env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    assert doc["check_mode"] is True
    assert [(r["host"], r["role"], r["task"], r["status"]) for r in doc["records"]] == [
        ("localhost", "probe", "Render the probe file", "changed")]
    assert "-wanted = 2" in doc["records"][0]["diff"] and "+wanted = 1" in doc["records"][0]["diff"]
    assert dest.read_text() == "wanted = 2\n"  # check mode changed nothing
    assert doc["stats"]["localhost"]["changed"] == 1
    assert "localhost" in doc["host_seconds"]
    captured = json.loads((tmp_path / "facts" / "localhost.json").read_text())
    assert captured == {"host": "localhost", "kind": "server", "facts": {"x": 1}}
