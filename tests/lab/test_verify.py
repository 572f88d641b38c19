"""``jincai verify`` on the provisioned lab (issue 19): every planned check passes, and after each hand-made
breakage the matching checks, and only they, fail with a message naming host, check and expected vs found;
the host is restored in a ``finally`` and the same checks pass again. The breakages (issue 19's set), each
on one county app server with verify limited to that host and ``-k`` to the checks concerned:

* an application's service stopped (its unit, health and backend listener);
* a listener changed: the database port also listening on the host's LAN address, not loopback only
  (``listener.tcp.<port>`` and ``listeners.only_intended``);
* a route removed: the default route via the site router (``route.default``, ``ip route`` on the host);
* the clock desynchronised: chrony's sources replaced by a dead one in the site's LAN (``ntp.source``);
* an application release broken: the release record (``/etc/jincai/release.json``, what ``jincai release
  status`` reads) naming another version of an application (``apps.release``).

A breakage that a killed test could leave behind is also undone by a timer on the host (systemd-run,
``SAFETY_NET_S``), cancelled after the test's own restore. No traffic leaves the lab: the dead time source
is an unused address of the host's own LAN (198.18.0.0/15).

Needs the provisioned lab (tests/lab/test_00_site.py) and a converged WAN: the module first waits until
every site LAN is in every router's table (conftest.wait_routes_converged) and fails, naming the missing
routes, when it is not. Lab time: one whole-lab run (goal < 30 s), then about ten runs limited to one host
(a few seconds each) and chrony's resynchronisation (~10-30 s): 1-2 minutes.
"""

import ipaddress
import json
import shlex
import subprocess
import time

import pytest

import hoststate
from conftest import JINCAI, LAB_INVENTORY, hostvars, inventory, run_on, wait_routes_converged
from jincai.verify import plan, report

pytestmark = pytest.mark.lab

#: Seconds after which the host undoes a breakage by itself should the test die before its ``finally``.
SAFETY_NET_S = 300
LAB_RANGE = ipaddress.ip_network("198.18.0.0/15")


@pytest.fixture(scope="module", autouse=True)
def routes_converged(lab_up):
    """Precondition: every site LAN in every router's table (routing tests before this one reconfigure
    routers; SPF can install routes seconds after the adjacencies are Full). Fails, naming what is missing."""
    missing = wait_routes_converged(deadline_s=60)
    if missing:
        pytest.fail(f"the lab WAN did not converge within 60 s: site LANs missing from routing tables: {missing}",
                    pytrace=False)


def verify(tmp_path, *args, timeout=240):
    """Run ``jincai verify ARGS`` into ``tmp_path``; return (exit code, stdout, summary dict, results)."""
    out = tmp_path / f"run-{time.monotonic_ns()}"
    res = subprocess.run([JINCAI, "verify", "-i", LAB_INVENTORY, "-o", str(out), *args], capture_output=True,
                         text=True, timeout=timeout, check=False)
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else None
    results = report.parse_junit(str(out / "junit.xml")) if (out / "junit.xml").exists() else []
    return res.returncode, res.stdout + res.stderr, summary, results


def _net():
    return plan.Network(LAB_INVENTORY)


def _county_app_server():
    return sorted(h for h in inventory()["county"]["hosts"] if h in inventory()["app_servers"]["hosts"])[0]


def _check(host, check_id, net=None):
    """The planned check ``check_id`` of ``host`` (what verify expects there)."""
    return next(c for c in plan.checks_for(net or _net(), host) if c.id == check_id)


def _prefix(check):
    """The start of ``check``'s failure message: host, check, title, expected."""
    return f"{check.host}: {check.id} ({check.title}): expected {check.expected}, found "


def _failed(results):
    return {r["check"]: r["message"] for r in results if r["outcome"] in ("failed", "error")}


def _passes_again(tmp_path, host, keyword):
    """The restore proven: verify of ``host`` limited to ``keyword`` passes (rc, output)."""
    rc, out, summary, results = verify(tmp_path, "-l", host, "-k", keyword)
    assert rc == 0 and results and not _failed(results), out[-3000:]
    return summary


def _safety_net(host, name, command, seconds=SAFETY_NET_S):
    """Schedule ``command`` on ``host`` in ``seconds`` (a transient systemd timer), replacing a leftover one."""
    unit = f"jincai-test-verify-{name}"
    leftover = f"systemctl stop {unit}.timer {unit}.service; systemctl reset-failed {unit}.service"
    timer = f"systemd-run --quiet --unit={unit} --on-active={seconds} /bin/sh -c {shlex.quote(command)}"
    run_on(host, f"{{ {leftover}; }} 2>/dev/null; {timer}", check=True)


def _cancel(host, name):
    unit = f"jincai-test-verify-{name}"
    run_on(host, f"systemctl stop {unit}.timer; systemctl reset-failed {unit}.service 2>/dev/null; true")


def _wait(predicate, deadline_s, step=1):
    end = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(step)
    return True


