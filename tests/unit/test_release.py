"""Unit tests of jincai.release: release files, the rollout plan, the artifact contract (manifests),
the status read back from the hosts, and the production guard against the test applications."""

import gzip
import io
import json
import os
import shutil
import tarfile

import pytest
import yaml

from jincai import ROOT, release
from jincai.source import model

LAB = os.path.join(ROOT, "inventories", "lab")


@pytest.fixture(scope="module")
def catalog():
    return release.catalogue(LAB)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """The test applications built as the apps pre-flight builds them."""
    out = tmp_path_factory.mktemp("artifacts")
    release.fixture_sums()  # builds in a temporary directory
    import importlib.util

    spec = importlib.util.spec_from_file_location("apps_build_for_release", release.FIXTURE_BUILD)
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    build.build_all(str(out))
    return str(out)


def _write_release(tmp_path, rid, doc):
    path = tmp_path / f"{rid}.yml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return str(tmp_path)


def test_the_lab_releases_agree_with_the_lab_catalogue(catalog):
    for rid in ("lab-1", "lab-2", "lab-3-broken"):
        rel = release.load_release(rid)
        assert release.catalogue_findings(rel, catalog) == [], rid
    assert release.load_release("lab-3-broken")["apps"]["treasury"]["version"] == "3.0.0"


@pytest.mark.parametrize("doc, message", [
    ({"release": "other", "apps": {}}, "field release is 'other', must be the file's ID 'r1'"),
    ({"release": "r1", "apps": {"budget": {"version": "2.0.0", "sha256": "x", "tiers": ["city"]}}},
     "application budget: field sha256 must be 64"),
    ({"release": "r1", "apps": {"budget": {"version": "2.0.0", "sha256": "a" * 64, "tiers": ["town"]}}},
     "application budget: field tiers must list tiers among province/city/county"),
    ({"release": "r1", "apps": {"budget": {"version": 2.0, "sha256": "a" * 64, "tiers": ["city"]}}},
     "application budget: field version must be a string"),
])
def test_a_bad_release_file_is_refused_naming_file_and_field(tmp_path, doc, message):
    rdir = _write_release(tmp_path, "r1", doc)
    with pytest.raises(release.ReleaseError) as err:
        release.load_release("r1", rdir)
    assert str(tmp_path / "r1.yml") in str(err.value) and message in str(err.value)


def test_a_release_id_must_be_a_plain_name():
    with pytest.raises(release.ReleaseError, match="release ID '../x'"):
        release.release_path("../x")


def test_a_release_that_disagrees_with_the_catalogue_is_refused(tmp_path, catalog):
    doc = yaml.safe_load(open(os.path.join(release.RELEASES_DIR, "lab-2.yml"), encoding="utf-8"))
    doc["release"] = "r2"
    doc["apps"]["budget"]["sha256"] = "0" * 64
    doc["apps"]["nontax"]["version"] = "9.9.9"
    doc["apps"]["township"]["tiers"] = ["city"]
    rel = release.load_release("r2", _write_release(tmp_path, "r2", doc))
    found = "\n".join(release.catalogue_findings(rel, catalog))
    assert "application budget: sha256 " + "0" * 64 + " differs from the catalogue's" in found
    assert "application nontax: version 9.9.9 is not in the catalogue's versions (1.0.0, 2.0.0, 3.0.0)" in found
    assert "application township: tiers ['city'] do not run it" in found


def test_plan_follows_the_waves_of_the_catalogue_and_the_hosts_of_the_inventory():
    p = release.plan(LAB, "lab-2")
    steps = {(s["wave"], s["tier"]): s for s in p["waves"]}
    assert sorted(steps) == [(1, "city"), (2, "city"), (2, "county"), (2, "province"), (3, "county")]
    assert steps[(1, "city")]["apps"] == {"budget": {"version": "2.0.0", "schema": 2},
                                          "treasury": {"version": "2.0.0", "schema": 2}}
    assert steps[(1, "city")]["hosts"] == ["220100-app1", "220200-app1"]
    assert set(steps[(2, "county")]["apps"]) == {"township"}
    assert steps[(3, "county")]["hosts"] == ["220102-app1", "220103-app1", "220202-app1"]
    assert p["findings"] == [] and p["untouched"] == []
    text = release.format_plan(p)
    assert "wave 1: first batch 220100-app1 alone" in text


def test_plan_compared_with_the_hosts_records_says_what_changes_per_host():
    records = {"220100-app1": {"release": "lab-1", "tier": "city", "apps": {"budget": {"version": "1.0.0"},
                                                                           "treasury": {"version": "2.0.0"}}},
               "220200-app1": {"error": "unreachable: timed out"}}
    p = release.annotate(release.plan(LAB, "lab-2"), records)
    wave1 = next(s for s in p["waves"] if s["wave"] == 1)
    assert wave1["changes"]["220100-app1"] == {"budget": "1.0.0 -> 2.0.0", "treasury": "unchanged"}
    assert wave1["changes"]["220200-app1"]["budget"] == "unknown (unreachable: timed out)"
    county = next(s for s in p["waves"] if s["wave"] == 2 and s["tier"] == "county")
    assert county["changes"]["220102-app1"] == {"township": "unknown (not read)"}
    assert "220100-app1: budget 1.0.0 -> 2.0.0, treasury unchanged" in release.format_plan(p)


