"""A small province certificate authority (the control node's CA) and certificates it issues.

The command line: ``jincai pki ...`` (jincai.cli delegates here) or ``python -m jincai.pki ...``
(what playbooks/vpn.yml and the apps and vpn_client roles run on the control node)::

    ca | issue NAME --san X [--client] | issue-many SPEC.json   (JSON output; --dir, --check)
    init | sync | add CODE NAME | add --csv F | import --csv F [--dry-run] | move CODE --to C [--site S]
    enrol CODE --csr F | revoke CODE.. | revoke --csv F | renew [CODE..]
    crl [--if-due] [--days N] [--push] | bundle CODE | list         (-i INVENTORY, -c CONCENTRATOR)

``-i`` defaults to ``$JINCAI_INVENTORY``, else the lab (:func:`jincai.pki.store.default_inventory`).
"""

import argparse
import datetime
import json
import os
import subprocess
import sys

from jincai.pki import PkiError, batch, ca, csvimport, registry, store, vpn
from jincai.source.model import VPN_KINDS


def push_crl(inventory_dir, runner=None):
    """Deploy the published CRL: ``playbooks/vpn.yml --tags vpn_crl`` (every concentrator loads it,
    flushes the cached one and drops revoked units' SAs; the province services host publishes it over
    HTTP). Returns the playbook's exit code. What the CRL timer (roles/vpn_crl_timer) runs."""
    if runner is None:
        from jincai.run import run as runner
    res = runner("playbooks/vpn.yml", inventory=inventory_dir, args=("--tags", "vpn_crl"), echo=True)
    return res.rc


def build_parser(prog="jincai pki"):
    """Return the ``jincai pki`` argument parser (also ``python -m jincai.pki``)."""
    p = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    p.add_argument("--dir", default=None, help="PKI directory (default: $JINCAI_PKI_DIR or /var/lib/jincai/pki/<network.name>)")
    p.add_argument("--check", action="store_true", help="ca/issue: report what would change, write nothing")
    p.add_argument("-i", "--inventory", default=store.default_inventory(),
                   help="source of truth for the VPN plan (default: $JINCAI_INVENTORY, else inventories/lab)")
    p.add_argument("-c", "--concentrator", default=None,
                   help="add/revoke/renew/list/bundle/crl: the concentrator (host name or site code) whose "
                        "registry to use (default: the province's; add without it places a unit the source "
                        "names at the source's concentrator, an active unit where it is); sync, import and "
                        "move cover every concentrator, revoke without it finds each unit's")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("ca", help="create the CA unless it exists")
    one = sub.add_parser("issue", help="issue or keep one leaf certificate (e.g. nginx TLS)")
    one.add_argument("name")
    one.add_argument("--san", action="append", default=[])
    one.add_argument("--client", action="store_true", help="client certificate (default: server)")
    many = sub.add_parser("issue-many", help='issue from a JSON list of {"name", "sans", "client"}')
    many.add_argument("spec", help="JSON file, or - for stdin")
    for name in ("init", "sync"):
        sp = sub.add_parser(name, help="create the CA and the concentrator certificate, onboard the plan's "
                            "units, renew expiring certificates, refresh the CRL, write missing bundles")
        sp.add_argument("--json", action="store_true", help="print a JSON summary with `changed`")
    a = sub.add_parser("add", help="onboard one unit (CODE NAME) or a batch (--csv FILE: code,name)")
    a.add_argument("code", nargs="?")
    a.add_argument("name", nargs="?")
    a.add_argument("--csv")
    im = sub.add_parser("import", help="a batch across every concentrator (--csv FILE: code,name[,concentrator"
                        "[,site[,kind]]]): add new units (kind township: township finance offices of the county "
                        "in site), move units to their new concentrator, rerun changes nothing")
    im.add_argument("--csv", required=True)
    im.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    mv = sub.add_parser("move", help="move a unit to another concentrator (revoked at the old one, a new "
                        "address from the new pool) or to another own site")
    mv.add_argument("code")
    mv.add_argument("--to", default=None, help="the new concentrator (host name or site code)")
    mv.add_argument("--site", default=None, help="the unit's own site (a county: its city's concentrator)")
    mv.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    en = sub.add_parser("enrol", help="CSR enrolment: certify a key the unit generated itself (the private key "
                        "never leaves the unit); rerun with the same CSR changes nothing")
    en.add_argument("code")
    en.add_argument("--csr", required=True, help="the unit's CSR (PEM or DER; - for stdin)")
    en.add_argument("--name", default=None)
    en.add_argument("--site", default=None, help="the unit's own site (default: the concentrator's)")
    en.add_argument("--kind", default=None, choices=sorted(VPN_KINDS),
                    help="budget_unit (default) or township (a township finance office; --site: its county)")
    r = sub.add_parser("revoke", help="offboard units (CODE... or --csv FILE) and publish the CRL")
    r.add_argument("codes", nargs="*")
    r.add_argument("--csv")
    r.add_argument("--reason", default="cessationOfOperation", choices=sorted(registry.REASONS))
    n = sub.add_parser("renew", help="re-issue unit certificates expiring soon, or the named ones")
    n.add_argument("codes", nargs="*")
    n.add_argument("--within-days", type=int, default=ca.RENEW_BEFORE.days)
    n.add_argument("--rekey", action="store_true", help="generate a new key pair too")
    cr = sub.add_parser("crl", help="publish a fresh CRL now (--if-due: only when the revoked set changed or half "
                        "its validity has passed; --push: then deploy it to every concentrator and the services host)")
    cr.add_argument("--if-due", action="store_true", help="publish only when due (what sync does; the timer's mode)")
    cr.add_argument("--days", type=float, default=registry.CRL_DAYS, help=f"validity in days (default {registry.CRL_DAYS}; "
                    "a short one tests the refresh)")
    cr.add_argument("--push", action="store_true", help="run playbooks/vpn.yml --tags vpn_crl afterwards "
                    "(exit code: the playbook's)")
    b = sub.add_parser("bundle", help="rewrite a unit's client bundle and print its path")
    b.add_argument("code")
    sub.add_parser("list", help="list onboarded units and township offices: code, address, status, serial, name, kind")
    return p


