"""One CLI login on a simulated router: modes, views, the VRP V8 candidate, questions, native safety commands.

``Session.line()`` takes one typed line and returns the device's answer (a pending yes/no question
is returned as ``"\\0ASK" + question`` for the server to print instead of the prompt). The commands
of the native safety (see ``device.py``) are here: IOS in exec mode, VRP V8 and Comware in system
view, VRP V5's scheduled reboot in user view.
"""

import copy
import datetime
import re
import time

from . import show
from .device import Drop, find, new_node


class Session:
    """One login: modes, views, the candidate (VRP V8), questions; ``line()`` answers one line."""

    def __init__(self, device, kill=None):
        self.dev = device
        self.d = device.dialect
        self.mode = "exec"
        self.path = []  # [(node, kind, label)] from the system view down
        self.candidate = None  # VRP V8: the session's uncommitted copy of the running config
        self.pending = None  # (question answer handler)
        self.lines = 0
        self._kill = kill
        with device.lock:
            device.sessions.add(self)
            device.logins += 1
            self.id = device.logins  # numbers the logins: device.history says which session typed what

    def kill(self):
        """Cut this session from the device side (reboot)."""
        if self._kill:
            self._kill()

    def close(self):
        with self.dev.lock:
            self.dev.sessions.discard(self)

    def reset_views(self):
        """After a revert the node objects are gone: go back to the top of config mode."""
        if self.mode == "config":
            self.path = []
            if self.candidate is not None:
                self.candidate = copy.deepcopy(self.dev.running)

    # ---------------------------------------------------------------- prompt

    def prompt(self):
        host = self.dev.hostname
        if self.mode == "exec":
            return self.d.exec_prompt.format(host=host)
        label = (self.d.label_sep + self.path[-1][2]) if self.path else ""
        flag = ""
        if self.d.two_stage:
            flag = "*" if self.candidate != self.dev.running else "~"
        if self.d.section_style == "cisco" and self.path:
            label = self.path[-1][2]
        return self.d.config_prompt.format(host=host, flag=flag, label=label)

    # ---------------------------------------------------------------- input

    def line(self, text):
        """Process one input line; return the answer (without the next prompt); raise Drop to close."""
        line = text.strip()
        with self.dev.lock:
            self.dev.history.append((self.id, self.mode, line))
            if self.pending:
                handler, self.pending = self.pending, None
                return handler(line)
            if not line:
                return ""
            if self.mode == "exec":
                return self._exec(line)
            self.lines += 1  # config-mode lines: the drop hook cuts the session at the N-th one, unprocessed
            if self.dev.drop_after and self.lines >= self.dev.drop_after:
                self.dev.drop_after = None  # one-shot
                raise Drop("test hook: session dropped")
            if self.dev.unexpected_prompt_re and re.fullmatch(self.dev.unexpected_prompt_re, line):
                self.dev.unexpected_prompt_re = None  # one-shot
                return self._ask(f"Warning: {line!r} will reset the routing process on this device. "
                                 "Continue? [Y/N]:", lambda a: self._config(line) if a.lower().startswith("y")
                                 else "Info: The operation was cancelled.")
            return self._config(line)

    def interrupt(self):
        """Ctrl+C: drop a pending question."""
        with self.dev.lock:
            self.pending = None

    def _ask(self, question, handler):
        self.pending = handler
        return "\0ASK" + question  # the server prints the question instead of a prompt

    def _error(self, line, kind):
        pos, incomplete = self.d.caret(kind, line)
        words = line.split()
        if incomplete:
            col = len(self.prompt()) + len(line)
            return f"{' ' * col}^\n{self.d.incomplete}" if self.d.section_style != "cisco" else self.d.incomplete
        offset = 0
        for i, w in enumerate(words):
            offset = line.index(w, offset)
            if i == pos:
                break
            offset += len(w)
        col = len(self.prompt()) + offset
        return f"{' ' * col}^\n{self.d.unrecognized}"

    # ---------------------------------------------------------------- user / exec view

    def _tree(self):
        return self.candidate if self.candidate is not None else self.dev.running

    def _exec(self, line):
        d, dev = self.d, self.dev
        if line in ("display current-configuration", "show running-config"):
            return dev.render(dev.running)
        if line in ("display saved-configuration", "show startup-config"):
            return dev.render(dev.startup)
        if line in ("screen-length 0 temporary", "screen-length disable", "terminal length 0",
                    "terminal width 511", "undo terminal monitor", "terminal no monitor"):
            return "Info: The configuration takes effect on the current user terminal interface only." \
                if line == "screen-length 0 temporary" else ""
        if line in ("quit", "exit", "logout"):
            raise Drop("logout")
        if line == d.enter_config:
            return self._enter_config()
        if line in ("display version", "show version"):
            return f"{d.name} simulated by jincai vendorsim"
        operational = show.answer(dev, line)
        if operational is not None:
            return operational
        if d.name == "cisco_ios":
            return self._ios_exec(line)
        if line in ("save", "save force"):
            if line == "save" and d.name != "h3c_comware":
                return self._ask("Warning: The current configuration will be written to the device. "
                                 "Continue? [Y/N]:", self._save_answer)
            if line == "save force":
                return self._save() or "Validating file. Please wait...\nSaved the current configuration to " \
                                       "mainboard device successfully."
        if d.name == "huawei_vrp":
            m = re.fullmatch(r"schedule reboot delay (?:(\d+):(\d{2})|(\d+))", line)
            if m:
                minutes = int(m.group(1)) * 60 + int(m.group(2)) if m.group(3) is None else int(m.group(3))
                if not 0 < minutes <= 43200:
                    return self._error(line, "exec")
                at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=minutes)
                return self._ask(f"Info: Reboot system at {at:%H:%M:%S %Y/%m/%d} UTC "
                                 f"(in {minutes // 60} hours and {minutes % 60} minutes).\nConfirm? [Y/N]:",
                                 lambda a: self._arm_reboot(a, minutes))
            if line == "undo schedule reboot":
                dev.cancel()
                return ""
            if line == "display schedule reboot":
                t = dev.timer
                return (f"Info: System will reboot in {max(0, t['deadline'] - time.time()):.0f} s (scaled)."
                        if t else "Info: No schedule reboot information.")
        return self._error(line, "exec")

    def _save_answer(self, answer):
        if not answer.lower().startswith("y"):
            return ""
        self._save()
        return "Now saving the current configuration to the slot 0.\nInfo: Save the configuration successfully."

    def _save(self):
        self.dev.startup = copy.deepcopy(self.dev.running)
        self.dev.changed()
        return ""

    def _arm_reboot(self, answer, minutes):
        if not answer.lower().startswith("y"):
            return ""
        self.dev.arm("reboot", minutes * 60)
        return ""

    def _ios_exec(self, line):
        dev = self.dev
        m = re.fullmatch(r"configure terminal revert timer (\d+)", line)
        if m:
            minutes = int(m.group(1))
            if not 1 <= minutes <= 120:
                return self._error(line, "exec")
            archive = find(dev.running, "archive")
            if not archive or not any(c[0].startswith("path ") for c in archive[1]):
                return "% Rollback Confirmed Change requires a configuration archive (archive / path)."
            if dev.timer:
                return "% Rollback Confirmed Change timer is already running."
            dev.arm("revert", minutes * 60)
            path = next(c[0] for c in archive[1] if c[0].startswith("path "))[5:]
            out = f"Rollback Confirmed Change: Backing up current running config to {path}-1\n"
            return out + self._enter_config()
        if line == "configure confirm":
            if not dev.cancel():
                return "% No Rollback Confirmed Change pending."
            return ""
        if line == "configure revert now":
            return self._revert_now("% No Rollback Confirmed Change pending.", "Rollback Done")
        if line in ("write memory", "copy running-config startup-config"):
            self._save()
            return "Building configuration...\n[OK]"
        if line == "show archive":
            return "The maximum archive configurations allowed is 14."
        return self._error(line, "exec")

    # ---------------------------------------------------------------- system / config view

    def _enter_config(self):
        self.mode = "config"
        self.path = []
        if self.d.two_stage and self.candidate is None:
            self.candidate = copy.deepcopy(self.dev.running)
        return self.d.enter_config_banner

    def _leave_config(self, line):
        if self.d.two_stage and self.candidate != self.dev.running:
            return self._ask("Warning: Uncommitted configurations found. Are you sure to commit them before "
                             "exiting? [Y(yes)/N(no)/C(cancel)]:", self._uncommitted_answer)
        self.mode, self.path, self.candidate = "exec", [], None
        return ""

    def _uncommitted_answer(self, answer):
        a = answer.lower()
        if a.startswith("c"):
            return ""
        if a.startswith("y"):
            self._commit()
        self.mode, self.path, self.candidate = "exec", [], None
        return ""

    def _commit(self):
        self.dev.running = copy.deepcopy(self.candidate)
        self.dev.changed()

    def _config(self, line):
        d, dev = self.d, self.dev
        kind = self.path[-1][1] if self.path else "system"
        if line == d.leave_config:
            return self._leave_config(line)
        if line == d.exit_view:
            if self.path:
                self.path.pop()
                return ""
            return self._leave_config(line)
        if line.startswith(("display ", "show ", "do show ")):
            cmd = line[3:] if line.startswith("do ") else line
            if cmd in ("display current-configuration", "show running-config"):
                return dev.render(dev.running)
            if cmd == "display current-configuration candidate" and self.candidate is not None:
                return dev.render(self.candidate)
        if kind == "system":
            special = self._safety_in_config(line)
            if special is not None:
                return special
        children = self.path[-1][0][1] if self.path else self._tree()
        if line.startswith(d.negate) and not any(re.match(rx, line) for rx in d.no_statements):
            return self._negate(line, line[len(d.negate):], kind, children)
        for view in d.views:
            if view.parent != kind:
                continue
            m = re.fullmatch(view.header, line)
            if m:
                node = find(children, line) or self._replace_or_add(children, line, view.header)
                self.path.append((node, view.kind, view.label.format(*m.groups())))
                self._touched()
                return ""
        grammar = d.grammar.get(kind, ())
        if any(re.fullmatch(rx, line) for rx in grammar) or any(re.fullmatch(rx, line) for rx in d.no_statements):
            if line.startswith(d.negate):  # a shown `no X` statement replaces `X`
                positive = line[len(d.negate):]
                children[:] = [c for c in children if c[0] != positive]
            elif find(children, d.negate + line):
                children[:] = [c for c in children if c[0] != d.negate + line]
            if not find(children, line):
                self._replace_or_add(children, line)
            self._touched()
            return ""
        return self._error(line, kind)

    def _replace_or_add(self, children, line, header=None):
        """Add ``line``; a line with the same single-valued key (or view header) replaces the old one."""
        key = None
        for rx in self.d.replace_keys:
            m = re.match(rx, line)
            if m:
                key = m.group(1)
                break
        if header is not None:  # `ospf 1 router-id X` replaces `ospf 1 router-id Y`
            m = re.match(r"^(ospf \d+)", line)
            key = m.group(1) if m else None
        if key is not None:
            for i, c in enumerate(children):
                if c[0] == key or c[0].startswith(key + " "):
                    node = new_node(line)
                    node[1] = c[1]
                    children[i] = node
                    return node
        node = new_node(line)
        children.append(node)
        return node

    def _negate(self, line, target, kind, children):
        keep = [c for c in children if not (c[0] == target or c[0].startswith(target + " "))]
        if len(keep) == len(children):
            valid = (any(re.fullmatch(rx, target) for rx in self.d.grammar.get(kind, ()))
                     or any(v.parent == kind and re.fullmatch(v.header, target) for v in self.d.views)
                     or self.d.caret(kind, target)[1])
            if not valid:
                return self._error(line, kind)
        children[:] = keep
        self._touched()
        return ""

    def _touched(self):
        if self.candidate is None:
            self.dev.changed()

    def _revert_now(self, nothing_armed, done):
        """Take the armed way back at once (IOS `configure revert now`, VRP V8 `abort trial`)."""
        if self.dev.timer is None:
            return nothing_armed
        self.dev.fire()
        return done

    def _safety_in_config(self, line):
        d, dev = self.d, self.dev
        if d.two_stage:
            m = re.fullmatch(r"commit trial(?: (\d+))?", line)
            if m:
                seconds = int(m.group(1) or 600)
                if not 60 <= seconds <= 65535:
                    return self._error(line, "system")
                before = copy.deepcopy(dev.running)
                self._commit()
                dev.arm("revert", seconds, snapshot=before)
                return ("Committing..done.\nInfo: The system enters the trial configuration mode. The system "
                        f"will revert to previous configuration if the trial configuration is not confirmed in "
                        f"{seconds} seconds.")
            if line == "commit":
                if dev.timer and self.candidate == dev.running:
                    dev.cancel()
                    return "Info: The trial configuration has been confirmed."
                self._commit()
                dev.cancel()
                return ""
            if line == "abort trial":
                return self._revert_now("Error: No trial configuration is running.",
                                        "Warning: The trial configuration has been aborted, the configuration "
                                        "was rolled back.")
            if line == "abort":
                self.candidate = copy.deepcopy(dev.running)
                self.path = []
                return ""
        if d.name == "h3c_comware":
            m = re.fullmatch(r"configuration commit delay (\d+)", line)
            if m:
                minutes = int(m.group(1))
                if not 1 <= minutes <= 65535:
                    return self._error(line, "system")
                dev.arm("revert", minutes * 60)
                return ""
            if line == "configuration commit":
                dev.cancel()
                return ""
        return None
