"""Benchmark: N concurrent tunnels of real budget units to the lab's province concentrator (issue 16).

On the provisioned lab (`jincai lab up` + playbooks/vpn.yml, with at least N province units onboarded
besides the lab's own clients), the benchmark

1. makes a network namespace of its own, ``jlab-bench-vpn`` (the lab's prefix: `jincai lab down`
   removes it too), cabled to the lab's VPN access segment (the bridge of ``vpnaccess-<site>`` in
   ``jlab-sw``) with ``--sources`` K free addresses of the plan's ``vpn_access`` network (not in the
   source, not on any interface of any namespace; inside the lab's 198.18.0.0/15 only);
2. runs one charon there: the host's strongSwan from Debian (``charon-systemd``, installed with apt when
   missing), with a strongswan.conf, swanctl directory and vici socket of its own
   (``STRONGSWAN_CONF``, ``SWANCTL_DIR``) in a 0700 temporary directory, and loads one connection per
   unit for N real units of the province registry (their certificates, and their keys decrypted with
   the lab vault, as roles/vpn_client and ``jincai pki bundle`` get them); each connection is the
   vpn_client role's own template (:func:`jincai.pki.bundle.client_conf`) renamed after the unit;
3. initiates all N, the units spread round-robin over the K source addresses (each connection's
   ``local_addrs``), ``--concurrency`` initiations in flight per source address (kept below the
   concentrator's ``block_threshold`` of half-open IKE_SAs per peer address: K x that in all) and
   polls the concentrator (``swanctl --list-sas`` over the lab's SSH, :func:`jincai.lab.lab.run_on`)
   until N IKE_SAs are ESTABLISHED and N CHILD_SAs INSTALLED; then checks that every unit holds the
   virtual IP of its registry entry, on both sides; the concentrator's charon memory (RSS, PSS) and
   CPU before, at N and after teardown;
4. tears everything down, also when interrupted (SIGINT/SIGTERM/SIGHUP -> ``finally``): its charon is
   stopped (its DELETEs end the SAs; what is left is terminated on the concentrator by name), the
   namespace, switch port and temporary keys removed; and proves the concentrator is as it was: its
   SA count back to the baseline, its configuration fingerprint (files, loaded connections, the
   ``jincai_vpn`` nftables table) unchanged, the lab's own clients still ESTABLISHED if they were.

Nothing on a lab host is changed except transient SAs. Traffic stays inside the lab's 198.18.0.0/15.
Run as root, under the lab lock:
    flock /work/lab.lock .venv/bin/python benchmarks/vpn_tunnels.py [--units 1000] [--concurrency 8] [--sources K]
Quick: ``--units 20``. Exit 1 when a tunnel is missing, an address is wrong, the concentrator was not
restored, or the goal (< 30 s) is missed.
"""

import argparse
import concurrent.futures
import fcntl
import hashlib
import importlib.util
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from itertools import cycle

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jinja2  # noqa: E402
import yaml  # noqa: E402

from jincai import ROOT  # noqa: E402
from jincai.lab import vici  # noqa: E402
from jincai.pki import bundle  # noqa: E402
from jincai.pki import keys as pkikeys  # noqa: E402
from jincai.pki import store  # noqa: E402
from jincai.pki import vault as pkivault  # noqa: E402
from jincai.pki import vpn as vpnplans  # noqa: E402
from jincai.source.model import vpn_access_segment  # noqa: E402

INVENTORY = os.path.join(ROOT, "inventories", "lab")
NETNS = "jlab-bench-vpn"  # the lab's prefix: `jincai lab down` (net.teardown) removes it as well
SWITCH_NS = "jlab-sw"
PORT = "jbvpn0"  # the switch side of the namespace's cable
STANDIN_NS = "jlab-bench-vpnc"  # --stand-in: the concentrator stand-in's namespace (cabled to NETNS only)
STATE = "/run/jincai-bench-vpn.json"  # pids + start times of our charons, our temp dir: a crashed run is undone
RUN_LOCK = "/run/jincai-bench-vpn.lock"  # one run at a time: STATE is only a crashed run's when we hold it
GOAL_S = 30.0
LAB_RANGE = ipaddress.ip_network("198.18.0.0/15")  # every address the benchmark uses (jincai.lab.topology)
MAX_SOURCES = 32  # source addresses in the benchmark's namespace (threads: sources x concurrency)
APT_PACKAGES = ("charon-systemd", "strongswan-swanctl", "libstrongswan-standard-plugins",
                "libcharon-extra-plugins")  # charon, swanctl, openssl (ECDSA, AES-GCM), kernel-libipsec
CHARON = "/usr/sbin/charon-systemd"
SWANCTL = "/usr/sbin/swanctl"
CHARON_PLUGINS = ("random nonce openssl kdf pem pkcs1 pkcs8 x509 revocation constraints pubkey "
                  "kernel-libipsec kernel-netlink socket-default vici")
SWANCTL_PLUGINS = "pem pkcs1 pkcs8 x509 revocation constraints pubkey openssl random nonce"
#: The concentrator's charon (memory, CPU) and its IKE_SA counter, in one cheap round trip (what the
#: benchmark polls: listing every SA each second cost the concentrator's charon more CPU than the tunnels).
PROBE = r"""pid=${JINCAI_CHARON_PID:-$(systemctl show -p MainPID --value strongswan)}
echo "pid $pid"
awk '/^(VmRSS|VmHWM):/{print $1, $2}' /proc/$pid/status
awk '/^Pss:/{print "Pss:", $2}' /proc/$pid/smaps_rollup
echo "cpu $(cut -d' ' -f14,15 /proc/$pid/stat) $(getconf CLK_TCK)"
swanctl --stats 2>/dev/null | grep '^IKE_SAs:'
"""
#: The unit SAs by state (IKE_SAs ESTABLISHED, CHILD_SAs INSTALLED, IKE_SAs CONNECTING): the full list,
#: counted on the concentrator; run when the counter says all may be there, and before and after.
COUNT = r"""swanctl --list-sas --noblock 2>/dev/null | awk '
  /^bu-[^ ]*: #[0-9]+, ESTABLISHED/ {i++} /^bu-[^ ]*: #[0-9]+, CONNECTING/ {h++}
  /^  bu-[^ ]*: #[0-9]+, reqid [0-9]+, INSTALLED/ {c++}
  END {print "sas", i+0, c+0, h+0}'
"""
#: What must be the same after the run: charon's files, the connections it has loaded, the firewall table.
FINGERPRINT = ("{{ cat {conf} {etc}/strongswan.d/*.conf {swanctl}/swanctl.conf {swanctl}/conf.d/*.conf; "
               "ls -l {swanctl}/x509 {swanctl}/x509ca {swanctl}/x509crl; swanctl --list-conns; "
               "nft -s list table ip jincai_vpn; }} 2>&1 | sha256sum | cut -c1-16")



def _log_settings(name, log_path):
    """charon-systemd's logging of a benchmark charon: no journal, one file log ``name`` at ``log_path``."""
    return f"""    journal {{
        default = -1
    }}
    filelog {{
        {name} {{
            path = {log_path}
            flush_line = yes
            default = 1
            net = 0
            enc = 0
        }}
    }}
"""

def log(msg):
    """Print a progress line."""
    print(msg, flush=True)


