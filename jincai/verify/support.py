"""Helpers the verification tests share: connections built from the inventory, cached queries, and the
one way a check fails (host, check, expected vs found).

Connections: testinfra's native ``ssh`` backend with the inventory's connection settings (user, key,
``ansible_ssh_common_args``, become -> sudo) and an SSH master per host kept open (ControlPersist), so
a host's checks share one TCP/SSH session. Routers are reached over SSH as the automation account
with sudo, as the compliance run reads an FRR router's packet filter (their inventory connection is
``local``: netmiko runs on the control node). ``--connection=ansible`` uses testinfra's ansible
backend instead for servers (it maps ``ansible_connection: ssh`` onto the same ssh backend).
"""

from __future__ import annotations

import json
import os
import re

import pytest

CONTROL_DIR = os.environ.get("JINCAI_VERIFY_CONTROL_DIR", "/tmp/jincai-verify-cp")
#: A known_hosts file that replaces the inventory's UserKnownHostsFile (``jincai verify --known-hosts``:
#: ``jincai bootstrap`` passes the host keys it recorded and the technician confirmed).
KNOWN_HOSTS_ENV = "JINCAI_VERIFY_KNOWN_HOSTS"
CONTROL_PERSIST = 120  # seconds an idle master stays (ansible.cfg keeps its own for 120 s too)
CONNECT_TIMEOUT = 10

_memo = {}
_unreachable = {}
#: Every planned check of each host in scope (the suite's conftest fills it in each pytest worker), so
#: that a check can read what all of its host's checks of the same kind need in one query (one
#: ``systemctl show`` for every unit, one ``ip -j addr`` for every interface, one probe for every
#: application) instead of one round trip per check. Empty when a test function is called on its own:
#: then a check reads just what it needs.
PLANNED = {}

#: ``systemctl is-enabled`` exits 0 for these unit file states (systemctl(1), "is-enabled"): the unit
#: starts at boot or cannot be disabled.
ENABLED_STATES = frozenset({"enabled", "enabled-runtime", "static", "alias", "indirect", "generated", "transient"})
#: ``systemctl is-active`` exits 0 for these active states (the unit runs).
RUNNING_STATES = frozenset({"active", "reloading"})


def host_spec(net, name, connection=None, address=None, instance=None):
    """(hostspec, kwargs) for ``testinfra.get_host`` of inventory host ``name``.

    ``address`` replaces the inventory's address (the lab tests pass the management address the lab's
    state records); ``instance`` is added to the SSH master's socket name (the lab tests pass the
    container's PID, so a rebooted host never reuses a dead master)."""
    hv = net.hostvars[name]
    ivars = net.inv_vars(name)
    is_router = "router" in (hv.get("jincai_functions") or [])
    if connection == "ansible" and not is_router:
        return f"ansible://{name}", {"ansible_inventory": net.dir}
    user = ivars.get("ansible_user") or "jincai"
    address = address or ivars.get("ansible_host") or hv.get("ansible_host") or name  # host_vars/ files win, as in Ansible
    port = ivars.get("ansible_port")
    spec = f"ssh://{user}@{address}" + (f":{port}" if port else "")
    extra = " ".join(str(ivars.get("ansible_ssh_common_args") or "").split())
    known = os.environ.get(KNOWN_HOSTS_ENV)
    if known:
        opt = f"-o UserKnownHostsFile={known}"
        extra, n = re.subn(r"-o\s*UserKnownHostsFile=\S+", lambda _m: opt, extra)
        extra = extra if n else f"{extra} {opt}".strip()
    kwargs = {
        "ssh_extra_args": (extra + " -o BatchMode=yes").strip(),
        "controlpersist": CONTROL_PERSIST,
        "controlpath": os.path.join(CONTROL_DIR, f"{name}-{instance}-{user}" if instance else f"{name}-{user}"),
        "timeout": CONNECT_TIMEOUT,
        "sudo": True if is_router else bool(ivars.get("ansible_become", False)),
    }
    key = ivars.get("ansible_ssh_private_key_file")
    if key:
        kwargs["ssh_identity_file"] = os.path.expanduser(str(key))
    return spec, kwargs


def get_host(net, name, connection=None, address=None, instance=None):
    """The testinfra Host of ``name`` (cached by testinfra per spec; ``address``, ``instance``: :func:`host_spec`)."""
    import testinfra

    os.makedirs(CONTROL_DIR, mode=0o700, exist_ok=True)
    spec, kwargs = host_spec(net, name, connection, address=address, instance=instance)
    return testinfra.get_host(spec, **kwargs)


