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

A task whose ``when`` is false for a host is skipped here, in the parent, without forking a worker
(jincai.executor.early_skip: the same evaluation and the same result on the same queue; anything but a
clean False still goes to a worker; ``JINCAI_EARLY_SKIP=0`` turns it off).
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
    from jincai.executor import early_skip, jinja_cache, prefork
except ImportError:  # pragma: no cover - the venv installs jincai (Makefile)
    early_skip = jinja_cache = prefork = None

Base = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)
display = Display()


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, Base):
    """The linear strategy with Mitogen's connection and module-execution layer."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        done = prefork.prepare() if prefork else None
        if done:
            display.vv(f"jincai prefork: {done}")

    def _queue_task(self, host, task, task_vars, play_context):
        """Queue the task to a worker, unless its conditional is cleanly false for the host: then its
        skipped result goes on the workers' result queue directly (jincai.executor.early_skip)."""
        result = early_skip.skip_result(host, task, task_vars, play_context, self._loader) if early_skip else None
        if result is None:
            if prefork and prefork.preload_action(task.action):
                display.vv(f"jincai prefork: action plugin {task.action} loaded before the workers that run it")
            return super()._queue_task(host, task, task_vars, play_context)
        from ansible.executor.task_result import _RawTaskResult
        # What the base _queue_task and WorkerProcess._run do for a worker, in the same order.
        self._queued_task_cache[(host.name, task._uuid)] = {
            "host": host, "task": task, "task_vars": task_vars, "play_context": play_context}
        self._tqm.send_callback("v2_runner_on_start", host, task)
        self._final_q.send_task_result(_RawTaskResult(host=host, task=task, return_data=result,
                                                      task_fields=task.dump_attrs()))
        self._pending_results += 1
        return None

    def run(self, iterator, play_context):
        """The linear strategy's run; at -vv, how many compiled templates the workers shared and how
        many host-tasks were skipped without a worker."""
        result = super().run(iterator, play_context)
        shared = jinja_cache.shared_entries() if jinja_cache else None
        if shared is not None:
            display.vv(f"jincai prefork: {shared} compiled templates shared by the workers of this run")
        if early_skip:
            display.vv(f"jincai early skip: {early_skip.skipped_count()} host-tasks skipped without a worker so far")
        return result
