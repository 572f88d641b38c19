"""Shared by the router-push tests: the module loaded without Ansible, a fake AnsibleModule, simulators.

``load_module()`` imports library/jincai_netconfig.py with module_utils/jincai_netconfig.py (:mod:`jincai.netconfig`)
as its ``ansible.module_utils`` import; ``FakeModule`` carries params and raises ``Failed`` on fail_json;
``simulator()`` starts a vendor CLI twin (jincai.lab.vendorsim) on 127.0.0.1 with a shared host key.
"""

import functools
import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from jincai import netconfig as nc  # noqa: E402  (module_utils/jincai_netconfig.py)

START = os.path.join(ROOT, "jincai", "lab", "vendorsim", "start")
GOLDEN = os.path.join(ROOT, "tests", "unit", "golden", "router")
VENDOR_PLATFORMS = ("huawei_vrp", "huawei_vrpv8", "h3c_comware", "cisco_ios")


def load_module():
    """library/jincai_netconfig.py as a Python module (its ansible.module_utils import resolved)."""
    sys.modules["ansible.module_utils.jincai_netconfig"] = nc
    spec = importlib.util.spec_from_file_location("jincai_netconfig_module",
                                                  os.path.join(ROOT, "library", "jincai_netconfig.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Failed(Exception):
    """fail_json was called: ``args[0]`` is its keyword arguments."""


class FakeModule:
    """What run() uses of an AnsibleModule: params, check_mode, _diff, fail_json."""

    def __init__(self, config, check=False, diff=True, backup_dir=None, **params):
        self.params = dict(platform="frr", host="198.18.250.10", port=22, username="netops", key_file=None,
                           password=None, config=config, backup_dir=backup_dir, save=True, timeout=2,
                           known_hosts=None, rollback_timer=300, timer_scale=1.0)
        self.params.update(params)
        self.check_mode = check
        self._diff = diff

    def fail_json(self, **kw):
        raise Failed(kw)


def read(path):
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def start_config(platform):
    """The realistic starting config of a simulated router (factory defaults + operator lines)."""
    return read(os.path.join(START, f"{platform}.cfg"))


def intended(platform, tier="county"):
    """jincai's rendered config for the platform (the golden file of the county router)."""
    return read(os.path.join(GOLDEN, f"{platform}-{tier}.cfg"))


@functools.lru_cache(maxsize=1)
def host_key():
    """One RSA host key for every simulator of the test run (generating one takes ~0.3 s)."""
    from jincai.lab.vendorsim.server import host_key as make

    return make()


def simulator(platform, state_file=None, config=None, **options):
    """A vendor CLI twin on 127.0.0.1 (close it with ``.close()``); ``options`` go to SimDevice."""
    from jincai.lab import vendorsim

    return vendorsim.start(platform, state_file, start_config(platform) if config is None else config,
                           key=host_key(), **options)
