"""jincai.executor.jinja_cache: the per-run compiled-template cache gives exactly what Jinja compiles.

The proofs render every template string of the repository's roles, playbooks and templates (task
arguments, role defaults, ``.j2`` files) with and without the cache, and compare results; they show a
hit for a second compile, separate entries for different compile settings, no cached errors, and
entries shared across a fork through the run's directory.
"""

import glob
import os
import re

import pytest
from ansible.errors import AnsibleError
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import init_plugin_loader
from ansible.template import Templar, trust_as_template

from jincai.executor import jinja_cache

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXPR = re.compile(r"\{\{.*?\}\}", re.S)
COND = re.compile(r"^\s*-?\s*(?:when|failed_when|changed_when|until):\s*([^\s\[|>'\"].*?)\s*$", re.M)


@pytest.fixture(scope="module", autouse=True)
def _plugins():
    init_plugin_loader()  # as ansible-playbook does (lookups resolve through the collection loader)


@pytest.fixture(autouse=True)
def _fresh_cache():
    jinja_cache.uninstall()
    yield
    jinja_cache.uninstall()


def _repo_templates():
    """Every ``{{ ... }}`` of the YAML under roles/ and playbooks/, every one-line conditional there
    (as ``cond:`` + expression), and every .j2 file (source text)."""
    sources = set()
    for path in glob.glob(os.path.join(ROOT, "roles", "**", "*.yml"), recursive=True) + \
            glob.glob(os.path.join(ROOT, "playbooks", "*.yml")):
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        sources.update(EXPR.findall(text))
        sources.update("cond:" + c for c in COND.findall(text) if "{{" not in c)
    files = sorted(glob.glob(os.path.join(ROOT, "roles", "**", "*.j2"), recursive=True) +
                   glob.glob(os.path.join(ROOT, "templates", "**", "*.j2"), recursive=True))
    for path in files:
        with open(path, encoding="utf-8") as fh:
            sources.add(fh.read())
    # the clock differs between two renderings, not the compiled code
    return sorted(s for s in sources if "now(" not in s), len(files)


@pytest.fixture(scope="module")
def lab_vars():
    """The variables of a lab application server as a play sees them (the lab inventory, its vault)."""
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.vault import VaultSecret
    from ansible.vars.manager import VariableManager
    loader = DataLoader()
    loader.set_vault_secrets([("lab", VaultSecret(b"jincai-lab-vault-2026"))])  # inventories/lab/vault-pass.sh
    inventory = InventoryManager(loader=loader, sources=[os.path.join(ROOT, "inventories", "lab")])
    host = inventory.get_host("220102-app1")
    assert host is not None
    return loader, VariableManager(loader=loader, inventory=inventory).get_vars(host=host)


def _outcome(source, lab=None):
    """What ansible makes of *source* (with a lab host's variables when given): its result or its
    error's type and message."""
    loader, variables = lab or (DataLoader(), {"x": 41, "items": [1, 2]})
    templar = Templar(loader=loader, variables=variables)
    try:
        if source.startswith("cond:"):
            return ("ok", repr(templar.evaluate_conditional(trust_as_template(source[5:]))))
        return ("ok", repr(templar.template(trust_as_template(source))))
    except AnsibleError as exc:
        return ("error", type(exc).__name__, str(exc).split("\n", 1)[0])


def test_every_template_of_the_repository_renders_the_same_with_the_cache(lab_vars):
    sources, nfiles = _repo_templates()
    assert len(sources) > 500 and nfiles > 30, (len(sources), nfiles)
    plain = [_outcome(s, lab_vars) for s in sources]
    again = [_outcome(s, lab_vars) for s in sources]  # leave out what differs by itself (random, time)
    keep = [i for i, (a, b) in enumerate(zip(plain, again)) if a == b]
    assert len(keep) > len(sources) - 10
    sources, plain = [sources[i] for i in keep], [plain[i] for i in keep]
    assert sum(1 for p in plain if p[0] == "ok") > 80, "too few templates render with the lab host's variables"
    assert jinja_cache.install()
    first = [_outcome(s, lab_vars) for s in sources]
    second = [_outcome(s, lab_vars) for s in sources]
    assert first == plain
    assert second == plain
    st = jinja_cache.stats()
    assert st["compiled"] > 300, st
    assert st["hits"] >= st["compiled"], st  # the second pass compiled nothing new


