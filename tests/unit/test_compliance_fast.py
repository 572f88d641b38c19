"""Fast drift (#14): the jincai_manifest callback in real ``ansible-playbook`` runs on this machine
(connection local, files in a temporary directory), the manifest read back by playbooks/manifest.yml, the
source digest, the comparison of every drift kind, the fallback cases and the ``jincai compliance``
wiring with the playbook runs stubbed (they need the lab)."""

import json
import os
import shutil
import stat
import subprocess
import sys

import pytest

import jincai.compliance as comp
from jincai import ROOT
from jincai.compliance import collector, manifest, model
from jincai.source import inventory as invmod

LAB = os.path.join(ROOT, "inventories", "lab")
OK_HOST, FAILED_HOST = "220102-app1", "220103-app1"

ROLE_TASKS = """---
- name: Render a managed file
  ansible.builtin.copy:
    content: "managed = 1\\n"
    dest: "{{ probe_dir }}/managed.conf"
    mode: "0640"
- name: Render a file with a secret
  ansible.builtin.copy:
    content: "password = {{ probe_secret }}\\n"
    dest: "{{ probe_dir }}/secret.conf"
    mode: "0600"
  no_log: true
- name: Render the application configs
  ansible.builtin.copy:
    content: "app = {{ item }}\\n"
    dest: "{{ probe_dir }}/{{ item }}.env"
    mode: "0644"
  loop: [budget, treasury]
- name: Create the state directory
  ansible.builtin.file:
    path: "{{ probe_dir }}/state"
    state: directory
    mode: "0750"
- name: Render a file a later line edits
  ansible.builtin.copy:
    content: "edited = 0\\n"
    dest: "{{ probe_dir }}/edited.conf"
    mode: "0644"
- name: Edit one line of it
  ansible.builtin.lineinfile:
    path: "{{ probe_dir }}/edited.conf"
    line: "extra = 1"
- name: Query something (a read-only probe)
  ansible.builtin.command: "true"
  changed_when: false
- name: Run a command that changes what it changes
  ansible.builtin.command: "true"
- name: Fail on one host, rescued
  when: inventory_hostname == probe_failing
  block:
    - name: Fail
      ansible.builtin.fail:
        msg: broken on purpose
  rescue:
    - name: Carry on
      ansible.builtin.debug:
        msg: rescued
"""


def _playbook(hosts):
    return f"""---
- name: Provision the probe
  hosts: {hosts}
  gather_facts: false
  roles:
    - role: probe

- name: Read back (the last play of site.yml)
  ansible.builtin.import_playbook: {ROOT}/playbooks/manifest.yml
"""


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """A copy of the lab inventory whose hosts are this machine (connection local), a role writing into
    a temporary directory, and one real run of it with the manifest play over two hosts (one of them
    with a rescued failure) and the jincai_manifest callback."""
    base = tmp_path_factory.mktemp("fast")
    inv = base / "inventory"
    inv.mkdir()
    shutil.copytree(os.path.join(LAB, "source"), inv / "source")
    shutil.copy(os.path.join(LAB, "jincai.yml"), inv / "jincai.yml")
    (inv / "group_vars" / "all").mkdir(parents=True)
    shutil.copy(os.path.join(LAB, "group_vars", "all", "vault.yml"), inv / "group_vars" / "all" / "vault.yml")
    # every host of the copy is this machine: no task can reach a lab host
    (inv / "group_vars" / "all" / "connection.yml").write_text(
        f"ansible_connection: local\nansible_become: false\nansible_python_interpreter: {sys.executable}\n")
    (base / "roles" / "probe" / "tasks").mkdir(parents=True)
    (base / "roles" / "probe" / "tasks" / "main.yml").write_text(ROLE_TASKS)
    (base / "site.yml").write_text(_playbook(f"{OK_HOST}:{FAILED_HOST}"))
    files = base / "files"
    files.mkdir()
    state = base / "state"
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_CALLBACKS_ENABLED="jincai_manifest",
               ANSIBLE_ROLES_PATH=str(base / "roles"), ANSIBLE_STRATEGY="linear", JINCAI_STATE_DIR=str(state))

    def play(*args):
        argv = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(inv),
                "--limit", f"{OK_HOST},{FAILED_HOST}", str(base / "site.yml"), *args]
        return subprocess.run(argv, cwd=str(base), env=env, capture_output=True, text=True, timeout=300, check=False)

    extra = ["-e", f"probe_dir={files}", "-e", "probe_secret=s3cr3t-value", "-e", f"probe_failing={FAILED_HOST}"]
    proc = play(*extra)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"base": base, "inv": str(inv), "files": files, "state": state, "play": play, "extra": extra,
            "stdout": proc.stdout, "env": env}


