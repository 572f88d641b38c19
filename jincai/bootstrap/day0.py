"""``jincai bootstrap CODE --day0 [-o DIR]``: the kit for the in-band first contact of a new site.

Production management is in-band (``plan.management.mode: inband``): the province reaches a county's
router and servers only over the WAN, so before ``jincai bootstrap CODE`` can run the technician must
bring the router onto the WAN and give the servers an address. This writes, from the source of truth,
with no host contacted:

- ``<router>.day0.txt`` (vendor platforms, pasted on the console) or ``<router>.day0.sh`` (FRR, run as
  root): the uplink address, the loopback (the in-band management address), the LAN address (the
  servers' gateway: their in-band management addresses are on the LAN, so the province reaches them
  only through it), OSPF towards the province (the LAN passive), the management ACL, SSH, and the
  netmiko account with the automation key. It is the platform's own template
  (templates/router/<platform>.j2) rendered with the day-0 view of the site (uplink, LAN and loopback
  only, no metro policy, no SNMP, no static routes) plus the account block of templates/router/day0/,
  so day 0 and the regular rollout write the same lines;
- ``<server>.firstboot.sh`` and ``<server>.preseed.cfg`` per server: address, routes, the automation
  account and its key (templates/day0/);
- ``CHECKLIST.md``: the technician's steps in Chinese and English.

The kit holds public keys only: no password, no SNMP key, no private key.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import struct
import sys

import jinja2
import yaml

from jincai import ROOT
from jincai.bootstrap.preflight import BootstrapError, resolve_site

ROUTER_TEMPLATES = os.path.join(ROOT, "templates", "router")
DAY0_TEMPLATES = os.path.join(ROOT, "templates", "day0")
POLICY = os.path.join(ROOT, "policy", "metro.yml")
DEFAULT_INVENTORY = os.path.join(ROOT, "inventories", "jilin")
KEY_NAME = "jincai-netops"

#: What each platform's day-0 account block can load: vendor routers take an RSA key (Huawei
#: ``rsa peer-public-key``, H3C ``public-key peer``, Cisco ``ip ssh pubkey-chain``); FRR is Linux.
KEY_TYPES = {
    "huawei_vrp": ("ssh-rsa",),
    "huawei_vrpv8": ("ssh-rsa",),
    "h3c_comware": ("ssh-rsa",),
    "cisco_ios": ("ssh-rsa",),
    "frr": ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"),
}

#: Per platform: how the technician enters configuration, saves it, checks OSPF, creates the host key.
CONSOLE = {
    "huawei_vrp": {"enter_zh": "输入 `system-view` 后", "enter_en": "Type `system-view`, then",
                   "save_command": "return, then save (answer y)", "ospf_command": "display ospf peer brief",
                   "host_key_command": "rsa local-key-pair create"},
    "huawei_vrpv8": {"enter_zh": "输入 `system-view` 后", "enter_en": "Type `system-view`, then",
                     "save_command": "commit, then return and save (answer y)",
                     "ospf_command": "display ospf peer brief", "host_key_command": "rsa local-key-pair create"},
    "h3c_comware": {"enter_zh": "输入 `system-view` 后", "enter_en": "Type `system-view`, then",
                    "save_command": "save force", "ospf_command": "display ospf peer",
                    "host_key_command": "public-key local create rsa"},
    "cisco_ios": {"enter_zh": "输入 `configure terminal` 后", "enter_en": "Type `configure terminal`, then",
                  "save_command": "copy running-config startup-config", "ospf_command": "show ip ospf neighbor",
                  "host_key_command": "crypto key generate rsa modulus 2048"},
    "frr": {"enter_zh": "以 root 登录后", "enter_en": "Log in as root, then",
            "save_command": "(the script writes /etc/frr/frr.conf)", "ospf_command": "vtysh -c 'show ip ospf neighbor'",
            "host_key_command": ""},
}

_MASKS = {n: ".".join(str((0xFFFFFFFF << (32 - n) >> s) & 0xFF) for s in (24, 16, 8, 0)) for n in range(33)}


# ---------------------------------------------------------------- keys


def parse_public_key(text, where):
    """Return {type, b64, comment, line, fingerprint} of one OpenSSH public key line; refuse anything else."""
    text = (text or "").strip()
    if "PRIVATE KEY" in text:
        raise BootstrapError(f"{where}: is a private key; the day-0 kit takes the public key only (.pub)",
                             f"pass the public key: ssh-keygen -y -f KEY > KEY.pub")
    parts = text.split()
    if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-")):
        raise BootstrapError(f"{where}: not an OpenSSH public key line (type base64 [comment])",
                             "pass the automation key's .pub file")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError:
        raise BootstrapError(f"{where}: the key's base64 is damaged", "pass the automation key's .pub file") from None
    fp = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return {"type": parts[0], "b64": parts[1], "comment": " ".join(parts[2:]), "line": " ".join(parts[:3]),
            "blob": blob, "fingerprint": f"SHA256:{fp}"}


def _der_len(n):
    if n < 0x80:
        return bytes([n])
    out = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(out)]) + out


def _der(tag, body):
    return bytes([tag]) + _der_len(len(body)) + body


def _der_int(value):
    raw = value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
    return _der(0x02, b"\x00" + raw if raw[0] & 0x80 else raw)


def rsa_spki_der(blob):
    """The X.509 SubjectPublicKeyInfo (DER) of an OpenSSH ``ssh-rsa`` key blob (what H3C displays)."""
    fields, pos = [], 0
    while pos < len(blob):
        (size,) = struct.unpack(">I", blob[pos:pos + 4])
        fields.append(blob[pos + 4:pos + 4 + size])
        pos += 4 + size
    if len(fields) != 3 or fields[0] != b"ssh-rsa":
        raise ValueError("not an ssh-rsa key blob")
    e, n = (int.from_bytes(f, "big") for f in fields[1:])
    rsa_key = _der(0x30, _der_int(n) + _der_int(e))
    algorithm = _der(0x30, _der(0x06, bytes.fromhex("2a864886f70d010101")) + b"\x05\x00")
    return _der(0x30, algorithm + _der(0x03, b"\x00" + rsa_key))


def _chunks(text, size):
    return [text[i:i + size] for i in range(0, len(text), size)]


def _read_key(path, where):
    try:
        with open(os.path.expanduser(path), encoding="ascii") as fh:
            return parse_public_key(fh.read(), path)
    except FileNotFoundError:
        raise BootstrapError(f"{path}: the {where} public key does not exist on this control node",
                             "install the province's automation key pair, or pass --router-key/--server-key") from None


def default_key_paths(inventory_dir):
    """(router key .pub, server key .pub) from the inventory's group_vars (netmiko key, SSH key)."""
    found = {}
    for rel in ("all.yml", "all", "routers.yml", "routers"):
        path = os.path.join(inventory_dir, "group_vars", rel)
        files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".yml")) \
            if os.path.isdir(path) else ([path] if os.path.isfile(path) else [])
        for f in files:
            with open(f, encoding="utf-8") as fh:
                try:
                    doc = yaml.safe_load(fh) or {}
                except yaml.YAMLError:
                    doc = {}  # an encrypted vault file: no key paths there
            if isinstance(doc, dict):
                for k in ("jincai_netmiko_key_file", "ansible_ssh_private_key_file"):
                    if k in doc:
                        found[k] = doc[k]
    server = found.get("ansible_ssh_private_key_file")
    router = found.get("jincai_netmiko_key_file", server)
    return (router + ".pub" if router else None), (server + ".pub" if server else None)