def _leaf_commands(args):
    if args.cmd == "ca":
        crt, changed = ca.ensure_ca(args.dir, check=args.check)
        return {"changed": changed, "ca": crt}
    if args.cmd == "issue":
        paths, changed = ca.issue(args.name, args.san, args.dir, client=args.client, check=args.check)
        return dict(paths, changed=changed)
    with (sys.stdin if args.spec == "-" else open(args.spec, encoding="utf-8")) as fh:
        spec = json.load(fh)
    result = {"changed": False, "issued": {}}
    for item in spec:
        paths, changed = ca.issue(item["name"], item.get("sans") or [], args.dir,
                               client=bool(item.get("client")), check=args.check)
        result["issued"][item["name"]] = dict(paths, changed=changed)
        result["changed"] = result["changed"] or changed
    return result


def _sync_all(vpn_plans, pki_dir, as_json):
    """``sync`` every concentrator's registry in turn (each saves before the next loads the shared
    certificate database); print one JSON summary or one line per concentrator."""
    total = {"changed": False, "concentrators": {}}
    for vpn_plan in vpn_plans:
        reg = registry.UnitRegistry(vpn_plan, pki_dir)
        s = registry.sync(reg)
        s["changed"] = bool(s["server"] or s["added"] or s["renewed"] or s["crl"] or s["bundles"])
        total["changed"] = total["changed"] or s["changed"]
        total["concentrators"][vpn_plan["concentrator"]["name"]] = s
        if not as_json:
            print(f"{vpn_plan['concentrator']['name']}: {len(reg.units)} units ({len(s['added'])} added, "
                  f"{len(s['renewed'])} renewed); CRL {'published' if s['crl'] else 'unchanged'}; "
                  f"{s['bundles']} new bundles; registry {reg.path()}")
    if as_json:
        print(json.dumps(total, sort_keys=True))
    return 0


def _batch_command(args, rows, pki_dir):
    """``import`` and ``move`` (:mod:`jincai.pki.batch`): every concentrator's registry at once."""
    vpn_plans = vpn.plans(args.inventory)
    default = vpn.plan(args.inventory, args.concentrator) if args.concentrator else None
    with store.locked(pki_dir):
        if args.cmd == "move":
            regs = batch.Registries(vpn_plans, pki_dir)
            _, entry = regs.active(args.code)
            if entry is None:
                raise PkiError(f"move: unit {args.code} is active at no concentrator (fix: `jincai pki import` or "
                               "`add` it; see `jincai pki list -c CONCENTRATOR`)")
            if not (args.to or args.site):
                raise PkiError("move: give --to CONCENTRATOR and/or --site SITE")
            rows = [{"code": args.code, "name": entry["name"], **({"concentrator": args.to} if args.to else {}),
                     **({"site": args.site} if args.site else {}), "kind": registry.UnitRegistry.kind(entry)}]
            where = "move"
        else:
            where = args.csv
        batch.run(vpn_plans, pki_dir, rows, default, where, dry_run=args.dry_run)
    return 0


