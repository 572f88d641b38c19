"""Control-node speed-ups for ansible-playbook runs: what the strategy plugin prepares before forking.

May import: nothing of jincai (ansible-core and Jinja only); imported by plugins/strategy.
"""
