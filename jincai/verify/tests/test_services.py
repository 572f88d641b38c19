"""The province services host: the collector receives every machine room's logs, every host's backups
have their directory, the artifact repository holds the release's artifacts. Its nginx, rsyslog input,
NTP service and listeners are judged by test_baseline.py (area ``services``).
"""

from jincai.verify import support


def test_logs_received(host, check):
    """A log of the source host was written at the collector in the last 24 hours."""
    d = check.params["dir"]
    if not host.file(d).is_directory:
        support.fail(check, f"no {d}")
    recent = host.run("find %s -name '*.log' -mmin -1440", d).stdout.split()
    support.expect(check, bool(recent), f"nothing written in {d} for 24 h")


def test_backup_received(host, check):
    """The source host's off-site backup directory exists (created by roles/backup for every machine room)."""
    d = check.params["dir"]
    support.expect(check, host.file(d).is_directory, f"no {d}")


def test_artifact_present(host, check):
    """The repository holds the artifact of the release's version of the application."""
    path = check.params["path"]
    f = host.file(path)
    support.expect(check, f.exists and f.size > 0, f"{path} missing" if not f.exists else f"{path} empty")
