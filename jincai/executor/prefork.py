"""Work done once in the ansible-playbook parent so that its forked workers do not repeat it.

Ansible forks one worker process per host per task (``WorkerProcess``, multiprocessing's ``fork``);
a worker inherits the parent's memory and throws its own work away when it exits. Three things every
worker redid on the lab (py-spy profile of a converged baseline play, docs/speed.md):

- **Jinja filter and test plugins**: the first filter a worker resolves makes ansible's Jinja2Loader
  import every filter (or test) plugin file of the configured paths (``_ensure_non_collection_wrappers``),
  because the parent had not. Done here once, before the first fork; the workers inherit the loaded
  plugins (the same lookup a worker would do, only earlier: same plugins, same shadowing, same warnings).
- **Template compilation**: jincai.executor.jinja_cache (a per-run cache of compiled code).
- **The cyclic garbage collector** walking the inherited heap: each scan of the oldest generation in a
  worker touches every object it inherited (copy-on-write faults, then the scan itself). After each
  fork the child freezes what it inherited (``gc.freeze()``: O(1), moves the inherited objects into the
  permanent generation); what the worker itself allocates is collected as before.

- **Action plugins that import much** (:data:`PRELOAD_ACTIONS`): loaded in the parent right before the
  first worker that runs one is forked (:func:`preload_action`).

``prepare()`` is called by the strategy plugin (plugins/strategy/mitogen_linear.py) when the play
starts. ``JINCAI_PREFORK=0`` turns all of it off; ``JINCAI_JINJA_CACHE=0`` only the template cache.
"""

import gc
import os

from jincai.executor import jinja_cache

_STATE = {"prepared": False, "at_fork": False, "actions": set()}

#: Action plugins whose imports are worth loading once in the parent, before the first worker that runs
#: them is forked: plugins/action/jincai_netconfig.py runs the router push in the worker and imports
#: netmiko and paramiko (~0.22 s of CPU a process). Only when a play has such a task (the parent of a
#: baseline play stays as small as it was: a fork costs more the larger the parent).
PRELOAD_ACTIONS = frozenset({"jincai_netconfig", "ansible.legacy.jincai_netconfig"})


def enabled():
    """False when ``JINCAI_PREFORK`` is 0/off/false/no."""
    return os.environ.get("JINCAI_PREFORK", "1").strip().lower() not in ("0", "off", "false", "no")


def warm_plugins():
    """Load every non-collection Jinja filter and test plugin in this process (as the first filter
    lookup would). Returns how many of each were loaded."""
    from ansible.plugins.loader import filter_loader, test_loader
    return {"filter": sum(1 for _ in filter_loader.all()), "test": sum(1 for _ in test_loader.all())}


def preload_action(name):
    """Import action plugin ``name`` in this process if it is one of :data:`PRELOAD_ACTIONS` and not
    loaded yet (the strategy calls this before it queues a task). True when it was loaded now."""
    if name not in PRELOAD_ACTIONS or name in _STATE["actions"] or not enabled():
        return False
    _STATE["actions"].add(name)
    from ansible.plugins.loader import action_loader
    action_loader.get(name, class_only=True)
    return True


def _freeze_inherited():
    """In a freshly forked child: keep the collector off what the parent left (see the module doc)."""
    gc.freeze()


def prepare():
    """Prepare this ansible-playbook process for forking workers (once; later calls do nothing).
    Returns what was done, for the strategy's ``-vv`` line, or None when turned off."""
    if not enabled():
        return None
    if _STATE["prepared"]:
        return {}
    _STATE["prepared"] = True
    from ansible import constants as C
    done = {"jinja_cache": jinja_cache.install(os.path.join(C.DEFAULT_LOCAL_TMP, "jincai-jinja"))}
    done.update(warm_plugins())
    if not _STATE["at_fork"]:
        os.register_at_fork(after_in_child=_freeze_inherited)
        _STATE["at_fork"] = True
    done["gc_freeze_in_children"] = True
    return done
