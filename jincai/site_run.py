"""``make site`` / ``make province``: bring a lab WAN up, provision it end to end, verify, summarise.

Steps: ``jincai lab up`` (builds the image on first use), ``playbooks/site.yml`` against the lab
inventory, then ``jincai verify`` for the whole lab (docs/verify.md: the testinfra checks of every
router, machine-room host and VPN client, changing nothing; its report in ``reports/verify/site-<time>/``).
The summary adds verify's line per site; the exit code is 0 only when provisioning and verify both
passed. Re-running is safe: the lab is left as it is when already up and the playbooks are idempotent.

``--twin inventories/jilin`` does the same for the province twin (``jincai lab up --twin``): its
inventory is ``build/twin/<name>``, provisioned wave by wave; its verification is ``jincai verify`` of the
whole twin, then tests/province/test_wan.py (OSPF, county
reachability, every declared party and budget-unit flow, over every site).
"""

import json
import os
import re
import subprocess
import sys
import time

from jincai import ROOT
from jincai.run import run as run_playbook

LAB_INVENTORY = os.path.join(ROOT, "inventories", "lab")
VERIFY_REPORTS = os.path.join(ROOT, "reports", "verify")


def _step(title):
    print(f"\n==== jincai site: {title} ====", flush=True)


def _bin(name):
    return os.path.join(os.path.dirname(sys.executable), name)


def _pytest_counts(output):
    """Return (passed, failed) from pytest's closing line."""
    counts = {}
    for n, word in re.findall(r"(\d+) (passed|failed|errors?)", output):
        counts[word.rstrip("s")] = counts.get(word.rstrip("s"), 0) + int(n)
    return counts.get("passed", 0), counts.get("failed", 0) + counts.get("error", 0)


def _run_echoed(argv):
    """Run *argv* in the repository, echoing its output as it comes (progress for the operator);
    return ``(returncode, output)``."""
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    chunks = []
    # chunks, not lines: pytest's progress dots appear as each test ends
    for chunk in iter(lambda: os.read(proc.stdout.fileno(), 4096), b""):
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
        chunks.append(chunk)
    return proc.wait(), b"".join(chunks).decode("utf-8", "replace")


def verify_argv(inventory, out_dir):
    """``jincai verify`` of the whole network of ``inventory`` (no limit), its report into ``out_dir``."""
    return [_bin("jincai"), "verify", "-i", inventory, "-o", out_dir]


def run_verify(inventory, out_dir=None):
    """Run :func:`verify_argv` with its progress echoed; return ``(exit code, summary, out_dir)``, summary
    being the run's summary.json (totals, one entry per site) or None when no check ran."""
    out_dir = out_dir or os.path.join(VERIFY_REPORTS, time.strftime("site-%Y%m%dT%H%M%SZ", time.gmtime()))
    rc, _out = _run_echoed(verify_argv(inventory, out_dir))
    try:
        with open(os.path.join(out_dir, "summary.json"), encoding="utf-8") as fh:
            return rc, json.load(fh), out_dir
    except (FileNotFoundError, ValueError):
        return rc, None, out_dir


def verify_lines(rc, summary, out_dir):
    """The summary's lines for verify: totals, then one line per site (jincai.verify.report.site_lines)."""
    from jincai.verify import report

    if summary is None:
        return [f"verify:       the run failed (jincai verify exit {rc}, no check result); see its messages above"]
    failed = summary["failed"] + summary["error"]
    lines = [f"verify:       {summary['checks']} checks on {summary['hosts']} hosts in {summary['sites_total']} "
             f"sites, {summary['passed']} passed, {failed} failed, {summary['skipped']} skipped ({out_dir})"]
    return lines + [f"  {line}" for line in report.site_lines(summary)]


def provision_in_waves(inventory, check=False, diff=False, echo=True):
    """site.yml on the twin, one wave (province, then each city with its counties) at a time
    (:func:`jincai.lab.twin.waves` says why); returns one RunResult with every wave's recap, changed
    tasks and output."""
    from jincai.lab import twin
    from jincai.run import RunResult
    from jincai.source import inventory as invmod

    total = RunResult(rc=0)
    waves = twin.waves(invmod.build(inventory))
    for n, (label, hosts) in enumerate(waves, 1):
        _step(f"provision wave {n}/{len(waves)}: {label} ({len(hosts)} hosts, playbooks/site.yml)")
        t0 = time.monotonic()
        res = run_playbook("playbooks/site.yml", inventory=inventory, args=["--limit", ",".join(hosts)],
                           check=check, diff=diff, echo=echo)
        print(f"==== wave {n}/{len(waves)}: rc {res.rc}, changed {res.total('changed')}, "
              f"{time.monotonic() - t0:.0f} s", flush=True)
        total.recap.update(res.recap)
        total.changed += res.changed
        total.output += res.output
        total.rc = total.rc or res.rc
    return total


def main(argv=None):
    """Run the main job; exit 0 only when provisioning and verification both succeeded."""
    argv = sys.argv[1:] if argv is None else argv
    production = argv[argv.index("--twin") + 1] if "--twin" in argv else None
    t0 = time.monotonic()
    _step("lab up" + (f" (province twin of {production})" if production else ""))
    up = [_bin("jincai"), "lab", "up"] + (["--twin", production] if production else ["-i", LAB_INVENTORY])
    rc = subprocess.call(up, cwd=ROOT)
    if rc:
        print("jincai site: the lab did not come up; see the messages above", file=sys.stderr)
        return rc
    if production:
        from jincai.lab import twin

        inventory = twin.default_out_dir(production)
        res = provision_in_waves(inventory)
        _step("verify (jincai verify, the whole twin)")
        checks_rc, summary, out_dir = run_verify(inventory)
        verified = verify_lines(checks_rc, summary, out_dir)
        # The twin's flow proofs (every declared party and budget-unit flow, traffic from namespaces) are
        # actions, not host state: they stay in tests/province/test_wan.py.
        _step("flows (tests/province/test_wan.py)")
        flows_rc, flows_out = _run_echoed([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE",
                                           "tests/province/test_wan.py"])
        passed, failed = _pytest_counts(flows_out.splitlines()[-1] if flows_out else "")
        verified.append(f"flows:        {passed} passed, {failed} failed (tests/province/test_wan.py)")
        verify_rc = checks_rc or flows_rc
    else:
        inventory = LAB_INVENTORY
        _step("provision (playbooks/site.yml)")
        res = run_playbook("playbooks/site.yml", inventory=inventory, echo=True)
        _step("verify (jincai verify, the whole lab)")
        verify_rc, summary, out_dir = run_verify(inventory)
        verified = verify_lines(verify_rc, summary, out_dir)
    elapsed = time.monotonic() - t0
    print("\n==== jincai site: summary ====")
    print(f"hosts:        {len(res.recap)}")
    print(f"changed:      {res.total('changed')} (on {len(res.hosts_with('changed'))} hosts)")
    print(f"failed:       {res.total('failed')} {' '.join(res.hosts_with('failed'))}")
    print(f"unreachable:  {res.total('unreachable')} {' '.join(res.hosts_with('unreachable'))}")
    for line in verified:
        print(line)
    print(f"elapsed:      {elapsed:.0f} s")
    ok = res.rc == 0 and verify_rc == 0
    print("result:       " + ("OK" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
