#!/usr/bin/python
"""Ansible module: install and load an nftables ruleset on a Linux host with one SSH command."""

DOCUMENTATION = r"""
---
module: jincai_nftables
short_description: Install, validate, load and enable an nftables ruleset over one SSH command
description:
  - Runs on the control node (a router's C(ansible_connection=local), as M(jincai_netconfig)) and
    reaches the host with one C(ssh) command (BatchMode, the inventory's key and SSH options) that runs
    one shell script under C(sudo -n); the ruleset travels on its standard input.
  - Why not Ansible's own connection: under the Mitogen strategy the template, shell and service tasks
    this replaces cost each FRR router ~500 ms of CPU for the Python interpreters (login and sudo)
    alone; one SSH command with sudo costs ~45 ms (docs/speed.md, "Routers").
  - The script compares the file with the ruleset (C(cmp)) and its owner, group and mode
    (root:root 0644); the kernel is taken to hold the file when the stamp file holds the file's
    C(sha1sum) and C(nft list table) finds the table (the rule of the shell task this replaces); the
    service must be enabled.
  - A new ruleset is checked with C(nft -c -f) before it is installed (atomically, by rename) and
    loaded with C(nft -f); an invalid ruleset changes nothing and fails the task with nft's message.
  - Check mode runs the same comparison and changes nothing; C(--diff) returns the file before and after.
version_added: "0.1.0"
author: jincai project
options:
  host:
    description: Address to connect to (the host's management address, C(ansible_host)).
    type: str
    required: true
  port:
    description: SSH port.
    type: int
    default: 22
  user:
    description: SSH user (C(ansible_user)); it must be allowed C(sudo -n).
    type: str
    required: true
  key_file:
    description: Private key of the SSH user (C(ansible_ssh_private_key_file)).
    type: path
  ssh_args:
    description: More ssh(1) options, as one string (C(ansible_ssh_common_args), e.g. the known hosts file).
    type: str
    default: ""
  timeout:
    description: Seconds for the connection (ConnectTimeout) and, times 6, for the whole command.
    type: int
    default: 10
  path:
    description: The ruleset file on the host.
    type: str
    required: true
  content:
    description: The ruleset.
    type: str
    required: true
  table:
    description: The table (family and name) the ruleset defines, e.g. C(inet jincai_router).
    type: str
    required: true
  stamp:
    description: File on the host holding the C(sha1sum) of the ruleset last loaded.
    type: str
    required: true
  service:
    description: The unit that loads the ruleset at boot (enabled when it is not).
    type: str
    default: nftables.service
"""

EXAMPLES = r"""
- name: Install and load the packet filter of a Linux (FRR) router over one SSH command
  jincai_nftables:
    host: "{{ ansible_host }}"
    user: "{{ ansible_user }}"
    key_file: "{{ ansible_ssh_private_key_file }}"
    ssh_args: "{{ ansible_ssh_common_args | default('') }}"
    path: /etc/nftables.conf
    content: "{{ lookup('ansible.builtin.template', 'nftables.j2') }}"
    table: inet jincai_router
    stamp: /run/jincai-router-nftables.loaded
"""

RETURN = r"""
file:
  description: C(same) or C(differs) (the file against the ruleset, before this run).
  type: str
  returned: always
loaded:
  description: Whether the kernel held the file's ruleset before this run.
  type: bool
  returned: always
enabled:
  description: The service's C(systemctl is-enabled) before this run.
  type: str
  returned: always
"""

import base64
import re
import shlex
import subprocess

from ansible.module_utils.basic import AnsibleModule

# $1 file, $2 stamp, $3 check (1/0), $4 table, $5 service, $6 diff (1/0); the ruleset on stdin.
SCRIPT = r"""
set -u
f=$1 stamp=$2 check=$3 table=$4 service=$5 want_diff=$6
new=$(mktemp) || exit 90
trap 'rm -f "$new" "$f.jincai-new"' EXIT
cat > "$new"
file=same
cmp -s "$new" "$f" || file=differs
meta=$(stat -c '%U:%G:%a' "$f" 2>/dev/null) || meta=missing
loaded=yes
if [ "$file" = differs ] || ! sha1sum "$f" 2>/dev/null | cmp -s - "$stamp" || ! nft list table $table > /dev/null 2>&1; then
  loaded=no
fi
enabled=$(systemctl is-enabled "$service" 2>/dev/null) || true
echo "jincai-nftables file=$file meta=$meta loaded=$loaded enabled=${enabled:-unknown}"
if [ "$file" = differs ] && [ "$want_diff" = 1 ] && [ -f "$f" ]; then
  echo "jincai-nftables-before"; base64 -w0 "$f"; echo; echo "jincai-nftables-end"
fi
[ "$check" = 1 ] && exit 0
if [ "$file" = differs ]; then
  nft -c -f "$new" >&2 || { echo "jincai-nftables invalid" >&2; exit 3; }
  install -o root -g root -m 0644 "$new" "$f.jincai-new" && mv -f "$f.jincai-new" "$f" || exit 4
elif [ "$meta" != root:root:644 ]; then
  chown root:root "$f" && chmod 0644 "$f" || exit 4
fi
if [ "$loaded" = no ]; then
  nft -f "$f" >&2 || exit 5
  sha1sum "$f" > "$stamp" || exit 5
fi
if [ "$enabled" != enabled ]; then
  systemctl enable "$service" > /dev/null 2>&1 || exit 6
fi
echo jincai-nftables-done
"""

