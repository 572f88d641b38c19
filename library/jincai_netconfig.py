#!/usr/bin/python
"""Ansible module: bring a router's running config to an intended config through netmiko."""

DOCUMENTATION = r"""
---
module: jincai_netconfig
short_description: Push the difference between an intended and the running router config
description:
  - Runs on the control node (the inventory gives routers C(ansible_connection=local)) and talks to the router through netmiko.
  - Fetches the running config, normalizes both sides (comments, separators, volatile lines
    dropped) and computes the commands that take the device to the intended config. Removals come
    first, then changes inside sections, then new lines; ordered sections such as ACLs are re-sent
    whole.
  - In check mode nothing is sent in config mode; the module reports what would change.
  - With C(--diff) the diff of the normalized configs is returned.
  - Lines are sent one by one; every answer is matched against the platform's error patterns
    (C(% Unknown command), C(Error:), C(Unrecognized command), C(... is not running)). On the first
    error the device is rolled back to the config it had before the run, and the task fails naming
    the offending line.
  - A timestamped copy of the running config is written to O(backup_dir) before any change.
  - The config is saved (C(write memory); C(save) with its confirmation; C(commit) on VRPv8).
  - Reports changed only when the device's running config really changed.
version_added: "0.1.0"
author: jincai project
options:
  platform:
    description: Router platform (selects the netmiko driver, prompts, error patterns, save).
    type: str
    required: true
    choices: [frr, cisco_ios, huawei_vrp, huawei_vrpv8, h3c_comware]
  host:
    description: Address to connect to (the router's management address).
    type: str
    required: true
  port:
    description: SSH port.
    type: int
    default: 22
  username:
    description: SSH user (on FRR, a user whose login shell is vtysh).
    type: str
    required: true
  key_file:
    description: Private key file for the SSH user.
    type: path
  password:
    description: Password, when no key is used.
    type: str
  known_hosts:
    description:
      - An OpenSSH known_hosts file; when set, the device's host key must be listed in it.
    type: path
  config:
    description:
      - The whole intended config text (as rendered from templates/router/).
      - Treated as secret (it may hold SNMP keys); results show secrets masked.
    type: str
    required: true
  backup_dir:
    description: Directory on the control node for timestamped running-config backups.
    type: path
  save:
    description: Save the config after a change.
    type: bool
    default: true
  timeout:
    description: Connection and per-line timeout in seconds.
    type: int
    default: 20
notes:
  - Supports check mode and diff mode.
"""

EXAMPLES = r"""
- name: Bring the router config to the intended state
  jincai_netconfig:
    platform: frr
    host: "{{ ansible_host }}"
    username: netops
    key_file: /var/lib/jincai-lab/ssh/id_ed25519
    config: "{{ lookup('ansible.builtin.template', 'router/frr.conf.j2') }}"
    backup_dir: "{{ playbook_dir }}/../backups/{{ jincai_site_code }}/{{ inventory_hostname }}"
  # routers have ansible_connection=local: the module runs on the control node
"""

