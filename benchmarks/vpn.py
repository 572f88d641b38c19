"""Benchmark the budget-unit VPN: issue + render 1,040 units, charon loading them, many live tunnels.

1. issue and render: a throw-away PKI (temporary directory, the lab vault password) onboards 1,040
   units (certificate, vaulted key, client bundle each), publishes the CRL and renders the
   concentrator's swanctl.conf and nftables set with the role's own templates. Goal < 30 s.
2. charon loading them: the 1,040 units' connections and pools (the same template, renamed
   ``bu-bench*`` with their own throw-away CA) are added on the live lab concentrator (220000-vpn)
   next to the real units and loaded with `swanctl --load-all`; time and charon's memory. Goal < 10 s.
3. tunnels: client network namespaces of the benchmark's own (``jvpnb-N``), cabled to the lab's VPN
   access segment with addresses 198.18.232.150-249, each running charon (from the lab image, in a
   private mount namespace on an overlay) for up to 25 units; all tunnels start at once and the time
   until the concentrator holds them all ESTABLISHED is measured. Goal < 30 s.

Everything the benchmark adds is removed afterwards (namespaces, processes, mounts, files on the
concentrator; the bench connections unloaded). Traffic stays inside the lab's namespaces (198.18/15).
Run as root with the lab up and playbooks/vpn.yml applied:  .venv/bin/python benchmarks/vpn.py
"""

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import vpn_province  # noqa: E402  (beside this file)

from jincai import ROOT  # noqa: E402
from jincai.lab import lab as labmod  # noqa: E402
from jincai.pki import ca, registry, store  # noqa: E402
from jincai.pki import vpn as vpnplans  # noqa: E402
from jincai.policy import ipsec  # noqa: E402

VPN = "220000-vpn"
IPSEC = ipsec.policy()  # the bench units propose what the concentrator accepts (jincai_ipsec)
ACCESS_SEGMENT = "vpnaccess-220000"
SWITCH_NS = "jlab-sw"
FIRST_CLIENT_IP = 150


def log(msg):
    """Print a progress line."""
    print(msg, flush=True)


def ssh(host, cmd, data=None, check=True, timeout=300):
    """Run ``cmd`` as root on a lab host; return stdout."""
    state = labmod.load_state()
    argv = labmod.ssh_base(state["hosts"][host]["mgmt"]) + [f"sudo -n sh -c {shlex.quote(cmd)}"]
    res = subprocess.run(argv, input=data, capture_output=True, timeout=timeout, check=False,
                         text=isinstance(data, str) or data is None)
    if check and res.returncode != 0:
        raise SystemExit(f"{host}: `{cmd}` failed: {res.stderr}")
    return res.stdout


def put(host, path, data, mode="0644"):
    """Write ``data`` (bytes) to ``path`` on a lab host."""
    ssh(host, f"umask 077; cat > {shlex.quote(path)} && chmod {mode} {shlex.quote(path)}", data=data)


# ------------------------------------------------------------------------------------------------
# 1. issue and render
# ------------------------------------------------------------------------------------------------

def issue_and_render(workdir, units, vpn_plan, real_addresses, libipsec):
    """Onboard ``units`` bench units into a throw-away PKI and render the concentrator config."""
    os.environ["JINCAI_PKI_DIR"] = os.path.join(workdir, "pki")
    ca.CA_NAME = "jincai benchmark CA (throw-away)"  # never confused with the province CA
    t0 = time.monotonic()
    bench_plan = dict(vpn_plan, clients=[])
    reg = registry.UnitRegistry(bench_plan)
    reg._taken |= set(real_addresses)  # never hand out a real unit's address, even in a benchmark
    reg.add_many([{"code": f"bench{i:04d}", "name": f"Benchmark unit {i}"} for i in range(1, units + 1)])
    reg.publish_crl(force=True)
    reg.save()
    t_issue = time.monotonic() - t0
    for code in reg.units:
        reg.bundle(code)
    t_bundles = time.monotonic() - t0 - t_issue

    t1 = time.monotonic()
    # the role's own templates and reach filter (benchmarks/vpn_province.py renders the same way)
    swanctl, nft = vpn_province.render_concentrator(vpn_plan["hostvars"], VPN, [reg.units[c] for c in sorted(reg.units)],
                                                    libipsec, reg.server_identity())
    t_render = time.monotonic() - t1
    # the bench units use their own CA: point their connections and authority at it
    swanctl = swanctl.replace("cacerts = province-ca.crt", "cacerts = bench-ca.crt")
    swanctl = swanctl.replace("authorities {\n    province {\n        cacert = province-ca.crt",
                              "authorities {\n    bench {\n        cacert = bench-ca.crt")
    return reg, swanctl, nft, {"issue": t_issue, "bundles": t_bundles, "render": t_render}


