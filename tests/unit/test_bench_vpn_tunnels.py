"""The pure parts of benchmarks/vpn_tunnels.py (no lab, no charon): the benchmark charon's configuration
derived from the vpn_client role's template, the parsing of swanctl output and of the concentrator
probe, the choice of units and of a free access address."""

import importlib.util
import os
import re
import subprocess

import pytest

from jincai import ROOT
from jincai.pki import bundle

spec = importlib.util.spec_from_file_location("vpn_tunnels", os.path.join(ROOT, "benchmarks", "vpn_tunnels.py"))
vt = importlib.util.module_from_spec(spec)
spec.loader.exec_module(vt)

UNIT = {"code": "bu0003", "name": "bu0003", "address": "198.18.160.3", "identity": "bu0003.bu.lab.jincai.test",
        "site": "220000", "home": "220000", "status": "active", "enrolment": "bundle", "apps": ["budget"]}

# swanctl 5.9.8 --list-sas on the concentrator: a unit up, one half-open, one whose CHILD_SA failed
CONCENTRATOR_SAS = """\
bu-bu0003: #7, ESTABLISHED, IKEv2, 6f1c2a3b4d5e6f70_i 0123456789abcdef_r*
  local  '220000-vpn.lab.jincai.test' @ 198.18.232.1[4500]
  remote 'bu0003.bu.lab.jincai.test' @ 198.18.232.250[4500] [198.18.160.3]
  AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384
  established 65s ago, rekeying in 13510s
  bu-bu0003: #9, reqid 9, INSTALLED, TUNNEL-in-UDP, ESP:AES_CBC-256/HMAC_SHA2_384_192
    installed 65s ago, rekeying in 3271s, expires in 3935s
    in  c3b1a2d4,      0 bytes,     0 packets
    out 0a1b2c3d,      0 bytes,     0 packets
    local  198.18.0.0/24
    remote 198.18.160.3/32
bu-bu0004: #8, CONNECTING, IKEv2, 1111111111111111_i 2222222222222222_r*
  local  '220000-vpn.lab.jincai.test' @ 198.18.232.1[500]
  remote '%any' @ 198.18.232.250[500]
bu-bu0005: #10, ESTABLISHED, IKEv2, 3333333333333333_i 4444444444444444_r*
  local  '220000-vpn.lab.jincai.test' @ 198.18.232.1[4500]
  remote 'bu0005.bu.lab.jincai.test' @ 198.18.232.250[4500] [198.18.160.9]
  AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384
  established 3s ago, rekeying in 13510s
  bu-bu0005: #11, reqid 11, INSTALLED, TUNNEL-in-UDP, ESP:AES_CBC-256/HMAC_SHA2_384_192
    local  198.18.0.0/24
    remote 198.18.160.9/32
bu-bu0006: #12, ESTABLISHED, IKEv2, 5555555555555555_i 6666666666666666_r*
  local  '220000-vpn.lab.jincai.test' @ 198.18.232.1[4500]
  remote 'bu0006.bu.lab.jincai.test' @ 198.18.232.250[4500] [198.18.160.6]
"""

CLIENT_SAS = """\
bu0003: #1, ESTABLISHED, IKEv2, 6f1c2a3b4d5e6f70_i* 0123456789abcdef_r
  local  'bu0003.bu.lab.jincai.test' @ 198.18.232.250[4500] [198.18.160.3]
  remote '220000-vpn.lab.jincai.test' @ 198.18.232.1[4500]
  AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384
  bu0003: #1, reqid 1, INSTALLED, TUNNEL-in-UDP, ESP:AES_CBC-256/HMAC_SHA2_384_192
    local  198.18.160.3/32
    remote 198.18.0.0/24
"""

PROBE_OUT = """pid 412
VmHWM: 30112
VmRSS: 29876
Pss: 27010
cpu 151 49 100
IKE_SAs: 1005 total, 3 half-open
sas 1002 1001 3
"""


def units(*specs):
    return [dict(UNIT, code=c, address=a, identity=f"{c}.bu.lab.jincai.test") for c, a in specs]


