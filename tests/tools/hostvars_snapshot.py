"""Snapshot what the source of truth produces, to prove a refactor changes nothing (issue #21).

``python tests/tools/hostvars_snapshot.py DIR`` writes, for the Jilin inventory, the lab inventory and
the province twin (``jincai.lab.twin.translate``: offline, nothing boots):

* ``<name>.inventory.json``: ``ansible-inventory -i <inv> --list`` (every host's variables as Ansible
  sees them, group_vars included, vault values left encrypted);
* ``<name>.model.json``: :func:`jincai.source.inventory.build` (the plugin's own output);
* ``<name>.topology.json``: the lab topology plan of that inventory (``jincai.lab.topology``).

``--compare OLD NEW`` prints the files that differ (and the first differing host and key); exit 1 if any.
``--ignore VAR`` (repeatable) drops a host variable from both sides first: an intended difference, which
the commit that makes it must list; the rest must stay byte-identical once re-serialised. ``VAR`` may be
a dotted path into a host variable (``jincai_vpn.township_served``). ``--ignore-host NAME`` (repeatable)
drops an added host everywhere: its host vars, its topology entry, and its name from every list
(groups, ``jincai_vpn.clients``, segment members); groups left empty go too. ``--ignore-group NAME``
drops an added group the same way (its entry and its name in ``all.children``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from jincai.lab import topology, twin  # noqa: E402
from jincai.source import inventory  # noqa: E402


def _plain(obj):
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        items = [_plain(v) for v in obj]
        return sorted(items, key=repr) if isinstance(obj, set) else items
    return obj if isinstance(obj, (str, int, float, bool, type(None))) else repr(obj)


def ansible_list(inv):
    """``ansible-inventory --list`` of ``inv``, and the seconds it took."""
    env = dict(os.environ, ANSIBLE_VAULT_IDENTITY_LIST=f"lab@{ROOT}/inventories/lab/vault-pass.sh")
    exe = os.path.join(os.path.dirname(sys.executable), "ansible-inventory")
    start = time.monotonic()
    out = subprocess.run([exe, "-i", inv, "--list"], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout
    return out, time.monotonic() - start


def snapshot(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        twin_dir = os.path.join(tmp, "twin")
        twin.translate(os.path.join(ROOT, "inventories", "jilin"), twin_dir)
        invs = {"jilin": os.path.join(ROOT, "inventories", "jilin"),
                "lab": os.path.join(ROOT, "inventories", "lab"), "twin": twin_dir}
        for name, inv in invs.items():
            text, secs = ansible_list(inv)
            if name == "twin":
                text = text.replace(twin_dir, "<TWIN>")
            with open(os.path.join(out_dir, f"{name}.inventory.json"), "w", encoding="utf-8") as fh:
                fh.write(text)
            data = json.dumps(inventory.build(inv), indent=1, ensure_ascii=False)
            if name == "twin":
                data = data.replace(twin_dir, "<TWIN>")
            with open(os.path.join(out_dir, f"{name}.model.json"), "w", encoding="utf-8") as fh:
                fh.write(data)
            try:
                plan = topology.plan(topology.load(inv), source=name)
            except Exception as exc:  # noqa: BLE001 - recorded, compared like the rest
                plan = f"error: {exc}"
            with open(os.path.join(out_dir, f"{name}.topology.json"), "w", encoding="utf-8") as fh:
                fh.write(json.dumps(_plain(plan), indent=1, ensure_ascii=False).replace(twin_dir, "<TWIN>"))
            print(f"{name}: ansible-inventory --list {secs:.2f} s")


def _first_diff(a, b, path=""):
    if type(a) is not type(b):
        return f"{path}: {a!r:.120} != {b!r:.120}"
    if isinstance(a, dict):
        if list(a) != list(b):
            return f"{path}: keys {list(a)} != {list(b)}"
        for k in a:
            d = _first_diff(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = _first_diff(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{path}: {a!r:.120} != {b!r:.120}"


def _pop_path(mapping, path):
    """Remove the dotted ``path`` (``jincai_vpn.township_served``) from ``mapping`` if it is there."""
    *parents, last = path.split(".")
    for step in parents:
        mapping = mapping.get(step) if isinstance(mapping, dict) else None
    if isinstance(mapping, dict):
        mapping.pop(last, None)


def strip_hosts(obj, hosts):
    """``obj`` without the hosts named in ``hosts``: keys named so, list items equal to one of them
    or lists whose first item is one (segment members), and groups left without hosts."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k in hosts:
                continue
            v = strip_hosts(v, hosts)
            if isinstance(v, dict) and set(v) == {"hosts"} and v["hosts"] == [] and obj.get(k, {}).get("hosts"):
                continue  # a group that held only dropped hosts
            out[k] = v
        return out
    if isinstance(obj, list):
        return [strip_hosts(v, hosts) for v in obj if not (
            (isinstance(v, str) and v in hosts) or (isinstance(v, list) and v and isinstance(v[0], str) and v[0] in hosts))]
    return obj


def drop(data, ignore=(), hosts=()):
    """Inventory or model JSON data without the host and group variables named in ``ignore`` (dotted
    paths allowed) and without the ``hosts``."""
    data = strip_hosts(data, set(hosts)) if hosts else data
    for hv in list((data.get("_meta") or {}).get("hostvars", {}).values()) + \
            [g.get("vars") or {} for g in data.values() if isinstance(g, dict)]:
        for key in ignore:
            _pop_path(hv, key)
    return data


def _drop(text, ignore, hosts=()):
    """``text`` (inventory JSON) without the variables named in ``ignore`` and the ``hosts``."""
    return json.dumps(drop(json.loads(text), ignore, hosts), indent=1, ensure_ascii=False).encode()


def compare(old, new, ignore=(), hosts=()):
    bad = 0
    for name in sorted(os.listdir(old)):
        with open(os.path.join(old, name), "rb") as fa, open(os.path.join(new, name), "rb") as fb:
            a, b = fa.read(), fb.read()
        if (ignore or hosts) and name.endswith((".inventory.json", ".model.json")):
            a, b = _drop(a, ignore, hosts), _drop(b, ignore, hosts)
        elif hosts and name.endswith(".topology.json") and a != b:
            a, b = (json.dumps(strip_hosts(json.loads(x), set(hosts)), indent=1, ensure_ascii=False).encode()
                    for x in (a, b))
        if a == b:
            print(f"identical  {name} ({len(a)} bytes)")
            continue
        bad += 1
        try:
            where = _first_diff(json.loads(a), json.loads(b))
        except ValueError:
            where = "not JSON"
        print(f"DIFFERENT  {name}: {where}")
    return 1 if bad else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", nargs="?")
    ap.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"))
    ap.add_argument("--ignore", action="append", default=[], metavar="VAR")
    ap.add_argument("--ignore-host", action="append", default=[], metavar="NAME")
    ap.add_argument("--ignore-group", action="append", default=[], metavar="NAME")
    args = ap.parse_args(argv)
    if args.compare:
        return compare(*args.compare, ignore=args.ignore, hosts=args.ignore_host + args.ignore_group)
    snapshot(args.dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
