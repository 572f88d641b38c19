"""The invalid-input corpus (tests/unit/invalid/*.yml): each case edits a copy of a real source and
asserts the specific messages `jincai validate` must print, and its exit code."""

import os
import shutil

import pytest
import yaml

from jincai import ROOT
from jincai.source import validate

CORPUS = os.path.join(os.path.dirname(__file__), "invalid")
CASES = sorted(f for f in os.listdir(CORPUS) if f.endswith(".yml"))


def apply_case(case, dest):
    """Copy the case's base inventory to ``dest`` and apply its text edits (each must match once;
    ``write`` replaces the whole file)."""
    shutil.copytree(os.path.join(ROOT, "inventories", case.get("base", "lab")), dest)
    for edit in case["edits"]:
        path = os.path.join(dest, edit["file"])
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        if "write" in edit:
            text = edit["write"]
        elif "append" in edit:
            text += edit["append"]
        else:
            assert text.count(edit["replace"]) == 1, f"edit target not found exactly once: {edit['replace']!r}"
            text = text.replace(edit["replace"], edit["with"])
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)


def test_corpus_is_large_enough():
    assert len(CASES) >= 69


@pytest.mark.parametrize("name", CASES)
def test_invalid_case(name, tmp_path, monkeypatch, capsys):
    with open(os.path.join(CORPUS, name), encoding="utf-8") as fh:
        case = yaml.safe_load(fh)
    inv = tmp_path / "inv"
    apply_case(case, str(inv))
    monkeypatch.chdir(inv)
    rc = validate.run(".", quiet=True)
    err = capsys.readouterr().err
    assert rc == case.get("exit", 1), err
    lines = err.splitlines()
    for expected in case["expect"]:
        assert any(expected in line for line in lines), f"missing {expected!r} in:\n{err}"
    # every error line names a file, a scope (site or network) and a field, and says how to fix it
    for line in lines:
        if line.startswith("jincai validate:"):
            continue
        body = line.removeprefix("warning: ")
        file, scope, field = body.split(": ", 3)[:3]
        assert os.path.exists(file), line
        assert scope.startswith("site ") or scope == "network", line
        assert field, line
        assert "(fix: " in line, line
