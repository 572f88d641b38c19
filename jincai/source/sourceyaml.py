"""The YAML loader of the source of truth: safe, fast, strict about duplicate keys, and line-aware.

PyYAML (like most YAML parsers) silently keeps the last of two equal keys in a mapping, so a second
``technicians:`` block would replace the first. :class:`Loader` records every duplicate (with both
lines) so :func:`jincai.source.model.load` reports it, and remembers the line of every key and list item
so :mod:`jincai.source.validate` can point at the line of a finding. It is libyaml's parser (CSafeLoader,
about 10x faster than the pure-Python one) with Ansible's ``!vault`` tag accepted.
"""

from __future__ import annotations

import yaml

MERGE_TAG = "tag:yaml.org,2002:merge"


class VaultValue(str):
    """An ``!vault`` inline-encrypted value (kept encrypted; only its presence matters here)."""


class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """Safe loader that accepts ``!vault``, records duplicate keys and the line of every node.

    After loading, ``duplicates`` holds ``(key, line, first_line)`` for each key written twice in one
    mapping (the last value is kept, as YAML parsers do) and ``marks`` maps ``id(container)`` to
    ``(container, line, {key or index: line})`` (lines are 1-based; the container is kept so the id
    stays valid).
    """

    def __init__(self, stream):
        super().__init__(stream)
        self.duplicates = []
        self.marks = {}

    def construct_source_map(self, node):
        """A mapping, checking its own keys for duplicates (merge keys ``<<`` may override)."""
        data = {}
        yield data
        seen, lines = {}, {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != MERGE_TAG:
                line = key_node.start_mark.line + 1
                ident = (key_node.tag, key_node.value)
                if ident in seen:
                    self.duplicates.append((key_node.value, line, seen[ident]))
                else:
                    seen[ident] = line
                lines[key_node.value] = line
        data.update(self.construct_mapping(node))
        self.marks[id(data)] = (data, node.start_mark.line + 1, lines)

    def construct_source_seq(self, node):
        """A sequence, recording the line of each item."""
        data = []
        yield data
        data.extend(self.construct_sequence(node))
        self.marks[id(data)] = (data, node.start_mark.line + 1,
                                {i: item.start_mark.line + 1 for i, item in enumerate(node.value)})


Loader.add_constructor("!vault", lambda loader, node: VaultValue(loader.construct_scalar(node)))
Loader.add_constructor("tag:yaml.org,2002:map", Loader.construct_source_map)
Loader.add_constructor("tag:yaml.org,2002:seq", Loader.construct_source_seq)


def parse(stream):
    """``(data, duplicates, marks)`` of one YAML document (text or open file); raises yaml.YAMLError."""
    loader = Loader(stream)
    try:
        data = loader.get_single_data()
    finally:
        loader.dispose()
    return data, loader.duplicates, loader.marks


def line_of(marks, root, path, fallback=False):
    """The line of the deepest element of ``path`` (keys and list indices) found under ``root``;
    with ``fallback`` the line where ``root`` starts when not even the first step is found."""
    entry = marks.get(id(root))
    if entry is None or entry[0] is not root:
        return None
    line, node = (entry[1] if fallback else None), root
    for step in path:
        entry = marks.get(id(node))
        if entry is None or entry[0] is not node or step not in entry[2]:
            break
        line = entry[2][step]
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            break
    return line
