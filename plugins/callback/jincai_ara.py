"""ARA's callback with jincai's defaults: every run from this checkout goes into the audit trail.

Enabled in ansible.cfg (``callbacks_enabled``), so a plain ``ansible-playbook`` records its run as
``jincai``'s runs do. This file is a proxy for ARA's own ``ara_default`` callback (pip package ara,
pinned in requirements.txt), as plugins/strategy/mitogen_linear.py is for Mitogen; it adds:

* the store: ARA's offline client writes network N's runs to ``/var/lib/jincai/ara/N/ansible.sqlite``
  (jincai.audit.store_dir); ``ARA_API_CLIENT=http`` + ``ARA_API_SERVER`` send them to a server;
* the journal (``[ara] jincai_recording = auto``, the default, is ``journal`` outside AWX): ARA's
  callback code decides what is recorded, but its API calls are appended to a local journal
  (``<store>/journal/*.jsonl``, jincai.audit.journal) instead of going through Django and the REST
  layer during the run; at the end of the playbook a separate process imports the journal into the
  store (or the server). On a converged run its cost is within the measurement noise (CPU +1 % with
  the importer's), where ARA's own offline client cost +35 % CPU, +44 % wall (docs/audit.md "Cost").
  ``JINCAI_ARA_RECORDING=direct`` records as ARA does (each result as it comes);
  ``JINCAI_ARA_IMPORT=wait`` makes ansible-playbook wait for the import. In an AWX job sending to an
  ARA server (``AWX_HOST`` set, ``ARA_API_CLIENT=http``), ``auto`` records ``direct``: the execution
  environment's files are thrown away when the job ends, and ARA's HTTP client with its callback
  threads overlaps the recording with the run, where a journal would be sent after it;
* a shortcut for the content of plain results (jincai.audit.content): ARA's own ``_load_result``
  runs for every result, but where the result is plain JSON data its deepcopy, internal-key strip
  and JSON round trip are answered by one pass that gives the same value (~9.5 ms of the strategy
  process per result before, docs/audit.md "Cost"); any other result takes ARA's path unchanged
  (``JINCAI_ARA_CONTENT=ara``: every result, to compare);
* labels: ``network:N``, ``release:<apps_release>`` (the application release the inventory deploys,
  or the run's ``-e apps_release=``), ``commit:<git commit>`` and ``site:CODE`` for every site the run targets,
  besides ARA's argument labels (check, diff, limit, tags: ansible.cfg ``[ara] argument_labels``).

What stays out is ARA's own settings in ansible.cfg ``[ara]`` (``ignored_arguments``: extra vars and
vault ids; ``ignored_files``; ``ignored_facts``); results of ``no_log`` tasks reach no callback.
When the store cannot be written (not root on a control node) the run goes on, unrecorded, with a
warning. ``ANSIBLE_CALLBACKS_ENABLED`` without ``jincai_ara`` turns it off for one run.
"""

import atexit
import contextlib
import os
import re

from ansible.plugins.callback import CallbackBase
from ansible.utils.display import Display

display = Display()

try:
    from ara.plugins.callback import ara_default as _ara
except ImportError as _exc:  # pragma: no cover - requirements.txt pins ara
    _ara = None
    _IMPORT_ERROR = str(_exc)

SITE_GROUP = re.compile(r"^site_(\d{6})$")
#: ``JINCAI_ARA_CONTENT=ara``: every result's content by ARA's own code (the shortcut off, for comparison)
CONTENT_ENV = "JINCAI_ARA_CONTENT"


class _Identity:
    """Stands in for ``json`` inside ARA's ``_load_result`` while its content is already computed:
    the round trip ``loads(dumps(x))`` is ``x``."""

    @staticmethod
    def dumps(obj, **_kw):
        return obj

    @staticmethod
    def loads(obj, **_kw):
        return obj

if _ara is not None:
    DOCUMENTATION = _ara.DOCUMENTATION.replace("callback: ara\n", "name: jincai_ara\n", 1).replace(
        "short_description: Sends playbook execution data to the ARA API internally or over HTTP",
        "short_description: ARA's callback recording every run into the jincai audit trail", 1).rstrip("\n") + """
  jincai_recording:
    description:
      - journal - ARA's records go to a local journal during the run, imported into ARA after it
      - direct - ARA's own client records each result as it comes
      - auto - direct in an AWX job sending to an ARA server (AWX_HOST set, api_client http), else journal
    default: auto
    choices: ['auto', 'journal', 'direct']
    env:
      - name: JINCAI_ARA_RECORDING
    ini:
      - section: ara
        key: jincai_recording
  jincai_import:
    description:
      - background - the journal is imported by a process of its own once the playbook ends
      - wait - ansible-playbook waits for that import before it exits
    default: background
    choices: ['background', 'wait']
    env:
      - name: JINCAI_ARA_IMPORT
    ini:
      - section: ara
        key: jincai_import
"""
    _Base = _ara.CallbackModule
else:  # pragma: no cover
    DOCUMENTATION = """
name: jincai_ara
short_description: ARA's callback recording every run into the jincai audit trail (ara not installed)
"""
    _Base = CallbackBase


