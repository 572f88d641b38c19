"""The TLS policy of every endpoint jincai configures, read from jincai/data/tls.yml (its one definition).

The inventory plugin sets it on group ``all`` as ``jincai_tls`` (:func:`ansible_vars`); the apps and
postgres roles render it; compliance (:func:`is_aead`) and the lab tests judge endpoints against it.
"""

import functools
import os
import re

import yaml

from jincai import DATA_DIR

POLICY_FILE = os.path.join(DATA_DIR, "tls.yml")
#: OpenSSL suite names of authenticated encryption (GCM, CCM, ChaCha20-Poly1305); TLS 1.3's are all AEAD.
AEAD_RE = re.compile(r"(GCM|CCM|CHACHA20)")


@functools.lru_cache(maxsize=1)
def policy():
    """The policy: protocols, tls12_ciphers, tls13_ciphersuites (checked: TLS 1.2 suites are AEAD)."""
    with open(POLICY_FILE, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    weak = [c for c in data["tls12_ciphers"] if not is_aead(c)]
    if weak or not set(data["protocols"]) <= {"TLSv1.2", "TLSv1.3"}:
        raise ValueError(f"{POLICY_FILE}: only TLSv1.2/TLSv1.3 and AEAD suites belong here (found {weak or data['protocols']})")
    return data


def is_aead(cipher):
    """True for a suite name (OpenSSL or IANA) that is AEAD; keywords such as HIGH or ALL are not: False."""
    return bool(AEAD_RE.search(cipher.upper()))


def ansible_vars():
    """``{"jincai_tls": {protocols, tls12_ciphers, tls13_ciphersuites, openssl_ciphers, openssl_ciphersuites}}``:
    the lists and the colon-joined strings nginx, PostgreSQL and OpenSSL take."""
    p = policy()
    return {"jincai_tls": {**p, "openssl_ciphers": ":".join(p["tls12_ciphers"]),
                           "openssl_ciphersuites": ":".join(p["tls13_ciphersuites"])}}
