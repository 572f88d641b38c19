"""The units' keys at rest, one ansible-vault file per batch (issue 16, jincai.pki.keys): a batch costs
one vault encryption, each unit's key is the one its certificate certifies, a revoked, moved or re-keyed
unit's key is in no vault any more, an older registry (one vault per unit) still works, and
roles/vpn_client's key task, templated by Ansible itself, renders the unit's own key."""

import json
import os
import tarfile
import warnings

import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from jincai import ROOT, pki
from jincai.pki import batch, keys, placement, registry, store, vault

PASSWORD = b"unit-test-password"  # conftest's pkidir fixture
PLAN = {"pool": "198.18.160.0/27", "apps": ["budget", "treasury"], "lan": "198.18.0.0/24", "site": "220000",
        "domain": "lab.jincai.test", "concentrator": {"name": "220000-vpn", "address": "198.18.232.1"},
        "clients": []}
CITY = dict(PLAN, pool="198.18.192.0/27", site="220100", registry="vpn/220100", lan="198.18.16.0/24",
            concentrator={"name": "220100-vpn", "address": "198.18.232.2"})
REGISTRIES = {"vpn": {"concentrator": "220000-vpn", "server": "198.18.232.1", "lans": {"220000": "198.18.0.0/24"}},
              "vpn/220100": {"concentrator": "220100-vpn", "server": "198.18.232.2",
                             "lans": {"220100": "198.18.16.0/24"}}}
PUB = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo


def _rows(n, prefix="bu"):
    return [{"code": f"{prefix}{i:04d}", "name": f"unit {i}"} for i in range(1, n + 1)]


def _plain(path):
    """Decrypt a vault file with Ansible's own VaultLib (not jincai's wrapper): what ansible-vault reads."""
    return VaultLib([("default", VaultSecret(PASSWORD))]).decrypt(path.read_bytes()).decode()


def _every_vaulted_key(pkidir):
    """``{(vault file, code): PEM}`` of every unit key in every vault under the PKI directory."""
    found = {}
    for path in pkidir.rglob("*.vault"):
        if path.name == "ca.key.vault":
            continue
        text = _plain(path)
        if text.startswith("-----BEGIN"):
            found[(path, path.name[:-len(".key.vault")])] = text
        else:
            found.update({(path, code): pem for code, pem in json.loads(text).items()})
    return found


def _matches(pem, cert_path):
    key = serialization.load_pem_private_key(pem.encode() if isinstance(pem, str) else pem, None)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return key.public_key().public_bytes(*PUB) == cert.public_key().public_bytes(*PUB)


@pytest.fixture()
def encryptions(monkeypatch):
    """Count the vault encryptions and decryptions (each one PBKDF2) of jincai's vault."""
    calls = {"encrypt": 0, "decrypt": 0}
    enc, dec = vault.Vault.encrypt, vault.Vault.decrypt

    def counted_encrypt(self, data):
        calls["encrypt"] += 1
        return enc(self, data)

    def counted_decrypt(self, data, where="vault"):
        calls["decrypt"] += 1
        return dec(self, data, where)

    monkeypatch.setattr(vault.Vault, "encrypt", counted_encrypt)
    monkeypatch.setattr(vault.Vault, "decrypt", counted_decrypt)
    return calls


def test_a_batch_of_n_units_costs_one_vault_encryption_and_its_bundles_none(pkidir, encryptions):
    reg = registry.UnitRegistry(PLAN)
    encryptions.update(encrypt=0, decrypt=0)  # the CA's own key (created and read once) is not the batch's
    assert len(reg.add_many(_rows(24))) == 24
    assert encryptions["encrypt"] == 1
    reg.save()
    for code in reg.units:
        reg.bundle(code)
    assert encryptions == {"encrypt": 1, "decrypt": 0}  # the bundles take the keys this command wrote
    vaults = list((pkidir / "vpn" / "keys").glob("*.vault"))
    assert len(vaults) == 1 and oct(vaults[0].stat().st_mode & 0o777) == "0o600"
    assert {e["key_vault"] for e in reg.units.values()} == {os.path.join("keys", vaults[0].name)}
    assert not list((pkidir / "vpn" / "units").glob("*.key.vault"))
    # a rerun of the same batch writes nothing, encrypts nothing
    again = registry.UnitRegistry(PLAN)
    encryptions.update(encrypt=0)
    assert again.add_many(_rows(24)) == [] and encryptions["encrypt"] == 0


