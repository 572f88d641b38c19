"""Separation of duties (三员分立) in the accounts role: people's groups, the technicians' listed
service operations, the sudoers file every role gets (checked by visudo when one is at hand) and the
role commands' argument checks. Pure: no lab, nothing installed."""

import os
import shutil
import subprocess

import jinja2
import pytest
import yaml

from jincai import ROOT
from tests.unit.test_baseline_filters import ACC, GOOD, GOOD2

ROLE = os.path.join(ROOT, "roles", "accounts")
with open(os.path.join(ROLE, "defaults", "main.yml"), encoding="utf-8") as _fh:
    DEFAULTS = yaml.safe_load(_fh)
GROUPS = DEFAULTS["accounts_role_groups"]


def admin(user, role, key=GOOD, **extra):
    return {"user": user, "name": user, "key": key, "roles": [role] if isinstance(role, str) else role, **extra}


def tech(user, key=GOOD2, **extra):
    return {"user": user, "name": user, "key": key, **extra}


def visudo():
    """visudo from $JINCAI_VISUDO (e.g. an unpacked sudo .deb: DIR/usr/sbin/visudo) or the PATH."""
    path = os.environ.get("JINCAI_VISUDO") or shutil.which("visudo")
    return path if path and os.path.exists(path) else None


def test_each_administrator_gets_their_one_role_group_and_technicians_theirs():
    people = ACC.accounts_people([admin("jcadmin", "system"), admin("jcaudit", "audit"),
                                  admin("gone", "security", state="absent")],
                                 [tech("t1"), tech("t2", state="absent")], "jincai-admins", "jincai-technicians",
                                 GROUPS)
    got = {p["user"]: (p["_role"], p["_groups"]) for p in people}
    assert got == {"jcadmin": ("system", ["jincai-admins", "jincai-sysadmins"]),
                   "jcaudit": ("audit", ["jincai-admins", "jincai-auditors"]),
                   "t1": ("technician", ["jincai-technicians"])}


@pytest.mark.parametrize("roles", [[], ["system", "audit"], ["dba"], None])
def test_an_administrator_without_exactly_one_known_role_stops_the_role(roles):
    admins = [{"user": "x1", "name": "x", "key": GOOD, "roles": roles}]
    assert ACC.accounts_role_errors(admins, GROUPS) == [
        f"administrator x1: roles {roles or []!r}: exactly one of audit, security, system (三员分立; jincai validate "
        "says so too)"]
    assert ACC.accounts_role_errors([dict(admins[0], state="absent")], GROUPS) == []
    with pytest.raises(ValueError, match="exactly one of audit, security, system"):
        ACC.accounts_people(admins, [], "a", "t", GROUPS)


def technician_commands(functions, apps=(), services=None):
    return ACC.accounts_technician_commands(DEFAULTS["accounts_technician_services"] if services is None else services,
                                            functions, apps, DEFAULTS["accounts_technician_app_operations"])


def test_technicians_get_this_hosts_service_operations_and_nothing_broader():
    cmds = technician_commands(["app_server"], ["budget", "township"])
    assert "/usr/bin/systemctl restart jincai-budget.service" in cmds
    assert "/usr/bin/systemctl stop jincai-township.service" in cmds
    assert "/usr/bin/systemctl --no-pager status nginx.service" in cmds
    assert "/usr/bin/journalctl --no-pager -n 500 -u postgresql.service" in cmds
    # logging and time restart but never stop; no VPN unit on an app server
    assert "/usr/bin/systemctl restart rsyslog.service" in cmds
    assert not any(c.startswith("/usr/bin/systemctl stop ") and ("rsyslog" in c or "chrony" in c) for c in cmds)
    assert not any("strongswan" in c for c in cmds)
    # exact commands only: no wildcard, shell, editor, pager or bare systemctl
    for c in cmds:
        assert "*" not in c and c.split()[0] in ("/usr/bin/systemctl", "/usr/bin/journalctl")
        assert len(c.split()) >= 3 and ("status" not in c and "journalctl" not in c or "--no-pager" in c)
    assert "/usr/bin/systemctl restart strongswan.service" in technician_commands(["vpn_concentrator"])


@pytest.mark.parametrize("services, words", [
    ({"all": {"nginx.service": ["edit"]}}, "technician operation 'edit'"),
    ({"all": {"nginx; sh": ["restart"]}}, "is not a systemd unit name"),
    ({"all": {"-x.service": ["restart"]}}, "is not a systemd unit name"),
])
def test_unknown_operations_and_odd_unit_names_are_refused(services, words):
    with pytest.raises(ValueError, match=words):
        ACC.accounts_technician_commands(services, [], [], [])


def render_sudoers(functions=("app_server",), apps=("budget",), tier="county", **over):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(ROLE, "templates")), trim_blocks=True,
                             undefined=jinja2.StrictUndefined)
    values = dict(DEFAULTS, jincai_tier=tier, **over)
    values["_accounts_technician_commands"] = technician_commands(list(functions), list(apps),
                                                                  values["accounts_technician_services"])
    return env.get_template("sudoers.j2").render(**values)


def rule_lines(text):
    return [line for line in text.splitlines() if line.startswith("%")]


