"""A small province certificate authority (the control node's CA) and certificates it issues.

One CA serves every part of jincai (nginx TLS on app servers, the VPN concentrator, the 1,040
budget units' VPN certificates). State lives outside the repository, one directory per network:
``/var/lib/jincai/pki/<network.name>`` (``/var/lib/jincai/pki/lab``, ``.../jilin``; see
:mod:`jincai.paths`), so every checkout driving a network uses the same CA. ``JINCAI_PKI_DIR``
(or ``--dir``) overrides it.

Layout of the PKI directory::

    ca.crt  ca.key.vault            the province CA (EC P-256, 10 years); key ansible-vault encrypted
    issued/<name>/cert.pem key.pem  a leaf per name (EC P-256, ~2 years), SANs: DNS names and IPs
    crl.pem crl.der                 the published CRL (crlNumber grows at each publication)
    db.json                         serials issued through the registry below, their status
    vpn/units.json                  the budget-unit registry: code, name, site, home, virtual IP, identity,
                                    status, enrolment (vpn/<city>/... for a city's concentrator)
    vpn/units/<code>.crt .key.vault one certificate and vaulted key per budget unit
    vpn/bundles/<code>.tar.gz       the unit technician's client bundle (mode 0600)

The CA key is encrypted with the Ansible vault password (``$ANSIBLE_VAULT_PASSWORD_FILE``, else
``vault_password_file`` of ansible.cfg, i.e. ``inventories/lab/vault-pass.sh`` in the lab); a
plaintext ``ca.key`` left by an older version is encrypted and removed on first use. Unit keys are
vaulted too: Ansible's copy module decrypts them on deployment.

Everything is idempotent: an existing CA is kept; a leaf is re-issued only when it is missing, was
signed by another CA, has other SANs or usage, or expires within 30 days; an active unit is never
re-issued by ``add``/``sync``.

Command line (``python -m jincai.pki ...`` or ``jincai pki ...``)::

    ca | issue NAME --san X [--client] | issue-many SPEC.json   (JSON output; --dir, --check)
    init | sync | add CODE NAME | add --csv F | import --csv F [--dry-run] | move CODE --to C [--site S]
    enrol CODE --csr F | revoke CODE.. | revoke --csv F | renew [CODE..]
    crl [--if-due] [--days N] [--push] | bundle CODE | list         (-i INVENTORY, -c CONCENTRATOR)
"""

import argparse
import configparser
import contextlib
import csv
import datetime
import fcntl
import io
import ipaddress
import json
import os
import re
import subprocess
import sys
import tarfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from jincai import ROOT, paths
from jincai.source import model

CA_NAME = "Jilin Finance Province CA"
ORG = "Jilin Provincial Department of Finance"
CA_DAYS = 3650
LEAF_DAYS = 825
RENEW_BEFORE = datetime.timedelta(days=30)
CRL_DAYS = 30
PUBLIC_KEY_TYPES = (ec.EllipticCurvePublicKey, rsa.RSAPublicKey)
CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")
REASONS = {"unspecified": x509.ReasonFlags.unspecified, "keyCompromise": x509.ReasonFlags.key_compromise,
           "superseded": x509.ReasonFlags.superseded, "affiliationChanged": x509.ReasonFlags.affiliation_changed,
           "cessationOfOperation": x509.ReasonFlags.cessation_of_operation}


class PkiError(Exception):
    """A PKI operation failed; the message says what to fix."""