def test_each_units_key_in_its_batch_vault_is_the_key_its_certificate_certifies(pkidir):
    reg = registry.UnitRegistry(PLAN)
    reg.add_many(_rows(6))
    reg.add("bu0100", "alone")  # a single add: a vault of its own
    reg.save()
    found = _every_vaulted_key(pkidir)
    assert sorted(code for _, code in found) == sorted(reg.units)
    for (path, code), pem in found.items():
        assert os.path.relpath(path, pkidir / "vpn") == reg.units[code]["key_vault"]
        assert _matches(pem, pkidir / "vpn" / "units" / f"{code}.crt"), code
    assert reg.units["bu0100"]["key_vault"] != reg.units["bu0001"]["key_vault"]
    # the bundle of a later command decrypts the vault (once for the batch) and holds the same key
    fresh = registry.UnitRegistry(PLAN)
    with tarfile.open(fresh.bundle("bu0003", force=True)) as tar:
        key = tar.extractfile("bu0003/swanctl/private/bu0003.key").read()
    assert _matches(key, pkidir / "vpn" / "units" / "bu0003.crt")


def test_a_revoked_units_key_is_in_no_vault_and_a_batch_left_empty_is_removed(pkidir, encryptions):
    regs = [registry.UnitRegistry(PLAN)]
    regs[0].add_many(_rows(5))
    regs[0].add("bu0100", "alone")
    regs[0].save()
    before = _every_vaulted_key(pkidir)
    encryptions.update(encrypt=0)
    done = batch.offboard([PLAN], str(pkidir), ["bu0002", "bu0004", "bu0100"])
    assert done == {"220000-vpn": ["bu0002", "bu0004", "bu0100"]}
    assert encryptions["encrypt"] == 1  # the batch's vault rewritten once for both of its units
    after = _every_vaulted_key(pkidir)
    assert sorted(code for _, code in after) == ["bu0001", "bu0003", "bu0005"]
    assert all(after[k] == before[k] for k in after)  # the others' keys unchanged
    reg = registry.UnitRegistry(PLAN)
    assert all("key_vault" not in reg.units[c] for c in ("bu0002", "bu0004", "bu0100"))
    assert len(list((pkidir / "vpn" / "keys").glob("*.vault"))) == 1  # bu0100's own vault is gone
    with pytest.raises(pki.PkiError, match="bu0002: not an active unit"):
        reg.bundle("bu0002")


