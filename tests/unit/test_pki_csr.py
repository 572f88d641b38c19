"""CSR enrolment (issue 16): the unit generates its key, the province certifies it; the private key
never reaches the control node. Rerun, rekey by a new CSR, renewal, moves and bundles."""

import io
import json
import subprocess
import tarfile

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from jincai import pki
from jincai.pki import cli, registry, vpn

PLAN = {"pool": "198.18.160.0/29", "apps": ["budget", "treasury"], "lan": "198.18.0.0/24", "site": "220000",
        "domain": "lab.jincai.test", "concentrator": {"name": "220000-vpn", "address": "198.18.232.1"},
        "clients": []}


@pytest.fixture()
def pkidir(pkidir, monkeypatch):  # conftest's, with this module's plan
    monkeypatch.setattr(vpn, "plan", lambda inv, concentrator=None: PLAN)
    return pkidir


def _csr(key, cn="anything"):
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


def _spki(key):
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_the_province_certifies_the_units_own_key_and_holds_no_private_key(pkidir, tmp_path, capsys):
    key = ec.generate_private_key(ec.SECP256R1())  # generated "on the unit"
    csr = tmp_path / "bu0100.csr"
    csr.write_bytes(_csr(key, cn="evil.example"))
    assert cli.main(["enrol", "bu0100", "--csr", str(csr), "--name", "某单位"]) == 0
    assert "bu0100: certified (198.18.160.1" in capsys.readouterr().out
    cert = x509.load_pem_x509_certificate((pkidir / "vpn" / "units" / "bu0100.crt").read_bytes())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate((pkidir / "ca.crt").read_bytes()))
    assert _spki(cert.public_key()) == _spki(key.public_key())
    # the identity is the province's, whatever the CSR asked for
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["bu0100.bu.lab.jincai.test"]
    assert not (pkidir / "vpn" / "units" / "bu0100.key.vault").exists()
    entry = json.loads((pkidir / "vpn" / "units.json").read_text())["units"][0]
    assert entry["enrolment"] == "csr" and entry["status"] == "active"
    with tarfile.open(fileobj=io.BytesIO((pkidir / "vpn" / "bundles" / "bu0100.tar.gz").read_bytes())) as tar:
        names = tar.getnames()
        readme = tar.extractfile("bu0100/README.txt").read().decode()
    assert not any("/private/" in n for n in names) and "holds no private key" in readme
    # rerun with the same CSR: nothing changes
    before = (pkidir / "vpn" / "units" / "bu0100.crt").read_bytes()
    assert cli.main(["enrol", "bu0100", "--csr", str(csr)]) == 0
    assert "unchanged" in capsys.readouterr().out
    assert (pkidir / "vpn" / "units" / "bu0100.crt").read_bytes() == before


def test_a_new_csr_replaces_the_certificate_and_revokes_the_old_one(pkidir, tmp_path):
    reg = registry.UnitRegistry(PLAN)
    k1, k2 = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP384R1())
    assert reg.enrol("bu0100", "x", _csr(k1))
    first = reg.units["bu0100"]["serial"]
    assert reg.enrol("bu0100", "x", _csr(k2))
    assert reg.units["bu0100"]["serial"] != first and reg.units["bu0100"]["address"] == "198.18.160.1"
    assert reg.db["certs"][first]["status"] == "revoked" and reg.db["certs"][first]["reason"] == "superseded"
    # renewal keeps the unit's key; --rekey is refused (the province has no key to change)
    assert reg.renew(["bu0100"]) == ["bu0100"]
    assert _spki(reg.public_key("bu0100")) == _spki(k2.public_key())
    with pytest.raises(pki.PkiError, match="holds its own key"):
        reg.renew(["bu0100"], rekey=True)
    # a province-issued unit switching to its own key: the province's copy of the old key is removed
    assert reg.add("bu0101", "y")
    vaulted = pkidir / "vpn" / reg.units["bu0101"]["key_vault"]
    assert vaulted.exists()
    assert reg.enrol("bu0101", None, _csr(k1))
    reg.save()  # the key leaves its vault (here its own: removed) in the save that records the revocation
    assert not vaulted.exists() and reg.units["bu0101"]["name"] == "y" and "key_vault" not in reg.units["bu0101"]


def test_bad_csrs_are_refused_with_the_reason(pkidir, tmp_path):
    reg = registry.UnitRegistry(PLAN)
    with pytest.raises(pki.PkiError, match=r"u.csr: csr: not a certificate signing request .*fix: openssl req"):
        reg.enrol("bu0100", "x", b"garbage", where="u.csr")
    weak = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(pki.PkiError, match=r"key RSAPublicKey 2048 is not accepted"):
        reg.enrol("bu0100", "x", _csr(weak))
    assert "bu0100" not in reg.units