class BenchError(RuntimeError):
    """The benchmark cannot run (message says what to fix); :func:`main` prints it and exits 2."""

    def __init__(self, msg):
        super().__init__(f"vpn_tunnels: {msg}")


# ------------------------------------------------------------------------------------------------
# Pure parts (tests/unit/test_bench_vpn_tunnels.py)
# ------------------------------------------------------------------------------------------------

def pick_address(network, taken, prefer_from=250):
    """A host address of ``network`` (the plan's vpn_access) not in ``taken``: from ``prefer_from``
    (offset in the network) up to the last host address, then downwards from it (the source's clients
    sit at vpn_access_client_offset + 1.., benchmarks/vpn.py's namespaces at .150-.249)."""
    net = ipaddress.ip_network(network)
    hosts = int(net.broadcast_address) - int(net.network_address) - 1
    start = min(prefer_from, hosts)
    offsets = list(range(start, hosts + 1)) + list(range(start - 1, 0, -1))
    taken = {str(a) for a in taken}
    for off in offsets:
        addr = str(net.network_address + off)
        if addr not in taken:
            return addr
    raise BenchError(f"no free address in {network} (all {hosts} in use)")


def pick_addresses(network, taken, count, prefer_from=250):
    """``count`` distinct free host addresses of ``network`` (:func:`pick_address` each, in its order:
    from ``prefer_from`` up, then down), all inside the lab's 198.18.0.0/15: the benchmark's source
    addresses (``--sources``)."""
    net = ipaddress.ip_network(network)
    if not net.subnet_of(LAB_RANGE):
        raise BenchError(f"the VPN access network {network} is not inside the lab's {LAB_RANGE}: no address of it is used")
    taken, out = {str(a) for a in taken}, []
    for _ in range(count):
        try:
            addr = pick_address(network, taken, prefer_from)
        except BenchError:
            raise BenchError(f"only {len(out)} free addresses in {network} for --sources {count}") from None
        out.append(addr)
        taken.add(addr)
    return out


def assign_sources(units, sources):
    """``{unit code: source address}``: the units (in their order) spread round-robin over ``sources``,
    so every source carries N/K units (within one) and consecutive initiations leave from different
    addresses."""
    return {u["code"]: src for u, src in zip(units, cycle(sources))}


def capped_concurrency(concurrency, block_threshold):
    """Initiations in flight per source address: ``concurrency``, kept below the concentrator's
    ``block_threshold`` (half-open IKE_SAs per peer address: charon drops the excess IKE_SA_INITs,
    which then wait for a retransmission); ``(value, note or None)``."""
    if block_threshold and concurrency >= block_threshold:
        return block_threshold - 1, (f"--concurrency {concurrency} per source address capped at {block_threshold - 1}: "
                                     f"below the concentrator's block_threshold of {block_threshold} half-open IKE_SAs "
                                     "per peer address (more sources give more in flight: --sources)")
    return concurrency, None


def source_spread(sas, assignment):
    """From the concentrator's SAs: ``({source: units established from it}, [(code, expected, seen)])``
    for the benchmark's units (``assignment``: :func:`assign_sources`); proves each tunnel left from its
    own source address (the connection's ``local_addrs``)."""
    counts, wrong = {src: 0 for src in dict.fromkeys(assignment.values())}, []
    for sa in sas:
        code = sa["name"][3:] if sa["name"].startswith("bu-") else None
        if code not in assignment or sa["state"] != "ESTABLISHED":
            continue
        if sa.get("remote_addr") == assignment[code]:
            counts[assignment[code]] += 1
        else:
            wrong.append((code, assignment[code], sa.get("remote_addr")))
    return counts, wrong


def select_units(units, exclude, count, loaded=None):
    """The first ``count`` registry entries (by code) that are active, have a province key (not CSR),
    are not in ``exclude`` (the lab's own client hosts: ``unique = replace`` would cut them off) and,
    when ``loaded`` is given, have a connection loaded on the concentrator. Raises BenchError (with
    what to run) when there are fewer."""
    usable = [u for u in sorted(units, key=lambda e: e["code"])
              if u.get("status") == "active" and u.get("enrolment", "bundle") != "csr"
              and u["code"] not in exclude and (loaded is None or f"bu-{u['code']}" in loaded)]
    if len(usable) < count:
        raise BenchError(
            f"the province registry has {len(usable)} usable units (active, province key, not a lab client"
            f"{', connection loaded on the concentrator' if loaded is not None else ''}); --units {count} needs "
            f"{count}. Onboard more: `jincai pki add --csv UNITS.csv` (code,name), then "
            "`ansible-playbook playbooks/vpn.yml --tags vpn` (the lead's run); or use a smaller --units")
    return usable[:count]


def _replace_once(text, old, new, what):
    """``text`` with the one occurrence of ``old`` replaced: the role's template must still say it."""
    if text.count(old) != 1:
        raise BenchError(f"roles/vpn_client/templates/province.conf.j2: expected one {old!r} ({what}), "
                         f"found {text.count(old)}: update benchmarks/vpn_tunnels.py")
    return text.replace(old, new)


def unit_connection(conf, code, local_addr, libipsec):
    """The body of the vpn_client role's connection ``conf`` (rendered by
    :func:`jincai.pki.bundle.client_conf`: ``connections { province { ... } }``) turned into connection
    ``<code>`` for the benchmark's one charon: named after the unit (connection and child), bound to
    ``local_addr``, started by the benchmark (not on load), one keying try (a failure is counted, not
    retried forever), no restart on close or DPD (the teardown is final), UDP encapsulation with libipsec."""
    body = conf[conf.index("connections {") + len("connections {"):conf.rindex("}")]
    body = _replace_once(body, "    province {\n        version = 2\n",
                         f"    {code} {{\n        version = 2\n        local_addrs = {local_addr}\n", "connection")
    body = _replace_once(body, "            province {\n", f"            {code} {{\n", "child")
    body = _replace_once(body, "keyingtries = 0", "keyingtries = 1", "keying tries")
    body = _replace_once(body, "start_action = start", "start_action = none", "start action")
    body = _replace_once(body, "close_action = start", "close_action = none", "close action")
    body = _replace_once(body, "dpd_action = restart", "dpd_action = clear", "DPD action")
    if libipsec and "encap = yes" not in body:
        body = _replace_once(body, "        keyingtries = 1\n", "        keyingtries = 1\n        encap = yes\n",
                             "encapsulation")
    return body.strip("\n") + "\n"


def client_swanctl_conf(connections):
    """swanctl.conf of the benchmark's charon from the per-unit connection bodies (:func:`unit_connection`)."""
    return "# jincai benchmarks/vpn_tunnels.py (throw-away)\nconnections {\n" + "".join(connections) + "}\n"


def client_threads(concurrency):
    """Worker threads of the benchmark charon: every blocking initiation (vici or ``swanctl --initiate``) holds one while
    it waits (with 40 in flight and 32 threads, no thread was left for IKE packets: all stalled)."""
    return max(32, concurrency + 16)


