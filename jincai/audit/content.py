"""A task result's content as ARA records it, computed in one pass where the result is plain data.

ARA's callback (``ara_default.CallbackModule._load_result``, ara 1.8.0) turns every result into the
record's ``content`` with ``json.loads(json.dumps(strip_internal_keys(module_response_deepcopy(r)),
cls=AnsibleJSONEncoder, sort_keys=True))``: two copies of the result, Ansible's legacy JSON visitor over
every value (ansible-core 2.19 ``_internal._json``), a JSON text and its parse. On a converged
``site.yml`` that was ~9.5 ms of the strategy process per result, most of ARA's cost (docs/audit.md
"Cost"), and the journal then serialized the content a second time.

:func:`plain_content` gives the same value in one pass when the result holds only plain JSON data
(``dict`` with ``str`` keys, ``list``, ``str``, ``int``, ``float``, ``bool``, ``None``, of exactly
those types): internal keys (``_ansible_*``) dropped at every level, as ``strip_internal_keys`` does,
and every mapping's keys in sorted order, as the JSON round trip with ``sort_keys`` leaves them. For
plain data the round trip is the identity on everything else, so the two are equal value for value
and key order for key order (tests/unit/test_audit_content.py compares them on real results and on
generated ones). Anything else (a tagged or vaulted value, a tuple, a set, a non-string key, a subclass)
returns ``None`` and the caller takes ARA's own path for that result: what is recorded never depends
on this shortcut, only the time it takes.
"""

_SCALARS = frozenset((str, int, float, bool, type(None)))
_INTERNAL = "_ansible_"


class _NotPlain(Exception):
    """A value this pass does not claim to convert exactly as ARA's round trip does."""


def plain_content(result):
    """ARA's ``content`` of ``result`` (a task result's ``_result`` dict), or ``None`` if the result is
    not plain data (then ARA's own conversion must be used)."""
    if type(result) is not dict:  # noqa: E721 - exact type: subclasses may be tagged values
        return None
    try:
        return _copy_dict(result)
    except _NotPlain:
        return None


def _copy_dict(value):
    for key in value:
        if type(key) is not str:  # noqa: E721 - JSON would turn other keys into strings
            raise _NotPlain
    return {key: _copy(value[key]) for key in sorted(value) if not key.startswith(_INTERNAL)}


def _copy(value):
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict:
        return _copy_dict(value)
    if kind is list:
        return [_copy(item) for item in value]
    raise _NotPlain
