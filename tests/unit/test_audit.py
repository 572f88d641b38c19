"""The ARA audit trail (plugins/callback/jincai_ara.py) and ``jincai history``, on real local runs.

One network (a directory inventory of local hosts in two sites) runs a playbook through jincai.run
(Mitogen strategy, the project's callbacks) and once as a plain ``ansible-playbook --check --limit``;
both land in ``<state>/ara/<network>/ansible.sqlite`` (through the run's journal, imported after it)
with user, controller, arguments, labels and diffs. A vault-encrypted variable used by a ``no_log`` task and a vault-encrypted extra-vars file
never reach the store: every text and every compressed blob of the sqlite file is searched.
"""

import io
import json
import os
import sqlite3
import subprocess
import sys
import zlib
from contextlib import redirect_stdout

import pytest

from jincai import audit
from jincai.audit import history as hist
from jincai.audit import journal
from jincai.run import run

BIN = os.path.dirname(sys.executable)
SECRET = "plaintext-vault-value-5d1e"
EXTRA_SECRET = "extra-vars-vault-value-77c2"
VAULT_PASSWORD = "unit-vault-pass"

PLAYBOOK = """
- name: Audit trail
  hosts: all
  gather_facts: false
  tasks:
    - name: Write the secret file
      ansible.builtin.copy:
        content: "{{ audit_secret }} {{ audit_extra_secret }}"
        dest: "{{ audit_dir }}/{{ inventory_hostname }}.secret"
        mode: "0600"
      no_log: true
    - name: Write the motd
      ansible.builtin.copy:
        content: "welcome to {{ inventory_hostname }} {{ audit_round }}\\n"
        dest: "{{ audit_dir }}/{{ inventory_hostname }}.motd"
        mode: "0644"
"""


def _vault_encrypt(text, pwfile, name):
    out = subprocess.run([os.path.join(BIN, "ansible-vault"), "encrypt_string", "--vault-id", f"unit@{pwfile}", "--encrypt-vault-id", "unit",
                          text, "--name", name], capture_output=True, text=True, check=True)
    return out.stdout


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    base = tmp_path_factory.mktemp("audit")
    inv = base / "unitnet"
    (inv / "group_vars" / "all").mkdir(parents=True)
    pwfile = base / "vault-password"
    pwfile.write_text(VAULT_PASSWORD + "\n")
    (inv / "group_vars" / "all" / "apps.yml").write_text("apps_release: unit-7\n")
    (inv / "group_vars" / "all" / "vault.yml").write_text(_vault_encrypt(SECRET, pwfile, "audit_secret"))
    extra = base / "extra.yml"
    extra.write_text(f"audit_extra_secret: {EXTRA_SECRET}\n")
    subprocess.run([os.path.join(BIN, "ansible-vault"), "encrypt", "--vault-id", f"unit@{pwfile}", "--encrypt-vault-id", "unit",
                    str(extra)],
                   check=True, capture_output=True)
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    hosts = {"all": {"children": {
        "site_220102": {"hosts": {"220102-app1": local, "220102-app2": local}},
        "site_220103": {"hosts": {"220103-app1": local}}}}}
    (inv / "hosts.yml").write_text(json.dumps(hosts))
    (base / "site.yml").write_text(PLAYBOOK)
    out = base / "out"
    out.mkdir()
    state = base / "state"
    env = {"JINCAI_ARA_DIR": "", "JINCAI_STATE_DIR": str(state), "ANSIBLE_CALLBACKS_ENABLED": "jincai_timer,jincai_ara",
           "ANSIBLE_VAULT_IDENTITY_LIST": f"unit@{pwfile}", "JINCAI_COMMIT": "abc1234"}
    first = run(str(base / "site.yml"), inventory=str(inv), diff=True,
                args=["-e", f"audit_dir={out}", "-e", "audit_round=1", "-e", f"@{extra}"], env=env)
    assert first.rc == 0, first.output[-3000:]
    plain = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", str(inv), str(base / "site.yml"), "--check",
                            "--diff", "--limit", "220102-app1", "-e", f"audit_dir={out}", "-e", "audit_round=2",
                            "-e", "apps_release=unit-8",
                            "-e", f"@{extra}"], capture_output=True, text=True, cwd=str(base),
                           env={**os.environ, **env, "ANSIBLE_CONFIG": os.path.join(hist.ROOT, "ansible.cfg")})
    assert plain.returncode == 0, plain.stdout[-3000:] + plain.stderr[-2000:]
    # both runs were recorded into their journal (jincai.audit.journal) and imported in the background:
    # wait for those imports (what jincai history does before it reads)
    left = journal.drain(str(state / "ara" / "unitnet" / journal.DIR_NAME))
    assert not left, left
    return {"inv": str(inv), "state": state, "env": env, "first": first}


