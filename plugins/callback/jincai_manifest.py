"""Ansible callback: record what a site.yml run manages on each host, for fast drift.

Enabled in ansible.cfg. Silent and inactive in check mode and on partial runs (``--tags``,
``--skip-tags``, ``--start-at-task``, ``--step``: their results do not describe a whole host). From every
successful, non-check result it records (jincai.compliance.manifest.Recorder) the files, packages,
services, accounts and groups the task manages, and counts the modules it cannot check as
``uncovered``; ``no_log`` results give only the path or name (from the task's arguments), never content.
At the start of the manifest play (playbooks/manifest.yml, the last play of site.yml) it writes each
host's managed paths to ``$JINCAI_MANIFEST_PATHS/<host>.paths.json``; the play reads them back in one
round trip per host. At the end of the run it writes ``<state>/manifests/<network>/<host>.json`` (0600,
atomically) for each read-back host that had no failed or unreachable result, with the host's source
digest (docs/compliance.md, "Fast drift"). A run without the manifest play (any other playbook) writes
nothing.
"""

import json
import os
import shutil
import tempfile

from ansible import context
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
---
name: jincai_manifest
type: aggregate
short_description: write per-host manifests of what site.yml manages (fast drift)
description:
  - Records files, packages, services and accounts from successful results; after the manifest play's
    read-back writes one manifest per host under the network's state directory.
requirements:
  - enable in callbacks_enabled
"""

PATHS_ENV = "JINCAI_MANIFEST_PATHS"
PROBE_CHANGED_WHEN = ([False], ["false"], ["False"], False, "false")


class CallbackModule(CallbackBase):
    """Record what each host's tasks manage; write the manifests after the read-back."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "jincai_manifest"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._active = False
        self._recorder = None
        self._manifest = None
        self._dir = None
        self._in_manifest_play = False
        self._seen_manifest_play = False
        self._bad = set()
        self._readback = {}
        self._routers = {}
        self._vm = None

    def v2_playbook_on_start(self, playbook):
        """Active unless the run is in check mode or partial; the read-back's path directory."""
        args = context.CLIARGS
        tags = tuple(args.get("tags") or ())
        partial = (tags not in ((), ("all",)) or args.get("skip_tags") or args.get("start_at_task")
                   or args.get("step"))
        if args.get("check") or partial:
            return
        from jincai.compliance import manifest

        self._manifest = manifest
        self._recorder = manifest.Recorder()
        self._dir = tempfile.mkdtemp(prefix="jincai-manifest-")
        os.environ[PATHS_ENV] = self._dir  # inherited by the workers that template the read-back task
        self._active = True

    def v2_playbook_on_play_start(self, play):
        """At the manifest play's start: write the path list of every host of the play."""
        if not self._active:
            return
        self._vm = play.get_variable_manager()
        self._in_manifest_play = play.get_name() == self._manifest.MANIFEST_PLAY
        if not self._in_manifest_play:
            return
        self._seen_manifest_play = True
        for host in self._vm._inventory.get_hosts(play.hosts):
            name = host.get_name()
            self._manifest.write_paths(self._dir, name, self._recorder.paths(name), self._recorder.units(name))

    def v2_runner_on_ok(self, result):
        """Record a successful result (or store a read-back)."""
        if not self._active:
            return
        fields = result.task_fields
        if fields.get("check_mode") is True:
            return
        host = result._host.get_name()
        kind = (result._task.vars or {}).get("jincai_manifest_readback")
        if kind:
            self._store_readback(host, kind, result._result)
            return
        if self._in_manifest_play:
            return
        task = result._task
        role = task._role.get_name() if getattr(task, "_role", None) else ""
        self._recorder.add(host, fields.get("action") or task.action, fields.get("args"), result._result,
                           no_log=bool(task.no_log), role=role, task=task.name or "",
                           probe=fields.get("changed_when") in PROBE_CHANGED_WHEN,
                           delegated=bool(fields.get("delegate_to")) and fields.get("delegate_to") != host)

    def _store_readback(self, host, kind, res):
        try:
            doc = json.loads(res.get("stdout") or "")
        except ValueError:
            self._bad.add(host)
            return
        if kind == "router":
            platform = (doc.get("context") or {}).get("platform")
            self._routers[host] = {"platform": platform,
                                   "lines": self._manifest.config_lines(doc.get("config") or "", platform)}
            self._readback[host] = {}
        else:
            self._readback[host] = doc

    def v2_runner_on_failed(self, result, ignore_errors=False):
        """A failed result: that host's state is not established, no manifest for it."""
        if self._active and not ignore_errors:
            self._bad.add(result._host.get_name())

    def v2_runner_on_unreachable(self, result):
        """An unreachable host gets no manifest."""
        if self._active:
            self._bad.add(result._host.get_name())

    def v2_playbook_on_stats(self, stats):
        """Write the manifests of the read-back hosts whose run succeeded."""
        if not self._active:
            return
        try:
            if self._seen_manifest_play and self._vm is not None:
                self._write(stats)
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)
            os.environ.pop(PATHS_ENV, None)

    def _write(self, stats):
        m = self._manifest
        sources = [s for s in (self._vm._inventory._sources or []) if os.path.isdir(s)]
        if not sources:
            self._display.warning("jincai_manifest: the inventory is not a directory: no manifest written")
            return
        inventory_dir = sources[0]
        hostvars = m.current_hostvars(inventory_dir)
        tree = m.tree_digest(inventory_dir)
        extra = self._vm.extra_vars
        written, skipped = 0, []
        skipped += sorted(self._bad - set(self._readback))
        for host in sorted(self._readback):
            counts = stats.summarize(host)
            if host in self._bad or counts.get("failures") or counts.get("unreachable") or host not in hostvars:
                skipped.append(host)
                continue
            hv = hostvars[host]
            doc = self._recorder.manifest(host, self._readback[host], self._routers.get(host),
                                          m.source_digest(hv, tree, extra))
            try:
                m.write(hv.get("jincai_network_name") or os.path.basename(inventory_dir), host, doc)
            except (OSError, ValueError) as exc:  # e.g. an execution environment without the state directory
                self._display.warning(f"jincai_manifest: no manifest written ({exc}); fast drift falls back to "
                                      "site.yml --check for these hosts")
                return
            written += 1
        self._display.display(f"jincai_manifest: {written} manifests written"
                              + (f"; none for {', '.join(skipped)} (failed)" if skipped else ""))