def strongswan_conf(vici_socket, log_path, libipsec, retransmit, threads=32):
    """strongswan.conf of the benchmark's charon: its own vici socket (swanctl's too) and log, only the
    plugins it needs,
    an IKE_SA table for thousands, no routes (the kernel path) and no virtual IPs (except with
    libipsec, which routes each CHILD_SA from its virtual IP) installed in its namespace (the
    addresses are checked in the SAs), the vpn_client role's retransmission (``retransmit``: tries, timeout, base)."""
    vip = "yes" if libipsec else "no"  # libipsec routes each policy from the virtual IP: it must be on a link
    return f"""# jincai benchmarks/vpn_tunnels.py (throw-away)
charon {{
    load = {CHARON_PLUGINS}
    ikesa_table_size = 4096
    ikesa_table_segments = 16
    threads = {threads}
    install_routes = no
    install_virtual_ip = {vip}
    retransmit_tries = {retransmit['tries']}
    retransmit_timeout = {retransmit['timeout']}
    retransmit_base = {retransmit['base']}
    plugins {{
        vici {{
            socket = unix://{vici_socket}
        }}
        kernel-libipsec {{
            load = {'yes' if libipsec else 'no'}
        }}
    }}
}}
charon-systemd {{
    load = {CHARON_PLUGINS}
    install_routes = no
    install_virtual_ip = {vip}
{_log_settings('bench', log_path)}}}
swanctl {{
    load = {SWANCTL_PLUGINS}
    socket = unix://{vici_socket}
}}
"""


def standin_strongswan_conf(vici_socket, log_path, role_conf):
    """strongswan.conf of the concentrator stand-in (``--stand-in``): the role's own settings
    (``role_conf``: roles/vpn_concentrator's strongswan-jincai.conf.j2, rendered), then its own vici
    socket and log, and no journal."""
    return f"""# jincai benchmarks/vpn_tunnels.py: concentrator stand-in (throw-away)
include {role_conf}
charon {{
    load = {CHARON_PLUGINS}
    plugins {{
        vici {{
            socket = unix://{vici_socket}
        }}
    }}
}}
charon-systemd {{
    load = {CHARON_PLUGINS}
{_log_settings('standin', log_path)}}}
swanctl {{
    socket = unix://{vici_socket}
}}
"""


IKE_RE = re.compile(r"^(\S+): #(\d+), ([A-Z_]+), IKEv(\d)")
END_RE = re.compile(r"^  (local|remote) +'([^']*)' @ (\S+?)\[(\d+)\](.*)$")
CHILD_RE = re.compile(r"^  (\S+): #(\d+), reqid (\d+), ([A-Z_]+),")
VIP_RE = re.compile(r"\[([0-9a-fA-F.:]+)\]")


def parse_sas(text):
    """IKE_SAs of ``swanctl --list-sas`` output: a list of dicts ``name, id (unique id), state,
    local_id, local_addr, local_vips, remote_id, remote_addr, remote_vips, children`` (child name ->
    state). Lines it does not know (algorithms, times, bytes, traffic selectors) are skipped."""
    sas, cur = [], None
    for line in text.splitlines():
        m = IKE_RE.match(line)
        if m:
            cur = {"name": m[1], "id": int(m[2]), "state": m[3], "version": int(m[4]), "children": {}}
            sas.append(cur)
            continue
        if cur is None:
            continue
        m = END_RE.match(line)
        if m:
            cur[f"{m[1]}_id"], cur[f"{m[1]}_addr"] = m[2], m[3]
            cur[f"{m[1]}_vips"] = VIP_RE.findall(m[5])
            continue
        m = CHILD_RE.match(line)
        if m:
            cur["children"][m[1]] = m[4]
    return sas


def parse_probe(text):
    """The concentrator probe's output (:data:`PROBE`, optionally followed by :data:`COUNT`'s) as
    ``pid, rss_kib, hwm_kib, pss_kib, cpu_s, ike_total, ike_half_open`` (charon's counter) and, with
    COUNT, ``ike, child, half_open`` (unit SAs ESTABLISHED, INSTALLED, CONNECTING)."""
    out = {}
    for line in text.splitlines():
        f = line.split()
        if not f:
            continue
        if f[0] == "pid":
            out["pid"] = int(f[1])
        elif f[0] in ("VmRSS:", "VmHWM:", "Pss:"):
            out[{"VmRSS:": "rss_kib", "VmHWM:": "hwm_kib", "Pss:": "pss_kib"}[f[0]]] = int(f[1])
        elif f[0] == "cpu":
            out["cpu_s"] = (int(f[1]) + int(f[2])) / int(f[3])
        elif f[0] == "sas":
            out["ike"], out["child"], out["half_open"] = int(f[1]), int(f[2]), int(f[3])
        elif f[0] == "IKE_SAs:":  # IKE_SAs: 923 total, 0 half-open
            out["ike_total"], out["ike_half_open"] = int(f[1]), int(f[3])
    missing = {"pid", "rss_kib", "pss_kib", "cpu_s", "ike_total"} - set(out)
    if missing:
        raise BenchError(f"concentrator probe: no {', '.join(sorted(missing))} in:\n{text}")
    return out


def check_tunnels(sas, units, concentrator_side):
    """Compare the SAs of one side with the units: ``(established, wrong)`` where *established* counts
    units with an ESTABLISHED IKE_SA whose CHILD_SA is INSTALLED and *wrong* lists ``(code, vips)``
    of those whose virtual IP is not the registry's address (the concentrator's view: the remote's
    virtual IP of connection ``bu-<code>``; the client's: its own, connection ``<code>``)."""
    by_name = {}
    for sa in sas:  # a unit may show two IKE_SAs for a moment (one replacing the other): the installed one
        if sa["state"] == "ESTABLISHED" and "INSTALLED" in sa["children"].values():
            by_name.setdefault(sa["name"], sa)
    established, wrong = 0, []
    for u in units:
        sa = by_name.get(f"bu-{u['code']}" if concentrator_side else u["code"])
        if not sa:
            continue
        established += 1
        vips = sa.get("remote_vips" if concentrator_side else "local_vips", [])
        if vips != [u["address"]]:
            wrong.append((u["code"], vips))
    return established, wrong


def retransmit_settings(defaults_text):
    """The vpn_client role's retransmission defaults (``vpn_client_retransmit_*``) from its defaults file."""
    d = yaml.safe_load(defaults_text)
    return {k: d[f"vpn_client_retransmit_{k}"] for k in ("tries", "timeout", "base")}


def mib(kib):
    """KiB as a MiB string with one decimal."""
    return f"{kib / 1024:.1f}"


# ------------------------------------------------------------------------------------------------
# The lab (and the stand-in)
# ------------------------------------------------------------------------------------------------

def sh(*argv, check=True, **kw):
    """Run a command on the control node; raise BenchError with its stderr when it fails and ``check``."""
    res = subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False, **kw)
    if check and res.returncode != 0:
        raise BenchError(f"`{' '.join(map(str, argv))}` failed: {res.stderr.strip() or res.stdout.strip()}")
    return res


