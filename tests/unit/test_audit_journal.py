"""The audit journal (jincai.audit.journal; plugins/callback/jincai_ara.py records into it by default).

Pure parts: the journal file (start/end lines, 0600, the writer's lock), the stand-in client ARA's
callback talks to, the replay's id mapping, torn and incomplete journals. Then real runs on local
hosts (Mitogen strategy, as ansible.cfg sets it): the same playbook recorded by ARA's own client
(``direct``) and through the journal lands in the store with the same hosts, tasks, results (diffs,
loop items, skipped, ignored failures, a ``no_log`` result censored), files and labels; a run killed
outright leaves its journal, which the next import takes (playbook ``expired``); a journal whose
server cannot be reached stays, and holds no secret.
"""

import fcntl
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import zlib

import pytest

from jincai import audit
from jincai.audit import journal
from jincai.run import run
from jincai.run.child import RUN_TOKEN_ENV, reap

BIN = os.path.dirname(sys.executable)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ------------------------------------------------------------------------------------------ pure


def test_journal_file_lines_mode_and_lock(tmp_path):
    j = journal.Journal(str(tmp_path / "journal"), "offline")
    assert j.close() is None and not os.path.exists(tmp_path / "journal")  # nothing recorded: no file
    j = journal.Journal(str(tmp_path / "journal"), "offline")
    j.write({"op": "post", "url": "/api/v1/playbooks", "ref": "jincai-ref-1", "data": {"path": "/x.yml"}})
    j.flush()
    assert oct(os.stat(j.path).st_mode & 0o777) == "0o600"
    # another process cannot take the run's lock while it lasts (what the importer checks)
    probe = ("import fcntl, os, sys\nfd = os.open(sys.argv[1], os.O_RDWR)\n"
             "try:\n    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept OSError:\n    sys.exit(3)\n")
    assert subprocess.run([sys.executable, "-c", probe, j.path], check=False).returncode == 3
    path = j.close()
    assert subprocess.run([sys.executable, "-c", probe, path], check=False).returncode == 0
    header, records, complete = journal.read(path)
    assert header["op"] == "start" and header["target"] == "offline" and complete
    assert records == [{"op": "post", "url": "/api/v1/playbooks", "ref": "jincai-ref-1", "data": {"path": "/x.yml"}}]
    with pytest.raises(ValueError):
        j.write({"op": "post"})


def test_a_torn_last_line_is_dropped_and_a_headless_file_refused(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"op":"start","target":"offline"}\n{"op":"post","url":"/api/v1/playbooks","ref":"jincai-ref-1",'
                    '"data":{}}\n{"op":"patch","url":"/api/v1/play')
    header, records, complete = journal.read(str(path))
    assert len(records) == 1 and not complete
    path.write_text('{"op":"post"}\n')
    with pytest.raises(journal.ImportFailed, match="no start record"):
        journal.read(str(path))


class _Recording:
    """A fake ARA API: numbered ids, every call kept."""

    def __init__(self):
        self.calls, self.n = [], 100

    def post(self, url, **data):
        self.n += 1
        self.calls.append(("post", url, data))
        return {"id": self.n}

    def patch(self, url, **data):
        self.calls.append(("patch", url, data))
        return {}

    def delete(self, url):
        self.calls.append(("delete", url, None))


def test_the_stand_in_client_answers_what_aras_callback_reads_back(tmp_path):
    j = journal.Journal(str(tmp_path), "offline")
    client = journal.JournalClient(j)
    pb = client.post("/api/v1/playbooks", path="/p.yml", status="running", arguments={"check": False})
    assert pb["id"].startswith(journal.REF_PREFIX) and pb["labels"] == [] and pb["name"] is None
    assert "arguments" not in pb  # big fields are not kept in memory
    pb2 = client.patch(f"/api/v1/playbooks/{pb['id']}", labels=["site:220102", "check:False"])
    assert pb2["labels"] == [{"name": "site:220102"}, {"name": "check:False"}] and pb2["path"] == "/p.yml"
    task = client.post("/api/v1/tasks", name="t", uuid="u1", status="running", play="jincai-ref-9", started="s")
    assert client.patch(f"/api/v1/tasks/{task['id']}", status="failed")["status"] == "failed"
    res = client.post("/api/v1/results", task=task["id"], content={"diff": {"after": "x"}})
    assert res["id"] != task["id"] and res["id"] not in client._records  # results are not kept
    path = j.close()
    _, records, _ = journal.read(path)
    assert [r["op"] for r in records] == ["post", "patch", "post", "patch", "post"]
    assert records[-1]["data"]["content"] == {"diff": {"after": "x"}}


