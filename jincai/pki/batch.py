"""Province-scale onboarding: CSV batches across every concentrator, moves between concentrators.

A batch row names a unit (``code``, ``name``) and where it belongs: its ``concentrator`` (host name or
site code) and/or its own ``site`` (a county's unit is served by its city's concentrator; the
concentrator is derived from the site). ``kind: township`` makes the row a township finance office
(乡镇财政所): its ``site`` is its county, and it goes to the concentrator that serves that county's
townships (the source's ``townships``); the default kind is ``budget_unit``. Every row is resolved against the source of truth before
anything changes; the result is one action per row:

    add      not active anywhere: onboarded at its concentrator (a fixed address from that pool;
             a unit revoked there before gets its old address back)
    move     active at another concentrator: revoked there (reason affiliationChanged, the CRL is
             published), onboarded at the new one with an address from the new pool (a unit enrolled
             by CSR keeps its own key: the new certificate certifies the same public key)
    rehome   active at the same concentrator with another own site: same address and certificate,
             its LAN and applications follow the new site
    keep     already as the row says (a rerun changes nothing)

The concentrators, their pools and the sites each serves are the typed model's: one plan per
:class:`jincai.source.model.Concentrator` (:func:`jincai.pki.vpn.plans`).

``jincai pki import --csv F [--dry-run]`` and ``jincai pki move CODE --to CONCENTRATOR [--site S]``.
"""

import os

from jincai.pki import PkiError, registry
from jincai.pki import ca as authority


class Registries:
    """Every concentrator's registry of one network, sharing one CA and one certificate database
    (so a move revokes at one and issues at another in one consistent save)."""

    def __init__(self, vpn_plans, pki_dir):
        self.plans = list(vpn_plans)
        self.dir = pki_dir
        authority.ensure_ca(pki_dir)
        self._ca = authority.load_ca(pki_dir)
        self.db = registry.UnitRegistry._read_json(os.path.join(pki_dir, "db.json"), {"crl_number": 0, "certs": {}})
        self._regs = {}

    def get(self, vpn_plan):
        name = vpn_plan["concentrator"]["name"]
        if name not in self._regs:
            self._regs[name] = registry.UnitRegistry(vpn_plan, self.dir, db=self.db, ca=self._ca)
        return self._regs[name]

    def all(self):
        return [self.get(p) for p in self.plans]

    def concentrator(self, key):
        """The plan of the concentrator named by host name or site code, or None."""
        return next((p for p in self.plans if key in (p["concentrator"]["name"], p["site"])), None)

    def serving(self, site, kind="budget_unit"):
        """The plan of the concentrator that serves *site* (its own or its city's), or None; for
        *kind* township, the one that serves the county's township finance offices."""
        if kind == "township":
            return next((p for p in self.plans if site in (p.get("townships") or {})), None)
        return next((p for p in self.plans if site in (p.get("served") or {p["site"]: None})), None)

    def active(self, code):
        """``(registry, entry)`` where *code* is active, or ``(None, None)``."""
        for reg in self.all():
            e = reg.units.get(code)
            if e and e["status"] == "active":
                return reg, e
        return None, None

    def save(self):
        for reg in self._regs.values():
            reg.save()


def resolve(regs, rows, default=None, where="batch"):
    """Turn rows into actions ``{action, code, name, to, home, from, address, line}`` without changing
    anything. Errors (all of them, at once) name the file, line and field; an error refuses the batch."""
    default = default or regs.plans[0]
    names = ", ".join(p["concentrator"]["name"] for p in regs.plans)
    actions, errors = [], []
    taken = {}  # addresses handed out in this batch, per concentrator (dry run shows the real ones)
    for r in rows:
        at = f"{where}: line {r['line']}" if "line" in r else f"{where}: unit {r['code']}"
        target, home, kind = None, r.get("site"), r.get("kind") or "budget_unit"
        if kind == "township" and not home:
            errors.append(f"{at}: site: missing: a township finance office belongs to a county "
                          "(fix: its county's code in the site column)")
            continue
        if r.get("concentrator"):
            target = regs.concentrator(r["concentrator"])
            if target is None:
                errors.append(f"{at}: concentrator: {r['concentrator']!r} is not a VPN concentrator (fix: one of {names})")
                continue
        if home:
            serving = regs.serving(home, kind)
            if serving is None:
                errors.append(f"{at}: site: {home} is served by no VPN concentrator " + (
                              "for township finance offices (fix: a county with townships in the source)"
                              if kind == "township" else "(fix: a city or county code of the source, or the province's)"))
                continue
            if target is not None and target is not serving:
                errors.append(f"{at}: concentrator: {target['concentrator']['name']} does not serve site {home} "
                              f"(fix: {serving['concentrator']['name']}, or leave the column empty)")
                continue
            target = serving
        target = target or default
        home = home or target["site"]
        reg = regs.get(target)
        old_reg, entry = regs.active(r["code"])
        prior = reg.units.get(r["code"])
        known = entry or prior
        if known and registry.UnitRegistry.kind(known) != kind:
            errors.append(f"{at}: kind: {r['code']} is registered as {registry.UnitRegistry.kind(known)}, not {kind} "
                          "(fix: the kind column, or another code)")
            continue
        act = {"code": r["code"], "name": r["name"], "to": target["concentrator"]["name"], "home": home,
               "line": r.get("line"), "from": None, "address": None, "kind": kind}
        if old_reg is reg:
            act.update(action="keep" if registry.UnitRegistry.home(entry) == home else "rehome", address=entry["address"])
        else:
            act["action"] = "move" if old_reg else "add"
            act["from"] = old_reg.plan["concentrator"]["name"] if old_reg else None
            if prior:
                act["address"] = prior["address"]  # re-onboarded where it was before: its old address
            else:
                free, cursors = taken.setdefault(act["to"], (set(reg._taken), {}))
                act["address"], cursors[kind] = registry.next_free(reg.pool, free, cursors.get(kind),
                                                                   down=kind == "township")
                if act["address"] is None:
                    errors.append(f"{at}: concentrator: the pool {reg.pool} of {act['to']} is full "
                                  "(fix: enlarge its vpn_pool in the source, or place the unit elsewhere)")
                    continue
                free.add(act["address"])
        actions.append(act)
    if errors:
        raise PkiError("\n".join(errors) + "\n(nothing changed)")
    return actions


