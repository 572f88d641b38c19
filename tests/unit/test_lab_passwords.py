"""Lab test passwords (jincai.lab.passwords) follow the policy roles/accounts deploys: its pwquality.conf is
rendered from the role's defaults (or a host's overrides) and judged here independently of the generator."""

import os
import random
import re

import jinja2
import pytest
import yaml
from ansible.plugins.filter.core import FilterModule

from jincai import ROOT
from jincai.lab import image, passwords

ROLE = os.path.join(ROOT, "roles", "accounts")
#: Lab people (inventories/lab/source): administrators of each role and county technicians.
USERS = ["jcadmin", "jcsecadm", "jcaudit", "t220102a", "t220102b", "root"]


def defaults():
    with open(os.path.join(ROLE, "defaults", "main.yml"), encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def rendered_policy(overrides=None):
    """{setting: value} of the pwquality.conf the role renders (bare words such as enforce_for_root -> '')."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(ROLE, "templates")), trim_blocks=True,
                             undefined=jinja2.StrictUndefined)
    env.filters.update(FilterModule().filters())
    text = env.get_template("pwquality.conf.j2").render(**{**defaults(), **(overrides or {})})
    conf = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            key, _, value = line.partition("=")
            conf[key.strip()] = value.strip()
    return conf


def accepts(conf, password, user):
    """Whether pam_pwquality with ``conf`` takes ``password`` for ``user`` (the rules the role sets; the
    dictionary itself cannot be consulted here)."""
    classes = {"dcredit": r"[0-9]", "ucredit": r"[A-Z]", "lcredit": r"[a-z]", "ocredit": r"[^A-Za-z0-9]"}
    counts = {k: len(re.findall(p, password)) for k, p in classes.items()}
    bonus = sum(min(counts[k], int(conf.get(k, 0))) for k in classes if int(conf.get(k, 0)) > 0)
    if len(password) + bonus < int(conf["minlen"]):
        return False
    if any(int(conf.get(k, 0)) < 0 and counts[k] < -int(conf[k]) for k in classes):
        return False
    if sum(1 for n in counts.values() if n) < int(conf.get("minclass", 0)):
        return False
    repeat = int(conf.get("maxrepeat", 0))
    if repeat and re.search(r"(.)\1{%d}" % repeat, password):
        return False
    return not (conf.get("usercheck", "1") != "0" and user.lower() in password.lower())


def test_the_policy_is_the_one_the_role_renders():
    conf = rendered_policy()
    pol = passwords.policy()
    assert {k: str(int(v)) for k, v in pol.items()} == {k: conf[k] for k in passwords.SETTINGS}
    assert "enforce_for_root" in conf  # chpasswd as root is judged too: lab tests must pass the policy


@pytest.mark.parametrize("overrides", [{}, {"accounts_pwquality_minlen": 24, "accounts_pwquality_maxrepeat": 1},
                                       {"accounts_pwquality_minclass": 3, "accounts_pwquality_maxrepeat": 0}])
def test_generated_passwords_pass_the_rendered_policy(overrides):
    conf = rendered_policy(overrides)
    pol = passwords.policy(overrides)
    rng = random.Random(20261202)
    for i in range(400):
        user = USERS[i % len(USERS)]
        pw = passwords.generate(pol, user, rng=rng)
        assert accepts(conf, pw, user), (pw, conf)
        assert passwords.problems(pw, pol, user) == []
        assert not set(pw) & set(":\\'\"`$ {}"), pw  # chpasswd's user:password, echo, shells, Jinja


def test_problems_name_what_a_password_breaks():
    pol = passwords.policy()
    assert passwords.problems("Ab1!", pol) == [f"shorter than {pol['minlen']}", "fewer than 5 different characters"]
    assert "no digit, symbol" in passwords.problems("Abcdefghxyzq", pol)
    assert f"more than {pol['maxrepeat']} equal characters in a row" in passwords.problems("Jc-aaaa5678!A7x", pol)
    assert "three characters in sequence" in passwords.problems("Abcdefg1!", pol)
    assert "contains the user name jcaudit" in passwords.problems("xJCAUDITx1!Q", pol, "jcaudit")
    assert passwords.problems("Xk7#mQ2%vLp9", pol) == []


def test_the_dictionary_check_has_its_dictionary_on_every_host_and_in_the_lab_image():
    """pam_pwquality's dictcheck without cracklib's dictionary refuses every new password ("error loading
    dictionary"): libcrack2 only recommends cracklib-runtime, so the baseline installs it, and the lab image
    (whose hosts reach no mirror) has it."""
    assert defaults()["accounts_pwquality_dictcheck"] is True
    with open(os.path.join(ROOT, "roles", "base", "defaults", "main.yml"), encoding="utf-8") as fh:
        base = yaml.safe_load(fh)["base_packages"]
    assert "cracklib-runtime" in base
    assert set(base) <= set(image.packages()), "lab hosts install nothing from a mirror: add these to packages.txt"
    assert rendered_policy()["dictpath"] == "/var/cache/cracklib/cracklib_dict"
