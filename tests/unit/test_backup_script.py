"""roles/backup's jincai-backup, run in a sandbox: the archive, the finance database dumps (pg_dump
stand-in), the copy to the province (rsync stand-in) and the status compliance reads; the restore
drill's row-for-row verification (pg_restore/psql stand-ins). Nothing leaves tmp_path."""

import json
import os
import subprocess

import jinja2
import pytest
import yaml
from ansible.plugins.filter.core import FilterModule

from jincai import ROOT

ROLE = os.path.join(ROOT, "roles", "backup")

FAKES = {
    # runuser -u postgres -- CMD...: run CMD as is
    "runuser": 'shift 3; exec "$@"',
    "systemctl": "exit 0",
    "logger": "exit 0",
    "psql": 'case "$*" in *pg_database*) printf "jincai_budget\\njincai_treasury\\n";; '
            '*count*) t="${@: -1}"; awk -v t="${t##* }" \'$1 == t {print $2}\' "$FAKE/count";; esac',
    "pg_dump": 'echo "dump of ${@: -1}"',
    "rsync": '[ -e "$FAKE/offline" ] && exit 12; n=$#; for f in "${@:3:$((n-3))}"; do cp "$f" "$FAKE/province/"; done',
    "createdb": "exit 0",
    "dropdb": "exit 0",
    # pg_restore --data-only -f - prints the dump's COPY blocks; a full restore succeeds
    "pg_restore": 'case "$*" in *--data-only*) printf "COPY public.budget_lines (id, amount) FROM stdin;\\n'
                  '1\\t10\\n2\\t20\\n\\\\.\\nCOPY public.units (id) FROM stdin;\\n7\\n\\\\.\\n";; *) cat >/dev/null;; esac',
}


@pytest.fixture
def sandbox(tmp_path):
    fake = tmp_path / "fake"
    (fake / "bin").mkdir(parents=True)
    (fake / "province").mkdir()
    for name, body in FAKES.items():
        path = fake / "bin" / name
        path.write_text(f"#!/bin/bash\n{body}\n", encoding="utf-8")
        path.chmod(0o755)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "f").write_text("x", encoding="utf-8")
    with open(os.path.join(ROLE, "defaults", "main.yml"), encoding="utf-8") as fh:
        values = yaml.safe_load(fh)
    values.update(inventory_hostname="220102-app1", backup_server="198.18.0.11", backup_is_server=False,
                  backup_paths=[str(tmp_path / "data")], backup_dir=str(tmp_path / "backups"),
                  backup_status_file=str(tmp_path / "backups" / "last-backup.json"), backup_db_keep=2)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(ROLE, "templates")), trim_blocks=True)
    env.filters.update(FilterModule().filters())
    script = tmp_path / "jincai-backup"
    script.write_text(env.get_template("jincai-backup.j2").render(**values), encoding="utf-8")
    (tmp_path / "backups").mkdir()

    def run(*args):
        envv = dict(os.environ, PATH=f"{fake / 'bin'}:{os.environ['PATH']}", FAKE=str(fake))
        return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, env=envv, check=False)

    run.fake, run.dir = fake, tmp_path / "backups"
    return run


def status(sandbox):
    return json.loads((sandbox.dir / "last-backup.json").read_text(encoding="utf-8"))


def test_every_database_is_dumped_checksummed_and_copied_to_the_province(sandbox):
    res = sandbox()
    assert res.returncode == 0, res.stdout + res.stderr
    dumps = sorted(p.name for p in (sandbox.dir / "db").iterdir())
    assert [d.split("-")[2] for d in dumps if d.endswith(".dump")] == ["jincai_budget", "jincai_treasury"]
    assert len([d for d in dumps if d.endswith(".dump.sha256")]) == 2
    copied = sorted(p.name for p in (sandbox.fake / "province").iterdir())
    assert set(dumps) <= set(copied) and any(c.endswith(".tar.gz") for c in copied)
    st = status(sandbox)
    assert st["offsite"] == "ok" and st["offsite_time"] == st["time"]
    assert st["databases"] == ["jincai_budget", "jincai_treasury"]


def test_a_failed_copy_is_recorded_and_keeps_the_last_good_time(sandbox):
    assert sandbox().returncode == 0
    good = status(sandbox)["offsite_time"]
    (sandbox.fake / "offline").write_text("", encoding="utf-8")
    res = sandbox()
    assert res.returncode == 1 and "FAILED" in res.stdout
    st = status(sandbox)
    assert st["offsite"] == "failed" and st["offsite_time"] == good
    assert sandbox("--local").returncode == 0
    assert status(sandbox)["offsite"] == "none" and status(sandbox)["offsite_time"] == good


def test_never_copied_is_zero(sandbox):
    (sandbox.fake / "offline").write_text("", encoding="utf-8")
    assert sandbox().returncode == 1
    assert status(sandbox)["offsite_time"] == 0


def test_the_restore_drill_checks_every_table_row_for_row(sandbox):
    assert sandbox().returncode == 0
    counts = sandbox.fake / "count"  # what the scratch database holds after the restore
    counts.write_text("public.budget_lines 2\npublic.units 1\n", encoding="utf-8")
    res = sandbox("restore-drill", "jincai_budget")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "restore drill OK" in res.stdout and "-> jincai_drill_jincai_budget (2 tables, 3 rows)" in res.stdout
    counts.write_text("public.budget_lines 1\npublic.units 1\n", encoding="utf-8")
    res = sandbox("restore-drill")  # every database with a dump
    assert res.returncode == 1
    assert "restore drill FAILED: jincai_budget public.budget_lines has 1 rows, the dump 2" in res.stdout
    assert "jincai_treasury public.budget_lines has 1 rows" in res.stdout


def test_the_restore_drill_refuses_a_corrupt_dump_and_odd_names(sandbox):
    assert sandbox().returncode == 0
    dump = sorted((sandbox.dir / "db").glob("*jincai_treasury*.dump"))[-1]
    dump.write_text("tampered", encoding="utf-8")
    res = sandbox("restore-drill", "jincai_treasury")
    assert res.returncode == 1 and "checksum" in res.stdout
    assert sandbox("restore-drill", "x; rm -rf /").returncode == 2


def test_old_dumps_are_pruned_per_database(sandbox):
    for _ in range(3):
        assert sandbox("--local").returncode == 0
        subprocess.run(["sleep", "1"], check=True)
    dumps = sorted((sandbox.dir / "db").glob("*jincai_budget-*.dump"))
    assert len(dumps) == 2
