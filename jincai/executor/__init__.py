"""Control-node speed-ups for ansible-playbook runs: what the strategy plugin prepares before forking."""