def apply(regs, actions, reason="affiliationChanged", bundles=True):
    """Carry out resolved actions; returns ``{action: [codes]}``. Revocations first (a moved unit's old
    certificate is on the CRL before its new one exists), then onboarding per concentrator."""
    done = {"add": [], "move": [], "rehome": [], "keep": []}
    keys = {}  # CSR-enrolled units keep their own key: the new certificate certifies the same one
    for a in actions:
        if a["action"] == "move":
            old = regs.get(regs.concentrator(a["from"]))
            if old.units[a["code"]].get("enrolment") == "csr":
                keys[a["code"]] = old.public_key(a["code"])
            old.revoke(a["code"], reason)
    by_target = {}
    for a in actions:
        if a["action"] in ("add", "move"):
            by_target.setdefault(a["to"], []).append(
                {"code": a["code"], "name": a["name"], "home": a["home"], "address": a["address"],
                 "public_key": keys.get(a["code"]), "kind": a["kind"],
                 "where": f"line {a['line']}" if a["line"] else f"unit {a['code']}"})
        elif a["action"] == "rehome":
            regs.get(regs.concentrator(a["to"])).rehome(a["code"], a["home"])
        done[a["action"]].append(a["code"])
    for to, rows in by_target.items():
        regs.get(regs.concentrator(to)).add_many(rows)
    changed = any(done[k] for k in ("add", "move", "rehome"))
    if changed:
        first = regs.all()[0]
        first.publish_crl(force=bool(done["move"]))
        regs.save()
        if bundles:
            for a in actions:
                if a["action"] != "keep":
                    regs.get(regs.concentrator(a["to"])).bundle(a["code"])
    return done


def describe(a):
    """One line for an action (dry run and report)."""
    if a["action"] == "move":
        return f"move   {a['code']}: {a['from']} -> {a['to']} (site {a['home']}), address {a['address']}"
    if a["action"] == "add":
        return f"add    {a['code']}: at {a['to']} (site {a['home']}), address {a['address']}"
    if a["action"] == "rehome":
        return f"rehome {a['code']}: at {a['to']}, own site now {a['home']}, address {a['address']}"
    return f"keep   {a['code']}: at {a['to']} (site {a['home']})"


def run(vpn_plans, pki_dir, rows, default=None, where="batch", dry_run=False, out=print):
    """Resolve and (unless *dry_run*) apply *rows*; print the changes and a summary; return the
    summary ``{add, move, rehome, keep: count, changed: bool}``."""
    regs = Registries(vpn_plans, pki_dir)
    actions = resolve(regs, rows, default, where)
    for a in actions:
        if a["action"] != "keep":
            out(("would " if dry_run else "") + describe(a))
    counts = {k: sum(1 for a in actions if a["action"] == k) for k in ("add", "move", "rehome", "keep")}
    if not dry_run:
        apply(regs, actions)
    counts["changed"] = bool(counts["add"] or counts["move"] or counts["rehome"])
    out(f"{'dry run: ' if dry_run else ''}{counts['add']} added, {counts['move']} moved, "
        f"{counts['rehome']} rehomed, {counts['keep']} unchanged"
        + ("" if dry_run or not counts["changed"] else
           "; deploy: ansible-playbook playbooks/vpn.yml --tags vpn (both concentrators of a move)"))
    return counts


def offboard(vpn_plans, pki_dir, codes, reason="cessationOfOperation"):
    """Revoke units wherever they are active (no need to know their concentrator); publish the CRL.
    Returns ``{concentrator name: [codes revoked]}``; unknown codes refuse the whole call."""
    regs = Registries(vpn_plans, pki_dir)
    found = {c: regs.active(c)[0] for c in codes}
    unknown = [c for c, reg in found.items() if reg is None
               and not any(c in r.units for r in regs.all())]
    if unknown:
        raise PkiError(f"revoke: not onboarded: {', '.join(unknown)} (nothing changed): no concentrator's registry has it")
    done = {}
    for code, reg in found.items():
        if reg is not None and reg.revoke(code, reason):
            done.setdefault(reg.plan["concentrator"]["name"], []).append(code)
    regs.all()[0].publish_crl(force=bool(done))
    regs.save()
    return done
