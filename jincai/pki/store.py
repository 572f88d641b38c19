"""The PKI directory on the control node: where it is, how it is written, who holds it.

One directory per network, outside the checkout: ``/var/lib/jincai/pki/<network.name>``
(:func:`jincai.paths.pki_dir`; ``$JINCAI_PKI_DIR`` or ``--dir`` override it). Files are written
atomically with their mode; a command holds ``.lock`` while it changes the directory. An older
jincai's checkout-local ``build/pki`` is never silently replaced by a second CA.
"""

import contextlib
import datetime
import fcntl
import os

from cryptography.hazmat.primitives import serialization

from jincai import ROOT, paths
from jincai.pki import PkiError
from jincai.source import model

INVENTORY_ENV = "JINCAI_INVENTORY"
LAB_INVENTORY = os.path.join(ROOT, "inventories", "lab")


def default_inventory():
    """The inventory a ``jincai pki`` command acts on without ``-i``: ``$JINCAI_INVENTORY``, else the lab
    (as ``jincai compliance``, ``verify``, ``release`` and ``history``: the commands that act on a network's
    hosts or control-node state; docs/architecture.md, "Default inventory")."""
    return os.environ.get(INVENTORY_ENV) or LAB_INVENTORY


def default_dir(inventory_dir=None):
    """Return the PKI directory of an inventory (default: :func:`default_inventory`): ``$JINCAI_PKI_DIR`` or
    ``/var/lib/jincai/pki/<network.name>`` (:func:`jincai.paths.pki_dir`; the name as the source loader,
    :func:`jincai.source.model.load`, reads it: the leaf commands need no valid source)."""
    if os.environ.get(paths.PKI_ENV):
        return os.environ[paths.PKI_ENV]
    inventory_dir = inventory_dir or default_inventory()
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


def now():
    """The current time (UTC, whole seconds), what certificates and the CRL are dated with."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def write(path, data, mode):
    """Write bytes atomically with the given mode."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def key_pem(key):
    """A private key as unencrypted PKCS#8 PEM (vault-encrypted before it is written)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert):
    """A certificate as PEM."""
    return cert.public_bytes(serialization.Encoding.PEM)


@contextlib.contextmanager
def locked(directory):
    """Hold the PKI directory's lock (``.lock``, exclusive) for the ``with`` block: one command at a time."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    with open(os.path.join(directory, ".lock"), "w", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def refuse_old_layout(pki_dir):
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
