"""The compliance collector changes nothing on a host: every command it runs is a known read-only query,
none asks a D-Bus-activated service (which would start it: systemd-hostnamed for hostnamectl), and it
opens no file for writing. Proven by running it here with every command and connection stubbed (what it
would run on a server), and by reading its source (what other paths could run)."""

import ast
import builtins
import json
import os
import re
import socket
import subprocess
import sys

import pytest

from jincai.compliance import collector

SOURCE = collector.__file__

#: The read-only queries the collector may run: argv[0] -> a full match of the rest of the argv.
READ_ONLY = {
    "systemd-detect-virt": r"",
    "systemctl": r"show --property=\S+|list-units --type=service,timer --all --no-legend --plain --no-pager"
                 r"|list-unit-files --type=service,timer --no-legend --no-pager",
    "ss": r"-Hlntup",
    "/usr/sbin/sshd": r"-T",
    "nft": r"-j list ruleset",
    "openssl": r"crl -noout -nextupdate -in \S+",
    "dpkg-query": r"-W -f \S.*",
    "runuser": r"-u postgres -- psql -XAtc select .*",
    "sudo": r"-n -l -U [a-z_][a-z0-9_-]*",
}
PEOPLE = [{"user": "root", "uid": 0, "gid": 0, "home": "/root", "shell": "/bin/bash", "password": "locked"},
          {"user": "jcaudit", "uid": 1001, "gid": 1001, "home": "/home/jcaudit", "shell": "/bin/bash",
           "password": "set"}]
CANNED = {
    "ss": 'tcp LISTEN 0 511 0.0.0.0:443 0.0.0.0:* users:(("nginx",pid=7,fd=6))\n',
    "systemctl": "DefaultLimitCORE=0\n",
}


def _allowed(argv):
    pattern = READ_ONLY.get(argv[0])
    return pattern is not None and re.fullmatch(pattern, " ".join(argv[1:]), re.S) is not None


@pytest.fixture
def stubbed(monkeypatch):
    """The collector with every command recorded (canned answers), no subprocess, socket or file write."""
    asked = []
    real_run = collector.run

    def fake_subprocess(argv, **_kw):
        asked.append(list(argv))
        return subprocess.CompletedProcess(argv, 0, CANNED.get(argv[0], ""), "")

    def no_write(path, mode="r", *args, **kwargs):
        assert not set(mode) & set("wax+"), f"the collector opened {path} with mode {mode}"
        return real_open(path, mode, *args, **kwargs)

    def no_connection(*_a, **_kw):
        raise OSError("no connections in a unit test")

    real_open = builtins.open
    monkeypatch.setattr(collector.subprocess, "run", fake_subprocess)
    monkeypatch.setattr(collector.subprocess, "Popen", lambda *a, **k: pytest.fail(f"Popen {a}"))
    monkeypatch.setattr(collector.os, "system", lambda *a: pytest.fail(f"os.system {a}"))
    monkeypatch.setattr(collector.socket, "create_connection", no_connection)
    monkeypatch.setattr(builtins, "open", no_write)
    monkeypatch.setattr(collector, "accounts", lambda: [dict(p) for p in PEOPLE])
    return asked, real_run


def test_every_command_of_a_collection_is_a_known_read_only_query(stubbed, monkeypatch, capsys):
    asked, _run = stubbed
    monkeypatch.setattr(sys, "argv", ["collector", json.dumps({"host": "220202-app1"})])
    collector.main()
    doc = json.loads(capsys.readouterr().out)
    assert doc["host"] == "220202-app1" and doc["facts"]["hostname"] == socket.gethostname()
    names = {a[0] for a in asked}
    assert {"systemctl", "ss", "/usr/sbin/sshd", "nft", "dpkg-query", "runuser", "sudo"} <= names, names
    assert not [a for a in asked if not _allowed(a)], [a for a in asked if not _allowed(a)]
    assert not names & collector.DBUS_ACTIVATED


@pytest.mark.parametrize("context", [
    {"host": "220202-app1", "readback": True, "manifest_paths": ["/etc/hostname", "/nonexistent/jcmp"],
     "manifest_units": ["ssh.service"]},
    {"host": "220202-app1", "manifest_paths": ["/etc/hostname", "/etc"]}])
