"""The ``jincai`` console command.

Each sub-command lives in its own module and is imported lazily, so ``jincai validate`` does not pay
for the lab code and vice versa. Every handler returns a process exit code.
"""

import argparse
import os
import sys

from jincai import ROOT

DEFAULT_INVENTORY = os.path.join(ROOT, "inventories", "jilin")
LAB_INVENTORY = os.path.join(ROOT, "inventories", "lab")


def _validate(args):
    from jincai.source import validate

    return validate.run(args.inventory, quiet=args.quiet)


def _site(args):
    from jincai import sitecmd

    if args.site_cmd == "add":
        return sitecmd.add(args.inventory, args.code, write=args.write, allow_port_moves=args.allow_port_moves)
    return sitecmd.show(args.inventory, args.code, draw=args.draw)


def _lab(args):
    from jincai.lab import cli as labcli

    return labcli.run(args)


def _inventory(args):
    from jincai.source import inventory

    return inventory.main(args.inventory)


# Sub-commands whose module owns its own argument parser: ``jincai NAME ARGS...`` calls
# ``jincai.<module>.main(ARGS)``.
DELEGATED = {
    "compliance": ("jincai.compliance", "nightly drift and MLPS compliance report (changes nothing)"),
    "converge": ("jincai.converge", "site.yml only on the hosts whose intent changed or that drifted (one read for the others)"),
    "verify": ("jincai.verify", "check the live state of the sites with testinfra (changes nothing)"),
    "bootstrap": ("jincai.bootstrap.engine", "bring a new county site onto the WAN in one command"),
    "pki": ("jincai.pki.cli", "the province CA: budget-unit certificates, revocation, CRL"),
    "topology": ("jincai.topology.cli", "an SVG map of the WAN from the source of truth (--live: lab link state)"),
    "release": ("jincai.release", "application releases: plan a rollout, show which release each site runs"),
    "history": ("jincai.audit.history", "what changed on a site, when, and who ran it (ARA audit trail)"),
}


def build_parser():
    """Return the argument parser for every sub-command."""
    p = argparse.ArgumentParser(prog="jincai", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    v = sub.add_parser("validate", help="check a source of truth before any host is contacted")
    v.add_argument("inventory", nargs="?", default=DEFAULT_INVENTORY)
    v.add_argument("-q", "--quiet", action="store_true", help="print nothing when valid")
    v.set_defaults(func=_validate)

    s = sub.add_parser("site", help="add a site or show its plan")
    ssub = s.add_subparsers(dest="site_cmd", required=True)
    sa = ssub.add_parser("add", help="allocate and add a city or county by its GB/T 2260 code")
    sa.add_argument("code")
    sa.add_argument("--write", action="store_true", help="write the change (default: show it only)")
    sa.add_argument("--allow-port-moves", action="store_true",
                    help="write even though ports of working routers move (re-cabling planned)")
    sa.add_argument("-i", "--inventory", default=DEFAULT_INVENTORY)
    ss = ssub.add_parser("show", help="print a site's plan: addresses, links, hosts, apps")
    ss.add_argument("code")
    ss.add_argument("-i", "--inventory", default=DEFAULT_INVENTORY)
    ss.add_argument("--draw", metavar="FILE.svg", help="also draw the site and its neighbours (parent, children, "
                    "parties) into this SVG")
    s.set_defaults(func=_site)

    lab = sub.add_parser("lab", help="the lab WAN on this machine (systemd-nspawn + netns)")
    lsub = lab.add_subparsers(dest="lab_cmd", required=True)
    # -i defaults to the inventory the running lab was brought up from (the small lab when down).
    for name, hlp in (("up", "build the image if needed and boot the lab (idempotent)"),
                      ("down", "remove every container, namespace, link and mount of the lab"),
                      ("status", "show hosts, PIDs and SSH readiness (a summary per tier when large)")):
        lp = lsub.add_parser(name, help=hlp)
        lp.add_argument("-i", "--inventory", default=None)
        if name == "up":
            lp.add_argument("--twin", metavar="PRODUCTION", default=None,
                            help="boot the province twin of a production inventory (e.g. inventories/jilin): "
                                 "writes build/twin/<name> and boots it")
        if name == "status":
            lp.add_argument("-a", "--all", action="store_true", help="one line per host even when large")
    lt = lsub.add_parser("twin", help="write the twin inventory of a production source (no host touched)")
    lt.add_argument("production", nargs="?", default=DEFAULT_INVENTORY)
    lt.add_argument("-o", "--output", default=None, help="directory (default build/twin/<name>)")
    lssh = lsub.add_parser("ssh", help="open a shell on a lab host")
    lssh.add_argument("host")
    lssh.add_argument("command", nargs=argparse.REMAINDER)
    lssh.add_argument("-i", "--inventory", default=None)
    llink = lsub.add_parser("link", help="failure injection: cut or restore a WAN link between two sites")
    llink.add_argument("action", choices=("down", "up"))
    llink.add_argument("a", help="site code or router name")
    llink.add_argument("b", help="site code or router name")
    llink.add_argument("--backup", action="store_true", help="the backup link (default: the primary)")
    llink.add_argument("--inband", action="store_true",
                       help="as with in-band management: hosts the cut isolates lose management too")
    llink.add_argument("-i", "--inventory", default=None)
    lhost = lsub.add_parser("host", help="failure injection: power a lab host off or boot it again")
    lhost.add_argument("action", choices=("stop", "start"))
    lhost.add_argument("host")
    lhost.add_argument("-i", "--inventory", default=None)
    lab.set_defaults(func=_lab)

    for name, (_module, hlp) in DELEGATED.items():
        sub.add_parser(name, help=hlp, add_help=False)

    inv = sub.add_parser("inventory", help="print the Ansible inventory JSON derived from a source")
    inv.add_argument("inventory", nargs="?", default=DEFAULT_INVENTORY)
    inv.set_defaults(func=_inventory)
    return p


def main(argv=None):
    """Entry point of the console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in DELEGATED:
        import importlib

        # `jincai bootstrap CODE --day0` writes the in-band day-0 kit (its own module, contacts nothing).
        name = "jincai.bootstrap.day0" if argv[0] == "bootstrap" and "--day0" in argv else DELEGATED[argv[0]][0]
        module = importlib.import_module(name)
        try:
            return module.main(argv[1:])
        except KeyboardInterrupt:
            print("jincai: interrupted", file=sys.stderr)
            return 130
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("jincai: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
