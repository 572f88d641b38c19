"""Rules the roles' task files keep, read from the files themselves (no host needed)."""

import glob
import os
import re
import warnings

import yaml

from jincai import ROOT
from jincai.compliance.collector import DBUS_ACTIVATED


def _tasks(path):
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh) or []


def _walk(tasks):
    for t in tasks:
        yield t
        for key in ("block", "rescue", "always"):
            yield from _walk(t.get(key) or [])


def test_a_connection_reset_runs_only_when_the_config_it_proves_changed():
    """``meta: reset_connection`` ignores ``when`` (Ansible warns and resets anyway), so a reset in a
    role's main flow costs every converged host a new login (with Mitogen a new interpreter chain)
    on every run. Each reset lives in a file that main.yml includes under a condition."""
    found = []
    for path in sorted(glob.glob(os.path.join(ROOT, "roles", "*", "tasks", "*.yml"))):
        for t in _walk(_tasks(path)):
            if str(t.get("ansible.builtin.meta") or t.get("meta")) == "reset_connection":
                found.append(path)
    assert found, "no reset_connection at all: this rule has nothing left to guard"
    for path in found:
        role_dir, name = os.path.split(path)
        assert name != "main.yml", f"{path}: reset_connection in the main flow runs on every host, every run"
        includes = [t for t in _walk(_tasks(os.path.join(role_dir, "main.yml")))
                    if (t.get("ansible.builtin.include_tasks") or t.get("include_tasks")) == name]
        assert includes and all(t.get("when") for t in includes), f"{path}: included without a condition"


# ------------------------------------------------------------------ files go to directories that exist

#: Directories every Debian 12 host has, down to the lab's container image (debootstrap --variant=minbase
#: with systemd, openssh-server and sudo: jincai/lab/build-image.sh). Not here on purpose: /etc/modprobe.d
#: (kmod is not in minbase), /etc/systemd/system.conf.d, and the drop-in directories a role writes into:
#: a role creates those itself (ansible.builtin.file state=directory) before it writes there.
MINIMAL_DIRS = {"/etc", "/etc/default", "/etc/pam.d", "/etc/security", "/etc/profile.d", "/etc/systemd/system",
                "/etc/ssh", "/etc/sudoers.d", "/usr/local/sbin", "/usr/local/bin", "/var/backups", "/var/lib",
                "/root", "/home"}
#: Directories created by the package of the service a role configures (the role's own subject).
PACKAGE_DIRS = {"/etc/ssh/sshd_config.d": "openssh-server", "/etc/audit": "auditd", "/etc/chrony": "chrony", "/etc/rsyslog.d": "rsyslog", "/etc/nginx": "nginx",
                "/etc/postgresql": "postgresql", "/etc/strongswan.d": "strongswan-charon",
                "/etc/swanctl": "strongswan-swanctl", "/etc/aide": "aide", "/var/lib/aide": "aide"}
#: Modules that write a file whose parent directory must exist (``create: true`` for blockinfile/lineinfile).
WRITERS = ("template", "copy", "get_url", "blockinfile", "lineinfile")


def _concat(nodes):
    """ansible-core 2.19's concat: one node as it is (native), several joined as text (never literal_eval'd)."""
    nodes = list(nodes)
    return None if not nodes else nodes[0] if len(nodes) == 1 else "".join(str(n) for n in nodes)


def _jinja():
    import jinja2  # noqa: PLC0415
    from ansible.plugins.filter.core import FilterModule  # noqa: PLC0415
    from ansible.plugins.test.core import TestModule  # noqa: PLC0415
    from jinja2.nativetypes import NativeEnvironment, NativeTemplate  # noqa: PLC0415

    class Env(NativeEnvironment):
        concat = staticmethod(_concat)

    class Template(NativeTemplate):
        environment_class = Env

    Env.template_class = Template

    env = Env(undefined=jinja2.StrictUndefined)
    env.filters.update(FilterModule().filters())
    env.tests.update(TestModule().tests())
    return env


JINJA = _jinja()


def _render(value, ctx):
    """``value`` with its Jinja expressions evaluated in ``ctx`` (native types, as Ansible)."""
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        with warnings.catch_warnings():  # jinja2 decodes regular expressions' backslashes noisily
            warnings.simplefilter("ignore", DeprecationWarning)
            return JINJA.from_string(value).render(ctx)
    if isinstance(value, list):
        return [_render(v, ctx) for v in value]
    if isinstance(value, dict):
        return {k: _render(v, ctx) for k, v in value.items()}
    return value


