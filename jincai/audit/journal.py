"""The audit journal: what ARA's callback records during a run, written to a local file at almost no
cost, and imported into ARA (the network's sqlite store, or an ARA server) after the run.

Why: ARA's offline client starts Django inside ansible-playbook and writes every result through its
REST layer, synchronously, in a server thread that competes with the strategy for the GIL (+96 % wall
time on a converged local benchmark; an ARA server still +18 %, docs/audit.md "Cost"). Here ARA's own
callback code still decides *what* is recorded (ignored facts, arguments and files, ``no_log``
censoring, labels, diffs, host stats: plugins/callback/jincai_ara.py), but its API client is a
:class:`JournalClient` that appends each call to a JSON-lines journal and answers locally with
stand-in ids (``jincai-ref-N``). After the run a separate process (``python -m jincai.audit.journal
import DIR``) replays the calls through ARA's API, each stand-in id mapped to the id ARA gave.

Files: ``<store>/journal/<UTC time>-<pid>-<random>.jsonl`` (0600; the store directory is 0750): a
``start`` line (the target: ``offline`` or the server's URL; never credentials), one line per API
call, an ``end`` line when the run closed it. The writer holds a POSIX lock (``lockf``, not
inherited by the worker processes Ansible forks) on its journal while the run lasts, so an importer
skips the journals of live runs and takes any other: a journal left behind by a killed run (no
``end`` line, its lock gone with its process) is imported by the next import, its playbook marked
``expired`` as ARA marks an interrupted run. Importers take ``journal/.import.lock`` (flock) one at a
time; ``jincai history`` runs one and waits for it before reading (:func:`drain`).

Offline target: the import is one sqlite transaction through ARA's views in process (Django's
request machinery, no socket): all of a run or nothing, and the journal is removed once committed.
Server target: ARA's HTTP API; a failed import removes the partial playbook and keeps the journal for
the next import. Failures are logged to ``journal/import.log`` and leave the journal in place.
"""

import argparse
import datetime as dt
import fcntl
import glob
import json
import os
import subprocess
import sys
import time
import uuid

VERSION = 1
DIR_NAME = "journal"
SUFFIX = ".jsonl"
LOCK_NAME = ".import.lock"
LOG_NAME = "import.log"
REF_PREFIX = "jincai-ref-"
#: fields of an ARA API payload that hold the id of another record
REF_FIELDS = ("playbook", "play", "task", "host", "file")
#: environment the importer process keeps (ARA's settings and its server credentials; nothing else of
#: the run's environment, which may hold secrets handed to a playbook)
KEEP_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "JINCAI_STATE_DIR", "JINCAI_ARA_DIR",
            "DJANGO_SETTINGS_MODULE")


def _now():
    return dt.datetime.now(dt.timezone.utc)


class Journal:
    """One run's journal file, opened at its first record, locked by this process until closed."""

    def __init__(self, directory, target):
        self.directory = directory
        self.target = target
        self.path = None
        self._fd = None
        self._buf = []
        self.closed = False

    def _open(self):
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        name = f"{_now():%Y%m%dT%H%M%S.%f}-{os.getpid()}-{uuid.uuid4().hex[:8]}{SUFFIX}"
        self.path = os.path.join(self.directory, name)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        fcntl.lockf(self._fd, fcntl.LOCK_EX)  # POSIX lock: released when this process ends, not shared by forks
        self._buf.insert(0, json.dumps({"op": "start", "version": VERSION, "target": self.target,
                                        "pid": os.getpid(), "time": _now().isoformat()}) + "\n")

    def write(self, record):
        """Append one record: one ``os.write`` of one line, so that it is in the file (the kernel's)
        as soon as ARA made it, and survives this process being killed. No buffer in this process:
        a worker Ansible forks, when it exits, has nothing of the journal to write a second time."""
        if self.closed:
            raise ValueError("journal closed")
        if self._fd is None:
            self._open()
        self._buf.append(json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str) + "\n")
        self.flush()

    def flush(self):
        """Write what is pending (the start line with the first record)."""
        if self._fd is None or not self._buf:
            return
        data = "".join(self._buf).encode("utf-8")
        self._buf = []
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]

    def close(self):
        """Write the ``end`` line, fsync, release the lock; returns the path (None if nothing was recorded)."""
        if self.closed:
            return self.path
        self.closed = True
        if self._fd is None:
            return None
        self._buf.append(json.dumps({"op": "end", "time": _now().isoformat()}) + "\n")
        self.flush()
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        return self.path


