"""A site's normal ranges, for sources that send none (EHR exports rarely do: Synthea never does).

CTCAE grades many labs against the lower or upper limit of normal (ALT "> ULN - 3.0 x ULN"); without
those limits a value cannot be graded. ``--ranges FILE`` supplies them: a CSV with the header

    code,sex,age_low,age_high,unit,low,high,source

one row per analyte (dosewatch code, as in data/analytes.yaml), optionally per sex (M, F; empty =
any) and age band in years (``age_low`` <= age < ``age_high``; empty = open), the limits in ``unit``
(converted to the analyte's canonical unit), and where the range comes from (the site's laboratory
manual). A limit is filled only where the record has none; each filled row names the range it came
from in ``ref_source``, and every event graded with it says so in its evidence.
"""
from __future__ import annotations

import csv
from pathlib import Path

import polars as pl

from .analytes import catalog
from .errors import InputError, Problem, UnitError
from .record import Cohort

HEADER = ["code", "sex", "age_low", "age_high", "unit", "low", "high", "source"]
_RANGES = {"code": pl.String, "sex": pl.String, "age_low": pl.Float64, "age_high": pl.Float64,
           "r_low": pl.Float64, "r_high": pl.Float64, "r_source": pl.String}


def _number(text: str, where: str, field: str, problems: list[Problem]) -> float | None:
    if not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        problems.append(Problem(where, field, "not a number", kind="value", detail=repr(text)))
        return None
    if value != value or value in (float("inf"), float("-inf")):
        problems.append(Problem(where, field, "not a finite number", kind="value", detail=repr(text)))
        return None
    return value


def load_ranges(path: str | Path) -> pl.DataFrame:
    """The ranges of a site's CSV, limits in canonical units. Raises InputError naming every bad row."""
    path = Path(path)
    name = path.name
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError([Problem(name, "(file)", "cannot read the ranges file", kind="file", detail=str(exc))]) \
            from None
    rows = list(csv.reader(lines))
    if not rows or [h.strip().lower() for h in rows[0]] != HEADER:
        raise InputError([Problem(name, "(header)", f"a ranges file's header is: {','.join(HEADER)}", kind="column")])
    cat, problems, out = catalog(), [], []
    for n, row in enumerate(rows[1:], start=1):
        where = f"{name} row {n}"
        if not any(x.strip() for x in row):
            continue
        if len(row) != len(HEADER):
            problems.append(Problem(where, "(row)", f"{len(row)} fields, the header has {len(HEADER)}", kind="value"))
            continue
        code, sex, age_low, age_high, unit, low, high, source = (x.strip() for x in row)
        if code not in cat:
            problems.append(Problem(where, "code", "not a dosewatch analyte code", kind="value", detail=repr(code)))
            continue
        if sex.upper() not in ("", "M", "F"):
            problems.append(Problem(where, "sex", "sex is M, F or empty (any)", kind="value", detail=repr(sex)))
            continue
        numbers = [_number(x, where, f, problems) for x, f in ((age_low, "age_low"), (age_high, "age_high"),
                                                              (low, "low"), (high, "high"))]
        if len(problems) and problems[-1].source == where:
            continue
        a_low, a_high, r_low, r_high = numbers
        if r_low is None and r_high is None:
            problems.append(Problem(where, "low", "neither a low nor a high limit", kind="value"))
            continue
        if r_low is not None and r_high is not None and r_low > r_high:
            problems.append(Problem(where, "low", "low limit above the high limit", kind="value"))
            continue
        try:
            scale, offset = cat[code].conversion(unit or "1")
        except UnitError as exc:
            problems.append(Problem(where, "unit", f"unit not convertible to {cat[code].unit}", kind="unit",
                                    detail=str(exc)))
            continue
        tag = f"site ranges {name} row {n}" + (f": {source}" if source else "")
        out.append((code, sex.upper() or None, a_low, a_high,
                    None if r_low is None else r_low * scale + offset,
                    None if r_high is None else r_high * scale + offset, tag))
    if problems:
        raise InputError(problems)
    return pl.DataFrame(out, schema=_RANGES, orient="row")


def apply_ranges(cohort: Cohort, ranges: pl.DataFrame) -> Cohort:
    """The cohort with each missing reference limit taken from the first matching range (analyte, sex,
    age at the observation); ``ref_source`` names the range used."""
    if ranges.is_empty() or cohort.observations.is_empty():
        return cohort
    people = cohort.patients.select("patient_id", "sex", "birth_date", "age", "age_date")
    obs = cohort.observations.with_row_index("_i")
    years = (pl.col("date") - pl.col("birth_date")).dt.total_days() / 365.25
    stated = pl.col("age") + ((pl.col("date") - pl.col("age_date")).dt.total_days() / 365.25).fill_null(0.0)
    candidates = (obs.filter(pl.col("ref_low").is_null() | pl.col("ref_high").is_null())
                  .select("_i", "patient_id", "code", "date")
                  .join(people, on="patient_id", how="left")
                  .with_columns(pl.coalesce(years, stated).alias("_age"))
                  .join(ranges.with_row_index("_r"), on="code", how="inner")
                  .filter((pl.col("sex_right").is_null() | (pl.col("sex_right") == pl.col("sex")))
                          & (pl.col("age_low").is_null() | (pl.col("_age") >= pl.col("age_low")))
                          & (pl.col("age_high").is_null() | (pl.col("_age") < pl.col("age_high"))))
                  .sort("_i", "_r").unique("_i", keep="first")
                  .select("_i", "r_low", "r_high", "r_source"))
    if candidates.is_empty():
        return cohort
    filled = obs.join(candidates, on="_i", how="left", maintain_order="left")
    use_low = pl.col("ref_low").is_null() & pl.col("r_low").is_not_null()
    use_high = pl.col("ref_high").is_null() & pl.col("r_high").is_not_null()
    filled = filled.with_columns(
        pl.when(use_low).then(pl.col("r_low")).otherwise(pl.col("ref_low")).alias("ref_low"),
        pl.when(use_high).then(pl.col("r_high")).otherwise(pl.col("ref_high")).alias("ref_high"),
        pl.when(use_low | use_high).then(pl.col("r_source")).otherwise(pl.col("ref_source")).alias("ref_source"),
    ).drop("_i", "r_low", "r_high", "r_source")
    return Cohort(cohort.patients, filled, cohort.doses, cohort.events)