def test_replay_maps_stand_in_ids_in_fields_urls_and_delegations():
    ref = journal.REF_PREFIX
    records = [
        {"op": "post", "url": "/api/v1/playbooks", "ref": f"{ref}1", "data": {"path": "/p.yml", "status": "running"}},
        {"op": "post", "url": "/api/v1/hosts", "ref": f"{ref}2", "data": {"name": "h1", "playbook": f"{ref}1"}},
        {"op": "post", "url": "/api/v1/hosts", "ref": f"{ref}3", "data": {"name": "h2", "playbook": f"{ref}1"}},
        {"op": "post", "url": "/api/v1/results", "ref": f"{ref}4", "data": {
            "playbook": f"{ref}1", "host": f"{ref}2", "delegated_to": [f"{ref}3"],
            "content": {"msg": f"{ref}2 is only text here"}}},
        {"op": "patch", "url": f"/api/v1/hosts/{ref}2", "data": {"ok": 1}},
        {"op": "patch", "url": f"/api/v1/playbooks/{ref}1", "data": {"status": "completed", "ended": "e"}},
    ]
    fake = _Recording()
    count, playbook = journal.replay(records, fake, complete=True)
    assert count == 6 and playbook == 101
    assert fake.calls[1] == ("post", "/api/v1/hosts", {"name": "h1", "playbook": 101})
    result = fake.calls[3][2]
    assert result["host"] == 102 and result["delegated_to"] == [103] and result["playbook"] == 101
    assert result["content"] == {"msg": f"{ref}2 is only text here"}  # content is never rewritten
    assert fake.calls[4][1] == "/api/v1/hosts/102" and fake.calls[5][1] == "/api/v1/playbooks/101"
    # the same journal cut before the playbook's end: marked expired, as ARA marks an interrupted run
    fake = _Recording()
    journal.replay(records[:4], fake, complete=False)
    assert fake.calls[-1][:2] == ("patch", "/api/v1/playbooks/101") and fake.calls[-1][2]["status"] == "expired"


def test_auto_records_direct_only_in_an_awx_job_sending_to_a_server():
    awx = {"AWX_HOST": "https://awx.example"}
    assert journal.recording("auto", "offline", {}) == "journal"
    assert journal.recording("auto", "http", {}) == "journal"  # the control node with an ARA server
    assert journal.recording("auto", "offline", awx) == "journal"
    assert journal.recording("auto", "http", awx) == "direct"  # the job's files go with its EE
    assert journal.recording("journal", "http", awx) == "journal"
    assert journal.recording("direct", "offline", {}) == "direct"


def test_the_importer_gets_aras_settings_and_nothing_else_of_the_runs_environment(monkeypatch):
    monkeypatch.setenv("JINCAI_BOOTSTRAP_ROOT_PASSWORD", "s3cret")
    monkeypatch.setenv("JINCAI_RUN_TOKEN", "abc")
    monkeypatch.setenv("ARA_API_SERVER", "http://127.0.0.1:1")
    env = journal.importer_env({"ARA_API_PASSWORD": "p"})
    assert "JINCAI_BOOTSTRAP_ROOT_PASSWORD" not in env and "JINCAI_RUN_TOKEN" not in env  # jincai.run reaps by the token
    assert env["ARA_API_SERVER"] == "http://127.0.0.1:1" and env["ARA_API_PASSWORD"] == "p"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == ROOT


# ------------------------------------------------------------------------------------ real runs

PLAYBOOK = """
- name: Journal equivalence
  hosts: all
  gather_facts: false
  tasks:
    - name: Write the motd
      ansible.builtin.copy:
        content: "welcome to {{ inventory_hostname }} {{ round_n }}\\n"
        dest: "{{ out }}/{{ inventory_hostname }}.motd"
        mode: "0644"
      notify: Motd changed
    - name: Probe
      ansible.builtin.command: "true"
      changed_when: false
    - name: Skipped on one host
      ansible.builtin.debug:
        msg: "only {{ inventory_hostname }}"
      when: inventory_hostname.endswith("1")
    - name: A failure ignored
      ansible.builtin.command: "false"
      changed_when: false
      ignore_errors: true
    - name: Lines
      ansible.builtin.lineinfile:
        path: "{{ out }}/{{ inventory_hostname }}.lines"
        line: "{{ item }} {{ round_n }}"
        create: true
        mode: "0644"
      loop: [a, b]
    - name: Hidden
      ansible.builtin.debug:
        msg: "{{ journal_secret }}"
      no_log: true
  handlers:
    - name: Motd changed
      ansible.builtin.debug:
        msg: changed
"""
SECRET = "journal-secret-3f9a"