# ---------------------------------------------------------------- rendering


def _env():
    return jinja2.Environment(loader=jinja2.FileSystemLoader([ROUTER_TEMPLATES, DAY0_TEMPLATES]), trim_blocks=True,
                              keep_trailing_newline=True, undefined=jinja2.StrictUndefined)


def router_day0_vars(site, key, automation_user, netops_user):
    """The router's host vars as the day-0 view: uplink, LAN and loopback only, no metro, no static routes.

    The LAN is part of it because the servers' in-band management addresses are on it: without the
    router's LAN address (their gateway) the province could reach the router but no server."""
    router = site.router
    hv = dict(router.hostvars)
    uplinks = [dict(i) for i in site.uplinks]
    if not uplinks:
        raise BootstrapError(f"{router.name}: no uplink interface in the source of truth",
                             "a county's router needs its uplink to the city (jincai site show)", router.name)
    platform = hv["jincai_router"]["platform"]
    if key["type"] not in KEY_TYPES[platform]:
        raise BootstrapError(f"{router.name} ({platform}): the automation key is {key['type']}; the {platform} "
                             f"day-0 config loads {', '.join(KEY_TYPES[platform])} only",
                             "pass an RSA public key with --router-key (the netmiko key for vendor routers)",
                             router.name)
    uplink = uplinks[0]
    peer_addr = site.parent_address or ""
    with open(POLICY, encoding="utf-8") as fh:
        policy = yaml.safe_load(fh)["metro_policy"]
    ext = "sh" if platform == "frr" else "txt"
    lans = [i for i in hv["jincai_interfaces"] if i["role"] == "lan"]
    hv.update(jincai_interfaces=uplinks + lans, jincai_parties=[],
              jincai_router=dict(hv["jincai_router"], static_routes=[]), router_metro_policy=policy,
              router_day0={"user": netops_user, "automation_user": automation_user, "key": key["line"],
                           "key_name": KEY_NAME, "key_b64_lines": _chunks(key["b64"], 72),
                           "key_der_hex_lines": _chunks(rsa_spki_der(key["blob"]).hex().upper(), 64)
                           if key["type"] == "ssh-rsa" else [],
                           "uplink": uplink, "peer_address": peer_addr, "file": f"{router.name}.day0.{ext}"})
    return hv


