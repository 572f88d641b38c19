"""Pre-flight validation of a source of truth (placeholder, being filled in)."""
import sys
from jincai import model


def check(src):
    """Return the list of findings for a loaded source."""
    return list(src.load_errors)


def findings(inventory_dir):
    """Load and check a source; return the findings."""
    return check(model.load(inventory_dir))


def run(inventory_dir, quiet=False):
    """Print findings; 0 when valid."""
    fs = findings(inventory_dir)
    for f in fs:
        print(f, file=sys.stderr)
    return 1 if any(f.severity == "error" for f in fs) else 0
