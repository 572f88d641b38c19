#!/usr/bin/python
"""Ansible module: a PostgreSQL database and its owner role; dump and restore of that database."""

DOCUMENTATION = r"""
---
module: jincai_pg
short_description: Ensure an application's PostgreSQL database and role, or dump / restore it
description:
  - Runs on the database host as root and talks to the local cluster as the C(postgres) superuser
    (C(runuser -u postgres -- psql), peer authentication over the Unix socket). Only ansible.builtin
    is available to jincai, so this replaces community.postgresql for the few things the apps need.
  - C(state=present) creates the login role and the database it owns (UTF-8, C(CONNECT) revoked from
    PUBLIC) when missing, and sets the role's password when the stored SCRAM-SHA-256 verifier does not
    match O(password). The password never reaches the server in clear text (a verifier is sent) and
    never appears on a command line. Returns the application's schema version
    (C(max(version)) of C(schema_migrations), 0 when absent).
  - C(state=dumped) writes C(pg_dump -Fc) of the database to O(path) (mode 0600); always changed.
  - C(state=restored) replaces the database with the dump at O(path) (drop, create, C(pg_restore)).
    With O(keep_path), the database as it is is first dumped there (nothing is dropped when that dump
    fails), and when C(pg_restore) fails the kept dump is put back, so a failed restore loses nothing.
  - Supports check mode (reports what would change, changes nothing).
author: jincai project
options:
  name:
    description: Database name; the owner role has the same name.
    type: str
    required: true
  password:
    description: The role's password (required for C(state=present)).
    type: str
  state:
    description: What to do.
    type: str
    default: present
    choices: [present, dumped, restored]
  path:
    description: Dump file (C(state=dumped) and C(state=restored)).
    type: path
  keep_path:
    description:
      - C(state=restored) only. Where to dump the database as it is before it is replaced (mode 0600).
      - Skipped when the database does not exist.
    type: path
"""

EXAMPLES = r"""
- name: Ensure the treasury database and role
  jincai_pg:
    name: jincai_treasury
    password: "{{ vault_treasury_db_password }}"
  no_log: true
"""

RETURN = r"""
schema_version:
  description: Schema version recorded by the application (0 when never migrated or missing).
  type: int
  returned: always
path:
  description: The dump file written or read.
  type: str
  returned: when state is dumped or restored
kept:
  description: The dump of the database as it was before the restore (empty when there was none).
  type: str
  returned: when state is restored
"""

import base64
import hashlib
import hmac
import os
import re
import subprocess

from ansible.module_utils.basic import AnsibleModule

NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
AS_POSTGRES = ["runuser", "-u", "postgres", "--"]