def _names(value):
    """The variables the Jinja expressions in ``value`` use."""
    from jinja2 import meta  # noqa: PLC0415

    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return set()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return meta.find_undeclared_variables(JINJA.parse(value))
        except Exception:  # noqa: BLE001 (a filter of a plugin this test does not load: not resolvable)
            return set()
    if isinstance(value, (list, dict)):
        return set().union(set(), *(_names(v) for v in (value.values() if isinstance(value, dict) else value)))
    return set()


def role_vars(role):
    """The role's defaults and vars, evaluated as far as they go without an inventory or facts."""
    raw = {}
    for sub in ("defaults", "vars"):
        path = os.path.join(ROOT, "roles", role, sub, "main.yml")
        if os.path.exists(path):
            raw.update(_tasks(path) or {})
    done = {"inventory_hostname": "lab-host"}  # the one magic variable the file lists use (a host's name)
    for _ in range(len(raw) + 1):
        before = len(done)
        for key, value in raw.items():
            if key not in done and not (_names(value) & set(raw)) - set(done):  # what it uses first
                try:
                    done[key] = _render(value, done)
                except Exception:  # noqa: BLE001 (needs an inventory variable or a fact: not resolvable here)
                    continue
        if len(done) == before:
            break
    return done


def _flow(role, name="main.yml"):
    """The role's tasks in run order, included task files inline."""
    for t in _walk(_tasks(os.path.join(ROOT, "roles", role, "tasks", name))):
        inc = t.get("ansible.builtin.include_tasks") or t.get("ansible.builtin.import_tasks")
        if isinstance(inc, str) and "{{" not in inc:
            yield from _flow(role, inc)
        else:
            yield t


def _paths(task, ctx, key):
    """Every rendered ``key`` argument of ``task`` (one per loop item); None when it cannot be resolved."""
    module = next(k for k in task if k.startswith("ansible.builtin."))
    args = task[module]
    try:
        items = _render(task["loop"], ctx) if "loop" in task else [None]
        var = (task.get("loop_control") or {}).get("loop_var", "item")
        return [str(_render(args[key], {**ctx, var: item})) for item in items]
    except Exception:  # noqa: BLE001
        return None


def _exists(directory, created):
    return (directory in MINIMAL_DIRS or any(directory == d or d.startswith(directory + "/") for d in created)
            or any(directory == p or directory.startswith(p + "/") for p in PACKAGE_DIRS))


def test_every_file_a_role_writes_goes_to_a_directory_that_exists_or_that_it_created_before():
    """A minimal Debian 12 (the lab's image) lacks /etc/modprobe.d: the hardening template that wrote there
    failed on every lab host and ~181 errors followed. Each file a role writes goes to a directory every host
    has (MINIMAL_DIRS), that the package of the role's service ships, or that an earlier task of the role
    creates with ansible.builtin.file state=directory."""
    checked, missing = 0, []
    for role in sorted(os.listdir(os.path.join(ROOT, "roles"))):
        if not os.path.exists(os.path.join(ROOT, "roles", role, "tasks", "main.yml")):
            continue
        ctx, created = role_vars(role), []
        for t in _flow(role):
            if "jincai_files" in t:  # directories first, then the files (library/jincai_files.py)
                args = t["jincai_files"]
                try:
                    dirs, files = _render(args.get("directories") or [], ctx), _render(args.get("files") or [], ctx)
                except Exception:  # noqa: BLE001 (needs an inventory variable or a fact)
                    continue
                if isinstance(dirs, list) and isinstance(files, list):
                    created += [d if isinstance(d, str) else d["path"] for d in dirs]
                    for f in files:
                        checked += 1
                        if not _exists(os.path.dirname(str(f["dest"]).rstrip("/")), created):
                            missing.append(f"roles/{role}: {t.get('name')}: {f['dest']}")
                continue
            module = next((k for k in t if k.startswith("ansible.builtin.")), "")
            short, args = module.rpartition(".")[2], t.get(module)
            if not isinstance(args, dict):
                continue
            if short == "file" and args.get("state") == "directory":
                created += _paths(t, ctx, "path") or []
                continue
            if short not in WRITERS or "dest" not in args and "path" not in args:
                continue
            if short in ("blockinfile", "lineinfile") and not args.get("create"):
                continue
            dests = _paths(t, ctx, "dest" if "dest" in args else "path")
            if dests is None:
                continue  # a destination from the inventory or facts
            for dest in dests:
                checked += 1
                if not _exists(os.path.dirname(dest.rstrip("/")), created):
                    missing.append(f"roles/{role}: {t.get('name')}: {dest}")
    assert checked >= 60, f"only {checked} destinations resolved: the rule would guard too little"
    assert not missing, "written before their directory exists:\n" + "\n".join(missing)


