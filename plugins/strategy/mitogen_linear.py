"""Ansible's linear strategy run over Mitogen (ansible.cfg: ``strategy = mitogen_linear``).

Why: stock Ansible starts a fresh Python on the target for every module run (~0.3 s of target CPU),
which saturates this kind of control node long before forks help. Mitogen keeps one interpreter per
host and ships modules to it: on the lab a converged one-host baseline check went from 32.5 s to
14.2 s (benchmarks/strategy.py measures the whole lab). Behaviour is the linear strategy's: the same
task order, serial batches, check mode and ``meta: reset_connection`` (the sshd and firewall roles
rely on it to prove a fresh login before they disarm their rollback timers).

This file is a proxy, as the one Mitogen ships: it imports the real module under its canonical name
so Ansible's plugin loader does not load it twice. Fall back to stock Ansible for one run with
``ANSIBLE_STRATEGY=linear``.

Before the first worker is forked, jincai.executor.prefork prepares the parent so that the workers do
not each redo the same work: Jinja filter/test plugins loaded once, a per-run cache of compiled
templates shared by the workers, and the garbage collector kept off the heap a worker inherits
(docs/speed.md has the figures; ``JINCAI_PREFORK=0`` turns it off).
"""

try:
    import ansible_mitogen.loaders
    import ansible_mitogen.strategy
except ImportError as exc:  # pragma: no cover - the venv pins mitogen (requirements.txt)
    raise ImportError(f"strategy mitogen_linear needs the mitogen package ({exc}); install requirements.txt, "
                      "or run with ANSIBLE_STRATEGY=linear") from exc

DOCUMENTATION = """
name: mitogen_linear
short_description: Ansible's linear strategy over Mitogen connections
description:
  - Proxy for ansible_mitogen's mitogen_linear strategy (pip package mitogen, pinned in requirements.txt).
"""

from ansible.utils.display import Display

try:  # jincai's pre-fork preparation; the strategy works without it (a copy of the plugins alone)
    from jincai.executor import jinja_cache, prefork
except ImportError:  # pragma: no cover - the venv installs jincai (Makefile)
    jinja_cache = prefork = None

Base = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)
display = Display()


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, Base):
    """The linear strategy with Mitogen's connection and module-execution layer."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        done = prefork.prepare() if prefork else None
        if done:
            display.vv(f"jincai prefork: {done}")

    def run(self, iterator, play_context):
        """The linear strategy's run; at -vv, how many compiled templates the workers shared."""
        result = super().run(iterator, play_context)
        shared = jinja_cache.shared_entries() if jinja_cache else None
        if shared is not None:
            display.vv(f"jincai prefork: {shared} compiled templates shared by the workers of this run")
        return result
