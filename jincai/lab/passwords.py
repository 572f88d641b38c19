"""Passwords for lab tests that the password policy roles/accounts deploys accepts.

A test that gives a person a temporary password (``chpasswd`` goes through PAM, and pam_pwquality
runs with ``enforce_for_root``) must choose one the deployed policy takes: :func:`policy` reads the
role's own variables (its defaults, overridden by the host's inventory variables, as Ansible does),
:func:`generate` draws a random password that satisfies them and :func:`problems` says what a
password breaks. tests/unit/test_lab_passwords.py renders the role's pwquality.conf and holds both
to it, so a stricter policy in the role is a stricter generator here, never a guess in a test.
"""

import os
import secrets
import string

import yaml

from jincai import ROOT

ROLE_DEFAULTS = os.path.join(ROOT, "roles", "accounts", "defaults", "main.yml")
#: pam_pwquality settings the role sets from variables (accounts_pwquality_<name>).
SETTINGS = ("minlen", "minclass", "maxrepeat", "dictcheck")
#: Symbols a generated password uses: none that a shell, ``echo``, ``chpasswd`` (``user:password``),
#: sudo's prompt or Ansible's templating (``{{``, ``{%``) could read as anything but itself.
SYMBOLS = "!#%+,-.=@^_~"
CLASSES = (string.ascii_uppercase, string.ascii_lowercase, string.digits, SYMBOLS)
#: cracklib refuses passwords with fewer different characters than this, whatever the dictionary.
MIN_DIFFERENT = 5


def policy(hostvars=None):
    """The pam_pwquality settings roles/accounts deploys on a host: {minlen, minclass, maxrepeat, dictcheck}.

    ``hostvars``: the host's inventory variables (an accounts_pwquality_* there overrides the default)."""
    with open(ROLE_DEFAULTS, encoding="utf-8") as fh:
        defaults = yaml.safe_load(fh)
    hv = hostvars or {}
    return {name: hv.get(f"accounts_pwquality_{name}", defaults[f"accounts_pwquality_{name}"]) for name in SETTINGS}


def _run_length(password):
    """Length of the longest run of one character."""
    longest = run = 0
    for i, char in enumerate(password):
        run = run + 1 if i and char == password[i - 1] else 1
        longest = max(longest, run)
    return longest


def _sequential(password, length=3):
    """True when ``length`` characters in a row step by +1 or -1 (abc, 321): cracklib calls that systematic."""
    codes = [ord(c) for c in password.lower()]
    for i in range(len(codes) - length + 1):
        steps = {codes[j + 1] - codes[j] for j in range(i, i + length - 1)}
        if steps in ({1}, {-1}):
            return True
    return False


def problems(password, pol, user=""):
    """What ``password`` breaks of the policy ``pol`` (see :func:`policy`) for ``user``; [] when none.

    The role's pwquality.conf gives every class a credit of -1 (one of each is required, whatever
    minclass says); the dictionary check cannot be run here, so a password must also stay clear of
    what cracklib refuses without one (few different characters, runs like abc)."""
    out = []
    if len(password) < int(pol["minlen"]):
        out.append(f"shorter than {pol['minlen']}")
    missing = [name for name, chars in zip(("upper", "lower", "digit", "symbol"), CLASSES)
               if not any(c in chars for c in password)]
    if missing:
        out.append("no " + ", ".join(missing))
    present = sum(any(c in chars for c in password) for chars in CLASSES)
    if present < int(pol["minclass"]):
        out.append(f"{present} classes, fewer than {pol['minclass']}")
    if int(pol["maxrepeat"]) and _run_length(password) > int(pol["maxrepeat"]):
        out.append(f"more than {pol['maxrepeat']} equal characters in a row")
    if any(c not in "".join(CLASSES) for c in password):
        out.append("a character outside " + SYMBOLS + " and letters and digits")
    if user and len(user) >= 3 and (user.lower() in password.lower() or user.lower()[::-1] in password.lower()):
        out.append(f"contains the user name {user}")
    if len(set(password)) < MIN_DIFFERENT:
        out.append(f"fewer than {MIN_DIFFERENT} different characters")
    if _sequential(password):
        out.append("three characters in sequence")
    return out


def generate(pol, user="", rng=None):
    """A random password ``pol`` accepts for ``user`` (at least 16 characters, one of each class, no
    character twice in a row)."""
    rng = rng or secrets.SystemRandom()
    length = max(int(pol["minlen"]) + 4, 16)
    alphabet = "".join(CLASSES)
    while True:
        chars = [rng.choice(chars) for chars in CLASSES]
        chars += [rng.choice(alphabet) for _ in range(length - len(chars))]
        rng.shuffle(chars)
        password = "".join(chars)
        if _run_length(password) == 1 and not problems(password, pol, user):
            return password