# ------------------------------------------------------------------------------------------------
# 2. charon loading them
# ------------------------------------------------------------------------------------------------

def charon_rss_kib():
    """charon's resident memory on the concentrator (KiB)."""
    out = ssh(VPN, "grep VmRSS /proc/$(systemctl show -p MainPID --value strongswan)/status")
    return int(out.split()[1])


def load_on_concentrator(reg, swanctl):
    """Install the bench CA, CRL and connections on the concentrator; time `swanctl --load-all`."""
    with open(os.path.join(reg.dir, "ca.crt"), "rb") as fh:
        put(VPN, "/etc/swanctl/x509ca/bench-ca.crt", fh.read())
    with open(os.path.join(reg.dir, "crl.pem"), "rb") as fh:
        put(VPN, "/etc/swanctl/x509crl/bench.crl", fh.read())
    put(VPN, "/etc/swanctl/conf.d/zz-bench.conf", swanctl.encode(), "0600")
    rss0 = charon_rss_kib()
    out = ssh(VPN, "s=$(date +%s.%N); swanctl --load-all --noprompt >/tmp/bench-load.log 2>&1; rc=$?; "
                   "e=$(date +%s.%N); echo $rc $s $e; tail -3 /tmp/bench-load.log")
    rc, start, end = out.split()[:3]
    if rc != "0":
        raise SystemExit(f"swanctl --load-all failed on {VPN}:\n{out}")
    conns = ssh(VPN, "swanctl --list-conns 2>/dev/null | grep -c '^bu-bench' || true").strip()
    return {"load_s": float(end) - float(start), "rss0_kib": rss0, "rss1_kib": charon_rss_kib(),
            "conns": int(conns or 0), "tail": " ".join(out.split("\n", 1)[1:]).strip()}


def unload_from_concentrator():
    """Terminate the bench SAs, remove the bench files and reload: the real units stay untouched."""
    ssh(VPN, "for n in $(swanctl --list-sas --noblock 2>/dev/null | awk -F: '/^bu-bench/{print $1}'); do "
             "swanctl --terminate --ike $n --force --timeout 2 >/dev/null 2>&1; done; "
             "rm -f /etc/swanctl/conf.d/zz-bench.conf /etc/swanctl/x509ca/bench-ca.crt "
             "/etc/swanctl/x509crl/bench.crl /tmp/bench-load.log; swanctl --load-all --noprompt >/dev/null",
        check=False)


# ------------------------------------------------------------------------------------------------
# 3. client namespaces and tunnels
# ------------------------------------------------------------------------------------------------

