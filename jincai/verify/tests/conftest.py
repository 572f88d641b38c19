"""pytest plumbing of the verification suite: the inventory, the hosts in scope, one test per check.

Options (testinfra's own, given jincai's meaning):

* ``--ansible-inventory DIR``: the jincai inventory directory (default ``$JINCAI_INVENTORY``, else
  inventories/lab). The intended state is read from it (jincai/verify/plan.py), never from the tests.
* ``--hosts LIMIT``: tier, site code, group or host, comma-separated, as ``jincai verify --limit``
  (default: every router, machine-room host and VPN client).
* ``--connection ansible``: testinfra's ansible backend for servers instead of the native ssh one.

Every test function takes ``check`` (a :class:`jincai.verify.plan.Check`) and ``host`` (the testinfra
Host of ``check.host``). Test ids are ``<host>:<check id>``; with pytest-xdist (``-n N --dist
loadgroup``) a host's checks stay on one worker (one SSH master per host).
"""

import os
import re

import pytest

from jincai.verify import plan, support


class _State:
    def __init__(self, net, scope, checks):
        self.net, self.scope, self.checks = net, scope, checks


def inventory_dir(config):
    """The inventory directory the run reads (``--ansible-inventory``, $JINCAI_INVENTORY, the lab)."""
    return os.path.abspath(config.getoption("ansible_inventory") or os.environ.get("JINCAI_INVENTORY")
                           or plan.LAB_INVENTORY)


def pytest_configure(config):
    """Read the inventory and plan every check once, before anything is collected or contacted."""
    from jincai.source import model
    from jincai.source import inventory as invmod

    inv = inventory_dir(config)
    try:
        net = plan.Network(inv)
        scope = plan.resolve_scope(net, config.getoption("hosts"))
    except plan.ScopeError as exc:
        raise pytest.UsageError(f"--hosts: {exc} (nothing was contacted)") from None
    except invmod.InvalidSource as exc:
        raise pytest.UsageError(f"{inv}: invalid source, nothing was contacted:\n{exc}") from None
    except (model.SourceError, OSError) as exc:
        raise pytest.UsageError(f"{inv}: {exc} (nothing was contacted)") from None
    checks = {}
    for name in scope:
        planned = plan.checks_for(net, name)
        support.PLANNED[name] = [c for c in planned if not c.skip]
        for c in planned:
            checks.setdefault(c.test, []).append(c)
    config.stash[STATE] = _State(net, scope, checks)


STATE = pytest.StashKey[_State]()


def pytest_generate_tests(metafunc):
    """One test per planned check whose ``test`` is this function's name."""
    if "check" not in metafunc.fixturenames:
        return
    state = metafunc.config.stash[STATE]
    params = []
    for c in state.checks.get(metafunc.function.__name__, []):
        marks = [pytest.mark.xdist_group(c.host)]
        if c.skip:
            marks.append(pytest.mark.skip(reason=f"{c.host}: {c.id}: {c.skip}"))
        params.append(pytest.param(c, id=c.pytest_id, marks=marks))
    metafunc.parametrize("check", params)


def pytest_collection_modifyitems(config, items):
    """Drop test functions no host in scope needs (an empty parameter set); keep a host's checks together."""
    keep, drop = [], []
    for item in items:
        cs = getattr(item, "callspec", None)
        (keep if cs is not None and isinstance(cs.params.get("check"), plan.Check) else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
    keep.sort(key=lambda i: i.callspec.params["check"].host)
    items[:] = keep


_HOST_OF_ID = re.compile(r"\[(?P<host>[^:\]]+):[^\]]*\](?:@.*)?$")


def pytest_xdist_make_scheduler(config, log):
    """``--dist loadgroup``: every check of a host on one worker (one SSH master, one netmiko session).

    pytest-xdist's own loadgroup reads an ``@<group>`` suffix it adds to the node ids, which pytest 9
    no longer lets it set (``nodeid`` is derived); so the scope is taken from the test id itself
    (``[<host>:<check id>]``), with xdist's scope scheduler."""
    if config.getoption("dist", None) != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByHost(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            m = _HOST_OF_ID.search(nodeid)
            return m.group("host") if m else nodeid

    return ByHost(config, log)


@pytest.fixture
def host(check, request):
    """The testinfra Host the check runs on (native ssh from the inventory's connection settings)."""
    h = support.get_host(request.config.stash[STATE].net, check.host, request.config.getoption("connection"))
    support.reachable(h, check.host)
    return h


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem):
    """A query that raises (unexpected exit code, unparsable output, ssh gone) fails its check in the
    usual form: host, check, expected, found."""
    try:
        return (yield)
    except Exception as exc:  # noqa: BLE001 - pytest's own outcomes are BaseExceptions and pass through
        check = pyfuncitem.funcargs.get("check")
        if not isinstance(check, plan.Check):
            raise
        support.fail_from(check, exc)