RETURN = r"""
commands:
  description: The commands sent (or, in check mode, that would be sent), secrets masked.
  returned: always
  type: list
  elements: str
backup_path:
  description: Path of the running-config backup taken before the change.
  returned: when a change was applied
  type: str
failed_line:
  description: The line the device refused.
  returned: on a refused line
  type: str
device_output:
  description: The device's answer to the refused line.
  returned: on a refused line
  type: str
rolled_back:
  description: Whether the device was rolled back to its pre-change config after an error.
  returned: on failure after a change started
  type: bool
timings:
  description: Seconds spent connecting, reading, applying, saving.
  returned: always
  type: dict
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.jincai_netconfig import (
    NetconfigError, Device, connect, display, get_platform, normalize, parse, plan, render, same, write_only_lines,
)


def _write_backup(directory, host, text):
    """Write ``text`` to ``directory/<host>-<UTC timestamp>.cfg`` and return the path."""
    os.makedirs(directory, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = os.path.join(directory, f"{host}-{stamp}.cfg")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


def run(module):
    """Do the work; returns the result dict (or calls fail_json)."""
    p = module.params
    platform = get_platform(p["platform"])
    timings = {}
    intended = parse(p["config"], platform)
    if not intended:
        module.fail_json(msg="the intended config is empty after normalization")
    after_text = render(intended)

    t0 = time.monotonic()
    try:
        conn = connect(platform, p["host"], p["username"], port=p["port"], key_file=p["key_file"],
                       password=p["password"], timeout=p["timeout"], known_hosts=p["known_hosts"])
    except Exception as exc:  # netmiko raises many types; all mean "cannot reach the device"
        module.fail_json(msg=f"cannot connect to {p['host']}:{p['port']} as {p['username']}: {exc}")
    timings["connect"] = round(time.monotonic() - t0, 3)
    dev = Device(conn, platform, line_timeout=p["timeout"])
    result = dict(changed=False, commands=[], timings=timings)
    try:
        t0 = time.monotonic()
        running_text = dev.running()
        before_text = normalize(running_text, platform)
        timings["fetch"] = round(time.monotonic() - t0, 3)
        cmds = plan(parse(running_text, platform), intended, platform)
        if cmds:
            cmds += write_only_lines(p["config"], platform)
        result["commands"] = [display(c, platform) for c in cmds]
        if module._diff and cmds:
            result["diff"] = dict(before=before_text, after=after_text,
                                  before_header=f"{p['host']} running-config",
                                  after_header="intended config")
        if not cmds or module.check_mode:
            result["changed"] = bool(cmds)
            return result

        if p["backup_dir"]:
            result["backup_path"] = _write_backup(p["backup_dir"], p["host"], running_text)
        t0 = time.monotonic()
        try:
            dev.apply(cmds)
            new_text = dev.running()
            left = plan(parse(new_text, platform), intended, platform)
            if left:
                raise NetconfigError(left[0], "the device did not converge to the intended config; "
                                     f"still differing: {left}")
        except NetconfigError as exc:
            _fail_and_roll_back(module, dev, running_text, exc, result)
        timings["apply"] = round(time.monotonic() - t0, 3)
        result["changed"] = not same(parse(new_text, platform), parse(running_text, platform))
        if result["changed"] and p["save"]:
            t0 = time.monotonic()
            try:
                dev.save()
            except NetconfigError as exc:
                module.fail_json(msg=f"config applied but saving failed: {exc.message}",
                                 failed_line=exc.line, device_output=exc.output, **result)
            timings["save"] = round(time.monotonic() - t0, 3)
        return result
    finally:
        conn.disconnect()


def _fail_and_roll_back(module, dev, backup_text, exc, result):
    """Restore the pre-change config and fail with the offending line."""
    try:
        remaining = dev.rollback(backup_text)
        rolled = not remaining
        note = ("the device was rolled back to its previous config" if rolled
                else f"ROLLBACK INCOMPLETE, still differing:\n{remaining}")
    except NetconfigError as rb_exc:
        rolled = False
        note = f"ROLLBACK FAILED at {rb_exc.line!r}: {rb_exc.message}"
    module.fail_json(msg=f"{module.params['host']}: device refused {exc.line!r}: {exc.message}; {note}",
                     failed_line=exc.line, device_output=exc.output, rolled_back=rolled, **result)


def main():
    """Module entry point."""
    module = AnsibleModule(
        argument_spec=dict(
            platform=dict(type="str", required=True,
                          choices=["frr", "cisco_ios", "huawei_vrp", "huawei_vrpv8", "h3c_comware"]),
            host=dict(type="str", required=True),
            port=dict(type="int", default=22),
            username=dict(type="str", required=True),
            key_file=dict(type="path"),
            password=dict(type="str", no_log=True),
            known_hosts=dict(type="path"),
            config=dict(type="str", required=True, no_log=True),
            backup_dir=dict(type="path"),
            save=dict(type="bool", default=True),
            timeout=dict(type="int", default=20),
        ),
        supports_check_mode=True,
    )
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