def _project(base):
    inv = base / "jnet"
    inv.mkdir(parents=True)
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    (inv / "hosts.yml").write_text(json.dumps({"all": {"children": {
        "site_220102": {"hosts": {"220102-app1": local, "220102-app2": local}}}}}))
    (base / "play.yml").write_text(PLAYBOOK)
    return str(base / "play.yml"), str(inv)


def _run(base, store, round_n, **env):
    """One run of the playbook recording into ``store``, writing into ``<store>-out`` (fresh for the
    store's first run: two runs of the same round into two stores change the same things)."""
    book, inv = str(base / "play.yml"), str(base / "jnet")
    out = f"{store}-out"
    os.makedirs(out, exist_ok=True)
    res = run(book, inventory=inv, diff=True, args=["-e", f"out={out}", "-e", f"round_n={round_n}",
                                                    "-e", f"journal_secret={SECRET}"],
              env={"ANSIBLE_CALLBACKS_ENABLED": "jincai_timer,jincai_ara", "JINCAI_ARA_DIR": str(store),
                   # ARA's own client (direct) takes ARA_* of the environment first, which another test's
                   # client_for may have set in this process
                   "ARA_BASE_DIR": str(store), "ARA_DATABASE_NAME": os.path.join(str(store), audit.DB_FILE),
                   "JINCAI_COMMIT": "c0ffee", **env})
    assert res.rc == 0, res.output[-3000:]
    return res


def _unz(value):
    if isinstance(value, bytes):
        try:
            return json.loads(zlib.decompress(value))
        except (zlib.error, ValueError):
            return value
    return value


VOLATILE = {"id", "created", "updated", "started", "ended", "duration", "uuid", "playbook_id", "play_id", "file_id",
            "task_id", "host_id", "start", "end", "delta", "_original_basename", "content_id", "sha1", "arguments"}


def _clean(value):
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _normal(text, store):
    """A result's text without what differs between two runs of the same thing: their output
    directories and the controller's temporary action directories."""
    return re.sub(r"ansible_mitogen_action_[0-9a-f]+|ansible-tmp-[0-9.-]+", "TMP", text.replace(f"{store}-out", "OUT"))


def _snapshot(store):
    """The newest playbook of a store, without ids and times (and its run's output directory named
    OUT): hosts, tasks, results, files, labels."""
    db = os.path.join(store, audit.DB_FILE)
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        pid = con.execute("SELECT id FROM playbooks ORDER BY id DESC LIMIT 1").fetchone()[0]
        pb = dict(con.execute("SELECT * FROM playbooks WHERE id = ?", (pid,)).fetchone())
        hosts = {r["id"]: r["name"] for r in con.execute("SELECT id, name FROM hosts WHERE playbook_id = ?", (pid,))}
        tasks = {r["id"]: r["name"] for r in con.execute("SELECT id, name FROM tasks WHERE playbook_id = ?", (pid,))}
        snap = {
            "playbook": _clean({k: _unz(v) for k, v in pb.items()}),
            "labels": sorted(r[0] for r in con.execute(
                "SELECT l.name FROM labels l JOIN playbooks_labels pl ON pl.label_id = l.id WHERE pl.playbook_id = ?", (pid,))),
            "hosts": sorted(_clean({k: _unz(v) for k, v in dict(r).items()}).__repr__() for r in con.execute(
                "SELECT * FROM hosts WHERE playbook_id = ?", (pid,))),
            "tasks": sorted(_clean({k: _unz(v) for k, v in dict(r).items()}).__repr__() for r in con.execute(
                "SELECT * FROM tasks WHERE playbook_id = ?", (pid,))),
            "results": sorted((hosts[r["host_id"]], tasks[r["task_id"]], r["status"], r["changed"], r["ignore_errors"],
                               _normal(json.dumps(_clean(_unz(r["content"])), sort_keys=True), store))
                              for r in con.execute(
                "SELECT * FROM results WHERE playbook_id = ?", (pid,))),
            "files": sorted(r[0] for r in con.execute("SELECT path FROM files WHERE playbook_id = ?", (pid,))),
        }
        return snap
    finally:
        con.close()


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    base = tmp_path_factory.mktemp("journal")
    _project(base)
    return base


