"""Fast drift (``jincai compliance --drift fast``): what a successful site.yml run left on each host.

A *manifest* per host records what site.yml's tasks manage (files, packages, services, accounts and
groups; a router's normalised running config) together with the intended value of each, read back
right after the run (playbooks/manifest.yml). The jincai_manifest callback records it
(:class:`Recorder`) and writes it to ``<state>/manifests/<network>/<host>.json`` (:func:`write`) for the
hosts whose run had no failure; ``jincai compliance`` compares the facts the collection run reads for
those entries with it (:func:`compare`), on the control node.

A manifest is trusted only while the *source digest* (:func:`source_digest`) it was written with is the
current one: the host's vars from the inventory, the content of the repository's code trees and of the
inventory's group_vars/host_vars, and the run's extra vars. Any difference sends that host to the full
path (``site.yml --check --diff --limit``).
"""

import hashlib
import json
import os
import re
import tempfile

from jincai import ROOT

SCHEMA = 1
#: ansible.builtin modules whose results say what a host should hold, by kind.
FILE_MODULES = frozenset({"template", "copy", "file"})
PACKAGE_MODULES = frozenset({"apt"})
SERVICE_MODULES = frozenset({"systemd", "systemd_service", "service"})
ACCOUNT_MODULES = {"user": "users", "group": "groups"}
#: Modules that only read, decide or control the run: they manage nothing, so nothing is uncovered.
READ_ONLY = frozenset({
    "assert", "debug", "fail", "meta", "set_fact", "set_stats", "stat", "slurp", "getent", "setup",
    "gather_facts", "group_by", "add_host", "include_tasks", "import_tasks", "include_role", "import_role",
    "include_vars", "wait_for", "wait_for_connection", "ping", "package_facts", "service_facts", "pause",
    "validate_argument_spec", "find",
})
#: Trees whose content is the code that decides the intended state (relative to the checkout).
SOURCE_TREES = ("roles", "templates", "playbooks", "library", "module_utils", "plugins")
#: Inventory directories whose files Ansible adds to the host vars (hashed with the trees).
INVENTORY_TREES = ("group_vars", "host_vars")
#: Host vars left out of the digest because they change without changing what a host should hold.
#: None of the jincai inventory plugin's vars does today (checked on the lab and the province source).
VOLATILE_HOSTVARS = frozenset()
#: Extra vars that steer a run, not what a host should hold: the production guard's flag, connection
#: settings (``ansible_*``) and the compliance run's own tuning (``compliance_*``). Left out of the digest,
#: so a production site.yml (``-e jincai_allow_production=true``) and the nightly run agree.
RUN_CONTROL_EXTRA_VARS = frozenset({"jincai_allow_production"})
RUN_CONTROL_PREFIXES = ("ansible_", "compliance_")
#: systemd enablement states that count as enabled / as not enabled (``systemctl list-unit-files``).
ENABLED = frozenset({"enabled", "enabled-runtime", "alias", "static", "indirect", "generated", "linked"})
NOT_ENABLED = frozenset({"disabled", "masked", "masked-runtime"})
MANIFEST_PLAY = "Record what this run left on each host (jincai manifest)"


def short(action):
    """``ansible.builtin.template`` -> ``template`` (other collections keep their full name)."""
    for prefix in ("ansible.builtin.", "ansible.legacy."):
        if action.startswith(prefix):
            return action[len(prefix):]
    return action


def _names(value):
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value or [] if str(v)]


def _package_name(name):
    return re.split(r"[=:<>]", name, maxsplit=1)[0]


def _unit(name):
    return name if "." in name else name + ".service"


