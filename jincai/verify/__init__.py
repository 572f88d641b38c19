"""``jincai verify``: check the live state of the sites with testinfra, changing nothing.

The suite lives in ``jincai/verify/tests/`` (shipped with the package), organised by function: shared
host state (test_baseline.py: services, listeners, addresses, routes, forwarding, time, logs,
integrity, backups), routers (test_router.py; vendor CLIs over netmiko: test_vendor_router.py), the VPN (test_vpn.py), the applications
(test_apps.py) and the province services (test_services.py). What each host must look like is
planned from the inventory (jincai/verify/plan.py; the services and listeners through
jincai/policy/intended.py, shared with ``jincai compliance``); the tests hold no address or port.

This command resolves the scope before any host is contacted, runs the suite with pytest (in
parallel with pytest-xdist, a host's checks on one worker and one SSH master), streams pytest's
progress, writes ``junit.xml`` and ``summary.json`` into ``reports/verify/<run id>/`` and prints one
line per site. Every command it runs on a host is a query, so it needs no change flag on production.
Exit 0 every check passed, 1 some check failed (an unreachable host fails its checks), 2 the run
failed (bad inventory or limit, pytest could not run). docs/verify.md has the plain pytest command.

May import: :mod:`jincai`, :mod:`jincai.source`, :mod:`jincai.policy`, :mod:`jincai.release`,
:mod:`jincai.run`, :mod:`jincai.compliance` (the control catalogue), :mod:`jincai.netconfig` (the
router platform table and netmiko session, for vendor routers: ``vendor.py``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import time

from jincai import ROOT

TESTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tests")
REPORTS = os.path.join(ROOT, "reports", "verify")
LAB_INVENTORY = os.path.join(ROOT, "inventories", "lab")
DEFAULT_JOBS = 8


def build_parser():
    """The command line of ``jincai verify``."""
    p = argparse.ArgumentParser(prog="jincai verify", description=__doc__.splitlines()[0])
    p.add_argument("-i", "--inventory", default=os.environ.get("JINCAI_INVENTORY", LAB_INVENTORY),
                   help="inventory directory (default: inventories/lab or $JINCAI_INVENTORY)")
    p.add_argument("-l", "--limit", help="tier (province|city|county), site code, group or host; comma-separated")
    p.add_argument("-j", "--jobs", type=int, default=DEFAULT_JOBS,
                   help=f"parallel pytest-xdist workers, at most one per host (default {DEFAULT_JOBS}; 1: none)")
    p.add_argument("--connection", choices=("ssh", "ansible"), default="ssh",
                   help="testinfra backend for servers: native ssh from the inventory (default) or ansible")
    p.add_argument("-k", dest="keyword", help="only the checks matching this pytest -k expression")
    p.add_argument("--known-hosts", metavar="FILE",
                   help="check the hosts' SSH keys against FILE instead of the inventory's UserKnownHostsFile "
                        "(native ssh backend; jincai bootstrap passes the keys it recorded)")
    p.add_argument("--reports-dir", default=REPORTS, help="base directory of the runs (default: reports/verify)")
    p.add_argument("-o", "--output", help="this run's directory (default: <reports-dir>/<run id>)")
    p.add_argument("--list", action="store_true", help="print the checks of every host in scope; contacts nothing")
    p.add_argument("-q", "--quiet", action="store_true", help="no pytest progress, only the summary")
    return p


def pytest_argv(inventory, limit, junit, jobs, hosts, connection="ssh", keyword=None, quiet=False):
    """The pytest command line of a run (also what docs/verify.md shows)."""
    argv = [sys.executable, "-m", "pytest", TESTS_DIR, "--rootdir", ROOT, "-p", "no:randomly",
            "-p", "no:cacheprovider", f"--ansible-inventory={inventory}", f"--junitxml={junit}",
            "-o", "junit_suite_name=jincai-verify", "--tb=no", "-rN", "-q" if not quiet else "-qq"]
    if limit:
        argv.append(f"--hosts={limit}")
    if connection != "ssh":
        argv.append(f"--connection={connection}")
    workers = max(1, min(jobs, hosts))
    argv += ["-n", str(workers), "--dist", "loadgroup"] if workers > 1 else ["-n", "0"]
    if keyword:
        argv += ["-k", keyword]
    return argv


def list_checks(net, scope, out=None):
    """Print every planned check per host (nothing is contacted)."""
    from jincai.verify import plan

    out = out or sys.stdout
    total = 0
    for host in scope:
        checks = plan.checks_for(net, host)
        total += len(checks)
        print(f"{host} ({net.site_of(host)}): {len(checks)} checks", file=out)
        for c in checks:
            note = f"  [skipped: {c.skip}]" if c.skip else ""
            print(f"  {c.area:<8} {c.id:<36} {c.expected}{note}", file=out)
    print(f"jincai verify: {total} checks on {len(scope)} hosts (nothing was contacted)", file=out)


def main(argv=None):
    """Entry point (``jincai verify ARGS``); returns 0 passed, 1 some check failed, 2 the run failed."""
    from jincai.compliance import model as cmodel
    from jincai.release import ReleaseError
    from jincai.run.env import vault_env
    from jincai.source import model
    from jincai.source import inventory as invmod
    from jincai.verify import plan, report, support

    args = build_parser().parse_args(argv)
    inventory = os.path.abspath(args.inventory)
    t0 = time.monotonic()
    started = dt.datetime.now(dt.timezone.utc)
    run_id = started.strftime("%Y%m%dT%H%M%SZ")
    try:
        net = plan.Network(inventory)
        scope = plan.resolve_scope(net, args.limit)
    except invmod.InvalidSource as exc:
        print(f"jincai verify: invalid source, nothing was contacted:\n{exc}", file=sys.stderr)
        return 2
    except (plan.ScopeError, cmodel.ControlsError, ReleaseError, model.SourceError) as exc:
        print(f"jincai verify: {exc} (nothing was contacted)", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"jincai verify: {args.inventory}: {exc} (nothing was contacted)", file=sys.stderr)
        return 2
    if not scope:
        print(f"jincai verify: --limit {args.limit}: no router, machine-room host or VPN client in it "
              "(nothing to verify)", file=sys.stderr)
        return 2
    if args.list:
        list_checks(net, scope)
        return 0

    out_dir = os.path.abspath(args.output or os.path.join(args.reports_dir, run_id))
    os.makedirs(out_dir, exist_ok=True)
    junit = os.path.join(out_dir, "junit.xml")
    cmd = pytest_argv(inventory, args.limit, junit, args.jobs, len(scope), args.connection, args.keyword, args.quiet)
    env = dict(os.environ, JINCAI_INVENTORY=inventory, **vault_env(inventory))
    if args.known_hosts:
        env[support.KNOWN_HOSTS_ENV] = os.path.abspath(args.known_hosts)
    print(f"jincai verify: {len(scope)} hosts of {os.path.basename(inventory)}"
          f"{' (--limit ' + args.limit + ')' if args.limit else ''}; report {out_dir}", flush=True)
    try:
        rc = subprocess.run(cmd, cwd=ROOT, env=env, check=False,
                            stdout=subprocess.DEVNULL if args.quiet else None).returncode
    except KeyboardInterrupt:
        print("jincai verify: interrupted", file=sys.stderr)
        return 130
    summary = None
    if os.path.exists(junit):
        results = report.parse_junit(junit)
        if args.keyword:  # -k leaves checks out on purpose: they are not missing
            scope = sorted({r["host"] for r in results})
        summary = report.summarise(results, net.hostvars, scope)
    code = report.exit_code(summary, rc)
    seconds = round(time.monotonic() - t0, 1)
    if summary is None:
        print(f"jincai verify: the run failed (pytest exit {rc}, no results) ({seconds} s)", file=sys.stderr)
        return code
    report.write_summary(summary, os.path.join(out_dir, "summary.json"),
                         {"run_id": run_id, "started": started.isoformat(timespec="seconds"),
                          "inventory": inventory, "limit": args.limit, "seconds": seconds, "pytest_rc": rc,
                          "exit_code": code, "junit": junit})
    if not args.quiet:
        for line in report.failure_lines(summary):
            print(line)
    for line in report.site_lines(summary):
        print(line)
    status = {0: "passed", 1: "failed", 2: "error"}[code]
    rate = summary["checks"] / seconds if seconds else 0
    print(f"jincai verify: {status}: {summary['checks']} checks on {summary['hosts']} hosts in "
          f"{summary['sites_total']} sites, {summary['passed']} passed, {summary['failed'] + summary['error']} failed, "
          f"{summary['skipped']} skipped ({seconds} s, {rate:.0f} checks/s); {junit}")
    return code


if __name__ == "__main__":
    sys.exit(main())