class JournalClient:
    """Stands in for ARA's API client inside the callback: every call goes to the journal; the answer
    is the payload with a stand-in id (and, for a PATCH, the record as patched so far), which is all
    ARA's callback reads back (ids, a task's status, a playbook's name and labels)."""

    LIGHT = ("content", "facts", "arguments")  # big fields the callback never reads back: not kept

    def __init__(self, journal):
        self.journal = journal
        self._records = {}
        self._count = 0

    @staticmethod
    def _answer(record, payload):
        record.update((k, v) for k, v in payload.items() if k not in JournalClient.LIGHT)
        if "labels" in payload:
            record["labels"] = [{"name": name} for name in payload["labels"]]
        return record

    def post(self, endpoint, **payload):
        self._count += 1
        ref = f"{REF_PREFIX}{self._count}"
        self.journal.write({"op": "post", "url": endpoint, "ref": ref, "data": payload})
        record = self._answer({"id": ref, "name": None, "labels": []}, payload)
        if endpoint.rstrip("/").endswith("/results"):
            return record  # never read back: not kept
        self._records[ref] = record
        return record

    def patch(self, endpoint, **payload):
        self.journal.write({"op": "patch", "url": endpoint, "data": payload})
        ref = endpoint.rstrip("/").rsplit("/", 1)[-1]
        return self._answer(self._records.setdefault(ref, {"id": ref, "name": None, "labels": []}), payload)

    put = patch

    def get(self, endpoint, **params):  # noqa: ARG002 - ARA's callback never reads the API
        return {}

    def delete(self, endpoint, **kwargs):  # noqa: ARG002
        self.journal.write({"op": "delete", "url": endpoint})


def recording(configured, api_client, environ=None):
    """How a run is recorded: ``journal`` or ``direct``, from jincai_ara's ``jincai_recording``
    option. ``auto``: ``direct`` in an AWX job sending to an ARA server (``AWX_HOST`` in the
    environment and ``api_client`` http: the job's files go with its execution environment, and ARA's
    HTTP client overlaps its requests with the run), else ``journal``."""
    environ = os.environ if environ is None else environ
    if configured in ("journal", "direct"):
        return configured
    return "direct" if api_client == "http" and environ.get("AWX_HOST") else "journal"


# ---------------------------------------------------------------------------------------- import


class ImportFailed(Exception):
    """ARA refused a record of the journal (status >= 400) or could not be reached."""


def read(path):
    """``(header, records, complete)`` of a journal file; a torn last line (the writer was killed
    mid-write) is dropped."""
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 2:
                raise ImportFailed(f"{path}: line {i + 1} is not JSON") from None
    if not records or records[0].get("op") != "start":
        raise ImportFailed(f"{path}: no start record")
    complete = records[-1].get("op") == "end"
    return records[0], [r for r in records[1:] if r.get("op") in ("post", "patch", "delete")], complete


def _url(url, ids):
    prefix, _, last = url.rstrip("/").rpartition("/")
    return f"{prefix}/{ids[last]}" if last.startswith(REF_PREFIX) else url