def ensure_packages():
    """Install Debian's strongSwan pieces the benchmark's charon needs when they are missing."""
    missing = [p for p in APT_PACKAGES
               if "install ok installed" not in sh("dpkg-query", "-W", "-f", "${Status}", p, check=False).stdout]
    if not missing:
        return
    log(f"installing {' '.join(missing)} (apt)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if sh("apt-get", "install", "-y", "-q", "--no-install-recommends", *missing, check=False, env=env).returncode:
        sh("apt-get", "update", "-q", env=env)
        sh("apt-get", "install", "-y", "-q", "--no-install-recommends", *missing, env=env)


def kernel_has_esp(ns):
    """The vpn_concentrator role's probe, in namespace ``ns`` (its own XFRM state): can the kernel do ESP?"""
    add = ["ip", "-n", ns, "xfrm", "state", "add", "src", "192.0.2.1", "dst", "192.0.2.2", "proto", "esp", "spi",
           "0x4a494e43", "mode", "tunnel", "enc", "cbc(aes)", "0x000102030405060708090a0b0c0d0e0f", "auth",
           "hmac(sha256)", "0x000102030405060708090a0b0c0d0e0f000102030405060708090a0b0c0d0e0f"]
    if sh(*add, check=False).returncode:
        return False
    sh("ip", "-n", ns, "xfrm", "state", "delete", "src", "192.0.2.1", "dst", "192.0.2.2", "proto", "esp", "spi",
       "0x4a494e43", check=False)
    return True


def proc_start(pid):
    """Start time of ``pid`` (clock ticks since boot), or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[19])
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return None


def proc_cpu_s(pid):
    """utime + stime of ``pid`` in seconds (0 when gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            f = fh.read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


def proc_rss_kib(pid):
    """VmRSS of ``pid`` (KiB)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        return int(next(line for line in fh if line.startswith("VmRSS")).split()[1])


def save_state(st):
    """Record our charons and temporary directory (:func:`undo_leftovers` reads it after a crash)."""
    with open(STATE, "w", encoding="utf-8") as fh:
        json.dump(st, fh)


def undo_leftovers():
    """Undo a crashed earlier run: its charons (the recorded PIDs, if each is still that process), its
    temporary directory, the namespaces and the switch port."""
    if os.path.exists(STATE):
        with open(STATE, encoding="utf-8") as fh:
            st = json.load(fh)
        for pid, start in st.get("pids", []):
            if proc_start(pid) == start:
                log(f"stopping charon {pid} of an earlier run")
                os.kill(pid, signal.SIGKILL)
        if st.get("tmp", "").startswith(os.path.join(tempfile.gettempdir(), "jincai-bench-vpn-")):
            shutil.rmtree(st["tmp"], ignore_errors=True)
        os.unlink(STATE)
    for ns in (NETNS, STANDIN_NS):
        if os.path.exists(f"/run/netns/{ns}"):
            sh("ip", "netns", "del", ns, check=False)
    if os.path.exists(f"/run/netns/{SWITCH_NS}"):
        sh("ip", "-n", SWITCH_NS, "link", "del", PORT, check=False)


def used_addresses(network):
    """Every address of ``network`` on any interface of any network namespace of this machine."""
    net = ipaddress.ip_network(network)
    found = set()
    for ns in os.listdir("/run/netns") if os.path.isdir("/run/netns") else []:
        out = sh("ip", "-n", ns, "-o", "-4", "addr", "show", check=False).stdout
        for m in re.finditer(r"inet (\S+)/", out):
            if ipaddress.ip_address(m[1]) in net:
                found.add(m[1])
    return found


def source_access_addresses(m, network):
    """Every address the source gives on the VPN access network (concentrators, lab clients)."""
    net = ipaddress.ip_network(network)
    return {i.address.split("/")[0] for h in m.hosts.values() for i in h.interfaces
            if ipaddress.ip_address(i.address.split("/")[0]) in net}


def access_bridge(segment):
    """The bridge of the VPN access segment ``segment`` in the lab's switch namespace."""
    out = sh("ip", "-n", SWITCH_NS, "-d", "-o", "link", "show", "type", "bridge").stdout
    for line in out.splitlines():
        if re.search(rf"alias {re.escape(segment)}\b", line):
            return line.split(":")[1].strip().split("@")[0]
    raise BenchError(f"no bridge for {segment} in {SWITCH_NS}: is the lab up (jincai lab up)?")


class Charon:
    """One charon-systemd of the host's strongSwan in a network namespace, with a directory of its own:
    strongswan.conf (``STRONGSWAN_CONF``), swanctl directory (``SWANCTL_DIR``), vici socket, log."""

    def __init__(self, base, ns):
        self.base, self.ns = base, ns
        self.swanctl_dir = os.path.join(base, "swanctl")
        self.conf = os.path.join(base, "strongswan.conf")
        self.vici = os.path.join(base, "charon.vici")
        self.log_path = os.path.join(base, "charon.log")
        self.env = dict(os.environ, STRONGSWAN_CONF=self.conf, SWANCTL_DIR=self.swanctl_dir)
        self.proc = None
        self.use_swanctl = False  # initiate with a swanctl process per tunnel (the old way) instead of vici
        self._local = threading.local()
        for sub in ("x509", "x509ca", "x509crl", "private", "conf.d"):
            os.makedirs(os.path.join(self.swanctl_dir, sub), mode=0o700, exist_ok=True)

    def put(self, rel, data, mode=0o644):
        """Write ``data`` (bytes) to ``rel`` under the swanctl directory."""
        store.write(os.path.join(self.swanctl_dir, rel), data, mode)

    def start(self, state):
        """Start charon in the namespace, record it in ``state``, wait for its vici socket."""
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, CHARON], env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        state.setdefault("pids", []).append([self.proc.pid, proc_start(self.proc.pid)])  # ip netns exec execs
        save_state(state)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise BenchError(f"charon in {self.ns} exited with {self.proc.returncode}; log: {self.tail_log()}")
            if os.path.exists(self.vici) and self.swanctl("--stats").returncode == 0:
                return
            time.sleep(0.2)
        raise BenchError(f"charon in {self.ns} not ready after 30 s; log: {self.tail_log()}")

    def tail_log(self, lines=8):
        """The last lines of charon's log."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return "".join(fh.readlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def swanctl(self, *args, timeout=120):
        """swanctl against this charon (the socket is in its strongswan.conf)."""
        return subprocess.run([SWANCTL, *args], env=self.env, capture_output=True, text=True, check=False,
                              timeout=timeout)

    def initiate(self, code, timeout):
        """Initiate unit ``code``'s tunnel and wait for it; ``(code, ok, seconds, message)``. One vici
        session per worker thread (:mod:`jincai.lab.vici`), no control log: a ``swanctl`` process per
        tunnel cost the control node ~7 CPU-seconds for 1,000 (``--swanctl`` measures that way)."""
        t0 = time.monotonic()
        if self.use_swanctl:
            try:
                res = self.swanctl("--initiate", "--ike", code, "--child", code, "--timeout", str(timeout),
                                   timeout=timeout + 10)
            except subprocess.TimeoutExpired:
                return code, False, time.monotonic() - t0, "timeout"
            msg = "" if res.returncode == 0 else " ".join((res.stdout + res.stderr).strip().splitlines()[-1:])
            return code, res.returncode == 0, time.monotonic() - t0, msg
        session = getattr(self._local, "session", None)
        try:
            if session is None:
                session = self._local.session = vici.Session(self.vici, timeout=timeout + 10)
            ok, msg = session.initiate(code, code, timeout * 1000)
        except (vici.ViciError, OSError) as exc:
            self._local.session = None
            if session is not None:
                session.close()
            return code, False, time.monotonic() - t0, str(exc)
        return code, ok, time.monotonic() - t0, msg

    def stop(self):
        """SIGTERM to our charon (its DELETEs close the SAs), SIGKILL after 20 s."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


class Concentrator:
    """The lab's concentrator, through the lab's SSH (:func:`jincai.lab.lab.run_on`)."""

    conf, etc, swanctl_dir = "/etc/strongswan.conf", "/etc", "/etc/swanctl"
    settings_file = "/etc/strongswan.d/zz-jincai.conf"  # roles/vpn_concentrator's scale and DoS settings

    def __init__(self, host):
        from jincai.lab import lab as labmod

        self.host, self._lab = host, labmod
        self.state = labmod.load_state()
        if not self.state.get("complete") or host not in (self.state.get("hosts") or {}):
            raise BenchError(f"the lab is not up or has no {host} (jincai lab up; playbooks/vpn.yml)")

    def run(self, cmd, timeout=120):
        """``cmd`` as root on the concentrator; its stdout."""
        res = self._lab.run_on(self.host, cmd, timeout=timeout, state=self.state)
        if res.returncode != 0:
            raise BenchError(f"{self.host}: `{cmd[:80]}` exited {res.returncode}: {res.stderr.strip()}")
        return res.stdout

    def probe(self, count=True):
        """charon's memory, CPU and IKE_SA counter, with ``count`` also the unit SAs by state
        (:func:`parse_probe`)."""
        return parse_probe(self.run(PROBE + (COUNT if count else "")))

    def sas(self):
        """Every IKE_SA of the concentrator (:func:`parse_sas`)."""
        return parse_sas(self.run("swanctl --list-sas --noblock 2>/dev/null", timeout=300))

    def fingerprint(self):
        """Hash of the configuration (files, loaded connections, the jincai_vpn table)."""
        return self.run(FINGERPRINT.format(conf=self.conf, etc=self.etc, swanctl=self.swanctl_dir)).strip()

    def loaded(self):
        """Names of the unit connections loaded in charon."""
        return set(re.findall(r"^(bu-\S+?):", self.run("swanctl --list-conns 2>/dev/null"), re.M))

    def settings(self):
        """The role's scale and DoS settings as charon has them, name -> value."""
        return dict(re.findall(r"^\s*(\w+) = (\S+)", self.run(f"cat {self.settings_file} 2>/dev/null || true"), re.M))

    def libipsec(self):
        """True when the concentrator does ESP in userspace (its connections say ``encap = yes``)."""
        return "encap = yes" in self.run(f"cat {self.swanctl_dir}/conf.d/jincai.conf")

    def terminate(self, names):
        """Terminate the concentrator's IKE_SAs of connections ``names`` (transient SAs only)."""
        for i in range(0, len(names), 100):
            self.run(f"for n in {' '.join(names[i:i + 100])}; do swanctl --terminate --ike $n --force --timeout 2 "
                     ">/dev/null 2>&1; done; true", timeout=600)


class StandIn(Concentrator):
    """``--stand-in``: a concentrator of the benchmark's own, when the lab's registry has too few units
    or there is no lab: charon in namespace ``jlab-bench-vpnc`` with roles/vpn_concentrator's own
    templates (swanctl-jincai.conf.j2 for N throw-away units of a throw-away CA, strongswan-jincai.conf.j2
    with the role's defaults), cabled straight to the benchmark's namespace. Nothing of the lab is used."""

    def __init__(self, charon, plan, hostvars, lan_address):  # pylint: disable=super-init-not-called
        self.host, self.charon, self.plan, self.hostvars = f"stand-in {plan['concentrator']['name']}", charon, plan, hostvars
        self.lan_address = lan_address
        self.conf, self.etc = charon.conf, charon.base
        self.swanctl_dir = charon.swanctl_dir
        self.settings_file = os.path.join(charon.base, "strongswan.d", "zz-jincai.conf")

    def run(self, cmd, timeout=120):
        """``cmd`` as root in the stand-in's context (its swanctl socket, its charon's PID)."""
        env = dict(self.charon.env, JINCAI_CHARON_PID=str(self.charon.proc.pid if self.charon.proc else 0))
        res = subprocess.run(["sh", "-c", cmd], env=env, capture_output=True, text=True, check=False, timeout=timeout)
        if res.returncode != 0:
            raise BenchError(f"{self.host}: `{cmd[:80]}` exited {res.returncode}: {res.stderr.strip()}")
        return res.stdout

    def setup(self, count, libipsec, state):
        """Throw-away PKI with ``count`` units, the role's configuration, namespace, charon; returns the
        PKI directory (the units are read from it as from the lab's)."""
        from jincai.pki import ca as authority
        from jincai.pki import registry

        # benchmarks/vpn_province.py: the role's templates and reach filter (loaded by path: putting
        # benchmarks/ on sys.path would shadow packages such as ara with benchmarks/ara.py)
        spec = importlib.util.spec_from_file_location("vpn_province", os.path.join(ROOT, "benchmarks", "vpn_province.py"))
        vpn_province = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(vpn_province)

        pki = os.path.join(self.charon.base, "..", "pki")
        pw = os.path.join(self.charon.base, "..", "vault-pass")
        store.write(pw, b"throw-away benchmark vault password\n", 0o600)
        os.environ.update(JINCAI_PKI_DIR=os.path.abspath(pki), ANSIBLE_VAULT_PASSWORD_FILE=os.path.abspath(pw))
        os.environ.pop("ANSIBLE_VAULT_IDENTITY_LIST", None)
        authority.CA_NAME = "jincai benchmark CA (throw-away)"  # never confused with the province CA
        t = time.monotonic()
        reg = registry.UnitRegistry(dict(self.plan, clients=[]), pki_dir=os.path.abspath(pki))
        reg.add_many([{"code": f"bench{i:04d}", "name": f"Benchmark unit {i}"} for i in range(1, count + 1)])
        name = self.plan["concentrator"]["name"]
        paths, _ = authority.issue(name, [reg.server_identity(), self.plan["concentrator"]["address"]], reg.dir)
        reg.publish_crl(force=True)
        reg.save()
        log(f"stand-in: {count} throw-away units issued in {time.monotonic() - t:.1f} s")
        units = [reg.units[c] for c in sorted(reg.units)]
        swanctl, _ = vpn_province.render_concentrator(self.hostvars, name, units, libipsec, reg.server_identity())
        with open(os.path.join(ROOT, "roles", "vpn_concentrator", "defaults", "main.yml"), encoding="utf-8") as fh:
            defaults = {k: v for k, v in yaml.safe_load(fh).items() if not (isinstance(v, str) and "{{" in v)}
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(ROOT, "roles", "vpn_concentrator",
                                                                             "templates")),
                                 trim_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
        role_conf = env.get_template("strongswan-jincai.conf.j2").render(
            defaults, ansible_managed="jincai benchmark stand-in", _vpn_concentrator_units=units,
            _vpn_concentrator_backend="libipsec" if libipsec else "kernel")
        store.write(self.settings_file, role_conf.encode(), 0o644)
        store.write(self.conf, standin_strongswan_conf(self.charon.vici, self.charon.log_path,
                                                       self.settings_file).encode(), 0o600)
        for rel, src, mode in ((f"x509/{name}.crt", paths["cert"], 0o644), (f"private/{name}.key", paths["key"], 0o600),
                               ("x509ca/province-ca.crt", paths["ca"], 0o644),
                               ("x509crl/province.crl", os.path.join(reg.dir, "crl.pem"), 0o644)):
            with open(src, "rb") as fh:
                self.charon.put(rel, fh.read(), mode)
        self.charon.put("conf.d/jincai.conf", swanctl.encode(), 0o600)
        self.charon.put("swanctl.conf", b"include conf.d/*.conf\n", 0o600)
        from jincai.lab import net

        net.new_namespace(STANDIN_NS)
        sh("ip", "-n", STANDIN_NS, "addr", "add", f"{self.lan_address}/32", "dev", "lo")  # libipsec routes from it
        self.charon.start(state)
        res = self.charon.swanctl("--load-all", "--noprompt", timeout=600)
        if res.returncode != 0:
            raise BenchError(f"stand-in: swanctl --load-all: {res.stdout[-500:]}{res.stderr[-500:]}")
        return os.path.abspath(pki)

    def cable(self, prefixlen):
        """The veth between the benchmark's namespace and the stand-in's (no lab bridge)."""
        sh("ip", "-n", STANDIN_NS, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", NETNS)
        sh("ip", "-n", STANDIN_NS, "addr", "add", f"{self.plan['concentrator']['address']}/{prefixlen}", "dev", "eth0")
        sh("ip", "-n", STANDIN_NS, "link", "set", "eth0", "up")


def write_client(charon, units, ca_pem, conns, libipsec, retransmit, threads):
    """The benchmark charon's swanctl directory (certificates, keys 0600, CA, connections) and strongswan.conf."""
    charon.put("x509ca/province-ca.crt", ca_pem)
    for u in units:
        charon.put(f"x509/{u['code']}.crt", u["cert"])
        charon.put(f"private/{u['code']}.key", u["key"], 0o600)
    charon.put("swanctl.conf", client_swanctl_conf(conns).encode(), 0o600)
    store.write(charon.conf, strongswan_conf(charon.vici, charon.log_path, libipsec, retransmit, threads).encode(),
                0o600)


def address_commands(addresses, prefixlen, dev="eth0"):
    """ip(8) commands (argv lists) that put the benchmark's source ``addresses`` on ``dev`` of its
    namespace and bring it up (the first is the primary address, the others secondary, one subnet)."""
    return ([["ip", "-n", NETNS, "addr", "add", f"{a}/{prefixlen}", "dev", dev] for a in addresses]
            + [["ip", "-n", NETNS, "link", "set", dev, "up"]])


def port_mac(address):
    """The MAC address of the benchmark's port: locally administered, derived from its first source
    address, the same in every run. The concentrator keeps a neighbour entry (STALE) for each source
    address after a run; with a fresh random MAC in the next run, its replies went to the old one
    until the entry was probed and failed (~8 s: IKE_SA_INIT retransmits, 32-48 of 1,000 tunnels failed
    from the secondary addresses, which send no ARP of their own)."""
    digest = hashlib.sha256(f"jincai-bench-vpn {address}".encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in digest[:5])


def announce(addresses, target):
    """Make the concentrator learn each source address's MAC now: for each address, the namespace
    forgets its neighbour entry of ``target`` and pings it from that address, so its ARP request
    carries the address as sender (the concentrator updates its entry from it). Without it, a
    secondary address sends no ARP at all. Returns the addresses whose ping got no answer."""
    silent = []
    for a in addresses:
        sh("ip", "-n", NETNS, "neigh", "flush", "dev", "eth0", check=False)
        res = subprocess.run(["ip", "netns", "exec", NETNS, "ping", "-n", "-q", "-c", "1", "-W", "2", "-I", a, target],
                             capture_output=True, check=False)
        if res.returncode != 0:
            silent.append(a)
    return silent


def cable_client(addresses, prefixlen, bridge):
    """The benchmark's namespace; with ``bridge``, its veth to the lab's access segment (``jlab-sw``).
    Returns what puts its source addresses on the veth (after the peer end exists)."""
    from jincai.lab import net

    net.new_namespace(NETNS)
    if bridge:
        sh("ip", "-n", SWITCH_NS, "link", "add", PORT, "type", "veth", "peer", "name", "eth0", "netns", NETNS,
           "address", port_mac(addresses[0]))
        sh("ip", "-n", SWITCH_NS, "link", "set", PORT, "alias", "bench vpn_tunnels eth0", "master", bridge, "up")
    return lambda: [sh(*cmd) for cmd in address_commands(addresses, prefixlen)]


def read_units(pki, plan, count, loaded):
    """N usable units of a registry, each with certificate, decrypted key and traffic selector."""
    reg_dir = os.path.join(pki, plan.get("registry", "vpn"))
    path = os.path.join(reg_dir, "units.json")
    if not os.path.exists(path):
        raise BenchError(f"{path}: no registry (jincai pki sync; playbooks/vpn.yml)")
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    chosen = select_units(doc["units"], set(plan["clients"]), count, loaded)
    vaults = pkikeys.Keys(reg_dir, pkivault.shared())  # each batch's vault decrypted once
    out = []
    for u in chosen:
        key = vaults.get(u)
        with open(os.path.join(reg_dir, "units", f"{u['code']}.crt"), "rb") as fh:
            cert = fh.read()
        home = u.get("home") or u["site"]
        out.append(dict(u, key=key, cert=cert, lan=plan["served"][home]["lan"]))
    with open(os.path.join(pki, "ca.crt"), "rb") as fh:
        ca_pem = fh.read()
    return out, doc["server_identity"], ca_pem


def wait_all(conc, base, count, t0, deadline_s, interval=0.5, finished=None):
    """Poll the concentrator's IKE_SA counter until ``count`` more than at ``base`` are past half-open,
    then count the unit SAs: done when ``count`` more IKE_SAs are ESTABLISHED and CHILD_SAs INSTALLED.
    Returns the probe at that moment and the seconds from ``t0`` (None when not all by the deadline, or
    when ``finished()`` says every initiation has returned and some failed: no more will come)."""
    while True:
        p = conc.probe(count=False)
        elapsed = time.monotonic() - t0
        if p["ike_total"] - p["ike_half_open"] - base["ike_total"] + base["ike_half_open"] >= count:
            p = conc.probe()
            elapsed = time.monotonic() - t0
            if p["ike"] - base["ike"] >= count and p["child"] - base["child"] >= count:
                return p, elapsed
        if elapsed > deadline_s or (finished is not None and finished()):
            p = conc.probe()
            if p["ike"] - base["ike"] >= count and p["child"] - base["child"] >= count:
                return p, time.monotonic() - t0
            return p, None
        time.sleep(interval)


def wait_back(conc, base, names, wait_s=30):
    """Wait until the concentrator's SA counts are back at ``base``; terminate what is left of ours
    (by connection name) after ``wait_s``. Returns how many were terminated there."""
    end = time.monotonic() + wait_s
    while time.monotonic() < end:
        if conc.probe(count=False)["ike_total"] <= base["ike_total"]:
            p = conc.probe()
            if p["ike"] <= base["ike"] and p["child"] <= base["child"]:
                return 0
        time.sleep(1)
    ours = set(names)
    left = sorted({sa["name"] for sa in conc.sas() if sa["name"] in ours})
    conc.terminate(left)
    return len(left)


def run(args):
    """The benchmark; returns its figures (:func:`report`)."""
    from jincai.source import inventory

    inv = args.inventory
    plan = vpnplans.plan(inv)
    host = plan["concentrator"]["name"]
    m, _ = inventory.build_checked(inv)
    access = m.network["plan"]["vpn_access"]
    prefixlen = ipaddress.ip_network(access).prefixlen
    ensure_packages()
    if not args.stand_in:
        conc = Concentrator(host)  # fails early when the lab is not up
    undo_leftovers()
    tmp = tempfile.mkdtemp(prefix="jincai-bench-vpn-")  # 0700: the plaintext keys live here only
    state = {"tmp": tmp}
    save_state(state)
    bench = Charon(os.path.join(tmp, "client"), NETNS)
    bench.use_swanctl = args.swanctl
    fig, units = {"concurrency": args.concurrency, "stand_in": args.stand_in,
                  "initiator": "swanctl" if args.swanctl else "vici"}, []
    try:
        sources = pick_addresses(access, source_access_addresses(m, access) | used_addresses(access), args.sources)
        fig["address"], fig["sources"] = sources[0], sources
        if args.stand_in:
            hostvars = inventory.build(inv)["_meta"]["hostvars"][host]
            conc = StandIn(Charon(os.path.join(tmp, "standin"), STANDIN_NS), plan, hostvars, m.hosts[host].address)
            connect = cable_client(sources, prefixlen, None)
            libipsec = not kernel_has_esp(NETNS)
            pki = conc.setup(args.units, libipsec, state)
            conc.cable(prefixlen)
        else:
            libipsec = conc.libipsec()
            pki = store.default_dir(inv)
            connect = None
        settings, loaded = conc.settings(), conc.loaded()
        log(f"{conc.host}: {len(loaded)} unit connections loaded ({'libipsec' if libipsec else 'kernel'} ESP); "
            "settings: " + ", ".join(f"{k} {settings[k]}" for k in ("cookie_threshold", "block_threshold",
                                                                    "init_limit_half_open", "threads") if k in settings))
        units, server_identity, ca_pem = read_units(pki, plan, args.units, loaded)
        with open(os.path.join(ROOT, "roles", "vpn_client", "defaults", "main.yml"), encoding="utf-8") as fh:
            retransmit = retransmit_settings(fh.read())
        per_source, note = capped_concurrency(args.concurrency, int(settings.get("block_threshold", 0) or 0))
        if note:
            log(f"note: {note}")
        fig["concurrency"], fig["in_flight"] = per_source, per_source * len(sources)
        assignment = assign_sources(units, sources)
        log(f"{len(units)} units from {len(sources)} source address(es) {', '.join(sources)} (round robin), "
            f"{per_source} in flight per source, {fig['in_flight']} in all")
        base_sas = conc.sas()
        fig["real_established"] = sorted(sa["name"] for sa in base_sas if sa["state"] == "ESTABLISHED")
        fig["before"], fig["fingerprint"] = conc.probe(), conc.fingerprint()
        conns = [unit_connection(bundle.client_conf(u, server_identity, plan["concentrator"]["address"], u["lan"]),
                                 u["code"], assignment[u["code"]], libipsec) for u in units]
        write_client(bench, units, ca_pem, conns, libipsec, retransmit, client_threads(fig["in_flight"]))
        for u in units:
            u.pop("key")  # the plaintext keys live only in the 0700 directory, removed at the end
        if connect is None:
            connect = cable_client(sources, prefixlen, access_bridge(vpn_access_segment(m)))
        connect()
        silent = announce(sources, plan["concentrator"]["address"])
        if silent:
            log(f"note: the concentrator did not answer a ping from {', '.join(silent)}")
        bench.start(state)
        t = time.monotonic()
        res = bench.swanctl("--load-all", "--noprompt", timeout=600)
        if res.returncode != 0:
            raise BenchError(f"swanctl --load-all: {res.stdout[-500:]}{res.stderr[-500:]}")
        fig["load_s"] = time.monotonic() - t
        cpu0, client_cpu0, t0 = os.times(), proc_cpu_s(bench.proc.pid), time.monotonic()
        # one pool per source address: at most per_source half-open IKE_SAs from each (block_threshold)
        pools = {src: concurrent.futures.ThreadPoolExecutor(max_workers=per_source) for src in sources}
        try:
            futures = [pools[assignment[u["code"]]].submit(bench.initiate, u["code"], args.timeout) for u in units]
            fig["at_n"], fig["seconds"] = wait_all(
                conc, fig["before"], len(units), t0, args.deadline,
                finished=lambda: all(f.done() for f in futures) and not all(f.result()[1] for f in futures))
            cpu1 = os.times()  # this process and its finished children (swanctl, ssh); not the charons
            fig["control_cpu_s"] = sum(cpu1[:4]) - sum(cpu0[:4])
            fig["client_cpu_s"] = proc_cpu_s(bench.proc.pid) - client_cpu0
            if fig["seconds"] is not None:  # all up: the last swanctl calls return at once
                concurrent.futures.wait(futures, timeout=args.timeout)
        finally:  # on a missed deadline or an interrupt, queued initiations are dropped
            for pool in pools.values():
                pool.shutdown(wait=False, cancel_futures=True)
        results = [f.result() for f in futures if f.done() and not f.cancelled()]
        fig["not_initiated"] = len(futures) - len(results)
        fig["failures"] = [(c, msg) for c, ok, _, msg in results if not ok]
        lat = sorted(s for _, ok, s, _ in results if ok)
        fig["latency"] = (lat[len(lat) // 2], lat[int(len(lat) * 0.95)], lat[-1]) if lat else None
        fig["client_rss_kib"] = proc_rss_kib(bench.proc.pid)
        conc_sas = conc.sas()
        fig["conc_ok"], fig["conc_wrong"] = check_tunnels(conc_sas, units, True)
        fig["spread"], fig["spread_wrong"] = source_spread(conc_sas, assignment)
        try:
            res = bench.swanctl("--list-sas", "--noblock", timeout=300)
        except subprocess.TimeoutExpired:
            raise BenchError("the benchmark charon did not list its SAs in 300 s (log above)") from None
        client_sas = parse_sas(res.stdout)
        fig["client_ok"], fig["client_wrong"] = check_tunnels(client_sas, units, False)
        if fig["client_ok"] < len(units):  # what the client's charon says of the ones it does not hold up
            seen = {}
            for sa in client_sas:
                seen.setdefault(sa["name"], []).append(f"{sa['state']} {sorted(sa['children'].values())}")
            fig["client_missing"] = [(u["code"], seen.get(u["code"], ["no IKE_SA"])) for u in units
                                     if check_tunnels(client_sas, [u], False)[0] == 0][:5]
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # the teardown itself is not interrupted
        if bench.proc and (fig.get("failures") or fig.get("seconds") is None):
            log(f"the benchmark charon's log (last lines):\n{bench.tail_log(args.log_lines)}")
        if args.keep_log and os.path.exists(bench.log_path):
            shutil.copyfile(bench.log_path, args.keep_log)  # charon's log holds no key
            log(f"the benchmark charon's log: {args.keep_log}")
        log("teardown: stopping the benchmark's charon (DELETE of its SAs)")
        bench.stop()
        try:
            if "before" in fig:
                fig["left_terminated"] = wait_back(conc, fig["before"], [f"bu-{u['code']}" for u in units])
                fig["after"] = conc.probe()
                fig["after_real"] = sorted(sa["name"] for sa in conc.sas() if sa["state"] == "ESTABLISHED")
                fig["config_unchanged"] = conc.fingerprint() == fig["fingerprint"]
        finally:
            if args.stand_in and isinstance(conc, StandIn):
                conc.charon.stop()
            for ns in (NETNS, STANDIN_NS):
                sh("ip", "netns", "del", ns, check=False)
            if os.path.exists(f"/run/netns/{SWITCH_NS}"):
                sh("ip", "-n", SWITCH_NS, "link", "del", PORT, check=False)
            shutil.rmtree(tmp, ignore_errors=True)
            if os.path.exists(STATE):
                os.unlink(STATE)
    fig["units"] = len(units)
    fig["cleaned"] = not os.path.exists(tmp) and not any(os.path.exists(f"/run/netns/{ns}") for ns in (NETNS, STANDIN_NS))
    return fig
def report(fig):
    """Print the figures; return True when every tunnel was there with its address, in the goal, and
    the concentrator is as it was."""
    b, n, a = fig.get("before"), fig.get("at_n") or {}, fig.get("after")
    if not b or not a:
        log("no figures: the run stopped before the baseline (see above)")
        return False
    count, secs = fig["units"], fig.get("seconds")
    where = "the stand-in concentrator (role templates, throw-away units)" if fig["stand_in"] else "the concentrator"
    up = min(n.get("ike", 0) - b["ike"], n.get("child", 0) - b["child"])
    log(f"load: {count} connections, certificates and keys into the benchmark's charon in {fig.get('load_s', 0):.2f} s")
    log(f"tunnels: {up}/{count} IKE_SAs ESTABLISHED + CHILD_SAs INSTALLED on {where} "
        + (f"in {secs:.2f} s" if secs is not None else "NOT all by the deadline")
        + f" (goal < {GOAL_S:.0f} s), concurrency {fig['concurrency']} per source x {len(fig['sources'])} "
        f"source address(es) from {fig['address']}, initiated by {fig.get('initiator', 'vici')}; "
        f"initiations failed: {len(fig.get('failures', []))}, not started: {fig.get('not_initiated', 0)}"
        + (f" (first: {fig['failures'][:3]})" if fig.get("failures") else ""))
    if fig.get("latency"):
        log("per tunnel (initiate to established, client): median {:.2f} s, p95 {:.2f} s, max {:.2f} s".format(
            *fig["latency"]))
    if fig.get("spread") is not None:
        log("tunnels per source address (concentrator's view): " + ", ".join(
            f"{src} {n}" for src, n in fig["spread"].items())
            + (f"; from another address: {fig['spread_wrong'][:3]}" if fig.get("spread_wrong") else ""))
    wrong = fig.get("conc_wrong", []) + fig.get("client_wrong", []) + fig.get("spread_wrong", [])
    log(f"virtual IP = registry address: concentrator {fig.get('conc_ok', 0) - len(fig.get('conc_wrong', []))}/{count}, "
        f"client {fig.get('client_ok', 0) - len(fig.get('client_wrong', []))}/{count}"
        + (f"; wrong: {wrong[:3]}" if wrong else "")
        + (f"; not up on the client: {fig['client_missing']}" if fig.get("client_missing") else ""))
    per = (n["rss_kib"] - b["rss_kib"]) / count if n else 0
    per_pss = (n["pss_kib"] - b["pss_kib"]) / count if n else 0
    log(f"concentrator charon RSS {mib(b['rss_kib'])} -> {mib(n.get('rss_kib', 0))} (at {count}) -> "
        f"{mib(a['rss_kib'])} MiB (after); PSS {mib(b['pss_kib'])} -> {mib(n.get('pss_kib', 0))} -> "
        f"{mib(a['pss_kib'])} MiB; per tunnel {per:.1f} KiB RSS, {per_pss:.1f} KiB PSS; peak (VmHWM) "
        f"{mib(a.get('hwm_kib', 0))} MiB")
    log(f"CPU from the first initiation to N: concentrator charon {n.get('cpu_s', b['cpu_s']) - b['cpu_s']:.1f} s, "
        f"benchmark charon {fig.get('client_cpu_s', 0):.1f} s (RSS {mib(fig.get('client_rss_kib', 0))} MiB), "
        f"control node (this process and its swanctl, ssh) {fig.get('control_cpu_s', 0):.1f} s; machine load average "
        f"{os.getloadavg()[0]:.1f}")
    real_kept = set(fig["real_established"]) <= set(fig["after_real"])
    back = a["ike"] == b["ike"] and a["child"] == b["child"]
    log(f"restored: concentrator SAs {b['ike']}/{b['child']} before, {a['ike']}/{a['child']} after "
        f"({fig['left_terminated']} terminated there after 30 s); config unchanged: {fig['config_unchanged']}; "
        f"established before: {', '.join(fig['real_established']) or 'none'} -> "
        f"{'still up' if real_kept else 'NOT: ' + (', '.join(fig['after_real']) or 'none')}; namespaces and "
        f"keys removed: {fig['cleaned']}")
    return (up >= count and secs is not None and secs < GOAL_S and not wrong and fig.get("conc_ok") == count
            and fig.get("client_ok") == count and back and real_kept and fig["config_unchanged"] and fig["cleaned"])


def _interrupted(signum, _frame):
    raise SystemExit(128 + signum)  # unwinds through every finally: the teardown runs


def main(argv=None):
    """Parse the options, run, print; exit 0 when everything held."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-i", "--inventory", default=INVENTORY,
                    help="the running lab's inventory: inventories/lab (default) or the province twin's "
                         "(build/twin/jilin, whose province concentrator registers ~1,040 real units)")
    ap.add_argument("--units", type=int, default=1000, help="tunnels (real province units), default 1000")
    ap.add_argument("--concurrency", type=int, default=8,
                    help="initiations in flight per source address (default 8; kept below the concentrator's "
                         "block_threshold of 10 half-open IKE_SAs per peer address)")
    ap.add_argument("--sources", type=int, default=1,
                    help=f"source addresses in the benchmark's namespace (default 1, at most {MAX_SOURCES}), free "
                         "addresses of the plan's vpn_access; the units spread round-robin over them (local_addrs)")
    ap.add_argument("--timeout", type=int, default=60, help="seconds one initiation may take")
    ap.add_argument("--deadline", type=float, default=300, help="seconds to wait for all tunnels")
    ap.add_argument("--stand-in", action="store_true",
                    help="a concentrator of the benchmark's own (role templates, throw-away units), not the lab's")
    ap.add_argument("--swanctl", action="store_true",
                    help="initiate each tunnel with a swanctl process (the old way) instead of one vici session per thread")
    ap.add_argument("--keep-log", metavar="FILE", help="keep the benchmark charon's whole log in FILE")
    ap.add_argument("--log-lines", type=int, default=20, help="lines of the benchmark charon's log shown on failure")
    args = ap.parse_args(argv)
    if args.units < 1 or args.concurrency < 1:
        ap.error("--units and --concurrency: at least 1")
    if not 1 <= args.sources <= MAX_SOURCES:
        ap.error(f"--sources: 1 to {MAX_SOURCES}")
    if os.geteuid() != 0:
        print("vpn_tunnels: run as root (namespaces, charon)", file=sys.stderr)
        return 2
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupted)
    lock = open(RUN_LOCK, "w", encoding="ascii")  # noqa: SIM115 - held until the process exits
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"vpn_tunnels: another run holds {RUN_LOCK}: wait for it (its namespaces and charons are its own)",
              file=sys.stderr)
        return 2
    try:
        return 0 if report(run(args)) else 1
    except BenchError as exc:
        print(exc, file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