def render_router(site, key, automation_user="jincai", netops_user="netops"):
    """(file name, text, vars) of the router's day-0 configuration."""
    hv = router_day0_vars(site, key, automation_user, netops_user)
    platform = hv["jincai_router"]["platform"]
    template = "day0/frr.sh.j2" if platform == "frr" else f"{platform}.j2"
    return hv["router_day0"]["file"], _env().get_template(template).render(**hv), hv


def render_server(host, key, automation_user="jincai"):
    """[(file name, text)] of one server's first-boot script and preseed."""
    hv = dict(host.hostvars, inventory_hostname=host.name)
    lan = [i for i in hv["jincai_interfaces"] if i["role"] == "lan"] or hv["jincai_interfaces"]
    iface = lan[0]
    gateway = next((r["via"] for r in hv.get("jincai_routes") or [] if r["to"] == "default"), "")
    ctx = dict(hv, day0_iface=iface, day0_user=automation_user, day0_key=key["line"], day0_gateway=gateway,
               day0_netmask=_MASKS[int(iface["address"].split("/")[1])], day0_firstboot=f"{host.name}.firstboot.sh")
    env = _env()
    firstboot = env.get_template("server-firstboot.sh.j2").render(**ctx)
    ctx["day0_firstboot_b64"] = base64.b64encode(firstboot.encode()).decode()
    return [(f"{host.name}.firstboot.sh", firstboot),
            (f"{host.name}.preseed.cfg", env.get_template("server-preseed.cfg.j2").render(**ctx))]


