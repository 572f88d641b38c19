"""Action plugin ``jincai_files``: render a role's templates on the control node, then ensure every
directory, link and file of the task on the host in one module call (library/jincai_files.py).

A converged host costs one round trip for the whole set, where one ``template`` task per file costs a
task (and its per-host scheduling on the control node) and a stat per file. Each ``files`` entry takes
``src`` (a template, looked up like ``ansible.builtin.template``'s: the role's ``templates/`` first, then
the play's) or ``content`` (a string), plus ``dest``, ``owner``, ``group``, ``mode`` and ``validate``.

The result names every path (``paths``) and what changed (``changed_paths``, for ``when:`` on a later
task); its ``diff`` is one entry per changed file (``--diff``). The module's own invocation, which would
carry every file's content into the output and the audit trail, is replaced by the list of paths.
"""

from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.plugins.action import ActionBase
from ansible.template import trust_as_template
from ansible._internal._templating import _template_vars  # what ansible.builtin.template itself uses (2.19)

FILE_KEYS = frozenset({"dest", "src", "content", "owner", "group", "mode", "validate"})
DIR_KEYS = frozenset({"path", "owner", "group", "mode"})
LINK_KEYS = frozenset({"dest", "src"})
#: ansible.builtin.template's defaults, so a file renders byte for byte as that module renders it.
TEMPLATE_OVERRIDES = {"trim_blocks": True, "lstrip_blocks": False, "newline_sequence": "\n"}


def _octal(mode):
    """A mode as the module reads it (an octal string): YAML 1.1 reads an unquoted 0644 as the integer
    420, which ansible.builtin.file and template take as that mode, and so does this."""
    return f"{mode:04o}" if isinstance(mode, int) and not isinstance(mode, bool) else str(mode)


class ActionModule(ActionBase):
    """Render the files on the control node; one jincai_files module call on the host."""

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset({"files", "directories", "links", "owner", "group", "mode", "directory_mode"})

    @staticmethod
    def _entries(args, key, allowed):
        """The task's ``key`` entries, checked; directories may be bare paths. The task-level owner, group
        and mode (``directory_mode`` for directories) fill what an entry does not set."""
        entries = args.get(key) or []
        if not isinstance(entries, list):
            raise AnsibleActionFail(f"{key} must be a list")
        defaults = {k: args[k] for k in ("owner", "group") if args.get(k) is not None}
        mode = args.get("directory_mode" if key == "directories" else "mode")
        if mode is not None and key != "links":
            defaults["mode"] = _octal(mode)
        out = []
        for entry in entries:
            if key == "directories" and isinstance(entry, str):
                entry = {"path": entry}
            if not isinstance(entry, dict):
                raise AnsibleActionFail(f"{key}: every entry must be a mapping, got {entry!r}")
            unknown = set(entry) - allowed
            if unknown:
                raise AnsibleActionFail(f"{key}: {entry.get('dest') or entry.get('path')}: unknown keys {sorted(unknown)}")
            if entry.get("mode") is not None:
                entry = {**entry, "mode": _octal(entry["mode"])}
            out.append(entry if key == "links" else {**defaults, **entry})
        return out

    def _render(self, src, dest, task_vars):
        """The text of template ``src`` (searched like the template action's) with the task's variables."""
        try:
            source = self._find_needle("templates", src)
        except AnsibleError as exc:
            raise AnsibleActionFail(f"{dest}: template {src}: {exc}") from exc
        data = trust_as_template(self._loader.get_text_file_contents(source))
        searchpath = list(task_vars.get("ansible_search_path", []))
        searchpath.extend([self._loader._basedir, source.rsplit("/", 1)[0]])
        paths = []
        for p in searchpath:
            paths.extend([p + "/templates", p])
        temp_vars = task_vars.copy()
        temp_vars.update(_template_vars.generate_ansible_template_vars(path=src, fullpath=source, dest_path=dest,
                                                        include_ansible_managed="ansible_managed" not in temp_vars))
        templar = self._templar.copy_with_new_env(searchpath=paths, available_variables=temp_vars)
        text = templar.template(data, escape_backslashes=False, overrides=TEMPLATE_OVERRIDES)
        return "" if text is None else str(text)

    def run(self, tmp=None, task_vars=None):
        """Validate the arguments, render, call the module once, shape the result."""
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        del tmp
        args = self._task.args
        files = []
        for entry in self._entries(args, "files", FILE_KEYS):
            if ("src" in entry) == ("content" in entry):
                raise AnsibleActionFail(f"files: {entry.get('dest')}: give exactly one of src and content")
            out = {k: v for k, v in entry.items() if k != "src"}
            if "src" in entry:
                out["content"] = self._render(str(entry["src"]), entry.get("dest"), task_vars)
            else:
                out["content"] = str(entry["content"])
            files.append(out)
        module_args = {"files": files,
                       "directories": self._entries(args, "directories", DIR_KEYS),
                       "links": self._entries(args, "links", LINK_KEYS)}
        res = self._execute_module(module_name="jincai_files", module_args=module_args, task_vars=task_vars)
        res["invocation"] = {"module_args": {
            "files": [{k: v for k, v in f.items() if k != "content"} for f in files],
            "directories": module_args["directories"], "links": module_args["links"]}}
        before = res.pop("before", None)
        if self._task.diff and before is not None and not res.get("failed"):
            after = {f["dest"]: f["content"] for f in files}
            diffs = []
            for path in res.get("changed_paths") or []:
                if path not in before:
                    diffs.append({"before_header": path, "after_header": path,
                                  "prepared": f"{path}: created, relinked, or owner, group or mode changed\n"})
                elif before[path] is None:
                    diffs.append({"before_header": path, "after_header": path,
                                  "prepared": f"{path}: previous content not shown (binary or large)\n"})
                else:
                    diffs.append({"before_header": path, "after_header": path,
                                  "before": before.get(path, ""), "after": after[path]})
            if diffs:
                res["diff"] = diffs
        result.update(res)
        return result
