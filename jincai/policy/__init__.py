"""What every managed endpoint must look like, defined once for the roles and for the checkers.

Owns:

* :mod:`jincai.policy.tls`: the TLS policy (jincai/data/tls.yml), served to every host as
  ``jincai_tls`` and judged by compliance and the lab tests;
* :mod:`jincai.policy.intended`: a host's intended services, boot units and listeners from the
  control catalogue, the roles' defaults and its host vars (shared by ``jincai compliance`` and
  ``jincai verify``).

Pure functions over files of this checkout: nothing here contacts a host.

May import: :mod:`jincai` (ROOT, DATA_DIR) only; the source of truth, compliance and verify build on it.
"""