def test_journal_records_what_aras_own_client_records(project):
    direct, journaled = project / "direct", project / "journaled"
    _run(project, direct, 1, JINCAI_ARA_RECORDING="direct")
    _run(project, journaled, 1)  # journal (the default)
    # the first run into a new store waits for its import (which creates the store)
    assert not journal.pending(str(journaled / journal.DIR_NAME))
    assert (journaled / audit.DB_FILE).is_file()
    out = subprocess.run([os.path.join(BIN, "jincai"), "history", "--site", "220102", "--since", "1h", "--json",
                          "-i", str(project / "jnet")], capture_output=True, text=True, timeout=300, check=False,
                         env={**{k: v for k, v in os.environ.items() if not k.startswith("ARA_")},
                              "JINCAI_ARA_DIR": str(journaled)})  # (another test's client_for set ARA_*)
    assert out.returncode == 0, out.stderr
    runs = json.loads(out.stdout)
    assert len(runs) == 1 and {(r["host"], r["task"]) for r in runs[0]["results"]} >= {
        ("220102-app1", "Write the motd"), ("220102-app2", "Lines")}
    assert not journal.pending(str(journaled / journal.DIR_NAME))  # imported, removed
    a, b = _snapshot(str(direct)), _snapshot(str(journaled))
    assert len(a["results"]) == 2 * 6 + 2  # 6 tasks on 2 hosts, the handler on both (motd changed)
    assert b["playbook"]["status"] == "completed" and {"site:220102", "network:jnet", "commit:c0ffee",
                                                       "diff:True", "check:False"} <= set(b["labels"])
    for key in a:
        assert a[key] == b[key], key
    statuses = {(r[1], r[2]) for r in b["results"]}
    assert ("Skipped on one host", "skipped") in statuses and ("A failure ignored", "failed") in statuses
    motd = [json.loads(r[5]) for r in b["results"] if r[1] == "Write the motd"]
    assert all("welcome to" in motd_r["diff"][0]["after"] for motd_r in motd)  # the diff is recorded
    blob = "\n".join(r[5] for r in b["results"])
    assert SECRET not in blob and "the output has been hidden" in blob


def test_a_later_run_is_imported_in_the_background_and_jincai_history_waits_for_it(project, tmp_path):
    store = tmp_path / "store"
    _run(project, store, 1)  # creates the store (waits for its import)
    _run(project, store, 2)  # imported by a process of its own, after ansible-playbook exited
    out = subprocess.run([os.path.join(BIN, "jincai"), "history", "--site", "220102", "--since", "1h", "--diff",
                          "-i", str(project / "jnet")], capture_output=True, text=True, timeout=300, check=False,
                         env={**{k: v for k, v in os.environ.items() if not k.startswith("ARA_")},
                              "JINCAI_ARA_DIR": str(store)})
    assert out.returncode == 0, out.stderr
    assert "2 runs on site 220102" in out.stdout and "+welcome to 220102-app1 2" in out.stdout
    assert not journal.pending(str(store / journal.DIR_NAME))


def test_a_killed_runs_journal_is_imported_next_time_as_expired(project, tmp_path):
    store = tmp_path / "store"
    # a run's recorder killed outright (SIGKILL: no atexit, no end line) after two tasks' records
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {ROOT!r})
        from jincai.audit import journal
        j = journal.Journal({str(store / journal.DIR_NAME)!r}, "offline")
        c = journal.JournalClient(j)
        pb = c.post("/api/v1/playbooks", path="/killed.yml", status="running", arguments={{}},
                    ansible_version="2.19", client_version="1.8.0", python_version="3.11", controller="c", user="u",
                    started="2026-12-01T00:00:00+00:00")
        play = c.post("/api/v1/plays", name="p", status="running", uuid="11111111-2222-3333-4444-555555555555",
                      playbook=pb["id"], started="2026-12-01T00:00:01+00:00")
        f = c.post("/api/v1/files", playbook=pb["id"], path="/killed.yml", content="- hosts: all")
        h = c.post("/api/v1/hosts", name="220102-app1", playbook=pb["id"])
        t = c.post("/api/v1/tasks", name="t1", uuid="aaaaaaaa-2222-3333-4444-555555555555", status="running",
                   action="command", play=play["id"], playbook=pb["id"], file=f["id"], tags=[], lineno=3,
                   handler=False, started="2026-12-01T00:00:02+00:00")
        c.post("/api/v1/results", playbook=pb["id"], task=t["id"], host=h["id"], delegated_to=[], play=play["id"],
               content={{"rc": 0}}, status="ok", started="2026-12-01T00:00:02+00:00",
               ended="2026-12-01T00:00:03+00:00", changed=False, ignore_errors=False)
        j.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    assert subprocess.run([sys.executable, "-c", script], check=False).returncode == -signal.SIGKILL
    left = journal.pending(str(store / journal.DIR_NAME))
    assert len(left) == 1
    assert not journal.drain(str(store / journal.DIR_NAME))
    con = sqlite3.connect(store / audit.DB_FILE)
    try:
        assert con.execute("SELECT path, status FROM playbooks").fetchall() == [("/killed.yml", "expired")]
        assert con.execute("SELECT count(*) FROM results").fetchone()[0] == 1
    finally:
        con.close()


