"""A small province certificate authority (the control node's CA) and certificates it issues.

One CA serves every part of jincai (nginx TLS on app servers, strongSwan peers, ...). The CA key and
issued keys are written with mode 0600 into a directory that is not committed: by default
``<repo>/build/pki`` (``/build/`` is gitignored); set ``JINCAI_PKI_DIR`` to move it, e.g. into a
vault-backed location in production.

Layout of the PKI directory::

    ca.crt  ca.key                 the province CA (EC P-256, 10 years)
    issued/<name>/cert.pem key.pem  a leaf per name (EC P-256, ~2 years), SANs: DNS names and IPs

Everything is idempotent: an existing CA is kept; a leaf is re-issued only when it is missing, was
signed by another CA, has other SANs or usage, or expires within 30 days.

Command line (prints one JSON object; ``changed`` tells whether anything was written)::

    python -m jincai.pki ca [--dir DIR]
    python -m jincai.pki issue NAME --san DNS_OR_IP ... [--client] [--dir DIR] [--check]
    python -m jincai.pki issue-many SPEC.json [--dir DIR] [--check]   # [{"name":..,"sans":[..]}, ...]
"""

import argparse
import datetime
import ipaddress
import json
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from jincai import ROOT

CA_NAME = "Jilin Finance Province CA"
ORG = "Jilin Provincial Department of Finance"
CA_DAYS = 3650
LEAF_DAYS = 825
RENEW_BEFORE = datetime.timedelta(days=30)


def default_dir():
    """Return the PKI directory: ``$JINCAI_PKI_DIR`` or ``<repo>/build/pki``."""
    return os.environ.get("JINCAI_PKI_DIR") or os.path.join(ROOT, "build", "pki")


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _write(path, data, mode):
    """Write bytes atomically with the given mode."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load_ca(pki_dir):
    with open(os.path.join(pki_dir, "ca.crt"), "rb") as fh:
        cert = x509.load_pem_x509_certificate(fh.read())
    with open(os.path.join(pki_dir, "ca.key"), "rb") as fh:
        key = serialization.load_pem_private_key(fh.read(), password=None)
    return cert, key


def ensure_ca(pki_dir=None, check=False):
    """Create the CA in *pki_dir* unless it exists. Return ``(ca_cert_path, changed)``."""
    pki_dir = pki_dir or default_dir()
    crt = os.path.join(pki_dir, "ca.crt")
    if os.path.exists(crt) and os.path.exists(os.path.join(pki_dir, "ca.key")):
        return crt, False
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
    _write(os.path.join(pki_dir, "ca.key"), _key_pem(key), 0o600)
    _write(crt, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return crt, True


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


def issue(name, sans, pki_dir=None, client=False, check=False):
    """Issue (or keep) the leaf *name* with *sans*. Return ``(dict of paths, changed)``."""
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
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    eku = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [ExtendedKeyUsageOID.SERVER_AUTH]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
                                     x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=LEAF_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(_general_names(sans)), critical=False)
            .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write(paths["key"], _key_pem(key), 0o600)
    _write(paths["cert"], cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return paths, True


def main(argv=None):
    """Command line entry point; prints a JSON result and returns an exit code."""
    p = argparse.ArgumentParser(prog="python -m jincai.pki", description=__doc__.splitlines()[0])
    p.add_argument("--dir", default=None, help="PKI directory (default: $JINCAI_PKI_DIR or build/pki)")
    p.add_argument("--check", action="store_true", help="report what would change, write nothing")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("ca", help="create the CA unless it exists")
    one = sub.add_parser("issue", help="issue or keep one leaf certificate")
    one.add_argument("name")
    one.add_argument("--san", action="append", default=[])
    one.add_argument("--client", action="store_true", help="client certificate (default: server)")
    many = sub.add_parser("issue-many", help='issue from a JSON list of {"name", "sans", "client"}')
    many.add_argument("spec", help="JSON file, or - for stdin")
    args = p.parse_args(argv)
    try:
        if args.cmd == "ca":
            crt, changed = ensure_ca(args.dir, check=args.check)
            result = {"changed": changed, "ca": crt}
        elif args.cmd == "issue":
            paths, changed = issue(args.name, args.san, args.dir, client=args.client, check=args.check)
            result = dict(paths, changed=changed)
        else:
            with (sys.stdin if args.spec == "-" else open(args.spec, encoding="utf-8")) as fh:
                spec = json.load(fh)
            result = {"changed": False, "issued": {}}
            for item in spec:
                paths, changed = issue(item["name"], item.get("sans") or [], args.dir,
                                       client=bool(item.get("client")), check=args.check)
                result["issued"][item["name"]] = dict(paths, changed=changed)
                result["changed"] = result["changed"] or changed
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(json.dumps({"failed": True, "msg": f"jincai.pki: {exc}"}))
        return 1
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
