"""Pre-flight checks of named accounts, run on the control node before any account is touched."""

import base64
import binascii
import re
import struct

USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
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


def accounts_errors(entries, forbidden_names=(), automation_user=None):
    """Return every problem with a list of account dicts (user, name, key, state) as strings.

    Checks: user name syntax, known state, a working key for every present account,
    no shared account names, no key used by two accounts, no duplicate names, and the
    automation account is never listed (it is managed by the bootstrap, never locked).
    """
    errors = []
    seen_users = {}
    seen_keys = {}
    for index, entry in enumerate(entries or []):
        where = "entry %d" % index
        if not isinstance(entry, dict):
            errors.append("%s: not a mapping" % where)
            continue
        user = entry.get("user")
        if not isinstance(user, str) or not USER_RE.match(user):
            errors.append("%s: user %r is not a valid login name" % (where, user))
            continue
        where = "user %s" % user
        state = entry.get("state", "present")
        if state not in ("present", "absent"):
            errors.append("%s: state %r must be present or absent" % (where, state))
        if user in seen_users:
            errors.append("%s: listed twice" % where)
        seen_users[user] = True
        if user in forbidden_names:
            errors.append("%s: shared or generic account names are not allowed (use a personal login)" % where)
        if automation_user and user == automation_user:
            errors.append("%s: this is the automation account; it must not be listed as a person" % where)
        if state == "present":
            problem = key_error(entry.get("key"))
            if problem:
                errors.append("%s: %s (password login is disabled, so this person could not log in)" % (where, problem))
            else:
                blob = entry["key"].split()[1]
                if blob in seen_keys:
                    errors.append("%s: same key as %s (a shared key is a shared account)" % (where, seen_keys[blob]))
                seen_keys[blob] = user
            if not entry.get("name"):
                errors.append("%s: no person's name" % where)
    return errors


class FilterModule:
    """Filters of the accounts role."""

    def filters(self):
        """Return the filter table."""
        return {"accounts_errors": accounts_errors, "accounts_key_error": key_error}