def test_plan_of_a_release_for_some_tiers_leaves_the_others_unchanged(tmp_path):
    doc = yaml.safe_load(open(os.path.join(release.RELEASES_DIR, "lab-3-broken.yml"), encoding="utf-8"))
    doc["release"] = "cities-first"
    doc["apps"] = {"treasury": dict(doc["apps"]["treasury"], tiers=["city"])}
    p = release.plan(LAB, "cities-first", _write_release(tmp_path, "cities-first", doc))
    assert [(s["wave"], s["tier"], s["apps"]) for s in p["waves"]] == [
        (1, "city", {"treasury": {"version": "3.0.0", "schema": 3}})]
    assert ("treasury", "county", "tier not in this release's tiers") in p["untouched"]
    assert ("budget", "city", "not in this release") in p["untouched"]


def test_the_test_applications_conform_to_the_artifact_contract(catalog, artifacts):
    for app, cat in catalog.items():
        for version, entry in cat["versions"].items():
            path = os.path.join(artifacts, entry["artifact"])
            assert release.manifest_findings(path, app, version, cat) == [], path
            man, _ = release.read_manifest(path)
            assert man["port"] == cat["backend_port"] and "{release}" in " ".join(man["start"])


def _repack(src, dst, change):
    """Copy a release tarball, changing its manifest with ``change(manifest)``."""
    with tarfile.open(src, "r:gz") as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as out:
        for member, data in members:
            if member.name == "release.json":
                doc = json.loads(data)
                change(doc)
                data = json.dumps(doc).encode()
                member.size = len(data)
            out.addfile(member, io.BytesIO(data))
    with open(dst, "wb") as fh:
        fh.write(buf.getvalue())


def test_an_artifact_whose_manifest_breaks_the_contract_is_refused(tmp_path, catalog, artifacts):
    src = os.path.join(artifacts, "treasury-2.0.0.tar.gz")
    bad = str(tmp_path / "treasury-2.0.0.tar.gz")
    _repack(src, bad, lambda m: (m.update(port=9999, version="2.0.1"), m.pop("migrate")))
    found = release.manifest_findings(bad, "treasury", "2.0.0", catalog["treasury"])
    assert found == [f"{bad}: release.json: field migrate is missing"]
    _repack(src, bad, lambda m: m.update(port=9999, version="2.0.1"))
    found = "\n".join(release.manifest_findings(bad, "treasury", "2.0.0", catalog["treasury"]))
    assert "field version is '2.0.1', the catalogue says '2.0.0'" in found
    assert "field port is 9999, the catalogue says 18102" in found
    _repack(src, bad, lambda m: m["files"].update({"jincai_app.py": "0" * 64}))
    assert "field files does not match the artifact's content (jincai_app.py)" in "\n".join(
        release.manifest_findings(bad, "treasury", "2.0.0", catalog["treasury"]))
    assert "is a test application (fixture: true): production refuses it" in "\n".join(
        release.manifest_findings(src, "treasury", "2.0.0", catalog["treasury"], production=True))


def test_rollout_check_refuses_an_override_outside_the_catalogue(catalog, artifacts):
    found, _ = release.rollout_findings({"catalog": catalog, "release": "lab-2", "overrides": {"budget": "7.0.0"},
                                         "artifact_dir": artifacts})
    assert found == ["apps_releases: budget 7.0.0: needs budget in release lab-2 and 7.0.0 among the "
                     "catalogue's versions (1.0.0, 2.0.0, 3.0.0)"]
    ok, _ = release.rollout_findings({"catalog": catalog, "release": "lab-3-broken", "artifact_dir": artifacts})
    assert ok == []


def test_production_findings_name_every_fixture_the_inventory_points_at(catalog):
    found = release.production_findings(catalog, release.load_release("lab-2"), True, "inv")
    assert found[0] == "inv: apps_build_fixtures is true: the test applications would be built and deployed"
    assert "inv: apps_catalog.treasury.versions.3.0.0: sha256 is the test application treasury-3.0.0.tar.gz" \
        " (tests/fixtures/apps)" in found
    assert any("lab-2.yml: application budget: sha256 is the test application budget-2.0.0.tar.gz" in f for f in found)
    assert len(found) == 1 + 12 + 4
    vendor = {"budget": dict(catalog["budget"], versions={"5.1.0": {"artifact": "b.tgz", "sha256": "e" * 64,
                                                                    "schema": 7}})}
    assert release.production_findings(vendor, None, False, "inv") == []


# --- status: read back from the hosts with one ad-hoc Ansible run (here: two local hosts) ---

