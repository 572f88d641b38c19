"""``jincai pki ...``: the command line of the province CA (see :mod:`jincai.pki`)."""

import sys

from jincai.pki import main

if __name__ == "__main__":
    sys.exit(main())
