"""A budget unit's client bundle: what the unit's technician installs on its gateway.

``vpn/bundles/<code>.tar.gz`` (mode 0600): ``swanctl/conf.d/province.conf`` (the connection to its
concentrator), ``swanctl/private/<code>.key`` (none for a unit that enrolled by CSR: it keeps its own
key), ``swanctl/x509/<code>.crt``, ``swanctl/x509ca/province-ca.crt`` and ``README.txt``
(:func:`pack`; written by :meth:`jincai.pki.registry.UnitRegistry.bundle`).
"""

import io
import tarfile

README = """Budget unit {code} ({name}): VPN to the province (strongSwan, IKEv2, certificate)

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


def client_conf(code, identity, server_identity, server_address, remote_ts):
    """Return the reference swanctl.conf of one budget unit (roles/vpn_client renders the same)."""
    return f"""# Budget unit {code} -> province VPN concentrator (jincai pki bundle)
connections {{
  province {{
    version = 2
    remote_addrs = {server_address}
    vips = 0.0.0.0
    proposals = aes256gcm16-prfsha384-ecp384
    dpd_delay = 30s
    keyingtries = 0
    local {{
      auth = pubkey
      certs = {code}.crt
      id = {identity}
    }}
    remote {{
      auth = pubkey
      id = {server_identity}
      cacerts = province-ca.crt
    }}
    children {{
      province {{
        remote_ts = {remote_ts}
        esp_proposals = aes256-sha384-ecp384
        start_action = start
        dpd_action = restart
        close_action = start
      }}
    }}
  }}
}}
"""


def pack(entry, key, cert, ca_pem, server_identity, server_address, remote_ts):
    """The bundle of the unit of registry entry *entry* as ``.tar.gz`` bytes: *key* its private key
    (PEM, None for a CSR unit), *cert* its certificate and *ca_pem* the CA's (PEM), reaching *remote_ts*
    through the concentrator *server_address* that presents *server_identity*."""
    code = entry["code"]
    csr_unit = entry.get("enrolment") == "csr"
    conf = client_conf(code, entry["identity"], server_identity, server_address, remote_ts)
    readme = README.format(code=code, name=entry["name"], address=entry["address"], server=server_address,
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