def test_a_unit_connection_is_the_vpn_client_role_template_renamed_and_started_by_the_benchmark():
    conf = bundle.client_conf(UNIT, "220000-vpn.lab.jincai.test", "198.18.232.1", "198.18.0.0/24")
    body = vt.unit_connection(conf, "bu0003", "198.18.232.250", libipsec=True)
    assert re.search(r"^    bu0003 \{\n        version = 2\n        local_addrs = 198\.18\.232\.250\n", body, re.M)
    assert re.search(r"^            bu0003 \{$", body, re.M)  # the child too
    assert not re.search(r"province \{", body)  # neither the connection nor the child keeps the name
    for line in ("keyingtries = 1", "start_action = none", "close_action = none", "dpd_action = clear",
                 "encap = yes", "id = bu0003.bu.lab.jincai.test", "certs = bu0003.crt", "remote_addrs = 198.18.232.1",
                 "remote_ts = 198.18.0.0/24", "id = 220000-vpn.lab.jincai.test"):
        assert line in body, line
    assert "start_action = start" not in body and "close_action = start" not in body
    assert "encap" not in vt.unit_connection(conf, "bu0003", "198.18.232.250", libipsec=False)
    whole = vt.client_swanctl_conf([body, vt.unit_connection(conf.replace("bu0003", "bu0004"), "bu0004",
                                                             "198.18.232.250", True)])
    assert whole.count("{") == whole.count("}") and whole.startswith("# jincai")
    assert re.findall(r"^    (\S+) \{$", whole, re.M) == ["bu0003", "bu0004"]


def test_a_changed_role_template_stops_the_benchmark_instead_of_running_another_configuration():
    conf = bundle.client_conf(UNIT, "220000-vpn.lab.jincai.test", "198.18.232.1", "198.18.0.0/24")
    with pytest.raises(vt.BenchError, match="close_action = start"):
        vt.unit_connection(conf.replace("close_action = start", "close_action = trap"), "bu0003", "198.18.232.250", True)


@pytest.mark.parametrize("libipsec", [True, False])
def test_strongswan_conf_gives_the_benchmark_charon_its_own_socket_and_the_role_retransmission(libipsec):
    retransmit = vt.retransmit_settings(open(os.path.join(ROOT, "roles", "vpn_client", "defaults", "main.yml"),
                                             encoding="utf-8").read())
    assert retransmit == {"tries": 3, "timeout": 2.0, "base": 1.4}
    text = vt.strongswan_conf("/tmp/x/charon.vici", "/tmp/x/charon.log", libipsec, retransmit)
    assert text.count("{") == text.count("}")
    assert text.count("socket = unix:///tmp/x/charon.vici") == 2  # charon's vici plugin and swanctl's default
    assert f"kernel-libipsec {{\n            load = {'yes' if libipsec else 'no'}" in text
    assert f"install_virtual_ip = {'yes' if libipsec else 'no'}" in text  # libipsec routes from the virtual IP
    assert "retransmit_tries = 3" in text and "retransmit_base = 1.4" in text
    assert "path = /tmp/x/charon.log" in text and "default = -1" in text  # its log, not the journal
    assert "kernel-libipsec kernel-netlink" in text  # libipsec first, or charon installs SAs in the kernel
    assert "threads = 32" in text


def test_the_benchmark_charon_has_a_worker_thread_for_packets_beside_every_waiting_initiation():
    assert vt.client_threads(8) == 32 and vt.client_threads(40) == 56
    text = vt.strongswan_conf("/tmp/x/v", "/tmp/x/l", True, {"tries": 3, "timeout": 2.0, "base": 1.4},
                              vt.client_threads(40))
    assert "threads = 56" in text


def test_the_stand_in_takes_the_role_settings_first_and_its_own_socket():
    text = vt.standin_strongswan_conf("/tmp/s/charon.vici", "/tmp/s/charon.log", "/tmp/s/zz-jincai.conf")
    assert text.index("include /tmp/s/zz-jincai.conf") < text.index("charon {")
    assert text.count("socket = unix:///tmp/s/charon.vici") == 2 and text.count("{") == text.count("}")


