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

Base = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, Base):
    """The linear strategy with Mitogen's connection and module-execution layer."""
