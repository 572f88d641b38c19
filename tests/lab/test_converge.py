"""`jincai converge` on the live lab (#14): site 220102's server gets a managed file changed and a
service stopped by hand, its router is left alone. `--check` runs site.yml --check on the server only
and changes nothing; the real run restores both on the server only (the router is read, not run);
the next run finds both converged and runs no site.yml at all.

The hosts need current manifests: after the session's site.yml (test_00_site) they exist; run alone,
the fixture runs site.yml --limit on them first (converged: changes nothing)."""

import json
import os
import subprocess

import pytest

import jincai.compliance as comp

from conftest import LAB_INVENTORY, ROOT, inventory, run_on

pytestmark = pytest.mark.lab

JINCAI = os.path.join(ROOT, ".venv", "bin", "jincai")
SITE = "220102"
SERVER, ROUTER = f"{SITE}-app1", f"{SITE}-rtr"
BREAK = ("cp -p /etc/issue.net /root/jcconv-issue.net && echo '# jcconv' >> /etc/issue.net && "
         "systemctl stop chrony")
STATE = "sha256sum /etc/issue.net | cut -c1-64; systemctl is-active chrony || true"
RESTORE = ("test ! -f /root/jcconv-issue.net || mv /root/jcconv-issue.net /etc/issue.net; "
           "systemctl start chrony")


def converge(*args, timeout=1200):
    """Run `jincai converge -i lab --limit 220102 ARGS`; return (exit code, output)."""
    proc = subprocess.run([JINCAI, "converge", "-i", LAB_INVENTORY, "--limit", SITE, "-q", *args],
                          capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT)
    return proc.returncode, proc.stdout + proc.stderr


def decision(out):
    """The decision.json the run names in its output."""
    path = out.rsplit("decision ", 1)[1].split()[0]
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def state():
    res = run_on(SERVER, STATE)
    assert res.returncode == 0, res.stderr
    return res.stdout.split()


@pytest.fixture(scope="module")
def recorded(lab_up, tmp_path_factory):
    """Both hosts of the site have a manifest of the current source (site.yml --limit where not)."""
    from jincai.run import run as run_playbook

    hosts = [SERVER, ROUTER]
    _doc, missing = comp.plan_fast(inventory(), LAB_INVENTORY, hosts, [], str(tmp_path_factory.mktemp("plan")))
    if missing:
        res = run_playbook("playbooks/site.yml", inventory=LAB_INVENTORY, args=["--limit", ",".join(missing)])
        assert res.rc == 0, res.output[-4000:]
        _doc, missing = comp.plan_fast(inventory(), LAB_INVENTORY, hosts, [], str(tmp_path_factory.mktemp("plan")))
    assert not missing, f"no current manifest after site.yml: {missing}"
    return hosts


def test_converge_runs_site_yml_only_where_a_host_drifted_and_then_nowhere(recorded):
    clean = state()
    assert clean[1] == "active", clean
    try:
        assert run_on(SERVER, BREAK).returncode == 0
        broken = state()
        assert broken[0] != clean[0] and broken[1] != "active", broken

        rc, out = converge("--check")
        assert rc == 0, out
        assert "2 hosts; 1 converged" in out and f"run   {SERVER}" in out and f"run   {ROUTER}" not in out, out
        assert "drifted: base: file /etc/issue.net (sha256) and 1 more" in out, out
        assert "site.yml --check on 1 hosts: rc 0" in out, out
        assert state() == broken, "converge --check changed the host"

        rc, out = converge()
        assert rc == 0, out
        assert f"run   {SERVER}" in out and f"run   {ROUTER}" not in out, out
        assert "site.yml on 1 hosts: rc 0" in out and "changed=0," not in out, out
        assert state() == clean, "site.yml did not restore the file and the service"
        doc = decision(out)
        assert list(doc["run"]) == [SERVER] and doc["left"] == [ROUTER] and doc["site"]["rc"] == 0, doc
        assert doc["run"][SERVER].startswith("drifted: base: file /etc/issue.net") and doc["site"]["changed"] > 0
    finally:
        run_on(SERVER, RESTORE, timeout=120)

    rc, out = converge()
    assert rc == 0, out
    assert "2 hosts; 2 converged" in out and "nothing to do" in out and "left as they were" not in out, out
    assert decision(out)["run"] == {} and "site" not in decision(out)
