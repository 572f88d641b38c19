"""Unit tests of the application catalog, the release build, the jincai_pg module's SCRAM logic and
the rollout playbook's pre-flight checks (which run on the control node only, before any host)."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import yaml

from jincai import ROOT

CATALOG_FILE = os.path.join(ROOT, "inventories", "lab", "group_vars", "all", "apps.yml")
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "apps")


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


build = _load("apps_build", os.path.join(FIXTURES, "build.py"))


@pytest.fixture(scope="module")
def catalog():
    """The lab's catalogue as the apps role sees it: the source's applications with their deployment."""
    from jincai import release

    return release.catalogue(os.path.join(ROOT, "inventories", "lab"))


def test_catalog_lists_the_four_applications_with_their_ports(catalog):
    assert {a: c["port"] for a, c in catalog.items()} == {
        "budget": 8101, "treasury": 8102, "nontax": 8103, "township": 8104}
    assert len({c["backend_port"] for c in catalog.values()} | {c["port"] for c in catalog.values()}) == 8
    assert len({c["database"] for c in catalog.values()}) == 4


def test_waves_follow_the_articles_2007_2009_plan(catalog):
    # 2007: cities roll out budget + treasury; 2007-2008: province + cities non-tax, counties township;
    # 2008-2009: counties budget, treasury, non-tax.
    assert catalog["budget"]["tiers"] == {"city": 1, "province": 2, "county": 3}
    assert catalog["treasury"]["tiers"] == {"city": 1, "province": 2, "county": 3}
    assert catalog["nontax"]["tiers"] == {"province": 2, "city": 2, "county": 3}
    assert catalog["township"]["tiers"] == {"county": 2}


@pytest.mark.parametrize("inventory", ["jilin", "lab"])
def test_the_deployment_file_names_the_catalogue_and_copies_none_of_it(inventory):
    """group_vars/all/apps.yml deploys exactly the source's applications and restates none of the
    catalogue's facts (names, ports, waves live in network.yml only)."""
    base = os.path.join(ROOT, "inventories", inventory)
    with open(os.path.join(base, "source", "network.yml"), encoding="utf-8") as fh:
        source = yaml.safe_load(fh)["network"]["applications"]
    with open(os.path.join(base, "group_vars", "all", "apps.yml"), encoding="utf-8") as fh:
        deployed = yaml.safe_load(fh)["apps_catalog"]
    assert list(deployed) == list(source)
    for app, entry in deployed.items():
        assert not set(entry) & {"name", "name_zh", "name_en", "port", "tiers", "parties", "budget_units"}, app


def test_every_release_is_built_reproducibly_and_matches_the_catalog(tmp_path, catalog):
    first = build.build_all(str(tmp_path / "a"))
    second = build.build_all(str(tmp_path / "b"))
    assert first == second
    for app, entry in catalog.items():
        for version, rel in entry["versions"].items():
            assert first[rel["artifact"]] == rel["sha256"], rel["artifact"]
            assert rel["schema"] == build.RELEASES[version]["schema"]