def test_a_second_compile_of_the_same_source_is_a_hit_and_renders_its_own_variables():
    assert jinja_cache.install()
    templar = Templar(loader=DataLoader(), variables={"x": 1})
    assert templar.template(trust_as_template("{{ x + 1 }}")) == 2
    compiled = jinja_cache.stats()["compiled"]
    templar = Templar(loader=DataLoader(), variables={"x": 10})
    assert templar.template(trust_as_template("{{ x + 1 }}")) == 11
    assert jinja_cache.stats()["compiled"] == compiled
    assert jinja_cache.stats()["hits"] >= 1
    # conditionals (compile_expression) likewise
    assert templar.evaluate_conditional(trust_as_template("x > 5")) is True
    hits = jinja_cache.stats()["hits"]
    assert Templar(loader=DataLoader(), variables={"x": 2}).evaluate_conditional(trust_as_template("x > 5")) is False
    assert jinja_cache.stats()["hits"] == hits + 1


def test_other_delimiters_and_backslash_escaping_are_other_entries():
    assert jinja_cache.install()
    templar = Templar(loader=DataLoader(), variables={"x": "v"})
    src = trust_as_template("[% x %]{{ x }}")
    assert templar.template(src) == "[% x %]v"
    other = templar.copy_with_new_env(variable_start_string="[%", variable_end_string="%]")
    assert other.template(src) == "v{{ x }}"
    assert templar.template(src) == "[% x %]v"
    # escape_backslashes: on for task arguments (the default), off on request; not one entry
    s = trust_as_template('{{ "a\\\\1" }}')
    assert templar.template(s) == Templar(loader=DataLoader()).template(s)
    assert templar.template(s, escape_backslashes=False) != templar.template(s, escape_backslashes=True)


def test_errors_are_not_cached_and_fail_the_same_every_time():
    assert jinja_cache.install()
    bad = "{{ x | no_such_filter_anywhere }}"
    first, second = _outcome(bad), _outcome(bad)
    jinja_cache.uninstall()
    assert first == second == _outcome(bad)
    assert first[0] == "error"
    syntax = "{{ x + }}"
    assert jinja_cache.install()
    assert _outcome(syntax)[0] == "error"
    assert _outcome(syntax) == _outcome(syntax)


def test_a_forked_worker_shares_what_it_compiled_through_the_run_directory(tmp_path):
    directory = tmp_path / "jinja"
    assert jinja_cache.install(str(directory))
    source = trust_as_template("{{ x * 3 }} compiled in a child")
    pid = os.fork()
    if pid == 0:  # the worker: compile, store, exit without running the parent's cleanup
        try:
            ok = Templar(loader=DataLoader(), variables={"x": 2}).template(source) == "6 compiled in a child"
            os._exit(0 if ok and jinja_cache.stats()["compiled"] >= 1 else 3)
        except BaseException:  # pragma: no cover - reported by the exit status
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    files = [p for p in directory.iterdir() if not p.name.endswith(".tmp")]
    assert files, "the worker left no compiled entry"
    before = jinja_cache.stats()
    assert Templar(loader=DataLoader(), variables={"x": 5}).template(source) == "15 compiled in a child"
    after = jinja_cache.stats()
    assert after["file_hits"] == before["file_hits"] + 1 and after["compiled"] == before["compiled"]


def test_a_damaged_entry_is_compiled_again(tmp_path):
    assert jinja_cache.install(str(tmp_path))
    source = trust_as_template("{{ x - 1 }}")
    assert Templar(loader=DataLoader(), variables={"x": 2}).template(source) == 1
    for path in tmp_path.iterdir():
        path.write_bytes(b"\x00garbage")
    jinja_cache._MEM.clear()
    assert Templar(loader=DataLoader(), variables={"x": 7}).template(source) == 6


def test_turned_off_or_unsupported_means_nothing_is_patched(monkeypatch):
    from ansible._internal._templating._jinja_bits import AnsibleEnvironment
    original = AnsibleEnvironment.compile
    monkeypatch.setenv("JINCAI_JINJA_CACHE", "0")
    assert jinja_cache.install() is False
    assert AnsibleEnvironment.compile is original
    monkeypatch.delenv("JINCAI_JINJA_CACHE")
    assert not jinja_cache.supported("2.20.0", "3.1.6")
    assert not jinja_cache.supported("2.19.14", "3.2.0")
    assert jinja_cache.supported("2.19.14", "3.1.6")
