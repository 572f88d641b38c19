"""jincai_files (plugins/action/jincai_files.py + library/jincai_files.py): a role's files, directories and
links in one round trip. Real ``ansible-playbook`` runs on this machine (connection local) into a
temporary directory: byte-identical to ansible.builtin.template, idempotent, check mode and --diff
change nothing and show the change, a file its checker refuses is never installed, and the manifest
recorder (fast drift) sees every path."""

import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest

from jincai import ROOT
from jincai.compliance import manifest

TEMPLATE = textwrap.dedent("""\
    # {{ greeting }}
    {% for n in numbers %}
    value{{ n }} = {{ n * 2 }}
    {% endfor %}
    {% if missing | default(false) %}
    never
    {% endif %}
    last line without a trailing newline in the source""")


def _play(tmp, extra_tasks="", check=False, diff=False, files_override=None):
    role = tmp / "roles" / "demo"
    (role / "templates").mkdir(parents=True, exist_ok=True)
    (role / "tasks").mkdir(parents=True, exist_ok=True)
    (role / "templates" / "demo.conf.j2").write_text(TEMPLATE)
    out = tmp / "out"
    files = files_override or [
        {"dest": f"{out}/sub/demo.conf", "src": "demo.conf.j2"},
        {"dest": f"{out}/plain.txt", "content": "plain\n", "mode": "0600"},
    ]
    tasks = [
        {"name": "Render the demo files in one round trip",
         "jincai_files": {"owner": "root", "group": "root", "mode": "0644", "directory_mode": "0750",
                          "directories": [f"{out}", f"{out}/sub"],
                          "links": [{"dest": f"{out}/link", "src": f"{out}/plain.txt"}],
                          "files": files},
         "register": "r", "ignore_errors": True},
        {"name": "Render the same template with ansible.builtin.template",
         "ansible.builtin.template": {"src": "demo.conf.j2", "dest": f"{tmp}/reference.conf", "mode": "0644"}},
        {"name": "Keep the result", "ansible.builtin.copy": {"content": "{{ r | to_json }}", "dest": f"{tmp}/result.json",
                                                              "mode": "0600"}, "check_mode": False},
    ]
    (role / "tasks" / "main.yml").write_text(json.dumps(tasks) + extra_tasks)
    pb = tmp / "play.yml"
    pb.write_text(json.dumps([{"name": "Demo", "hosts": "localhost", "gather_facts": False,
                               "vars": {"greeting": "你好", "numbers": [1, 2, 3]}, "roles": ["demo"]}]))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_ROLES_PATH=str(tmp / "roles"),
               ANSIBLE_CALLBACKS_ENABLED="jincai_timer",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_STRATEGY="linear")
    (tmp / "hosts.ini").write_text("localhost ansible_connection=local\n")
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(tmp / "hosts.ini"),
            str(pb)] + (["--check"] if check else []) + (["--diff"] if diff else [])
    res = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp, timeout=300, check=False)
    if not (tmp / "result.json").exists():
        pytest.fail(f"ansible-playbook kept no result (rc {res.returncode}): {res.stdout[-3000:]} {res.stderr[-2000:]}")
    r = json.loads((tmp / "result.json").read_text())
    (tmp / "result.json").unlink()
    return (1 if r.get("failed") else res.returncode), r, out


@pytest.mark.skipif(os.geteuid() != 0, reason="sets root ownership")
def test_first_run_creates_everything_then_a_rerun_changes_nothing_and_matches_the_template_module(tmp_path):
    rc, tasks, out = _play(tmp_path)
    first = tasks
    assert rc == 0 and first["changed"], first
    assert (out / "sub" / "demo.conf").read_bytes() == (tmp_path / "reference.conf").read_bytes()
    assert stat.S_IMODE(os.stat(out / "sub").st_mode) == 0o750
    assert stat.S_IMODE(os.stat(out / "plain.txt").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(out / "sub" / "demo.conf").st_mode) == 0o644
    assert os.readlink(out / "link") == f"{out}/plain.txt"
    assert "value1 = 2" not in json.dumps(first), "file contents must not reach the output"
    assert set(first["changed_paths"]) == {f"{out}", f"{out}/sub", f"{out}/link", f"{out}/sub/demo.conf",
                                           f"{out}/plain.txt"}
    rc, tasks, _ = _play(tmp_path)
    again = tasks
    assert rc == 0 and not again["changed"] and again["changed_paths"] == []


@pytest.mark.skipif(os.geteuid() != 0, reason="sets root ownership")
def test_check_mode_with_diff_shows_each_change_and_touches_nothing(tmp_path):
    _play(tmp_path)
    conf = tmp_path / "out" / "sub" / "demo.conf"
    conf.write_text("edited by hand\n")
    os.chmod(tmp_path / "out" / "plain.txt", 0o666)
    rc, tasks, out = _play(tmp_path, check=True, diff=True)
    r = tasks
    assert rc == 0 and r["changed"]
    assert r["changed_paths"] == [str(out / "plain.txt"), str(conf)] or set(r["changed_paths"]) == {
        str(out / "plain.txt"), str(conf)}
    by_path = {d["before_header"]: d for d in r["diff"]}
    assert by_path[str(conf)]["before"] == "edited by hand\n"
    assert by_path[str(conf)]["after"].startswith("# 你好\nvalue1 = 2\n")
    assert "owner, group or mode" in by_path[str(out / "plain.txt")]["prepared"]
    assert conf.read_text() == "edited by hand\n", "check mode wrote the file"
    assert stat.S_IMODE(os.stat(out / "plain.txt").st_mode) == 0o666, "check mode changed the mode"
    rc, tasks, _ = _play(tmp_path)
    assert tasks["changed"]
    assert conf.read_bytes() == (tmp_path / "reference.conf").read_bytes()