def replay(records, client, complete=True):
    """Send ``records`` to ``client`` (post/patch/delete returning the JSON answer), mapping stand-in
    ids to ARA's; returns ``(count, playbook id)``. An incomplete journal's playbook still
    ``running`` at the end is marked ``expired``."""
    ids, playbook, status, last = {}, None, None, None
    for rec in records:
        data = dict(rec.get("data") or {})
        for key in REF_FIELDS:
            if isinstance(data.get(key), str) and data[key].startswith(REF_PREFIX):
                data[key] = ids[data[key]]
        if isinstance(data.get("delegated_to"), list):
            data["delegated_to"] = [ids.get(h, h) for h in data["delegated_to"]]
        url = _url(rec["url"], ids)
        if rec["op"] == "post":
            answer = client.post(url, **data)
            ids[rec["ref"]] = answer["id"]
            if rec["url"].rstrip("/").endswith("/playbooks"):
                playbook = answer["id"]
        elif rec["op"] == "patch":
            client.patch(url, **data)
        else:
            client.delete(url)
        if rec["url"].rstrip("/").split("/")[-2:-1] == ["playbooks"] and "status" in data:
            status = data["status"]
        last = data.get("ended") or data.get("started") or last
    if playbook is not None and not complete and status in (None, "running"):
        client.patch(f"/api/v1/playbooks/{playbook}", status="expired", ended=last or _now().isoformat())
    return len(records), playbook


class _Checked:
    """post/patch/delete over a ``send(method, url, body) -> (status, json)``; raises on >= 400."""

    def __init__(self, send):
        self._send = send

    def _call(self, method, url, payload=None):
        status, answer = self._send(method, url, None if payload is None else json.dumps(payload))
        if status >= 400:
            raise ImportFailed(f"ARA answered {status} to {method.upper()} {url}: {str(answer)[:300]}")
        return answer

    def post(self, url, **payload):
        return self._call("post", url, payload)

    def patch(self, url, **payload):
        return self._call("patch", url, payload)

    def delete(self, url):
        return self._call("delete", url)


def _offline_store_env(store):
    from jincai import audit

    return {"ARA_BASE_DIR": store, "ARA_DATABASE_NAME": os.path.join(store, audit.DB_FILE),
            "ARA_DATABASE_OPTIONS": "@json " + json.dumps(audit.SQLITE_OPTIONS)}


_DJANGO = {}


def _offline_client(store):
    """ARA's API views on ``store`` in this process (Django's test client: no server, no socket)."""
    if "client" not in _DJANGO:
        os.environ.update(_offline_store_env(store))  # the journal's own store, whatever ARA_* says
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ara.server.settings")
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0, interactive=False)
        from django.test import Client

        _DJANGO["client"] = Client(SERVER_NAME="localhost", HTTP_HOST="localhost")
        _DJANGO["store"] = store
    elif _DJANGO["store"] != store:
        raise ImportFailed(f"this process imports into {_DJANGO['store']}, not {store}")
    web = _DJANGO["client"]

    def send(method, url, body):
        response = getattr(web, method)(url, data=body, content_type="application/json") if body is not None \
            else getattr(web, method)(url)
        return response.status_code, (response.json() if response.content else {})

    return _Checked(send)


def _http_client(endpoint):
    """ARA's HTTP API at ``endpoint`` (credentials and TLS settings: ARA_API_* of the environment)."""
    import requests

    session = requests.Session()
    session.headers.update({"Accept": "application/json", "Content-Type": "application/json"})
    if os.environ.get("ARA_API_USERNAME") and os.environ.get("ARA_API_PASSWORD"):
        session.auth = (os.environ["ARA_API_USERNAME"], os.environ["ARA_API_PASSWORD"])
    if os.environ.get("ARA_API_CERT") and os.environ.get("ARA_API_KEY"):
        session.cert = (os.environ["ARA_API_CERT"], os.environ["ARA_API_KEY"])
    session.verify = os.environ.get("ARA_API_CA") or os.environ.get("ARA_API_INSECURE", "").lower() not in (
        "1", "true", "yes")
    timeout = int(os.environ.get("ARA_API_TIMEOUT") or 30)
    base = endpoint.rstrip("/")

    def send(method, url, body):
        try:
            response = session.request(method, base + url, data=body, timeout=timeout)
        except requests.RequestException as exc:
            raise ImportFailed(f"ARA server {base}: {exc}") from exc
        return response.status_code, (response.json() if response.content else {})

    return _Checked(send)


def _log(directory, text):
    try:
        with open(os.path.join(directory, LOG_NAME), "a", encoding="utf-8") as fh:
            fh.write(f"{_now():%Y-%m-%dT%H:%M:%SZ} pid {os.getpid()}: {text}\n")
    except OSError:
        pass