def test_a_live_runs_journal_is_left_to_it(tmp_path):
    j = journal.Journal(str(tmp_path / "store" / journal.DIR_NAME), "offline")
    j.write({"op": "post", "url": "/api/v1/playbooks", "ref": "jincai-ref-1", "data": {}})
    j.flush()
    out = subprocess.run([sys.executable, "-m", "jincai.audit.journal", "import", j.directory], capture_output=True,
                         text=True, env=journal.importer_env(), check=False)
    assert json.loads(out.stdout)["live"] == 1 and os.path.exists(j.path)
    j.close()


def test_an_unreachable_server_keeps_the_journal_and_the_journal_keeps_no_secret(project, tmp_path):
    store = tmp_path / "store"
    # port 9 on loopback: nothing listens; the run itself never talks to ARA, so it succeeds
    _run(project, store, 2, ARA_API_CLIENT="http", ARA_API_SERVER="http://127.0.0.1:9", JINCAI_ARA_IMPORT="wait")
    left = journal.pending(str(store / journal.DIR_NAME))
    assert len(left) == 1, os.listdir(store / journal.DIR_NAME)
    text = open(left[0], encoding="utf-8").read()
    assert "welcome to 220102-app1 2" in text and "the output has been hidden" in text
    assert SECRET not in text and "extra_vars" in text and "Not saved by ARA" in text
    assert json.loads(text.splitlines()[0])["target"] == "http://127.0.0.1:9"
    log = open(store / journal.DIR_NAME / journal.LOG_NAME, encoding="utf-8").read()
    assert "not imported" in log and "127.0.0.1:9" in log
    with open(left[0], "r+", encoding="utf-8") as fh:  # no run holds it any more
        fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_a_real_run_killed_outright_is_in_the_store_after_the_next_import(project, tmp_path):
    """ansible-playbook SIGKILLed in its second task: the journal it leaves holds the first task's
    result and the second's start; the next import records the run as expired."""
    store = tmp_path / "store"
    (tmp_path / "sleep.yml").write_text(textwrap.dedent("""
        - name: Killed
          hosts: 220102-app1
          gather_facts: false
          tasks:
            - name: Quick
              ansible.builtin.command: "true"
              changed_when: false
            - name: Long
              ansible.builtin.command: sleep 120
              changed_when: false
    """))
    token = f"journal-kill-{os.getpid()}-{time.monotonic_ns()}"
    env = {**os.environ, "ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg"), "JINCAI_ARA_DIR": str(store),
           "ANSIBLE_CALLBACKS_ENABLED": "jincai_ara", "PATH": BIN + os.pathsep + os.environ["PATH"],
           RUN_TOKEN_ENV: token}
    proc = subprocess.Popen([os.path.join(BIN, "ansible-playbook"), "-i", str(project / "jnet"),
                             str(tmp_path / "sleep.yml")], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            files = journal.pending(str(store / journal.DIR_NAME))
            if files and '"name":"Long"' in open(files[0], encoding="utf-8").read():
                break
            time.sleep(0.5)
        else:
            pytest.fail("the run never reached its second task")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # ansible-playbook and what it started (its own session)
        proc.wait()
        reap(token)  # Mitogen's multiplexer, in a session of its own, outlives ansible-playbook (as jincai.run reaps it)
    assert not (store / audit.DB_FILE).exists()  # never imported: killed before its end
    # jincai history imports what is pending before it reads
    out = subprocess.run([os.path.join(BIN, "jincai"), "history", "--since", "1h", "--json", "-i", str(project / "jnet")],
                         capture_output=True, text=True, timeout=300, check=False,
                         env={**{k: v for k, v in os.environ.items() if not k.startswith("ARA_")},
                              "JINCAI_ARA_DIR": str(store)})
    assert out.returncode == 0, out.stderr
    assert [r["status"] for r in json.loads(out.stdout)] == ["expired"]
    assert not journal.pending(str(store / journal.DIR_NAME))
    con = sqlite3.connect(store / audit.DB_FILE)
    try:
        assert con.execute("SELECT status FROM playbooks").fetchall() == [("expired",)]
        assert sorted(con.execute("SELECT name, status FROM tasks").fetchall()) == [("Long", "running"),
                                                                                    ("Quick", "completed")]
        assert con.execute("SELECT count(*) FROM results").fetchone()[0] == 1
    finally:
        con.close()
