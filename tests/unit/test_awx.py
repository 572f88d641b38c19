"""The checkout loads as an AWX project as it is (docs/awx.md).

Reproduces what AWX does with a synced project: its playbook discovery (awx/main/utils/ansible.py:
every ``.yml``/``.yaml`` file outside roles/, tasks/, group_vars/, host_vars/ and dot directories
with a line matching ``hosts:``, ``include:`` or ``import_playbook:``, or vault-encrypted), and its
inventory sync for a project-sourced inventory (``ansible-inventory -i <source> --list --export``
run in the project directory, so with the project's ansible.cfg, and without this venv's jincai
on the import path, as in an execution environment that does not install it).
"""

import codecs
import configparser
import glob
import json
import os
import re
import subprocess
import sys

import pytest

from jincai import ROOT

BIN = os.path.dirname(sys.executable)
# AWX's own expressions and rules (awx/main/utils/ansible.py), restated for the test.
AWX_PLAYBOOK_RE = re.compile(r"^\s*?-?\s*?(?:hosts|include|import_playbook):\s*?.*?$")


def awx_skips(relative_dir):
    """AWX's skip_directory: roles, tasks, group_vars, host_vars and dot directories."""
    parts = relative_dir.split(os.sep)
    return (bool({"roles", "tasks", "group_vars", "host_vars"} & set(parts))
            or any(p.startswith(".") and p != "." for p in parts))


def awx_playbooks(project):
    """The playbook list AWX shows for ``project``."""
    found = []
    for dirpath, _dirs, files in os.walk(project):
        if awx_skips(os.path.relpath(dirpath, project)):
            continue
        for name in files:
            if os.path.splitext(name)[1] not in (".yml", ".yaml"):
                continue
            path = os.path.join(dirpath, name)
            with codecs.open(path, "r", encoding="utf-8", errors="ignore") as fh:
                for n, line in enumerate(fh):
                    if AWX_PLAYBOOK_RE.match(line) or (n == 0 and line.startswith("$ANSIBLE_VAULT;")):
                        found.append(os.path.relpath(path, project))
                        break
    return sorted(found)


def test_awx_discovers_every_playbook():
    found = awx_playbooks(ROOT)
    playbooks = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "playbooks", "*.yml")))
    assert set(playbooks) <= set(found), f"AWX would not list: {sorted(set(playbooks) - set(found))}"
    assert "playbooks/site.yml" in found
    # What else AWX lists is the source of truth (its sites have `hosts:` keys), never a role or vars file.
    # AWX scans a clean checkout: what git ignores here (build/, the twin's generated inventory) is not in it.
    ignored = ("tests" + os.sep, ".venv", "build" + os.sep, "reports" + os.sep, "backups" + os.sep)
    others = [p for p in found if p not in playbooks and not p.startswith(ignored)]
    assert all(re.match(r"inventories/[^/]+/source/", p) for p in others), others


def _awx_env():
    """The environment of an AWX job: no ANSIBLE_CONFIG (the project's ansible.cfg is read from the
    working directory), no vault id from us, jincai not importable from site-packages."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "JINCAI_", "PYTHON"))}
    env["ANSIBLE_INVENTORY_UNPARSED_FAILED"] = "True"
    return env


@pytest.mark.parametrize("source", ["inventories/lab", "inventories/jilin"])
def test_awx_inventory_sync_reads_the_jincai_source(source, tmp_path):
    # jincai is installed in this venv (editable: the checkout on sys.path); an execution
    # environment has Ansible but not jincai: drop the checkout from sys.path at start-up
    (tmp_path / "sitecustomize.py").write_text(
        "import os, sys\n"
        f"sys.path[:] = [p for p in sys.path if os.path.realpath(p or '.') != {os.path.realpath(ROOT)!r}]\n")
    env = {**_awx_env(), "PYTHONPATH": str(tmp_path)}
    probe = subprocess.run([sys.executable, "-c", "import importlib.util as u; print(u.find_spec('jincai'))"],
                           env=env, cwd=str(tmp_path), capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "None", "the test could not hide the installed jincai"
    out = subprocess.run([sys.executable, os.path.join(BIN, "ansible-inventory"), "-i", source, "--list", "--export",
                          "--playbook-dir", source], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    inv = json.loads(out.stdout)
    assert "site_220102" in inv and "routers" in inv and "machine_room" in inv
    hosts = inv["_meta"]["hostvars"]
    assert any(h.startswith("220102-") for h in hosts)


def test_ansible_cfg_leaves_vault_to_awx_and_names_documented_callbacks():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "ansible.cfg"))
    defaults = cfg["defaults"]
    assert "vault_password_file" not in defaults and "vault_identity_list" not in defaults
    callbacks = [c.strip() for c in defaults["callbacks_enabled"].split(",")]
    with open(os.path.join(ROOT, "docs", "awx.md"), encoding="utf-8") as fh:
        doc = fh.read()
    for name in callbacks + ["jincai_drift"]:
        assert os.path.isfile(os.path.join(ROOT, "plugins", "callback", f"{name}.py")), name
        assert f"`{name}`" in doc, f"docs/awx.md does not document callback {name}"