def test_parse_sas_reads_names_states_identities_virtual_ips_and_children():
    sas = vt.parse_sas(CONCENTRATOR_SAS)
    assert [(s["name"], s["state"]) for s in sas] == [("bu-bu0003", "ESTABLISHED"), ("bu-bu0004", "CONNECTING"),
                                                    ("bu-bu0005", "ESTABLISHED"), ("bu-bu0006", "ESTABLISHED")]
    first = sas[0]
    assert first["remote_id"] == "bu0003.bu.lab.jincai.test" and first["remote_addr"] == "198.18.232.250"
    assert first["remote_vips"] == ["198.18.160.3"] and first["local_vips"] == []
    assert first["children"] == {"bu-bu0003": "INSTALLED"} and first["id"] == 7
    assert sas[1]["remote_id"] == "%any" and sas[1]["children"] == {}
    client = vt.parse_sas(CLIENT_SAS)[0]
    assert client["local_vips"] == ["198.18.160.3"] and client["remote_vips"] == []
    assert client["children"] == {"bu0003": "INSTALLED"}
    assert vt.parse_sas("") == [] and vt.parse_sas("no IKE_SAs\n") == []


def test_check_tunnels_counts_installed_children_and_catches_a_wrong_virtual_ip():
    us = units(("bu0003", "198.18.160.3"), ("bu0004", "198.18.160.4"), ("bu0005", "198.18.160.5"),
               ("bu0006", "198.18.160.6"))
    ok, wrong = vt.check_tunnels(vt.parse_sas(CONCENTRATOR_SAS), us, concentrator_side=True)
    assert ok == 2  # bu0003 and bu0005; bu0004 is half-open, bu0006 has no CHILD_SA
    assert wrong == [("bu0005", ["198.18.160.9"])]
    # a unit with two IKE_SAs for a moment (one replacing the other): the one with the CHILD_SA counts
    twice = CONCENTRATOR_SAS.replace("bu-bu0006: #12", "bu-bu0003: #12").replace("bu0006.bu", "bu0003.bu")
    assert vt.check_tunnels(vt.parse_sas(twice), us[:1], concentrator_side=True) == (1, [])
    reordered = "\n".join(twice.splitlines()[-3:] + twice.splitlines()[:-3]) + "\n"
    assert vt.check_tunnels(vt.parse_sas(reordered), us[:1], concentrator_side=True) == (1, [])
    assert vt.check_tunnels(vt.parse_sas(CLIENT_SAS), us[:1], concentrator_side=False) == (1, [])
    assert vt.check_tunnels(vt.parse_sas(CLIENT_SAS), us[:1], concentrator_side=True) == (0, [])  # other names


def test_the_concentrator_probe_counts_what_check_tunnels_counts():
    """The awk of the probe (run on the concentrator) counts IKE_SAs ESTABLISHED, CHILD_SAs INSTALLED,
    half-open: run here on the sample, through sh as on the host."""
    awk = vt.COUNT[vt.COUNT.index("awk '\n"):]
    res = subprocess.run(["sh", "-c", awk], input=CONCENTRATOR_SAS, capture_output=True, text=True, check=True)
    assert res.stdout.split() == ["sas", "3", "2", "1"]


def test_parse_probe_reads_memory_cpu_and_counts_and_refuses_a_short_answer():
    assert vt.parse_probe(PROBE_OUT) == {"pid": 412, "hwm_kib": 30112, "rss_kib": 29876, "pss_kib": 27010,
                                         "cpu_s": 2.0, "ike_total": 1005, "ike_half_open": 3, "ike": 1002,
                                         "child": 1001, "half_open": 3}
    light = vt.parse_probe(PROBE_OUT.replace("sas 1002 1001 3\n", ""))  # the poll: no full list
    assert light["ike_total"] == 1005 and "ike" not in light
    with pytest.raises(vt.BenchError, match="no pss_kib"):
        vt.parse_probe(PROBE_OUT.replace("Pss: 27010\n", ""))


