"""``python -m jincai.pki ...``: the command line of :mod:`jincai.pki.cli` (what the playbooks run)."""

import sys

from jincai.pki.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m jincai.pki"))
