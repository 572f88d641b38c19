"""One simulated router: its configuration, the sessions' CLI, the native safety timers, the state file.

``SimDevice`` holds what survives a session: the running and the saved (startup) configuration, the
armed timer and its snapshot, persisted as JSON after every change (so a restarted simulator is the
same router). ``Session`` is one CLI login: mode (user/exec or config), the current view path, the
VRP V8 candidate, a pending yes/no question. Everything is driven line by line through
``Session.line()``, which returns the device's answer; the SSH server (``server.py``) only moves
characters.

Native safety, as the vendors document it (docs/routing.md cites each):

* Cisco IOS: ``configure terminal revert timer N`` (minutes; needs ``archive`` / ``path``) enters
  config mode with the running config archived; ``configure confirm`` keeps the change; when the
  timer expires the archived config is restored (``configure revert now`` restores at once).
* Huawei VRP V8: ``commit trial [N]`` (seconds, 60-65535, default 600) commits the candidate on
  trial; ``commit`` confirms; ``abort trial`` or the timer rolls back to the previous config.
* H3C Comware 7: ``configuration commit delay N`` (minutes) in system view; ``configuration
  commit`` confirms; otherwise the device rolls back to the config it had when the delay was set.
* Huawei VRP V5: no confirmed commit. ``schedule reboot delay {mm | hh:mm}`` in user view (asks
  ``Confirm? [Y/N]``); ``undo schedule reboot`` cancels; a reboot loads the saved configuration and
  drops every session.

Time: every device timer runs ``time_scale`` real seconds per device second (1.0 = real time; the
unit tests use a small scale so that a one-minute timer fires in about a second).
"""

import copy
import datetime
import json
import os
import re
import threading
import time

from .dialects import DIALECTS, display_secrets


class Drop(Exception):
    """The session must be closed now (quit, reboot, or the drop-after-N-lines test hook)."""


# -------------------------------------------------------------------------------- config trees


def new_node(text):
    """A config line with its (ordered) children: ``[text, [children...]]`` (JSON friendly)."""
    return [text, []]


# what a device prints around its config (not config lines): dropped when a start config is read
_VOLATILE = r"^(?:Building configuration|Current configuration|version \d|!Software Version|!Last configuration)"


def parse_config(text, separators=("#", "!")):
    """Parse a config text (indentation = nesting; separator lines close every section)."""
    root = []
    stack = [(-1, root)]
    for raw in text.replace("\r", "").split("\n"):
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped:
            continue
        if stripped in separators or stripped.startswith("!"):
            stack = [(-1, root)]
            continue
        if stripped in ("return", "end", "quit", "exit") or re.match(_VOLATILE, stripped):
            continue
        indent = len(line) - len(line.lstrip(" "))
        while stack[-1][0] >= indent:
            stack.pop()
        node = new_node(stripped)
        stack[-1][1].append(node)
        stack.append((indent, node[1]))
    return root


def find(children, text):
    """The child whose line is ``text``, or None."""
    for node in children:
        if node[0] == text:
            return node
    return None


# -------------------------------------------------------------------------------- the device


