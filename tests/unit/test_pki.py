"""Unit tests of the province PKI (jincai.pki): CA key vaulted, units, revocation, CRL, bundles, CLI."""

import datetime
import io
import ipaddress
import json
import os
import tarfile

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from jincai import ROOT, pki
from jincai.pki import ca, cli, csvimport, registry, store, vault, vpn

PLAN = {"pool": "198.18.160.0/29", "apps": ["budget", "treasury"], "lan": "198.18.0.0/24", "site": "220000",
        "domain": "lab.jincai.test", "concentrator": {"name": "220000-vpn", "address": "198.18.232.1"},
        "clients": ["bu0001", "bu0002"]}


def _cert(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_ca_key_is_vault_encrypted_and_never_plaintext(pkidir):
    crt, changed = ca.ensure_ca()
    assert changed and os.path.exists(crt)
    key = (pkidir / "ca.key.vault").read_bytes()
    assert key.startswith(b"$ANSIBLE_VAULT;1.1;AES256")
    assert b"PRIVATE KEY" not in key
    assert not (pkidir / "ca.key").exists()
    assert oct((pkidir / "ca.key.vault").stat().st_mode & 0o777) == "0o600"
    assert ca.ensure_ca() == (crt, False)


def test_plaintext_ca_key_of_older_layout_is_migrated(pkidir):
    ca.ensure_ca()
    plain = vault.Vault().decrypt((pkidir / "ca.key.vault").read_bytes())
    (pkidir / "ca.key.vault").unlink()
    (pkidir / "ca.key").write_bytes(plain)
    assert ca.ensure_ca()[1] is True
    assert not (pkidir / "ca.key").exists()
    assert vault.Vault().decrypt((pkidir / "ca.key.vault").read_bytes()) == plain


def test_wrong_vault_password_is_a_clear_error(pkidir, tmp_path, monkeypatch):
    ca.ensure_ca()
    other = tmp_path / "other"
    other.write_text("not-the-password\n")
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(other))
    vault._VAULTS.clear()
    with pytest.raises(pki.PkiError, match="ca.key.vault: cannot decrypt"):
        ca.issue("220000-app1", ["198.18.0.12"])


def test_server_certificate_for_nginx_is_reusable_and_idempotent(pkidir):
    paths, changed = ca.issue("220000-app1", ["app1.lab.jincai.test", "198.18.0.12"])
    assert changed
    cert = _cert(pkidir / "issued" / "220000-app1" / "cert.pem")
    cert.verify_directly_issued_by(_cert(pkidir / "ca.crt"))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["app1.lab.jincai.test"]
    assert ca.issue("220000-app1", ["app1.lab.jincai.test", "198.18.0.12"])[1] is False
    assert ca.issue("220000-app1", ["app1.lab.jincai.test"])[1] is True  # SANs changed: re-issued


def test_units_get_fixed_addresses_from_the_pool_and_rerun_changes_nothing(pkidir):
    reg = registry.UnitRegistry(PLAN)
    first = registry.sync(reg)
    assert first["added"] == ["bu0001", "bu0002"] and first["bundles"] == 2
    assert [reg.units[c]["address"] for c in ("bu0001", "bu0002")] == ["198.18.160.1", "198.18.160.2"]
    before = {p: p.read_bytes() for p in (pkidir / "vpn").rglob("*") if p.is_file()}
    again = registry.sync(registry.UnitRegistry(PLAN))
    assert again == {"server": False, "added": [], "renewed": [], "crl": False, "bundles": 0}
    after = {p: p.read_bytes() for p in (pkidir / "vpn").rglob("*") if p.is_file()}
    assert before == after
    cert = _cert(pkidir / "vpn" / "units" / "bu0001.crt")
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["bu0001.bu.lab.jincai.test"]
    # both keys in the one vault of their batch (sync onboards the plan's units as one batch)
    assert reg.units["bu0001"]["key_vault"] == reg.units["bu0002"]["key_vault"]
    assert (pkidir / "vpn" / reg.units["bu0001"]["key_vault"]).read_bytes().startswith(b"$ANSIBLE_VAULT")
    assert not list((pkidir / "vpn" / "units").glob("*.key.vault"))