def test_select_units_skips_lab_clients_revoked_csr_and_unloaded_units_and_says_how_to_get_more():
    reg = [dict(UNIT, code=c, status=s, enrolment=e) for c, s, e in (
        ("bu0001", "active", "bundle"), ("bu0010", "active", "bundle"), ("bu0009", "revoked", "bundle"),
        ("bu0008", "active", "csr"), ("bu0007", "active", "bundle"), ("bu0006", "active", "bundle"))]
    got = vt.select_units(reg, {"bu0001", "bu0002"}, 2, loaded={"bu-bu0006", "bu-bu0010", "bu-bu0001"})
    assert [u["code"] for u in got] == ["bu0006", "bu0010"]
    assert [u["code"] for u in vt.select_units(reg, {"bu0001"}, 3)] == ["bu0006", "bu0007", "bu0010"]
    with pytest.raises(vt.BenchError, match=r"has 3 usable units.*--units 4 needs 4.*jincai pki add --csv"):
        vt.select_units(reg, {"bu0001"}, 4)


def test_pick_address_avoids_taken_addresses_and_fails_when_the_network_is_full():
    assert vt.pick_address("198.18.232.0/24", {"198.18.232.1", "198.18.232.101"}) == "198.18.232.250"
    assert vt.pick_address("198.18.232.0/24", {f"198.18.232.{i}" for i in range(250, 255)}) == "198.18.232.249"
    assert vt.pick_address("198.18.232.0/29", {"198.18.232.6"}) == "198.18.232.5"
    with pytest.raises(vt.BenchError, match="no free address"):
        vt.pick_address("198.18.232.0/30", {"198.18.232.1", "198.18.232.2"})


# --------------------------------------------------------------------------- --sources K

def test_pick_addresses_gives_k_distinct_free_lab_addresses_and_refuses_outside_the_lab_range():
    taken = {"198.18.232.1", "198.18.232.101", "198.18.232.252"}
    got = vt.pick_addresses("198.18.232.0/24", taken, 6)
    assert got == ["198.18.232.250", "198.18.232.251", "198.18.232.253", "198.18.232.254", "198.18.232.249",
                   "198.18.232.248"]
    assert vt.pick_addresses("198.18.232.0/24", taken, 1) == [vt.pick_address("198.18.232.0/24", taken)]
    twin = vt.pick_addresses("198.18.232.0/22", {"198.18.232.250"}, 4)  # the twin's access /22
    assert twin == ["198.18.232.251", "198.18.232.252", "198.18.232.253", "198.18.232.254"]
    assert all(vt.ipaddress.ip_address(a) in vt.LAB_RANGE for a in got + twin)
    with pytest.raises(vt.BenchError, match=r"only 1 free addresses in 198.18.232.0/30 for --sources 2"):
        vt.pick_addresses("198.18.232.0/30", {"198.18.232.1"}, 2)
    with pytest.raises(vt.BenchError, match="not inside the lab's 198.18.0.0/15"):
        vt.pick_addresses("10.22.232.0/22", set(), 2)


def test_assign_sources_spreads_the_units_round_robin():
    us = units(*[(f"bu{i:04d}", f"198.18.160.{i}") for i in range(3, 13)])  # 10 units
    srcs = ["198.18.232.250", "198.18.232.251", "198.18.232.252", "198.18.232.253"]
    got = vt.assign_sources(us, srcs)
    assert list(got) == [u["code"] for u in us]
    assert [got[u["code"]] for u in us[:5]] == srcs + srcs[:1]  # consecutive initiations: different addresses
    per = {s: sum(1 for v in got.values() if v == s) for s in srcs}
    assert per == {srcs[0]: 3, srcs[1]: 3, srcs[2]: 2, srcs[3]: 2}
    assert set(vt.assign_sources(us, srcs[:1]).values()) == {srcs[0]}  # one source: today's benchmark


def test_per_source_concurrency_is_kept_below_the_block_threshold():
    assert vt.capped_concurrency(8, 10) == (8, None)
    value, note = vt.capped_concurrency(12, 10)
    assert value == 9 and "block_threshold of 10" in note and "--sources" in note
    assert vt.capped_concurrency(10, 10)[0] == 9
    assert vt.capped_concurrency(40, 0) == (40, None)  # the concentrator names none