def build_kit(inventory_dir, code, router_key=None, server_key=None, site=None):
    """{file name: text} of the site's day-0 kit. Reads the source of truth and the public keys only
    (``site``: the site already resolved from that source)."""
    site = site or resolve_site(inventory_dir, code)
    if site.router is None:
        raise BootstrapError(f"site {code}: has no router in the source of truth", "check jincai site show " + code)
    rdef, sdef = default_key_paths(site.inventory)
    rkey = _read_key(router_key or rdef or "", "router (netmiko)")
    skey = _read_key(server_key or sdef or "", "server (automation)")
    files, hosts = {}, []
    name, text, rhv = render_router(site, rkey)
    files[name] = text
    hosts.append({"name": site.router.name, "address": site.router.address, "files": [name]})
    servers = []
    for host in site.servers:
        out = render_server(host, skey)
        files.update(out)
        hosts.append({"name": host.name, "address": host.address, "files": [f for f, _ in out]})
        servers.append({"name": host.name, "address": host.address, "firstboot": out[0][0], "preseed": out[1][0],
                        "gateway": next((r["via"] for r in host.hostvars.get("jincai_routes") or []
                                         if r["to"] == "default"), "")})
    platform = rhv["jincai_router"]["platform"]
    router = dict(CONSOLE[platform], name=site.router.name, platform=platform, file=name,
                  uplink=rhv["router_day0"]["uplink"], peer_address=rhv["router_day0"]["peer_address"])
    keys = [{"use": "router / 路由器 (netmiko)", **{k: rkey[k] for k in ("type", "comment", "fingerprint")}},
            {"use": "servers / 服务器 (SSH)", **{k: skey[k] for k in ("type", "comment", "fingerprint")}}]
    files["CHECKLIST.md"] = _env().get_template("checklist.md.j2").render(
        site=site, inventory=os.path.relpath(site.inventory, ROOT) if site.inventory.startswith(ROOT)
        else site.inventory, hosts=hosts, router=router, servers=servers, keys=keys)
    return files


def write_kit(out_dir, files):
    """Write the kit into ``out_dir`` (created 0755; files 0644, scripts 0755); return the paths."""
    os.makedirs(out_dir, mode=0o755, exist_ok=True)
    paths = []
    for name, text in sorted(files.items()):
        path = os.path.join(out_dir, name)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(path, 0o755 if name.endswith(".sh") else 0o644)
        paths.append(path)
    return paths


def build_parser():
    """The command line of ``jincai bootstrap CODE --day0``."""
    p = argparse.ArgumentParser(prog="jincai bootstrap CODE --day0", description=__doc__.splitlines()[0])
    p.add_argument("code", help="the site's GB/T 2260 code (added with jincai site add CODE --write)")
    p.add_argument("--day0", action="store_true", required=True, help="write the day-0 kit (contacts nothing)")
    p.add_argument("-i", "--inventory", default=DEFAULT_INVENTORY, help="inventory directory (default: %(default)s)")
    p.add_argument("-o", "--output", help="kit directory (default: reports/bootstrap/CODE/day0)")
    p.add_argument("--router-key", help="the router's automation public key (default: jincai_netmiko_key_file.pub)")
    p.add_argument("--server-key", help="the servers' automation public key (default: ansible_ssh_private_key_file.pub)")
    return p


def main(argv=None):
    """Entry point; returns 0 when the kit is written, 1 on bad input."""
    args = build_parser().parse_args(argv)
    out = args.output or os.path.join(ROOT, "reports", "bootstrap", args.code, "day0")
    try:
        site = resolve_site(args.inventory, args.code)
        files = build_kit(args.inventory, args.code, args.router_key, args.server_key, site=site)
    except BootstrapError as exc:
        print(f"jincai bootstrap --day0: {exc.text()}", file=sys.stderr)
        return 1
    for path in write_kit(out, files):
        print(path)
    print(f"day-0 kit of site {args.code}: {len(files)} files in {out}; hand CHECKLIST.md to the technician")
    parent = site.parent_router
    if parent:
        # the technician's "ping the city router" and OSPF need the city's end of the new line first
        allow = " -e jincai_allow_production=true" if site.environment == "production" else ""
        print(f"before day 0, the province pushes {parent}'s end of the new line (it is on the WAN already): "
              f"ansible-playbook playbooks/routers.yml -i {args.inventory} --limit {parent}{allow}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