class Recorder:
    """What a run's successful results say each host manages (fed by the jincai_manifest callback)."""

    def __init__(self):
        self.hosts = {}

    def host(self, name):
        """The entries of host ``name`` (created empty)."""
        return self.hosts.setdefault(name, {"files": {}, "packages": {}, "services": {}, "users": {},
                                            "groups": {}, "uncovered": {}})

    def add(self, host, action, args, result, no_log=False, role="", task="", probe=False, delegated=False):
        """Record one successful, non-check result. ``args``: the task's templated arguments (the worker's
        task fields; for a loop the items' own ``invocation`` is used); ``result``: the result dict
        (censored for a ``no_log`` task: then only ``args``' path or name is recorded, never content);
        ``probe``: the task is declared ``changed_when: false`` (a read-only query: not uncovered);
        ``delegated``: the task ran on another host (what it manages is not this host's: uncovered)."""
        module = short(action)
        h = self.host(host)
        if module in READ_ONLY or (probe and delegated):
            return
        if delegated:
            self._uncovered(h, f"{module} (delegated)")
            return
        if module == "jincai_files":
            self._files_batch(h, args, result, {"role": role, "task": task, "module": module}, no_log)
            return
        items = result.get("results") if isinstance(result.get("results"), list) else None
        if items is None:
            arg_sets = [dict(args or {})]
        else:
            arg_sets = []
            for item in items:
                if not isinstance(item, dict) or item.get("skipped") or item.get("failed"):
                    continue
                inv = (item.get("invocation") or {}).get("module_args")
                if not isinstance(inv, dict) or item.get("censored"):
                    # a no_log loop: the items' arguments are hidden, so what they manage is not known
                    self._uncovered(h, f"{module} (no_log loop)")
                    continue
                arg_sets.append(self._item_args(module, inv, item))
        where = {"role": role, "task": task, "module": module}
        for a in arg_sets:
            if module in FILE_MODULES:
                self._file(h, module, a, where, no_log)
            elif module in PACKAGE_MODULES:
                self._package(h, module, a, where)
            elif module in SERVICE_MODULES:
                self._service(h, module, a, where)
            elif module in ACCOUNT_MODULES:
                self._account(h, ACCOUNT_MODULES[module], module, a, where)
            else:
                if not probe:
                    self._uncovered(h, module)
                path = a.get("path") or a.get("dest")
                if isinstance(path, str) and path in h["files"]:
                    h["files"][path]["content"] = False
                    h["files"][path]["content_uncovered_by"] = module

    def _files_batch(self, h, args, result, where, no_log):
        """A jincai_files result (plugins/action/jincai_files.py): its ``paths`` (or, when the result is
        censored by ``no_log``, the task's own arguments) as file, directory and link entries."""
        entries = result.get("paths") if isinstance(result.get("paths"), list) else None
        if entries is None:
            a = dict(args or {})
            top = {k: a[k] for k in ("owner", "group") if a.get(k) is not None}
            entries = []
            for d in a.get("directories") or []:
                d = {"path": d} if isinstance(d, str) else dict(d)
                mode = {"mode": a["directory_mode"]} if a.get("directory_mode") is not None else {}
                entries.append({**top, **mode, **d, "state": "directory"})
            for link in a.get("links") or []:
                entries.append({"path": link.get("dest"), "state": "link"})
            for f in a.get("files") or []:
                mode = {"mode": a["mode"]} if a.get("mode") is not None else {}
                entries.append({**top, **mode, "path": f.get("dest"), "state": "file",
                                **{k: f[k] for k in ("owner", "group", "mode") if f.get(k) is not None}})
        for e in entries:
            state = e.get("state")
            if state == "file":
                self._file(h, "template", {"dest": e.get("path"), **{k: e.get(k) for k in ("owner", "group", "mode")}},
                           where, no_log)
            else:
                self._file(h, "file", {"path": e.get("path"), "state": state,
                                       **{k: e.get(k) for k in ("owner", "group", "mode")}}, where, no_log)

    @staticmethod
    def _item_args(module, inv, item):
        """A loop item's arguments; template/copy run the copy or file module underneath, whose ``dest``
        and attributes are the template task's."""
        a = dict(inv)
        if module in ("template", "copy") and not a.get("dest"):
            a["dest"] = item.get("dest") or item.get("path")
        return a

    @staticmethod
    def _uncovered(h, what):
        h["uncovered"][what] = h["uncovered"].get(what, 0) + 1

    def _file(self, h, module, a, where, no_log):
        path = a.get("dest") if module in ("template", "copy") else (a.get("path") or a.get("dest") or a.get("name"))
        if not isinstance(path, str) or not path.startswith("/"):
            self._uncovered(h, f"{module} (no path)")
            return
        state = a.get("state") if module == "file" else "file"
        if module == "file" and not state:
            state = "file"
        if module == "copy" and (a.get("remote_src") or str(a.get("src", "")).endswith("/")):
            state = "tree"
        prev = h["files"].get(path) or {"attrs": []}
        entry = {"path": path, "state": str(state), **where,
                 "content": bool(module in ("template", "copy") and state != "tree" or (prev.get("content") and state == "file")),
                 "attrs": sorted(set(prev["attrs"]) | {k for k in ("mode", "owner", "group") if a.get(k) is not None})}
        if no_log:
            entry["no_log"] = True
        if state == "absent":
            entry.update(content=False, attrs=[])
        h["files"][path] = entry

    @staticmethod
    def _package(h, module, a, where):
        state = a.get("state") or "present"
        names = _names(a.get("name") or a.get("pkg") or a.get("package"))
        if a.get("deb") or state not in ("present", "latest", "absent", "installed", "removed"):
            Recorder._uncovered(h, f"{module} (state {state})" if not a.get("deb") else f"{module} (deb)")
            return
        for name in names:
            h["packages"][_package_name(name)] = {"installed": state not in ("absent", "removed"), **where}

    @staticmethod
    def _service(h, module, a, where):
        name = a.get("name") or a.get("unit") or a.get("service")
        if not name:
            return  # daemon_reload only
        unit = _unit(str(name))
        entry = dict(h["services"].get(unit) or {"unit": unit, "state": None, "enabled": None})
        state = a.get("state")
        if state in ("started", "restarted", "reloaded"):
            entry["state"] = "started"
        elif state == "stopped":
            entry["state"] = "stopped"
        if a.get("enabled") is not None:
            entry["enabled"] = bool(a.get("enabled"))
        if a.get("masked"):
            entry.update(enabled=None, masked=True)
        entry.update(where)
        h["services"][unit] = entry

    @staticmethod
    def _account(h, kind, module, a, where):
        name = a.get("name")
        if not name:
            return
        h[kind][str(name)] = {"present": (a.get("state") or "present") != "absent", **where}

    def paths(self, host):
        """The paths of ``host``'s file entries, for the read-back."""
        return sorted(self.hosts.get(host, {}).get("files", {}))

    def units(self, host):
        """The units of ``host``'s service entries, for the read-back."""
        return sorted(self.hosts.get(host, {}).get("services", {}))

    def manifest(self, host, readback=None, router=None, digest=None):
        """The manifest document of ``host``: its entries with the intended values read back right after
        the run (``readback``: the collector's ``{files: {path: facts}, services: {unit: state},
        packages: [installed]}``; a unit's state and a package's presence are compared as read back, the
        tasks' arguments say only which to compare) and, for a router, ``router`` = {platform, lines}."""
        h = self.hosts.get(host) or self.host(host)
        uncovered = dict(h["uncovered"])
        if router is not None:
            # a router is compared by its running config; what its Linux side manages (the FRR lab
            # routers' nftables file and unit) is read by the full path only
            for kind in ("files", "packages", "services", "users", "groups"):
                for e in h[kind].values():
                    what = f"{e['module']} (router host)"
                    uncovered[what] = uncovered.get(what, 0) + 1
            h = dict(h, files={}, packages={}, services={}, users={}, groups={})
            uncovered.pop("jincai_netconfig", None)  # what it pushed is the running config compared
        readback = readback or {}
        files = {}
        for path, e in sorted(h["files"].items()):
            got = (readback.get("files") or {}).get(path) or {"exists": False}
            checks = ["exists"]
            if got.get("exists") and e["state"] != "absent":
                checks.append("type")
                if e.get("content") and got.get("type") == "file" and got.get("sha256"):
                    checks.append("sha256")
                checks += [a for a in e["attrs"] if got.get(a) is not None]
            files[path] = {**{k: v for k, v in e.items() if k != "attrs"},
                           "expected": {k: got.get(k) for k in ("exists", "type", "sha256", "mode", "owner", "group")
                                        if got.get(k) is not None},
                           "check": checks}
        services = {}
        for unit, e in sorted(h["services"].items()):
            got = (readback.get("services") or {}).get(unit)
            services[unit] = dict(e, expected={k: got.get(k) for k in ("active", "enabled") if got.get(k)}) if got else e
        packages = {}
        installed = set(readback["packages"]) if "packages" in readback else None
        for name, e in sorted(h["packages"].items()):
            packages[name] = dict(e, installed=name in installed) if installed is not None else e
        return {"schema": SCHEMA, "host": host, "digest": digest or {}, "files": files,
                "packages": packages, "services": services,
                "users": dict(sorted(h["users"].items())), "groups": dict(sorted(h["groups"].items())),
                "uncovered": dict(sorted(uncovered.items())), "router": router}


