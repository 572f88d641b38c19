"""ARA's content shortcut (jincai.audit.content, plugins/callback/jincai_ara.py ``_load_result``).

What ARA records must not depend on it: on generated plain data it equals ARA's own conversion value
for value and key order for key order; it refuses what it does not claim to convert; and two real
runs of a playbook with facts, diffs, loops, failures, warnings and ``no_log``, one with the shortcut
and one without (``JINCAI_ARA_CONTENT=ara``), leave the same records in their stores.
"""

import hashlib
import inspect
import json
import os
import re
import subprocess
import sys

import pytest
from ansible.parsing.ajson import AnsibleJSONEncoder
from ansible.vars.clean import module_response_deepcopy, strip_internal_keys
from hypothesis import given, settings
from hypothesis import strategies as st

from jincai.audit import journal
from jincai.audit.content import plain_content

sys.path.insert(0, os.path.dirname(__file__))
from test_audit_journal import _snapshot  # noqa: E402 - the store snapshot the journal's proof uses

BIN = os.path.dirname(sys.executable)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: sha256 of ara_default.CallbackModule._load_result's source (ara 1.8.0): the shortcut answers the
#: helpers that method calls (module_response_deepcopy, strip_internal_keys, json.dumps/loads) for
#: one call; a new ARA must be read again before this digest changes
LOAD_RESULT_SHA256 = "651b4124624d82bb20a42c9597db1fd6478459358753b49cc42950cd8b115ef5"


def aras(result):
    """ARA 1.8.0's own conversion of a result into its record's content."""
    results = strip_internal_keys(module_response_deepcopy(result))
    try:
        text = json.dumps(results, cls=AnsibleJSONEncoder, ensure_ascii=False, sort_keys=True)
    except TypeError:
        text = json.dumps(results, cls=AnsibleJSONEncoder, ensure_ascii=False, sort_keys=False)
    return json.loads(text)


KEYS = st.one_of(st.text(max_size=8), st.sampled_from(["_ansible_no_log", "_ansible_item_label", "changed",
                                                        "_ansible_verbose_always", "ansible_facts", "diff"]))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12))
PLAIN = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(KEYS, inner, max_size=5)), max_leaves=30)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(KEYS, PLAIN, max_size=6))
def test_plain_results_convert_exactly_as_aras_round_trip(result):
    fast = plain_content(result)
    assert fast is not None
    slow = aras(result)
    assert fast == slow
    assert json.dumps(fast, ensure_ascii=False) == json.dumps(slow, ensure_ascii=False)  # key order too


def test_internal_keys_go_at_every_level_and_the_input_is_untouched():
    result = {"changed": True, "_ansible_no_log": False, "results": [{"item": "a", "_ansible_item_label": "a",
                                                                       "diff": {"_ansible_x": 1, "after": "x"}}]}
    before = json.dumps(result)
    assert plain_content(result) == {"changed": True, "results": [{"diff": {"after": "x"}, "item": "a"}]}
    assert json.dumps(result) == before


@pytest.mark.parametrize("value", [
    ("a", "b"),  # a tuple: ARA's strip does not enter it
    {1: "int key"},  # JSON turns the key into "1"
    {"a", "b"},
    b"bytes",
])
def test_what_is_not_plain_data_takes_aras_path(value):
    assert plain_content({"changed": False, "value": value}) is None


def test_tagged_values_take_aras_path():
    from ansible._internal._datatag._tags import Origin
    from ansible.module_utils._internal._datatag import AnsibleTagHelper

    tagged = AnsibleTagHelper.tag("from a template", (Origin(description="unit"),))
    assert type(tagged) is not str
    assert plain_content({"msg": tagged}) is None
    assert plain_content({"msg": "plain"}) == {"msg": "plain"}


def test_aras_load_result_is_the_one_the_shortcut_was_written_for():
    from ara.plugins.callback import ara_default

    source = inspect.getsource(ara_default.CallbackModule._load_result)
    for call in ("strip_internal_keys(module_response_deepcopy(result._result))", "json.dumps(results, cls=",
                 "results = json.loads(jsonified)"):
        assert call in source, call
    assert hashlib.sha256(source.encode()).hexdigest() == LOAD_RESULT_SHA256


