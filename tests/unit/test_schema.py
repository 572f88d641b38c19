"""The declarative schema (jincai/source/schema.py), the strict YAML loader, and the docs generated from them."""

import os
import re

import yaml

from jincai import ROOT
from jincai.source import model, schema, sourceyaml, validate

LAB = os.path.join(ROOT, "inventories", "lab")
DOC = os.path.join(ROOT, "docs", "source-of-truth.md")


def test_docs_reference_is_the_schema():
    """docs/source-of-truth.md holds the reference tables generated from the schema, verbatim."""
    with open(DOC, encoding="utf-8") as fh:
        text = fh.read()
    section = re.search(r"<!-- schema:begin -->\n(.*)<!-- schema:end -->", text, re.S)
    assert section, "the generated section is missing"
    assert section.group(1) == schema.reference(), "regenerate it: .venv/bin/python -m jincai.source.schema"


def test_every_schema_key_is_in_the_reference():
    ref = schema.reference()
    for root in (schema.network_schema(True), schema.site_schema(True, True)):
        for path in schema.documented_keys(root):
            assert f".{path[-1]}`" in ref or f"`{path[-1]}`" in ref, path


def test_generic_names_agree_with_the_accounts_role():
    """validate refuses the shared names the accounts role refuses on hosts (one list in two places)."""
    with open(os.path.join(ROOT, "roles", "accounts", "defaults", "main.yml"), encoding="utf-8") as fh:
        role = yaml.safe_load(fh)["accounts_forbidden_names"]
    assert tuple(role) == schema.GENERIC_ACCOUNTS


def test_the_automation_logins_are_reserved():
    for path in ("inventories/lab/group_vars/all/connection.yml", "inventories/jilin/group_vars/all/connection.yml"):
        with open(os.path.join(ROOT, path), encoding="utf-8") as fh:
            assert yaml.safe_load(fh)["ansible_user"] in schema.SYSTEM_ACCOUNTS
    with open(os.path.join(ROOT, "roles", "bootstrap_first_login", "defaults", "main.yml"), encoding="utf-8") as fh:
        assert yaml.safe_load(fh)["bootstrap_first_login_netops_user"] in schema.SYSTEM_ACCOUNTS


def test_loader_reports_duplicates_with_lines_and_keeps_vault_and_merge_keys():
    text = ("a: &base {x: 1}\nb:\n  <<: *base\n  x: 2\nc: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n"
            "  3031\nd: [1, 2]\na: 3\n")
    data, dups, marks = sourceyaml.parse(text)
    assert data["b"] == {"x": 2} and isinstance(data["c"], sourceyaml.VaultValue)
    assert dups == [("a", 9, 1)]  # merge keys may override; a key written twice may not
    assert sourceyaml.line_of(marks, data, ["d", 1]) == 8
    assert sourceyaml.line_of(marks, data, ["b", "x"]) == 4
    assert sourceyaml.line_of(marks, data, ["nope"]) is None


def _lab_twin():
    """The lab source turned into a province twin: a twin_of router, a /16 management network."""
    src = model.load(LAB)
    src.plan["management"].update({"network": "198.19.0.0/16", "control_node": "198.19.255.254"})
    src.site_map()["220102"]["router"]["twin_of"] = "huawei_vrp"
    return src


def test_lab_twin_fields_are_valid():
    src = _lab_twin()
    assert [f for f in validate.check(src) if f.severity == "error"] == []
    assert model.derive(src).hosts["220102-rtr"]["jincai_router"]["twin_of"] == "huawei_vrp"


def test_lab_management_outside_198_19_is_refused():
    src = _lab_twin()
    src.plan["management"].update({"network": "10.99.0.0/16", "control_node": "10.99.0.1"})
    assert any(f.field == "plan.management.network" and "outside 198.18.0.0/15" in f.message
               for f in validate.check(src))


def test_problems_name_path_message_and_fix():
    site = {"code": 220102, "tier": "county", "technicians": [None, {"user": "t1", "name": "x", "key_file": "a/b"}]}
    probs = {schema.field_name(p): (m, f) for p, m, f in schema.problems("site", site, False, False)}
    assert probs["code"] == ("must be a string, got int 220102", 'write a string; quote it, e.g. "220102"')
    assert probs["technicians[0]"][0] == "empty entry (a '-' with nothing after it)"
    assert probs["technicians[1].key_file"][0] == "must be a plain key name (no path)"
    assert probs["parent"] == ("missing", "add 'parent:' (a string)")


SCHEMAS = [schema.network_schema(lab) for lab in (False, True)] + [
    schema.site_schema(oob, lab) for oob in (False, True) for lab in (False, True)]


def _keywords(node, out):
    if isinstance(node, dict):
        for key, sub in node.items():
            if not key.startswith("x-"):
                out.add(key)
            if key in ("properties",):
                for s in sub.values():
                    _keywords(s, out)
            elif key not in ("enum", "const", "required", "pattern", "format", "type") and not key.startswith("x-"):
                _keywords(sub, out)
    elif isinstance(node, list):
        for sub in node:
            _keywords(sub, out)
    return out


def test_the_fast_path_implements_every_keyword_the_schemas_use():
    used = set()
    for s in SCHEMAS:
        _keywords(s, used)
    assert used <= schema.KEYWORDS, used - schema.KEYWORDS


def test_the_schemas_are_valid_json_schemas():
    for s in SCHEMAS:
        schema.validator_class().check_schema(s)


def test_key_files_that_exist_must_decode_and_not_be_shared(tmp_path):
    src = model.load(LAB)
    src.network["keys_dir"] = str(tmp_path)
    good = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGO7vUeWbhEkT38fWYwwMEjlqmbTREkHhraEYxhDMg9F a@b"
    (tmp_path / "t220102a.pub").write_text("ssh-ed25519 AAAAnotakey a@b\n")
    (tmp_path / "t220103a.pub").write_text(good + "\n")
    (tmp_path / "t220103b.pub").write_text(good + "\n")
    errors = {(f.site, f.field): f.message for f in validate.check(src) if f.severity == "error"}
    assert errors[("220102", "technicians[0].key_file")].endswith("is not an SSH public key: key data is not valid base64")
    assert errors[("220103", "technicians[1].key")] == "same key as site 220103 t220103a (a shared key is a shared account)"
    assert len(errors) == 2  # missing key files are not an error here (the lab creates them)


def test_a_secret_appended_twice_to_the_vault_is_reported(tmp_path):
    import shutil

    inv = tmp_path / "lab"
    shutil.copytree(LAB, inv)
    vault = inv / "group_vars" / "all" / "vault.yml"
    text = vault.read_text()
    first = text.split("\n", 1)[1] if text.startswith("---") else text
    vault.write_text(text + first)
    fs = [f for f in validate.findings(str(inv)) if "duplicate key" in f.message]
    assert fs and all(f.file.endswith("vault.yml") and f.line for f in fs)
