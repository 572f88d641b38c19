"""The IPsec proposals of every tunnel jincai configures, read from jincai/data/ipsec.yml (their one definition).

The inventory plugin sets them on group ``all`` as ``jincai_ipsec`` (:func:`ansible_vars`); the
vpn_concentrator and vpn_client roles' defaults read them, and so does the connection of a unit's
bundle (:mod:`jincai.pki.bundle` renders the vpn_client role's template).
"""

import functools
import os
import re

import yaml

from jincai import DATA_DIR

POLICY_FILE = os.path.join(DATA_DIR, "ipsec.yml")
KEYS = ("ike_proposals", "esp_proposals")
#: One strongSwan proposal list: algorithm keywords joined by '-', proposals by ','.
PROPOSALS_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*(,[a-z0-9]+(-[a-z0-9]+)*)*$")


@functools.lru_cache(maxsize=1)
def policy():
    """``{ike_proposals, esp_proposals}`` (checked: both present, each a strongSwan proposal list)."""
    with open(POLICY_FILE, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    bad = [k for k in KEYS if not isinstance(data.get(k), str) or not PROPOSALS_RE.match(data[k])]
    if bad or set(data) != set(KEYS):
        raise ValueError(f"{POLICY_FILE}: exactly {', '.join(KEYS)}, each a strongSwan proposal list "
                         f"(found {sorted(data)}; not a proposal list: {bad})")
    return data


def ansible_vars():
    """``{"jincai_ipsec": {ike_proposals, esp_proposals}}``."""
    return {"jincai_ipsec": dict(policy())}