# --- where manifests live --------------------------------------------------------------------------

def manifest_dir(network):
    """``${JINCAI_STATE_DIR:-/var/lib/jincai}/manifests/<network>``."""
    from jincai import paths  # noqa: PLC0415 - the state directory is resolved at call time

    if not network or os.sep in network or network.startswith("."):
        raise ValueError(f"network name {network!r} cannot name a manifest directory")
    return os.path.join(paths.state_dir(), "manifests", network)


def write(network, host, doc):
    """Write ``doc`` as ``<manifest dir>/<host>.json`` atomically, mode 0600."""
    directory = manifest_dir(network)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{host}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1, sort_keys=True, default=str)
        os.chmod(tmp, 0o600)
        os.replace(tmp, os.path.join(directory, f"{host}.json"))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return os.path.join(directory, f"{host}.json")


def load(network, host):
    """The manifest of ``host`` or None (missing or unreadable: the host falls back to the full path)."""
    try:
        with open(os.path.join(manifest_dir(network), f"{host}.json"), encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("schema") == SCHEMA else None


def paths_file(directory, host):
    """Where the read-back (and the collection run) finds ``host``'s list of file paths."""
    return os.path.join(directory, f"{host}.paths.json")


def write_paths(directory, host, file_paths, units=()):
    """Write ``host``'s managed paths and units for the read-back/collection task:
    ``{"paths": [...], "units": [...]}``."""
    os.makedirs(directory, exist_ok=True)
    with open(paths_file(directory, host), "w", encoding="utf-8") as fh:
        json.dump({"paths": sorted(file_paths), "units": sorted(units)}, fh)


def current_hostvars(inventory_dir):
    """{host: vars} of the inventory plugin (jincai.source.inventory), what the digest hashes."""
    from jincai.source import inventory as invmod

    return invmod.build(inventory_dir)["_meta"]["hostvars"]


# --- the source digest -----------------------------------------------------------------------------

def _sha(data):
    return hashlib.sha256(data).hexdigest()


def _canonical(value):
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False).encode("utf-8")