def test_pool_exhaustion_and_bad_addresses_are_refused(pkidir):
    reg = registry.UnitRegistry(PLAN)  # a /29: six host addresses
    for i in range(6):
        reg.add(f"u{i}", f"unit {i}")
    with pytest.raises(pki.PkiError, match="pool 198.18.160.0/29 is full"):
        reg.add("u6", "one too many")
    reg2 = registry.UnitRegistry(dict(PLAN, pool="198.18.168.0/24"))
    with pytest.raises(pki.PkiError, match="not a host address of the pool"):
        reg2.add("x1", "x", address="198.18.160.9")
    with pytest.raises(pki.PkiError, match="code: 'bad code' is not valid"):
        reg2.add("bad code", "x")


def test_revocation_reaches_the_crl_and_the_unit_stays_revoked(pkidir):
    reg = registry.UnitRegistry(PLAN)
    registry.sync(reg)
    serial = int(reg.units["bu0002"]["serial"], 16)
    assert reg.revoke("bu0002") is True
    assert reg.revoke("bu0002") is False
    assert reg.publish_crl(force=True)
    reg.save()
    crl = x509.load_pem_x509_crl((pkidir / "crl.pem").read_bytes())
    assert crl.is_signature_valid(_cert(pkidir / "ca.crt").public_key())
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert not (pkidir / "vpn" / "bundles" / "bu0002.tar.gz").exists()
    # sync does not bring a revoked unit back; an explicit add does, with a new key but the same address
    reg = registry.UnitRegistry(PLAN)
    assert registry.sync(reg)["added"] == []
    assert reg.units["bu0002"]["status"] == "revoked"
    assert reg.add("bu0002", "bu0002") is True
    assert reg.units["bu0002"]["address"] == "198.18.160.2"
    assert int(reg.units["bu0002"]["serial"], 16) != serial
    reg.publish_crl(force=True)
    crl2 = x509.load_pem_x509_crl((pkidir / "crl.pem").read_bytes())
    assert crl2.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == number + 1
    assert crl2.get_revoked_certificate_by_serial_number(serial) is not None  # old cert stays revoked


def test_renewal_keeps_the_key_unless_rekey(pkidir):
    reg = registry.UnitRegistry(PLAN)
    registry.sync(reg)
    old = _cert(pkidir / "vpn" / "units" / "bu0001.crt")
    assert reg.renew() == []  # nothing expires within 30 days
    assert reg.renew(within=datetime.timedelta(days=10000)) == ["bu0001", "bu0002"]
    new = _cert(pkidir / "vpn" / "units" / "bu0001.crt")
    assert new.serial_number != old.serial_number
    pub = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    assert new.public_key().public_bytes(*pub) == old.public_key().public_bytes(*pub)
    reg.renew(["bu0001"], rekey=True)
    assert _cert(pkidir / "vpn" / "units" / "bu0001.crt").public_key().public_bytes(*pub) != \
        old.public_key().public_bytes(*pub)