def test_the_base_role_creates_each_hardening_directory_before_it_writes_there():
    ctx = role_vars("base")
    dirs = set(ctx["_base_hardening_dirs"])
    files = ctx["_base_hardening_files"]
    assert {"/etc/modprobe.d", "/etc/sysctl.d", "/etc/security/limits.d", "/etc/systemd/system.conf.d",
            "/etc/systemd/system/nginx.service.d"} <= dirs
    assert all(os.path.dirname(f["dest"]) in dirs | {"/etc"} for f in files)
    # one task writes them (library/jincai_files.py creates its directories before its files)
    task = next(t for t in _flow("base") if "jincai_files" in t and "banners" in t["name"])
    assert task["jincai_files"]["directories"] == "{{ _base_hardening_dirs }}"
    assert {f["dest"] for f in files} <= {f["dest"] for f in ctx["_base_files"]}
    # only systemd's own settings re-execute it
    notified = [f["dest"] for f in files if f["systemd"]]
    assert ctx["_base_systemd_files"] == notified
    assert notified == ["/etc/systemd/system.conf.d/60-jincai-core.conf",
                        "/etc/systemd/system/nginx.service.d/60-jincai-umask.conf"]



# ------------------------------------------------------------------ systemd units are loaded before use

def _systemd_tasks(role):
    """(task, module args) of the role's flow, with the handlers' names that reload systemd."""
    handlers_file = os.path.join(ROOT, "roles", role, "handlers", "main.yml")
    reloaders = {h["name"] for h in (_tasks(handlers_file) if os.path.exists(handlers_file) else [])
                 if (h.get("ansible.builtin.systemd_service") or {}).get("daemon_reload")
                 or (h.get("ansible.builtin.systemd_service") or {}).get("daemon_reexec")}
    return list(_flow(role)), reloaders


def test_a_unit_file_a_role_writes_is_loaded_before_the_role_enables_or_starts_a_unit():
    """jincai-backup.timer was "not found" on the lab: systemd keeps a unit it once did not find as
    not-found until a daemon-reload. After a role writes under /etc/systemd/system, the next task that
    enables, starts or restarts a unit reloads systemd (daemon_reload) or follows a flush of a handler
    that does."""
    bad = []
    for role in sorted(os.listdir(os.path.join(ROOT, "roles"))):
        if not os.path.exists(os.path.join(ROOT, "roles", role, "tasks", "main.yml")):
            continue
        flow, reloaders = _systemd_tasks(role)
        pending = []
        for t in flow:
            module = next((k for k in t if k.startswith("ansible.builtin.")), "")
            args = t.get(module) if isinstance(t.get(module), dict) else {}
            dest = str(args.get("dest", ""))
            if module in ("ansible.builtin.template", "ansible.builtin.copy") and "/etc/systemd/system/" in dest:
                notify = t.get("notify") or []
                pending.append((t["name"], set([notify] if isinstance(notify, str) else notify)))
            elif module == "ansible.builtin.meta" and t[module] == "flush_handlers":
                pending = [(n, h) for n, h in pending if not h & reloaders]
            elif module == "ansible.builtin.systemd_service":
                if args.get("daemon_reload") not in (None, False) or args.get("daemon_reexec"):
                    pending = []
                elif pending and (args.get("state") in ("started", "restarted", "reloaded") or args.get("enabled")):
                    bad.append(f"roles/{role}: {t['name']} after {[n for n, _h in pending]} without a daemon-reload")
    assert not bad, "\n".join(bad)


def _when(task, **ctx):
    conditions = task["when"] if isinstance(task["when"], list) else [task["when"]]
    return all(JINJA.from_string("{{ " + c + " }}").render(ctx) for c in conditions)


