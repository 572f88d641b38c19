"""Action plugin ``jincai_netconfig``: run the router push of library/jincai_netconfig.py in the Ansible
worker on the control node, not as a module.

The module always runs on the control node (routers have ``ansible_connection=local``: netmiko talks
to the device). Run as a module under the Mitogen strategy, every router's run was a fresh fork of
Mitogen's module-less "fork parent" (the module has module_utils of its own), which imported netmiko
and paramiko again: ~0.22 s of CPU per router, most of a converged routers.yml on the province twin
(docs/speed.md "Routers"). Here the flow (:func:`run` of the module file, unchanged) runs in the worker
Ansible forked for the task; jincai.executor.prefork imports this plugin, and so netmiko, once in the
ansible-playbook parent before the first such worker is forked, so every worker inherits them.

The options are the module's (its ``ARGUMENT_SPEC``, validated the way AnsibleModule validates them,
with ``no_log`` options never echoed); check mode and ``--diff`` as the module. The host the task
names is reached by the module's own netmiko session: the task's connection is not used.
"""

import importlib.util
import os
import sys

import netmiko  # noqa: F401  (imported here so that the parent's preload shares it with the workers)
from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load(name, path):
    """The Python file ``path`` imported as module ``name`` (once)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


def _load_module():
    """library/jincai_netconfig.py as a Python module, with its ``ansible.module_utils.jincai_netconfig``
    import: module_utils/jincai_netconfig.py (what Ansible would ship with the module)."""
    _load("ansible.module_utils.jincai_netconfig", os.path.join(ROOT, "module_utils", "jincai_netconfig.py"))
    return _load("jincai_netconfig_module", os.path.join(ROOT, "library", "jincai_netconfig.py"))


MODULE = _load_module()


class _Exit(Exception):
    """The module called fail_json: ``args[0]`` is the result."""


class _Module:
    """What the module's run() uses of an AnsibleModule."""

    def __init__(self, params, check_mode, diff):
        self.params, self.check_mode, self._diff = params, check_mode, diff

    def fail_json(self, **kw):
        """Stop with a failed result."""
        raise _Exit(dict(kw, failed=True))


class ActionModule(ActionBase):
    """Validate the options, run the push in this worker, return the module's result."""

    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        """The task: one netmiko session (two when a change is confirmed) from this process."""
        super().run(tmp, task_vars)
        validated = ArgumentSpecValidator(MODULE.ARGUMENT_SPEC).validate(dict(self._task.args))
        if validated.error_messages:
            raise AnsibleActionFail("jincai_netconfig: " + "; ".join(validated.error_messages))
        module = _Module(validated.validated_parameters, bool(self._task.check_mode or self._play_context.check_mode),
                         bool(self._task.diff if self._task.diff is not None else self._play_context.diff))
        try:
            result = MODULE.run(module)
        except _Exit as done:
            result = done.args[0]
        return result
