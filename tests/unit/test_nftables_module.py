"""library/jincai_nftables.py without a host: the one ssh command it builds and how it reads the
script's answer (the live proofs are tests/lab/test_routing.py's packet-filter tests)."""

import importlib.util
import os
import shlex

from jincai import ROOT

spec = importlib.util.spec_from_file_location("jincai_nftables", os.path.join(ROOT, "library", "jincai_nftables.py"))
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)

PARAMS = {"host": "198.19.0.20", "port": 22, "user": "jincai", "key_file": "/k/id", "timeout": 10,
          "ssh_args": "-o UserKnownHostsFile=/k/known_hosts -o StrictHostKeyChecking=yes",
          "path": "/etc/nftables.conf", "table": "inet jincai_router", "stamp": "/run/x.loaded",
          "service": "nftables.service"}


def test_one_batch_ssh_command_with_the_inventory_key_and_options_runs_the_script_under_sudo():
    argv = mod.ssh_command(PARAMS, check=False, diff=True)
    assert argv[:2] == ["ssh", "-p"] and "BatchMode=yes" in argv and argv[argv.index("-i") + 1] == "/k/id"
    assert "UserKnownHostsFile=/k/known_hosts" in argv and "StrictHostKeyChecking=yes" in argv
    assert argv[-2] == "jincai@198.19.0.20"
    remote = shlex.split(argv[-1])  # what the login shell runs
    assert remote[:5] == ["sudo", "-n", "/bin/sh", "-c", mod.SCRIPT]
    assert remote[5:] == ["jincai-nftables", "/etc/nftables.conf", "/run/x.loaded", "0", "inet jincai_router",
                          "nftables.service", "1"]
    assert shlex.split(mod.ssh_command(PARAMS, check=True, diff=False)[-1])[8] == "1"  # check mode reaches the script


def test_the_state_line_is_read_and_a_missing_one_is_none():
    out = "jincai-nftables file=differs meta=root:root:600 loaded=no enabled=disabled\njincai-nftables-done\n"
    assert mod.parse(out) == ("differs", "root:root:600", "no", "disabled")
    assert mod.parse("sudo: a password is required\n") is None


def test_the_file_before_comes_back_for_the_diff():
    out = "jincai-nftables file=differs meta=root:root:644 loaded=yes enabled=enabled\n" \
          "jincai-nftables-before\nIyBoYW5kLW1hZGUK\njincai-nftables-end\n"
    assert mod.BEFORE_RE.search(out).group(1) == "IyBoYW5kLW1hZGUK"  # "# hand-made\n"
