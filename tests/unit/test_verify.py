"""jincai verify offline: the checks planned from the lab and Jilin inventories (and collected by pytest
without contacting anything), no address or port in the test modules, the command line, the summary and
exit codes on canned JUnit results, the checks' verdicts on a canned host, the shared compliance table,
and a whole run against a host that does not answer (127.0.0.1, a closed port)."""

import glob
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import testinfra
from testinfra.backend import base as tbase

from jincai import ROOT
from jincai.compliance import checks as cchecks
from jincai.policy import intended
from jincai.verify import plan, pytest_argv, report, support
from jincai.verify import main as verify_main

LAB = os.path.join(ROOT, "inventories", "lab")
JILIN = os.path.join(ROOT, "inventories", "jilin")
TESTS = os.path.join(ROOT, "jincai", "verify", "tests")


@pytest.fixture(scope="module")
def lab():
    return plan.Network(LAB)


@pytest.fixture(scope="module")
def jilin():
    return plan.Network(JILIN)


def _collect(inventory, *extra):
    """pytest --collect-only of the suite: {host: {check id: test function}} (nothing is contacted)."""
    res = subprocess.run([sys.executable, "-m", "pytest", TESTS, "--rootdir", ROOT, "--collect-only", "-q",
                          "-p", "no:randomly", "-p", "no:cacheprovider", "-n", "0",
                          f"--ansible-inventory={inventory}", *extra],
                         capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    out = {}
    for line in res.stdout.splitlines():
        m = re.match(r"^\S+::(test_\w+)\[([^:\]]+):([^\]]+)\]$", line.strip())
        if m:
            out.setdefault(m.group(2), {})[m.group(3)] = m.group(1)
    return out


# ---------------------------------------------------------------- collection from the inventories

def test_lab_collection_generates_each_hosts_planned_checks(lab):
    collected = _collect(LAB)
    scope = plan.resolve_scope(lab, None)
    assert sorted(collected) == scope
    assert set(lab.group("external_parties")).isdisjoint(collected)
    for host in scope:
        assert collected[host] == {c.id: c.test for c in plan.checks_for(lab, host)}, host
    hv = lab.hostvars
    for host in lab.group("app_servers"):
        got = collected[host]
        for app in hv[host]["jincai_apps"]:  # the lab release (lab-2) runs every app of every tier
            port = hv[host]["jincai_applications"][app]["port"]
            assert got[f"app.{app}.health"] == "test_app_health"
            assert got[f"service.jincai-{app}"] == "test_service"
            assert got[f"listener.tcp.{port}"] == "test_listener"
        assert {"ntp.source", "logs.forwarding", "backup.local", "integrity.aide", "route.default",
                "listeners.only_intended", "service.postgresql", "apps.release"} <= set(got)
    for rtr in lab.group("routers"):
        peers = {i["peer"] for i in hv[rtr]["jincai_router"]["interfaces"] if i["role"] in ("uplink", "downlink")}
        assert {k.split(".", 2)[2] for k in collected[rtr] if k.startswith("ospf.neighbour.")} == peers
        assert "routes.site_lans" in collected[rtr] and "sysctl.net.ipv4.ip_forward" in collected[rtr]
    svc = lab.group("services")[0]
    received = {k[len("logs.received."):] for k in collected[svc] if k.startswith("logs.received.")}
    assert received == set(lab.group("machine_room")) - {svc}
    assert "logs.forwarding" not in collected[svc]  # the collector itself
    vpn = lab.group("vpn_concentrators")[0]
    clients = lab.group("budget_unit_clients") + lab.group("township_clients")
    assert "tw0001" in clients
    assert {k for k in collected[vpn] if k.startswith("vpn.tunnel.")} == {f"vpn.tunnel.{c}" for c in clients}
    for client in clients:
        assert {"vpn.tunnel", "vpn.virtual_ip", "service.strongswan"} <= set(collected[client])


def test_limit_collects_only_that_site(lab):
    collected = _collect(LAB, "--hosts=220102")
    assert sorted(collected) == sorted(lab.group("site_220102"))


def test_bad_limit_is_a_usage_error_before_collection():
    res = subprocess.run([sys.executable, "-m", "pytest", TESTS, "--rootdir", ROOT, "--collect-only", "-q",
                          "-p", "no:randomly", "-n", "0", f"--ansible-inventory={LAB}", "--hosts=999999"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert res.returncode == 4 and "--hosts: --limit 999999" in res.stderr + res.stdout


def test_jilin_collection_plans_every_host_and_its_vendor_routers_over_netmiko(jilin):
    collected = _collect(JILIN)
    scope = plan.resolve_scope(jilin, None)
    assert sorted(collected) == scope and len(scope) == 152
    for rtr in jilin.group("routers"):
        checks = plan.checks_for(jilin, rtr)
        if jilin.hostvars[rtr]["jincai_router"]["platform"] == "frr":
            assert not any(c.skip for c in checks) and "service.frr" in collected[rtr]
        else:  # a vendor router: the FRR router's routing checks (same ids, expected values) and its config
            assert not any(c.skip for c in checks) and all(c.test.startswith("test_vendor_") for c in checks)
            ids = {c.id for c in checks}
            assert {"routes.site_lans", "acl.management", "ntp.source", "logs.forwarding"} <= ids, rtr
            assert any(i.startswith("ospf.neighbour.") for i in ids) and any(i.startswith("interface.") for i in ids)
            assert set(collected[rtr]) == ids
    # production's apps_release is empty: no application checks, a skipped release record with the reason
    for host in jilin.group("app_servers"):
        ids = set(collected[host])
        assert not any(i.startswith("app.") for i in ids)
        assert "service.nginx" in ids and "service.postgresql" in ids and "apps.release" in ids
    counts = sum(len(v) for v in collected.values())
    assert counts == sum(len(plan.checks_for(jilin, h)) for h in scope)


def test_no_address_or_port_is_written_in_the_test_modules(lab, jilin):
    sources = {p: open(p, encoding="utf-8").read() for p in glob.glob(os.path.join(TESTS, "*.py"))}
    assert len(sources) >= 6
    ipv4 = re.compile(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b")
    ports = set()
    for net in (lab, jilin):
        for host in plan.resolve_scope(net, None):
            for c in plan.checks_for(net, host):
                for key in ("port",):
                    if isinstance(c.params.get(key), int):
                        ports.add(c.params[key])
                ports |= set(c.params.get("allowed") or [])
    assert {22, 443, 514, 8101} <= ports
    for path, text in sources.items():
        assert not ipv4.findall(text), f"{path}: address literal"
        numbers = {int(n) for n in re.findall(r"(?<![\w.])(\d{2,5})(?![\w.])", text)}
        assert not numbers & ports, f"{path}: port literal {sorted(numbers & ports)}"


def test_every_planned_check_has_its_test_function(lab, jilin):
    import importlib

    functions = set()
    for mod in ("test_baseline", "test_router", "test_vendor_router", "test_vpn", "test_apps", "test_services"):
        m = importlib.import_module(f"jincai.verify.tests.{mod}")
        functions |= {n for n in dir(m) if n.startswith("test_")}
    for net in (lab, jilin):
        for host in plan.resolve_scope(net, None):
            for c in plan.checks_for(net, host):
                assert c.test in functions, c
                assert c.area in plan.AREAS and c.expected and ":" not in c.id


# ---------------------------------------------------------------- the shared table (compliance and verify)

def test_compliance_and_verify_allow_the_same_listeners(lab):
    inv = lab.inventory
    for host in lab.group("machine_room"):
        hv = lab.hostvars[host]
        verify_allowed = next(c.params["allowed"] for c in plan.checks_for(lab, host)
                              if c.id == "listeners.only_intended")
        ctx = {"functions": hv["jincai_functions"], "apps": hv.get("jincai_apps", []),
               "applications": hv["jincai_applications"]}
        assert sorted(cchecks._allowed_ports(ctx, lab.exp)) == verify_allowed, host
        # the report model derives the same from the inventory
        derived = intended.allowed_ports(hv["jincai_functions"], lab.exp,
                                         intended.host_listeners(inv, host, lab.exp, LAB))
        assert derived == verify_allowed
    svc = lab.group("services")[0]
    assert {22, 514, 80, 123} <= set(intended.allowed_ports(lab.hostvars[svc]["jincai_functions"], lab.exp,
                                                            intended.host_listeners(inv, svc, lab.exp, LAB)))


def test_listener_ports_come_from_role_defaults_and_host_vars(lab):
    app = "220102-app1"
    got = {(x["proto"], x["port"]): x for x in intended.host_listeners(lab.inventory, app, lab.exp, LAB)}
    assert got[("tcp", intended.role_defaults("sshd")["sshd_port"])]["bind"] == "any"
    for name, entry in lab.catalog.items():
        assert got[("tcp", lab.hostvars[app]["jincai_applications"][name]["port"])]["bind"] == "any"
        assert got[("tcp", entry["backend_port"])]["bind"] == "loopback"
    assert got[("tcp", lab.exp["postgres_port"])]["bind"] == "loopback"


def test_compliance_flags_an_app_port_the_host_does_not_run():
    ctx = {"functions": ["app_server"], "apps": ["budget"], "applications": {"budget": {"port": 8101},
                                                                              "treasury": {"port": 8102}}}
    exp = plan.Network(LAB).exp
    facts = {"listening": [{"proto": "tcp", "address": "0.0.0.0", "port": 8102, "process": ""},
                           {"proto": "tcp", "address": "0.0.0.0", "port": 8101, "process": ""}]}
    ok, _want, found = cchecks._ports(facts, ctx, exp)
    assert not ok and "tcp/8102" in found and "8101" not in found


# ---------------------------------------------------------------- the command line

def test_cli_refuses_a_bad_limit_or_inventory_before_contacting(monkeypatch, tmp_path, capsys):
    def no_run(*a, **kw):
        raise AssertionError("pytest was started")

    monkeypatch.setattr(subprocess, "run", no_run)
    assert verify_main(["-i", LAB, "-l", "nosuch", "-o", str(tmp_path)]) == 2
    assert "nothing was contacted" in capsys.readouterr().err
    assert verify_main(["-i", str(tmp_path / "missing"), "-o", str(tmp_path)]) == 2
    assert verify_main(["-i", LAB, "-l", "external_parties", "-o", str(tmp_path)]) == 2
    assert "nothing to verify" in capsys.readouterr().err


def test_cli_list_prints_the_checks_and_contacts_nothing(monkeypatch, capsys):
    monkeypatch.setattr(subprocess, "run", lambda *a, **kw: (_ for _ in ()).throw(AssertionError("ran")))
    assert verify_main(["-i", JILIN, "-l", "220102", "--list"]) == 0
    out = capsys.readouterr().out
    assert "220102-rtr (220102)" in out and "ospf.neighbour.220100-rtr" in out and "nothing was contacted" in out


def test_cli_via_the_jincai_command_dispatches_to_verify(capsys):
    from jincai import cli

    assert cli.main(["verify", "-i", LAB, "-l", "bu0001", "--list"]) == 0
    assert "vpn.tunnel" in capsys.readouterr().out


def test_pytest_argv_parallel_per_host_and_limit():
    argv = pytest_argv("/inv", "site_220102", "/r/junit.xml", 8, 3)
    assert argv[argv.index("-n") + 1] == "3" and argv[argv.index("--dist") + 1] == "loadgroup"
    assert "--hosts=site_220102" in argv and "--ansible-inventory=/inv" in argv and "--junitxml=/r/junit.xml" in argv
    one = pytest_argv("/inv", None, "/r/j.xml", 8, 1)
    assert one[one.index("-n") + 1] == "0" and not any(a.startswith("--hosts") for a in one)
    assert "--connection=ansible" in pytest_argv("/inv", None, "/j", 1, 5, connection="ansible")


def test_host_spec_uses_the_inventorys_connection_settings(lab):
    spec, kw = support.host_spec(lab, "220102-app1")
    hv, iv = lab.hostvars["220102-app1"], lab.inv_vars("220102-app1")
    assert spec == f"ssh://{iv['ansible_user']}@{hv['ansible_host']}"
    assert kw["sudo"] is True and kw["ssh_identity_file"] == iv["ansible_ssh_private_key_file"]
    assert "StrictHostKeyChecking=yes" in kw["ssh_extra_args"] and "BatchMode=yes" in kw["ssh_extra_args"]
    assert kw["controlpersist"] > 0 and "%" not in kw["controlpath"]
    host = testinfra.get_host(spec, **kw)
    cmd, args = host.backend._build_ssh_command("true")
    line = " ".join(cmd) % tuple(args)
    assert "ControlPersist=" in line and f"ControlPath={kw['controlpath']}" in line
    # routers: ssh with sudo although their inventory connection is local (netmiko)
    rspec, rkw = support.host_spec(lab, "220102-rtr")
    assert rspec.startswith("ssh://") and rkw["sudo"] is True
    assert support.host_spec(lab, "220102-app1", "ansible")[0] == "ansible://220102-app1"
    assert support.host_spec(lab, "220102-rtr", "ansible")[0].startswith("ssh://")


def test_known_hosts_replaces_the_inventorys_file_for_the_run(lab, monkeypatch, tmp_path):
    """--known-hosts (jincai bootstrap's recorded keys) replaces the inventory's UserKnownHostsFile; strict
    host key checking stays."""
    before = support.host_spec(lab, "220102-rtr")[1]["ssh_extra_args"]
    assert "UserKnownHostsFile=" in before
    monkeypatch.setenv(support.KNOWN_HOSTS_ENV, "/b/known_hosts.run")
    for name in ("220102-app1", "220102-rtr"):
        extra = support.host_spec(lab, name)[1]["ssh_extra_args"]
        assert extra.count("UserKnownHostsFile=") == 1 and "-o UserKnownHostsFile=/b/known_hosts.run" in extra
        assert "StrictHostKeyChecking=yes" in extra and "BatchMode=yes" in extra
    seen = {}

    def fake_run(cmd, **kw):
        seen.update(kw["env"])
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.delenv(support.KNOWN_HOSTS_ENV)
    monkeypatch.setattr(subprocess, "run", fake_run)
    verify_main(["-i", LAB, "-l", "220102-app1", "-o", str(tmp_path), "--known-hosts", "kh"])
    assert seen[support.KNOWN_HOSTS_ENV] == os.path.abspath("kh")


# ---------------------------------------------------------------- summary and exit codes on canned JUnit

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="jincai-verify" tests="6">
<testcase classname="jincai.verify.tests.test_baseline" name="test_service[220102-app1:service.chrony]" time="0.1"/>
<testcase classname="jincai.verify.tests.test_baseline" name="test_service[220102-app1:service.rsyslog]@220102-app1"
 time="0.1"><failure message="220102-app1: service.rsyslog (rsyslog runs and starts at boot): expected running, enabled, found inactive, enabled">x</failure></testcase>
<testcase classname="jincai.verify.tests.test_router" name="test_ospf_neighbour[220102-rtr:ospf.neighbour.220100-rtr]" time="0.2"/>
<testcase classname="jincai.verify.tests.test_router" name="test_router_state[220100-rtr:router.platform]" time="0">
<skipped message="vendor"/></testcase>
<testcase classname="jincai.verify.tests.test_baseline" name="test_service[220000-svc:service.nginx]" time="0">
<error message="failed on setup with &quot;Failed: 220000-svc: unreachable: Connection refused&quot;">e</error></testcase>
<testcase classname="x" name="test_unrelated" time="0"/>
</testsuite></testsuites>"""


def test_summary_per_site_and_exit_code_from_canned_junit(lab):
    results = report.parse_junit(JUNIT)
    assert [r["outcome"] for r in results] == ["passed", "failed", "passed", "skipped", "error"]
    assert results[1]["host"] == "220102-app1" and results[1]["check"] == "service.rsyslog"
    assert "expected running, enabled, found inactive" in results[1]["message"]
    s = report.summarise(results, lab.hostvars, ["220102-app1", "220102-rtr", "220000-svc"])
    by_site = {x["code"]: x for x in s["sites"]}
    assert by_site["220102"]["status"] == "failed" and by_site["220102"]["counts"]["passed"] == 2
    assert by_site["220000"]["failures"][0] == {"host": "220000-svc", "check": "service.nginx",
                                                "message": "220000-svc: unreachable: Connection refused"}
    assert report.failure_lines(s) == [
        "FAILED 220000-svc: unreachable: Connection refused",
        "FAILED 220102-app1: service.rsyslog (rsyslog runs and starts at boot): expected running, enabled, "
        "found inactive, enabled"]
    assert s["checks"] == 5 and s["failed"] == 1 and s["error"] == 1 and s["skipped"] == 1
    assert report.exit_code(s, 1) == 1
    lines = report.site_lines(s)
    assert any(line.startswith("220102 南关区 county: FAILED 2 hosts, 2 passed, 1 failed")
               and "220102-app1 service.rsyslog" in line for line in lines)


def test_exit_codes():
    passed = report.summarise([{"host": "h", "check": "c", "test": "t", "outcome": "passed", "message": "",
                                "seconds": 0}, {"host": "h", "check": "d", "test": "t", "outcome": "skipped",
                                                "message": "", "seconds": 0}], {}, ["h"])
    assert report.exit_code(passed, 0) == 0
    assert report.exit_code(passed, 2) == 2 and report.exit_code(passed, 4) == 2  # interrupted, usage error
    assert report.exit_code(None, 1) == 2
    assert report.exit_code(report.summarise([], {}, []), 5) == 2  # nothing collected
    missing = report.summarise([], {}, ["h"])  # a host in scope with no result at all
    assert missing["status"] == "failed" and report.exit_code(missing, 1) == 1


# ---------------------------------------------------------------- the checks on a canned host

class CannedBackend(tbase.BaseBackend):
    """A testinfra backend answering commands from a table of (regex, rc, stdout); records each command."""

    NAME = "canned"
    BASE = [
        (r"^uname -s$", 0, "Linux\n"), (r"^uname -r$", 0, "6.1.0\n"), (r"^uname -m$", 0, "x86_64\n"),
        (r"^command -v (\S+)$", 0, "/usr/bin/x\n"), (r"test -d /run/systemd/system/", 0, ""),
        (r"^lsb_release -a", 1, ""), (r"cat /etc/os-release", 0, "ID=debian\nVERSION_ID=12\n"),
    ]

    def __init__(self, table, *args, **kwargs):
        self.table = self.BASE + list(table)
        self.commands = []
        super().__init__("canned", *args, **kwargs)

    def run(self, command, *args, **kwargs):
        cmd = self.get_command(command, *args)
        self.commands.append(cmd)
        for pattern, rc, out in self.table:
            if re.search(pattern, cmd):
                return self.result(rc, self.encode(cmd), out.encode(), b"")
        return self.result(127, self.encode(cmd), b"", b"not canned")


def _host(table):
    backend = CannedBackend(table)
    h = testinfra.host.Host(backend)
    backend.set_host(h)
    support._memo.clear()
    return h


def _units(*states):
    """Canned ``systemctl show -p LoadState -p ActiveState -p UnitFileState`` output: (active, enabled) per unit."""
    return "\n\n".join(f"LoadState=loaded\nActiveState={a}\nUnitFileState={e}" for a, e in states) + "\n"


def _check(net, host, check_id):
    return next(c for c in plan.checks_for(net, host) if c.id == check_id)


def _verdict(fn, host, check):
    """What the check concludes on ``host`` ("passed" or its failure message), as the suite's conftest
    turns a query's exception into the check's failure."""
    try:
        try:
            fn(host, check)
        except Exception as exc:  # noqa: BLE001
            support.fail_from(check, exc)
    except pytest.fail.Exception as exc:
        return str(exc)
    return "passed"


def test_service_and_listener_checks_name_host_check_expected_and_found(lab):
    from jincai.verify.tests import test_baseline as tb

    c = _check(lab, "220102-app1", "service.rsyslog")
    up = _host([(r"systemctl show .* rsyslog$", 0, _units(("active", "enabled")))])
    assert _verdict(tb.test_service, up, c) == "passed"
    down = _host([(r"systemctl show .* rsyslog$", 0, _units(("inactive", "enabled")))])
    assert _verdict(tb.test_service, down, c) == (
        "220102-app1: service.rsyslog (rsyslog runs and starts at boot): expected running, enabled, "
        "found inactive, enabled")
    pg = lab.exp["postgres_port"]
    lc = _check(lab, "220102-app1", f"listener.tcp.{pg}")
    ss = "Netid State Recv-Q Send-Q Local Peer\ntcp LISTEN 0 128 {addr}:{port} 0.0.0.0:*\n"
    good = _host([(r"--numeric --listening$", 0, ss.format(addr="127.0.0.1", port=pg))])
    assert _verdict(tb.test_listener, good, lc) == "passed"
    wide = _host([(r"--numeric --listening$", 0, ss.format(addr="0.0.0.0", port=pg))])
    msg = _verdict(tb.test_listener, wide, lc)
    assert msg.startswith(f"220102-app1: listener.tcp.{pg} (postgresql listens on tcp/{pg} (loopback only))")
    assert f"expected tcp/{pg} listening, loopback only, found listening on 0.0.0.0" in msg
    oc = _check(lab, "220102-app1", "listeners.only_intended")
    extra = _host([(r"--numeric --listening$", 0, ss.format(addr="198.18.17.10", port=3306))])
    assert "found tcp/3306 on 198.18.17.10" in _verdict(tb.test_only_intended_listeners, extra, oc)


def test_ntp_ospf_tunnel_and_app_checks_on_canned_output(lab):
    from jincai.verify.tests import test_apps as ta
    from jincai.verify.tests import test_baseline as tb
    from jincai.verify.tests import test_router as tr
    from jincai.verify.tests import test_vpn as tv

    hv = lab.hostvars
    ntp = _check(lab, "220102-app1", "ntp.source")
    city, province = ntp.params["chain"][0], ntp.params["chain"][1]
    sources = "MS Name/IP\n===\n^{a} {c}  2  6  377  10 +1us\n^{b} {p}  1  6  377  10 +2us\n"
    assert _verdict(tb.test_ntp_source, _host([(r"chronyc -n sources", 0, sources.format(
        a="*", b="+", c=city, p=province))]), ntp) == "passed"
    assert f"found synchronised to {province}" in _verdict(tb.test_ntp_source, _host([(r"chronyc -n sources", 0,
                                                                  sources.format(a="?", b="*", c=city, p=province))]), ntp)
    oc = _check(lab, "220102-rtr", "ospf.neighbour.220100-rtr")
    rid = hv["220100-rtr"]["jincai_router"]["router_id"]
    nbr = '{"neighbors": {"%s": [{"nbrState": "%s"}]}}'
    assert _verdict(tr.test_ospf_neighbour, _host([(r"vtysh", 0, nbr % (rid, "Full/-"))]), oc) == "passed"
    assert f"found neighbour {rid} Init/-" in _verdict(tr.test_ospf_neighbour,
                                                       _host([(r"vtysh", 0, nbr % (rid, "Init/-"))]), oc)
    rc = _check(lab, "220102-rtr", "routes.site_lans")
    some = rc.params["prefixes"][:-1]
    routes = "[" + ",".join('{"dst": "%s", "gateway": "x"}' % p for p in some) + "]"
    assert f"missing 1: {rc.params['prefixes'][-1]}" in _verdict(tr.test_routes, _host([(r"ip -j route show", 0,
                                                                                        routes)]), rc)
    tc = _check(lab, "220000-vpn", "vpn.tunnel.bu0001")
    sas = "bu-bu0002: #2, ESTABLISHED, IKEv2\n  local\nbu-bu0001: #1, CONNECTING, IKEv2\n"
    assert "found established: bu-bu0002" in _verdict(tv.test_vpn_tunnel, _host([(r"swanctl", 0, sas)]), tc)
    hc = _check(lab, "220102-app1", "app.budget.health")
    url = f"https://{hc.params['address']}:{hc.params['port']}{hc.params['path']}"
    ok = json.dumps({url: {"status_code": 200, "body": {"status": "ok", "version": "%s"}}})
    assert _verdict(ta.test_app_health, _host([(r"python3 -c", 0, ok % hc.params["version"])]), hc) == "passed"
    assert "found status ok, version 1.0.0" in _verdict(ta.test_app_health, _host([(r"python3 -c", 0,
                                                                                    ok % "1.0.0")]), hc)


def test_an_unreachable_host_fails_its_checks_once_and_fast():
    boom = _host([])
    boom.backend.run = lambda *a, **k: (_ for _ in ()).throw(RuntimeError(tbase.CommandResult(
        boom.backend, 255, b"true", b"", b"ssh: connect to host 192.0.2.1 port 22: Connection refused")))
    support._unreachable.clear()
    for _ in range(2):
        try:
            support.reachable(boom, "220102-app1")
        except pytest.fail.Exception as exc:
            assert str(exc) == "220102-app1: unreachable: ssh: connect to host 192.0.2.1 port 22: Connection refused"
        else:
            raise AssertionError("reachable() passed")
    support._unreachable.clear()


# ---------------------------------------------------------------- a whole run, nothing answering

def test_whole_run_against_a_closed_port_reports_the_host_unreachable(tmp_path):
    """jincai verify end to end (pytest, xdist, JUnit, summary) with one host pointed at 127.0.0.1:1."""
    inv = tmp_path / "inv"
    shutil.copytree(LAB, inv, ignore=shutil.ignore_patterns("host_vars"))
    (inv / "host_vars").mkdir()
    (inv / "host_vars" / "220102-app1.yml").write_text("ansible_host: 127.0.0.1\nansible_port: 1\n")
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-c", "import sys; from jincai.verify import main; sys.exit(main())",
                          "-i", str(inv), "-l", "220102-app1", "-j", "2", "-o", str(out)],
                         capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-2000:]
    assert (out / "junit.xml").exists() and (out / "summary.json").exists()
    results = report.parse_junit(str(out / "junit.xml"))
    assert results and {r["host"] for r in results} == {"220102-app1"}
    assert all(r["outcome"] in ("failed", "error") and "unreachable" in r["message"] for r in results)
    assert re.search(r"^220102 .* county: FAILED 1 hosts, 0 passed, \d+ failed", res.stdout, re.M)
    assert "jincai verify: failed:" in res.stdout
    assert re.search(r"^FAILED 220102-app1: unreachable: .*Connection refused \(\d+ checks\)$", res.stdout, re.M)


def _record(net, check, **versions):
    """The release record roles/apps writes for ``check``'s host (apps_release_record), versions overridden."""
    apps = {a: {"version": versions.get(a, v), "sha256": "0" * 64} for a, v in check.params["apps"].items()}
    return json.dumps({"release": net.release["release"], "overrides": {}, "host": check.host, "apps": apps})


def test_the_release_record_check_reads_each_applications_version(lab):
    """The record names the release and the version of every application the release deploys on the host:
    an application recorded at another version (a partial rollout, a hand-edited record) fails, naming it."""
    from jincai.verify.tests import test_apps as ta

    c = _check(lab, "220102-app1", "apps.release")
    hosted = lab.hosted_apps("220102-app1")
    assert c.params["apps"] == hosted and len(hosted) >= 2
    assert c.expected == (f"{c.params['path']} names {lab.release['release']}, "
                          + ", ".join(f"{a} {v}" for a, v in sorted(hosted.items())))
    app = sorted(hosted)[0]

    def record(text):
        return _verdict(ta.test_app_release_record, _host([(r"test -e", 0, ""), (r"cat -- ", 0, text)]), c)

    assert record(_record(lab, c)) == "passed"
    prefix = f"220102-app1: apps.release ({c.title}): expected {c.expected}, found "
    assert record(_record(lab, c, **{app: "1.0.0"})) == f"{prefix}release '{lab.release['release']}', {app} 1.0.0"
    doc = json.loads(_record(lab, c))
    del doc["apps"][app]
    assert record(json.dumps(doc)) == f"{prefix}release '{lab.release['release']}', {app} not recorded"
    assert record(json.dumps({**doc, "release": "lab-1"})).startswith(f"{prefix}release 'lab-1', {app} not recorded")
    assert record("[]") == f"{prefix}{c.params['path']} is not a JSON object"


def _healthy_cases(net):
    """(test function, check, canned outputs of a healthy host) for the checks the other tests leave out."""
    from jincai.verify.tests import test_apps as ta
    from jincai.verify.tests import test_baseline as tb
    from jincai.verify.tests import test_services as ts
    from jincai.verify.tests import test_vpn as tvp

    app, svc, vpn_client = "220102-app1", net.group("services")[0], net.group("budget_unit_clients")[0]
    now = 1764620000
    fwd = _check(net, app, "logs.forwarding")
    eth = _check(net, app, "interface.eth1")
    route = _check(net, app, "route.default")
    current = _check(net, app, "app.budget.current")
    vip = _check(net, vpn_client, "vpn.virtual_ip")
    pool_ip = str(next(iter(ipaddress.ip_network(vip.params["pool"]).hosts())))
    return [
        (tb.test_backup, _check(net, app, "backup.local"), [
            (r"systemctl show -p Result", 0, "Result=success\nExecMainStartTimestamp=Tue 2026-12-01 01:30:00 UTC\n"),
            (r"ls -1t", 0, f"{app}-20261201T013000.tar.gz\n{app}-20261201T013000.tar.gz.sha256\n"),
            (r"stat -Lc %Y", 0, f"{now - 3600}\n"), (r"date \+%s", 0, f"{now}\n")]),
        (tb.test_backup, _check(net, app, "backup.local"), [
            (r"systemctl show -p Result", 0, "Result=\nExecMainStartTimestamp=\n"),
            (r"systemctl show -p LoadState .* jincai-backup.timer$", 0, _units(("active", "enabled")))]),
        (tb.test_log_forwarding, fwd, [(r"systemctl show .* rsyslog$", 0, _units(("active", "enabled"))),
                                       (r"ss -Htn state established", 0,
                                       f"0 0 {app}:40000 {fwd.params['collector']}:{fwd.params['port']}\n")]),
        (tb.test_interface_address, eth, [
            (r"^ip -j addr show$", 0, json.dumps([{"ifname": "lo", "flags": ["LOOPBACK", "UP", "LOWER_UP"]}, {
                "ifname": "eth1", "flags": ["BROADCAST", "UP", "LOWER_UP"],
                "addr_info": [{"family": "inet", "local": eth.params["address"], "prefixlen": 24}]}]))]),
        (tb.test_route, route, [(r"ip -j route show", 0, '[{"dst": "default", "gateway": "%s"}]' % route.params["via"])]),
        (tb.test_sysctl, _check(net, "220000-rtr", "sysctl.net.ipv4.ip_forward"), [(r" -n net.ipv4", 0, "1\n")]),
        (tb.test_file_present, _check(net, app, "integrity.aide"), [(r"test -e", 0, "")]),
        (tb.test_ntp_source, _check(net, svc, "ntp.source"), [(r"chronyc -n sources", 0, "\n"), (
            r"chronyc -n tracking", 0, "Reference ID    : 7F7F0101 ()\nLeap status     : Normal\n")]),
        (tb.test_service, _check(net, app, "service.nftables"), [
            (r"systemctl show .* nftables$", 0, _units(("inactive", "enabled")))]),
        (ta.test_app_current, current, [(r"python3 -c", 0, json.dumps({current.params["path"]: (
            f"{current.params['path'][:-len('current')]}releases/{current.params['version']}")}))]),
        (ta.test_app_release_record, _check(net, app, "apps.release"), [
            (r"test -e", 0, ""), (r"cat -- ", 0, _record(net, _check(net, app, "apps.release")))]),
        (ts.test_logs_received, _check(net, svc, f"logs.received.{app}"), [(r"test -d", 0, ""), (r"find", 0, "x.log\n")]),
        (ts.test_backup_received, _check(net, svc, f"backup.received.{app}"), [(r"test -d", 0, "")]),
        (ts.test_artifact_present, _check(net, svc, "artifact.budget"), [(r"test -e", 0, ""), (r"stat -Lc %s", 0, "9\n")]),
        (tvp.test_vpn_virtual_ip, vip, [(r"ip -j -4 addr show", 0, json.dumps(
            [{"ifname": "ipsec0", "addr_info": [{"local": pool_ip}]}]))]),
        (tvp.test_vpn_tunnel, _check(net, vpn_client, "vpn.tunnel"), [(r"swanctl", 0, "province: #1, ESTABLISHED\n")]),
    ]


def test_each_check_passes_on_a_canned_healthy_host_and_fails_on_an_empty_one(lab):
    for fn, check, table in _healthy_cases(lab):
        assert _verdict(fn, _host(table), check) == "passed", (fn.__name__, check.id)
        broken = _verdict(fn, _host([(r".", 1, "")]), check)
        assert broken.startswith(f"{check.host}: {check.id} ({check.title}): expected {check.expected}, found "), (
            fn.__name__, broken)


def test_a_hosts_services_interfaces_and_apps_are_read_once_for_all_their_checks(lab, monkeypatch):
    """The per-host reads (#14/#19 speed): every service check of a host shares one ``systemctl show``,
    every interface check one ``ip -j addr``, every health and release-link check one probe each; a
    stopped unit among them still fails its own check only."""
    from jincai.verify.tests import test_apps as ta
    from jincai.verify.tests import test_baseline as tb

    name = "220102-app1"
    checks = [c for c in plan.checks_for(lab, name) if not c.skip]
    monkeypatch.setattr(support, "PLANNED", {name: checks})
    services = [c for c in checks if c.test == "test_service"]
    units = [c.params["unit"] for c in services]
    assert len(units) >= 8, units
    stopped = "rsyslog"
    show = _units(*[("inactive" if u == stopped else "active", "enabled") for u in units])
    ifaces = [c for c in checks if c.test == "test_interface_address"]
    addr = json.dumps([{"ifname": c.params["name"], "flags": ["UP", "LOWER_UP"],
                        "addr_info": [{"local": c.params["address"]}]} for c in ifaces])
    health = [c for c in checks if c.test == "test_app_health"]
    current = [c for c in checks if c.test == "test_app_current"]
    docs = {f"https://{c.params['address']}:{c.params['port']}{c.params['path']}":
            {"status_code": 200, "body": {"status": "ok", "version": c.params["version"]}} for c in health}
    links = {c.params["path"]: c.params["path"][:-len("current")] + "releases/" + c.params["version"] for c in current}
    h = _host([(r"^systemctl show -p LoadState -p ActiveState -p UnitFileState -- " + " ".join(units) + "$", 0, show),
               (r"^ip -j addr show$", 0, addr), (r"HEALTH|urlopen", 0, json.dumps(docs)),
               (r"islink", 0, json.dumps(links))])
    verdicts = {c.id: _verdict(tb.test_service, h, c) for c in services}
    verdicts.update({c.id: _verdict(tb.test_interface_address, h, c) for c in ifaces})
    verdicts.update({c.id: _verdict(ta.test_app_health, h, c) for c in health})
    verdicts.update({c.id: _verdict(ta.test_app_current, h, c) for c in current})
    failed = {k: v for k, v in verdicts.items() if v != "passed"}
    assert list(failed) == [f"service.{stopped}"], failed
    assert failed[f"service.{stopped}"].endswith("found inactive, enabled")
    ran = h.backend.commands
    assert len(ran) == 4, ran  # one read per kind, for 2 + len(units) + len(ifaces) + ... checks
    assert len(services) + len(ifaces) + len(health) + len(current) >= 15
