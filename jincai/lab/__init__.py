"""The lab WAN on this machine: Debian 12 hosts under systemd-nspawn, each in its network namespace.

Owns the image (:mod:`~jincai.lab.image`, build-image.sh), the topology planned from the typed model
(:mod:`~jincai.lab.topology`), namespaces, veths and bridges (:mod:`~jincai.lab.net`), bring-up and
tear-down (:mod:`~jincai.lab.lab`), failure injection (:mod:`~jincai.lab.inject`), a blank county for
the bootstrap proofs (:mod:`~jincai.lab.blank`), the province twin (:mod:`~jincai.lab.twin`), the vendor
CLI simulators (:mod:`~jincai.lab.vendorsim`), test passwords (:mod:`~jincai.lab.passwords`) and
``jincai lab ...`` (:mod:`~jincai.lab.cli`). docs/lab.md.

May import: :mod:`jincai`, :mod:`jincai.source`, :mod:`jincai.run`, :mod:`jincai.netconfig`. Only the
commands (:mod:`jincai.cli`, :mod:`jincai.site_run`), the live WAN map (:mod:`jincai.topology`) and the
tests import the lab.
"""