def tree_digest(inventory_dir, root=ROOT):
    """sha256 over the relative path and content of every file of :data:`SOURCE_TREES` (under ``root``)
    and of the inventory's :data:`INVENTORY_TREES` (bytecode caches left out)."""
    h = hashlib.sha256()
    for base, trees, label in ((root, SOURCE_TREES, ""), (inventory_dir, INVENTORY_TREES, "inventory/")):
        for tree in trees:
            top = os.path.join(base, tree)
            for dirpath, dirs, files in os.walk(top):
                dirs[:] = sorted(d for d in dirs if d != "__pycache__")
                for name in sorted(files):
                    if name.endswith((".pyc", ".pyo")):
                        continue
                    path = os.path.join(dirpath, name)
                    try:
                        with open(path, "rb") as fh:
                            content = fh.read()
                    except OSError:  # a dangling symlink
                        content = b"<unreadable>"
                    h.update(f"{label}{os.path.relpath(path, base)}\0".encode() + _sha(content).encode() + b"\n")
    return h.hexdigest()


def hostvars_digest(hostvars):
    """sha256 of a host's vars (the inventory plugin's, :data:`VOLATILE_HOSTVARS` left out)."""
    return _sha(_canonical({k: v for k, v in sorted((hostvars or {}).items()) if k not in VOLATILE_HOSTVARS}))


def extra_vars_digest(extra_vars):
    """sha256 of the run's extra vars (a dict, as Ansible parsed them), the run-control ones left out
    (:data:`RUN_CONTROL_EXTRA_VARS`, :data:`RUN_CONTROL_PREFIXES`)."""
    return _sha(_canonical({k: v for k, v in sorted((extra_vars or {}).items())
                            if k not in RUN_CONTROL_EXTRA_VARS and not str(k).startswith(RUN_CONTROL_PREFIXES)}))