def test_the_backup_timer_is_reloaded_when_needed_enabled_in_check_mode_only_once_it_exists():
    tasks = {t["name"]: t for t in _flow("backup")}
    enable = tasks["Enable the daily backup"]
    loaded = "Id=jincai-backup.service\nLoadState=loaded\nNeedDaemonReload=no\n\n" \
             "Id=jincai-backup.timer\nLoadState=loaded\nNeedDaemonReload=no\n"
    stale = loaded.replace("timer\nLoadState=loaded\nNeedDaemonReload=no", "timer\nLoadState=loaded\nNeedDaemonReload=yes")
    missing = loaded.replace("timer\nLoadState=loaded", "timer\nLoadState=not-found")
    reload_expr = enable["ansible.builtin.systemd_service"]["daemon_reload"]

    def reload(stdout, changed):
        return JINJA.from_string(reload_expr).render(
            _backup_units_state={"stdout": stdout},
            _backup_files={"changed_paths": ["/etc/systemd/system/jincai-backup.timer"] if changed else []})

    assert reload(loaded, False) is False  # a converged host: no reload, changed=0
    assert reload(loaded, True) is True and reload(stale, False) is True and reload(missing, False) is True
    assert _when(enable, ansible_check_mode=True, _backup_units_state={"stdout": missing}) is False
    assert _when(enable, ansible_check_mode=True, _backup_units_state={"stdout": loaded}) is True
    assert _when(enable, ansible_check_mode=False, _backup_units_state={"stdout": missing}) is True
    state = tasks["Read whether systemd has loaded the backup units as they are on disk"]
    assert state["check_mode"] is False and state["changed_when"] is False


def test_the_first_backup_tolerates_an_unreachable_province_and_nothing_else():
    first = {t["name"]: t for t in _flow("backup")}["Take a first backup when none is recorded yet (the nightly timer takes the others)"]

    def failed(rc, stdout):
        return JINJA.from_string("{{ " + first["failed_when"] + " }}").render(_backup_first={"rc": rc, "stdout": stdout})

    assert failed(0, "local backup ...") is False
    assert failed(1, "local backup x\ncopy to 198.18.0.11 FAILED: the province does not hold this backup\n") is False
    assert failed(1, "local backup x\n") is True  # tar or pg_dump failed (set -e): not the province's fault
    assert failed(2, "restore drill: bad database name") is True


# ------------------------------------------------------------------ nothing D-Bus activated

#: Tools that ask a D-Bus-activated systemd service and so start it (the compliance collector's list): a
#: read-only run must call none of them.
DBUS_TOOLS = sorted(DBUS_ACTIVATED)
#: Modules that call one of them: ansible.builtin.hostname on Debian (hostnamectl, even to read the name),
#: ansible.builtin.timezone (timedatectl).
DBUS_MODULES = ("ansible.builtin.hostname", "ansible.builtin.timezone")


def _all_task_files():
    yield from sorted(glob.glob(os.path.join(ROOT, "roles", "*", "tasks", "*.yml")))
    yield from sorted(glob.glob(os.path.join(ROOT, "roles", "*", "handlers", "*.yml")))
    yield from sorted(glob.glob(os.path.join(ROOT, "playbooks", "*.yml")))


def test_no_task_starts_a_dbus_activated_service():
    """jincai compliance runs site.yml in check mode beside the collector and proves the hosts unchanged,
    active services included: ansible.builtin.hostname (use: debian = hostnamectl) started systemd-hostnamed
    on every host. Nothing a role or playbook runs may ask a D-Bus-activated service."""
    bad = []
    for path in _all_task_files():
        for t in _walk(_tasks(path)):
            for play_task in [t] + list(_walk((t.get("tasks") or []) + (t.get("pre_tasks") or [])
                                              + (t.get("post_tasks") or []) + (t.get("handlers") or []))):
                for module in DBUS_MODULES:
                    if module in play_task or module.rpartition(".")[2] in play_task:
                        bad.append(f"{os.path.relpath(path, ROOT)}: {play_task.get('name')}: {module}")
                text = yaml.safe_dump({k: v for k, v in play_task.items()
                                       if k.startswith("ansible.builtin.") or k in ("shell", "command")})
                for tool in DBUS_TOOLS:
                    if re.search(rf"(?<![\w-]){re.escape(tool)}(?![\w-])", text):
                        bad.append(f"{os.path.relpath(path, ROOT)}: {play_task.get('name')}: {tool}")
    assert not bad, "\n".join(bad)
