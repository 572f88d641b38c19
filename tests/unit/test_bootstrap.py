"""Unit tests of ``jincai bootstrap``: site resolution, messages, host keys, state and checklist.

Network use is limited to loopback sockets opened by the tests themselves.
"""

import os
import shutil
import socket
import subprocess
import threading

import pytest

from jincai import ROOT
from jincai.bootstrap import engine as bootstrap
from jincai.bootstrap import preflight as pf
from jincai.bootstrap import state as bs
from jincai.lab import blank

LAB = os.path.join(ROOT, "inventories", "lab")


@pytest.fixture(scope="module")
def inv_with_county(tmp_path_factory):
    """A copy of the lab inventory with county 220104 added through ``jincai site add``."""
    from jincai import sitecmd

    d = tmp_path_factory.mktemp("inv") / "lab"
    shutil.copytree(LAB, d)
    assert sitecmd.add(str(d), "220104", write=True) == 0
    return str(d)


# ---------------------------------------------------------------- site resolution


@pytest.mark.parametrize("code, words", [
    ("12", ["not a 6-digit GB/T 2260 code", "220104"]),
    ("229999", ["229999", "not a Jilin division"]),
    ("220105", ["220105 (二道区) is not added", "jincai site add 220105 --write"]),
    ("220000", ["province is not bootstrapped"]),
])
def test_bad_site_codes_are_refused_with_the_fix(code, words):
    with pytest.raises(pf.BootstrapError) as exc:
        pf.resolve_site(LAB, code)
    text = exc.value.text()
    for w in words:
        assert w in text
    assert "fix:" in text


def test_a_missing_inventory_is_named():
    with pytest.raises(pf.BootstrapError) as exc:
        pf.resolve_site("/nonexistent/inv", "220104")
    assert "/nonexistent/inv" in exc.value.text()


def test_an_invalid_source_lists_file_site_and_field(inv_with_county, tmp_path):
    d = tmp_path / "broken"
    shutil.copytree(inv_with_county, d)
    path = d / "source" / "sites" / "220100.yml"
    text = path.read_text(encoding="utf-8").replace("198.18.248.20/30", "198.18.248.8/30")  # overlaps 220102's link
    path.write_text(text, encoding="utf-8")
    with pytest.raises(pf.BootstrapError) as exc:
        pf.resolve_site(str(d), "220104")
    msg = exc.value.text()
    assert "220100.yml" in msg and "nothing was contacted" in msg


def test_a_new_county_resolves_router_first_with_its_parent(inv_with_county):
    site = pf.resolve_site(inv_with_county, "220104")
    assert [h.name for h in site.hosts] == ["220104-rtr", "220104-app1"]
    assert site.router.platform == "frr" and site.parent_router == "220100-rtr"
    assert site.environment == "lab" and len(site.fingerprint) == 16
    assert site.uplinks[0]["name"] == "eth1"


def test_the_site_is_read_from_the_typed_model(inv_with_county, monkeypatch):
    """Name, hosts and their host vars, uplinks, the parent router and its end of the link are the
    model's objects (built once by resolve_site): a change made to the model shows in each."""
    real = pf.invmod.build_checked
    m, _ = real(inv_with_county)

    def edited(inventory_dir):
        m, warnings = real(inventory_dir)
        m.sites["220104"].name_zh = "试验区"
        m.hosts["220104-app1"].mgmt = "198.19.0.99"
        m.hosts["220104-rtr"].interfaces_of("uplink")[0].ospf_cost = 7
        return m, warnings

    monkeypatch.setattr(pf.invmod, "build_checked", edited)
    site = pf.resolve_site(inv_with_county, "220104")
    assert site.name_zh == "试验区" and site.tier == "county"
    assert site.servers[0].address == "198.19.0.99" == site.servers[0].hostvars["ansible_host"]
    assert site.uplinks[0]["ospf_cost"] == 7 and site.router.hostvars["jincai_interfaces"][1]["ospf_cost"] == 7
    link = m.sites["220104"].uplinks[0]
    assert site.parent_router == m.sites[link.parent].router == "220100-rtr"
    assert site.parent_address == link.address("parent")
    assert f"{site.parent_address}/30" in [i.address for i in m.hosts["220100-rtr"].interfaces_of("downlink")]
    monkeypatch.setattr(pf.invmod, "build_checked", real)
    assert pf.resolve_site(inv_with_county, "220104").fingerprint != site.fingerprint


