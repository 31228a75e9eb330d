"""Read a cohort table: CSV with a header ``dose,dlt`` and, for TITE designs, ``followup`` (days of
follow-up so far). Rows are patients in the order they were treated; row numbers in messages count
data rows from 1 (the header is not a row). Every problem is reported, not only the first. A file with only
the header is a trial with no patients yet."""
from __future__ import annotations

import csv
import math
from pathlib import Path

from ..errors import InputError, Problem
from .base import Outcomes

REQUIRED = ("dose", "dlt")
_TRUE = {"1", "yes", "y", "true", "t"}
_FALSE = {"0", "no", "n", "false", "f"}


def read_cohort(path: str | Path, *, n_levels: int | None = None, need_followup: bool = False) -> Outcomes:
    """Outcomes from a cohort CSV; raises :class:`~dosewatch.errors.InputError` naming file, row and
    column for each bad value."""
    path = Path(path)
    name = path.name
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError([Problem(name, "-", f"cannot read the file: {exc}")]) from exc
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise InputError([Problem(name, "header", "the file is empty; expected a header dose,dlt[,followup]")])
    header = [h.strip().lower() for h in rows[0]]
    problems: list[Problem] = []
    wanted = REQUIRED + (("followup",) if need_followup else ())
    for col in wanted:
        if col not in header:
            problems.append(Problem(f"{name} header", col, f"missing column {col!r} (header is {','.join(header)})"))
    for col in set(header):
        if header.count(col) > 1:
            problems.append(Problem(f"{name} header", col, "column appears more than once"))
    if problems:
        raise InputError(problems)
    has_fu = "followup" in header
    col = {c: header.index(c) for c in header}
    dose: list[int] = []
    dlt: list[int] = []
    followup: list[float] = []
    for k, raw in enumerate(rows[1:], start=1):
        if not any(cell.strip() for cell in raw):
            continue  # blank line
        where = f"{name} row {k}"
        if len(raw) != len(header):
            problems.append(Problem(where, "-", f"{len(raw)} values for {len(header)} columns"))
            continue
        value = raw[col["dose"]].strip()
        try:
            level = int(value)
            if level < 1 or (n_levels is not None and level > n_levels):
                raise ValueError
            dose.append(level)
        except ValueError:
            top = f"1..{n_levels}" if n_levels is not None else "an integer >= 1"
            problems.append(Problem(where, "dose", f"{value!r} is not a dose level ({top})"))
        value = raw[col["dlt"]].strip().lower()
        if value in _TRUE:
            dlt.append(1)
        elif value in _FALSE:
            dlt.append(0)
        else:
            problems.append(Problem(where, "dlt", f"{raw[col['dlt']]!r} is not 0 or 1"))
        if has_fu:
            value = raw[col["followup"]].strip()
            try:
                days = float(value)
                if not math.isfinite(days) or days < 0:
                    raise ValueError
                followup.append(days)
            except ValueError:
                problems.append(Problem(where, "followup", f"{value!r} is not a number of days >= 0"))
    if problems:
        raise InputError(problems)
    return Outcomes.from_lists(dose, dlt, followup if has_fu else None)
