"""The province PKI: one CA for every part of jincai, and the budget units' certificates it issues.

One CA serves nginx TLS on the app servers, the VPN concentrators and the ~3,000 budget units' VPN
certificates. Its state lives outside the checkout, one directory per network
(``/var/lib/jincai/pki/<network.name>``, :mod:`jincai.paths`), so every checkout driving a network
uses the same CA. Layout of the PKI directory::

    ca.crt  ca.key.vault            the province CA (EC P-256, 10 years); key ansible-vault encrypted
    issued/<name>/cert.pem key.pem  a leaf per name (EC P-256, ~2 years), SANs: DNS names and IPs
    crl.pem crl.der                 the published CRL (crlNumber grows at each publication)
    db.json                         serials issued through the registries, their status
    vpn/units.json                  the budget-unit registry: code, name, site, home, virtual IP, identity,
                                    status, enrolment, key_vault (vpn/<city>/... for a city's concentrator)
    vpn/units/<code>.crt            one certificate per budget unit
    vpn/keys/<batch>.vault          the keys of one onboarding batch, one ansible-vault file (JSON code ->
                                    key PEM; an older registry's vpn/units/<code>.key.vault still read)
    vpn/bundles/<code>.tar.gz       the unit technician's client bundle (mode 0600)

The CA key and the units' keys are encrypted with the Ansible vault password; roles/vpn_client decrypts
a unit's batch vault on the control node (the unvault lookup) and installs the unit's key. Everything is idempotent: an existing CA is kept; a leaf is
re-issued only when it is missing, was signed by another CA, has other SANs or usage, or expires
within 30 days; an active unit is never re-issued by ``add``/``sync``.

Owns, one module per concern:

* :mod:`~jincai.pki.store`: the PKI directory (where, atomic writes, the lock, an older layout refused);
* :mod:`~jincai.pki.vault`: the vault password and ansible-vault encryption of the keys;
* :mod:`~jincai.pki.keys`: the units' keys at rest, one vault per batch (written, read, removed);
* :mod:`~jincai.pki.ca`: the CA, leaves (``issue``), CSR checks;
* :mod:`~jincai.pki.vpn`: the VPN plans of a source, one per concentrator;
* :mod:`~jincai.pki.registry`: the budget-unit registry of a concentrator, enrolment, renewal, the CRL, ``sync``;
* :mod:`~jincai.pki.bundle`: a unit's client bundle (swanctl config, certificates, README);
* :mod:`~jincai.pki.csvimport`: units from a CSV file;
* :mod:`~jincai.pki.placement`: which concentrator serves a unit now (roles/vpn_client and ``jincai verify``);
* :mod:`~jincai.pki.batch`: batches and moves across every concentrator;
* :mod:`~jincai.pki.cli`: ``jincai pki ...`` / ``python -m jincai.pki ...``.

May import: :mod:`jincai`, :mod:`jincai.paths`, :mod:`jincai.source` (the typed model's concentrators),
:mod:`jincai.policy`, :mod:`jincai.run` (the vault id of the default inventory, ``crl --push``).
"""


class PkiError(Exception):
    """A PKI operation failed; the message says what to fix."""
