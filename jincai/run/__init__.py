"""Every playbook jincai runs (site, bootstrap, compliance, verify) goes through this package.

It owns the one way jincai starts Ansible: ansible-runner's Python API over this checkout's
ansible.cfg (jincai.run.env), the outcome read from Ansible's structured events rather than its text
(jincai.run.runner: recap from ``playbook_on_stats``, results from ``runner_on_*``), Ansible's usual
output streamed live to the operator, and an ansible-playbook that dies with the jincai process that
started it (jincai.run.child). Every run is also recorded by ARA (plugins/callback/jincai_ara.py).

May import: :mod:`jincai` only (ROOT, the checkout's ansible.cfg); everything that runs a playbook
imports it.
"""

from jincai.run.runner import Failure, PlaybookRun, RunResult, recap_from_stats, run

__all__ = ["Failure", "PlaybookRun", "RunResult", "recap_from_stats", "run"]
