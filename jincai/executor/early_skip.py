"""Skip a task whose ``when`` is false in the ansible-playbook parent, without forking a worker.

Ansible forks one worker process per host per task, and the worker's first step
(``TaskExecutor._execute_internal``) is to evaluate the task's conditional: when it is false the
worker returns ``{"changed": False, "skipped": True, "skip_reason": "Conditional result was False",
"false_condition": ...}`` and exits. On a converged run a sixth of the host-tasks end that way (the
handlers' "restart if changed", the first-run-only steps, the other tier's tasks), and each cost a
fork of the parent (its ``fork()`` and the copy-on-write faults after it, in the run's bottleneck: the
parent's one main thread), a worker and the pickling of its result (docs/speed.md).

``skip_result()`` evaluates the same conditional the worker would, with the same variables (the
task vars the strategy computed, ``ansible_search_path``, the play context's connection variables
as the worker adds them), in the same ambient contexts (the task context; warnings deferred into
the result). Only a clean False is decided here; everything else goes to a worker as before:

- a task with a loop (its conditional is evaluated per item), ``delegate_to`` (evaluated with the
  delegated host's variables), ``run_once``, an include or import, a handler, or no ``when``;
- a conditional that is true, raises, or warns (the worker reports the error or warning exactly as
  stock Ansible does), or a play context that does not validate.

The strategy (plugins/strategy/mitogen_linear.py) then does what its ``_queue_task`` does for a
worker (the queued-task cache entry, ``v2_runner_on_start``, one pending result) and puts the result
on the same final queue a worker writes to, so the results thread, the callbacks, the stats and the
registered variables see exactly what a worker's result gives. ``JINCAI_EARLY_SKIP=0`` turns it off.
"""

import os

_SKIPPED_COUNT = {"n": 0}


def enabled():
    """False when ``JINCAI_EARLY_SKIP`` is 0/off/false/no."""
    return os.environ.get("JINCAI_EARLY_SKIP", "1").strip().lower() not in ("0", "off", "false", "no")


def eligible(task):
    """True when the task's skip can be decided here: a plain task with a ``when`` (module doc)."""
    from ansible import constants as C
    from ansible.playbook.handler import Handler
    if isinstance(task, Handler) or not task.when:
        return False
    if task.loop_with or task.loop is not None or task.delegate_to or task.run_once:
        return False
    action = task.action
    return action not in C._ACTION_ALL_INCLUDE_IMPORT_TASKS and action not in C._ACTION_ALL_PROPER_INCLUDE_IMPORT_ROLES \
        and action not in C._ACTION_META


def skip_result(host, task, task_vars, play_context, loader):
    """The worker's result for *task* on *host* when its conditional is cleanly false, else None.

    Nothing of *task_vars*, *task* or *play_context* is modified (the worker gets them as they are
    when None is returned)."""
    if not enabled() or not eligible(task):
        return None
    from ansible._internal import _display_utils, _task
    from ansible._internal._templating._engine import TemplateEngine

    variables = dict(task_vars)
    search_path = list(task.get_search_path())
    if loader.get_basedir() not in search_path:
        search_path.append(loader.get_basedir())
    variables["ansible_search_path"] = search_path
    templar = TemplateEngine(loader=loader, variables=variables)
    result_context = {}
    try:
        with _task.TaskContext(task), _display_utils.DeferredWarningContext(variables=variables) as warnings:
            context = play_context.set_task_and_variable_override(task=task, variables=variables, templar=templar)
            context.post_validate(templar=templar)
            if not context.remote_addr:
                context.remote_addr = host.address
            tempvars = variables.copy()
            context.update_vars(tempvars)
            if task._resolve_conditional(task.when, tempvars, result_context=result_context):
                return None
            result = dict(changed=False, skipped=True, skip_reason="Conditional result was False") | result_context
            task.update_result_no_log(templar, result)
    except Exception:  # noqa: BLE001 - any error: the worker evaluates it again and reports it as stock Ansible
        return None
    if warnings.get_warnings() or warnings.get_deprecation_warnings():
        return None
    _SKIPPED_COUNT["n"] += 1
    return result


def skipped_count():
    """How many host-tasks this process skipped without a worker."""
    return _SKIPPED_COUNT["n"]