def default_dir(inventory_dir=None):
    """Return the PKI directory of an inventory (default: the lab): ``$JINCAI_PKI_DIR`` or
    ``/var/lib/jincai/pki/<network.name>`` (:func:`jincai.paths.pki_dir`; the name as the source loader,
    :func:`jincai.source.model.load`, reads it: the leaf commands need no valid source)."""
    if os.environ.get(paths.PKI_ENV):
        return os.environ[paths.PKI_ENV]
    inventory_dir = inventory_dir or os.path.join(ROOT, "inventories", "lab")
    try:
        src = model.load(inventory_dir)
    except model.SourceError as exc:
        raise PkiError(str(exc)) from None
    name = src.network.get("name")
    if not name:
        raise PkiError(f"{src.network_file}: network: name: missing (fix: the PKI directory is named after it)")
    try:
        return paths.pki_dir(name)
    except ValueError as exc:
        raise PkiError(f"{src.network_file}: network: name: {exc}") from None


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def _write(path, data, mode):
    """Write bytes atomically with the given mode."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


# --------------------------------------------------------------------------------------------
# the vault: the CA key (and unit keys) are ansible-vault encrypted at rest
# --------------------------------------------------------------------------------------------

def vault_password_file():
    """Return the vault password file, where Ansible would find it: ``$ANSIBLE_VAULT_PASSWORD_FILE``,
    the first source of ``$ANSIBLE_VAULT_IDENTITY_LIST`` (``label@path``; what `make`, jincai.run and
    AWX set), ansible.cfg's ``vault_password_file``, else the default inventory's own vault id script
    (:func:`jincai.run.env.vault_identity`)."""
    path = os.environ.get("ANSIBLE_VAULT_PASSWORD_FILE")
    ids = [i.strip() for i in (os.environ.get("ANSIBLE_VAULT_IDENTITY_LIST") or "").split(",") if i.strip()]
    if not path and ids:
        path = ids[0].split("@", 1)[1] if "@" in ids[0] else ids[0]
    if not path:
        cfg = configparser.ConfigParser(interpolation=None)
        cfg.read(os.environ.get("ANSIBLE_CONFIG") or os.path.join(ROOT, "ansible.cfg"))
        path = cfg.get("defaults", "vault_password_file", fallback=None)
    if not path:
        from jincai.run import env as runenv

        ident = runenv.vault_identity(runenv.default_inventory())
        path = ident.split("@", 1)[1] if ident else None
    if not path:
        raise PkiError("no vault password file: set ANSIBLE_VAULT_IDENTITY_LIST (label@file) or "
                       "ANSIBLE_VAULT_PASSWORD_FILE (the CA key is ansible-vault encrypted)")
    return path if os.path.isabs(path) else os.path.join(ROOT, path)


def vault_password(path=None):
    """Read the vault password (an executable file is run, as ansible does)."""
    path = path or vault_password_file()
    if not os.path.exists(path):
        raise PkiError(f"{path}: vault password file missing (fix: create it or set ANSIBLE_VAULT_PASSWORD_FILE)")
    if os.access(path, os.X_OK):
        out = subprocess.run([path], check=True, capture_output=True).stdout
    else:
        with open(path, "rb") as fh:
            out = fh.read()
    secret = out.strip().splitlines()[0].strip() if out.strip() else b""
    if not secret:
        raise PkiError(f"{path}: the vault password is empty")
    return secret


class Vault:
    """ansible-vault (format 1.1, AES256) with one password; what ``ansible-vault encrypt`` writes."""

    def __init__(self, password=None):
        from ansible.parsing.vault import VaultLib, VaultSecret

        self._lib = VaultLib([("default", VaultSecret(password or vault_password()))])

    def encrypt(self, data):
        """Return the vault text of ``data`` (bytes)."""
        return self._lib.encrypt(data)

    def decrypt(self, data, where="vault"):
        """Return the plaintext of a vault text; errors name ``where``."""
        try:
            return self._lib.decrypt(data)
        except Exception as exc:  # noqa: BLE001 - ansible raises AnsibleError subclasses
            raise PkiError(f"{where}: cannot decrypt with the vault password ({exc})") from exc


_VAULTS = {}


def _vault():
    path = vault_password_file()
    if path not in _VAULTS:
        _VAULTS[path] = Vault(vault_password(path))
    return _VAULTS[path]


# --------------------------------------------------------------------------------------------
# the CA and leaves (API used by the apps role for nginx TLS)
# --------------------------------------------------------------------------------------------

def _refuse_old_layout(pki_dir):
    """Refuse to start a new CA in *pki_dir* while an older jincai's checkout-local PKI exists.

    Never mint a second CA silently: everything deployed trusts the old one. Checked before anything
    is created, so the suggested ``mv`` works as written."""
    old = os.path.join(ROOT, "build", "pki")
    if (os.path.exists(os.path.join(old, "ca.crt")) and not os.path.exists(os.path.join(pki_dir, "ca.crt"))
            and os.path.realpath(old) != os.path.realpath(pki_dir)):
        if os.path.isdir(pki_dir) and os.listdir(pki_dir):
            how = f"cp -a {old}/. {pki_dir}/ && rm -r {old}"  # "/." copies dot files (.lock) too
        elif os.path.isdir(pki_dir):
            how = f"rmdir {pki_dir} && mv {old} {pki_dir}"
        else:
            how = f"mkdir -p {os.path.dirname(pki_dir)} && mv {old} {pki_dir}"
        raise PkiError(f"{old}: a PKI from an older jincai (kept per checkout) exists, and {pki_dir} has no CA; "
                       f"move it: {how}")


def ensure_ca(pki_dir=None, check=False):
    """Create the CA in *pki_dir* unless it exists. Return ``(ca_cert_path, changed)``.

    A plaintext ``ca.key`` (older layout) is vault-encrypted into ``ca.key.vault`` and removed.
    """
    pki_dir = pki_dir or default_dir()
    crt = os.path.join(pki_dir, "ca.crt")
    vaulted, plain = os.path.join(pki_dir, "ca.key.vault"), os.path.join(pki_dir, "ca.key")
    if os.path.exists(crt) and os.path.exists(plain) and not os.path.exists(vaulted):
        if check:
            return crt, True
        with open(plain, "rb") as fh:
            _write(vaulted, _vault().encrypt(fh.read()), 0o600)
        os.unlink(plain)
        return crt, True
    if os.path.exists(crt) and os.path.exists(vaulted):
        return crt, False
    _refuse_old_layout(pki_dir)
    if check:
        return crt, True
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
                      x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write(vaulted, _vault().encrypt(_key_pem(key)), 0o600)
    _write(crt, _cert_pem(cert), 0o644)
    return crt, True


def _load_ca(pki_dir):
    with open(os.path.join(pki_dir, "ca.crt"), "rb") as fh:
        cert = x509.load_pem_x509_certificate(fh.read())
    path = os.path.join(pki_dir, "ca.key.vault")
    with open(path, "rb") as fh:
        key = serialization.load_pem_private_key(_vault().decrypt(fh.read(), path), password=None)
    return cert, key


def _general_names(sans):
    """Turn strings into x509 SANs: IP addresses become IPAddress, anything else DNSName."""
    out = []
    for san in sans:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            out.append(x509.DNSName(san))
    return out


def _leaf_ok(path, ca_cert, sans, client):
    """True when the leaf at *path* is signed by *ca_cert*, has exactly *sans*, the usage, and time left."""
    try:
        with open(os.path.join(path, "cert.pem"), "rb") as fh:
            cert = x509.load_pem_x509_certificate(fh.read())
        if not os.path.exists(os.path.join(path, "key.pem")):
            return False
        cert.verify_directly_issued_by(ca_cert)
        have = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
        eku = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except (OSError, ValueError, x509.ExtensionNotFound, Exception):  # noqa: BLE001 - any defect re-issues
        return False
    want_eku = {ExtendedKeyUsageOID.CLIENT_AUTH} if client else {ExtendedKeyUsageOID.SERVER_AUTH}
    return (have == set(_general_names(sans)) and want_eku <= eku
            and cert.not_valid_after_utc - _now() > RENEW_BEFORE)


def _sign_leaf(ca_cert, ca_key, name, sans, client, key=None, ou=None, days=LEAF_DAYS):
    """Return ``(cert, key)``: a leaf for *name* with *sans*, a new P-256 key unless *key* is given.
    *key* may be a public key (CSR enrolment: the private key stays with its owner)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    public = key if isinstance(key, PUBLIC_KEY_TYPES) else key.public_key()
    now = _now()
    eku = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [ExtendedKeyUsageOID.SERVER_AUTH]
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG)]
    if ou:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, name))
    not_after = min(now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(ca_cert.subject).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectAlternativeName(_general_names(sans)), critical=False)
            .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


def issue(name, sans, pki_dir=None, client=False, check=False):
    """Issue (or keep) the leaf *name* with *sans*. Return ``(dict of paths, changed)``.

    For a TLS server (nginx): ``issue("220000-app1", ["220000-app1.example", "198.18.0.10"])`` gives
    ``issued/220000-app1/cert.pem`` and ``key.pem`` (0600) plus the CA path.
    """
    pki_dir = pki_dir or default_dir()
    _, ca_changed = ensure_ca(pki_dir, check=check)
    path = os.path.join(pki_dir, "issued", name)
    paths = {"cert": os.path.join(path, "cert.pem"), "key": os.path.join(path, "key.pem"),
             "ca": os.path.join(pki_dir, "ca.crt")}
    if ca_changed and check:
        return paths, True
    ca_cert, ca_key = _load_ca(pki_dir)
    sans = list(dict.fromkeys(sans or [name]))
    if _leaf_ok(path, ca_cert, sans, client):
        return paths, ca_changed
    if check:
        return paths, True
    cert, key = _sign_leaf(ca_cert, ca_key, name, sans, client)
    _write(paths["key"], _key_pem(key), 0o600)
    _write(paths["cert"], _cert_pem(cert), 0o644)
    return paths, True


