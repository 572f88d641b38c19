"""Address checks used by the lock-out pre-flights (ansible.builtin has no ipaddr filter)."""

import ipaddress


def address_in_networks(address, networks):
    """Return True when ``address`` lies inside any CIDR of ``networks``."""
    try:
        addr = ipaddress.ip_address(str(address).strip())
    except ValueError:
        return False
    for net in networks or []:
        try:
            if addr in ipaddress.ip_network(str(net), strict=False):
                return True
        except ValueError:
            continue
    return False


def ssh_client_address(ssh_connection):
    """Return the client address from an SSH_CONNECTION value ('client port server port')."""
    parts = str(ssh_connection or "").split()
    return parts[0] if parts else ""


def bad_networks(networks):
    """Return the entries of ``networks`` that are not valid CIDRs."""
    bad = []
    for net in networks or []:
        try:
            ipaddress.ip_network(str(net), strict=False)
        except ValueError:
            bad.append(net)
    return bad


class FilterModule:
    """Address filters shared by the sshd and firewall roles (and any role that needs them)."""

    def filters(self):
        """Return the filter table."""
        return {
            "address_in_networks": address_in_networks,
            "ssh_client_address": ssh_client_address,
            "bad_networks": bad_networks,
        }
