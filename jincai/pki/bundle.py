"""A budget unit's client bundle: what the unit's technician installs on its gateway.

``vpn/bundles/<code>.tar.gz`` (mode 0600): ``swanctl/conf.d/province.conf`` (the connection to its
concentrator), ``swanctl/private/<code>.key`` (none for a unit that enrolled by CSR: it keeps its own
key), ``swanctl/x509/<code>.crt``, ``swanctl/x509ca/province-ca.crt`` and ``README.txt``
(:func:`pack`; written by :meth:`jincai.pki.registry.UnitRegistry.bundle`).
"""

import functools
import io
import os
import tarfile

import jinja2
import yaml

from jincai import ROOT
from jincai.policy import ipsec
from jincai.source.model import VPN_KINDS

ROLE = os.path.join(ROOT, "roles", "vpn_client")

README = """{what} {code} ({name}): VPN to the province (strongSwan, IKEv2, certificate)

1. On the unit's gateway (Debian 12): apt-get install charon-systemd strongswan-swanctl
   libstrongswan-standard-plugins
2. Copy swanctl/ of this bundle over /etc/swanctl/ (the key stays mode 0600, owner root), then
   systemctl enable --now strongswan && swanctl --load-all
3. Check: swanctl --list-sas shows "province" ESTABLISHED with virtual IP {address}.
   The concentrator is {server}: allow UDP 500 and 4500 outbound to it.
4. Reachable at the province through the tunnel: {apps}; nothing else.
Keep the key secret. A lost or leaked key must be reported to the province at once: the certificate
is then revoked and a new bundle issued.
"""


CSR_NOTE = """
This unit enrolled with its own key (CSR): the bundle holds no private key. Keep the key you generated
in swanctl/private/{code}.key on the gateway (mode 0600); for a new key send a new CSR to the province.
"""


@functools.lru_cache(maxsize=1)
def _role_template():
    """The vpn_client role's connection template and the role defaults it reads (rendered over the
    IPsec policy, as Ansible resolves them), loaded once per process."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(ROLE, "templates")), trim_blocks=True,
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701
    with open(os.path.join(ROLE, "defaults", "main.yml"), encoding="utf-8") as fh:
        defaults = yaml.safe_load(fh)
    policy = ipsec.ansible_vars()
    role = {name: env.from_string(str(defaults[name])).render(policy)
            for name in ("vpn_client_proposals", "vpn_client_esp_proposals", "vpn_client_dpd_delay")}
    return env.get_template("province.conf.j2"), role


def client_conf(entry, server_identity, server_address, remote_ts):
    """The unit's connection to its concentrator (``swanctl/conf.d/province.conf``): the vpn_client role's
    own template (roles/vpn_client/templates/province.conf.j2, what the role renders on the lab's
    clients) with the role's defaults (proposals from jincai_ipsec, DPD) and the kernel's ESP (a
    unit's gateway is a Debian host whose kernel has it; the lab's kernel does not, hence the role's
    probe)."""
    template, role = _role_template()
    return template.render(
        ansible_managed=f"jincai pki bundle {entry['code']}", vpn_client_code=entry["code"],
        _vpn_client_unit=entry, _vpn_client_registry={"server_identity": server_identity},
        _vpn_client_server=server_address, _vpn_client_remote_ts=remote_ts, _vpn_client_backend="kernel", **role)


def pack(entry, key, cert, ca_pem, server_identity, server_address, remote_ts):
    """The bundle of the unit of registry entry *entry* as ``.tar.gz`` bytes: *key* its private key
    (PEM, None for a CSR unit), *cert* its certificate and *ca_pem* the CA's (PEM), reaching *remote_ts*
    through the concentrator *server_address* that presents *server_identity*."""
    code = entry["code"]
    csr_unit = entry.get("enrolment") == "csr"
    conf = client_conf(entry, server_identity, server_address, remote_ts)
    what = VPN_KINDS[entry.get("kind", "budget_unit")].ou.capitalize()  # Budget unit, Township finance office
    readme = README.format(what=what, code=code, name=entry["name"], address=entry["address"], server=server_address,
                           apps=", ".join(entry["apps"]))
    if csr_unit:
        readme += CSR_NOTE.format(code=code)
    files = [(f"{code}/swanctl/conf.d/province.conf", conf.encode(), 0o644),
             *([] if csr_unit else [(f"{code}/swanctl/private/{code}.key", key, 0o600)]),
             (f"{code}/swanctl/x509/{code}.crt", cert, 0o644),
             (f"{code}/swanctl/x509ca/province-ca.crt", ca_pem, 0o644),
             (f"{code}/README.txt", readme.encode(), 0o644)]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data, mode in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