def test_bundle_holds_cert_key_ca_config_and_instructions(pkidir):
    reg = registry.UnitRegistry(PLAN)
    registry.sync(reg)
    path = pkidir / "vpn" / "bundles" / "bu0001.tar.gz"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    with tarfile.open(path) as tar:
        names = sorted(tar.getnames())
        conf = tar.extractfile("bu0001/swanctl/conf.d/province.conf").read().decode()
        key = tar.extractfile("bu0001/swanctl/private/bu0001.key").read()
        assert tar.getmember("bu0001/swanctl/private/bu0001.key").mode == 0o600
    assert names == ["bu0001/README.txt", "bu0001/swanctl/conf.d/province.conf", "bu0001/swanctl/private/bu0001.key",
                     "bu0001/swanctl/x509/bu0001.crt", "bu0001/swanctl/x509ca/province-ca.crt"]
    assert "remote_addrs = 198.18.232.1" in conf and "id = bu0001.bu.lab.jincai.test" in conf
    assert "id = 220000-vpn.lab.jincai.test" in conf and "remote_ts = 198.18.0.0/24" in conf
    private = serialization.load_pem_private_key(key, None)
    cert = _cert(pkidir / "vpn" / "units" / "bu0001.crt")
    pub = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    assert private.public_key().public_bytes(*pub) == cert.public_key().public_bytes(*pub)


def test_csv_errors_name_file_line_and_field(tmp_path):
    f = tmp_path / "units.csv"
    f.write_text("code,name\nbu0100,Finance office\nbad code,x\nbu0100,again\nbu0101,\n", encoding="utf-8")
    with pytest.raises(pki.PkiError) as err:
        csvimport.read_csv(str(f))
    lines = str(err.value).splitlines()
    assert lines == [f"{f}: line 3: code: 'bad code' is not a valid unit code (fix: letters, digits and '-', at most 63)",
                     f"{f}: line 4: code: bu0100 is listed twice (fix: one line per unit)",
                     f"{f}: line 5: name: missing (fix: the unit's name as 2nd column)"]


