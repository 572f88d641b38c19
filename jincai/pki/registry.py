"""The budget-unit registry of each VPN concentrator, on top of the CA; the CRL; ``sync``.

The registry holds both kinds of VPN client (:data:`jincai.source.model.VPN_KINDS`): budget units
and township finance offices (乡镇财政所, entries with ``kind: township``; identity
``<code>.tw.<domain>``, own site a county whose townships the concentrator serves). They share the
concentrator's pool: budget units take the lowest free address, townships the highest, so neither
kind ever moves the other's addresses.

Per concentrator (``<pki>/vpn/`` for the province's, ``<pki>/vpn/<site code>/`` for a city's):
``units.json`` (code, name, site, home, virtual IP, identity, status, enrolment, key_vault),
``units/<code>.crt`` (one certificate per unit), ``keys/<batch>.vault`` (the keys of one batch in one
ansible-vault file, :mod:`jincai.pki.keys`; none for a unit that enrolled by CSR; an older registry's
``units/<code>.key.vault``, one per unit, is still read) and ``bundles/<code>.tar.gz`` (the
technician's bundle, :mod:`jincai.pki.bundle`). Shared by every concentrator of the network: ``db.json`` (serials issued, their status) and the published CRL
(``crl.pem``, ``crl.der``; the crlNumber grows at each publication).

A unit's virtual IP comes from the concentrator's pool, recorded at onboarding and never renumbered;
an active unit is never re-issued by ``add``/``sync``.
"""

import contextlib
import datetime
import ipaddress
import json
import os
import re

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from jincai.pki import PkiError, keys, store, vault
from jincai.pki import bundle as unitbundle
from jincai.pki import ca as authority
from jincai.source.model import VPN_KINDS

CRL_DAYS = 30
CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")
REASONS = {"unspecified": x509.ReasonFlags.unspecified, "keyCompromise": x509.ReasonFlags.key_compromise,
           "superseded": x509.ReasonFlags.superseded, "affiliationChanged": x509.ReasonFlags.affiliation_changed,
           "cessationOfOperation": x509.ReasonFlags.cessation_of_operation}


def next_free(pool, taken, start=None, down=False):
    """The lowest host address of *pool* not in *taken* at or above *start* (an int; default the
    first host), and where the next search may start. Addresses are never given back, so everything
    below the returned cursor stays taken: a batch of n units costs O(n), not O(n^2).

    With *down*: the highest free host address at or below *start* (default the last host), the
    cursor moving down (township finance offices fill the pool from the top)."""
    if down:
        n = int(pool.broadcast_address) - 1 if start is None else start
        first = int(pool.network_address)  # exclusive: the network address is no host
        while n > first:
            addr = str(ipaddress.IPv4Address(n))
            n -= 1
            if addr not in taken:
                return addr, n
        return None, n
    n = int(pool.network_address) + 1 if start is None else start
    last = int(pool.broadcast_address)  # exclusive: the broadcast address is no host
    while n < last:
        addr = str(ipaddress.IPv4Address(n))
        n += 1
        if addr not in taken:
            return addr, n
    return None, n


