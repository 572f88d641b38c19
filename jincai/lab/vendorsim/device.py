"""One simulated router: its configuration trees, the armed native timer, the state file, the display.

``SimDevice`` holds what survives a session: the running and the saved (startup) configuration, the
armed timer and its snapshot, persisted as JSON after every change (so a restarted simulator is the
same router). The CLI of one login is ``session.Session``; the SSH server (``server.py``) only
moves characters.

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
import json
import os
import re
import threading
import time

from . import show
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
        self.history = []  # (login number, mode, line) of every line typed, for tests (what a run sent)
        self.logins = 0
        if state_file and os.path.exists(state_file):
            with open(state_file, encoding="utf-8") as fh:
                state = json.load(fh)
        else:
            tree = parse_config(start_config)
            state = {"running": tree, "startup": copy.deepcopy(tree), "timer": None}
        self.running = state["running"]
        self.startup = state["startup"]
        self.timer = state["timer"]  # {"kind", "deadline" (epoch s), "snapshot"} or None
        self.oper = state.get("oper") or show.default_oper()  # what the operational commands show (show.py)
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
                       "events": self.events, "oper": self.oper}, fh, indent=1)
        os.replace(tmp, self.state_file)

    def changed(self):
        """Call after every change of the running config or the timer (persists the state)."""
        with self.lock:
            self._persist()

    def close(self):
        """Stop the timer thread (the SSH server closes the sessions)."""
        self._stop.set()

    # ---------------------------------------------------------------- operational state (show.py)

    def set_oper(self, **state):
        """Replace parts of the operational state (``ospf_peers``, ``ospf_routes``, ``links_down``,
        ``ntp_synchronised``); the fleet seeds it from the host vars."""
        with self.lock:
            self.oper.update(copy.deepcopy(state))
            self._persist()

    def link_down(self, interface):
        """The link of ``interface`` goes down (a pulled cable; the config is unchanged)."""
        with self.lock:
            self.oper.setdefault("links_down", []).append(interface)
            self._persist()

    def drop_peer(self, router_id):
        """The OSPF neighbour ``router_id`` goes away (its routes with it)."""
        with self.lock:
            self.oper["ospf_peers"] = [p for p in self.oper.get("ospf_peers", []) if p["router_id"] != router_id]
            self._persist()

    def remove_route(self, prefix):
        """The route to ``prefix`` is no longer learned."""
        with self.lock:
            self.oper["ospf_routes"] = [r for r in self.oper.get("ospf_routes", []) if r["prefix"] != prefix]
            self._persist()

    def ntp_unsynchronise(self):
        """The clock loses its NTP server (unreachable)."""
        self.set_oper(ntp_synchronised=False)

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
