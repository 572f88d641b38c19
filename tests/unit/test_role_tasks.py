"""Rules the roles' task files keep, read from the files themselves (no host needed)."""

import glob
import os

import yaml

from jincai import ROOT


def _tasks(path):
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh) or []


def _walk(tasks):
    for t in tasks:
        yield t
        for key in ("block", "rescue", "always"):
            yield from _walk(t.get(key) or [])


def test_a_connection_reset_runs_only_when_the_config_it_proves_changed():
    """``meta: reset_connection`` ignores ``when`` (Ansible warns and resets anyway), so a reset in a
    role's main flow costs every converged host a new login (with Mitogen a new interpreter chain)
    on every run. Each reset lives in a file that main.yml includes under a condition."""
    found = []
    for path in sorted(glob.glob(os.path.join(ROOT, "roles", "*", "tasks", "*.yml"))):
        for t in _walk(_tasks(path)):
            if str(t.get("ansible.builtin.meta") or t.get("meta")) == "reset_connection":
                found.append(path)
    assert found, "no reset_connection at all: this rule has nothing left to guard"
    for path in found:
        role_dir, name = os.path.split(path)
        assert name != "main.yml", f"{path}: reset_connection in the main flow runs on every host, every run"
        includes = [t for t in _walk(_tasks(os.path.join(role_dir, "main.yml")))
                    if (t.get("ansible.builtin.include_tasks") or t.get("include_tasks")) == name]
        assert includes and all(t.get("when") for t in includes), f"{path}: included without a condition"
