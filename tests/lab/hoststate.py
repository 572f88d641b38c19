"""Lab host state read with testinfra (issue 19 item 3): the lab tests' way to *check* a host.

``host(name)`` is the testinfra Host of a lab host, built by :func:`jincai.verify.support.get_host`
from ``inventories/lab`` as ``jincai verify`` builds it (native ssh backend, the inventory's user, key,
known_hosts and become -> sudo, one SSH master per host), at the management address the lab's state
records (what ``run_on`` uses), with the container's PID in the master's socket name (a rebooted or
rebuilt host never reuses a dead master). Use its modules for state: ``host(h).file(path)``,
``.service(unit)``, ``.package(name)``, ``.socket(spec)``, ``.sysctl(key)``, ``.user(name)``,
``.group(name)``, ``.interface(name)``; ``read(h, cmd)`` for a command that reads state (``nft list``,
``vtysh -c 'show ...'``, ``swanctl --list-sas``). ``run_on`` (tests/lab/conftest.py) stays for
actions: breaking and restoring things, traffic from a host or namespace, restarts.

Assertions name the host, what was checked, expected and found: :func:`expect`, :func:`equal`.
"""

import functools
import os

from jincai import ROOT
from jincai.lab import lab as labmod
from jincai.verify import plan, support

LAB_INVENTORY = os.path.join(ROOT, "inventories", "lab")


@functools.lru_cache(maxsize=1)
def network():
    """The lab inventory as ``jincai verify`` reads it (:class:`jincai.verify.plan.Network`, built once)."""
    return plan.Network(LAB_INVENTORY)


def host(name, state=None):
    """The testinfra Host of lab host ``name`` (cached per address and container instance).

    The address is the management address of the lab's state file (``state``, default: read it now),
    else the inventory's, as ``run_on`` does; the container's PID names its SSH master."""
    state = labmod.load_state() if state is None else state
    rec = (state.get("hosts") or {}).get(name) or {}
    return support.get_host(network(), name, address=rec.get("mgmt"), instance=rec.get("pid"))


def run(name, command, *args):
    """Run a read-only ``command`` on ``name`` (``args`` quoted into its ``%s``, as testinfra's
    ``host.run``); return testinfra's CommandResult (``rc``, ``stdout``, ``stderr``)."""
    return host(name).run(command, *args)


def read(name, command, *args):
    """The stdout of a read-only ``command`` on ``name``; AssertionError naming host, command, exit code
    and stderr when it does not exit 0."""
    res = run(name, command, *args)
    if res.rc != 0:
        shown = res.command.decode(errors="replace") if isinstance(res.command, bytes) else str(res.command)
        raise AssertionError(f"{name}: `{shown[:300]}` exited {res.rc}: "
                             f"{(res.stderr or res.stdout or 'no output').strip()[-500:]}")
    return res.stdout


def listening(name):
    """The listening sockets of ``name`` as testinfra names them (``tcp://198.18.1.2:22``, ``udp://::1:123``;
    ``host.socket.get_listening_sockets()``, unix sockets left out). Compare exact addresses with it:
    ``host.socket(spec).is_listening`` also counts a socket bound to every address."""
    return {s for s in host(name).socket.get_listening_sockets() if not s.startswith("unix://")}


def listening_on(name, port, protocol="tcp"):
    """The listening sockets of ``name`` on ``port`` at any address (what ``ss -Hltn 'sport = :PORT'`` lists),
    as :func:`listening` names them; empty when nothing listens there."""
    return {s for s in listening(name) if s.startswith(f"{protocol}://") and s.rsplit(":", 1)[1] == str(port)}


def expect(name, what, ok, expected, found):
    """Assert ``ok``; the message: ``<host>: <what>: expected <expected>, found <found>``."""
    assert ok, f"{name}: {what}: expected {expected}, found {found}"


def equal(name, what, found, expected):
    """Assert ``found == expected`` (:func:`expect` with the two values)."""
    expect(name, what, found == expected, repr(expected), repr(found))
