#!/usr/bin/python
"""Ansible module: many files, directories and symbolic links of one role in one round trip."""

DOCUMENTATION = r"""
---
module: jincai_files
short_description: Ensure a set of directories, files and links in one round trip
description:
  - The target half of the C(jincai_files) action (plugins/action/jincai_files.py), which renders the
    templates on the control node and passes each file's content here. One task and one round trip
    replace a C(file), C(template) and C(copy) task per path (docs/baseline.md, "Fewer, larger tasks").
  - Directories first, then links, then files, each in the order given.
  - A file is rewritten only when its content differs (SHA-256), atomically (a temporary file in the
    same directory, renamed over the old one); with O(files[].validate) the temporary file is checked
    first and a file that fails the check is never installed (the task fails, naming the path and the
    checker's output). Owner, group and mode are corrected in place when only they differ.
  - Supports check mode (reports what would change, changes nothing) and diff mode (the action shows the
    old and the new content of each changed text file).
author: jincai project
options:
  directories:
    description: Directories to create (parents too), each with path, owner, group, mode.
    type: list
    elements: dict
    default: []
  links:
    description: Symbolic links, each with dest (the link) and src (what it points to); replaced when they differ.
    type: list
    elements: dict
    default: []
  files:
    description:
      - Regular files, each with dest, content (text), owner, group, mode and optional validate (a command
        with C(%s) for the candidate file).
    type: list
    elements: dict
    default: []
"""

EXAMPLES = r"""
- name: Render the daemon's configuration and its drop-in directory
  jincai_files:
    directories:
      - {path: /etc/systemd/system/chrony.service.d, owner: root, group: root, mode: "0755"}
    files:
      - {dest: /etc/chrony/chrony.conf, src: chrony.conf.j2, owner: root, group: root, mode: "0644",
         validate: /usr/sbin/chronyd -p -f %s}
"""

RETURN = r"""
paths:
  description: Every path handled, with its kind (directory, link, file) and the attributes asked for.
  type: list
  elements: dict
  returned: always
changed_paths:
  description: The paths that changed (or would change in check mode).
  type: list
  elements: str
  returned: always
before:
  description: In diff mode, the previous content of each changed text file (absent when it did not exist).
  type: dict
  returned: diff mode
"""

import grp
import hashlib
import os
import pwd
import shlex
import stat
import subprocess
import tempfile

from ansible.module_utils.basic import AnsibleModule

DIFF_MAX = 256 * 1024  # bytes: larger or binary previous contents are not shown in a diff


def _ids(module, entry):
    """(uid or -1, gid or -1, mode or None) of an entry; fails naming the path on an unknown name or mode."""
    path = entry.get("dest") or entry.get("path")
    uid = gid = -1
    try:
        if entry.get("owner") is not None:
            uid = pwd.getpwnam(str(entry["owner"])).pw_uid
        if entry.get("group") is not None:
            gid = grp.getgrnam(str(entry["group"])).gr_gid
    except KeyError as exc:
        module.fail_json(msg=f"{path}: unknown owner or group {exc}")
    mode = entry.get("mode")
    if mode is not None:
        try:
            mode = int(str(mode), 8)
        except ValueError:
            module.fail_json(msg=f"{path}: mode {mode!r} is not an octal number such as '0644'")
    return uid, gid, mode


def _attrs_differ(st, uid, gid, mode):
    return ((uid != -1 and st.st_uid != uid) or (gid != -1 and st.st_gid != gid)
            or (mode is not None and stat.S_IMODE(st.st_mode) != mode))


def _set_attrs(path, uid, gid, mode):
    if uid != -1 or gid != -1:
        os.chown(path, uid, gid, follow_symlinks=False)
    if mode is not None:
        os.chmod(path, mode)


