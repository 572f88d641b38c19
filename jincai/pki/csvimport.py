"""Budget units from a CSV file: ``code,name[,concentrator[,site[,kind]]]``, every error at once.

What ``jincai pki add --csv``, ``import --csv`` and ``revoke --csv`` read (:func:`read_csv`); a bad
file changes nothing.
"""

import csv

from jincai.pki import PkiError
from jincai.pki.registry import CODE_RE
from jincai.source.model import VPN_KINDS

CSV_COLUMNS = ("code", "name", "concentrator", "site", "kind")


def read_csv(path):
    """Read unit rows: ``code,name[,concentrator[,site[,kind]]]`` (a header naming the columns, in any order,
    is optional). ``concentrator`` is a host name or site code, ``site`` the unit's own site (a county
    for a county's unit; its concentrator is then derived), ``kind`` ``budget_unit`` (the default) or
    ``township`` (a township finance office of the county in ``site``). Every error names file, line
    and field.
    Rows are dicts with ``code``, ``name``, ``line`` and the optional columns given."""
    rows, errors, seen = [], [], set()
    try:
        fh = open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115
    except OSError as exc:
        raise PkiError(f"{path}: {exc.strerror}") from exc
    columns = CSV_COLUMNS
    with fh:
        for lineno, row in enumerate(csv.reader(fh), 1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            cells = [c.strip() for c in row]
            if not rows and not errors and cells[0].lower() == "code" and lineno == 1:
                columns = tuple(c.lower() for c in cells)
                bad = [c for c in columns if c not in CSV_COLUMNS]
                if bad or "name" not in columns or len(set(columns)) != len(columns):
                    raise PkiError(f"{path}: line 1: header: {', '.join(columns)} (fix: the columns are "
                                   f"{', '.join(CSV_COLUMNS)}; code and name are required, each once)")
                continue
            if len(cells) > len(columns):
                errors.append(f"{path}: line {lineno}: {len(cells)} fields, the columns are {', '.join(columns)} "
                              "(fix: remove the extra fields)")
                continue
            r = dict(zip(columns, cells))
            code, name = r.get("code", ""), r.get("name", "")
            if not CODE_RE.match(code):
                errors.append(f"{path}: line {lineno}: code: {code!r} is not a valid unit code "
                              "(fix: letters, digits and '-', at most 63)")
            elif code in seen:
                errors.append(f"{path}: line {lineno}: code: {code} is listed twice (fix: one line per unit)")
            if not name:
                errors.append(f"{path}: line {lineno}: name: missing (fix: the unit's name as 2nd column)")
            if r.get("kind") and r["kind"] not in VPN_KINDS:
                errors.append(f"{path}: line {lineno}: kind: {r['kind']!r} is not a kind of VPN client "
                              f"(fix: {' or '.join(VPN_KINDS)})")
            seen.add(code)
            rows.append(dict({k: v for k, v in r.items() if v}, code=code, name=name, line=lineno))
    if errors:
        raise PkiError("\n".join(errors))
    return rows