class UnitRegistry:
    """The budget-unit registry of the province on top of the CA.

    A unit's virtual IP comes from the plan's budget-unit pool: given by the source of truth or the
    lowest free host address, recorded at onboarding and never renumbered (a revoked unit keeps its
    address so it can never be handed to another unit by accident).
    """

    def __init__(self, vpn_plan, pki_dir=None, db=None, ca=None):
        self.dir = pki_dir or store.default_dir()
        self.plan = vpn_plan
        self.pool = ipaddress.ip_network(vpn_plan["pool"])
        if ca is None:
            authority.ensure_ca(self.dir)
            ca = authority.load_ca(self.dir)
        self.ca_cert, self._ca_key = ca
        self.vault = vault.shared()
        self.keys = keys.Keys(self.path(), self.vault)  # the units' key vaults (decrypted once per command)
        # the certificate database is shared by every concentrator's registry (Registries passes one)
        self.db = db if db is not None else self._read_json(os.path.join(self.dir, "db.json"),
                                                            {"crl_number": 0, "certs": {}})
        doc = self._read_json(self.path("units.json"), {"units": []})
        self.units = {u["code"]: u for u in doc["units"]}
        self._taken = {u["address"] for u in self.units.values()}

    @staticmethod
    def _read_json(path, default):
        if not os.path.exists(path):
            return default
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)

    def path(self, *parts):
        """A path under this concentrator's registry directory (``<pki>/vpn/`` for the province's,
        ``<pki>/vpn/<site code>/`` for a city's)."""
        return os.path.join(self.dir, self.plan.get("registry", "vpn"), *parts)

    # ---- identities and addresses
    def identity(self, code, kind="budget_unit"):
        """The IKE identity of a unit (also its certificate's DNS SAN): ``<code>.bu.<domain>``, a
        township finance office's ``<code>.tw.<domain>`` (the namespace of its kind)."""
        return f"{code}.{VPN_KINDS[kind].namespace}.{self.plan['domain']}"

    def server_identity(self):
        """The IKE identity of the concentrator."""
        return f"{self.plan['concentrator']['name']}.{self.plan['domain']}"

    def served(self, home=None, where=None, kind="budget_unit"):
        """What the plan says of a site this concentrator serves (its own by default): ``lan`` (the
        unit's traffic selector) and ``apps`` (its budget units' applications); for ``kind``
        township, of a county whose township finance offices it serves (their apps)."""
        if kind == "township":
            sites = self.plan.get("townships") or {}
            if home not in sites:
                raise PkiError(f"{where or 'township'}: site: {home or 'missing'}: {self.plan['concentrator']['name']} "
                               "serves no township finance offices of it (fix: one of "
                               f"{', '.join(sites) or 'none'}; a county's townships are declared in the source, "
                               "townships: of the county)")
            return sites[home]
        home = home or self.plan["site"]
        sites = self.plan.get("served") or {self.plan["site"]: {"lan": self.plan["lan"], "apps": self.plan["apps"]}}
        if home not in sites:
            raise PkiError(f"{where or 'unit'}: site: {home} is not served by {self.plan['concentrator']['name']} "
                           f"(fix: one of {', '.join(sites)}, or the concentrator that serves {home})")
        return sites[home]

    @staticmethod
    def home(entry):
        """The unit's own site (a county for a county's unit at a city concentrator)."""
        return entry.get("home") or entry["site"]

    @staticmethod
    def kind(entry):
        """The entry's :data:`jincai.source.model.VPN_KINDS` kind (budget units' entries carry none)."""
        return entry.get("kind", "budget_unit")

    def _allocate(self, wanted, where, kind="budget_unit"):
        hosts = (self.pool.network_address, self.pool.broadcast_address)
        if wanted:
            try:
                addr = ipaddress.ip_address(wanted)
            except ValueError as exc:
                raise PkiError(f"{where}: address: {exc}") from exc
            if addr not in self.pool or addr in hosts:
                raise PkiError(f"{where}: address: {wanted} is not a host address of the pool {self.pool}")
            if str(addr) in self._taken:
                raise PkiError(f"{where}: address: {wanted} is already used by another unit")
            self._taken.add(str(addr))
            return str(addr)
        cursors = self.__dict__.setdefault("_cursors", {})
        addr, cursors[kind] = next_free(self.pool, self._taken, cursors.get(kind), down=kind == "township")
        if addr is None:
            raise PkiError(f"budget-unit pool {self.pool} is full ({len(self._taken)} units): enlarge it in the plan")
        self._taken.add(addr)
        return addr

    def _issue_unit(self, code, key=None, kind="budget_unit"):
        ou = VPN_KINDS[kind].ou
        cert, key = authority.sign_leaf(self.ca_cert, self._ca_key, code, [self.identity(code, kind)], client=True,
                               key=key, ou=ou)
        serial = format(cert.serial_number, "x")
        self.db["certs"][serial] = {"cn": code, "kind": ou, "status": "valid",
                                    "not_after": cert.not_valid_after_utc.isoformat()}
        store.write(self.path("units", f"{code}.crt"), store.cert_pem(cert), 0o644)
        return serial, key

    # ---- onboarding / offboarding
    def add_many(self, rows):
        """Onboard many units (dicts with code, name, optional address/apps); return the codes added.

        The keys of the batch go into one vault (:meth:`jincai.pki.keys.Keys.write`: one PBKDF2 for the
        batch, not one per unit); each new entry's ``key_vault`` names it.
        """
        pending = {}
        added = [r["code"] for r in rows
                 if self.add(r["code"], r.get("name"), r.get("address"), r.get("apps"), r.get("where"),
                             home=r.get("home"), public_key=r.get("public_key"), _keys=pending,
                             kind=r.get("kind") or "budget_unit")]
        self._vault_keys(pending)
        return added

    def _vault_keys(self, pending):
        """Write the keys ``{code: PEM}`` of one batch into one vault and record it in their entries."""
        rel = self.keys.write(pending)
        for code in pending:
            self.units[code][keys.FIELD] = rel

    def add(self, code, name, address=None, apps=None, where=None, home=None, public_key=None, _keys=None,
            kind="budget_unit"):
        """Onboard a unit (certificate + vaulted key + registry entry); True if anything changed.

        *home* is the unit's own site (default: the concentrator's; a county it serves for a county's
        unit): its LAN and apps are what the unit reaches. *kind* ``township``: a township finance
        office, whose *home* is its county (required). An active unit is left untouched; a revoked
        unit gets a new key and certificate and keeps its address.
        """
        where = where or f"unit {code}"
        if not CODE_RE.match(code or ""):
            raise PkiError(f"{where}: code: {code!r} is not valid (fix: letters, digits and '-', at most 63)")
        if kind not in VPN_KINDS:
            raise PkiError(f"{where}: kind: {kind!r} is not a kind of VPN client (fix: one of {', '.join(VPN_KINDS)})")
        home = home or (None if kind == "township" else self.plan["site"])
        served = self.served(home, where, kind)
        entry = self.units.get(code)
        if entry and self.kind(entry) != kind:
            raise PkiError(f"{where}: kind: {code} is registered as {self.kind(entry)}, not {kind} "
                           "(fix: another code; a code names one unit or one township office)")
        if entry and entry["status"] == "active":
            return False
        addr = entry["address"] if entry else self._allocate(address, where, kind)
        serial, key = self._issue_unit(code, public_key, kind)
        if entry:  # a revoked unit onboarded again: no key of its former life stays readable
            self.keys.forget(entry)
        self.units[code] = {"code": code, "name": name or code, "site": self.plan["site"], "home": home,
                            "address": addr, "identity": self.identity(code, kind), "serial": serial,
                            "status": "active", "apps": sorted(apps or served["apps"]),
                            "enrolment": "csr" if public_key is not None else "bundle"}
        if kind != "budget_unit":
            self.units[code]["kind"] = kind  # budget units' entries stay as they always were
        if public_key is None and _keys is not None:
            _keys[code] = store.key_pem(key)  # add_many writes the batch's keys into one vault
        elif public_key is None:
            self._vault_keys({code: store.key_pem(key)})  # a vault of its own
        return True

    def public_key(self, code):
        """The public key of a unit's current certificate."""
        with open(self.path("units", f"{code}.crt"), "rb") as fh:
            return x509.load_pem_x509_certificate(fh.read()).public_key()

    def enrol(self, code, name, csr_data, home=None, address=None, where=None, kind=None):
        """Sign a unit's own key (CSR enrolment): the unit generated its key pair and sends a CSR; the
        province checks it and certifies its public key for the unit's identity (subject and SANs of
        the CSR are ignored: the identity is ``<code>.bu.<domain>``). True if anything changed.

        Rerunning with the same CSR changes nothing; a CSR with another key replaces the certificate and
        revokes the old one (reason superseded: the old key may be why the unit rekeyed)."""
        where = where or f"unit {code}"
        csr = authority.load_csr(csr_data, where)
        entry = self.units.get(code)
        home = home or (self.home(entry) if entry else None)
        kind = kind or (self.kind(entry) if entry else "budget_unit")
        if entry and entry["status"] == "active":
            pub = serialization.PublicFormat.SubjectPublicKeyInfo
            same = (self.public_key(code).public_bytes(serialization.Encoding.DER, pub)
                    == csr.public_key().public_bytes(serialization.Encoding.DER, pub))
            if same and entry.get("enrolment") == "csr":
                return self.rehome(code, home, where)  # same key: at most its own site changes
            self.revoke(code, "superseded")
        return self.add(code, name or (entry or {}).get("name") or code, address, None, where,
                        home=home, public_key=csr.public_key(), kind=kind)

    def rehome(self, code, home, where=None):
        """Give an active unit another own site served by the same concentrator (same address and
        certificate; its LAN and apps follow the new site). True if it changed."""
        entry = self.units[code]
        served = self.served(home, where or f"unit {code}", self.kind(entry))
        if self.home(entry) == home and entry["apps"] == sorted(served["apps"]):
            return False
        entry.update(home=home, apps=sorted(served["apps"]))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path("bundles", f"{code}.tar.gz"))  # its README and traffic selector changed
        return True

    def revoke(self, code, reason="cessationOfOperation"):
        """Offboard a unit: its certificate goes on the next CRL, its key leaves its vault (at
        :meth:`save`); True if it changed."""
        entry = self.units.get(code)
        if entry is None:
            raise PkiError(f"unit {code}: not onboarded (see `jincai pki list`)")
        if entry["status"] == "revoked":
            return False
        cert = self.db["certs"].setdefault(entry["serial"], {"cn": code, "kind": "budget unit"})
        cert.update(status="revoked", revoked=store.now().isoformat(), reason=reason)
        entry["status"] = "revoked"
        self.keys.forget(entry)
        entry.pop(keys.FIELD, None)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path("bundles", f"{code}.tar.gz"))
        return True

    def renew(self, codes=None, within=authority.RENEW_BEFORE, rekey=False):
        """Re-issue certificates of active units expiring within *within* (or exactly *codes*).

        The key is kept unless *rekey*; the old serial is marked superseded (it simply expires). The new
        keys of a *rekey* go into one vault; the old ones leave theirs at :meth:`save`.
        Returns the renewed codes.
        """
        done, fresh = [], {}
        for code in sorted(codes or self.units):
            entry = self.units.get(code)
            if entry is None:
                raise PkiError(f"unit {code}: not onboarded")
            if entry["status"] != "active":
                continue
            if codes is None:
                with open(self.path("units", f"{code}.crt"), "rb") as fh:
                    cert = x509.load_pem_x509_certificate(fh.read())
                if cert.not_valid_after_utc - store.now() > within:
                    continue
            key = None
            if entry.get("enrolment") == "csr":
                if rekey:
                    raise PkiError(f"unit {code}: renew --rekey: the unit holds its own key (CSR enrolment); it "
                                   "sends a new CSR: jincai pki enrol CODE --csr FILE")
                key = self.public_key(code)  # same key, new certificate
            elif not rekey:
                key = serialization.load_pem_private_key(self.keys.get(entry), None)
            old = entry["serial"]
            entry["serial"], key = self._issue_unit(code, key, self.kind(entry))
            if rekey:
                self.keys.forget(entry)
                fresh[code] = store.key_pem(key)
            if old in self.db["certs"]:
                self.db["certs"][old]["status"] = "superseded"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path("bundles", f"{code}.tar.gz"))
            done.append(code)
        self._vault_keys(fresh)
        return done

    # ---- publication
    def publish_crl(self, days=CRL_DAYS, force=False):
        """Write ``crl.pem``/``crl.der`` when the revoked set changed, the CRL is older than a day or
        reaches half its lifetime, or *force*.  Returns True when a new CRL was written."""
        revoked = sorted((s, e) for s, e in self.db["certs"].items() if e.get("status") == "revoked")
        pem = os.path.join(self.dir, "crl.pem")
        if not force and os.path.exists(pem):
            with open(pem, "rb") as fh:
                old = x509.load_pem_x509_crl(fh.read())
            same = sorted(format(r.serial_number, "x") for r in old) == [s for s, _ in revoked]
            fresh = old.next_update_utc - store.now() > datetime.timedelta(days=days / 2)
            if same and fresh:
                return False
        self.db["crl_number"] = self.db.get("crl_number", 0) + 1
        now = store.now()
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self.ca_cert.subject)
                   .last_update(now - datetime.timedelta(minutes=5)).next_update(now + datetime.timedelta(days=days))
                   .add_extension(x509.CRLNumber(self.db["crl_number"]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._ca_key.public_key()),
                                  critical=False))
        for serial, entry in revoked:
            rb = (x509.RevokedCertificateBuilder().serial_number(int(serial, 16))
                  .revocation_date(datetime.datetime.fromisoformat(entry["revoked"])))
            if entry.get("reason") in REASONS and entry["reason"] != "unspecified":
                rb = rb.add_extension(x509.CRLReason(REASONS[entry["reason"]]), critical=False)
            builder = builder.add_revoked_certificate(rb.build())
        crl = builder.sign(self._ca_key, hashes.SHA256())
        store.write(pem, crl.public_bytes(serialization.Encoding.PEM), 0o644)
        store.write(os.path.join(self.dir, "crl.der"), crl.public_bytes(serialization.Encoding.DER), 0o644)
        self._save_db()
        return True

    def _save_db(self):
        store.write(os.path.join(self.dir, "db.json"), json.dumps(self.db, indent=1, sort_keys=True).encode(), 0o600)

    def save(self):
        """Persist the certificate database and publish ``vpn/units.json`` (only if it changed); first
        the keys of revoked, moved and re-keyed units leave their vaults (:meth:`jincai.pki.keys.Keys.flush`),
        with an older registry's per-unit vault of any revoked unit."""
        for entry in self.units.values():
            if entry["status"] == "revoked" and os.path.exists(self.path(keys.legacy(entry["code"]))):
                self.keys.forget(entry)
        self.keys.flush()
        self._save_db()
        doc = {"pool": str(self.pool), "domain": self.plan["domain"], "server_identity": self.server_identity(),
               "units": [self.units[c] for c in sorted(self.units)]}
        data = json.dumps(doc, indent=1, sort_keys=True).encode()
        path = self.path("units.json")
        if not os.path.exists(path) or open(path, "rb").read() != data:  # noqa: SIM115
            store.write(path, data, 0o644)

    def bundle(self, code, force=False):
        """Write ``vpn/bundles/<code>.tar.gz`` (:func:`jincai.pki.bundle.pack`: certificate, key, CA,
        swanctl config, README).

        Kept as it is when it exists (re-running changes nothing) unless *force*; returns its path.
        """
        entry = self.units.get(code)
        if entry is None or entry["status"] != "active":
            raise PkiError(f"unit {code}: not an active unit, no bundle")
        out = self.path("bundles", f"{code}.tar.gz")
        if os.path.exists(out) and not force:
            return out
        key = None if entry.get("enrolment") == "csr" else self.keys.get(entry)
        with open(self.path("units", f"{code}.crt"), "rb") as fh:
            cert = fh.read()
        c = self.plan["concentrator"]
        lan = self.served(self.home(entry), f"unit {code}", self.kind(entry))["lan"]
        data = unitbundle.pack(entry, key, cert, store.cert_pem(self.ca_cert), self.server_identity(), c["address"], lan)
        os.makedirs(os.path.dirname(out), mode=0o700, exist_ok=True)
        store.write(out, data, 0o600)
        return out