def test_the_lab_guard_refuses_addresses_outside_the_lab_range(inv_with_county):
    site = pf.resolve_site(inv_with_county, "220104")
    host = pf.SiteHost("220104-app1", "10.22.1.10", ["app_server"])
    with pytest.raises(pf.BootstrapError, match="outside 198.18.0.0/15"):
        pf.guard_address(site, host)


# ---------------------------------------------------------------- reachability


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_closed_port_is_reported_as_refused_with_a_console_fix():
    reason = pf.probe_ssh("127.0.0.1", _closed_port(), timeout=1)
    assert "refused" in reason
    err = pf.unreachable_error(pf.SiteHost("220104-app1", "198.19.0.30", ["app_server"]), reason)
    assert "220104-app1 (server, 198.19.0.30:22)" in err.text()
    assert "systemctl enable --now ssh" in err.text()


def test_a_silent_host_names_power_cable_and_address():
    err = pf.unreachable_error(pf.SiteHost("220104-rtr", "198.19.0.19", ["router"]), "no answer within 5 s")
    text = err.text()
    assert "220104-rtr (router, 198.19.0.19:22): no answer" in text
    assert "management port" in text and "198.19.0.19" in text


def test_a_port_that_is_not_ssh_is_told_apart():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def serve():
        conn, _ = srv.accept()
        conn.sendall(b"HTTP/1.0 400 Bad\r\n\r\n")
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        assert "is not SSH" in pf.probe_ssh("127.0.0.1", port, timeout=2)
    finally:
        t.join(2)
        srv.close()


def test_check_reachable_collects_every_silent_host(inv_with_county):
    site = pf.resolve_site(inv_with_county, "220104")
    problems = pf.check_reachable(site, probe=lambda addr, port, timeout: "no answer within 1 s")
    assert sorted(problems) == ["220104-app1", "220104-rtr"]


# ---------------------------------------------------------------- host keys


@pytest.fixture(scope="module")
def keypair(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "k")], check=True)
    pub = (d / "k.pub").read_text().split()
    out = subprocess.run(["ssh-keygen", "-lf", str(d / "k.pub")], capture_output=True, text=True, check=True)
    return pub[0], pub[1], out.stdout.split()[1]


def test_fingerprints_match_ssh_keygen(keypair):
    _kind, blob, expected = keypair
    assert pf.fingerprint(blob) == expected


def test_first_contact_is_new_then_matches(keypair):
    kind, blob, _ = keypair
    host = pf.SiteHost("220104-app1", "198.19.0.30", ["app_server"])
    first = pf.compare_keys(host, {kind: blob}, {})
    assert first.new and first.lines()[0].startswith("ssh-ed25519")
    assert not pf.compare_keys(host, {kind: blob}, {kind: blob}).new


def test_a_changed_host_key_stops_with_both_fingerprints(keypair, tmp_path):
    kind, blob, fp = keypair
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    other = (tmp_path / "other.pub").read_text().split()[1]
    host = pf.SiteHost("220104-app1", "198.19.0.30", ["app_server"])
    with pytest.raises(pf.BootstrapError) as exc:
        pf.compare_keys(host, {kind: other}, {kind: blob})
    text = exc.value.text()
    assert "HOST KEY MISMATCH: 220104-app1 (198.19.0.30)" in text
    assert fp in text and pf.fingerprint(other) in text
    assert "--forget-host 220104-app1" in text and "Nothing was sent" in text


def test_no_host_key_at_all_is_an_error():
    with pytest.raises(pf.BootstrapError, match="offered no SSH host key"):
        pf.compare_keys(pf.SiteHost("h", "198.19.0.30", []), {}, {})


