"""OpenSSH public key lines: the check sshd itself makes before it accepts a key.

Shared by ``jincai validate`` (a technician's or administrator's ``key:``) and the accounts role's
pre-flight filter (roles/accounts/filter_plugins/accounts_checks.py), so both refuse the same keys.
"""

import base64
import binascii
import struct

KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)


def key_error(key):
    """Return why ``key`` is not a usable OpenSSH public key line, or None when it is.

    The base64 blob must decode and must start with the same key type as the line says,
    which is what sshd itself checks before it accepts a key.
    """
    if not isinstance(key, str) or not key.strip():
        return "no SSH public key"
    parts = key.split()
    if len(parts) < 2:
        return "key is not '<type> <base64> [comment]'"
    ktype, blob = parts[0], parts[1]
    if ktype not in KEY_TYPES:
        return "key type %r is not one of %s" % (ktype, ", ".join(KEY_TYPES))
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        return "key data is not valid base64"
    if len(raw) < 4:
        return "key data is truncated"
    (length,) = struct.unpack(">I", raw[:4])
    if raw[4:4 + length].decode("ascii", "replace") != ktype:
        return "key data does not hold a %s key" % ktype
    if ktype == "ssh-ed25519" and len(raw) != 51:
        return "ssh-ed25519 key data has the wrong length"
    return None