class SimDevice:
    """The router: configuration, timers, persistence; shared by every session (one lock)."""

    def __init__(self, platform, state_file, start_config="", time_scale=1.0, drop_after=None,
                 unexpected_prompt_re=None, username="netops", password="netops"):
        if platform not in DIALECTS:
            raise ValueError(f"unknown platform {platform!r}; known: {', '.join(sorted(DIALECTS))}")
        self.dialect = DIALECTS[platform]
        self.state_file = state_file
        self.time_scale = time_scale
        self.drop_after = drop_after  # one-shot: the first session reaching N lines is cut
        self.unexpected_prompt_re = unexpected_prompt_re
        self.username, self.password = username, password
        self.lock = threading.RLock()
        self.sessions = set()
        self.events = []  # ("revert"|"reboot"|..., wall time) for tests and `display logbuffer`
        if state_file and os.path.exists(state_file):
            with open(state_file, encoding="utf-8") as fh:
                state = json.load(fh)
        else:
            tree = parse_config(start_config)
            state = {"running": tree, "startup": copy.deepcopy(tree), "timer": None}
        self.running = state["running"]
        self.startup = state["startup"]
        self.timer = state["timer"]  # {"kind", "deadline" (epoch s), "snapshot"} or None
        self._stop = threading.Event()
        self._persist()
        self._thread = threading.Thread(target=self._tick, daemon=True, name=f"vendorsim-timer-{platform}")
        self._thread.start()

    # ---------------------------------------------------------------- state

    @property
    def hostname(self):
        for node in self.running:
            m = re.fullmatch(self.dialect.hostname_re, node[0])
            if m:
                return m.group(1)
        return "HUAWEI" if self.dialect.name.startswith("huawei") else ("H3C" if "comware" in self.dialect.name
                                                                        else "Router")

    def _persist(self):
        if not self.state_file:
            return
        tmp = self.state_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"running": self.running, "startup": self.startup, "timer": self.timer,
                       "events": self.events}, fh, indent=1)
        os.replace(tmp, self.state_file)

    def changed(self):
        """Call after every change of the running config or the timer (persists the state)."""
        with self.lock:
            self._persist()

    def close(self):
        """Stop the timer thread (the SSH server closes the sessions)."""
        self._stop.set()

    # ---------------------------------------------------------------- timers

    def arm(self, kind, device_seconds, snapshot=None):
        """Arm the native timer: after ``device_seconds`` (scaled) ``kind`` fires unless cancelled."""
        with self.lock:
            self.timer = {"kind": kind, "deadline": time.time() + device_seconds * self.time_scale,
                          "seconds": device_seconds,
                          "snapshot": copy.deepcopy(self.running if snapshot is None else snapshot)}
            self._persist()

    def cancel(self):
        """Cancel the armed timer (confirm / undo schedule reboot); True if one was armed."""
        with self.lock:
            armed = self.timer is not None
            self.timer = None
            self._persist()
            return armed

    def fire(self):
        """What the device does when its timer expires (also called by `configure revert now`)."""
        with self.lock:
            timer, self.timer = self.timer, None
            if timer is None:
                return
            self.events.append((timer["kind"], time.time()))
            if timer["kind"] == "reboot":
                # a reboot loads the saved configuration and cuts every session
                self.running = copy.deepcopy(self.startup)
                for session in list(self.sessions):
                    session.kill()
            else:
                self.running = copy.deepcopy(timer["snapshot"])
                for session in list(self.sessions):
                    session.reset_views()
            self._persist()

    def _tick(self):
        while not self._stop.wait(0.02):
            timer = self.timer
            if timer and time.time() >= timer["deadline"]:
                self.fire()

    # ---------------------------------------------------------------- display

    def render(self, tree):
        """The configuration as the vendor displays it."""
        d = self.dialect
        out = []

        def sort_key(item):
            index, node = item
            for rx in d.sorted_children:
                m = re.match(rx, node[0])
                if m:
                    return (1, int(m.group(1)))
            return (0, index)

        def emit(nodes, depth):
            ordered = nodes
            if any(any(re.match(rx, n[0]) for rx in d.sorted_children) for n in nodes):
                ordered = [n for _, n in sorted(enumerate(nodes), key=sort_key)]
            for node in ordered:
                if any(re.match(rx, node[0]) for rx in d.hidden_res):
                    continue
                out.append(" " * depth + display_secrets(d, node[0]))
                emit(node[1], depth + 1)

        if d.section_style == "cisco":
            out.extend(["Building configuration...", "", "Current configuration : 4096 bytes", "!",
                        "! Last configuration change at 00:00:00 UTC Tue Dec 1 2026", "!", "version 15.9", "!"])
            for node in tree:
                emit([node], 0)
                if node[1]:
                    out.append("!")
            out.extend(["!", "end"])
        else:
            if d.name == "h3c_comware":
                out.extend(["#", " version 7.1.064, Release 0821P11"])
            else:
                out.append("!Software Version V800R012C00SPC300" if d.two_stage
                           else "!Software Version V200R010C00SPC600")
                out.append("!Last configuration was updated at 2026-12-01 00:00:00+00:00")
            out.append("#")
            for i, node in enumerate(tree):
                if node[1] or self._is_view_header("system", node[0]):
                    if out[-1] != "#":
                        out.append("#")
                    emit([node], 0)
                    out.append("#")
                else:
                    out.append(" " + display_secrets(d, node[0]))
            if out[-1] != "#":
                out.append("#")
            out.append("return")
        return "\n".join(out)

    def _is_view_header(self, kind, line):
        return any(v.parent == kind and re.fullmatch(v.header, line) for v in self.dialect.views)


# -------------------------------------------------------------------------------- a CLI session


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
