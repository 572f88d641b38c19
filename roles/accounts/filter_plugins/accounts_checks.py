"""Pre-flight checks of named accounts, run on the control node before any account is touched."""

import re

from jincai.sshkeys import KEY_TYPES, key_error  # noqa: F401 - KEY_TYPES re-exported for the tests

USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


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
