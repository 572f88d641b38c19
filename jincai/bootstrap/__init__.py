"""``jincai bootstrap CODE``: a new county (or city) site brought onto the WAN in one command.

Owns:

* :mod:`jincai.bootstrap.engine`: the command and its steps (validate, reach, host keys, router,
  servers, verify, the technician's checklist), resumable (``jincai bootstrap CODE``);
* :mod:`jincai.bootstrap.preflight`: the site resolved from the source, reachability, host keys and
  the first login, every failure naming host, address and fix (changes nothing);
* :mod:`jincai.bootstrap.state`: the steps, the per-site state file, the checklist;
* :mod:`jincai.bootstrap.day0`: the in-band day-0 kit (``--day0``: console config, first-boot
  scripts, checklist), written from the source with no host contacted.

May import: :mod:`jincai`, :mod:`jincai.source`, :mod:`jincai.run` (every playbook through it).
The engine runs ``jincai verify`` as a command, not as an import.
"""