def import_one(path, store):
    """Import one journal (not locked by a live run) into its target; remove it once ARA holds it.
    Returns the number of records, or raises ImportFailed (the journal stays)."""
    header, records, complete = read(path)
    target = header.get("target") or "offline"
    if target == "offline":
        client = _offline_client(store)
        from django.db import transaction

        with transaction.atomic():
            count, _ = replay(records, client, complete)
    else:
        client = _http_client(target)
        state = {}

        class _Tracking:
            def post(self, url, **payload):
                answer = client.post(url, **payload)
                if url.rstrip("/").endswith("/playbooks"):
                    state["playbook"] = answer["id"]
                return answer

            patch = staticmethod(client.patch)
            delete = staticmethod(client.delete)

        try:
            count, _ = replay(records, _Tracking(), complete)
        except Exception:
            if "playbook" in state:  # no half-recorded run on the server: the next import sends it whole
                try:
                    client.delete(f"/api/v1/playbooks/{state['playbook']}")
                except ImportFailed:
                    pass
            raise
    os.remove(path)
    return count


def pending(directory):
    """The journal files in ``directory``, oldest first."""
    return sorted(glob.glob(os.path.join(directory, "*" + SUFFIX)))


def import_pending(directory):
    """Import every journal of ``directory`` whose run has ended (or died), one importer at a time.
    Returns ``{"imported": n, "records": n, "live": n, "failed": n}``."""
    figures = {"imported": 0, "records": 0, "live": 0, "failed": 0}
    if not os.path.isdir(directory):
        return figures
    store = os.path.dirname(os.path.abspath(directory))
    t0, c0 = time.monotonic(), time.process_time()
    with open(os.path.join(directory, LOCK_NAME), "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for path in pending(directory):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    figures["live"] += 1  # its run is still going
                    continue
                try:
                    figures["records"] += import_one(path, store)
                    figures["imported"] += 1
                except Exception as exc:  # noqa: BLE001 - logged; the journal stays for the next import
                    figures["failed"] += 1
                    _log(directory, f"{os.path.basename(path)} not imported: {exc}")
            finally:
                os.close(fd)
    if figures["imported"] or figures["failed"]:
        _log(directory, f"imported {figures['imported']} journal(s), {figures['records']} records, "
                        f"{figures['failed']} failed, in {time.monotonic() - t0:.2f} s "
                        f"(CPU {time.process_time() - c0:.2f} s)")
    return figures


def importer_env(extra=None):
    """The importer process's environment: :data:`KEEP_ENV` and ``ARA_*`` of this one, ``extra`` on top,
    and the jincai package importable."""
    env = {k: v for k, v in os.environ.items() if k in KEEP_ENV or k.startswith("ARA_")}
    env.update(extra or {})
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def spawn_import(directory, wait=False, extra_env=None):
    """Start ``python -m jincai.audit.journal import DIR`` in its own session (it outlives the run and
    is not in its process group); with ``wait``, wait for it. Returns the Popen."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    with open(os.path.join(directory, LOG_NAME), "a", encoding="utf-8") as log:
        proc = subprocess.Popen([sys.executable, "-m", "jincai.audit.journal", "import", directory],  # noqa: S603
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                                env=importer_env(extra_env), start_new_session=True, close_fds=True,
                                cwd="/")
    if wait:
        proc.wait()
    return proc


def drain(directory, timeout=600):
    """Import what is pending in ``directory`` and wait for any import under way (a separate process:
    Django settings are per process). Returns the journals still there afterwards (live runs, failures)."""
    if not pending(directory):
        return []
    subprocess.run([sys.executable, "-m", "jincai.audit.journal", "import", directory],  # noqa: S603
                   env=importer_env(), stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False)
    return pending(directory)


def main(argv=None):
    """``python -m jincai.audit.journal import DIR``: import DIR's finished journals (0; 1 if one failed)."""
    ap = argparse.ArgumentParser(prog="python -m jincai.audit.journal", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="import the finished journals of DIR")
    imp.add_argument("directory")
    args = ap.parse_args(argv)
    figures = import_pending(args.directory)
    print(json.dumps(figures))
    return 1 if figures["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