def test_csv_batch_onboarding_via_cli_is_idempotent(pkidir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(vpn, "plan", lambda inv, concentrator=None: dict(PLAN, pool="198.18.160.0/24"))
    f = tmp_path / "units.csv"
    f.write_text("code,name\n" + "".join(f"bu{i:04d},单位{i}\n" for i in range(100, 150)), encoding="utf-8")
    assert cli.main(["add", "--csv", str(f)]) == 0
    assert "50 onboarded, 0 already active" in capsys.readouterr().out
    assert cli.main(["add", "--csv", str(f)]) == 0
    assert "0 onboarded, 50 already active" in capsys.readouterr().out
    assert cli.main(["revoke", "bu0100", "nosuch"]) == 1
    assert "not onboarded: nosuch (nothing changed)" in capsys.readouterr().err
    assert cli.main(["revoke", "bu0100"]) == 0
    doc = json.loads((pkidir / "vpn" / "units.json").read_text())
    status = {u["code"]: u["status"] for u in doc["units"]}
    assert status["bu0100"] == "revoked" and status["bu0101"] == "active" and len(status) == 50
    assert len(list((pkidir / "vpn" / "bundles").glob("*.tar.gz"))) == 49


def test_leaf_cli_keeps_its_json_contract(pkidir, capsys):
    assert cli.main(["issue", "220000-app1", "--san", "198.18.0.12"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["changed"] is True and out["cert"].endswith("issued/220000-app1/cert.pem")
    assert cli.main(["--check", "issue", "220000-app1", "--san", "198.18.0.12"]) == 0
    assert json.loads(capsys.readouterr().out)["changed"] is False


def test_bundle_tar_is_readable_from_bytes(pkidir):
    reg = registry.UnitRegistry(PLAN)
    registry.sync(reg)
    data = (pkidir / "vpn" / "bundles" / "bu0002.tar.gz").read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        readme = tar.extractfile("bu0002/README.txt").read().decode()
    assert "198.18.160.2" in readme and "budget, treasury" in readme


def test_vpn_plan_comes_from_the_lab_source_of_truth():
    vpn_plan = vpn.plan(os.path.join(ROOT, "inventories", "lab"))
    assert vpn_plan["pool"] == "198.18.160.0/21"
    assert vpn_plan["apps"] == ["budget", "treasury"]  # the source's budget_units.apps, nothing in code
    assert vpn_plan["concentrator"] == {"name": "220000-vpn", "address": "198.18.232.1"}
    assert vpn_plan["domain"] == "lab.jincai.test" and vpn_plan["lan"] == "198.18.0.0/24"
    assert vpn_plan["clients"] == ["bu0001", "bu0002", "tw0001"]
    assert vpn_plan["client_kinds"] == {"bu0001": "budget_unit", "bu0002": "budget_unit", "tw0001": "township"}
    # 220102's township finance offices are served here (the lab's city has no concentrator)
    assert vpn_plan["townships"] == {"220102": {"lan": "198.18.17.0/24", "apps": ["township"], "tier": "county"}}
    assert vpn_plan["registry"] == "vpn"


def test_the_plan_is_the_models_concentrator(pkidir):
    """plans_of reads the typed model's Concentrator and VpnClient objects: a pool and an enrolment
    changed there are what the registry allocates from and whom sync onboards."""
    from jincai.source import model

    m = model.build(model.load(os.path.join(ROOT, "inventories", "lab")))
    m.hosts["220000-vpn"].vpn.pool = "198.18.161.0/29"
    m.hosts["bu0002"].vpn_client.enrolment = "csr"
    vpn_plan = vpn.plans_of(m)[0]
    assert vpn_plan["pool"] == "198.18.161.0/29" and vpn_plan["csr_clients"] == ["bu0002"]
    assert vpn_plan["served"] == {"220000": {"lan": "198.18.0.0/24", "apps": ["budget", "treasury"],
                                             "tier": "province"}}
    assert vpn_plan["client_homes"] == {"bu0001": "220000", "bu0002": "220000", "tw0001": "220102"}
    reg = registry.UnitRegistry(vpn_plan)
    assert registry.sync(reg, bundles=False)["added"] == ["bu0001", "tw0001"]
    # units from the bottom of the pool, township finance offices from the top
    assert reg.units["bu0001"]["address"] == "198.18.161.1" and reg.units["tw0001"]["address"] == "198.18.161.6"
    m.network["domain"] = None
    with pytest.raises(pki.PkiError, match="network: domain: missing"):
        vpn.plans_of(m)


def test_the_pki_directory_is_named_after_the_sources_network(tmp_path, monkeypatch):
    monkeypatch.delenv("JINCAI_PKI_DIR", raising=False)
    monkeypatch.setenv("JINCAI_STATE_DIR", str(tmp_path))
    assert store.default_dir(os.path.join(ROOT, "inventories", "jilin")) == str(tmp_path / "pki" / "jilin")
    with pytest.raises(pki.PkiError, match="no such inventory directory"):
        store.default_dir(str(tmp_path / "nope"))


def test_without_i_pki_acts_on_jincai_inventory_else_the_lab(tmp_path, monkeypatch):
    """The default inventory of `jincai pki` is the one of compliance, verify, release and history
    ($JINCAI_INVENTORY, else the lab), so `jincai pki revoke X` and `jincai compliance` agree."""
    monkeypatch.delenv("JINCAI_PKI_DIR", raising=False)
    monkeypatch.setenv("JINCAI_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("JINCAI_INVENTORY", raising=False)
    assert store.default_inventory() == os.path.join(ROOT, "inventories", "lab")
    assert cli.build_parser().parse_args(["list"]).inventory == os.path.join(ROOT, "inventories", "lab")
    assert store.default_dir() == str(tmp_path / "pki" / "lab")
    jilin = os.path.join(ROOT, "inventories", "jilin")
    monkeypatch.setenv("JINCAI_INVENTORY", jilin)
    assert cli.build_parser().parse_args(["list"]).inventory == jilin
    assert store.default_dir() == str(tmp_path / "pki" / "jilin")


def test_every_concentrator_of_the_province_twin_has_its_own_registry(pkidir, tmp_path, capsys):
    """The twin of inventories/jilin has ten concentrators: one sync gives each its registry with its
    own pool (addresses from that pool only), one CA and CRL for all; a second sync changes nothing."""
    from jincai.lab import twin

    inv = tmp_path / "twin"
    twin.translate(os.path.join(ROOT, "inventories", "jilin"), str(inv))
    plans = vpn.plans(str(inv))
    assert len(plans) == 10 and plans[0]["registry"] == "vpn" and plans[0]["site"] == "220000"
    assert {p["registry"] for p in plans[1:]} == {f"vpn/{p['site']}" for p in plans[1:]}
    assert len({p["pool"] for p in plans}) == 10
    assert all(p["apps"] == ["budget", "treasury"] for p in plans)
    assert cli.main(["-i", str(inv), "sync", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["changed"] is True and len(first["concentrators"]) == 10
    for p in plans:
        doc = json.loads((pkidir / p["registry"] / "units.json").read_text())
        assert doc["pool"] == p["pool"]
        addrs = [ipaddress.ip_address(u["address"]) for u in doc["units"]]
        assert sorted(u["code"] for u in doc["units"]) == sorted(p["clients"]) and len(set(addrs)) == len(p["clients"])
        # two budget units each, and at a city's one township office (from the top of the pool)
        assert len(addrs) == (2 if p["site"] == "220000" else 3)
        assert all(a in ipaddress.ip_network(p["pool"]) for a in addrs)
        assert all((pkidir / p["registry"] / "bundles" / f"{c}.tar.gz").exists() for c in p["clients"])
    assert cli.main(["-i", str(inv), "sync", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["changed"] is False
    assert cli.main(["-i", str(inv), "--concentrator", "220100", "list"]) == 0
    listed = capsys.readouterr().out
    assert "bu220100-1" in listed and "bu220000-1" not in listed
    assert cli.main(["-i", str(inv), "--concentrator", "229999", "list"]) == 1
    assert "no VPN concentrator '229999'" in capsys.readouterr().err


def test_an_older_checkout_local_ca_is_not_silently_replaced(tmp_path, monkeypatch):
    """A PKI left in <repo>/build/pki by an older jincai must be moved, not shadowed by a new CA."""
    old_root = tmp_path / "repo"
    (old_root / "build" / "pki").mkdir(parents=True)
    (old_root / "build" / "pki" / "ca.crt").write_text("old CA")
    monkeypatch.setattr(store, "ROOT", str(old_root))
    new = tmp_path / "state" / "pki" / "lab"
    with pytest.raises(pki.PkiError, match=r"mv .*/build/pki .*/state/pki/lab"):
        ca.ensure_ca(str(new))
    assert not new.exists()
    # through the command line too, and nothing is created on the way (so the advice works as written)
    monkeypatch.setenv("JINCAI_PKI_DIR", str(new))
    assert cli.main(["sync"]) == 1
    assert cli.main(["ca"]) == 1
    assert not new.exists()


def test_the_vault_password_file_is_found_where_ansible_finds_it(monkeypatch, tmp_path):
    """ansible.cfg names no vault password file (AWX brings its own): `jincai pki`, run by the VPN play
    or by hand, takes the vault id that `make`/jincai.run/AWX set, else the default inventory's script."""
    for var in ("ANSIBLE_VAULT_PASSWORD_FILE", "ANSIBLE_VAULT_IDENTITY_LIST"):
        monkeypatch.delenv(var, raising=False)
    script = tmp_path / "pass.sh"
    monkeypatch.setenv("ANSIBLE_VAULT_IDENTITY_LIST", f"prod@{script},lab@/elsewhere")
    assert vault.vault_password_file() == str(script)
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", "/explicit")
    assert vault.vault_password_file() == "/explicit"
    for var in ("ANSIBLE_VAULT_PASSWORD_FILE", "ANSIBLE_VAULT_IDENTITY_LIST"):
        monkeypatch.delenv(var)
    assert vault.vault_password_file() == os.path.join(ROOT, "inventories", "lab", "vault-pass.sh")
