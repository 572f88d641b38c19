"""Print a router's running config (read-only): ``python -m jincai.compliance.router_config``.

Run by playbooks/compliance.yml on the control node for each router (netmiko, through the same
platform table as the jincai_netconfig module in module_utils/). Only the platform's "show running"
command is sent; nothing enters config mode.
"""

import argparse
import json
import sys

from jincai import netconfig


def load_netconfig():
    """The router push engine the role uses (module_utils/jincai_netconfig.py, imported as
    :mod:`jincai.netconfig`), for the control node's read-only callers."""
    return netconfig


def fetch(platform, host, user, key_file=None, port=22, timeout=20):
    """Return the running config text of one router."""
    nc = load_netconfig()
    plat = nc.get_platform(platform)
    conn = nc.connect(plat, host, user, port=port, key_file=key_file, timeout=timeout)
    try:
        return nc.Device(conn, plat).running()
    finally:
        conn.disconnect()


def main(argv=None):
    """Command line: print the running config; exit 1 with a message when the router cannot be read."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--platform", required=True)
    p.add_argument("--host", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--key-file")
    p.add_argument("--port", type=int, default=22)
    p.add_argument("--timeout", type=int, default=20)
    p.add_argument("--context", help="JSON context: print {host, kind, context, config} as JSON instead")
    a = p.parse_args(argv)
    try:
        config = fetch(a.platform, a.host, a.user, a.key_file, a.port, a.timeout)
        if a.context:
            ctx = json.loads(a.context)
            print(json.dumps({"host": ctx.get("host") or a.host, "kind": "router", "context": ctx,
                              "config": config}))
        else:
            sys.stdout.write(config)
    except Exception as exc:  # noqa: BLE001 - netmiko raises many types; all mean "not read"
        print(f"{a.host}: cannot read the running config: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