def test_verify_passes_on_the_provisioned_lab(lab_up, tmp_path):
    t0 = time.monotonic()
    rc, out, summary, results = verify(tmp_path)
    seconds = time.monotonic() - t0
    assert rc == 0, out[-4000:]
    net = _net()
    scope = plan.resolve_scope(net, None)
    planned = sum(len(plan.checks_for(net, h)) for h in scope)
    assert summary["status"] == "passed" and summary["checks"] == planned == len(results)
    assert {r["host"] for r in results} == set(scope)
    assert len(summary["sites"]) == len({hostvars(h)["jincai_site_code"] for h in scope})
    print(f"\njincai verify, whole lab: {planned} checks on {len(scope)} hosts in {seconds:.1f} s "
          f"({planned / seconds:.0f} checks/s)")


def test_a_stopped_service_fails_its_checks_naming_host_check_expected_and_found(lab_up, tmp_path):
    host = _county_app_server()
    app = sorted(hostvars(host)["jincai_apps"])[-1]
    unit = f"jincai-{app}"
    run_on(host, f"systemctl stop {unit}", check=True)
    try:
        rc, out, summary, results = verify(tmp_path, "-l", host)
    finally:
        run_on(host, f"systemctl start {unit}", check=True)
    assert rc == 1, out[-3000:]
    failed = _failed(results)
    assert f"service.{unit}" in failed and f"app.{app}.health" in failed, failed
    assert failed[f"service.{unit}"] == (f"{host}: service.{unit} ({unit} runs and starts at boot): "
                                         f"expected running, enabled, found inactive, enabled")
    assert failed[f"app.{app}.health"].startswith(f"{host}: app.{app}.health (")
    assert "expected https://" in failed[f"app.{app}.health"] and ", found " in failed[f"app.{app}.health"]
    # only what the stopped service explains fails: its unit, its health, its loopback backend listener
    backend = next(c.id for c in plan.checks_for(_net(), host)
                   if c.test == "test_listener" and c.params.get("service") == unit)
    assert set(failed) <= {f"service.{unit}", f"app.{app}.health", backend}, failed
    assert f"FAILED {failed[f'service.{unit}']}" in out
    site = hostvars(host)["jincai_site_code"]
    assert any(line.startswith(f"{site} ") and "FAILED" in line and f"{host} service.{unit}" in line
               for line in out.splitlines()), out[-2000:]
    # started again: the same checks pass (the application needs a moment to answer its health check)
    for _attempt in range(10):
        rc, out, summary, _ = verify(tmp_path, "-l", host, "-k", app)
        if rc == 0:
            break
        time.sleep(1)
    assert rc == 0, out[-3000:]


def test_a_database_listener_off_loopback_fails_its_listener_checks(lab_up, tmp_path):
    """A listener changed: the database port listening on the host's LAN address too (a bare socket that
    accepts nothing, started for at most 10 minutes), where the plan allows loopback only."""
    host = _county_app_server()
    net = _net()
    db = next(c for c in plan.checks_for(net, host)
              if c.test == "test_listener" and c.params["service"] == "postgresql" and c.params["bind"] == "loopback")
    only = _check(host, "listeners.only_intended", net)
    port, address = db.params["port"], hostvars(host)["jincai_address"]
    assert port not in only.params["allowed"] and ipaddress.ip_address(address) in LAB_RANGE
    unit = "jincai-test-verify-listener"
    listen = (f"import socket, time; s = socket.socket(); s.bind(({address!r}, {port})); s.listen(1); "
              "time.sleep(600)")
    run_on(host, f"systemctl stop {unit} 2>/dev/null; systemd-run --quiet --unit={unit} --collect "
                 f"-p RuntimeMaxSec=600 python3 -c {shlex.quote(listen)}", check=True)
    try:
        assert _wait(lambda: f"tcp://{address}:{port}" in hoststate.listening(host), 15), \
            f"{host}: the stray listener on tcp://{address}:{port}: expected listening, found not listening after 15 s"
        rc, out, _summary, results = verify(tmp_path, "-l", host, "-k", "listener")
    finally:
        run_on(host, f"systemctl stop {unit}")
    assert rc == 1, out[-3000:]
    failed = _failed(results)
    assert set(failed) == {db.id, only.id}, failed
    assert failed[db.id].startswith(_prefix(db) + "listening on ") and address in failed[db.id], failed[db.id]
    assert failed[only.id] == _prefix(only) + f"tcp/{port} on {address}"
    assert f"FAILED {failed[db.id]}" in out
    assert _wait(lambda: f"tcp://{address}:{port}" not in hoststate.listening(host), 15), \
        f"{host}: the stray listener on tcp://{address}:{port}: expected gone, found still listening after 15 s"
    _passes_again(tmp_path, host, "listener")