def test_each_unit_connection_leaves_from_its_own_source_and_the_namespace_holds_every_source():
    us = units(("bu0003", "198.18.160.3"), ("bu0004", "198.18.160.4"), ("bu0005", "198.18.160.5"))
    srcs = ["198.18.232.250", "198.18.232.251"]
    assignment = vt.assign_sources(us, srcs)
    conns = [vt.unit_connection(bundle.client_conf(u, "220000-vpn.lab.jincai.test", "198.18.232.1", "198.18.0.0/24"),
                                u["code"], assignment[u["code"]], True) for u in us]
    whole = vt.client_swanctl_conf(conns)
    assert re.findall(r"^    (\S+) \{\n        version = 2\n        local_addrs = (\S+)$", whole, re.M) == [
        ("bu0003", "198.18.232.250"), ("bu0004", "198.18.232.251"), ("bu0005", "198.18.232.250")]
    assert whole.count("remote_addrs = 198.18.232.1") == 3 and whole.count("{") == whole.count("}")
    cmds = vt.address_commands(srcs, 24)
    assert cmds == [["ip", "-n", vt.NETNS, "addr", "add", "198.18.232.250/24", "dev", "eth0"],
                    ["ip", "-n", vt.NETNS, "addr", "add", "198.18.232.251/24", "dev", "eth0"],
                    ["ip", "-n", vt.NETNS, "link", "set", "eth0", "up"]]
    assert "threads = 48" in vt.strongswan_conf("/tmp/x/v", "/tmp/x/l", True, {"tries": 3, "timeout": 2.0, "base": 1.4},
                                                vt.client_threads(4 * 8))  # 4 sources x 8 in flight


def test_source_spread_counts_tunnels_per_source_and_catches_one_from_another_address():
    us = units(("bu0003", "198.18.160.3"), ("bu0005", "198.18.160.9"), ("bu0006", "198.18.160.6"))
    sas = vt.parse_sas(CONCENTRATOR_SAS)  # bu0003, bu0005, bu0006 established from 198.18.232.250
    counts, wrong = vt.source_spread(sas, {"bu0003": "198.18.232.250", "bu0005": "198.18.232.251",
                                           "bu0006": "198.18.232.250"})
    assert counts == {"198.18.232.250": 2, "198.18.232.251": 0}
    assert wrong == [("bu0005", "198.18.232.251", "198.18.232.250")]
    assert vt.source_spread(sas, vt.assign_sources(us, ["198.18.232.250"])) == ({"198.18.232.250": 3}, [])


def test_sources_must_be_between_1_and_the_limit(capsys):
    for bad in ("0", str(vt.MAX_SOURCES + 1)):
        with pytest.raises(SystemExit):
            vt.main(["--sources", bad])
        assert "--sources: 1 to" in capsys.readouterr().err


def test_the_benchmark_port_has_the_same_locally_administered_mac_in_every_run():
    """The concentrator keeps a STALE neighbour entry per source address after a run: a port with a new
    random MAC in the next run blackholed its replies (~8 s) and failed tunnels from secondary addresses."""
    mac = vt.port_mac("198.18.232.250")
    assert re.fullmatch(r"02(:[0-9a-f]{2}){5}", mac)  # locally administered, unicast
    assert mac == vt.port_mac("198.18.232.250")
    assert mac != vt.port_mac("198.18.232.251")


class _Conc:
    """A concentrator probe that counts up as the scripted values say."""

    def __init__(self, values):
        self.values = list(values)

    def probe(self, count=True):
        v = self.values[0] if len(self.values) == 1 else self.values.pop(0)
        return {"ike_total": v, "ike_half_open": 0, "ike": v, "child": v}


def test_wait_all_stops_when_every_initiation_returned_and_some_failed():
    base = {"ike_total": 0, "ike_half_open": 0, "ike": 0, "child": 0}
    t0 = vt.time.monotonic()
    _, secs = vt.wait_all(_Conc([1, 2, 3]), base, 4, t0, deadline_s=60, interval=0.01, finished=lambda: True)
    assert secs is None and vt.time.monotonic() - t0 < 5  # not the 60 s deadline
    _, secs = vt.wait_all(_Conc([1, 2, 4]), base, 4, t0, deadline_s=60, interval=0.01, finished=lambda: False)
    assert secs is not None
