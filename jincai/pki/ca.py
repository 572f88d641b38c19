"""The province CA and the leaves it signs (nginx TLS of the app servers, the concentrators, the units).

``ca.crt`` and ``ca.key.vault`` (EC P-256, 10 years; the key vault-encrypted, :mod:`jincai.pki.vault`)
in the PKI directory; ``issued/<name>/cert.pem key.pem`` a leaf per name (EC P-256, ~2 years), SANs
DNS names and IPs. An existing CA is kept; a leaf is re-issued only when it is missing, was signed by
another CA, has other SANs or usage, or expires within 30 days. :func:`load_csr` checks a unit's own
key before the CA certifies it (CSR enrolment).
"""

import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from jincai.pki import PkiError, store, vault

CA_NAME = "Jilin Finance Province CA"
ORG = "Jilin Provincial Department of Finance"
CA_DAYS = 3650
LEAF_DAYS = 825
RENEW_BEFORE = datetime.timedelta(days=30)
PUBLIC_KEY_TYPES = (ec.EllipticCurvePublicKey, rsa.RSAPublicKey)


def ensure_ca(pki_dir=None, check=False):
    """Create the CA in *pki_dir* unless it exists. Return ``(ca_cert_path, changed)``.

    A plaintext ``ca.key`` (older layout) is vault-encrypted into ``ca.key.vault`` and removed.
    """
    pki_dir = pki_dir or store.default_dir()
    crt = os.path.join(pki_dir, "ca.crt")
    vaulted, plain = os.path.join(pki_dir, "ca.key.vault"), os.path.join(pki_dir, "ca.key")
    if os.path.exists(crt) and os.path.exists(plain) and not os.path.exists(vaulted):
        if check:
            return crt, True
        with open(plain, "rb") as fh:
            store.write(vaulted, vault.shared().encrypt(fh.read()), 0o600)
        os.unlink(plain)
        return crt, True
    if os.path.exists(crt) and os.path.exists(vaulted):
        return crt, False
    store.refuse_old_layout(pki_dir)
    if check:
        return crt, True
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
                      x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    now = store.now()
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
    store.write(vaulted, vault.shared().encrypt(store.key_pem(key)), 0o600)
    store.write(crt, store.cert_pem(cert), 0o644)
    return crt, True


def load_ca(pki_dir):
    """``(certificate, private key)`` of the CA in *pki_dir* (the key decrypted from its vault)."""
    with open(os.path.join(pki_dir, "ca.crt"), "rb") as fh:
        cert = x509.load_pem_x509_certificate(fh.read())
    path = os.path.join(pki_dir, "ca.key.vault")
    with open(path, "rb") as fh:
        key = serialization.load_pem_private_key(vault.shared().decrypt(fh.read(), path), password=None)
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
            and cert.not_valid_after_utc - store.now() > RENEW_BEFORE)


def sign_leaf(ca_cert, ca_key, name, sans, client, key=None, ou=None, days=LEAF_DAYS):
    """Return ``(cert, key)``: a leaf for *name* with *sans*, a new P-256 key unless *key* is given.
    *key* may be a public key (CSR enrolment: the private key stays with its owner)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    public = key if isinstance(key, PUBLIC_KEY_TYPES) else key.public_key()
    now = store.now()
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
    pki_dir = pki_dir or store.default_dir()
    _, ca_changed = ensure_ca(pki_dir, check=check)
    path = os.path.join(pki_dir, "issued", name)
    paths = {"cert": os.path.join(path, "cert.pem"), "key": os.path.join(path, "key.pem"),
             "ca": os.path.join(pki_dir, "ca.crt")}
    if ca_changed and check:
        return paths, True
    ca_cert, ca_key = load_ca(pki_dir)
    sans = list(dict.fromkeys(sans or [name]))
    if _leaf_ok(path, ca_cert, sans, client):
        return paths, ca_changed
    if check:
        return paths, True
    cert, key = sign_leaf(ca_cert, ca_key, name, sans, client)
    store.write(paths["key"], store.key_pem(key), 0o600)
    store.write(paths["cert"], store.cert_pem(cert), 0o644)
    return paths, True


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
