"""Where jincai keeps control-node state that must outlive a checkout.

State that belongs to a network, not to a working copy of this repository (the province CA, the
budget-unit registry, generated database passwords), lives under ``/var/lib/jincai`` (``$JINCAI_STATE_DIR`` moves it), one
directory per network (``network.name`` of the source of truth). Two checkouts driving one network
therefore share one CA; a checkout-local copy would issue certificates the other side rejects.
"""

import os

STATE_ENV = "JINCAI_STATE_DIR"
PKI_ENV = "JINCAI_PKI_DIR"
DEFAULT_STATE_DIR = "/var/lib/jincai"


def state_dir():
    """The control node's state directory: ``$JINCAI_STATE_DIR`` or ``/var/lib/jincai``."""
    return os.environ.get(STATE_ENV) or DEFAULT_STATE_DIR


def _checked(network_name):
    if not network_name or os.sep in network_name or network_name.startswith("."):
        raise ValueError(f"network name {network_name!r} cannot name a state directory")
    return network_name


def secrets_dir(network_name):
    """Generated secrets of network *network_name* (e.g. database passwords): ``<state>/secrets/<name>``."""
    return os.path.join(state_dir(), "secrets", _checked(network_name))


def pki_dir(network_name):
    """The PKI directory of network *network_name*: ``$JINCAI_PKI_DIR`` or ``<state>/pki/<name>``."""
    if os.environ.get(PKI_ENV):
        return os.environ[PKI_ENV]
    return os.path.join(state_dir(), "pki", _checked(network_name))