def scram_verifier(password, salt=None, iterations=4096):
    """Return a PostgreSQL SCRAM-SHA-256 verifier for *password*."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored)}:{b64(server)}"


def scram_matches(verifier, password):
    """True when *verifier* (as stored in pg_authid) was made from *password*."""
    m = re.match(r"^SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)$", verifier or "")
    if not m:
        return False
    again = scram_verifier(password, base64.b64decode(m.group(2)), int(m.group(1)))
    return hmac.compare_digest(again, verifier)


class Pg:
    """Run SQL as the postgres superuser through psql, SQL on stdin."""

    def __init__(self, module):
        self.module = module

    def run(self, args, data=None, **kw):
        rc, out, err = self.module.run_command(AS_POSTGRES + args, data=data, binary_data=True, **kw)
        if rc != 0:
            self.module.fail_json(msg=f"{' '.join(args[:1])} failed (rc={rc}): {err.strip() or out.strip()}")
        return out

    def sql(self, query, db="postgres"):
        """Run *query*; return rows as lists of strings (tab separated, unaligned)."""
        out = self.run(["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-d", db],
                       data=query)
        return [line.split("\t") for line in out.splitlines() if line]

    def exists(self, name):
        rows = self.sql(f"SELECT (SELECT count(*) FROM pg_roles WHERE rolname = '{name}'),"
                        f" (SELECT count(*) FROM pg_database WHERE datname = '{name}');")
        return rows[0][0] == "1", rows[0][1] == "1"

    def schema_version(self, name):
        rows = self.sql("SELECT CASE WHEN to_regclass('public.schema_migrations') IS NULL THEN 'absent' END;",
                        db=name)
        if rows and rows[0][0] == "absent":
            return 0
        return int(self.sql("SELECT coalesce(max(version), 0) FROM schema_migrations;", db=name)[0][0])

    def create_db(self, name):
        self.sql(f"CREATE DATABASE {name} OWNER {name} ENCODING 'UTF8' TEMPLATE template0;"
                 f" REVOKE ALL ON DATABASE {name} FROM PUBLIC;")


def present(module, pg, name, password):
    """Ensure role and database; return (changed, messages)."""
    changed, what = False, []
    role_ok, db_ok = pg.exists(name)
    if not role_ok:
        what.append(f"create role {name}")
        if not module.check_mode:
            pg.sql(f"CREATE ROLE {name} LOGIN PASSWORD '{scram_verifier(password)}';")
        changed = True
    else:
        stored = pg.sql(f"SELECT coalesce(rolpassword, '') FROM pg_authid WHERE rolname = '{name}';")
        if not scram_matches(stored[0][0] if stored else "", password):
            what.append(f"set password of role {name}")
            if not module.check_mode:
                pg.sql(f"ALTER ROLE {name} LOGIN PASSWORD '{scram_verifier(password)}';")
            changed = True
    if not db_ok:
        what.append(f"create database {name}")
        if not module.check_mode:
            pg.create_db(name)
        changed = True
    return changed, what


class PgError(Exception):
    """A dump or restore failed; ``kept`` names the dump of the database as it was, if one was taken."""

    def __init__(self, msg, kept=""):
        super().__init__(msg)
        self.kept = kept


def dump(name, path):
    """``pg_dump -Fc`` of database ``name`` to ``path`` (0600, written whole or not at all); return its size."""
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path + ".part", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise PgError(f"pg_dump of {name} to {path} failed: {exc}") from None
    with os.fdopen(fd, "wb") as fh:
        proc = subprocess.run(AS_POSTGRES + ["pg_dump", "-Fc", "-d", name], stdout=fh,
                              stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        os.unlink(path + ".part")
        raise PgError(f"pg_dump of {name} failed: {proc.stderr.decode().strip()}")
    os.replace(path + ".part", path)
    return os.path.getsize(path)


def _replace_with(pg, name, path):
    """Drop database ``name``, create it empty and ``pg_restore`` the dump at ``path``; return stderr or ''."""
    pg.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE);")
    pg.create_db(name)
    with open(path, "rb") as fh:
        proc = subprocess.run(AS_POSTGRES + ["pg_restore", "--exit-on-error", "-d", name], stdin=fh,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if proc.returncode == 0:
        return ""
    return proc.stderr.decode().strip() or f"pg_restore exited {proc.returncode}"


def restore(pg, name, path, keep_path=None):
    """Replace database ``name`` with the dump at ``path``; return the path of the kept dump ('' if none).

    With ``keep_path`` the database as it is is dumped there first: when that dump fails nothing is
    dropped; when the restore fails the kept dump is put back. Either failure raises :class:`PgError`.
    """
    kept = ""
    if keep_path and pg.exists(name)[1]:
        try:
            dump(name, keep_path)
        except PgError as exc:
            raise PgError(f"{exc}; the database was left as it is (nothing restored from {path})") from None
        kept = keep_path
    err = _replace_with(pg, name, path)
    if not err:
        return kept
    msg = f"pg_restore of {name} from {path} failed: {err}"
    if not kept:
        raise PgError(msg)
    back = _replace_with(pg, name, kept)
    if back:
        raise PgError(f"{msg}; putting back the database as it was from {kept} failed too: {back}; "
                      f"restore it by hand: pg_restore -d {name} {kept}", kept)
    raise PgError(f"{msg}; the database as it was is kept in {kept} and was put back", kept)


def main():
    """Module entry point."""
    module = AnsibleModule(
        argument_spec=dict(name=dict(type="str", required=True),
                           password=dict(type="str", no_log=True),
                           state=dict(type="str", default="present", choices=["present", "dumped", "restored"]),
                           path=dict(type="path"),
                           keep_path=dict(type="path")),
        required_if=[("state", "present", ["password"]), ("state", "dumped", ["path"]),
                     ("state", "restored", ["path"])],
        supports_check_mode=True)
    name, state, path = module.params["name"], module.params["state"], module.params["path"]
    if not NAME_RE.match(name):
        module.fail_json(msg=f"jincai_pg: name {name!r} must be a lower-case SQL identifier")
    pg = Pg(module)
    result = {"changed": False, "name": name}
    if state == "present":
        changed, what = present(module, pg, name, module.params["password"])
        result.update(changed=changed, actions=what)
        db_exists = pg.exists(name)[1]
        result["schema_version"] = pg.schema_version(name) if db_exists else 0
    elif state == "dumped":
        result.update(changed=True, path=path)
        if not module.check_mode:
            try:
                result["size"] = dump(name, path)
            except PgError as exc:
                module.fail_json(msg=str(exc))
        result["schema_version"] = pg.schema_version(name)
    else:
        if not os.path.isfile(path):
            module.fail_json(msg=f"jincai_pg: dump {path} to restore {name} from does not exist")
        result.update(changed=True, path=path, kept="")
        if not module.check_mode:
            try:
                result["kept"] = restore(pg, name, path, module.params["keep_path"])
            except PgError as exc:
                module.fail_json(msg=str(exc), kept=exc.kept)
            result["schema_version"] = pg.schema_version(name)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