def test_check_catalog_fails_when_a_sum_is_wrong(tmp_path):
    with open(CATALOG_FILE, encoding="utf-8") as fh:
        text = fh.read()
    sums = build.catalog_sums(text)
    assert len(sums) == 12
    name = "treasury-2.0.0.tar.gz"
    bad = text.replace(sums[name], "0" * 64)
    assert build.catalog_sums(bad)[name] == "0" * 64
    out = subprocess.run([sys.executable, os.path.join(FIXTURES, "build.py"), "--check-catalog",
                          "--out", str(tmp_path)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr


def test_release_three_is_broken_and_the_others_are_not():
    """3.0.0's code reads a column its migration does not create; 1.0.0 and 2.0.0 match theirs."""
    created = set(build.BASE_COLUMNS)
    with open(os.path.join(FIXTURES, "src", "migrations", "002_status.up.sql"), encoding="utf-8") as fh:
        assert "ADD COLUMN status" in fh.read()
    created.add("status")
    assert set(build.RELEASES["1.0.0"]["columns"]) <= created
    assert set(build.RELEASES["2.0.0"]["columns"]) <= created
    assert not set(build.RELEASES["3.0.0"]["columns"]) <= created


def test_every_migration_after_the_first_can_be_undone():
    names = os.listdir(os.path.join(FIXTURES, "src", "migrations"))
    ups = sorted(n.split("_")[0] for n in names if n.endswith(".up.sql"))
    downs = sorted(n.split("_")[0] for n in names if n.endswith(".down.sql"))
    assert ups == ["001", "002", "003"]
    assert downs == ups[1:]


pg = _load("jincai_pg", os.path.join(ROOT, "library", "jincai_pg.py"))

# Made by PostgreSQL 15 itself: SET password_encryption='scram-sha-256'; CREATE ROLE x PASSWORD 'Secr3t'.
PG_VERIFIER = ("SCRAM-SHA-256$4096:nL1SZg3P5hs5CtTUp4cYDA==$E+n2OHSSMle+8Zv2te6UtLbx2l19pzqGDa7ZQxFQxFU="
               ":FaDIwfpr4gDvM6K1B6t3s4OJ1TeZfqcLYFwo0Go5Uqk=")


def test_scram_verifier_matches_postgresql_and_rejects_other_passwords():
    assert pg.scram_matches(PG_VERIFIER, "Secr3t")
    assert not pg.scram_matches(PG_VERIFIER, "secr3t")
    assert not pg.scram_matches("md5abcdef", "Secr3t")
    assert not pg.scram_matches("", "Secr3t")
    mine = pg.scram_verifier("another one")
    assert pg.scram_matches(mine, "another one") and mine.startswith("SCRAM-SHA-256$4096:")


def test_role_names_must_be_plain_identifiers():
    assert pg.NAME_RE.match("jincai_treasury")
    for bad in ("Treasury", "x; DROP DATABASE y", "1abc", "a-b", ""):
        assert not pg.NAME_RE.match(bad)


# --- pre-flight of playbooks/apps.yml: fails on the control node, before any host is contacted ---

def _preflight(tmp_path, extra):
    """Run only the check play of apps.yml with extra vars; return (rc, output)."""
    varsfile = tmp_path / "extra.yml"
    varsfile.write_text(yaml.safe_dump(extra))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    # Every host points at a closed loopback port: any attempt to contact one would show UNREACHABLE.
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "playbooks/apps.yml",
           "-i", os.path.join(ROOT, "inventories", "lab"), "-e", f"@{varsfile}",
           "-e", "ansible_host=127.0.0.1", "-e", "ansible_port=1"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    return out.returncode, out.stdout + out.stderr


def test_preflight_refuses_a_release_missing_from_the_catalog(tmp_path):
    rc, out = _preflight(tmp_path, {"apps_releases": {"treasury": "9.9.9"}})
    assert rc != 0
    assert "apps_releases: treasury 9.9.9: needs treasury in release lab-2 and 9.9.9 among the catalogue's versions" in out
    assert "UNREACHABLE" not in out and "PLAY [Publish the releases" not in out


def test_preflight_names_host_site_and_field_for_apps_a_tier_does_not_run(tmp_path):
    rc, out = _preflight(tmp_path, {"jincai_apps": ["budget", "township"]})
    assert rc != 0
    assert "host 220100-app1 (site 220100, tier city): field jincai_apps" in out
    assert "UNREACHABLE" not in out and "PLAY [Publish the releases" not in out


def test_preflight_refuses_an_artifact_whose_sha256_differs(tmp_path, catalog):
    bad = json.loads(json.dumps(catalog))
    bad["nontax"]["versions"]["2.0.0"]["sha256"] = "f" * 64
    rc, out = _preflight(tmp_path, {"apps_catalog": bad})
    assert rc != 0
    assert "nontax-2.0.0.tar.gz: sha256" in out and "expects sha256 " + "f" * 64 in out
    assert "The release is refused." in out
    assert "UNREACHABLE" not in out and "PLAY [Publish the releases" not in out