def test_known_hosts_round_trip_and_merge_is_idempotent(keypair, tmp_path):
    kind, blob, _ = keypair
    host = pf.SiteHost("220104-app1", "198.19.0.30", ["app_server"])
    site_kh = tmp_path / "site_known_hosts"
    pf.write_known_hosts(str(site_kh), {host.name: (host, {kind: blob})})
    assert pf.parse_known_hosts(site_kh.read_text())["220104-app1"] == {kind: blob}
    assert oct(site_kh.stat().st_mode & 0o777) == "0o600"
    glob = tmp_path / "known_hosts"
    glob.write_text("220000-rtr,198.19.0.10 ssh-ed25519 AAAAother\n220104-app1,198.19.0.30 ssh-ed25519 AAAAstale\n")
    assert pf.merge_known_hosts(str(glob), [(host, {kind: blob})]) is True
    lines = glob.read_text().splitlines()
    assert lines[0].startswith("220000-rtr") and "AAAAstale" not in glob.read_text()
    assert pf.merge_known_hosts(str(glob), [(host, {kind: blob})]) is False


# ---------------------------------------------------------------- first login


def test_a_wrong_root_password_names_host_and_fix():
    def fake_run(argv, **kw):
        assert kw["env"]["SSHPASS"] == "secret" and "secret" not in " ".join(argv)
        assert pf.PASSWORD_ENV not in kw["env"]
        return subprocess.CompletedProcess(argv, 5, "", "Permission denied, please try again.\n")

    with pytest.raises(pf.BootstrapError) as exc:
        pf.check_root_password(pf.SiteHost("220104-app1", "198.19.0.30", ["app_server"]), "secret",
                               "/tmp/kh", run=fake_run)
    text = exc.value.text()
    assert "220104-app1 (server, 198.19.0.30): the root password was refused" in text
    assert "Caps Lock" in text and "secret" not in text


# ---------------------------------------------------------------- state and checklist


def test_state_survives_reload_and_a_new_plan_forgets_expensive_steps(tmp_path):
    st = bs.State("220104", str(tmp_path))
    st.set_plan("aaaa")
    st.record("reach", "passed")
    st.record("baseline", "passed", changed=12)
    again = bs.State("220104", str(tmp_path))
    assert again.passed("baseline") and again.steps["baseline"]["changed"] == 12
    again.set_plan("bbbb")
    assert not again.passed("baseline") and again.passed("reach")


def test_checklist_shows_the_failure_and_what_to_do(tmp_path):
    st = bs.State("220104", str(tmp_path))
    st.record("validate", "passed")
    st.record("router_config", "failed", "220104-rtr: uplink port eth1 cannot reach 220100-rtr")
    text = bs.checklist(st, {"validate": "passed", "router_config": "failed"}, ["call the province"])
    assert "[FAIL] Router: uplink and routing config" in text
    assert "220104-rtr: uplink port eth1 cannot reach 220100-rtr" in text
    assert "NEXT: check the WAN cable" in text and "jincai bootstrap 220104" in text
    assert "[----] Servers: security baseline" in text
    assert "CALL / 联系: call the province" in text


def test_checklist_says_done_when_every_step_passed(tmp_path):
    st = bs.State("220104", str(tmp_path))
    for s in bs.STEPS:
        st.record(s.key, "passed")
    text = bs.checklist(st, {s.key: "resumed" if s.resumable else "passed" for s in bs.STEPS})
    assert "RESULT: site 220104 is on the WAN, compliant and verified" in text
    assert "[FAIL]" not in text and text.count("[DONE]") == sum(s.resumable for s in bs.STEPS)


# ---------------------------------------------------------------- the command