#: What the province PKI publishes to hosts, by file of the network's PKI directory: the CA certificate
#: reaches every host; the CRL reaches the hosts of these functions (vpn_concentrator installs it,
#: vpn_crl_publish serves it). A CRL refresh (`jincai pki crl --if-due --push`, the revocation of a
#: unit) changes what those hosts should hold without a site.yml: their manifests stop being trusted.
PKI_CA_FILES = ("ca.crt",)
PKI_CRL_FILES = ("crl.pem", "crl.der")
PKI_CRL_FUNCTIONS = frozenset({"vpn_concentrator", "services"})


def pki_digest(hostvars):
    """sha256 of the province PKI files the host receives (:data:`PKI_CA_FILES`, and
    :data:`PKI_CRL_FILES` for :data:`PKI_CRL_FUNCTIONS`), from the network's PKI directory ('' without one)."""
    from jincai import paths

    name = (hostvars or {}).get("jincai_network_name")
    try:
        directory = paths.pki_dir(name) if name else None
    except ValueError:
        directory = None
    if not directory or not os.path.isdir(directory):
        return ""
    files = list(PKI_CA_FILES)
    if PKI_CRL_FUNCTIONS & set((hostvars or {}).get("jincai_functions") or ()):
        files += PKI_CRL_FILES
    h = hashlib.sha256()
    for fname in files:
        try:
            with open(os.path.join(directory, fname), "rb") as fh:
                h.update(f"{fname}\0".encode() + _sha(fh.read()).encode() + b"\n")
        except OSError:
            h.update(f"{fname}\0-\n".encode())
    return h.hexdigest()


def source_digest(hostvars, tree, extra_vars):
    """{hostvars, tree, extra_vars, pki, digest} of one host: the parts and their combination."""
    parts = {"hostvars": hostvars_digest(hostvars), "tree": tree, "extra_vars": extra_vars_digest(extra_vars),
             "pki": pki_digest(hostvars)}
    return dict(parts, digest=_sha(_canonical(parts)))


def digest_mismatch(recorded, current):
    """Why a manifest's digest is not the current one ('' when it is)."""
    if (recorded or {}).get("digest") == current.get("digest"):
        return ""
    what = {"hostvars": "host vars", "tree": "roles/templates/playbooks/plugins or the inventory's group_vars",
            "extra_vars": "extra vars", "pki": "the province PKI's CA certificate or CRL"}
    changed = [label for key, label in what.items() if (recorded or {}).get(key) != current.get(key)]
    return "source changed since the manifest was written: " + (", ".join(changed) or "digest")


def parse_extra_vars(values):
    """The dict Ansible makes of ``-e`` arguments (``k=v`` pairs, YAML/JSON, ``@file``), for the digest."""
    import yaml

    from ansible.parsing.splitter import parse_kv

    out = {}
    for value in values or []:
        value = value.strip()
        if value.startswith("@"):
            try:
                with open(value[1:], encoding="utf-8") as fh:
                    data = yaml.safe_load(fh)
            except yaml.YAMLError:  # e.g. a vaulted file: its content stands for it
                with open(value[1:], "rb") as fh:
                    data = {"@" + value[1:]: _sha(fh.read())}
        elif value.startswith(("{", "[")):
            data = yaml.safe_load(value)
        else:
            data = parse_kv(value)
        if isinstance(data, dict):
            out.update(data)
    return out


# --- the comparison --------------------------------------------------------------------------------

def _drift(kind, name, attribute, expected, found, entry):
    return {"kind": kind, "name": name, "attribute": attribute, "expected": expected, "found": found,
            "role": entry.get("role", ""), "task": entry.get("task", ""), "module": entry.get("module", "")}