def _manifest_path(run, host):
    return run["state"] / "manifests" / "lab" / f"{host}.json"


def test_a_successful_host_gets_a_private_manifest_of_what_its_tasks_manage(local_run):
    path = _manifest_path(local_run, OK_HOST)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    doc = json.loads(path.read_text())
    files = local_run["files"]
    assert sorted(doc["files"]) == sorted(str(files / n) for n in
                                          ("managed.conf", "secret.conf", "budget.env", "treasury.env", "state",
                                           "edited.conf"))
    managed = doc["files"][str(files / "managed.conf")]
    assert managed["role"] == "probe" and managed["task"] == "Render a managed file"
    assert managed["check"] == ["exists", "type", "sha256", "mode"]  # mode: the task sets it; owner: it does not
    assert managed["expected"]["mode"] == "0640" and managed["expected"]["type"] == "file"
    assert doc["files"][str(files / "budget.env")]["check"] == ["exists", "type", "sha256", "mode"]  # a loop item
    assert doc["files"][str(files / "state")]["expected"]["type"] == "directory"
    assert "sha256" not in doc["files"][str(files / "state")]["check"]
    # a later lineinfile on a recorded path: its content is not compared, its existence and mode still are
    edited = doc["files"][str(files / "edited.conf")]
    assert edited["check"] == ["exists", "type", "mode"] and edited["content_uncovered_by"] == "lineinfile"
    # uncovered: the lineinfile and the command; not the probe (changed_when: false) nor fail/debug
    assert doc["uncovered"] == {"command": 1, "lineinfile": 1}
    assert doc["digest"]["digest"] and doc["router"] is None
    assert "jincai_manifest: 1 manifests written; none for 220103-app1 (failed)" in local_run["stdout"]


def test_no_log_results_give_the_path_only_never_the_content(local_run):
    text = _manifest_path(local_run, OK_HOST).read_text()
    doc = json.loads(text)
    secret = doc["files"][str(local_run["files"] / "secret.conf")]
    assert secret["no_log"] is True and "sha256" in secret["check"]  # the content's hash, read back, not the content
    assert "s3cr3t-value" not in text and "password" not in text


def test_a_host_with_a_failed_result_gets_no_manifest(local_run):
    assert not _manifest_path(local_run, FAILED_HOST).exists()


class _Obj:
    """A stand-in for Ansible's host, task and result objects (what the callback reads of them)."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def get_name(self):
        return self.name


def synthetic_result(host, action, args, result=None, no_log=False, check_mode=None, readback=None):
    """A result as ansible-core 2.19 hands it to a callback: the host, the task (with its vars), the
    worker's templated task fields and the (censored, for no_log) result dict."""
    task = _Obj(name=f"{action} task", action=action, no_log=no_log, vars={"jincai_manifest_readback": readback}
                if readback else {}, _role=_Obj(name="base"))
    return _Obj(_host=_Obj(name=host), _task=task, _result=result or {"changed": False},
                task_fields={"action": action, "args": args, "check_mode": check_mode, "changed_when": []})