def test_sudoers_gives_all_only_to_system_administrators():
    text = render_sudoers()
    rules = rule_lines(text)
    assert rules == ["%jincai-auditors\tALL=(root) JINCAI_AUDIT",
                     "%jincai-secadmins\tALL=(root) JINCAI_SECURITY",
                     "%jincai-sysadmins\tALL=(ALL:ALL) ALL",
                     "%jincai-technicians\tALL=(root) JINCAI_TECHNICIAN"]
    assert "Cmnd_Alias\tJINCAI_AUDIT = /usr/local/sbin/jincai-audit-read\n" in text
    assert "/usr/bin/systemctl restart jincai-budget.service" in text
    assert "县级技术员 county technicians" in text
    assert "NOPASSWD" not in text and "%jincai-admins" not in text


def test_no_technician_rule_when_a_host_has_no_operations():
    text = render_sudoers(apps=(), accounts_technician_services={})
    assert "JINCAI_TECHNICIAN" not in text


@pytest.mark.parametrize("functions, apps, tier", [(["app_server"], ["budget", "treasury", "nontax", "township"],
                                                    "county"),
                                                   (["vpn_concentrator"], [], "city"), (["services"], [], "province")])
def test_rendered_sudoers_passes_visudo(tmp_path, functions, apps, tier):
    assert visudo(), "no visudo: `make deps` installs sudo (APT_PACKAGES); or set JINCAI_VISUDO"
    path = tmp_path / "jincai-baseline"
    path.write_text(render_sudoers(functions, apps, tier), encoding="utf-8")
    exe = visudo()
    libs = os.path.join(os.path.dirname(os.path.dirname(exe)), "libexec", "sudo")
    env = dict(os.environ, LD_LIBRARY_PATH=libs) if os.path.isdir(libs) else None
    res = subprocess.run([exe, "-cf", str(path)], capture_output=True, text=True, env=env, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    bad = tmp_path / "bad"
    bad.write_text(render_sudoers(accounts_sudo_extra_rules=["%x ALL=(root"]), encoding="utf-8")
    assert subprocess.run([exe, "-cf", str(bad)], capture_output=True, env=env, check=False).returncode != 0


def role_command(tmp_path, name):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(ROLE, "templates")), trim_blocks=True,
                             undefined=jinja2.StrictUndefined)
    path = tmp_path / name
    path.write_text(env.get_template(f"{name}.j2").render(**DEFAULTS), encoding="utf-8")
    return path


@pytest.mark.parametrize("name, args", [
    ("jincai-audit-read", ["search", "--checkpoint=/etc/passwd"]),
    ("jincai-audit-read", ["remote", "../../etc"]),
    ("jincai-audit-read", ["remote", "220102-app1", "2026-12-01; id"]),
    ("jincai-audit-read", ["journal", "-o"]),
    ("jincai-audit-read", ["audit-log", "/etc/shadow"]),
    ("jincai-audit-read", ["edit"]),
    ("jincai-audit-read", []),
    ("jincai-secadm", ["unlock", "root -x"]),
    ("jincai-secadm", ["unlock", "--dir=/tmp"]),
    ("jincai-secadm", ["rights", "root"]),
    ("jincai-secadm", ["firewall", "flush"]),
    ("jincai-secadm", ["shell"]),
])
def test_role_commands_refuse_anything_but_their_listed_reads(tmp_path, name, args):
    res = subprocess.run(["sh", str(role_command(tmp_path, name))] + args, capture_output=True, text=True,
                         check=False)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "usage:" in res.stderr or "bad" in res.stderr or "not a person" in res.stderr


@pytest.mark.parametrize("name", ["jincai-audit-read", "jincai-secadm"])
def test_role_commands_are_valid_shell(tmp_path, name):
    assert subprocess.run(["sh", "-n", str(role_command(tmp_path, name))], check=False).returncode == 0


def test_what_the_role_renders_is_what_compliance_accepts_per_role():
    """The catalogue's sudo policy (jincai/data/mlps_controls.yml) admits every command the role gives."""
    import re  # noqa: PLC0415

    from jincai.compliance import model  # noqa: PLC0415

    exp = model.load_controls()["expected"]
    policy, forbidden = exp["sudo_role_commands"], exp["sudo_forbidden_commands"]
    for role, commands in DEFAULTS["accounts_sudo_role_commands"].items():
        assert all(any(re.fullmatch(p, c) for p in policy[role]) for c in commands), role
    for functions in (["app_server"], ["services"], ["vpn_concentrator"]):
        for c in technician_commands(functions, ["budget", "township"]):
            assert any(re.fullmatch(p, c) for p in policy["technician"]), c
            assert not any(re.fullmatch(p, c) for p in forbidden), c


def test_other_local_accounts_with_a_password_are_aged_too():
    shadow = {"root": ["$y$j9T$salt$hash", "19000", "0", "99999", "7", "", "", ""],
              "daemon": ["*", "19000", "0", "99999", "7", "", "", ""],
              "jincai": ["!", "19000", "", "", "", "", "", ""],
              "jcadmin": ["$y$j9T$s$h", "19000", "0", "99999", "7", "", "", ""],
              "svc": ["$y$x$s$h", "19000", "2", "90", "7", "", "", ""],
              "nopw": ["", "19000", "", "", "", "", "", ""]}
    assert ACC.accounts_unaged(shadow, ["jcadmin", "jincai"], 90, 2, 7) == ["root"]
