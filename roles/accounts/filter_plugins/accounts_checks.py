"""Pre-flight checks of named accounts, and the people and sudo commands the accounts role renders.

Run on the control node before any account is touched."""

import re

from jincai.source.sshkeys import KEY_TYPES, key_error  # noqa: F401 - KEY_TYPES re-exported for the tests

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


UNIT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9@._-]{0,99}\.(service|timer)$")
#: A technician's service operations: one exact sudoers command each (no wildcard, no pager: a pager
#: run by sudo is a root shell), so ``sudo -l`` lists precisely what they may run.
OPERATIONS = {
    "start": "/usr/bin/systemctl start {unit}",
    "stop": "/usr/bin/systemctl stop {unit}",
    "restart": "/usr/bin/systemctl restart {unit}",
    "reload": "/usr/bin/systemctl reload {unit}",
    "status": "/usr/bin/systemctl --no-pager status {unit}",
    "journal": "/usr/bin/journalctl --no-pager -n 500 -u {unit}",
}


def _present(people):
    return [p for p in people or [] if p.get("state", "present") == "present"]


def accounts_role_errors(admins, role_groups):
    """Problems with the administrators' roles: each present one holds exactly one known role (三员分立)."""
    errors = []
    for admin in _present(admins):
        roles = list(admin.get("roles") or [])
        if len(roles) != 1 or roles[0] not in role_groups:
            errors.append("administrator %s: roles %r: exactly one of %s (三员分立; jincai validate says so too)"
                          % (admin.get("user"), roles, ", ".join(sorted(role_groups))))
    return errors


def accounts_people(admins, technicians, admin_group, technician_group, role_groups):
    """The present people with the exact supplementary groups each gets (``_groups``) and their role
    (``_role``: system, security or audit for administrators, technician for technicians).

    An administrator is in ``admin_group`` and the group of their one role; a technician in
    ``technician_group``. The set is exact (the role replaces any other group), so a person whose
    role changes leaves the old role's group."""
    problems = accounts_role_errors(admins, role_groups)
    if problems:
        raise ValueError("; ".join(problems))
    out = []
    for admin in _present(admins):
        roles = list(admin.get("roles") or [])
        out.append(dict(admin, _role=roles[0], _groups=[admin_group, role_groups[roles[0]]]))
    for tech in _present(technicians):
        out.append(dict(tech, _role="technician", _groups=[technician_group]))
    return out


def accounts_technician_commands(services, functions, apps=(), app_operations=(), extra=()):
    """The sorted sudo commands of a host's technicians.

    ``services``: {function or 'all': {unit: [operation, ...]}}; the host's ``functions`` select the
    tables; each finance application of the host gets ``app_operations`` on ``jincai-<app>.service``;
    ``extra``: further full command lines from the inventory."""
    wanted = {}
    for table in ["all"] + list(functions or []):
        for unit, ops in ((services or {}).get(table) or {}).items():
            wanted.setdefault(unit, set()).update(ops or [])
    for app in apps or []:
        wanted.setdefault("jincai-%s.service" % app, set()).update(app_operations or [])
    commands = set()
    for unit, ops in wanted.items():
        if not UNIT_RE.match(unit):
            raise ValueError("technician service %r is not a systemd unit name (e.g. nginx.service)" % unit)
        for op in ops:
            if op not in OPERATIONS:
                raise ValueError("technician operation %r on %s: use one of %s" % (op, unit, ", ".join(OPERATIONS)))
            commands.add(OPERATIONS[op].format(unit=unit))
    return sorted(commands) + [c for c in extra or [] if c not in commands]


def accounts_unaged(shadow, exclude, max_days, min_days, warn_age):
    """Names of the accounts in ``shadow`` (getent: user -> [password, lastchg, min, max, warn, ...]) that
    have a usable password and other ageing than max/min/warn, ``exclude`` left out; sorted."""
    out = []
    for user, fields in (shadow or {}).items():
        password = (fields or [""])[0] or ""
        if user in exclude or not password or password.startswith(("!", "*")):
            continue
        got = [(fields[i] if len(fields) > i else "") for i in (3, 2, 4)]
        if got != [str(max_days), str(min_days), str(warn_age)]:
            out.append(user)
    return sorted(out)


class FilterModule:
    """Filters of the accounts role."""

    def filters(self):
        """Return the filter table."""
        return {"accounts_errors": accounts_errors, "accounts_key_error": key_error,
                "accounts_people": accounts_people, "accounts_role_errors": accounts_role_errors, "accounts_technician_commands": accounts_technician_commands,
                "accounts_unaged": accounts_unaged}