def callback(monkeypatch, **cliargs):
    """A jincai_manifest callback after playbook start, with the command line ``cliargs``."""
    import importlib.util

    from ansible import context

    spec = importlib.util.spec_from_file_location("jincai_manifest_cb", os.path.join(ROOT, "plugins", "callback",
                                                                                     "jincai_manifest.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(context, "CLIARGS", dict({"tags": ("all",), "skip_tags": (), "check": False}, **cliargs))
    cb = mod.CallbackModule()
    cb.v2_playbook_on_start(None)
    return cb


@pytest.mark.parametrize("cliargs", [{"check": True}, {"tags": ("sshd",)}, {"skip_tags": ("apps",)},
                                     {"start_at_task": "x"}])
def test_check_mode_and_partial_runs_record_nothing(monkeypatch, cliargs):
    cb = callback(monkeypatch, **cliargs)
    cb.v2_runner_on_ok(synthetic_result("h", "ansible.builtin.template", {"dest": "/etc/a"}))
    assert not cb._active and cb._recorder is None and "JINCAI_MANIFEST_PATHS" not in os.environ


def test_callback_on_synthetic_results(monkeypatch):
    """Task fields' args (templated), the check_mode task keyword, read-back capture, failures."""
    cb = callback(monkeypatch)
    try:
        assert os.environ["JINCAI_MANIFEST_PATHS"] == cb._dir
        cb.v2_runner_on_ok(synthetic_result("h", "ansible.builtin.template", {"dest": "/etc/a", "mode": "0644"}))
        cb.v2_runner_on_ok(synthetic_result("h", "ansible.builtin.copy", {"dest": "/etc/s", "content": "pw"},
                                            {"censored": "hidden"}, no_log=True))
        cb.v2_runner_on_ok(synthetic_result("h", "ansible.builtin.template", {"dest": "/etc/probe"}, check_mode=True))
        cb.v2_runner_on_failed(synthetic_result("bad", "ansible.builtin.command", {}), ignore_errors=True)
        assert cb._bad == set()
        cb.v2_runner_on_failed(synthetic_result("bad", "ansible.builtin.command", {}))
        cb.v2_runner_on_unreachable(synthetic_result("gone", "ansible.builtin.command", {}))
        assert cb._recorder.paths("h") == ["/etc/a", "/etc/s"] and cb._bad == {"bad", "gone"}
        cb.v2_runner_on_ok(synthetic_result("h", "ansible.builtin.command", {}, readback="server", result={
            "stdout": json.dumps({"files": {"/etc/a": {"exists": True}}})}))
        assert cb._readback == {"h": {"files": {"/etc/a": {"exists": True}}}}
    finally:
        shutil.rmtree(cb._dir, ignore_errors=True)
        os.environ.pop("JINCAI_MANIFEST_PATHS", None)


def _facts_of(doc, **extra):
    """What the collection reads of a manifest's paths on this machine (the collector's own function)."""
    return {"manifest_files": collector.readback(list(doc["files"])), "packages": [], "services": {},
            "accounts": [], "groups": [], **extra}


def test_the_read_back_compares_clean_then_finds_each_hand_made_file_change(local_run):
    doc = json.loads(_manifest_path(local_run, OK_HOST).read_text())
    assert manifest.compare(doc, _facts_of(doc)) == []
    files = local_run["files"]
    saved = {n: (files / n).read_bytes() for n in ("managed.conf", "treasury.env", "edited.conf")}
    try:
        (files / "managed.conf").write_text("managed = 2\n")        # content
        os.chmod(files / "budget.env", 0o666)                         # mode
        (files / "treasury.env").unlink()                             # removed
        (files / "edited.conf").write_text("edited = 0\nextra = 1\nmore = 1\n")  # content-uncovered: not drift
        found = {(d["name"].rsplit("/", 1)[1], d["attribute"]) for d in manifest.compare(doc, _facts_of(doc))}
        assert found == {("managed.conf", "sha256"), ("budget.env", "mode"), ("treasury.env", "exists")}
    finally:
        for name, data in saved.items():
            (files / name).write_bytes(data)
        os.chmod(files / "budget.env", 0o644)
        os.chmod(files / "treasury.env", 0o644)
        os.chmod(files / "managed.conf", 0o640)
    assert manifest.compare(doc, _facts_of(doc)) == []


# --- the recorder on synthetic results ------------------------------------------------------------

def test_recorder_packages_services_accounts_and_uncovered():
    r = manifest.Recorder()
    r.add("h", "ansible.builtin.apt", {"name": ["chrony", "aide=1.2"], "state": "present"}, {}, role="base")
    r.add("h", "ansible.builtin.apt", {"name": "telnet", "state": "absent"}, {}, role="base")
    r.add("h", "ansible.builtin.apt", {"update_cache": True}, {}, role="base")
    r.add("h", "ansible.builtin.systemd_service", {"name": "chrony", "state": "started", "enabled": True}, {}, role="chrony")
    r.add("h", "ansible.builtin.systemd_service", {"name": "chrony", "state": "restarted"}, {}, role="chrony")
    r.add("h", "ansible.builtin.service", {"name": "rsync.service", "enabled": False, "state": "stopped"}, {})
    r.add("h", "ansible.builtin.systemd_service", {"daemon_reload": True}, {})
    r.add("h", "ansible.builtin.user", {"name": "jcadmin", "password": "$6$x"}, {"censored": "hidden"}, no_log=True)
    r.add("h", "ansible.builtin.user", {"name": "olduser", "state": "absent"}, {})
    r.add("h", "ansible.builtin.group", {"name": "jcaudit"}, {})
    r.add("h", "ansible.builtin.sysctl", {"name": "kernel.x", "value": "1"}, {})
    r.add("h", "ansible.builtin.copy", {"dest": "/etc/x", "content": "secret"},
          {"censored": "hidden", "changed": False}, no_log=True)
    r.add("h", "ansible.builtin.template", {}, {"results": [{"censored": "hidden"}]}, no_log=True)
    r.add("h", "ansible.builtin.assert", {"that": "1"}, {})
    r.add("h", "ansible.builtin.copy", {"dest": "/srv/bundle.zip"}, {}, delegated=True)
    doc = r.manifest("h", {"files": {"/etc/x": {"exists": True, "type": "file", "sha256": "a" * 64, "mode": "0600"}}})
    assert doc["packages"] == {"chrony": {"installed": True, "role": "base", "task": "", "module": "apt"},
                               "aide": {"installed": True, "role": "base", "task": "", "module": "apt"},
                               "telnet": {"installed": False, "role": "base", "task": "", "module": "apt"}}
    assert doc["services"]["chrony.service"]["state"] == "started" and doc["services"]["chrony.service"]["enabled"] is True
    assert doc["services"]["rsync.service"]["state"] == "stopped" and doc["services"]["rsync.service"]["enabled"] is False
    assert doc["users"]["jcadmin"]["present"] and not doc["users"]["olduser"]["present"]
    assert doc["groups"] == {"jcaudit": {"present": True, "role": "", "task": "", "module": "group"}}
    assert doc["uncovered"] == {"sysctl": 1, "template (no_log loop)": 1, "copy (delegated)": 1}
    assert "/srv/bundle.zip" not in doc["files"]
    assert "secret" not in json.dumps(doc) and "$6$" not in json.dumps(doc)
    assert doc["files"]["/etc/x"]["check"] == ["exists", "type", "sha256"] and doc["files"]["/etc/x"]["no_log"]


def test_compare_reports_every_kind_of_drift():
    r = manifest.Recorder()
    r.add("h", "ansible.builtin.apt", {"name": ["chrony", "aide"]}, {}, role="base")
    r.add("h", "ansible.builtin.apt", {"name": "telnet", "state": "absent"}, {}, role="base")
    r.add("h", "ansible.builtin.systemd_service", {"name": "chrony", "state": "started", "enabled": True}, {},
          role="chrony", task="Start chrony")
    r.add("h", "ansible.builtin.systemd_service", {"name": "auditd", "state": "started", "enabled": True}, {}, role="auditd")
    r.add("h", "ansible.builtin.user", {"name": "jcadmin"}, {}, role="accounts")
    r.add("h", "ansible.builtin.group", {"name": "jcaudit"}, {}, role="accounts")
    r.add("h", "ansible.builtin.template", {"dest": "/etc/a", "owner": "root", "group": "root", "mode": "0644"}, {})
    want = {"exists": True, "type": "file", "sha256": "a" * 64, "mode": "0644", "owner": "root", "group": "root"}
    doc = r.manifest("h", {"files": {"/etc/a": want}})
    clean = {"manifest_files": {"/etc/a": want}, "packages": ["chrony", "aide"],
             "services": {"chrony.service": {"active": "active", "enabled": "enabled"},
                          "auditd.service": {"active": "active", "enabled": "enabled"}},
             "accounts": [{"user": "jcadmin"}], "groups": ["jcaudit"]}
    assert manifest.compare(doc, clean) == []
    drifted = {"manifest_files": {"/etc/a": dict(want, sha256="b" * 64, owner="nobody")},
               "packages": ["chrony", "telnet"],
               "services": {"chrony.service": {"active": "inactive", "enabled": "enabled"},
                            "auditd.service": {"active": "active", "enabled": "disabled"}},
               "accounts": [], "groups": []}
    got = {(d["kind"], d["name"], d["attribute"], str(d["expected"]), str(d["found"])) for d in manifest.compare(doc, drifted)}
    assert got == {
        ("file", "/etc/a", "sha256", "a" * 64, "b" * 64), ("file", "/etc/a", "owner", "root", "nobody"),
        ("package", "aide", "installed", "installed", "not installed"),
        ("package", "telnet", "installed", "not installed", "installed"),
        ("service", "chrony.service", "state", "active", "inactive"),
        ("service", "auditd.service", "enabled", "enabled", "disabled"),
        ("user", "jcadmin", "exists", "present", "absent"), ("group", "jcaudit", "exists", "present", "absent")}
    gone = manifest.compare(doc, dict(clean, manifest_files={"/etc/a": {"exists": False}}))
    assert [(d["attribute"], d["expected"], d["found"]) for d in gone] == [("exists", True, False)]  # one finding


def test_units_and_packages_are_compared_as_read_back_after_the_run():
    """A oneshot service the run started is inactive right after it: that is its intended state, not
    drift; a package name dpkg does not list (a virtual package) is expected absent as read back."""
    r = manifest.Recorder()
    r.add("h", "ansible.builtin.systemd_service", {"name": "jincai-once", "state": "started", "enabled": True}, {})
    r.add("h", "ansible.builtin.systemd_service", {"name": "chrony", "state": "started", "enabled": True}, {})
    r.add("h", "ansible.builtin.apt", {"name": ["chrony", "mail-transport-agent"]}, {})
    assert r.units("h") == ["chrony.service", "jincai-once.service"]
    after = {"jincai-once.service": {"active": "inactive", "enabled": "enabled"},
             "chrony.service": {"active": "active", "enabled": "enabled"}}
    doc = r.manifest("h", {"files": {}, "services": after, "packages": ["chrony"]})
    assert doc["packages"]["mail-transport-agent"]["installed"] is False
    facts = {"services": after, "packages": ["chrony"]}
    assert manifest.compare(doc, facts) == []
    facts = {"services": dict(after, **{"chrony.service": {"active": "inactive", "enabled": "disabled"}}),
             "packages": ["chrony"]}
    assert {(d["name"], d["attribute"], d["expected"], d["found"]) for d in manifest.compare(doc, facts)} == {
        ("chrony.service", "state", "active", "inactive"), ("chrony.service", "enabled", "enabled", "disabled")}


def test_router_manifest_compares_the_running_config_line_by_line():
    from tests.unit.test_compliance import ROUTER_OK

    r = manifest.Recorder()
    r.add("rtr", "ansible.builtin.template", {"dest": "/etc/nftables.conf", "mode": "0644"}, {})
    r.add("rtr", "jincai_netconfig", {"platform": "frr", "config": "..."}, {})
    lines = manifest.config_lines(ROUTER_OK, "frr")
    doc = r.manifest("rtr", {}, router={"platform": "frr", "lines": lines})
    assert doc["files"] == {} and doc["uncovered"] == {"template (router host)": 1}
    assert manifest.compare(doc, {"config_lines": lines}) == []
    changed = ROUTER_OK + "access-list jcmp-test seq 5 permit any\n"
    changed = changed.replace("log syslog informational\n", "")
    got = manifest.compare(doc, {"config_lines": manifest.config_lines(changed, "frr")})
    assert [(d["attribute"], d["expected"], d["found"]) for d in got] == [
        ("added lines", "", "+ access-list jcmp-test seq 5 permit any"),
        ("removed lines", "- log syslog informational", "")]


# --- the source digest and the fallback ----------------------------------------------------------

def test_the_digest_changes_with_a_role_file_a_template_a_group_var_a_host_var_and_extra_vars(tmp_path):
    root, inv = tmp_path / "repo", tmp_path / "inv"
    for tree in ("roles/base/tasks", "templates/router", "playbooks", "plugins/callback"):
        (root / tree).mkdir(parents=True)
    (root / "roles/base/tasks/main.yml").write_text("---\n")
    (root / "templates/router/frr.j2").write_text("hostname x\n")
    (inv / "group_vars").mkdir(parents=True)
    (inv / "group_vars" / "all.yml").write_text("a: 1\n")
    first = manifest.tree_digest(str(inv), root=str(root))
    (root / "plugins/callback/__pycache__").mkdir()
    (root / "plugins/callback/__pycache__/x.pyc").write_bytes(b"\0")
    assert manifest.tree_digest(str(inv), root=str(root)) == first  # bytecode is not source
    seen = {first}
    for path, text in (("roles/base/tasks/main.yml", "---\n- name: x\n"), ("templates/router/frr.j2", "hostname y\n")):
        (root / path).write_text(text)
        seen.add(manifest.tree_digest(str(inv), root=str(root)))
    (inv / "group_vars" / "all.yml").write_text("a: 2\n")
    seen.add(manifest.tree_digest(str(inv), root=str(root)))
    assert len(seen) == 4
    hv = {"jincai_site_code": "220102", "jincai_ntp_servers": ["198.18.0.11"]}
    base = manifest.source_digest(hv, first, {})
    assert manifest.digest_mismatch(base, manifest.source_digest(dict(hv), first, {})) == ""
    assert "host vars" in manifest.digest_mismatch(base, manifest.source_digest(dict(hv, jincai_ntp_servers=[]), first, {}))
    assert "roles/templates" in manifest.digest_mismatch(base, manifest.source_digest(hv, "0" * 64, {}))
    assert "extra vars" in manifest.digest_mismatch(base, manifest.source_digest(hv, first, {"x": "1"}))
    assert manifest.parse_extra_vars(["x=1", '{"y": [1]}']) == {"x": "1", "y": [1]}
    # what steers a run is not what a host holds: production's guard flag, connection and compliance tuning
    steered = {"jincai_allow_production": "true", "ansible_ssh_timeout": "5", "compliance_router_timeout": "5"}
    assert manifest.digest_mismatch(base, manifest.source_digest(hv, first, steered)) == ""


def test_plan_fast_falls_back_for_no_manifest_a_changed_host_var_and_extra_vars(local_run, tmp_path, monkeypatch):
    monkeypatch.setenv("JINCAI_STATE_DIR", str(local_run["state"]))
    inventory = invmod.build(local_run["inv"])
    scope = [OK_HOST, FAILED_HOST]
    doc, fallback = comp.plan_fast(inventory, local_run["inv"], scope, local_run["extra"][1::2], str(tmp_path / "a"))
    assert list(doc["manifests"]) == [OK_HOST] and fallback == [FAILED_HOST]
    assert doc["fallback"][FAILED_HOST].startswith("no manifest")
    paths = json.loads((tmp_path / "a" / "manifest" / f"{OK_HOST}.paths.json").read_text())["paths"]
    assert str(local_run["files"] / "managed.conf") in paths
    _doc, fallback = comp.plan_fast(inventory, local_run["inv"], scope, local_run["extra"][1::2] + ["x=1"],
                                    str(tmp_path / "b"))
    assert fallback == scope
    inventory["_meta"]["hostvars"][OK_HOST] = dict(inventory["_meta"]["hostvars"][OK_HOST], jincai_ntp_servers=[])
    doc, fallback = comp.plan_fast(inventory, local_run["inv"], scope, local_run["extra"][1::2], str(tmp_path / "c"))
    assert fallback == scope and "host vars" in doc["fallback"][OK_HOST]


# --- the command ----------------------------------------------------------------------------------

def test_compliance_fast_runs_site_check_only_for_the_hosts_that_fall_back(local_run, tmp_path, monkeypatch):
    """``jincai compliance --drift fast`` on the copy: the collection run (stubbed: it writes what
    compliance.yml's collector would, read here from this machine) and site.yml --check limited to the
    host without a manifest; a changed managed file is a drift finding of its host, by attribute."""
    from tests.unit.test_compliance import CTX, server_facts

    monkeypatch.setenv("JINCAI_STATE_DIR", str(local_run["state"]))
    runs = []

    def fake_play(playbook, inventory, limit, extra_vars, record_file, check, log_file, timings, key, facts_dir,
                  paths_dir=""):
        runs.append((playbook, limit, check))
        if key == "collect":
            for host in limit.split(","):
                listed = os.path.join(paths_dir, f"{host}.paths.json")
                facts = server_facts()
                if os.path.exists(listed):  # what the collector adds for the manifest's paths
                    facts.update(manifest_files=collector.readback(json.load(open(listed, encoding="utf-8"))["paths"]),
                                 groups=collector.group_names())
                with open(os.path.join(facts_dir, f"{host}.json"), "w", encoding="utf-8") as fh:
                    json.dump({"host": host, "kind": "server", "context": CTX, "facts": facts}, fh)
        with open(record_file, "w", encoding="utf-8") as fh:
            json.dump({"check_mode": check, "records": [], "stats": {}}, fh)
        timings[key] = {"rc": 0, "seconds": 0.1, "recap": {}, "tail": ""}

    monkeypatch.setattr(comp, "_play", fake_play)
    managed = local_run["files"] / "managed.conf"
    managed.write_text("managed = 2\n")
    try:
        out = tmp_path / "rep"
        argv = ["-i", local_run["inv"], "--limit", f"{OK_HOST},{FAILED_HOST}", "-q"]
        for ev in local_run["extra"][1::2]:
            argv += ["-e", ev]
        comp.main(argv + ["-o", str(out)])
    finally:
        managed.write_text("managed = 1\n")
        os.chmod(managed, 0o640)
    assert sorted(runs) == [("playbooks/compliance.yml", f"{OK_HOST},{FAILED_HOST}", False),
                            ("playbooks/site.yml", FAILED_HOST, True)]
    rep = json.loads((out / "report.json").read_text())
    drift = [f for f in rep["findings"] if f["kind"] == "drift"]
    assert [(f["host"], f["title"]) for f in drift] == [(OK_HOST, f"probe: file {managed} (sha256)")]
    assert rep["fast_drift"]["hosts"] == [OK_HOST] and list(rep["fast_drift"]["fallback"]) == [FAILED_HOST]
    assert rep["fast_drift"]["uncovered"] == {"command": {"tasks": 1, "hosts": [OK_HOST]},
                                              "lineinfile": {"tasks": 1, "hosts": [OK_HOST]}}
    assert rep["hosts"][OK_HOST]["is_drifted"] and rep["drift_checked"]
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "Fast drift" in page and "lineinfile" in page and FAILED_HOST in page
    # --drift full: site.yml --check on every host, no manifest consulted
    runs.clear()
    comp.main(argv + ["-o", str(tmp_path / "full"), "--drift", "full"])
    assert sorted(runs) == [("playbooks/compliance.yml", f"{OK_HOST},{FAILED_HOST}", False),
                            ("playbooks/site.yml", f"{OK_HOST},{FAILED_HOST}", True)]
    assert "fast_drift" not in json.loads((tmp_path / "full" / "report.json").read_text())


def test_fast_findings_map_to_the_drift_rules_controls():
    catalogue = model.load_controls()
    r = manifest.Recorder()
    r.add("h", "ansible.builtin.systemd_service", {"name": "chrony", "state": "started"}, {}, role="chrony")
    doc = r.manifest("h", {})
    inv = {"_meta": {"hostvars": {"h": {"jincai_site_code": "220102", "jincai_functions": ["app_server"]}}}}
    collected = {"h": {"host": "h", "kind": "server", "facts": {"services": {"chrony.service": {"active": "inactive"}}}}}
    rep = model.build_report(inv, ["h"], {}, None, catalogue, fast={"manifests": {"h": doc}, "fallback": {}})
    assert rep["fast_drift"]["hosts"] == []  # no facts collected: an error finding, nothing compared
    hosts = {}

    def entry(name):
        return hosts.setdefault(name, {"site": {"code": "220102", "tier": "county"}, "unreachable": False,
                                       "drifted": False})

    found, _info = model.fast_findings({"manifests": {"h": doc}}, ["h"], collected, entry,
                                       catalogue["drift_rules"], catalogue["controls"])
    assert [(f["control"], f["title"], f["expected"], f["found"]) for f in found] == [
        ("L3-CES1-13", "chrony: service chrony.service (state)", "active", "inactive")]


def test_the_timer_role_runs_fast_drift_nightly_and_full_drift_weekly():
    """roles/compliance_timer's runs (vars/main.yml) rendered as Ansible would, and its service template."""
    import jinja2
    import yaml

    role = os.path.join(ROOT, "roles", "compliance_timer")
    defaults = yaml.safe_load(open(os.path.join(role, "defaults", "main.yml"), encoding="utf-8"))
    expr = yaml.safe_load(open(os.path.join(role, "vars", "main.yml"), encoding="utf-8"))["_compliance_timer_runs"]
    env = jinja2.Environment()
    values = {k: env.from_string(str(v)).render(**defaults) if isinstance(v, str) else v for k, v in defaults.items()}
    for weekly, units in (("Sun *-*-* 03:30:00", ["jincai-compliance", "jincai-compliance-full"]), ("", ["jincai-compliance"])):
        runs = yaml.safe_load(env.from_string(expr).render(**dict(values, compliance_timer_weekly_on_calendar=weekly)))
        assert [r["unit"] for r in runs] == units
    template = env.from_string(open(os.path.join(role, "templates", "service.j2"), encoding="utf-8").read())
    nightly, full = (template.render(**values, _compliance_timer_run=r) for r in runs_of(env, expr, values))
    exec_line = [ln for ln in nightly.splitlines() if ln.startswith("ExecStart=")][0]
    assert "jincai compliance" in exec_line and "--drift" not in exec_line  # fast: the default
    assert [ln for ln in full.splitlines() if ln.startswith("ExecStart=")][0].endswith("--quiet --drift full")


def runs_of(env, expr, values):
    """The role's runs with its defaults."""
    import yaml

    return yaml.safe_load(env.from_string(expr).render(**values))


def test_a_crl_refresh_untrusts_the_manifests_of_the_hosts_that_hold_the_crl_only(tmp_path, monkeypatch):
    """Found on the lab (2026-12-02): after the suite re-issued the CRL (the timer, a revocation), fast
    drift reported the CRL files of 220000-vpn and 220000-svc as drifted where `--drift full` found
    nothing. The PKI's published files are part of the source digest: the CRL for the hosts that hold
    it, the CA certificate for every host."""
    pki = tmp_path / "pki"
    pki.mkdir()
    for name, text in (("ca.crt", "CA1"), ("crl.pem", "CRL1"), ("crl.der", "crl1")):
        (pki / name).write_text(text)
    monkeypatch.setenv("JINCAI_PKI_DIR", str(pki))
    hosts = {"220000-vpn": ["vpn_concentrator"], "220000-svc": ["services"], "220102-app1": ["app_server"]}
    hv = {h: {"jincai_network_name": "lab", "jincai_functions": f} for h, f in hosts.items()}
    before = {h: manifest.source_digest(v, "t", {}) for h, v in hv.items()}
    (pki / "crl.pem").write_text("CRL2")  # jincai pki crl --if-due --push
    after = {h: manifest.source_digest(v, "t", {}) for h, v in hv.items()}
    why = {h: manifest.digest_mismatch(before[h], after[h]) for h in hv}
    assert "CRL" in why["220000-vpn"] and "CRL" in why["220000-svc"], why
    assert why["220102-app1"] == "", why
    (pki / "ca.crt").write_text("CA2")
    assert all(manifest.digest_mismatch(after[h], manifest.source_digest(v, "t", {})) for h, v in hv.items())