@pytest.mark.skipif(os.geteuid() != 0, reason="sets root ownership")
def test_a_file_its_checker_refuses_is_never_installed_and_the_error_names_it(tmp_path):
    _play(tmp_path)
    out = tmp_path / "out"
    refused = [{"dest": f"{out}/plain.txt", "content": "new content\n", "validate": "/bin/false %s"}]
    rc, tasks, _ = _play(tmp_path, files_override=refused)
    r = tasks
    assert rc != 0 and r.get("failed")
    assert f"{out}/plain.txt: refused by `/bin/false %s`" in r["msg"]
    assert (out / "plain.txt").read_text() == "plain\n"
    assert not [p for p in os.listdir(out) if p.startswith(".jincai-")], "a candidate file was left behind"
    accepted = [{"dest": f"{out}/plain.txt", "content": "new content\n", "validate": "/bin/grep -q new %s"}]
    rc, tasks, _ = _play(tmp_path, files_override=accepted)
    assert rc == 0 and (out / "plain.txt").read_text() == "new content\n"


def test_bad_arguments_fail_before_the_host_is_touched(tmp_path):
    both = [{"dest": f"{tmp_path}/out/x", "src": "demo.conf.j2", "content": "x"}]
    rc, tasks, out = _play(tmp_path, files_override=both)
    r = tasks
    assert rc != 0 and "give exactly one of src and content" in r["msg"]
    assert not out.exists()
    unknown = [{"dest": f"{tmp_path}/out/x", "content": "x", "colour": "red"}]
    rc, tasks, _ = _play(tmp_path, files_override=unknown)
    assert rc != 0 and "unknown keys ['colour']" in tasks["msg"]


def test_the_manifest_recorder_sees_every_path_of_a_result_and_of_a_censored_one():
    rec = manifest.Recorder()
    args = {"owner": "root", "group": "root", "mode": "0644", "directory_mode": "0755",
            "directories": ["/etc/demo.d"], "links": [{"dest": "/etc/demo.link", "src": "/etc/demo.conf"}],
            "files": [{"dest": "/etc/demo.conf", "src": "demo.conf.j2"},
                      {"dest": "/etc/demo.d/secret", "content": "s", "mode": "0600"}]}
    result = {"paths": [{"path": "/etc/demo.d", "state": "directory", "owner": "root", "group": "root", "mode": "0755"},
                        {"path": "/etc/demo.link", "state": "link", "src": "/etc/demo.conf"},
                        {"path": "/etc/demo.conf", "state": "file", "owner": "root", "group": "root", "mode": "0644"},
                        {"path": "/etc/demo.d/secret", "state": "file", "owner": "root", "group": "root", "mode": "0600"}]}
    rec.add("h1", "jincai_files", args, result, role="demo", task="t")
    rec.add("h2", "jincai_files", args, {"censored": "hidden"}, no_log=True, role="demo", task="t")
    for host in ("h1", "h2"):
        files = rec.hosts[host]["files"]
        assert set(files) == {"/etc/demo.d", "/etc/demo.link", "/etc/demo.conf", "/etc/demo.d/secret"}, host
        assert files["/etc/demo.conf"]["content"] and files["/etc/demo.conf"]["attrs"] == ["group", "mode", "owner"]
        assert files["/etc/demo.d"]["state"] == "directory" and not files["/etc/demo.d"]["content"]
        assert files["/etc/demo.link"]["state"] == "link"
        assert not rec.hosts[host]["uncovered"], rec.hosts[host]["uncovered"]
    assert rec.hosts["h2"]["files"]["/etc/demo.d/secret"]["no_log"]


def test_an_unquoted_yaml_mode_is_taken_as_ansible_takes_it():
    """YAML 1.1 reads ``mode: 0644`` as the integer 420; ansible.builtin.file and template take that as
    0644, and so must jincai_files (a str(420) would become mode 0o644's decimal misreading, 0o420)."""
    import importlib.util  # noqa: PLC0415

    spec = importlib.util.spec_from_file_location("jincai_files_action",
                                                  os.path.join(ROOT, "plugins", "action", "jincai_files.py"))
    action = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(action)
    files = action.ActionModule._entries({"mode": 0o644, "files": [{"dest": "/a", "content": ""},
                                                                   {"dest": "/b", "content": "", "mode": 0o600},
                                                                   {"dest": "/c", "content": "", "mode": "0750"}]},
                                         "files", action.FILE_KEYS)
    assert [f["mode"] for f in files] == ["0644", "0600", "0750"]
