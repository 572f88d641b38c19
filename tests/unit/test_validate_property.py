"""Property: `jincai validate` never raises. Any YAML an operator can write ends in messages, and
whatever it accepts derive() can build (so the inventory plugin never crashes on a passed source).

Hypothesis writes structurally random YAML: whole files of random data, and the real lab source
with random subtrees replaced by random data (which reaches the deep checks a random file never
gets past). Each example goes through the real loader (sourceyaml, as text) and validate.check.
"""

import copy
import glob
import os

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jincai import ROOT
from jincai.source import model, schema, validate

LAB = os.path.join(ROOT, "inventories", "lab")
BASE = model.load(LAB)
NETWORK_FILE = os.path.join(BASE.source_dir, "network.yml")
SITE_FILES = sorted(glob.glob(os.path.join(BASE.source_dir, "sites", "*.yml")))

# the words of the source itself make random data hit real keys, enumerations and codes
WORDS = sorted({"network", "sites", "plan", "management", "mode", "out_of_band", "inband", "code", "tier",
                "province", "city", "county", "parent", "router", "platform", "frr", "hosts", "function",
                "address", "mgmt", "uplinks", "peer", "subnet", "role", "primary", "backup", "technicians",
                "user", "key", "key_file", "state", "present", "absent", "220000", "220100", "220102",
                "198.18.0.0/16", "198.18.17.0/24", "198.19.0.1", "10.22.0.0/16", "budget", "port", "tiers",
                "applications", "admins", "twin_of", "vpn_concentrator", "services", "app_server"})
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-70000, 70000), st.sampled_from(WORDS),
                    st.text(max_size=8), st.floats(allow_nan=False, allow_infinity=False))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(st.sampled_from(WORDS), st.integers(0, 3)), inner, max_size=4)), max_leaves=12)

PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _paths(node, prefix=()):
    """Every path to a value inside ``node``."""
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


def _graft(doc, path, value):
    """``doc`` with the value at ``path`` replaced by ``value`` (the whole doc for the empty path)."""
    if not path:
        return value
    doc = copy.deepcopy(doc)
    node = doc
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return doc


def _validate_texts(texts):
    """Load the lab source with ``texts`` ({path: YAML text}) instead of its files; validate it."""
    src = model.load(LAB, overrides=texts)
    findings = validate.check(src)  # must not raise
    assert all(str(f) for f in findings)
    if not [f for f in findings if f.severity == "error"]:
        model.derive(src)  # what validate accepts, derive builds
    return findings


@PROPERTY
@given(data=VALUES, which=st.integers(0, len(SITE_FILES)))
def test_random_files_end_in_messages(data, which):
    path = NETWORK_FILE if which == len(SITE_FILES) else SITE_FILES[which]
    _validate_texts({path: yaml.safe_dump(data, allow_unicode=True)})


@PROPERTY
@given(st.data())
def test_random_subtrees_of_the_real_source_end_in_messages(data):
    with open(NETWORK_FILE, encoding="utf-8") as fh:
        network = yaml.safe_load(fh)
    files = {NETWORK_FILE: network}
    for p in SITE_FILES:
        with open(p, encoding="utf-8") as fh:
            files[p] = yaml.safe_load(fh)
    path = data.draw(st.sampled_from(sorted(files)))
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(_paths(files[path])[1:]))
        files[path] = _graft(files[path], where, data.draw(VALUES))
    _validate_texts({path: yaml.safe_dump(files[path], allow_unicode=True)})


def test_the_unchanged_texts_are_valid():
    """The harness itself: the lab source dumped and reloaded as text validates without a finding."""
    texts = {}
    for p in [NETWORK_FILE, *SITE_FILES]:
        with open(p, encoding="utf-8") as fh:
            texts[p] = yaml.safe_dump(yaml.safe_load(fh), allow_unicode=True)
    assert _validate_texts(texts) == []


SCHEMA_CASES = [("network", (lab,)) for lab in (False, True)] + [
    ("site", (oob, lab)) for oob in (False, True) for lab in (False, True)]


@PROPERTY
@given(st.data())
def test_the_fast_path_agrees_with_jsonschema(data):
    """schema.conforms (the fast yes/no used on every inventory parse) answers as jsonschema does, on
    random values and on real entries with random subtrees grafted in."""
    which, args = data.draw(st.sampled_from(SCHEMA_CASES))
    real = BASE.network if which == "network" else data.draw(st.sampled_from([s for _, s in BASE.sites]))
    value = real
    for _ in range(data.draw(st.integers(0, 3))):
        value = _graft(value, data.draw(st.sampled_from(_paths(value))), data.draw(VALUES))
    validator = schema._validator(which, *args)
    assert schema.conforms(validator.schema, value) == validator.is_valid(value)
