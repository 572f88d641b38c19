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
  - Only the parts of the config jincai owns on the platform are compared and changed (interface
    addressing and OSPF, the OSPF process, jincai's ACLs, NTP, syslog, SNMP, SSH/VTY access, the
    login banner; docs/routing.md lists them per platform). Every other line is unmanaged and kept;
    O(unmanaged) lists them and C(--diff) shows them as "unmanaged, kept".
  - Before the change the device's own way back is armed (IOS revert timer, VRP V8 commit trial,
    Comware commit delay, VRP V5 saved config + scheduled reboot). The change is confirmed only after
    a new session has logged in and found the converged config; if the session is lost the device
    restores its previous config by itself and the task fails with O(rolled_back).
  - Lines are sent one by one; every answer is matched against the platform's error patterns
    (C(% Unknown command), C(Error:), C(Unrecognized command), C(... is not running)). On the first
    error the device is rolled back to the config it had before the run, in the same session (the
    fast path), the device timer is cancelled, and the task fails naming the offending line.
  - Only the platform's expected confirmations are answered; any other question is answered N and
    aborts the push (rolled back), naming the question.
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
  rollback_timer:
    description:
      - Seconds the device waits for the confirmation before taking its own way back (rounded up to
        whole minutes where the platform counts minutes; 60-65535 on VRP V8).
    type: int
    default: 300
  timer_scale:
    description:
      - Real seconds per device second of the device timers; 1 for real devices. Only the vendor
        CLI twins (jincai.lab.vendorsim C(--time-scale)) run faster clocks.
    type: float
    default: 1.0
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
rolled_back_by:
  description: C(control node) (inverse diff in the session) or C(device timer) (the device's own way back).
  returned: when rolled back
  type: str
unmanaged:
  description: Lines of the running config outside the owned parts, kept as they are.
  returned: always
  type: list
  elements: str
timings:
  description: Seconds spent connecting, reading, applying, saving.
  returned: always
  type: dict
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.jincai_netconfig import (
    NetconfigError, SessionLost, TimerExpiring, Device, connect, display, get_platform, normalize, parse, plan_owned,
    remediate, render, same, split_owned, write_only_lines,
)


def _write_backup(directory, host, text):
    """Write ``text`` to ``directory/<host>-<UTC timestamp>.cfg`` and return the path."""
    os.makedirs(directory, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = os.path.join(directory, f"{host}-{stamp}.cfg")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


def _kept_block(kept):
    """The unmanaged lines as the diff shows them (same on both sides: kept)."""
    if not kept:
        return ""
    return "# unmanaged, kept:\n" + "".join(f"#   {line}\n" for line in kept)


class _Session:
    """Open (and reopen) netmiko sessions to the module's device."""

    def __init__(self, module, platform):
        self.module = module
        self.platform = platform

    def open(self):
        p = self.module.params
        conn = connect(self.platform, p["host"], p["username"], port=p["port"], key_file=p["key_file"],
                       password=p["password"], timeout=p["timeout"], known_hosts=p["known_hosts"])
        return Device(conn, self.platform, line_timeout=p["timeout"])

    def reopen(self, until):
        """A new session, retried until the monotonic time ``until``; None if the device stays unreachable."""
        while True:
            try:
                return self.open()
            except Exception:  # netmiko raises many types; all mean "not reachable (yet)"
                if time.monotonic() >= until:
                    return None
                time.sleep(0.5)


def run(module):
    """Do the work; returns the result dict (or calls fail_json)."""
    p = module.params
    platform = get_platform(p["platform"])
    timings = {}
    intended = parse(p["config"], platform)
    if not intended:
        module.fail_json(msg="the intended config is empty after normalization")
    sessions = _Session(module, platform)

    t0 = time.monotonic()
    try:
        dev = sessions.open()
    except Exception as exc:  # netmiko raises many types; all mean "cannot reach the device"
        module.fail_json(msg=f"cannot connect to {p['host']}:{p['port']} as {p['username']}: {exc}")
    timings["connect"] = round(time.monotonic() - t0, 3)
    result = dict(changed=False, commands=[], timings=timings, unmanaged=[])
    try:
        t0 = time.monotonic()
        running_text = dev.running()
        timings["fetch"] = round(time.monotonic() - t0, 3)
        running = parse(running_text, platform)
        managed, kept = split_owned(running, intended, platform)
        cmds = remediate(managed, intended, platform)
        result["unmanaged"] = [display(k, platform) for k in kept]
        if cmds:
            cmds += write_only_lines(p["config"], platform)
        result["commands"] = [display(c, platform) for c in cmds]
        if module._diff and cmds:
            block = _kept_block(result["unmanaged"])
            before = normalize(running_text, platform) if platform.owned is None else render(managed)
            result["diff"] = dict(before=before + block, after=render(intended) + block,
                                  before_header=f"{p['host']} running-config (owned parts)",
                                  after_header="intended config")
        if not cmds or module.check_mode:
            result["changed"] = bool(cmds)
            return result

        if p["backup_dir"]:
            result["backup_path"] = _write_backup(p["backup_dir"], p["host"], running_text)
        return _push(module, sessions, dev, running_text, intended, cmds, result)
    finally:
        _disconnect(dev)


def _disconnect(dev):
    if dev is None:
        return
    try:
        dev.close()
    except Exception:  # the session may already be gone: nothing left to close
        pass


def _push(module, sessions, dev, running_text, intended, cmds, result):
    """Arm, push, reconnect, verify, confirm (or roll back); returns the result or fails."""
    p = module.params
    platform = dev.platform
    timings = result["timings"]
    t0 = time.monotonic()
    try:
        window = dev.arm(p["rollback_timer"]) * p["timer_scale"]
    except NetconfigError as exc:
        module.fail_json(msg=f"{p['host']}: could not arm the device's own way back ({platform.safety}): "
                         f"{exc.message}; nothing was changed", failed_line=exc.line, device_output=exc.output,
                         **result)
    timer_end = time.monotonic() + window
    # stop sending well before the device reverts (its clock and ours are not the same clock)
    last_line = timer_end - 0.1 * window if window else None
    if dev.prepared:  # arming changed the config (IOS archive): that is the last good config now
        running_text = dev.running()
    timings["arm"] = round(time.monotonic() - t0, 3)
    t0 = time.monotonic()
    try:
        dev.apply(cmds, armed=True, deadline=last_line)
    except TimerExpiring as exc:
        _wait_for_device(module, sessions, running_text, timer_end, TimerExpiring(
            exc.line, f"the push outlasted the device timer ({p['rollback_timer']} s) and was stopped: raise "
            "router_rollback_timer"), result)
    except SessionLost as exc:
        _wait_for_device(module, sessions, running_text, timer_end, exc, result)
    except NetconfigError as exc:
        _fail_and_roll_back(module, dev, running_text, exc, result)
    timings["apply"] = round(time.monotonic() - t0, 3)

    # confirm only from a new session: the device is reachable and holds the converged config
    t0 = time.monotonic()
    if platform.safety == "none":  # nothing to confirm (FRR in the lab): verify in this session
        new = dev
    else:
        _disconnect(dev)
        new = sessions.reopen(until=max(timer_end - 0.5 * window, time.monotonic() + 1))
    if new is None:
        _wait_for_device(module, sessions, running_text, timer_end,
                         SessionLost("", "no new session after the push"), result)
    try:
        new_text = new.running()
        left, _ = plan_owned(parse(new_text, platform), intended, platform)
        if left and window and time.monotonic() >= last_line:  # reverted (or about to) before we could confirm
            _wait_for_device(module, sessions, running_text, timer_end, TimerExpiring(
                left[0], f"the device timer ({p['rollback_timer']} s) expired before the confirmation: raise "
                "router_rollback_timer"), result)
        if left:
            new.armed, new.trial_committed = dev.armed, dev.trial_committed
            _fail_and_roll_back(module, new, running_text, NetconfigError(
                left[0], f"the device did not converge to the intended config; still differing: {left}"), result)
        timings["verify"] = round(time.monotonic() - t0, 3)
        result["changed"] = not same(parse(new_text, platform), parse(running_text, platform))
        t0 = time.monotonic()
        new.armed, new.trial_committed = dev.armed, dev.trial_committed
        try:
            new.confirm(save=p["save"] and result["changed"])
        except SessionLost as exc:
            _wait_for_device(module, sessions, running_text, timer_end, exc, result)
        except NetconfigError as exc:
            module.fail_json(msg=f"config applied but confirming or saving failed: {exc.message}; the device "
                             "restores its previous config when its timer expires",
                             failed_line=exc.line, device_output=exc.output, **result)
        timings["confirm"] = round(time.monotonic() - t0, 3)
        return result
    finally:
        _disconnect(new)


def _wait_for_device(module, sessions, backup_text, timer_end, exc, result):
    """The session died under the push: let the device's timer restore the last good config, check, fail."""
    p = module.params
    platform = sessions.platform
    if platform.safety == "none":
        module.fail_json(msg=f"{p['host']}: session lost at {exc.line!r} ({exc.message}); the platform has no "
                         "device-side rollback: the router may be half-configured", failed_line=exc.line,
                         rolled_back=False, **result)
    time.sleep(max(0.0, timer_end - time.monotonic()) + 0.3)
    dev = sessions.reopen(until=time.monotonic() + max(p["timeout"], 5))
    if dev is None:
        module.fail_json(msg=f"{p['host']}: session lost at {exc.line!r} ({exc.message}); the device's timer "
                         "has expired but the router is unreachable", failed_line=exc.line, rolled_back=False,
                         unreachable=True, **result)
    try:
        now = parse(dev.running(), platform)
    finally:
        _disconnect(dev)
    restored = same(now, parse(backup_text, platform))
    note = ("the device's own timer restored its previous config" if restored
            else "the device's timer expired but its config differs from the backup")
    module.fail_json(msg=f"{p['host']}: session lost at {exc.line!r} ({exc.message}); {note}",
                     failed_line=exc.line, rolled_back=restored, rolled_back_by="device timer", **result)


def _fail_and_roll_back(module, dev, backup_text, exc, result):
    """Fast path: restore the pre-change config in this session, cancel the device timer, fail naming the line."""
    try:
        remaining = dev.rollback(backup_text)
        rolled = not remaining
        if rolled:
            dev.disarm()
        note = ("the device was rolled back to its previous config" if rolled
                else f"ROLLBACK INCOMPLETE, still differing (the device timer stays armed):\n{remaining}")
    except NetconfigError as rb_exc:
        rolled = False
        note = f"ROLLBACK FAILED at {rb_exc.line!r}: {rb_exc.message} (the device timer stays armed)"
    module.fail_json(msg=f"{module.params['host']}: device refused {exc.line!r}: {exc.message}; {note}",
                     failed_line=exc.line, device_output=exc.output, rolled_back=rolled,
                     rolled_back_by="control node", **result)


#: The module's options (also read by plugins/action/jincai_netconfig.py, which validates with it).
ARGUMENT_SPEC = dict(
    platform=dict(type="str", required=True, choices=["frr", "cisco_ios", "huawei_vrp", "huawei_vrpv8", "h3c_comware"]),
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
    rollback_timer=dict(type="int", default=300),
    timer_scale=dict(type="float", default=1.0),
)


def main():
    """Module entry point (run as a module; the action plugin of the same name calls :func:`run` in
    the Ansible worker instead)."""
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