# --------------------------------------------------------------------------------------------
# budget units: registry, onboarding, offboarding, renewal, CRL, bundles
# --------------------------------------------------------------------------------------------

def load_csr(data, where="CSR"):
    """Load and check a unit's certificate signing request (PEM or DER bytes): the signature proves
    the sender holds the private key; EC P-256/P-384 or RSA of 3072 bits or more."""
    try:
        csr = (x509.load_pem_x509_csr(data) if data.lstrip().startswith(b"-----")
               else x509.load_der_x509_csr(data))
    except ValueError as exc:
        raise PkiError(f"{where}: csr: not a certificate signing request ({exc}) (fix: openssl req -new "
                       "-key unit.key -out unit.csr, PEM or DER)") from None
    if not csr.is_signature_valid:
        raise PkiError(f"{where}: csr: the signature does not match its key (fix: sign it with the unit's key)")
    key = csr.public_key()
    ok = ((isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in ("secp256r1", "secp384r1"))
          or (isinstance(key, rsa.RSAPublicKey) and key.key_size >= 3072))
    if not ok:
        raise PkiError(f"{where}: csr: key {type(key).__name__} "
                       f"{getattr(getattr(key, 'curve', None), 'name', getattr(key, 'key_size', ''))} is not "
                       "accepted (fix: EC P-256 or P-384, or RSA of 3072 bits or more)")
    return csr


def next_free(pool, taken, start=None):
    """The lowest host address of *pool* not in *taken* at or above *start* (an int; default the
    first host), and where the next search may start. Addresses are never given back, so everything
    below the returned cursor stays taken: a batch of n units costs O(n), not O(n^2)."""
    n = int(pool.network_address) + 1 if start is None else start
    last = int(pool.broadcast_address)  # exclusive: the broadcast address is no host
    while n < last:
        addr = str(ipaddress.IPv4Address(n))
        n += 1
        if addr not in taken:
            return addr, n
    return None, n