def compare(manifest, facts):
    """Differences between a host's manifest and its collected ``facts`` (the collector's server facts
    with ``manifest_files`` / ``groups``, or for a router ``{"config_lines": [...]}``), as a list of
    {kind, name, attribute, expected, found, role, task, module}."""
    out = []
    files = facts.get("manifest_files") or {}
    for path, e in (manifest.get("files") or {}).items():
        got = files.get(path)
        if got is None:
            out.append(_drift("file", path, "read", "read by the collector", "not collected", e))
            continue
        exp = e.get("expected") or {}
        for attr in e.get("check") or []:
            want, have = exp.get(attr), got.get(attr)
            if attr == "exists":
                want, have = bool(want), bool(have)
            if want != have:
                out.append(_drift("file", path, attr, want, have if have is not None else "absent", e))
            if attr == "exists" and want != have:
                break
    installed = set(facts.get("packages") or [])
    for name, e in (manifest.get("packages") or {}).items():
        if e["installed"] != (name in installed):
            out.append(_drift("package", name, "installed", "installed" if e["installed"] else "not installed",
                              "installed" if name in installed else "not installed", e))
    units = facts.get("services") or {}
    for unit, e in (manifest.get("services") or {}).items():
        u = units.get(unit) or {}
        exp = e.get("expected")
        if exp is not None:  # as read back right after the run
            for attr, key in (("state", "active"), ("enabled", "enabled")):
                if e.get(attr) is not None and exp.get(key) and exp[key] != u.get(key):
                    out.append(_drift("service", unit, attr, exp[key], u.get(key) or "unknown unit", e))
            continue
        if e.get("state"):
            active = u.get("active") == "active"
            if (e["state"] == "started") != active:
                out.append(_drift("service", unit, "state", "active" if e["state"] == "started" else "not active",
                                  u.get("active") or "unknown unit", e))
        if e.get("enabled") is not None:
            state = u.get("enabled") or "unknown"
            ok = state in ENABLED if e["enabled"] else state in NOT_ENABLED or state == "static"
            if not ok:
                out.append(_drift("service", unit, "enabled", "enabled" if e["enabled"] else "disabled", state, e))
    people = {a["user"] for a in facts.get("accounts") or []}
    groups = set(facts.get("groups") or [])
    for kind, have in (("users", people), ("groups", groups)):
        if kind == "groups" and "groups" not in facts and manifest.get("groups"):
            continue  # an older collector: no group list
        for name, e in (manifest.get(kind) or {}).items():
            if e["present"] != (name in have):
                out.append(_drift(kind[:-1], name, "exists", "present" if e["present"] else "absent",
                                  "present" if name in have else "absent", e))
    router = manifest.get("router")
    if router and "config_lines" in facts:
        out += compare_router(router, facts["config_lines"])
    return out


def compare_collected(manifest, doc):
    """:func:`compare` of a host's manifest with the collection's document of it
    (playbooks/compliance.yml: a router's running config, a server's facts): fast drift's findings
    (jincai.compliance.model) and `jincai converge`'s decision read the same differences."""
    if doc.get("kind") == "router":
        platform = (manifest.get("router") or {}).get("platform") or (doc.get("context") or {}).get("platform")
        facts = {"config_lines": config_lines(doc.get("config") or "", platform)}
    else:
        facts = doc.get("facts") or {}
    return compare(manifest, facts)


def compare_router(router, found_lines):
    """Lines added to / removed from a router's running config since the manifest's read-back."""
    want, have = list(router.get("lines") or []), list(found_lines or [])
    added = [ln for ln in have if ln not in set(want)]
    removed = [ln for ln in want if ln not in set(have)]
    entry = {"role": "router", "task": "running config", "module": "jincai_netconfig"}
    out = []
    if added:
        out.append(_drift("router", "running-config", "added lines", "", "\n".join("+ " + ln for ln in added), entry))
    if removed:
        out.append(_drift("router", "running-config", "removed lines", "\n".join("- " + ln for ln in removed), "", entry))
    return out


def config_lines(text, platform):
    """A router's running config as normalised lines (jincai.netconfig: volatile lines dropped, secrets
    masked, children indented under their parent): what a router manifest stores and compares."""
    from jincai import netconfig

    lines, stack = [], []
    for raw in netconfig.normalize(text or "", netconfig.get_platform(platform)).splitlines():
        depth = len(raw) - len(raw.lstrip(" "))
        del stack[depth:]
        stack.append(raw.strip())
        lines.append(" > ".join(stack))
    return lines