def test_a_moved_or_rekeyed_units_old_key_is_in_no_vault(pkidir):
    reg = registry.UnitRegistry(PLAN)
    reg.add_many(_rows(3))
    reg.save()
    old = {code: pem for (_, code), pem in _every_vaulted_key(pkidir).items()}
    batch.run([PLAN, CITY], str(pkidir), [{"code": "bu0001", "name": "unit 1", "concentrator": "220100"}],
              out=lambda *_: None)
    moved = registry.UnitRegistry(CITY)
    found = _every_vaulted_key(pkidir)
    [(where, pem)] = [(p, k) for (p, c), k in found.items() if c == "bu0001"]
    assert where.parent == pkidir / "vpn" / "220100" / "keys" and pem != old["bu0001"]
    assert _matches(pem, pkidir / "vpn" / "220100" / "units" / "bu0001.crt")
    assert moved.units["bu0001"]["key_vault"] == os.path.relpath(where, pkidir / "vpn" / "220100")
    assert old["bu0001"] not in found.values()

    reg = registry.UnitRegistry(PLAN)
    assert reg.renew(["bu0002", "bu0003"], rekey=True) == ["bu0002", "bu0003"]
    reg.save()
    found = {code: pem for (_, code), pem in _every_vaulted_key(pkidir).items()}
    for code in ("bu0002", "bu0003"):
        assert found[code] != old[code] and old[code] not in found.values()
        assert _matches(found[code], pkidir / "vpn" / "units" / f"{code}.crt")
    assert reg.units["bu0002"]["key_vault"] == reg.units["bu0003"]["key_vault"]  # one vault for the re-key
    assert len(list((pkidir / "vpn" / "keys").glob("*.vault"))) == 1  # the first batch's, emptied, is gone
    with tarfile.open(reg.bundle("bu0002")) as tar:
        assert _matches(tar.extractfile("bu0002/swanctl/private/bu0002.key").read(), pkidir / "vpn" / "units" / "bu0002.crt")


def _to_older_layout(pkidir, reg_dir="vpn"):
    """Rewrite a registry as an older jincai wrote it: one vault per unit (``units/<code>.key.vault``,
    the PEM itself) and entries without ``key_vault``."""
    base = pkidir / reg_dir
    doc = json.loads((base / "units.json").read_text())
    lib = VaultLib([("default", VaultSecret(PASSWORD))])
    for (path, code), pem in _every_vaulted_key(pkidir).items():
        if path.parent == base / "keys":
            (base / "units" / f"{code}.key.vault").write_bytes(lib.encrypt(pem.encode()))
    for path in (base / "keys").glob("*.vault"):
        path.unlink()
    for entry in doc["units"]:
        entry.pop("key_vault", None)
    (base / "units.json").write_text(json.dumps(doc, indent=1, sort_keys=True))


def test_an_older_registry_with_one_vault_per_unit_still_works(pkidir):
    reg = registry.UnitRegistry(PLAN)
    reg.add_many(_rows(3))
    reg.save()
    _to_older_layout(pkidir)
    units = pkidir / "vpn" / "units"
    reg = registry.UnitRegistry(PLAN)
    assert keys.key_vault(reg.units["bu0001"]) == os.path.join("units", "bu0001.key.vault")
    # bundle and renewal read the per-unit vault; the renewed certificate certifies the same key
    with tarfile.open(reg.bundle("bu0001", force=True)) as tar:
        assert _matches(tar.extractfile("bu0001/swanctl/private/bu0001.key").read(), units / "bu0001.crt")
    assert reg.renew(["bu0001"]) == ["bu0001"]
    assert _matches(_plain(units / "bu0001.key.vault"), units / "bu0001.crt")
    # the role finds the per-unit vault through the placement
    assert placement.vpn_client_placement(str(pkidir), "bu0002", REGISTRIES)["key_vault"] == str(units / "bu0002.key.vault")
    # new units join as a batch beside the older vaults; a revoked unit's per-unit vault is removed
    reg.add_many(_rows(2, prefix="nu"))
    reg.revoke("bu0002")
    reg.save()
    assert not (units / "bu0002.key.vault").exists() and (units / "bu0003.key.vault").exists()
    assert sorted(c for _, c in _every_vaulted_key(pkidir)) == ["bu0001", "bu0003", "nu0001", "nu0002"]
    # a unit revoked by an older jincai (which left its vault) loses it at the next save
    stale = VaultLib([("default", VaultSecret(PASSWORD))]).encrypt(b"-----BEGIN PRIVATE KEY-----\nold\n")
    (units / "bu0002.key.vault").write_bytes(stale)
    registry.UnitRegistry(PLAN).save()
    assert not (units / "bu0002.key.vault").exists()


