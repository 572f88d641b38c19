"""jincai: provisioning toolkit for the Jilin Golden Finance Project (金财工程) WAN."""

import os

__version__ = "0.1.0"

#: Repository root (where ansible.cfg, inventories/ and playbooks/ live).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
