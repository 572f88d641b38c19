"""The jincai_pg module's restore keeps a dump of the database as it is, so a failed restore loses
nothing. Run for real: the module (library/jincai_pg.py, as Ansible runs it) against a throw-away
PostgreSQL cluster started on a Unix socket in a temporary directory (no TCP listener)."""

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from jincai import ROOT

MODULE = os.path.join(ROOT, "library", "jincai_pg.py")
BINDIRS = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


def _as_postgres(*argv, **kw):
    return subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True,
                          check=False, **kw)


@pytest.fixture(scope="module")
def cluster():
    """A PostgreSQL cluster of its own; yields the socket directory (PGHOST)."""
    if not BINDIRS or os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("needs root and PostgreSQL server binaries (/usr/lib/postgresql/*/bin)")
    bindir = BINDIRS[-1]
    base = tempfile.mkdtemp(prefix="jincai-pg-")
    os.chmod(base, 0o755)
    shutil.chown(base, "postgres", "postgres")
    data = os.path.join(base, "data")
    res = _as_postgres(f"{bindir}/initdb", "-D", data, "--auth-local=peer", "--auth-host=reject", "-E", "UTF8", "--no-sync")
    assert res.returncode == 0, res.stderr
    res = _as_postgres(f"{bindir}/pg_ctl", "-D", data, "-w", "-l", os.path.join(base, "log"), "-o",
                       f"-k {base} -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
                       "start")
    assert res.returncode == 0, res.stderr + res.stdout
    try:
        yield base
    finally:
        _as_postgres(f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


def _module(cluster, tmp_path, **args):
    """Run the module as Ansible does (arguments file); return its JSON result."""
    argsfile = tmp_path / "args.json"
    argsfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    out = subprocess.run([sys.executable, MODULE, str(argsfile)], capture_output=True, text=True, check=False,
                         env=dict(os.environ, PGHOST=cluster))
    return json.loads(out.stdout)


def _sql(cluster, db, query):
    res = _as_postgres("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", query,
                       env=dict(os.environ, PGHOST=cluster))
    assert res.returncode == 0, res.stderr
    return res.stdout.split()


@pytest.fixture()
def database(cluster, tmp_path):
    """Database jincai_t with rows 'a' (backed up) and then 'b' (written after the backup)."""
    _sql(cluster, "postgres", "DROP DATABASE IF EXISTS jincai_t WITH (FORCE)")
    assert not _module(cluster, tmp_path, name="jincai_t", password="Secr3t-pass").get("failed")
    _sql(cluster, "jincai_t", "CREATE TABLE t (v text); INSERT INTO t VALUES ('a')")
    backup = str(tmp_path / "backups" / "before.dump")
    res = _module(cluster, tmp_path, name="jincai_t", state="dumped", path=backup)
    assert res["changed"] and os.path.getsize(backup) == res["size"] > 0, res
    _sql(cluster, "jincai_t", "INSERT INTO t VALUES ('b')")
    return backup


def _rows(cluster):
    return sorted(_sql(cluster, "jincai_t", "SELECT v FROM t"))


def test_a_restore_keeps_the_database_as_it_was_and_a_failed_one_loses_nothing(cluster, tmp_path, database):
    # One database through every case (each module run costs an Ansible import; the suite has a budget).
    keep = str(tmp_path / "backups" / "before-restore.dump")
    # 1. the database cannot be kept: nothing is dropped, nothing restored
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    res = _module(cluster, tmp_path, name="jincai_t", state="restored", path=database,
                  keep_path=str(blocker / "sub" / "keep.dump"))
    assert res.get("failed") and "the database was left as it is (nothing restored from" in res["msg"], res
    assert _rows(cluster) == ["a", "b"]
    # 2. the restore itself fails: the kept dump is put back, and stays
    broken = tmp_path / "broken.dump"
    broken.write_bytes(b"PGDMP not really a dump")
    res = _module(cluster, tmp_path, name="jincai_t", state="restored", path=str(broken), keep_path=keep)
    assert res.get("failed"), res
    assert f"pg_restore of jincai_t from {broken} failed" in res["msg"]
    assert f"the database as it was is kept in {keep} and was put back" in res["msg"]
    assert res["kept"] == keep and _rows(cluster) == ["a", "b"]
    # 3. the restore works: the backup's rows, and a 0600 dump of what it replaced
    res = _module(cluster, tmp_path, name="jincai_t", state="restored", path=database, keep_path=keep)
    assert not res.get("failed") and res["kept"] == keep and _rows(cluster) == ["a"], res
    assert oct(os.stat(keep).st_mode & 0o777) == "0o600"
    # 4. that kept dump holds row 'b', written after the backup
    res = _module(cluster, tmp_path, name="jincai_t", state="restored", path=keep)
    assert not res.get("failed") and res["kept"] == "" and _rows(cluster) == ["a", "b"], res