class CallbackModule(_Base):
    """ARA's ``ara_default`` callback, writing to the network's store and labelling release and sites."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "jincai_ara"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._release = None
        self._sites = set()
        self._journal = None
        self._import_env = {}
        self._first_run = False
        self._content_counts = [0, 0]  # results whose content took the shortcut, ARA's own path
        if _ara is None:  # pragma: no cover
            display.warning(f"jincai_ara: ara is not installed ({_IMPORT_ERROR}): this run is not recorded")
            self.disabled = True

    def set_options(self, task_keys=None, var_options=None, direct=None):
        """Point ARA's offline client at the network's store (or its calls at the journal), then let
        ARA read its options."""
        from ansible import context

        from jincai import audit
        from jincai.audit import journal

        inventory = (context.CLIARGS.get("inventory") or [None])[0]
        network = audit.network_of(inventory)
        CallbackBase.set_options(self, task_keys=task_keys, var_options=var_options, direct=direct)
        offline = self.get_option("api_client") == "offline"
        recording = journal.recording(self.get_option("jincai_recording"), self.get_option("api_client"))
        if offline or recording == "journal":
            try:
                store = audit.store_dir(network)
                os.makedirs(store, mode=0o750, exist_ok=True)
                if not os.access(store, os.W_OK):
                    raise PermissionError(f"{store} is not writable")
            except (OSError, ValueError) as exc:
                if offline:
                    display.warning(f"jincai_ara: the audit store cannot be written ({exc}): this run is not "
                                    f"recorded (run as the control node's operator, or set {audit.STORE_ENV})")
                    self.disabled = True
                    return
                display.warning(f"jincai_ara: no journal ({exc}): recording straight to the ARA server")
                recording = "direct"
        if offline:
            for key, value in audit.offline_env(network).items():
                os.environ.setdefault(key, value)
        if recording == "journal":
            target = "offline" if offline else self.get_option("api_server")
            self._journal = journal.Journal(os.path.join(store, journal.DIR_NAME), target)
            # the first run into a new store waits for its import, which creates the store: whoever
            # looks for the store after a run (ARA's CLI, tests/lab/test_audit_lab.py) finds it
            self._first_run = offline and not os.path.isfile(os.path.join(store, audit.DB_FILE))
            self._import_env = {f"ARA_API_{key.upper()}": str(self.get_option(f"api_{key}")) for key in (
                "username", "password", "cert", "key", "ca", "insecure", "timeout")
                if self.get_option(f"api_{key}") not in (None, "")}
            with _client(journal.JournalClient(self._journal)):
                super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
            self.callback_threads = 0  # the journal is written in the callback's thread, in order
            atexit.register(self._finish_journal)  # an interrupted run: its journal is imported too
        else:
            super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        self._release = audit.inventory_release(inventory)
        self.default_labels = list(self.default_labels) + [f"network:{network}", f"commit:{audit.commit()}"]

    def _load_result(self, result, status, **kwargs):
        """ARA's ``_load_result``, its content computed by jincai.audit.content.plain_content where the
        result is plain data: ARA's module-level helpers are answered with that value for this call.
        Only when ARA runs no callback threads (the journal's case): the helpers are module globals."""
        content = None
        if self.record_task_content and not self.callback_threads and os.environ.get(CONTENT_ENV) != "ara":
            from jincai.audit.content import plain_content

            content = plain_content(result._result)
        if content is None:
            self._content_counts[1] += 1
            return super()._load_result(result, status, **kwargs)
        self._content_counts[0] += 1
        saved = _ara.module_response_deepcopy, _ara.strip_internal_keys, _ara.json
        _ara.module_response_deepcopy, _ara.strip_internal_keys, _ara.json = (
            lambda _value: content), (lambda value: value), _Identity
        try:
            return super()._load_result(result, status, **kwargs)
        finally:
            _ara.module_response_deepcopy, _ara.strip_internal_keys, _ara.json = saved

    def _finish_journal(self):
        """Close the run's journal and start its import (never fails the run)."""
        if self._journal is None or self._journal.closed:
            return
        from jincai.audit import journal

        try:
            if self._journal.close():
                wait = self.get_option("jincai_import") == "wait" or self._first_run
                journal.spawn_import(self._journal.directory, wait=wait, extra_env=self._import_env)
        except Exception as exc:  # noqa: BLE001 - the audit trail must never fail a run
            display.warning(f"jincai_ara: the run's journal {self._journal.path} is not imported yet ({exc}); "
                            "the next run or `jincai history` imports it")

    def v2_playbook_on_stats(self, stats):
        display.vv(f"jincai_ara: {sum(self._content_counts)} results recorded, {self._content_counts[0]} of them "
                   "plain (content in one pass)")
        try:
            return super().v2_playbook_on_stats(stats)
        finally:
            self._finish_journal()

    def v2_playbook_on_play_start(self, play):
        """Add ``site:CODE`` labels for the sites of the hosts this play targets (limit applied)."""
        try:
            hosts = play._variable_manager._inventory.get_hosts(play.hosts)
        except Exception:  # noqa: BLE001 - labels must never stop a run
            hosts = []
        for host in hosts:
            for group in host.get_groups():
                m = SITE_GROUP.match(group.name)
                if m:
                    self._sites.add(m.group(1))
        try:
            self._release = play._variable_manager.extra_vars.get("apps_release") or self._release
        except Exception:  # noqa: BLE001
            pass
        base = [label for label in self.default_labels if not label.startswith(("site:", "release:"))]
        self.default_labels = base + [f"site:{code}" for code in sorted(self._sites)] + (
            [f"release:{self._release}"] if self._release else [])
        return super().v2_playbook_on_play_start(play)


@contextlib.contextmanager
def _client(recorder):
    """ARA's callback builds its API client in set_options (client_utils.get_client): hand it the
    journal's recorder instead, so that no Django starts in ansible-playbook."""
    saved = _ara.client_utils
    _ara.client_utils = type("JournalClientUtils", (), {"get_client": staticmethod(lambda **_kw: recorder)})
    try:
        yield
    finally:
        _ara.client_utils = saved