def test_status_reads_each_hosts_record_and_says_what_differs(tmp_path):
    rec_dir = tmp_path / "hosts"
    (rec_dir / "a").mkdir(parents=True)
    (rec_dir / "b").mkdir()
    (rec_dir / "c").mkdir()
    record = {"release": "lab-2", "overrides": {}, "host": "a", "site": "220102", "tier": "county",
              "apps": {"treasury": {"version": "2.0.0"}, "township": {"version": "2.0.0"}}}
    (rec_dir / "a" / "release.json").write_text(json.dumps(record))
    record = dict(record, host="b", site="220103", apps={"treasury": {"version": "3.0.0"}})
    (rec_dir / "b" / "release.json").write_text(json.dumps(record))
    inv = tmp_path / "hosts.yml"
    inv.write_text(yaml.safe_dump({"app_servers": {"hosts": {
        h: {"ansible_connection": "local", "ansible_python_interpreter": shutil.which("python3"),
            "ansible_become": False} for h in ("a", "b", "c")}}}))
    records = release.read_status(str(inv), status_file=str(rec_dir) + "/{{ inventory_hostname }}/release.json")
    assert records["a"]["release"] == "lab-2" and records["b"]["apps"]["treasury"]["version"] == "3.0.0"
    assert records["c"] == {"error": "no release recorded"}
    text = release.format_status(records)
    line_a = next(line for line in text.splitlines() if " a " in line)
    line_b = next(line for line in text.splitlines() if " b " in line)
    assert "220102" in line_a and "lab-2" in line_a and "DIFFERS" not in line_a
    assert "DIFFERS: treasury 3.0.0 (release: 2.0.0)" in line_b
    assert text.splitlines()[-1] == "(unknown): 1 host(s), lab-2: 2 host(s)"


def test_the_unit_starts_what_the_manifest_says(artifacts):
    """roles/apps/templates/app.service.j2 takes ExecStart from the release's manifest."""
    import jinja2

    man, _ = release.read_manifest(os.path.join(artifacts, "treasury-2.0.0.tar.gz"))
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(ROOT, "roles", "apps", "templates")),
                             trim_blocks=True, undefined=jinja2.StrictUndefined)
    ctx = {"ansible_managed": "managed", "_apps_name": "treasury", "_apps_app": {"name_zh": "x", "name_en": "y"},
           "apps_root": "/opt/jincai/apps", "_apps_conf": "/etc/jincai/apps/treasury", "_apps_version": "2.0.0"}
    unit = env.get_template("app.service.j2").render(**ctx, _apps_manifest=man)
    assert "ExecStart=/usr/bin/python3 /opt/jincai/apps/treasury/current/jincai_app.py serve\n" in unit
    unpacked_later = env.get_template("app.service.j2").render(**ctx, _apps_manifest={})
    assert "ExecStart=" not in unpacked_later and "release 2.0.0 is not unpacked yet" in unpacked_later


def test_the_rollout_records_what_runs_and_status_reads_it_back(tmp_path):
    """roles/apps/tasks/record.yml for real (a local host), then jincai release status on its record."""
    import subprocess
    import sys

    root = tmp_path / "apps"
    for app, version in (("budget", "2.0.0"), ("township", "1.0.0")):
        (root / app / "releases" / version).mkdir(parents=True)
        (root / app / "current").symlink_to(root / app / "releases" / version)
    record = tmp_path / "release.json"
    inv = tmp_path / "hosts.yml"
    inv.write_text(yaml.safe_dump({"app_servers": {"hosts": {"220102-app1": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable, "ansible_become": False,
        "jincai_apps": ["budget", "township"], "jincai_site_code": "220102", "jincai_tier": "county",
        "jincai_applications": model.load(LAB).network["applications"]}}}}))
    play = tmp_path / "record.yml"
    play.write_text(yaml.safe_dump([{"name": "Record", "hosts": "app_servers", "gather_facts": False, "tasks": [
        {"name": "Record", "ansible.builtin.import_role": {"name": "apps", "tasks_from": "record"}}]}]))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_ROLES_PATH=os.path.join(ROOT, "roles"))
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), str(play), "-i", str(inv),
            "-e", f"@{os.path.join(LAB, 'group_vars', 'all', 'apps.yml')}",
            "-e", f"apps_root={root} apps_release_record={record} apps_releases_dir={release.RELEASES_DIR}"]
    res = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    doc = json.loads(record.read_text())
    assert doc == {"release": "lab-2", "overrides": {}, "host": "220102-app1", "site": "220102", "tier": "county",
                   "apps": {"budget": {"version": "2.0.0",
                                       "sha256": release.load_release("lab-2")["apps"]["budget"]["sha256"]},
                            "township": {"version": "1.0.0", "sha256": release.inventory_vars(LAB)[
                                "apps_catalog"]["township"]["versions"]["1.0.0"]["sha256"]}}}
    records = release.read_status(str(inv), status_file=str(record))
    line = next(x for x in release.format_status(records).splitlines() if "220102-app1" in x)
    assert "lab-2" in line and "DIFFERS: township 1.0.0 (release: 2.0.0)" in line