def fail(check, found):
    """Fail ``check``: ``<host>: <check id> (<title>): expected <expected>, found <found>``."""
    pytest.fail(f"{check.host}: {check.id} ({check.title}): expected {check.expected}, found {found}", pytrace=False)


def fail_from(check, exc):
    """Fail ``check`` for an exception a query raised (a command that exited with an unexpected code,
    output that does not parse, ssh dropping mid-run): still host, check, expected vs found."""
    result = exc.args[0] if exc.args and hasattr(exc.args[0], "rc") else None
    if result is not None:  # testinfra: CommandResult of a failed query, or of ssh exiting 255
        err = (result.stderr or result.stdout or "").strip().splitlines()
        command = result.command.decode(errors="replace")[:120]
        what = f"`{command}` exited {result.rc}: {(err or ['no output'])[-1][:200]}"
    else:
        lines = str(exc).strip().splitlines() or [""]
        what = f"{type(exc).__name__}: {lines[0][:200]}"
        m = re.search(r"CommandResult\(.*exit_status=(\d+), command=b'([^']*)'", str(exc))
        if m:
            what = f"`{m.group(2)[:120]}` exited {m.group(1)}"
    fail(check, f"could not be read ({what})")


def expect(check, ok, found):
    """Fail ``check`` with ``found`` unless ``ok``."""
    if not ok:
        fail(check, found)


def reachable(host, name):
    """Fail at once when an earlier check found ``name`` unreachable; else make sure it answers (one round
    trip, which also opens the SSH master the host's other checks reuse)."""
    if name in _unreachable:
        pytest.fail(f"{name}: unreachable: {_unreachable[name]}", pytrace=False)
    if name in _memo.get("_reached", set()):
        return
    try:
        res = host.run("true")
    except Exception as exc:  # noqa: BLE001 - testinfra raises RuntimeError(CommandResult) on ssh exit 255
        detail = (getattr(exc.args[0], "stderr", None) if exc.args else None) or str(exc)
        res = None
        _unreachable[name] = (detail.strip().splitlines() or ["ssh failed"])[-1][:300]
    if res is None:
        pytest.fail(f"{name}: unreachable: {_unreachable[name]}", pytrace=False)
    if res.rc != 0:
        _unreachable[name] = f"`true` exited {res.rc} (sudo refused?): {res.stderr.strip()[:300]}"
        pytest.fail(f"{name}: unreachable: {_unreachable[name]}", pytrace=False)
    _memo.setdefault("_reached", set()).add(name)


def output(host, name, command, *args):
    """The stdout of a read-only ``command`` on ``host`` (memoised per host for this run: several checks
    read the same listing), or raises pytest.fail naming the host and command."""
    key = (name, command, args)
    if key not in _memo:
        res = host.run(command, *args)
        _memo[key] = res
    return _memo[key]


def planned(check):
    """Every planned check of ``check``'s host judged by the same test (``check`` itself included)."""
    same = [c for c in PLANNED.get(check.host, ()) if c.test == check.test]
    return same if check in same else same + [check]


def unit_states(host, name, units):
    """{unit: {"active": ActiveState, "enabled": UnitFileState, "load": LoadState}} for ``units`` of
    host ``name``, read with one ``systemctl show`` for every unit not read yet (memoised per host)."""
    known = _memo.setdefault((name, "units"), {})
    missing = [u for u in dict.fromkeys(units) if u not in known]
    if missing:
        res = host.run("systemctl show -p LoadState -p ActiveState -p UnitFileState -- " + " ".join(["%s"] * len(missing)),
                       *missing)
        if res.rc != 0:
            raise RuntimeError(res)
        # one block of properties per unit, in the order given, separated by an empty line
        blocks = [b for b in res.stdout.strip("\n").split("\n\n")]
        if len(blocks) != len(missing):
            raise ValueError(f"systemctl show: {len(blocks)} blocks for {len(missing)} units")
        for unit, block in zip(missing, blocks):
            props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
            known[unit] = {"active": props.get("ActiveState") or "unknown", "enabled": props.get("UnitFileState") or "",
                           "load": props.get("LoadState") or ""}
    return {u: known[u] for u in units}


def unit_running(host, name, unit):
    """Whether ``unit`` runs on host ``name`` (:func:`unit_states`)."""
    return unit_states(host, name, [unit])[unit]["active"] in RUNNING_STATES


def json_output(host, name, command, *args):
    """:func:`output` parsed as JSON (None when it is not JSON)."""
    res = output(host, name, command, *args)
    try:
        return json.loads(res.stdout)
    except ValueError:
        return None