def test_the_fast_drift_modes_read_only_too(stubbed, monkeypatch, capsys, context):
    """The read-back after site.yml (playbooks/manifest.yml) and the collection with a manifest's paths:
    the same known queries, the paths only read (sha256 of a file, lstat of anything)."""
    asked, _run = stubbed
    monkeypatch.setattr(sys, "argv", ["collector", json.dumps(context)])
    collector.main()
    doc = json.loads(capsys.readouterr().out)
    files = doc["files"] if context.get("readback") else doc["facts"]["manifest_files"]
    assert files["/etc/hostname"]["exists"] and len(files["/etc/hostname"]["sha256"]) == 64
    assert files.get("/nonexistent/jcmp", {"exists": False}) == {"exists": False}
    if not context.get("readback"):
        assert files["/etc"]["type"] == "directory" and "sha256" not in files["/etc"]
        assert "root" in doc["facts"]["groups"]
    assert not [a for a in asked if not _allowed(a)], [a for a in asked if not _allowed(a)]


def test_run_refuses_a_dbus_activated_tool_without_starting_anything(stubbed):
    asked, run = stubbed
    for tool in ("hostnamectl", "/usr/bin/timedatectl", "loginctl"):
        res = run([tool, "status"])
        assert res["rc"] == 126 and "D-Bus" in res["err"]
    assert asked == []


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _name(func):
    if isinstance(func, ast.Attribute):
        return f"{_name(func.value)}.{func.attr}"
    return func.id if isinstance(func, ast.Name) else ""


def test_the_source_runs_only_read_only_queries_and_writes_nothing():
    """What the stubbed run may not reach: every literal command in the source is a read-only query,
    subprocess is used by run() alone, and no call opens, moves or removes a file for writing."""
    with open(SOURCE, encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    commands = []
    for call in _calls(tree):
        name = _name(call.func)
        if name == "run" and call.args and isinstance(call.args[0], ast.List):
            commands.append([e.value if isinstance(e, ast.Constant) else "X" for e in call.args[0].elts])
        assert not re.match(r"os\.(remove|unlink|rename|replace|mkdir|makedirs|chmod|chown|symlink|link|"
                            r"truncate|write|system|popen|exec)", name), name
        assert not name.startswith(("shutil.", "tempfile.")), name
        if name == "open":
            mode = call.args[1] if len(call.args) > 1 else next((k.value for k in call.keywords if k.arg == "mode"),
                                                                 None)
            assert mode is None or (isinstance(mode, ast.Constant) and not set(mode.value) & set("wax+")), \
                ast.unparse(call)
    assert len(commands) >= 9, commands
    for argv in commands:
        assert argv[0] in READ_ONLY and os.path.basename(argv[0]) not in collector.DBUS_ACTIVATED, argv
    runner = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "run")
    inside = {id(c) for c in _calls(runner)}
    outside = [ast.unparse(c) for c in _calls(tree) if _name(c.func).startswith("subprocess.") and id(c) not in inside]
    assert not outside, outside



def test_the_host_name_comes_from_the_kernel():
    """Not from hostnamectl (systemd-hostnamed would start): socket.gethostname() is uname(2)."""
    with open(SOURCE, encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    facts = next(n for n in ast.walk(tree) if isinstance(n, ast.Dict)
                 and any(isinstance(k, ast.Constant) and k.value == "hostname" for k in n.keys))
    value = facts.values[[k.value for k in facts.keys].index("hostname")]
    assert ast.unparse(value) == "socket.gethostname()"


def test_loose_logs_reports_loose_files_and_not_symbolic_links(tmp_path, monkeypatch):
    """A 0644 log file is reported; Debian's /var/log/README (a link into /usr/share/doc, mode 0777 as a
    link, 0644 as its target) is not a log file and is not, as the base role's sweep (find -type f) skips it."""
    doc = tmp_path / "README.logs"
    doc.write_text("doc", encoding="ascii")
    doc.chmod(0o644)
    logs = tmp_path / "log"
    logs.mkdir()
    (logs / "README").symlink_to(doc)
    (logs / "app.log").write_text("x", encoding="ascii")
    (logs / "app.log").chmod(0o644)
    (logs / "ok.log").write_text("x", encoding="ascii")
    (logs / "ok.log").chmod(0o640)
    monkeypatch.setattr(collector, "LOG_DIR", str(logs))
    assert collector.loose_logs() == {str(logs / "app.log"): "0644"}
