"""The router role refuses bad input before any router is contacted.

Runs ansible-playbook on the lab inventory (which only reads files) with extra vars that break the
policy; the play must stop at the assertion, naming host, site and field, and never reach the task
that opens a netmiko session.
"""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PUSH_TASK = "Bring the router's running config to the intended config"


def _play(extra):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
                           "playbooks/routers.yml", "-i", "inventories/lab", "--check",
                           "-e", json.dumps(extra)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_a_party_asking_for_a_service_its_kind_may_not_reach_is_refused_before_contact():
    parties = [{"name": "220000-pbc", "kind": "peoples_bank", "address": "198.18.1.11",
                "apps": ["treasury", "nontax"], "targets": []}]
    res = _play({"jincai_parties": parties})
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert ("(site 220000): parties[220000-pbc].apps: 'nontax' is not allowed for kind peoples_bank "
            "by the application catalogue (allowed: treasury)") in " ".join(out.split())
    assert PUSH_TASK not in out, "a router was contacted despite invalid input"


def test_an_unknown_party_kind_and_platform_are_refused():
    res = _play({"jincai_parties": [{"name": "x-1", "kind": "insurer", "address": "198.18.1.99", "apps": ["treasury"]}],
                 "jincai_router": {"platform": "junos", "hostname": "r", "loopback": "198.18.254.9",
                                   "router_id": "198.18.254.9", "ospf": {"area": 0, "hello": 1, "dead": 4}}})
    out = " ".join((res.stdout + res.stderr).split())
    assert res.returncode != 0
    assert "parties[x-1].apps: 'treasury' is not allowed for kind insurer by the application catalogue (allowed: none)" in out
    assert "jincai_router.platform: 'junos' has no template" in out
    assert PUSH_TASK not in out


def test_a_bad_router_that_is_not_the_first_is_named_and_no_router_is_contacted(tmp_path):
    """The check runs once for the play's routers: it must still read every router's own variables
    (here only 220202-rtr, the last of the lab's, has an unknown platform, from a second inventory source)."""
    extra_inv = tmp_path / "bad.yml"
    extra_inv.write_text(json.dumps({"all": {"hosts": {"220202-rtr": {"jincai_router": {
        "platform": "junos", "hostname": "r", "loopback": "198.18.254.9", "router_id": "198.18.254.9",
        "ospf": {"area": 0, "hello": 1, "dead": 4}}}}}}))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    res = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "playbooks/routers.yml",
                          "-i", "inventories/lab", "-i", str(extra_inv), "--check"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    out = " ".join((res.stdout + res.stderr).split())
    assert res.returncode != 0
    assert "220202-rtr (site 220202): jincai_router.platform: 'junos' has no template" in out, out[-2000:]
    assert "220000-rtr (site" not in out  # the good routers are not blamed
    assert PUSH_TASK not in out