PLAYBOOK = """
- name: Content shortcut
  hosts: all
  gather_facts: false
  tasks:
    - name: Gather the platform facts (not the clock's, which differ between the two runs)
      ansible.builtin.setup:
        gather_subset: ["!all", "!min", platform]
    - name: Write the motd
      ansible.builtin.copy:
        content: "welcome to {{ inventory_hostname }}\\n"
        dest: "{{ out }}/{{ inventory_hostname }}.motd"
        mode: "0644"
    - name: Set a fact
      ansible.builtin.set_fact:
        content_fact: "{{ inventory_hostname | upper }}"
    - name: Show it
      ansible.builtin.debug:
        var: content_fact
    - name: Lines
      ansible.builtin.lineinfile:
        path: "{{ out }}/{{ inventory_hostname }}.lines"
        line: "{{ item }}"
        create: true
        mode: "0644"
      loop: [a, b]
    - name: A failure ignored
      ansible.builtin.command: "false"
      changed_when: false
      ignore_errors: true
    - name: A warning and a deprecation
      unit_warns:
    - name: Hidden
      ansible.builtin.debug:
        msg: "{{ content_secret }}"
      no_log: true
"""
SECRET = "content-secret-8b1d"
WARNS = """#!/usr/bin/python
from ansible.module_utils.basic import AnsibleModule

module = AnsibleModule(argument_spec={})
module.warn("a unit warning")
module.deprecate("a unit deprecation", version="9.99", collection_name="ansible.builtin")
module.exit_json(changed=False, numbers=[1, 2.5, None, True])
"""


def test_a_real_run_records_the_same_with_and_without_the_shortcut(tmp_path):
    inv = tmp_path / "cnet"
    inv.mkdir()
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    (inv / "hosts.yml").write_text(json.dumps({"all": {"children": {
        "site_220102": {"hosts": {"220102-app1": local, "220102-app2": local}}}}}))
    book = tmp_path / "play.yml"
    book.write_text(PLAYBOOK)
    (tmp_path / "library").mkdir()
    (tmp_path / "library" / "unit_warns.py").write_text(WARNS)
    snaps, outputs = {}, {}
    for mode in ("shortcut", "ara"):
        store = tmp_path / mode
        out = f"{store}-out"
        os.makedirs(out)
        env = {"ANSIBLE_CALLBACKS_ENABLED": "jincai_timer,jincai_ara", "JINCAI_ARA_DIR": str(store),
               "JINCAI_COMMIT": "c0ffee", "JINCAI_ARA_IMPORT": "wait"}
        if mode == "ara":
            env["JINCAI_ARA_CONTENT"] = "ara"
        # a plain ansible-playbook: its -vv output shows the callback's count of plain results
        res = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-vv", "--diff", "-i", str(inv), str(book),
                              "-e", f"out={out}", "-e", f"content_secret={SECRET}"], capture_output=True, text=True,
                             cwd=str(tmp_path), check=False, timeout=600,
                             env={**{k: v for k, v in os.environ.items() if not k.startswith("ARA_")}, **env,
                                  "ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg")})
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
        assert not journal.pending(str(store / journal.DIR_NAME))
        snaps[mode], outputs[mode] = _snapshot(str(store)), res.stdout
    # the shortcut took most results, and none with the switch off
    assert "16 results recorded, 0 of them plain" in outputs["ara"]
    counted = re.search(r"jincai_ara: (\d+) results recorded, (\d+) of them plain", outputs["shortcut"])
    assert counted, outputs["shortcut"][-2000:]
    assert int(counted.group(1)) == 16 and int(counted.group(2)) == 16, counted.group(0)  # all plain, facts too
    for key in snaps["ara"]:
        assert snaps["shortcut"][key] == snaps["ara"][key], key
    facts = [h for h in snaps["shortcut"]["hosts"] if "ansible_system" in h or "ansible_fqdn" in h]
    assert facts, "the setup task's facts reached the hosts"
    blob = "\n".join(r[5] for r in snaps["shortcut"]["results"])
    assert SECRET not in blob and "the output has been hidden" in blob