class UnitRegistry:
    """The budget-unit registry of the province on top of the CA.

    A unit's virtual IP comes from the plan's budget-unit pool: given by the source of truth or the
    lowest free host address, recorded at onboarding and never renumbered (a revoked unit keeps its
    address so it can never be handed to another unit by accident).
    """

    def __init__(self, vpn_plan, pki_dir=None, db=None, ca=None):
        self.dir = pki_dir or default_dir()
        self.plan = vpn_plan
        self.pool = ipaddress.ip_network(vpn_plan["pool"])
        if ca is None:
            ensure_ca(self.dir)
            ca = _load_ca(self.dir)
        self.ca_cert, self._ca_key = ca
        self.vault = _vault()
        # the certificate database is shared by every concentrator's registry (Registries passes one)
        self.db = db if db is not None else self._read_json(os.path.join(self.dir, "db.json"),
                                                            {"crl_number": 0, "certs": {}})
        doc = self._read_json(self.path("units.json"), {"units": []})
        self.units = {u["code"]: u for u in doc["units"]}
        self._taken = {u["address"] for u in self.units.values()}

    @staticmethod
    def _read_json(path, default):
        if not os.path.exists(path):
            return default
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)

    def path(self, *parts):
        """A path under this concentrator's registry directory (``<pki>/vpn/`` for the province's,
        ``<pki>/vpn/<site code>/`` for a city's)."""
        return os.path.join(self.dir, self.plan.get("registry", "vpn"), *parts)

    # ---- identities and addresses
    def identity(self, code):
        """The IKE identity of a unit (also its certificate's DNS SAN)."""
        return f"{code}.bu.{self.plan['domain']}"

    def server_identity(self):
        """The IKE identity of the concentrator."""
        return f"{self.plan['concentrator']['name']}.{self.plan['domain']}"

    def served(self, home=None, where=None):
        """What the plan says of a site this concentrator serves (its own by default): ``lan`` (the
        unit's traffic selector) and ``apps`` (its budget units' applications)."""
        home = home or self.plan["site"]
        sites = self.plan.get("served") or {self.plan["site"]: {"lan": self.plan["lan"], "apps": self.plan["apps"]}}
        if home not in sites:
            raise PkiError(f"{where or 'unit'}: site: {home} is not served by {self.plan['concentrator']['name']} "
                           f"(fix: one of {', '.join(sites)}, or the concentrator that serves {home})")
        return sites[home]

    @staticmethod
    def home(entry):
        """The unit's own site (a county for a county's unit at a city concentrator)."""
        return entry.get("home") or entry["site"]

    def _allocate(self, wanted, where):
        hosts = (self.pool.network_address, self.pool.broadcast_address)
        if wanted:
            try:
                addr = ipaddress.ip_address(wanted)
            except ValueError as exc:
                raise PkiError(f"{where}: address: {exc}") from exc
            if addr not in self.pool or addr in hosts:
                raise PkiError(f"{where}: address: {wanted} is not a host address of the pool {self.pool}")
            if str(addr) in self._taken:
                raise PkiError(f"{where}: address: {wanted} is already used by another unit")
            self._taken.add(str(addr))
            return str(addr)
        addr, self._cursor = next_free(self.pool, self._taken, getattr(self, "_cursor", None))
        if addr is None:
            raise PkiError(f"budget-unit pool {self.pool} is full ({len(self._taken)} units): enlarge it in the plan")
        self._taken.add(addr)
        return addr

    def _issue_unit(self, code, key=None):
        cert, key = _sign_leaf(self.ca_cert, self._ca_key, code, [self.identity(code)], client=True,
                               key=key, ou="budget unit")
        serial = format(cert.serial_number, "x")
        self.db["certs"][serial] = {"cn": code, "kind": "budget unit", "status": "valid",
                                    "not_after": cert.not_valid_after_utc.isoformat()}
        _write(self.path("units", f"{code}.crt"), _cert_pem(cert), 0o644)
        return serial, key

    # ---- onboarding / offboarding
    def add_many(self, rows):
        """Onboard many units (dicts with code, name, optional address/apps); return the codes added.

        Certificates are signed one by one; the keys' vault encryption (PBKDF2, the slow part) runs
        in threads.
        """
        from concurrent.futures import ThreadPoolExecutor

        pending = {}
        added = [r["code"] for r in rows
                 if self.add(r["code"], r.get("name"), r.get("address"), r.get("apps"), r.get("where"),
                             home=r.get("home"), public_key=r.get("public_key"), _keys=pending)]
        with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
            vaulted = dict(zip(pending, pool.map(self.vault.encrypt, pending.values())))
        for code, data in vaulted.items():
            _write(self.path("units", f"{code}.key.vault"), data, 0o600)
        # the bundles written next need the keys: keep them in memory for this command rather than
        # decrypting each vault again (PBKDF2: the slowest step of a batch)
        self._fresh_keys = getattr(self, "_fresh_keys", {})
        self._fresh_keys.update(pending)
        return added

    def add(self, code, name, address=None, apps=None, where=None, home=None, public_key=None, _keys=None):
        """Onboard a unit (certificate + vaulted key + registry entry); True if anything changed.

        *home* is the unit's own site (default: the concentrator's; a county it serves for a county's
        unit): its LAN and apps are what the unit reaches. An active unit is left untouched; a revoked
        unit gets a new key and certificate and keeps its address.
        """
        where = where or f"unit {code}"
        if not CODE_RE.match(code or ""):
            raise PkiError(f"{where}: code: {code!r} is not valid (fix: letters, digits and '-', at most 63)")
        home = home or self.plan["site"]
        served = self.served(home, where)
        entry = self.units.get(code)
        if entry and entry["status"] == "active":
            return False
        addr = entry["address"] if entry else self._allocate(address, where)
        serial, key = self._issue_unit(code, public_key)
        if public_key is not None:  # CSR enrolment: the province holds no key of this unit
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path("units", f"{code}.key.vault"))
        elif _keys is not None:
            _keys[code] = _key_pem(key)  # add_many encrypts them in parallel
        else:
            _write(self.path("units", f"{code}.key.vault"), self.vault.encrypt(_key_pem(key)), 0o600)
        self.units[code] = {"code": code, "name": name or code, "site": self.plan["site"], "home": home,
                            "address": addr, "identity": self.identity(code), "serial": serial,
                            "status": "active", "apps": sorted(apps or served["apps"]),
                            "enrolment": "csr" if public_key is not None else "bundle"}
        return True

    def public_key(self, code):
        """The public key of a unit's current certificate."""
        with open(self.path("units", f"{code}.crt"), "rb") as fh:
            return x509.load_pem_x509_certificate(fh.read()).public_key()

    def enrol(self, code, name, csr_data, home=None, address=None, where=None):
        """Sign a unit's own key (CSR enrolment): the unit generated its key pair and sends a CSR; the
        province checks it and certifies its public key for the unit's identity (subject and SANs of
        the CSR are ignored: the identity is ``<code>.bu.<domain>``). True if anything changed.

        Rerunning with the same CSR changes nothing; a CSR with another key replaces the certificate and
        revokes the old one (reason superseded: the old key may be why the unit rekeyed)."""
        where = where or f"unit {code}"
        csr = load_csr(csr_data, where)
        entry = self.units.get(code)
        home = home or (self.home(entry) if entry else None)
        if entry and entry["status"] == "active":
            pub = serialization.PublicFormat.SubjectPublicKeyInfo
            same = (self.public_key(code).public_bytes(serialization.Encoding.DER, pub)
                    == csr.public_key().public_bytes(serialization.Encoding.DER, pub))
            if same and entry.get("enrolment") == "csr":
                return self.rehome(code, home, where)  # same key: at most its own site changes
            self.revoke(code, "superseded")
        return self.add(code, name or (entry or {}).get("name") or code, address, None, where,
                        home=home, public_key=csr.public_key())

    def rehome(self, code, home, where=None):
        """Give an active unit another own site served by the same concentrator (same address and
        certificate; its LAN and apps follow the new site). True if it changed."""
        entry = self.units[code]
        served = self.served(home, where or f"unit {code}")
        if self.home(entry) == home and entry["apps"] == sorted(served["apps"]):
            return False
        entry.update(home=home, apps=sorted(served["apps"]))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path("bundles", f"{code}.tar.gz"))  # its README and traffic selector changed
        return True

    def revoke(self, code, reason="cessationOfOperation"):
        """Offboard a unit: its certificate goes on the next CRL; True if it changed."""
        entry = self.units.get(code)
        if entry is None:
            raise PkiError(f"unit {code}: not onboarded (see `jincai pki list`)")
        if entry["status"] == "revoked":
            return False
        cert = self.db["certs"].setdefault(entry["serial"], {"cn": code, "kind": "budget unit"})
        cert.update(status="revoked", revoked=_now().isoformat(), reason=reason)
        entry["status"] = "revoked"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path("bundles", f"{code}.tar.gz"))
        return True

    def renew(self, codes=None, within=RENEW_BEFORE, rekey=False):
        """Re-issue certificates of active units expiring within *within* (or exactly *codes*).

        The key is kept unless *rekey*; the old serial is marked superseded (it simply expires).
        Returns the renewed codes.
        """
        done = []
        for code in sorted(codes or self.units):
            entry = self.units.get(code)
            if entry is None:
                raise PkiError(f"unit {code}: not onboarded")
            if entry["status"] != "active":
                continue
            if codes is None:
                with open(self.path("units", f"{code}.crt"), "rb") as fh:
                    cert = x509.load_pem_x509_certificate(fh.read())
                if cert.not_valid_after_utc - _now() > within:
                    continue
            key = None
            kpath = self.path("units", f"{code}.key.vault")
            if entry.get("enrolment") == "csr":
                if rekey:
                    raise PkiError(f"unit {code}: renew --rekey: the unit holds its own key (CSR enrolment); it "
                                   "sends a new CSR: jincai pki enrol CODE --csr FILE")
                key = self.public_key(code)  # same key, new certificate
            elif not rekey:
                with open(kpath, "rb") as fh:
                    key = serialization.load_pem_private_key(self.vault.decrypt(fh.read(), kpath), None)
            old = entry["serial"]
            entry["serial"], key = self._issue_unit(code, key)
            if rekey:
                _write(kpath, self.vault.encrypt(_key_pem(key)), 0o600)
                getattr(self, "_fresh_keys", {}).pop(code, None)  # never bundle the old key
            if old in self.db["certs"]:
                self.db["certs"][old]["status"] = "superseded"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path("bundles", f"{code}.tar.gz"))
            done.append(code)
        return done

    # ---- publication
    def publish_crl(self, days=CRL_DAYS, force=False):
        """Write ``crl.pem``/``crl.der`` when the revoked set changed, the CRL is older than a day or
        reaches half its lifetime, or *force*.  Returns True when a new CRL was written."""
        revoked = sorted((s, e) for s, e in self.db["certs"].items() if e.get("status") == "revoked")
        pem = os.path.join(self.dir, "crl.pem")
        if not force and os.path.exists(pem):
            with open(pem, "rb") as fh:
                old = x509.load_pem_x509_crl(fh.read())
            same = sorted(format(r.serial_number, "x") for r in old) == [s for s, _ in revoked]
            fresh = old.next_update_utc - _now() > datetime.timedelta(days=days / 2)
            if same and fresh:
                return False
        self.db["crl_number"] = self.db.get("crl_number", 0) + 1
        now = _now()
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self.ca_cert.subject)
                   .last_update(now - datetime.timedelta(minutes=5)).next_update(now + datetime.timedelta(days=days))
                   .add_extension(x509.CRLNumber(self.db["crl_number"]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._ca_key.public_key()),
                                  critical=False))
        for serial, entry in revoked:
            rb = (x509.RevokedCertificateBuilder().serial_number(int(serial, 16))
                  .revocation_date(datetime.datetime.fromisoformat(entry["revoked"])))
            if entry.get("reason") in REASONS and entry["reason"] != "unspecified":
                rb = rb.add_extension(x509.CRLReason(REASONS[entry["reason"]]), critical=False)
            builder = builder.add_revoked_certificate(rb.build())
        crl = builder.sign(self._ca_key, hashes.SHA256())
        _write(pem, crl.public_bytes(serialization.Encoding.PEM), 0o644)
        _write(os.path.join(self.dir, "crl.der"), crl.public_bytes(serialization.Encoding.DER), 0o644)
        self._save_db()
        return True

    def _save_db(self):
        _write(os.path.join(self.dir, "db.json"), json.dumps(self.db, indent=1, sort_keys=True).encode(), 0o600)

    def save(self):
        """Persist the certificate database and publish ``vpn/units.json`` (only if it changed)."""
        self._save_db()
        doc = {"pool": str(self.pool), "domain": self.plan["domain"], "server_identity": self.server_identity(),
               "units": [self.units[c] for c in sorted(self.units)]}
        data = json.dumps(doc, indent=1, sort_keys=True).encode()
        path = self.path("units.json")
        if not os.path.exists(path) or open(path, "rb").read() != data:  # noqa: SIM115
            _write(path, data, 0o644)

    def bundle(self, code, force=False):
        """Write ``vpn/bundles/<code>.tar.gz`` (certificate, key, CA, swanctl config, README).

        Kept as it is when it exists (re-running changes nothing) unless *force*; returns its path.
        """
        entry = self.units.get(code)
        if entry is None or entry["status"] != "active":
            raise PkiError(f"unit {code}: not an active unit, no bundle")
        out = self.path("bundles", f"{code}.tar.gz")
        if os.path.exists(out) and not force:
            return out
        csr_unit = entry.get("enrolment") == "csr"
        key = getattr(self, "_fresh_keys", {}).pop(code, None)
        if key is None and not csr_unit:
            kpath = self.path("units", f"{code}.key.vault")
            with open(kpath, "rb") as fh:
                key = self.vault.decrypt(fh.read(), kpath)
        with open(self.path("units", f"{code}.crt"), "rb") as fh:
            cert = fh.read()
        c = self.plan["concentrator"]
        lan = self.served(self.home(entry), f"unit {code}")["lan"]
        conf = client_conf(code, entry["identity"], self.server_identity(), c["address"], lan)
        readme = README.format(code=code, name=entry["name"], address=entry["address"], server=c["address"],
                               apps=", ".join(entry["apps"]))
        if csr_unit:
            readme += CSR_NOTE.format(code=code)
        files = [(f"{code}/swanctl/conf.d/province.conf", conf.encode(), 0o644),
                 *([] if csr_unit else [(f"{code}/swanctl/private/{code}.key", key, 0o600)]),
                 (f"{code}/swanctl/x509/{code}.crt", cert, 0o644),
                 (f"{code}/swanctl/x509ca/province-ca.crt", _cert_pem(self.ca_cert), 0o644),
                 (f"{code}/README.txt", readme.encode(), 0o644)]
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for name, data, mode in files:
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), mode, 0
                tar.addfile(info, io.BytesIO(data))
        os.makedirs(os.path.dirname(out), mode=0o700, exist_ok=True)
        _write(out, buf.getvalue(), 0o600)
        return out