def _add(args, rows, pki_dir):
    """``add``: onboard units where they belong; one line of summary.

    With ``-c``: at that concentrator. Without it, per unit: already active anywhere -> left where it is
    (where `jincai pki move` put it; nothing changes); named by the source (a lab client in its site's
    ``vpn_clients``) -> at that site's concentrator, with its own site and kind from the source;
    registered (revoked) at exactly one concentrator -> there again, its old address back; at several
    -> refused (give ``-c``); else the province's. ``-c`` naming another concentrator than the one where
    the unit is active is refused (fix: `jincai pki move`). Any refusal changes nothing."""
    rows = rows or [{"code": args.code, "name": args.name or args.code}]
    found = vpn.plans(args.inventory)
    chosen = vpn.pick(found, args.concentrator, args.inventory) if args.concentrator else None
    with store.locked(pki_dir):
        regs = batch.Registries(found, pki_dir)
        placed, kept, errors = {}, 0, []
        for r in rows:
            code = r["code"]
            at = f"{args.csv}: line {r['line']}" if "line" in r else f"add: unit {code}"
            active, _ = regs.active(code)
            if active is not None:
                if chosen is not None and active.plan is not chosen:
                    errors.append(f"{at}: {code} is active at {active.plan['concentrator']['name']}, not "
                                  f"{chosen['concentrator']['name']} (fix: `jincai pki move {code} --to "
                                  f"{chosen['site']}`)")
                kept += 1
                continue
            source = vpn.placed_by_source(found, code)
            known = [reg.plan for reg in regs.all() if code in reg.units]
            target = chosen or source or (known[0] if len(known) == 1 else None)
            if target is None and len(known) > 1:
                errors.append(f"{at}: {code} was registered at {', '.join(p['concentrator']['name'] for p in known)} "
                              "(fix: name the concentrator with -c CONCENTRATOR)")
                continue
            target = target or found[0]
            row, prior = dict(r), regs.get(target).units.get(code)
            if target is source:  # the source's own site and kind of the client (what sync gives it)
                row.update(home=source["client_homes"].get(code), kind=source["client_kinds"].get(code, "budget_unit"))
            elif prior:  # re-onboarded where it was: its own site and kind as registered
                row.update(home=registry.UnitRegistry.home(prior), kind=registry.UnitRegistry.kind(prior))
            placed.setdefault(target["concentrator"]["name"], (target, []))[1].append(row)
        if errors:
            raise PkiError("\n".join(errors) + "\n(nothing changed)")
        added = {name: regs.get(plan).add_many(todo) for name, (plan, todo) in placed.items()}
        if any(added.values()):
            regs.save()
        for name, codes in added.items():
            for code in codes:
                regs.get(placed[name][0]).bundle(code)
    n = sum(len(v) for v in added.values())
    where = "; ".join(f"{name}: {len(codes)}" for name, codes in added.items() if codes)
    bundles = ", ".join(regs.get(plan).path("bundles") for name, (plan, _) in placed.items() if added[name])
    print(f"{n} onboarded, {kept} already active" + (f" ({where})" if where else "")
          + (f"; bundles in {bundles}" if bundles else ""))
    return 0


def _revoke_anywhere(args, rows, pki_dir):
    """``revoke`` without ``--concentrator``: each unit at the concentrator where it is active."""
    codes = [r["code"] for r in rows] if rows else args.codes
    if not codes:
        raise PkiError("revoke: give CODE..., or --csv FILE")
    with store.locked(pki_dir):
        done = batch.offboard(vpn.plans(args.inventory), pki_dir, codes, args.reason)
    n = sum(len(v) for v in done.values())
    where = "; ".join(f"{k}: {', '.join(v)}" for k, v in done.items()) or "already revoked"
    print(f"{n} revoked ({where}); deploy the CRL with `ansible-playbook playbooks/vpn.yml --tags vpn_crl`")
    return 0


