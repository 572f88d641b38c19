"""The units' private keys at rest: one ansible-vault file per registry batch (issue 16).

A batch of units onboarded together (:meth:`jincai.pki.registry.UnitRegistry.add_many`, one ``add``,
the keys of one ``renew --rekey``) writes one vault, ``<registry>/keys/<batch id>.vault``: the
ansible-vault encryption (random salt, PBKDF2, AES-256-CTR, HMAC; what ``ansible-vault encrypt``
writes) of a JSON object ``{code: key PEM}``. One PBKDF2 per batch instead of one per unit; no salt is
ever reused. Each unit's registry entry names the vault that holds its key: ``key_vault``, relative to
the registry directory. A registry written by an older jincai has one vault per unit,
``units/<code>.key.vault`` (the PEM itself) and entries without ``key_vault``: read as before.

A revoked, moved or re-keyed unit's key leaves its vault when the registry is saved (the batch's vault
rewritten without it, removed when empty; an older per-unit vault removed), in the same save that
records the revocation in ``units.json``. roles/vpn_client decrypts the vault with Ansible's
``unvault`` lookup and picks the unit's key with the ``vpn_unit_key`` filter (:func:`pick`).
"""

import json
import os
import secrets
import time

from jincai.pki import PkiError

FIELD = "key_vault"  # the registry entry's field naming the vault of its key


def legacy(code):
    """The per-unit vault of an older registry, relative to the registry directory."""
    return os.path.join("units", f"{code}.key.vault")


def key_vault(entry):
    """Where the unit's key is, relative to its registry directory: the entry's ``key_vault``, an older
    entry's :func:`legacy` vault, or None for a unit enrolled by CSR (the province holds no key)."""
    if entry.get("enrolment") == "csr":
        return None
    return entry.get(FIELD) or legacy(entry["code"])


def pick(plaintext, code, where="key vault"):
    """The key PEM (text) of unit ``code`` in a decrypted key vault: a batch's JSON object, or an older
    per-unit vault's PEM. Errors name ``where`` (the vault file)."""
    text = plaintext.decode() if isinstance(plaintext, bytes) else str(plaintext)
    if text.lstrip().startswith("-----BEGIN"):
        return text  # an older per-unit vault holds the key itself
    return _lookup(_parse(text, where), code, where)


def _parse(text, where):
    try:
        found = json.loads(text)
    except ValueError as exc:
        raise PkiError(f"{where}: neither a key batch (a JSON object code -> key PEM) nor a key (PEM): "
                       f"{exc.msg}") from None
    if not isinstance(found, dict):
        raise PkiError(f"{where}: not a key batch (a JSON object code -> key PEM)")
    return found


def _lookup(found, code, where):
    if code not in found:
        raise PkiError(f"{where}: holds no key of unit {code} (units.json: {FIELD} names this file; fix: "
                       f"restore the vault from the backup, or `jincai pki renew {code} --rekey`)")
    return found[code]


class Keys:
    """The key vaults of one registry directory, during one command.

    Each vault is decrypted at most once (:meth:`get` keeps what it read, :meth:`write` what it wrote),
    so a batch's bundles and renewals cost no PBKDF2 per unit; :meth:`forget` marks keys to remove and
    :meth:`flush` rewrites their vaults."""

    def __init__(self, reg_dir, vault):
        self.dir, self.vault = reg_dir, vault
        self._maps = {}  # vault (relative) -> {code: PEM text}
        self._dropped = {}  # vault (relative) -> codes whose keys leave it at flush

    def write(self, keys):
        """Write one vault holding ``keys`` (``{code: PEM bytes or text}``); return its path relative to
        the registry directory (the entries' ``key_vault``), or None when ``keys`` is empty."""
        if not keys:
            return None
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        rel = os.path.join("keys", f"{stamp}-{secrets.token_hex(4)}.vault")
        while os.path.exists(os.path.join(self.dir, rel)):
            rel = os.path.join("keys", f"{stamp}-{secrets.token_hex(4)}.vault")
        found = {c: k.decode() if isinstance(k, bytes) else k for c, k in keys.items()}
        self._store(rel, found)
        self._maps[rel] = found
        return rel

    def get(self, entry):
        """The key PEM (bytes) of a registry entry, from the vault its entry names."""
        rel, code = key_vault(entry), entry["code"]
        if rel is None:
            raise PkiError(f"unit {code}: enrolled by CSR, the province holds no key of it")
        path = os.path.join(self.dir, rel)
        if rel not in self._maps:
            self._maps[rel] = self._read(rel, code)
        return _lookup(self._maps[rel], code, path).encode()

    def forget(self, entry):
        """Mark the unit's key to leave its vault at the next :meth:`flush` (revoked, moved, re-keyed)."""
        rel = key_vault(entry)
        if rel is not None:
            self._dropped.setdefault(rel, set()).add(entry["code"])

    def flush(self):
        """Rewrite every vault that lost keys since the last flush (one encryption each), remove the
        vaults left empty and the older per-unit ones; return the vaults changed."""
        changed = []
        for rel, codes in sorted(self._dropped.items()):
            path = os.path.join(self.dir, rel)
            if not os.path.exists(path):
                continue
            older = os.path.dirname(rel) == "units"  # an older per-unit vault: the one key it holds goes
            if not older and rel not in self._maps:
                self._maps[rel] = self._read(rel, None)
            left = {} if older else {c: k for c, k in self._maps[rel].items() if c not in codes}
            if left:
                self._store(rel, left)
            else:
                os.unlink(path)
            self._maps[rel] = left
            changed.append(rel)
        self._dropped = {}
        return changed

    def _read(self, rel, code):
        """Decrypt the vault ``rel``: ``{code: PEM text}`` (an older per-unit vault: of ``code``)."""
        path = os.path.join(self.dir, rel)
        try:
            with open(path, "rb") as fh:
                text = self.vault.decrypt(fh.read(), path).decode()
        except FileNotFoundError:
            raise PkiError(f"{path}: missing: the vault of unit {code}'s key (units.json {FIELD}: {rel}; fix: "
                           f"restore it from the backup, or `jincai pki renew {code} --rekey`)") from None
        if text.lstrip().startswith("-----BEGIN"):
            return {code: text}
        return _parse(text, path)

    def _store(self, rel, found):
        from jincai.pki import store  # noqa: PLC0415 - keeps the role's filter plugin (placement) light

        data = json.dumps(found, indent=0, sort_keys=True).encode()
        store.write(os.path.join(self.dir, rel), self.vault.encrypt(data), 0o600)