README = """Budget unit {code} ({name}): VPN to the province (strongSwan, IKEv2, certificate)

1. On the unit's gateway (Debian 12): apt-get install charon-systemd strongswan-swanctl
   libstrongswan-standard-plugins
2. Copy swanctl/ of this bundle over /etc/swanctl/ (the key stays mode 0600, owner root), then
   systemctl enable --now strongswan && swanctl --load-all
3. Check: swanctl --list-sas shows "province" ESTABLISHED with virtual IP {address}.
   The concentrator is {server}: allow UDP 500 and 4500 outbound to it.
4. Reachable at the province through the tunnel: {apps}; nothing else.
Keep the key secret. A lost or leaked key must be reported to the province at once: the certificate
is then revoked and a new bundle issued.
"""


CSR_NOTE = """
This unit enrolled with its own key (CSR): the bundle holds no private key. Keep the key you generated
in swanctl/private/{code}.key on the gateway (mode 0600); for a new key send a new CSR to the province.
"""


def client_conf(code, identity, server_identity, server_address, remote_ts):
    """Return the reference swanctl.conf of one budget unit (roles/vpn_client renders the same)."""
    return f"""# Budget unit {code} -> province VPN concentrator (jincai pki bundle)
connections {{
  province {{
    version = 2
    remote_addrs = {server_address}
    vips = 0.0.0.0
    proposals = aes256gcm16-prfsha384-ecp384
    dpd_delay = 30s
    keyingtries = 0
    local {{
      auth = pubkey
      certs = {code}.crt
      id = {identity}
    }}
    remote {{
      auth = pubkey
      id = {server_identity}
      cacerts = province-ca.crt
    }}
    children {{
      province {{
        remote_ts = {remote_ts}
        esp_proposals = aes256-sha384-ecp384
        start_action = start
        dpd_action = restart
        close_action = start
      }}
    }}
  }}
}}
"""