def test_a_vault_without_the_units_key_is_a_clear_error_naming_the_file(pkidir):
    reg = registry.UnitRegistry(PLAN)
    reg.add_many(_rows(2))
    reg.save()
    doc = json.loads((pkidir / "vpn" / "units.json").read_text())
    doc["units"][1]["key_vault"] = "keys/nowhere.vault"
    (pkidir / "vpn" / "units.json").write_text(json.dumps(doc))
    with pytest.raises(pki.PkiError, match=r"vpn/keys/nowhere.vault: missing: the vault of unit bu0002's key"):
        registry.UnitRegistry(PLAN).bundle("bu0002", force=True)
    with pytest.raises(pki.PkiError, match=r"batch.vault: holds no key of unit bu9999 \(units.json: key_vault"):
        keys.pick(json.dumps({"bu0001": "-----BEGIN PRIVATE KEY-----\n"}), "bu9999", "batch.vault")


def _key_task():
    with open(os.path.join(ROOT, "roles", "vpn_client", "tasks", "main.yml"), encoding="utf-8") as fh:
        tasks = yaml.safe_load(fh)
    return next(t for t in tasks if t["name"].startswith("Install the unit's private key"))


def _ansible_render(source, variables):
    """Template ``source`` with Ansible's own templar, its plugins (the unvault lookup, the repository's
    filters) and the test's vault password: what the key task's ``content`` becomes on the control node."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.plugins.loader import filter_loader, init_plugin_loader
    from ansible.template import Templar, trust_as_template

    with warnings.catch_warnings():  # another test module of this worker may have initialised it
        warnings.simplefilter("ignore", UserWarning)
        init_plugin_loader()
    filter_loader.add_directory(os.path.join(ROOT, "plugins", "filter"))
    loader = DataLoader()
    loader.set_vault_secrets([("default", VaultSecret(PASSWORD))])
    return Templar(loader=loader, variables=variables).template(trust_as_template(source))


def test_the_roles_key_task_keeps_the_key_out_of_logs_and_files():
    task = _key_task()
    copy = task["ansible.builtin.copy"]
    assert task["no_log"] is True and task["diff"] is False and "check_mode" not in task
    assert copy["mode"] == "0600" and "src" not in copy and "decrypt" not in copy
    assert "ansible.builtin.unvault" in copy["content"] and "vpn_unit_key" in copy["content"]
    assert task["when"] == "vpn_client_enrolment == 'bundle'"
    with open(os.path.join(ROOT, "roles", "vpn_client", "tasks", "main.yml"), encoding="utf-8") as fh:
        tasks = yaml.safe_load(fh)
    for t in tasks:  # no other task reads a key vault (a fact would keep the key in hostvars)
        assert t["name"] == task["name"] or "unvault" not in json.dumps(t) and "vpn_unit_key" not in json.dumps(t), t["name"]


@pytest.mark.parametrize("layout", ["batch", "older"])
def test_the_roles_key_task_renders_the_units_own_key(pkidir, layout):
    reg = registry.UnitRegistry(PLAN)
    reg.add_many(_rows(4))
    reg.save()
    if layout == "older":
        _to_older_layout(pkidir)
    content = _key_task()["ansible.builtin.copy"]["content"]
    for code in ("bu0001", "bu0003"):
        where = placement.vpn_client_placement(str(pkidir), code, REGISTRIES)
        assert where["error"] == "" and os.path.exists(where["key_vault"])
        out = _ansible_render(content, {"_vpn_client_registry": where, "vpn_client_code": code})
        assert out.startswith("-----BEGIN PRIVATE KEY-----\n") and out.endswith("-----END PRIVATE KEY-----\n")
        assert _matches(out, pkidir / "vpn" / "units" / f"{code}.crt"), code
        # byte for byte what the copy module's decrypt of an older per-unit vault installed: no change
        assert out.encode() == store.key_pem(serialization.load_pem_private_key(out.encode(), None))