STATE_RE = re.compile(r"^jincai-nftables file=(\S+) meta=(\S+) loaded=(\S+) enabled=(\S*)$", re.M)
BEFORE_RE = re.compile(r"^jincai-nftables-before\n(\S*)\njincai-nftables-end$", re.M)
FAILED = {3: "the new ruleset is not valid (nft -c -f)", 4: "could not install the file",
          5: "could not load the ruleset (nft -f)", 6: "could not enable the service", 90: "mktemp failed"}


def ssh_command(p, check, diff):
    """The argv of the one ssh command (the remote side: sudo -n sh -c SCRIPT with its arguments)."""
    remote = " ".join(shlex.quote(a) for a in (
        "sudo", "-n", "/bin/sh", "-c", SCRIPT, "jincai-nftables", p["path"], p["stamp"],
        "1" if check else "0", p["table"], p["service"], "1" if diff else "0"))
    argv = ["ssh", "-p", str(p["port"]), "-o", "BatchMode=yes", "-o", f"ConnectTimeout={p['timeout']}"]
    if p["key_file"]:
        argv += ["-i", p["key_file"], "-o", "IdentitiesOnly=yes"]
    return argv + shlex.split(p["ssh_args"] or "") + [f"{p['user']}@{p['host']}", remote]


def parse(stdout):
    """The state line of the script's output: ``(file, meta, loaded, enabled)``, or None."""
    m = STATE_RE.search(stdout)
    return m.groups() if m else None


def run(module):
    """Run the command; exit the module with its outcome."""
    p, check, diff = module.params, module.check_mode, module._diff  # pylint: disable=protected-access
    content = p["content"] if p["content"].endswith("\n") else p["content"] + "\n"
    where = f"{p['user']}@{p['host']}:{p['path']}"
    try:
        res = subprocess.run(ssh_command(dict(p), check, diff), input=content.encode(), capture_output=True,
                             timeout=p["timeout"] * 6, check=False)
    except subprocess.TimeoutExpired:
        module.fail_json(msg=f"{where}: no answer in {p['timeout'] * 6} s")
    out, err = res.stdout.decode(errors="replace"), res.stderr.decode(errors="replace")
    state = parse(out)
    if res.returncode != 0 or state is None:
        why = FAILED.get(res.returncode, f"ssh exited with {res.returncode}")
        module.fail_json(msg=f"{where}: {why}: {err.strip()[-800:] or out.strip()[-800:]}", rc=res.returncode)
    file, meta, loaded, enabled = state
    if not check and "jincai-nftables-done" not in out:
        module.fail_json(msg=f"{where}: the script stopped before its end: {err.strip()[-800:]}")
    changed = file == "differs" or meta != "root:root:644" or loaded != "yes" or enabled != "enabled"
    result = {"changed": changed, "file": file, "loaded": loaded == "yes", "enabled": enabled}
    if diff and file == "differs":
        m = BEFORE_RE.search(out)
        before = base64.b64decode(m.group(1)).decode(errors="replace") if m else ""
        result["diff"] = {"before": before, "after": content, "before_header": p["path"], "after_header": p["path"]}
    module.exit_json(**result)


def main():
    """Module entry point."""
    module = AnsibleModule(
        argument_spec={
            "host": {"type": "str", "required": True},
            "port": {"type": "int", "default": 22},
            "user": {"type": "str", "required": True},
            "key_file": {"type": "path"},
            "ssh_args": {"type": "str", "default": ""},
            "timeout": {"type": "int", "default": 10},
            "path": {"type": "str", "required": True},
            "content": {"type": "str", "required": True},
            "table": {"type": "str", "required": True},
            "stamp": {"type": "str", "required": True},
            "service": {"type": "str", "default": "nftables.service"},
        },
        supports_check_mode=True,
    )
    run(module)


if __name__ == "__main__":
    main()