def _store(network):
    return network["state"] / "ara" / "unitnet" / audit.DB_FILE


def _texts(db):
    """Every value of every table of the sqlite file, decompressed where ARA compressed it."""
    con = sqlite3.connect(db)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in con.execute(f'SELECT * FROM "{table}"'):  # noqa: S608 - names from sqlite_master
                for value in row:
                    if isinstance(value, bytes):
                        try:
                            value = zlib.decompress(value)
                        except zlib.error:
                            pass
                        yield value.decode("utf-8", "replace")
                    elif isinstance(value, str):
                        yield value
    finally:
        con.close()


def test_runs_land_in_the_networks_store_and_secrets_do_not(network):
    db = _store(network)
    assert db.is_file()
    raw = db.read_bytes()
    texts = list(_texts(str(db)))
    blob = "\n".join(texts)
    assert "welcome to 220102-app1 1" in blob  # the store holds the results (decompressed here) ...
    for secret in (SECRET, EXTRA_SECRET, VAULT_PASSWORD):
        assert secret.encode() not in raw, secret  # ... and no plaintext secret, compressed or not
        assert secret not in blob, secret
    assert "the output has been hidden" in blob  # the no_log task was recorded, censored


def test_history_shows_who_ran_what_with_labels_diffs_and_site_scope(network, monkeypatch):
    for key, value in network["env"].items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("ARA_BASE_DIR", raising=False)
    monkeypatch.delenv("ARA_DATABASE_NAME", raising=False)
    runs = hist.history(hist.client_for("unitnet"), site="220102", since=hist.parse_since("1h"), diff=True)
    assert len(runs) == 2
    newest, oldest = runs
    labels = {label["name"] for label in oldest["labels"]}
    assert {"network:unitnet", "release:unit-7", "commit:abc1234", "site:220102", "site:220103", "check:False",
            "diff:True"} <= labels
    assert {label["name"] for label in newest["labels"]} >= {"check:True", "subset:220102-app1", "site:220102",
                                                              "release:unit-8"}
    assert "release:unit-7" not in {label["name"] for label in newest["labels"]}  # -e apps_release wins
    assert "site:220103" not in {label["name"] for label in newest["labels"]}
    assert oldest["user"] and oldest["controller"] and oldest["status"] == "completed"
    changed = {(r["host"], r["task"]) for r in oldest["results"]}
    assert changed == {(h, t) for h in ("220102-app1", "220102-app2")
                       for t in ("Write the secret file", "Write the motd")}  # not 220103-app1
    motd = next(r for r in newest["results"] if r["task"] == "Write the motd")
    assert "-welcome to 220102-app1 1" in motd["diff"] and "+welcome to 220102-app1 2" in motd["diff"]
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert hist.main(["--site", "220102", "--since", "1h", "-i", network["inv"]]) == 0
    text = buf.getvalue()
    assert "2 runs on site 220102" in text and "(check, limit 220102-app1, release unit-8, commit abc1234" in text
    assert "CHANGED     220102-app2      Write the motd" in text


def test_history_refuses_bad_input_with_a_clear_message(capsys):
    assert hist.main(["--site", "2201", "-i", "inventories/lab"]) == 2
    assert "six-digit" in capsys.readouterr().err
    with pytest.raises(hist.HistoryError, match="--since yesterday"):
        hist.parse_since("yesterday")


def test_network_of_names_the_store():
    assert audit.network_of(os.path.join(hist.ROOT, "inventories", "lab")) == "lab"
    assert audit.network_of(os.path.join(hist.ROOT, "inventories", "jilin")) == "jilin"
    assert audit.network_of("localhost,") == "adhoc"


def test_a_looped_tasks_diff_is_read_from_its_items():
    """A looped task's result holds its items' diffs (content.results[*].diff), not a diff of its own."""
    from jincai.audit.history import render_diff, result_diffs

    content = {"changed": True, "results": [
        {"diff": [{"before": "a\n", "after": "a\nb\n", "before_header": "/etc/x"}]},
        {"diff": {"before": "c\n", "after": "d\n"}}, {"changed": False}]}
    text = render_diff(result_diffs(content))
    assert "+b" in text and "-c" in text and "+d" in text and "/etc/x" in text
    assert result_diffs({"diff": {"before": "1", "after": "2"}}) == [{"before": "1", "after": "2"}]