def test_a_removed_default_route_fails_the_route_check(lab_up, tmp_path):
    """A route removed: the host's default route via its site router (the management network, which
    carries the SSH session, is directly connected and unaffected)."""
    host = _county_app_server()
    check = _check(host, "route.default")
    via = check.params["via"]

    def defaults():
        routes = json.loads(hoststate.read(host, "ip -j route show default") or "[]")
        return sorted((r.get("gateway"), r.get("dev"), r.get("protocol")) for r in routes)

    before = defaults()
    assert [gw for gw, _dev, _proto in before] == [via], f"{host}: default routes {before}, planned via {via}"
    restore = f"ip route replace default via {via}"  # as jincai lab sets it (jincai/lab/net.py)
    _safety_net(host, "route", restore)
    run_on(host, f"ip route del default via {via}", check=True)
    try:
        rc, out, _summary, results = verify(tmp_path, "-l", host, "-k", "route")
    finally:
        run_on(host, restore, check=True)
        _cancel(host, "route")
    assert defaults() == before
    assert rc == 1, out[-3000:]
    assert _failed(results) == {check.id: _prefix(check) + "no route"}
    _passes_again(tmp_path, host, "route")


def _unused_lan_address(host):
    """The highest address of ``host``'s site LAN that no host of the inventory uses (a dead time source)."""
    lan = ipaddress.ip_network(hostvars(host)["jincai_site"]["lan"])
    assert lan.subnet_of(LAB_RANGE), lan
    used = set()

    def walk(value):
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str):
            try:
                used.add(ipaddress.ip_interface(value).ip)
            except ValueError:
                pass

    walk(inventory()["_meta"]["hostvars"])
    return str(next(a for a in reversed(list(lan.hosts())) if a not in used))


def _chrony_sources(host):
    """{address: state mark} of chrony's sources (``^*`` selected, ``^?`` unusable, ...)."""
    out = hoststate.read(host, "chronyc -n sources")
    return {line.split()[1]: line[:2] for line in out.splitlines() if line.startswith("^") and len(line.split()) > 1}


def test_a_clock_following_a_dead_source_fails_the_ntp_check(lab_up, tmp_path):
    """The clock desynchronised: chrony's sources replaced at run time (``chronyc delete``/``add``, no file
    changed) by an unused address of the host's own LAN; restored by restarting chrony (its config)."""
    host = _county_app_server()
    check = _check(host, "ntp.source")
    dead = _unused_lan_address(host)
    sources = _chrony_sources(host)
    assert sources.get(check.params["source"]) == "^*", f"{host}: chrony sources {sources} before the breakage"
    _safety_net(host, "ntp", "systemctl restart chrony")
    run_on(host, " && ".join([f"chronyc delete {s}" for s in sources] + [f"chronyc add server {dead} iburst"]),
           check=True)
    try:
        assert set(_chrony_sources(host)) == {dead}
        rc, out, _summary, results = verify(tmp_path, "-l", host, "-k", "ntp")
    finally:
        run_on(host, "systemctl restart chrony", check=True)
        _cancel(host, "ntp")
    assert rc == 1, out[-3000:]
    failed = _failed(results)
    assert set(failed) == {check.id}, failed
    assert failed[check.id].startswith(_prefix(check) + "no selected source: ^? " + dead), failed[check.id]
    # restored: chrony follows its first source again once it has its samples (iburst)
    assert _wait(lambda: _chrony_sources(host).get(check.params["source"]) == "^*", 120, step=3), \
        f"{host}: chrony sources {_chrony_sources(host)} 120 s after its restart"
    _passes_again(tmp_path, host, "ntp")


def test_a_release_record_naming_another_version_fails_the_release_check(lab_up, tmp_path):
    """An application release broken: the host's release record names another catalogue version of one
    application than the release deploys (what ``jincai release status`` would report); restored byte for
    byte from a copy."""
    host = _county_app_server()
    net = _net()
    check = _check(host, "apps.release", net)
    path, app = check.params["path"], sorted(check.params["apps"])[0]
    want = check.params["apps"][app]
    other = sorted(v for v in net.catalog[app]["versions"] if v != want)[0]
    backup = "/run/jincai-test-verify-release.json"

    def digest():
        return hoststate.host(host).file(path).sha256sum

    original = digest()
    run_on(host, f"cp -p {path} {backup}", check=True)
    _safety_net(host, "release", f"cp -p {backup} {path}")
    edit = ("import json, sys; p, app, v = sys.argv[1:]; d = json.load(open(p)); d['apps'][app]['version'] = v; "
            "open(p, 'w').write(json.dumps(d, indent=2) + '\\n')")
    run_on(host, f"python3 -c {shlex.quote(edit)} {path} {app} {other}", check=True)
    try:
        rc, out, _summary, results = verify(tmp_path, "-l", host, "-k", "release")
    finally:
        run_on(host, f"cp -p {backup} {path} && rm -f {backup}", check=True)
        _cancel(host, "release")
    assert digest() == original
    assert rc == 1, out[-3000:]
    assert _failed(results) == {check.id: _prefix(check) + f"release '{net.release['release']}', {app} {other}"}
    _passes_again(tmp_path, host, "release")
