"""The CRL lifecycle (issue 16): refresh when due, push, HTTP publication on the services host, the
timer on the control node, and the compliance check that fails N days before a concentrator's CRL
expires."""

import datetime
import os

import jinja2
import pytest
import yaml
from cryptography import x509

from jincai import ROOT
from jincai.compliance import checks, model
from jincai.pki import cli, registry, vpn

PLAN = {"pool": "198.18.160.0/29", "apps": ["budget"], "lan": "198.18.0.0/24", "site": "220000",
        "domain": "lab.jincai.test", "concentrator": {"name": "220000-vpn", "address": "198.18.232.1"},
        "clients": ["bu0001"]}
EXP = model.load_controls()["expected"]
NOW = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.timezone.utc)


@pytest.fixture()
def pkidir(pkidir, monkeypatch):  # conftest's, with this module's plan
    monkeypatch.setattr(vpn, "plan", lambda inv, concentrator=None: PLAN)
    return pkidir


def _crl(pkidir):
    return x509.load_pem_x509_crl((pkidir / "crl.pem").read_bytes())


def test_crl_if_due_refreshes_a_crl_near_expiry_and_keeps_a_fresh_one(pkidir, capsys):
    assert cli.main(["crl", "--days", "1"]) == 0  # a short-lived CRL: what "near expiry" looks like
    short = _crl(pkidir)
    assert short.next_update_utc - short.last_update_utc < datetime.timedelta(days=2)
    assert "published" in capsys.readouterr().out
    assert cli.main(["crl", "--if-due"]) == 0  # the timer: due (less than half of 30 days left)
    fresh = _crl(pkidir)
    n = fresh.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert n == short.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1
    assert fresh.next_update_utc - fresh.last_update_utc > datetime.timedelta(days=29)
    capsys.readouterr()
    before = (pkidir / "crl.pem").read_bytes()
    assert cli.main(["crl", "--if-due"]) == 0  # not due: nothing is written
    assert "unchanged" in capsys.readouterr().out and (pkidir / "crl.pem").read_bytes() == before


def test_crl_push_runs_the_vpn_crl_play_and_returns_its_exit_code(monkeypatch):
    calls = []

    class Res:
        rc = 2

    def fake(playbook, inventory=None, args=(), echo=False):
        calls.append((playbook, inventory, args))
        return Res()

    assert cli.push_crl("/inv", runner=fake) == 2
    assert calls == [("playbooks/vpn.yml", "/inv", ("--tags", "vpn_crl"))]
    with open(os.path.join(ROOT, "playbooks", "vpn.yml"), encoding="utf-8") as fh:
        plays = yaml.safe_load(fh)
    tagged = [p["hosts"] for p in plays if "vpn_crl" in str(p)]
    assert "services:&province" in tagged and "vpn_concentrators" in tagged


def _facts(next_update, now=NOW):
    value = next_update.strftime("%b %d %H:%M:%S %Y GMT") if next_update else None
    return {"crls": {"/etc/swanctl/x509crl/province.crl": {"rc": 0, "next_update": value, "err": ""}},
            "collected_at": int(now.timestamp())}


def _crl_result(facts, functions=("vpn_concentrator",)):
    res = [r for r in checks.evaluate_server(facts, {"functions": list(functions)}, EXP) if r.check == "vpn.crl_fresh"]
    return res[0] if res else None


def test_compliance_fails_when_a_concentrators_crl_is_within_n_days_of_expiry():
    n = EXP["crl_min_days"]
    ok = _crl_result(_facts(NOW + datetime.timedelta(days=n + 1)))
    assert ok.passed and ok.control == "L3-CES1-05" and f"({n + 1}.0 days)" in ok.found
    near = _crl_result(_facts(NOW + datetime.timedelta(days=n - 1)))
    assert not near.passed and "province.crl: nextUpdate" in near.found
    assert not _crl_result(_facts(NOW - datetime.timedelta(hours=1))).passed  # expired
    assert not _crl_result({"crls": {}, "collected_at": 1}).passed  # none installed
    assert _crl_result(_facts(None), functions=("app_server",)) is None  # not a concentrator: not judged


def test_collector_reads_the_crls_with_openssl(monkeypatch, tmp_path):
    from jincai.compliance import collector

    monkeypatch.setattr(collector.glob, "glob", lambda pattern: ["/etc/swanctl/x509crl/province.crl"])
    monkeypatch.setattr(collector, "run", lambda argv, timeout=20: {
        "rc": 0, "out": "nextUpdate=Dec 31 10:00:00 2026 GMT\n", "err": ""})
    got = collector.crls()
    assert got == {"/etc/swanctl/x509crl/province.crl": {"rc": 0, "next_update": "Dec 31 10:00:00 2026 GMT", "err": ""}}
    assert _crl_result({"crls": got, "collected_at": int(NOW.timestamp())}).passed


def _render(role, template, **ctx):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(ROOT, "roles", role, "templates")),
                             trim_blocks=True, undefined=jinja2.StrictUndefined)
    with open(os.path.join(ROOT, "roles", role, "defaults", "main.yml"), encoding="utf-8") as fh:
        defaults = yaml.safe_load(fh)
    values = dict(defaults, **ctx)
    for _ in range(3):  # defaults refer to each other
        values = {k: env.from_string(v).render(values) if isinstance(v, str) else v for k, v in values.items()}
    return env.get_template(template).render(values)


def test_the_crl_timer_runs_the_refresh_every_six_hours_under_a_lock():
    service = _render("vpn_crl_timer", "service.j2")
    exec_start = next(line for line in service.splitlines() if line.startswith("ExecStart="))
    assert exec_start == ("ExecStart=/usr/bin/flock --nonblock --conflict-exit-code 75 /run/lock/jincai-vpn-crl.lock "
                          "/opt/jincai/.venv/bin/jincai pki --inventory /opt/jincai/inventories/jilin crl --if-due --push")
    with_vault = _render("vpn_crl_timer", "service.j2",
                         vpn_crl_timer_environment={"ANSIBLE_VAULT_IDENTITY_LIST": "jilin@/etc/jincai/vault-jilin.sh"})
    assert "Environment=ANSIBLE_VAULT_IDENTITY_LIST=jilin@/etc/jincai/vault-jilin.sh" in with_vault
    timer = _render("vpn_crl_timer", "timer.j2")
    assert "OnCalendar=*-*-* 00/6:20:00" in timer and "Persistent=true" in timer
    # four runs a day against a re-issue at half of 30 days: many retries before any CRL expires
    assert registry.CRL_DAYS / 2 >= 7


def test_every_new_role_has_argument_specs_for_each_default():
    for role in ("vpn_crl_timer", "vpn_crl_publish"):
        with open(os.path.join(ROOT, "roles", role, "defaults", "main.yml"), encoding="utf-8") as fh:
            defaults = yaml.safe_load(fh)
        with open(os.path.join(ROOT, "roles", role, "meta", "argument_specs.yml"), encoding="utf-8") as fh:
            spec = yaml.safe_load(fh)["argument_specs"]["main"]["options"]
        assert set(defaults) == set(spec), role
