"""Print how long each play and the whole run took (ansible-core ships no timing callback).

Enabled in ansible.cfg (``callbacks_enabled = jincai_timer``). It only adds lines after the normal
output; jincai.run reads a run's outcome from events, never from this text. ``JINCAI_TIMER_TASKS=N`` also
prints the N slowest tasks (wall time across all hosts of the task, as the linear strategy runs them):
the list to shorten first when a play is slow.
"""

import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: jincai_timer
type: aggregate
short_description: per-play and total run time
description:
  - Prints the duration of each play and of the whole run after the PLAY RECAP.
  - With JINCAI_TIMER_TASKS=N in the environment, also the N slowest tasks.
requirements:
  - enable in ansible.cfg (callbacks_enabled)
"""


class CallbackModule(CallbackBase):
    """Record the start of each play; print a duration table at the end of the run."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "jincai_timer"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._start = time.monotonic()
        self._plays = []  # [name, start, end]
        self._tasks = []  # [name, start, end]
        try:
            self._top = max(0, int(os.environ.get("JINCAI_TIMER_TASKS") or 0))
        except ValueError:
            self._top = 0

    def _close_task(self):
        if self._tasks and self._tasks[-1][2] is None:
            self._tasks[-1][2] = time.monotonic()

    def _close_play(self):
        self._close_task()
        if self._plays and self._plays[-1][2] is None:
            self._plays[-1][2] = time.monotonic()

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._close_task()
        if self._top:
            self._tasks.append([task.get_name().strip(), time.monotonic(), None])

    def v2_playbook_on_handler_task_start(self, task):
        self.v2_playbook_on_task_start(task, False)

    def v2_playbook_on_play_start(self, play):
        self._close_play()
        self._plays.append([play.get_name().strip() or "(unnamed play)", time.monotonic(), None])

    def v2_playbook_on_stats(self, stats):
        self._close_play()
        total = time.monotonic() - self._start
        self._display.display("")
        self._display.display("TIMING (jincai_timer) " + "*" * 58)
        for name, start, end in self._plays:
            self._display.display(f"{end - start:8.1f} s  {name}")
        self._display.display(f"{total:8.1f} s  total")
        if self._top:
            self._display.display(f"SLOWEST TASKS (JINCAI_TIMER_TASKS={self._top}) " + "*" * 44)
            for name, start, end in sorted(self._tasks, key=lambda t: t[1] - t[2])[:self._top]:
                self._display.display(f"{end - start:8.1f} s  {name}")