def _existing(module, path, is_kind, kind):
    """``os.lstat(path)`` or None when missing; fails naming the path when it is not a ``kind``."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not is_kind(st.st_mode):
        module.fail_json(msg=f"{path}: exists and is not a {kind}")
    return st


def _directory(module, entry, changed):
    path = entry["path"]
    uid, gid, mode = _ids(module, entry)
    st = _existing(module, path, stat.S_ISDIR, "directory")
    if st is not None and not _attrs_differ(st, uid, gid, mode):
        return
    changed.append(path)
    if module.check_mode:
        return
    if st is None:
        os.makedirs(path, exist_ok=True)
    _set_attrs(path, uid, gid, mode)


def _link(module, entry, changed):
    dest, src = entry["dest"], entry["src"]
    if os.path.islink(dest) and os.readlink(dest) == src:
        return
    if os.path.isdir(dest) and not os.path.islink(dest):
        module.fail_json(msg=f"{dest}: is a directory, not replaced by a link to {src}")
    changed.append(dest)
    if module.check_mode:
        return
    tmp = f"{dest}.jincai-{os.getpid()}"
    os.symlink(src, tmp)
    os.replace(tmp, dest)


def _file(module, entry, changed, before):
    dest = entry["dest"]
    data = str(entry.get("content", "")).encode("utf-8")
    uid, gid, mode = _ids(module, entry)
    st = _existing(module, dest, stat.S_ISREG, "regular file")
    same = False
    if st is not None and st.st_size == len(data):
        with open(dest, "rb") as fh:
            same = hashlib.sha256(fh.read()).digest() == hashlib.sha256(data).digest()
    if same:
        if not _attrs_differ(st, uid, gid, mode):
            return
        changed.append(dest)
        if not module.check_mode:
            _set_attrs(dest, uid, gid, mode)
        return
    changed.append(dest)
    if module._diff and st is not None and st.st_size <= DIFF_MAX:
        with open(dest, "rb") as fh:
            old = fh.read()
        try:
            before[dest] = old.decode("utf-8")
        except UnicodeDecodeError:
            before[dest] = None
    elif module._diff:
        before[dest] = None if st is not None else ""
    if module.check_mode:
        return
    directory = os.path.dirname(dest)
    if not os.path.isdir(directory):
        module.fail_json(msg=f"{dest}: the directory {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=".jincai-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        keep_uid = st.st_uid if st is not None and uid == -1 else uid
        keep_gid = st.st_gid if st is not None and gid == -1 else gid
        keep_mode = mode if mode is not None else (stat.S_IMODE(st.st_mode) if st is not None else 0o644)
        _set_attrs(tmp, keep_uid, keep_gid, keep_mode)
        if entry.get("validate"):
            check = entry["validate"]
            if "%s" not in check:
                module.fail_json(msg=f"{dest}: validate must contain %s (the candidate file): {check}")
            argv = [a.replace("%s", tmp) for a in shlex.split(check)]
            res = subprocess.run(argv, capture_output=True, text=True, check=False)
            if res.returncode != 0:
                module.fail_json(msg=f"{dest}: refused by `{check}` (exit {res.returncode}); the file was not "
                                     f"installed: {(res.stderr or res.stdout).strip()[-2000:]}",
                                 changed_paths=changed[:-1])
        os.replace(tmp, dest)
        tmp = None
    finally:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)


def main():
    """Ensure the directories, links and files given; report what changed."""
    module = AnsibleModule(
        argument_spec={
            "directories": {"type": "list", "elements": "dict", "default": []},
            "links": {"type": "list", "elements": "dict", "default": []},
            "files": {"type": "list", "elements": "dict", "default": []},
        },
        supports_check_mode=True,
    )
    changed, before, paths = [], {}, []
    for entry in module.params["directories"]:
        if not str(entry.get("path", "")).startswith("/"):
            module.fail_json(msg=f"directories: {entry.get('path')!r} is not an absolute path")
        _directory(module, entry, changed)
        paths.append({"path": entry["path"], "state": "directory",
                      **{k: entry[k] for k in ("owner", "group", "mode") if entry.get(k) is not None}})
    for entry in module.params["links"]:
        if not str(entry.get("dest", "")).startswith("/") or not entry.get("src"):
            module.fail_json(msg=f"links: {entry.get('dest')!r} needs an absolute dest and a src")
        _link(module, entry, changed)
        paths.append({"path": entry["dest"], "state": "link", "src": entry["src"]})
    for entry in module.params["files"]:
        if not str(entry.get("dest", "")).startswith("/"):
            module.fail_json(msg=f"files: {entry.get('dest')!r} is not an absolute path")
        _file(module, entry, changed, before)
        paths.append({"path": entry["dest"], "state": "file",
                      **{k: entry[k] for k in ("owner", "group", "mode") if entry.get(k) is not None}})
    result = {"changed": bool(changed), "changed_paths": changed, "paths": paths}
    if module._diff:
        result["before"] = before
    module.exit_json(**result)


if __name__ == "__main__":
    main()