def sync(reg, bundles=True):
    """Bring the PKI in line with the plan: the concentrator's certificate, every unit the plan names
    (the lab's client hosts) onboarded, expiring certificates renewed, CRL fresh, registry and missing
    bundles written. Returns a summary dict; a second run changes nothing."""
    c = reg.plan["concentrator"]
    _, server_changed = authority.issue(c["name"], [reg.server_identity(), c["address"]], reg.dir)
    # only units never onboarded: a revoked unit stays revoked until an explicit `add`
    homes, kinds = reg.plan.get("client_homes") or {}, reg.plan.get("client_kinds") or {}
    csr = set(reg.plan.get("csr_clients") or [])  # they enrol with their own key (roles/vpn_client)
    added = reg.add_many([{"code": code, "name": code, "home": homes.get(code), "kind": kinds.get(code, "budget_unit")}
                          for code in reg.plan["clients"] if code not in reg.units and code not in csr])
    renewed = reg.renew()
    crl = reg.publish_crl()
    reg.save()
    made = 0
    if bundles:
        for code, entry in sorted(reg.units.items()):
            if entry["status"] == "active" and not os.path.exists(reg.path("bundles", f"{code}.tar.gz")):
                reg.bundle(code)
                made += 1
    return {"server": server_changed, "added": added, "renewed": renewed, "crl": crl, "bundles": made}


def crl_next_update(pki_dir):
    """``nextUpdate`` of the published CRL (UTC), or None when there is none."""
    path = os.path.join(pki_dir, "crl.pem")
    if not os.path.exists(path):
        return None
    with open(path, "rb") as fh:
        return x509.load_pem_x509_crl(fh.read()).next_update_utc
