"""jincai: provisioning toolkit for the Jilin Golden Finance Project (金财工程) WAN.

The package is used from a checkout of this repository (``make venv``'s editable install, or AWX's
``PYTHONPATH=/runner/project``): :data:`ROOT` is that checkout, where ansible.cfg, inventories/,
playbooks/ and roles/ live, and the one place a module finds them. The package's own data
(jincai/data/: the TLS policy, the control catalogue, the division table) is found from the package,
:data:`DATA_DIR`, never through the checkout. The layout of the subpackages and which may import
which: docs/architecture.md, "Packages and import direction" (enforced by
tests/unit/test_architecture.py).

May import: nothing of jincai (every module imports this one).
"""

import os

__version__ = "0.1.0"

#: The package directory (jincai/).
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
#: Repository root (where ansible.cfg, inventories/ and playbooks/ live).
ROOT = os.path.dirname(PACKAGE_DIR)
#: The package's data files (jincai/data/).
DATA_DIR = os.path.join(PACKAGE_DIR, "data")
