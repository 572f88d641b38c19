"""The network source of truth: ``inventories/<name>/source/`` read, checked, allocated, served.

Owns:

* :mod:`jincai.source.model`: the loader and the typed model (``build``: sites, links, parties,
  hosts, concentrators, VPN clients) whose serialisation is the host vars (``derive``);
* :mod:`jincai.source.schema` (the declarative schema of the source), :mod:`jincai.source.sourceyaml`
  (the strict, line-aware YAML loader), :mod:`jincai.source.sshkeys` (the OpenSSH key check sshd
  makes) and :mod:`jincai.source.validate` (every finding at once, ``jincai validate``);
* :mod:`jincai.source.allocate`: the next free blocks, links and addresses of a new site;
* :mod:`jincai.source.inventory`: the Ansible inventory (groups and host vars) built from the
  checked model, what plugins/inventory/jincai.py serves (``jincai inventory``).

Nothing here contacts a host or writes outside the source files (``jincai site add --write``).

May import: :mod:`jincai` (ROOT, DATA_DIR), :mod:`jincai.paths`, :mod:`jincai.policy`. Everything
else builds on it (docs/architecture.md, "Packages and import direction").
"""
