"""Pure tests of the baseline's pre-flight filters (no lab needed).

These are the checks that stand between a typo in the source of truth and a locked-out county.
"""

import importlib.util
import os

import pytest

from jincai import ROOT


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ACC = _load("roles/accounts/filter_plugins/accounts_checks.py", "accounts_checks")
NET = _load("plugins/filter/jincai_net.py", "jincai_net")

GOOD = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFTnYXzvH7sIBd46oX0Wt+68xQfYZWlq93PIFdiJCC6k t@lab"
GOOD2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPTIZ4bbzdaDKTaPF1A32rs1Vd3xrrLwYF2hUba7d0DR u@lab"
RSA_HEADER_AS_ED = "ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 x"


def person(user="t1", key=GOOD, state="present", name="张伟"):
    return {"user": user, "name": name, "key": key, "state": state}


def test_valid_people_pass():
    assert ACC.accounts_errors([person(), person("t2", GOOD2)], ["admin"], "jincai") == []


@pytest.mark.parametrize("key, words", [
    ("", "no SSH public key"),
    (None, "no SSH public key"),
    ("ssh-ed25519", "is not '<type> <base64>"),
    ("ssh-dss AAAAB3NzaC1kc3M= x", "key type 'ssh-dss'"),
    ("ssh-ed25519 not*base64 x", "not valid base64"),
    (RSA_HEADER_AS_ED, "does not hold a ssh-ed25519 key"),
    (GOOD.replace("AAAAIFTn", "AAAAIFT"), ""),
])
def test_broken_keys_are_refused(key, words):
    errors = ACC.accounts_errors([person(key=key)])
    assert errors and words in errors[0] and "could not log in" in errors[0]


def test_absent_people_need_no_key():
    assert ACC.accounts_errors([person(key="", state="absent")]) == []


def test_shared_names_keys_duplicates_and_the_automation_account():
    errors = ACC.accounts_errors(
        [person("admin"), person("t2", GOOD), person("t2", GOOD2), person("jincai", GOOD2), person("Bad Name")],
        ["admin"], "jincai")
    text = "\n".join(errors)
    assert "user admin: shared or generic" in text
    assert "user t2: same key as admin" in text
    assert "user t2: listed twice" in text
    assert "user jincai: this is the automation account" in text
    assert "entry 4: user 'Bad Name' is not a valid login name" in text


def test_unknown_state_and_missing_name():
    errors = ACC.accounts_errors([person(state="gone"), person("t2", GOOD2, name="")])
    assert "user t1: state 'gone' must be present or absent" in errors
    assert "user t2: no person's name" in errors


@pytest.mark.parametrize("mod", [NET])
def test_controller_address_containment(mod):
    nets = ["198.19.0.0/24", "198.18.17.0/24"]
    assert mod.address_in_networks("198.19.0.1", nets)
    assert not mod.address_in_networks("198.18.18.10", nets)
    assert not mod.address_in_networks("not-an-address", nets)
    assert mod.ssh_client_address("198.19.0.1 51234 198.19.0.25 22") == "198.19.0.1"
    assert mod.ssh_client_address("") == ""
    assert mod.bad_networks(["198.19.0.0/24", "10.0.0.0/33", "x"]) == ["10.0.0.0/33", "x"]