def test_a_csr_from_openssl_on_the_unit_is_accepted(pkidir, tmp_path):
    """What a technician runs on the unit's gateway (the README's command)."""
    key, csr = tmp_path / "unit.key", tmp_path / "unit.csr"
    gen = subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                          "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=bu0100"],
                         capture_output=True, check=False)
    if gen.returncode != 0:
        pytest.skip(f"openssl: {gen.stderr.decode()[:200]}")
    reg = registry.UnitRegistry(PLAN)
    assert reg.enrol("bu0100", "x", csr.read_bytes())
    private = serialization.load_pem_private_key(key.read_bytes(), None)
    assert _spki(reg.public_key("bu0100")) == _spki(private.public_key())


def test_a_csr_unit_moved_to_another_concentrator_keeps_its_key(pkidir):
    from jincai.pki import batch as pki_batch

    city = dict(PLAN, pool="198.18.192.0/29", site="220100", registry="vpn/220100", lan="198.18.16.0/24",
                concentrator={"name": "220100-vpn", "address": "198.18.232.2"})
    key = ec.generate_private_key(ec.SECP256R1())
    reg = registry.UnitRegistry(PLAN)
    reg.enrol("bu0100", "x", _csr(key))
    reg.save()
    pki_batch.run([PLAN, city], str(pkidir), [{"code": "bu0100", "name": "x", "concentrator": "220100"}],
                  out=lambda *_: None)
    moved = registry.UnitRegistry(city)
    assert moved.units["bu0100"]["enrolment"] == "csr" and moved.units["bu0100"]["address"] == "198.18.192.1"
    assert _spki(moved.public_key("bu0100")) == _spki(key.public_key())
    assert not (pkidir / "vpn" / "220100" / "units" / "bu0100.key.vault").exists()


def test_a_csr_client_of_the_source_enrols_itself_before_the_concentrators_and_sync_skips_it(pkidir, tmp_path):
    """Source field vpn_clients[].enrolment: csr -> jincai_vpn_client.enrolment; sync does not give it a
    province key; playbooks/vpn.yml enrols it (key generated on the host) before the concentrators."""
    import os
    import shutil

    import yaml

    from jincai import ROOT
    from jincai.source import inventory

    inv = tmp_path / "lab"
    shutil.copytree(os.path.join(ROOT, "inventories", "lab"), inv)
    site = inv / "source" / "sites" / "220000.yml"
    text = site.read_text(encoding="utf-8")
    old = "      - {name: bu0002, address: 198.18.232.102, mgmt: 198.19.0.18}"
    assert old in text
    site.write_text(text.replace(old, old[:-1] + ", enrolment: csr}"), encoding="utf-8")
    hv = inventory.build(str(inv))["_meta"]["hostvars"]
    assert hv["bu0002"]["jincai_vpn_client"]["enrolment"] == "csr"
    assert hv["bu0001"]["jincai_vpn_client"]["enrolment"] == "bundle"
    plan = vpn.plans(str(inv))[0]
    assert plan["csr_clients"] == ["bu0002"]
    reg = registry.UnitRegistry(plan)
    assert registry.sync(reg)["added"] == ["bu0001", "tw0001"]
    with open(os.path.join(ROOT, "playbooks", "vpn.yml"), encoding="utf-8") as fh:
        plays = yaml.safe_load(fh)
    names = [p["name"] for p in plays]
    enrol = next(i for i, p in enumerate(plays) if "tasks_from: enrol" in yaml.safe_dump(p)
                 or any(t.get("ansible.builtin.include_role", {}).get("tasks_from") == "enrol" for t in p.get("tasks", [])))
    conc = next(i for i, p in enumerate(plays) if p["hosts"] == "vpn_concentrators" and "roles" in p)
    assert enrol < conc, names
    role = os.path.join(ROOT, "roles", "vpn_client", "tasks")
    with open(os.path.join(role, "enrol.yml"), encoding="utf-8") as fh:
        enrol_tasks = fh.read()
    assert "genpkey" in enrol_tasks and "decrypt" not in enrol_tasks and "key.vault" not in enrol_tasks
    with open(os.path.join(role, "main.yml"), encoding="utf-8") as fh:
        main = yaml.safe_load(fh)
    vault_copy = next(t for t in main if "unvault" in str(t.get("ansible.builtin.copy", {}).get("content", "")))
    assert vault_copy["when"] == "vpn_client_enrolment == 'bundle'"