def _unit_commands(args):
    rows = csvimport.read_csv(args.csv) if getattr(args, "csv", None) else None  # bad input fails before any change
    if args.cmd == "add" and bool(rows is not None) == bool(args.code):
        raise PkiError("add: give CODE NAME, or --csv FILE")
    pki_dir = args.dir or store.default_dir(args.inventory)
    store.refuse_old_layout(pki_dir)
    if args.cmd in ("init", "sync"):
        with store.locked(pki_dir):
            return _sync_all(vpn.plans(args.inventory), pki_dir, args.json)
    if args.cmd in ("import", "move"):
        return _batch_command(args, rows, pki_dir)
    if args.cmd == "add" and rows and any("concentrator" in r or "site" in r for r in rows):
        raise PkiError(f"{args.csv}: columns concentrator/site: use `jincai pki import --csv {args.csv}` "
                       "(it places each unit at its concentrator); nothing changed")
    if args.cmd == "revoke" and not args.concentrator:
        return _revoke_anywhere(args, rows, pki_dir)
    if args.cmd == "add":
        return _add(args, rows, pki_dir)
    vpn_plan = vpn.plan(args.inventory, args.concentrator)
    with store.locked(pki_dir):
        reg = registry.UnitRegistry(vpn_plan, pki_dir)
        if args.cmd == "list":
            for code, e in sorted(reg.units.items()):
                print(f"{code}\t{e['address']}\t{e['status']}\t{e['serial']}\t{e['name']}\t{reg.kind(e)}")
        elif args.cmd == "revoke":
            codes = [r["code"] for r in rows] if rows else args.codes
            if not codes:
                raise PkiError("revoke: give CODE..., or --csv FILE")
            unknown = [c for c in codes if c not in reg.units]
            if unknown:
                raise PkiError(f"revoke: not onboarded: {', '.join(unknown)} (nothing changed)")
            done = [c for c in codes if reg.revoke(c, args.reason)]
            reg.publish_crl(force=bool(done))
            reg.save()
            print(f"{len(done)} revoked (CRL number {reg.db['crl_number']}); deploy it with "
                  "`ansible-playbook playbooks/vpn.yml --tags vpn_crl`")
        elif args.cmd == "renew":
            done = reg.renew(args.codes or None, datetime.timedelta(days=args.within_days), args.rekey)
            reg.save()
            for code in done:
                reg.bundle(code)
            print(f"{len(done)} renewed")
        elif args.cmd == "crl":
            published = reg.publish_crl(days=args.days, force=not args.if_due)
            reg.save()
            print(f"{os.path.join(pki_dir, 'crl.pem')}: {'published' if published else 'unchanged'}, CRL number "
                  f"{reg.db['crl_number']}, next update {registry.crl_next_update(pki_dir).isoformat()}")
        elif args.cmd == "bundle":
            print(reg.bundle(args.code, force=True))
        elif args.cmd == "enrol":
            try:
                if args.csr == "-":
                    data = sys.stdin.buffer.read()
                else:
                    with open(args.csr, "rb") as fh:
                        data = fh.read()
            except OSError as exc:
                raise PkiError(f"{args.csr}: {exc.strerror}") from None
            changed = reg.enrol(args.code, args.name, data, home=args.site, where=f"{args.csr}", kind=args.kind)
            reg.publish_crl(force=False)
            reg.save()
            if changed:
                reg.bundle(args.code, force=True)
            e = reg.units[args.code]
            print(f"{args.code}: {'certified' if changed else 'unchanged'} ({e['address']}, serial {e['serial']}); "
                  f"certificate {reg.path('units', args.code + '.crt')}")
    if args.cmd == "crl" and args.push:
        return push_crl(args.inventory)  # outside the lock: the playbook's pki sync takes it again
    return 0


def main(argv=None, prog="jincai pki"):
    """Command line entry point; returns an exit code. ca/issue/issue-many print one JSON object."""
    args = build_parser(prog).parse_args(argv)
    if args.cmd in ("ca", "issue", "issue-many"):
        try:
            args.dir = args.dir or store.default_dir(args.inventory)
            store.refuse_old_layout(args.dir)
            result = _leaf_commands(args)
        except (OSError, ValueError, KeyError, TypeError, PkiError) as exc:
            print(json.dumps({"failed": True, "msg": f"jincai.pki: {exc}"}))
            return 1
        print(json.dumps(result, sort_keys=True))
        return 0
    try:
        return _unit_commands(args)
    except (PkiError, OSError, subprocess.CalledProcessError) as exc:
        print(f"jincai pki: {exc}", file=sys.stderr)
        return 1