CSV_COLUMNS = ("code", "name", "concentrator", "site")


def read_csv(path):
    """Read unit rows: ``code,name[,concentrator[,site]]`` (a header naming the columns, in any order,
    is optional). ``concentrator`` is a host name or site code, ``site`` the unit's own site (a county
    for a county's unit; its concentrator is then derived). Every error names file, line and field.
    Rows are dicts with ``code``, ``name``, ``line`` and the optional columns given."""
    rows, errors, seen = [], [], set()
    try:
        fh = open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115
    except OSError as exc:
        raise PkiError(f"{path}: {exc.strerror}") from exc
    columns = CSV_COLUMNS
    with fh:
        for lineno, row in enumerate(csv.reader(fh), 1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            cells = [c.strip() for c in row]
            if not rows and not errors and cells[0].lower() == "code" and lineno == 1:
                columns = tuple(c.lower() for c in cells)
                bad = [c for c in columns if c not in CSV_COLUMNS]
                if bad or "name" not in columns or len(set(columns)) != len(columns):
                    raise PkiError(f"{path}: line 1: header: {', '.join(columns)} (fix: the columns are "
                                   f"{', '.join(CSV_COLUMNS)}; code and name are required, each once)")
                continue
            if len(cells) > len(columns):
                errors.append(f"{path}: line {lineno}: {len(cells)} fields, the columns are {', '.join(columns)} "
                              "(fix: remove the extra fields)")
                continue
            r = dict(zip(columns, cells))
            code, name = r.get("code", ""), r.get("name", "")
            if not CODE_RE.match(code):
                errors.append(f"{path}: line {lineno}: code: {code!r} is not a valid unit code "
                              "(fix: letters, digits and '-', at most 63)")
            elif code in seen:
                errors.append(f"{path}: line {lineno}: code: {code} is listed twice (fix: one line per unit)")
            if not name:
                errors.append(f"{path}: line {lineno}: name: missing (fix: the unit's name as 2nd column)")
            seen.add(code)
            rows.append(dict({k: v for k, v in r.items() if v}, code=code, name=name, line=lineno))
    if errors:
        raise PkiError("\n".join(errors))
    return rows


def plans(inventory_dir):
    """The VPN plans of an inventory (:func:`plans_of` its validated typed model)."""
    from jincai.source import inventory

    m, _ = inventory.build_checked(inventory_dir)
    return plans_of(m, inventory_dir)


def plans_of(m, where="inventory"):
    """One VPN plan per concentrator of the typed model ``m`` (the province's first, then the cities'):
    its :class:`jincai.source.model.Concentrator` as the registry reads it: pool, apps, LAN, concentrator
    name/address, domain, site, the sites it serves (``served``: LAN, apps and tier of each), its lab
    client units (their own sites, those that enrol by CSR) and the registry directory (``vpn`` or
    ``vpn/<site code>``)."""
    concentrators = m.concentrators
    if not concentrators or m.sites[concentrators[0].site].tier != "province":
        raise PkiError(f"{where}: no province host in group vpn_concentrators")
    if not m.domain:
        raise PkiError(f"{os.path.join(where, 'source', 'network.yml')}: network: domain: missing "
                       "(fix: the IKE identities are <unit>.bu.<domain>)")
    out = []
    for c in concentrators:
        clients = m.vpn_clients(c)
        out.append({"pool": c.pool, "apps": list(c.apps), "lan": c.lan, "site": c.site,
                    "served": {s["site"]: {"lan": s["lan"], "apps": list(s["apps"]), "tier": s["tier"]}
                               for s in c.served},
                    "client_homes": {v.name: v.home for v in clients if v.home},
                    "csr_clients": [v.name for v in clients if v.enrolment == "csr"],
                    "domain": m.domain, "concentrator": {"name": c.host, "address": c.access_address},
                    "clients": list(c.clients), "registry": c.registry})
    return out


def plan(inventory_dir, concentrator=None):
    """One concentrator's VPN plan (:func:`plans`): the province's, or the one named by host name or
    site code."""
    found = plans(inventory_dir)
    if concentrator is None:
        return found[0]
    for p in found:
        if concentrator in (p["concentrator"]["name"], p["site"]):
            return p
    raise PkiError(f"{inventory_dir}: no VPN concentrator {concentrator!r} (have: "
                   f"{', '.join(p['concentrator']['name'] for p in found)})")


@contextlib.contextmanager
def _locked(directory):
    os.makedirs(directory, mode=0o700, exist_ok=True)
    with open(os.path.join(directory, ".lock"), "w", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def sync(reg, bundles=True):
    """Bring the PKI in line with the plan: the concentrator's certificate, every unit the plan names
    (the lab's client hosts) onboarded, expiring certificates renewed, CRL fresh, registry and missing
    bundles written. Returns a summary dict; a second run changes nothing."""
    c = reg.plan["concentrator"]
    _, server_changed = issue(c["name"], [reg.server_identity(), c["address"]], reg.dir)
    # only units never onboarded: a revoked unit stays revoked until an explicit `add`
    homes = reg.plan.get("client_homes") or {}
    csr = set(reg.plan.get("csr_clients") or [])  # they enrol with their own key (roles/vpn_client)
    added = [code for code in reg.plan["clients"]
             if code not in reg.units and code not in csr and reg.add(code, code, home=homes.get(code))]
    renewed = reg.renew()
    crl = reg.publish_crl()
    reg.save()
    made = 0
    if bundles:
        for code, entry in sorted(reg.units.items()):
            if entry["status"] == "active" and not os.path.exists(reg.path("bundles", f"{code}.tar.gz")):
                reg.bundle(code)
                made += 1
    return {"server": server_changed, "added": added, "renewed": renewed, "crl": crl, "bundles": made}


def crl_next_update(pki_dir):
    """``nextUpdate`` of the published CRL (UTC), or None when there is none."""
    path = os.path.join(pki_dir, "crl.pem")
    if not os.path.exists(path):
        return None
    with open(path, "rb") as fh:
        return x509.load_pem_x509_crl(fh.read()).next_update_utc


def push_crl(inventory_dir, runner=None):
    """Deploy the published CRL: ``playbooks/vpn.yml --tags vpn_crl`` (every concentrator loads it,
    flushes the cached one and drops revoked units' SAs; the province services host publishes it over
    HTTP). Returns the playbook's exit code. What the CRL timer (roles/vpn_crl_timer) runs."""
    if runner is None:
        from jincai.run import run as runner
    res = runner("playbooks/vpn.yml", inventory=inventory_dir, args=("--tags", "vpn_crl"), echo=True)
    return res.rc


def build_parser(prog="jincai pki"):
    """Return the ``jincai pki`` argument parser (also ``python -m jincai.pki``)."""
    p = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    p.add_argument("--dir", default=None, help="PKI directory (default: $JINCAI_PKI_DIR or /var/lib/jincai/pki/<network.name>)")
    p.add_argument("--check", action="store_true", help="ca/issue: report what would change, write nothing")
    p.add_argument("-i", "--inventory", default=os.path.join(ROOT, "inventories", "lab"),
                   help="source of truth for the VPN plan (default: the lab)")
    p.add_argument("-c", "--concentrator", default=None,
                   help="add/revoke/renew/list/bundle/crl: the concentrator (host name or site code) whose "
                        "registry to use (default: the province's); sync, import and move cover every "
                        "concentrator, revoke without it finds each unit's")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("ca", help="create the CA unless it exists")
    one = sub.add_parser("issue", help="issue or keep one leaf certificate (e.g. nginx TLS)")
    one.add_argument("name")
    one.add_argument("--san", action="append", default=[])
    one.add_argument("--client", action="store_true", help="client certificate (default: server)")
    many = sub.add_parser("issue-many", help='issue from a JSON list of {"name", "sans", "client"}')
    many.add_argument("spec", help="JSON file, or - for stdin")
    for name in ("init", "sync"):
        sp = sub.add_parser(name, help="create the CA and the concentrator certificate, onboard the plan's "
                            "units, renew expiring certificates, refresh the CRL, write missing bundles")
        sp.add_argument("--json", action="store_true", help="print a JSON summary with `changed`")
    a = sub.add_parser("add", help="onboard one unit (CODE NAME) or a batch (--csv FILE: code,name)")
    a.add_argument("code", nargs="?")
    a.add_argument("name", nargs="?")
    a.add_argument("--csv")
    im = sub.add_parser("import", help="a batch across every concentrator (--csv FILE: code,name[,concentrator"
                        "[,site]]): add new units, move units to their new concentrator, rerun changes nothing")
    im.add_argument("--csv", required=True)
    im.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    mv = sub.add_parser("move", help="move a unit to another concentrator (revoked at the old one, a new "
                        "address from the new pool) or to another own site")
    mv.add_argument("code")
    mv.add_argument("--to", default=None, help="the new concentrator (host name or site code)")
    mv.add_argument("--site", default=None, help="the unit's own site (a county: its city's concentrator)")
    mv.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    en = sub.add_parser("enrol", help="CSR enrolment: certify a key the unit generated itself (the private key "
                        "never leaves the unit); rerun with the same CSR changes nothing")
    en.add_argument("code")
    en.add_argument("--csr", required=True, help="the unit's CSR (PEM or DER; - for stdin)")
    en.add_argument("--name", default=None)
    en.add_argument("--site", default=None, help="the unit's own site (default: the concentrator's)")
    r = sub.add_parser("revoke", help="offboard units (CODE... or --csv FILE) and publish the CRL")
    r.add_argument("codes", nargs="*")
    r.add_argument("--csv")
    r.add_argument("--reason", default="cessationOfOperation", choices=sorted(REASONS))
    n = sub.add_parser("renew", help="re-issue unit certificates expiring soon, or the named ones")
    n.add_argument("codes", nargs="*")
    n.add_argument("--within-days", type=int, default=RENEW_BEFORE.days)
    n.add_argument("--rekey", action="store_true", help="generate a new key pair too")
    cr = sub.add_parser("crl", help="publish a fresh CRL now (--if-due: only when the revoked set changed or half "
                        "its validity has passed; --push: then deploy it to every concentrator and the services host)")
    cr.add_argument("--if-due", action="store_true", help="publish only when due (what sync does; the timer's mode)")
    cr.add_argument("--days", type=float, default=CRL_DAYS, help=f"validity in days (default {CRL_DAYS}; "
                    "a short one tests the refresh)")
    cr.add_argument("--push", action="store_true", help="run playbooks/vpn.yml --tags vpn_crl afterwards "
                    "(exit code: the playbook's)")
    b = sub.add_parser("bundle", help="rewrite a unit's client bundle and print its path")
    b.add_argument("code")
    sub.add_parser("list", help="list onboarded units: code, address, status, serial, name")
    return p


def _leaf_commands(args):
    if args.cmd == "ca":
        crt, changed = ensure_ca(args.dir, check=args.check)
        return {"changed": changed, "ca": crt}
    if args.cmd == "issue":
        paths, changed = issue(args.name, args.san, args.dir, client=args.client, check=args.check)
        return dict(paths, changed=changed)
    with (sys.stdin if args.spec == "-" else open(args.spec, encoding="utf-8")) as fh:
        spec = json.load(fh)
    result = {"changed": False, "issued": {}}
    for item in spec:
        paths, changed = issue(item["name"], item.get("sans") or [], args.dir,
                               client=bool(item.get("client")), check=args.check)
        result["issued"][item["name"]] = dict(paths, changed=changed)
        result["changed"] = result["changed"] or changed
    return result


def _sync_all(vpn_plans, pki_dir, as_json):
    """``sync`` every concentrator's registry in turn (each saves before the next loads the shared
    certificate database); print one JSON summary or one line per concentrator."""
    total = {"changed": False, "concentrators": {}}
    for vpn_plan in vpn_plans:
        reg = UnitRegistry(vpn_plan, pki_dir)
        s = sync(reg)
        s["changed"] = bool(s["server"] or s["added"] or s["renewed"] or s["crl"] or s["bundles"])
        total["changed"] = total["changed"] or s["changed"]
        total["concentrators"][vpn_plan["concentrator"]["name"]] = s
        if not as_json:
            print(f"{vpn_plan['concentrator']['name']}: {len(reg.units)} units ({len(s['added'])} added, "
                  f"{len(s['renewed'])} renewed); CRL {'published' if s['crl'] else 'unchanged'}; "
                  f"{s['bundles']} new bundles; registry {reg.path()}")
    if as_json:
        print(json.dumps(total, sort_keys=True))
    return 0


def _batch_command(args, rows, pki_dir):
    """``import`` and ``move`` (:mod:`jincai.pki.batch`): every concentrator's registry at once."""
    from jincai.pki import batch as pki_batch

    vpn_plans = plans(args.inventory)
    default = plan(args.inventory, args.concentrator) if args.concentrator else None
    with _locked(pki_dir):
        if args.cmd == "move":
            regs = pki_batch.Registries(vpn_plans, pki_dir)
            _, entry = regs.active(args.code)
            if entry is None:
                raise PkiError(f"move: unit {args.code} is active at no concentrator (fix: `jincai pki import` or "
                               "`add` it; see `jincai pki list -c CONCENTRATOR`)")
            if not (args.to or args.site):
                raise PkiError("move: give --to CONCENTRATOR and/or --site SITE")
            rows = [{"code": args.code, "name": entry["name"], **({"concentrator": args.to} if args.to else {}),
                     **({"site": args.site} if args.site else {})}]
            where = "move"
        else:
            where = args.csv
        pki_batch.run(vpn_plans, pki_dir, rows, default, where, dry_run=args.dry_run)
    return 0


def _revoke_anywhere(args, rows, pki_dir):
    """``revoke`` without ``--concentrator``: each unit at the concentrator where it is active."""
    from jincai.pki import batch as pki_batch

    codes = [r["code"] for r in rows] if rows else args.codes
    if not codes:
        raise PkiError("revoke: give CODE..., or --csv FILE")
    with _locked(pki_dir):
        done = pki_batch.offboard(plans(args.inventory), pki_dir, codes, args.reason)
    n = sum(len(v) for v in done.values())
    where = "; ".join(f"{k}: {', '.join(v)}" for k, v in done.items()) or "already revoked"
    print(f"{n} revoked ({where}); deploy the CRL with `ansible-playbook playbooks/vpn.yml --tags vpn_crl`")
    return 0


def _unit_commands(args):
    rows = read_csv(args.csv) if getattr(args, "csv", None) else None  # bad input fails before any change
    if args.cmd == "add" and bool(rows is not None) == bool(args.code):
        raise PkiError("add: give CODE NAME, or --csv FILE")
    pki_dir = args.dir or default_dir(args.inventory)
    _refuse_old_layout(pki_dir)
    if args.cmd in ("init", "sync"):
        with _locked(pki_dir):
            return _sync_all(plans(args.inventory), pki_dir, args.json)
    if args.cmd in ("import", "move"):
        return _batch_command(args, rows, pki_dir)
    if args.cmd == "add" and rows and any("concentrator" in r or "site" in r for r in rows):
        raise PkiError(f"{args.csv}: columns concentrator/site: use `jincai pki import --csv {args.csv}` "
                       "(it places each unit at its concentrator); nothing changed")
    if args.cmd == "revoke" and not args.concentrator:
        return _revoke_anywhere(args, rows, pki_dir)
    vpn_plan = plan(args.inventory, args.concentrator)
    with _locked(pki_dir):
        reg = UnitRegistry(vpn_plan, pki_dir)
        if args.cmd == "list":
            for code, e in sorted(reg.units.items()):
                print(f"{code}\t{e['address']}\t{e['status']}\t{e['serial']}\t{e['name']}")
        elif args.cmd == "add":
            rows = rows or [{"code": args.code, "name": args.name or args.code}]
            added = reg.add_many(rows)
            reg.save()
            for code in added:
                reg.bundle(code)
            print(f"{len(added)} onboarded, {len(rows) - len(added)} already active; bundles in {reg.path('bundles')}")
        elif args.cmd == "revoke":
            codes = [r["code"] for r in rows] if rows else args.codes
            if not codes:
                raise PkiError("revoke: give CODE..., or --csv FILE")
            unknown = [c for c in codes if c not in reg.units]
            if unknown:
                raise PkiError(f"revoke: not onboarded: {', '.join(unknown)} (nothing changed)")
            done = [c for c in codes if reg.revoke(c, args.reason)]
            reg.publish_crl(force=bool(done))
            reg.save()
            print(f"{len(done)} revoked (CRL number {reg.db['crl_number']}); deploy it with "
                  "`ansible-playbook playbooks/vpn.yml --tags vpn_crl`")
        elif args.cmd == "renew":
            done = reg.renew(args.codes or None, datetime.timedelta(days=args.within_days), args.rekey)
            reg.save()
            for code in done:
                reg.bundle(code)
            print(f"{len(done)} renewed")
        elif args.cmd == "crl":
            published = reg.publish_crl(days=args.days, force=not args.if_due)
            reg.save()
            print(f"{os.path.join(pki_dir, 'crl.pem')}: {'published' if published else 'unchanged'}, CRL number "
                  f"{reg.db['crl_number']}, next update {crl_next_update(pki_dir).isoformat()}")
        elif args.cmd == "bundle":
            print(reg.bundle(args.code, force=True))
        elif args.cmd == "enrol":
            try:
                if args.csr == "-":
                    data = sys.stdin.buffer.read()
                else:
                    with open(args.csr, "rb") as fh:
                        data = fh.read()
            except OSError as exc:
                raise PkiError(f"{args.csr}: {exc.strerror}") from None
            changed = reg.enrol(args.code, args.name, data, home=args.site, where=f"{args.csr}")
            reg.publish_crl(force=False)
            reg.save()
            if changed:
                reg.bundle(args.code, force=True)
            e = reg.units[args.code]
            print(f"{args.code}: {'certified' if changed else 'unchanged'} ({e['address']}, serial {e['serial']}); "
                  f"certificate {reg.path('units', args.code + '.crt')}")
    if args.cmd == "crl" and args.push:
        return push_crl(args.inventory)  # outside the lock: the playbook's pki sync takes it again
    return 0


def main(argv=None, prog="jincai pki"):
    """Command line entry point; returns an exit code. ca/issue/issue-many print one JSON object."""
    args = build_parser(prog).parse_args(argv)
    if args.cmd in ("ca", "issue", "issue-many"):
        try:
            args.dir = args.dir or default_dir(args.inventory)
            _refuse_old_layout(args.dir)
            result = _leaf_commands(args)
        except (OSError, ValueError, KeyError, TypeError, PkiError) as exc:
            print(json.dumps({"failed": True, "msg": f"jincai.pki: {exc}"}))
            return 1
        print(json.dumps(result, sort_keys=True))
        return 0
    try:
        return _unit_commands(args)
    except (PkiError, OSError, subprocess.CalledProcessError) as exc:
        print(f"jincai pki: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(prog="python -m jincai.pki"))
