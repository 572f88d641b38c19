"""The audit trail: every playbook run from this checkout, recorded by ARA (ara on PyPI).

Where the records go: one sqlite store per network, ``<state>/ara/<network>/ansible.sqlite`` (state
is ``/var/lib/jincai``, moved by ``$JINCAI_STATE_DIR``; ``$JINCAI_ARA_DIR`` names the store directory
itself), written by ARA's API (offline: Django in process); with ``ARA_API_CLIENT=http`` and
``ARA_API_SERVER=URL`` (environment or ansible.cfg ``[ara]``) the runs go to an ARA server instead.
During a run the callback appends ARA's records to the run's journal (``<store>/journal``,
jincai.audit.journal), imported into the store or the server after the run. What labels a run: the
network, the application release the inventory deploys (``apps_release``, releases/<id>.yml; an
``-e apps_release=`` of the run wins), the checkout's git commit, and ``site:CODE`` for each site
whose hosts it targeted. Recorded by plugins/callback/jincai_ara.py; read by ``jincai history`` (jincai.audit.history).
"""

import json
import os
import subprocess

import yaml

from jincai import ROOT, paths

STORE_ENV = "JINCAI_ARA_DIR"
COMMIT_ENV = "JINCAI_COMMIT"
DB_FILE = "ansible.sqlite"


def network_of(inventory):
    """The network an inventory drives: ``network.name`` of its source of truth, else the inventory
    directory's name (``adhoc`` for an inline host list such as ``localhost,``)."""
    if not inventory or "," in inventory and not os.path.exists(inventory):
        return "adhoc"
    path = os.path.abspath(inventory)
    directory = path if os.path.isdir(path) else os.path.dirname(path)
    try:
        with open(os.path.join(directory, "source", "network.yml"), encoding="utf-8") as fh:
            name = ((yaml.safe_load(fh) or {}).get("network") or {}).get("name")
    except (OSError, yaml.YAMLError, AttributeError):
        name = None
    return str(name or os.path.basename(directory) or "adhoc")


def store_dir(network):
    """The directory of network ``network``'s ARA store (``$JINCAI_ARA_DIR`` or ``<state>/ara/<network>``)."""
    if os.environ.get(STORE_ENV):
        return os.environ[STORE_ENV]
    if not network or os.sep in network or network.startswith("."):
        raise ValueError(f"network name {network!r} cannot name an ARA store directory")
    return os.path.join(paths.state_dir(), "ara", network)


def inventory_release(inventory):
    """The application release an inventory deploys (``apps_release`` of its group ``all``), or None."""
    from jincai import release

    if not inventory or not os.path.isdir(inventory):
        return None
    try:
        return release.inventory_vars(inventory).get("apps_release")
    except Exception:  # noqa: BLE001 - a label must never stop a run
        return None


def commit():
    """The code being run: ``$JINCAI_COMMIT``, else the checkout's
    commit (``git describe --always --dirty``), else ``unknown``."""
    if os.environ.get(COMMIT_ENV):
        return os.environ[COMMIT_ENV]
    try:
        out = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty", "--abbrev=12"],
                             capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


#: sqlite tuning for the offline client, which writes every result as it comes: write-ahead log and
#: no fsync per transaction (a power cut may lose the last results, never corrupt the store); a
#: writer waits up to 60 s for another (a journal's import is one transaction of a few seconds,
#: jincai.audit.journal; sqlite's default is 5 s).
SQLITE_OPTIONS = {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", "timeout": 60}


def offline_env(network):
    """Environment for ARA's offline client to use network ``network``'s sqlite store (ARA reads its
    settings.yaml and database from ``ARA_BASE_DIR``)."""
    return {"ARA_BASE_DIR": store_dir(network), "ARA_DATABASE_NAME": os.path.join(store_dir(network), DB_FILE),
            "ARA_DATABASE_OPTIONS": "@json " + json.dumps(SQLITE_OPTIONS)}