def access_bridge():
    """Name of the lab bridge carrying the VPN access segment (in the lab's switch namespace)."""
    out = subprocess.run(["ip", "-n", SWITCH_NS, "-d", "-o", "link", "show", "type", "bridge"],
                         capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if f"alias {ACCESS_SEGMENT}" in line:
            return line.split(":")[1].strip().split("@")[0]
    raise SystemExit(f"no bridge for {ACCESS_SEGMENT} in {SWITCH_NS}: is the lab up?")


class ClientNamespace:
    """One benchmark client namespace running its own charon for a few bench units."""

    def __init__(self, index, workdir, image, units, server, server_identity, ca_pem, remote_ts, libipsec):
        self.index, self.units, self.libipsec = index, units, libipsec
        self.ns, self.port = f"jvpnb-{index}", f"jvpnb{index}p"
        self.base = os.path.join(workdir, self.ns)
        self.root = os.path.join(self.base, "root")
        self.image, self.server, self.server_identity = image, server, server_identity
        self.ca_pem, self.remote_ts = ca_pem, remote_ts
        self.proc = None

    def setup(self, bridge):
        """Namespace, cable to the access segment, addresses, overlay content for charon."""
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        subprocess.run(["ip", "-n", SWITCH_NS, "link", "add", self.port, "type", "veth", "peer", "name", "eth0",
                        "netns", self.ns], check=True)
        subprocess.run(["ip", "-n", SWITCH_NS, "link", "set", self.port, "master", bridge, "up"], check=True)
        subprocess.run(["ip", "-n", self.ns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", self.ns, "link", "set", "eth0", "up"], check=True)
        for unit in self.units:
            subprocess.run(["ip", "-n", self.ns, "addr", "add", f"{unit['outer']}/24", "dev", "eth0"], check=True)
        upper = os.path.join(self.base, "upper")
        for sub in ("upper/etc/swanctl/conf.d", "upper/etc/swanctl/x509", "upper/etc/swanctl/x509ca",
                    "upper/etc/swanctl/private", "upper/etc/strongswan.d", "work", "root"):
            os.makedirs(os.path.join(self.base, sub), exist_ok=True)
        with open(os.path.join(upper, "etc/swanctl/x509ca/province-ca.crt"), "wb") as fh:
            fh.write(self.ca_pem)
        conns = []
        for unit in self.units:
            with open(os.path.join(upper, f"etc/swanctl/x509/{unit['code']}.crt"), "wb") as fh:
                fh.write(unit["cert"])
            fd = os.open(os.path.join(upper, f"etc/swanctl/private/{unit['code']}.key"),
                         os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(unit["key"])
            conns.append(f"""  {unit['code']} {{
    version = 2
    local_addrs = {unit['outer']}
    remote_addrs = {self.server}
    vips = 0.0.0.0
    proposals = {IPSEC['ike_proposals']}
    keyingtries = 0
    encap = {'yes' if self.libipsec else 'no'}
    local {{
      auth = pubkey
      certs = {unit['code']}.crt
      id = {unit['identity']}
    }}
    remote {{
      auth = pubkey
      id = {self.server_identity}
      cacerts = province-ca.crt
    }}
    children {{
      {unit['code']} {{
        remote_ts = {self.remote_ts}
        esp_proposals = {IPSEC['esp_proposals']}
        start_action = start
      }}
    }}
  }}
""")
        with open(os.path.join(upper, "etc/swanctl/conf.d/bench.conf"), "w", encoding="ascii") as fh:
            fh.write("connections {\n" + "".join(conns) + "}\n")
        with open(os.path.join(upper, "etc/strongswan.d/zz-bench.conf"), "w", encoding="ascii") as fh:
            fh.write("charon {\n  install_routes = no\n  retransmit_tries = 3\n  plugins {\n"
                     f"    kernel-libipsec {{\n      load = {'yes' if self.libipsec else 'no'}\n    }}\n  }}\n}}\n"
                     "swanctl {\n  load = pem pkcs1 pkcs8 x509 revocation constraints pubkey openssl random nonce\n}\n"
                     "charon-systemd {\n  filelog {\n    bench {\n      path = /run/charon.log\n"
                     "      default = 1\n    }\n  }\n}\n")

    def start(self):
        """charon in a private mount namespace on an overlay of the lab image, inside the netns."""
        script = (f"mount -t overlay overlay -o lowerdir={self.image},upperdir={self.base}/upper,"
                  f"workdir={self.base}/work {self.root} && mount -t proc proc {self.root}/proc && "
                  f"mount --rbind /dev {self.root}/dev && mount -t tmpfs tmpfs {self.root}/run && "
                  f"mount -t tmpfs tmpfs {self.root}/tmp && exec chroot {self.root} /usr/sbin/charon-systemd")
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, "unshare", "--mount", "--propagation",
                                      "private", "sh", "-c", script], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)

    def charon_pid(self):
        """PID of charon (the exec'd process keeps the Popen PID)."""
        return self.proc.pid

    def swanctl(self, *args):
        """Run swanctl against this namespace's charon."""
        return subprocess.run(["nsenter", "-t", str(self.charon_pid()), "-m", "-n", "-r", "-w",
                               "/usr/sbin/swanctl", *args], capture_output=True, text=True, check=False)

    def wait_ready(self, timeout=20):
        """Wait for charon's vici socket."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.ns}: charon exited with {self.proc.returncode}")
            if self.swanctl("--stats").returncode == 0:
                return
            time.sleep(0.2)
        raise SystemExit(f"{self.ns}: charon not ready after {timeout}s")

    def rss_kib(self):
        """charon's resident memory (KiB)."""
        with open(f"/proc/{self.charon_pid()}/status", encoding="ascii") as fh:
            return int(next(line for line in fh if line.startswith("VmRSS")).split()[1])

    def stop(self):
        """Stop charon (SIGTERM to its own PID), remove the namespace and files."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        subprocess.run(["ip", "netns", "del", self.ns], check=False, capture_output=True)
        subprocess.run(["ip", "-n", SWITCH_NS, "link", "del", self.port], check=False, capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


def leftover_cleanup():
    """Remove namespaces and switch ports of a crashed earlier run of this benchmark."""
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    for line in names.splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.startswith("jvpnb-"):
            subprocess.run(["ip", "netns", "del", name], check=False)
    links = subprocess.run(["ip", "-n", SWITCH_NS, "-o", "link"], capture_output=True, text=True, check=False).stdout
    for line in links.splitlines():
        port = line.split(":")[1].strip().split("@")[0]
        if port.startswith("jvpnb"):
            subprocess.run(["ip", "-n", SWITCH_NS, "link", "del", port], check=False)


def established_bench():
    """(IKE SAs ESTABLISHED, CHILD SAs INSTALLED) of bench units on the concentrator."""
    out = ssh(VPN, "swanctl --list-sas --noblock 2>/dev/null | grep -E '^ *bu-bench' | "
                   "awk '/^bu-bench.*ESTABLISHED/{i++} /^  bu-bench.*INSTALLED/{c++} END{print i+0, c+0}'")
    ike, child = out.split()
    return int(ike), int(child)


def tunnels(reg, workdir, count, per_ns, vpn_plan, libipsec):
    """Start ``count`` bench tunnels from client namespaces; return figures."""
    state = labmod.load_state()
    bridge = access_bridge()
    with open(os.path.join(reg.dir, "..", "real-ca.crt"), "rb") as fh:
        real_ca = fh.read()
    codes = sorted(reg.units)[:count]
    spaces = []
    for n, first in enumerate(range(0, count, per_ns)):
        units = []
        for j, code in enumerate(codes[first:first + per_ns]):
            key = reg.keys.get(reg.units[code])  # its batch's vault (jincai.pki.keys), decrypted once
            with open(reg.path("units", f"{code}.crt"), "rb") as fh:
                cert = fh.read()
            units.append({"code": code, "identity": reg.units[code]["identity"], "cert": cert, "key": key,
                          "outer": f"198.18.232.{FIRST_CLIENT_IP + first + j}"})
        spaces.append(ClientNamespace(n, workdir, state["image"], units, vpn_plan["concentrator"]["address"],
                                      reg.server_identity(), real_ca, vpn_plan["lan"], libipsec))
    try:
        for cns in spaces:
            cns.setup(bridge)
            cns.start()
        for cns in spaces:
            cns.wait_ready()
        # loading the connections starts them all (start_action = start): the clock starts here
        t0 = time.monotonic()
        loads = [(cns, subprocess.Popen(["nsenter", "-t", str(cns.charon_pid()), "-m", "-n", "-r", "-w",
                                         "/usr/sbin/swanctl", "--load-all", "--noprompt"],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
                 for cns in spaces]
        for cns, proc in loads:
            out = proc.communicate()[0]
            if proc.returncode != 0:
                raise SystemExit(f"{cns.ns}: swanctl --load-all: {out}")
        up, child, deadline = 0, 0, t0 + 120
        while time.monotonic() < deadline:
            up, child = established_bench()
            if up >= count and child >= count:
                break
            time.sleep(0.5)
        elapsed = time.monotonic() - t0
        rss_clients = [cns.rss_kib() for cns in spaces]
        return {"tunnels": up, "children": child, "wanted": count, "seconds": elapsed, "namespaces": len(spaces),
                "client_rss_kib": rss_clients, "server_rss_kib": charon_rss_kib()}
    finally:
        for cns in spaces:
            cns.stop()


def main(argv=None):
    """Run the three measurements and print the figures; exit 1 when a goal is missed."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=1040)
    ap.add_argument("--tunnels", type=int, default=100, help="simultaneous bench tunnels (max 100)")
    ap.add_argument("--per-ns", type=int, default=25, help="tunnels per client namespace")
    ap.add_argument("--no-lab", action="store_true", help="only issue and render (no lab needed)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed run still cleans up (finally)
    if args.tunnels > 100:
        ap.error("--tunnels: at most 100 (client addresses 198.18.232.150-249)")

    from jincai.source import inventory  # noqa: F401 - fail early when the source is broken
    vpn_plan = vpnplans.plan(os.path.join(ROOT, "inventories", "lab"))
    inv = inventory.build(os.path.join(ROOT, "inventories", "lab"))
    vpn_plan["hostvars"] = inv["_meta"]["hostvars"][vpn_plan["concentrator"]["name"]]
    real_dir = store.default_dir()
    real_units = {}
    if os.path.exists(os.path.join(real_dir, "vpn", "units.json")):
        with open(os.path.join(real_dir, "vpn", "units.json"), encoding="utf-8") as fh:
            real_units = {u["code"]: u for u in json.load(fh)["units"]}
    workdir = tempfile.mkdtemp(prefix="jincai-vpnbench-")
    ok = True
    try:
        if os.path.exists(os.path.join(real_dir, "ca.crt")):
            shutil.copy(os.path.join(real_dir, "ca.crt"), os.path.join(workdir, "real-ca.crt"))
        libipsec = True
        if not args.no_lab and labmod.load_state().get("complete"):
            libipsec = "encap = yes" in ssh(VPN, "cat /etc/swanctl/conf.d/jincai.conf")
        reg, swanctl, nft, t = issue_and_render(workdir, args.units, vpn_plan,
                                                [u["address"] for u in real_units.values()], libipsec)
        total = t["issue"] + t["bundles"] + t["render"]
        log(f"issue {args.units} units (cert + vaulted key): {t['issue']:.2f} s; bundles: {t['bundles']:.2f} s; "
            f"render swanctl.conf ({len(swanctl) // 1024} KiB) + nftables ({len(nft) // 1024} KiB): "
            f"{t['render']:.2f} s; total {total:.2f} s (goal < 30 s)")
        ok &= total < 30
        if args.no_lab:
            return 0 if ok else 1
        if not labmod.load_state().get("complete"):
            raise SystemExit("the lab is not up (jincai lab up), or use --no-lab")
        leftover_cleanup()
        try:
            load = load_on_concentrator(reg, swanctl)
            log(f"charon on {VPN}: swanctl --load-all with {load['conns']} bench + {len(real_units)} real units: "
                f"{load['load_s']:.2f} s (goal < 10 s); charon RSS {load['rss0_kib'] // 1024} -> "
                f"{load['rss1_kib'] // 1024} MiB ({load['tail']})")
            ok &= load["load_s"] < 10 and load["conns"] == args.units
            if args.tunnels:
                tun = tunnels(reg, workdir, args.tunnels, args.per_ns, vpn_plan, libipsec)
                log(f"tunnels: {tun['tunnels']}/{tun['wanted']} IKE SAs ESTABLISHED, {tun['children']} CHILD SAs "
                    f"INSTALLED from {tun['namespaces']} client "
                    f"namespaces in {tun['seconds']:.2f} s (goal < 30 s); concentrator charon RSS "
                    f"{tun['server_rss_kib'] // 1024} MiB; client charons {sum(tun['client_rss_kib']) // 1024} MiB")
                ok &= min(tun["tunnels"], tun["children"]) >= tun["wanted"] and tun["seconds"] < 30
        finally:
            unload_from_concentrator()
            leftover_cleanup()
            log(f"cleaned up: bench connections unloaded from {VPN}, client namespaces removed")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