def test_cli_refuses_an_unadded_code_before_contacting_anything(tmp_path, capsys):
    rc = bootstrap.main(["220105", "-i", LAB, "--reports-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "jincai site add 220105" in err
    assert not os.listdir(tmp_path)  # no state, no known_hosts: nothing was started


def test_cli_refuses_a_production_inventory_unless_allowed(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(bootstrap.PRODUCTION_ENV, raising=False)

    def never(*_a, **_k):
        raise AssertionError("a production host would have been contacted")

    monkeypatch.setattr(bootstrap, "check_reachable", never)
    rc = bootstrap.main(["220102", "-i", os.path.join(ROOT, "inventories", "jilin"), "--reports-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "production inventory" in err and "--allow-production" in err
    assert not os.listdir(tmp_path)


def test_cli_reports_silent_hosts_in_the_checklist(inv_with_county, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bootstrap, "check_reachable",
                        lambda site, timeout=5: {"220104-app1": pf.unreachable_error(site.servers[0], "no answer within 5 s")})
    rc = bootstrap.main(["220104", "-i", inv_with_county, "--reports-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 3
    assert "[FAIL] Every host answers on SSH" in out and "220104-app1 (server, 198.19.0.30:22)" in out
    assert "RESULT: stopped at step 2" in out


# ---------------------------------------------------------------- lab blank site helpers


def test_plan_renames_follow_the_addresses():
    existing = {"eth0": ["198.19.0.20/24"], "eth4": ["198.18.16.1/24"], "eth3": ["198.18.248.13/30"]}
    wanted = {"eth0": "198.19.0.20/24", "eth3": "198.18.248.13/30", "eth4": "198.18.248.21/30",
              "eth5": "198.18.16.1/24"}
    assert blank.plan_renames(existing, wanted) == [("eth4", "eth5")]
    assert blank.plan_renames({"eth4": ["198.18.16.1/24"]}, {"eth4": "198.18.16.1/24"}) == []


# ---------------------------------------------------------------- progress view (jincai.run events)


def test_progress_view_shows_task_names_and_failure_lines_from_events(capsys):
    events = [
        {"event": "playbook_on_task_start", "event_data": {"task": "Validating arguments against arg spec 'main'",
                                                            "role": "router"}},
        {"event": "playbook_on_task_start", "event_data": {"task": "Push the uplink config", "role": "router"}},
        {"event": "runner_on_ok", "event_data": {"host": "220104-rtr"}, "stdout": "ok: [220104-rtr]"},
        {"event": "runner_on_failed", "event_data": {"host": "220104-rtr"},
         "stdout": '[ERROR]: Task failed\nfatal: [220104-rtr]: FAILED! => {"msg": "uplink eth1 down"}'},
        {"event": "runner_on_unreachable", "event_data": {"host": "220104-app1"},
         "stdout": 'fatal: [220104-app1]: UNREACHABLE! => {"msg": "timed out"}'},
    ]
    for event in events:
        bootstrap.Runner._echo(event)
    out = capsys.readouterr().out.splitlines()
    assert out == ["      - router : Push the uplink config",
                   '      fatal: [220104-rtr]: FAILED! => {"msg": "uplink eth1 down"}',
                   '      fatal: [220104-app1]: UNREACHABLE! => {"msg": "timed out"}']


def test_a_stop_without_a_running_playbook_says_so():
    runner = bootstrap.Runner(site=None, state=None)
    assert runner.stop("SIGTERM") is False and runner.stop_reason == "SIGTERM"


# ---------------------------------------------------------------- the verify step: jincai verify of the site


def test_the_site_is_verified_by_jincai_verify_limited_to_it(inv_with_county):
    site = pf.resolve_site(inv_with_county, "220104")
    argv = bootstrap.site_verify_argv(site, "/r/220104/verify", "/r/220104/known_hosts.run")
    assert os.path.basename(argv[0]) == "jincai"
    assert argv[1:] == ["verify", "-i", site.inventory, "-l", "site_220104", "-o", "/r/220104/verify",
                        "--known-hosts", "/r/220104/known_hosts.run"]


def _bootstrap_with_fakes(monkeypatch, inv, tmp_path, verify_rc, verify_out):
    """main() of a county whose every step passes (nothing contacted) up to jincai verify, which returns
    ``verify_rc``; returns the list of what ran: ("playbook", tags) and ("verify", argv)."""
    import time

    ran = []

    def passed(key):
        return lambda self, *a, **kw: self._pass(key, time.monotonic()) or True

    monkeypatch.setattr(bootstrap.Bootstrap, "reach", passed("reach"))
    monkeypatch.setattr(bootstrap.Bootstrap, "hostkeys", passed("hostkeys"))
    monkeypatch.setattr(bootstrap.Bootstrap, "access",
                        lambda self, key, hosts: self._pass(key, time.monotonic()) or True)
    monkeypatch.setattr(bootstrap.Bootstrap, "connection", lambda self: {
        "run_known_hosts": str(tmp_path / "kh.run"), "site_known_hosts": str(tmp_path / "kh.site"),
        "known_hosts": str(tmp_path / "kh")})
    monkeypatch.setattr(bootstrap, "combine_known_hosts", lambda *paths: ran.append(("known_hosts", paths)))

    def playbook(self, step, tags, limit, **kw):
        ran.append(("playbook", tags))
        return 0, {h.name: {"changed": 0} for h in self.site.hosts}, []

    def verify(argv, log_path):
        ran.append(("verify", argv))
        out = argv[argv.index("-o") + 1]
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as fh:
            fh.write('{"checks": 52, "hosts": 2, "skipped": 0}')
        return verify_rc, verify_out

    monkeypatch.setattr(bootstrap.Runner, "run", playbook)
    monkeypatch.setattr(bootstrap, "run_site_verify", verify)
    return ran


def test_the_verify_step_ends_with_jincai_verify_of_the_site_and_only_then_says_verified(
        inv_with_county, tmp_path, capsys, monkeypatch):
    ran = _bootstrap_with_fakes(monkeypatch, inv_with_county, tmp_path, 0, "220104 x county: PASSED 2 hosts\n"
                                "jincai verify: passed: 52 checks on 2 hosts in 1 sites\n")
    rc = bootstrap.main(["220104", "-i", inv_with_county, "--reports-dir", str(tmp_path / "reports")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert [r[1] for r in ran if r[0] == "playbook"][-1] == ["verify"]  # the end-to-end checks first
    assert ran[-1][0] == "verify" and ran[-2][0] == "known_hosts"  # then jincai verify, with the keys recorded
    site = pf.resolve_site(inv_with_county, "220104")
    state_dir = str(tmp_path / "reports" / "220104")
    assert ran[-1][1] == bootstrap.site_verify_argv(site, os.path.join(state_dir, "verify"), str(tmp_path / "kh.run"))
    assert "jincai verify: 52 checks on 2 hosts, 0 skipped" in out
    assert "RESULT: site 220104 is on the WAN, compliant and verified" in out


def test_a_failed_site_check_fails_the_verify_step_naming_host_and_check(inv_with_county, tmp_path, capsys,
                                                                         monkeypatch):
    failure = ("FAILED 220104-app1: service.rsyslog (rsyslog runs and starts at boot): expected running, enabled, "
               "found inactive, enabled")
    _bootstrap_with_fakes(monkeypatch, inv_with_county, tmp_path, 1, f"jincai verify: 2 hosts of lab (--limit "
                          f"site_220104); report x\n....F\n{failure}\n220104 x county: FAILED 2 hosts, 51 passed, "
                          "1 failed, 0 skipped\njincai verify: failed: 52 checks\n")
    rc = bootstrap.main(["220104", "-i", inv_with_county, "--reports-dir", str(tmp_path / "reports")])
    out = capsys.readouterr().out
    assert rc == 6
    assert "[FAIL] Verification" in out and failure[len("FAILED "):] in out.split("checklist")[-1]
    assert "RESULT: stopped at step 9" in out and "compliant and verified" not in out
    assert bs.State("220104", str(tmp_path / "reports")).steps["verify"]["status"] == "failed"


def test_site_verify_runs_logs_and_is_ended_when_it_hangs(tmp_path):
    import sys
    import time

    show_control = "import os; print(os.environ['JINCAI_VERIFY_CONTROL_DIR'])"
    rc, out = bootstrap.run_site_verify([sys.executable, "-c", show_control], str(tmp_path / "a.log"))
    assert rc == 0 and (tmp_path / "a.log").read_text() == out and out.strip().startswith("/tmp/jincai-bv-")
    assert not os.path.exists(out.strip())  # its own SSH control directory, removed afterwards
    t0 = time.monotonic()
    rc, out = bootstrap.run_site_verify([sys.executable, "-c", "import time; print('x', flush=True); time.sleep(60)"],
                                        str(tmp_path / "b.log"), timeout=1)
    assert rc == 2 and "no result within 1 s" in out and time.monotonic() - t0 < 30
