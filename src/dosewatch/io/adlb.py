"""Grade an ADLB-style CSV: the `dosewatch grade` command.

Every input column and row is written back unchanged, in the same order, with the grades added
as ADaM names them: ATOXGRL / ATOXGRH ("0".."4", empty when not graded), the term applied
(ATOXDSCL / ATOXDSCH, added when absent) and the reason a grade is empty (ATOXRSNL / ATOXRSNH).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from ..analytes import catalog
from ..keys import factorize
from ..errors import InputError, Problem, UnitError

# admiral's PARAMCDs that differ from the SDTM LBTESTCD (admiral vignette "Lab Grading")
PARAMCD_TO_CODE = {"POTAS": "K", "CHOLES": "CHOL", "ALKPH": "ALP", "LYMPH": "LYM", "NEUTS": "NEUT",
                   "PLATE": "PLAT", "HGBN": "HGB", "CAIONI": "CAION"}
NUMERIC = ("AVAL", "ANRLO", "ANRHI", "BASE")
# ADaM's analysis range (A1LO / A1HI) stands in for the normal range where ANRLO / ANRHI is absent or empty.
ALTERNATIVE = {"ANRLO": "A1LO", "ANRHI": "A1HI"}


@dataclass
class GradeReport:
    rows: int
    problems: list[Problem] = field(default_factory=list)


def _require(columns: list[str], name: str) -> list[Problem]:
    need = [("USUBJID",), ("PARAMCD", "LBTESTCD"), ("AVAL",), ("AVALU", "PARAM"), ("ANRLO", "A1LO"), ("ANRHI", "A1HI"),
            ("ADT", "ADY")]
    return [Problem(name, " or ".join(alts), "required column missing") for alts in need
            if not any(a in columns for a in alts)]


def _blank(expr: pl.Expr) -> pl.Expr:
    return expr.is_null() | (expr.str.strip_chars() == "")


def read_lab_rows(raw: pl.DataFrame | pl.LazyFrame, name: str) -> tuple[pl.DataFrame, list[tuple[int, Problem]]]:
    """The grading input (code, value, unit, ref_low, ref_high, base, term_low/high) of an ADLB
    frame read as text, and the problems of its rows as (0-based row, problem), in row order.
    A LazyFrame (a CSV scan) is read in one streaming pass: the text columns are never held whole."""
    cols = raw.collect_schema().names()
    code = pl.lit(None, dtype=pl.String)
    if "PARAMCD" in cols:
        code = pl.col("PARAMCD").str.strip_chars().replace(PARAMCD_TO_CODE)
    if "LBTESTCD" in cols:
        code = pl.when(_blank(pl.col("LBTESTCD"))).then(code).otherwise(pl.col("LBTESTCD").str.strip_chars())
    unit = pl.lit(None, dtype=pl.String)
    if "PARAM" in cols:
        unit = pl.col("PARAM").str.extract(r"\(([^()]*)\)\s*$")
    if "AVALU" in cols:
        unit = pl.when(_blank(pl.col("AVALU"))).then(unit).otherwise(pl.col("AVALU").str.strip_chars())
    def number_text(c: str) -> pl.Expr:
        alt = ALTERNATIVE.get(c)
        own = pl.col(c).str.strip_chars() if c in cols else None
        other = pl.col(alt).str.strip_chars() if alt in cols else None
        if own is not None and other is not None:
            return pl.when(_blank(own)).then(other).otherwise(own)
        return own if own is not None else other if other is not None else pl.lit(None, dtype=pl.String)

    # the field a bad number is reported in, and its text as written (kept only where bad)
    fields = {c: c if c in cols or ALTERNATIVE.get(c) not in cols else ALTERNATIVE[c] for c in NUMERIC}
    # two steps, so each text column is stripped and parsed once
    text = raw.lazy().select(
        code.alias("code"), unit.alias("unit"), *[number_text(c).alias(c) for c in NUMERIC],
        *[pl.col(f).alias(f"raw_{c}") for c, f in fields.items() if f in cols],
        *[pl.col(src).alias(dst) for src, dst in (("ATOXDSCL", "term_low"), ("ATOXDSCH", "term_high")) if src in cols])
    numbers = [pl.col(c).cast(pl.Float64, strict=False).alias(dst) for c, dst in zip(NUMERIC, ("value", "ref_low", "ref_high", "base"))]
    bad = {c: pl.col(dst).is_null() & pl.col(c).is_not_null() & (pl.col(c) != "")
           for c, dst in zip(NUMERIC, ("value", "ref_low", "ref_high", "base"))}
    lab = text.with_columns(numbers).with_columns(
        *[b.alias(f"bad_{c}") for c, b in bad.items()],
        *[pl.when(bad[c]).then(pl.col(f"raw_{c}")).alias(f"raw_{c}") for c, f in fields.items() if f in cols],
    ).drop(NUMERIC).collect(engine="streaming" if isinstance(raw, pl.LazyFrame) else "auto")

    problems: list[tuple[int, Problem]] = []
    for src in NUMERIC:
        rows = np.flatnonzero(lab[f"bad_{src}"].to_numpy())
        problems += [(int(i), Problem(f"{name} data row {i + 1}", fields[src], "not a number", kind="value",
                                      detail=repr(lab[f"raw_{src}"][int(i)]))) for i in rows]
    lab = lab.drop([f"bad_{s}" for s in NUMERIC] + [c for c in lab.columns if c.startswith("raw_")])
    unit_field = "AVALU" if "AVALU" in cols else "PARAM"

    # unit and plausibility: the conversion is looked up once per distinct (code, unit)
    known = catalog().analytes
    ids, reps = factorize(lab["code"], lab["unit"]) if lab.height else (np.zeros(0, np.intp), [])
    conv = []
    for code_, unit_ in reps:
        analyte = known.get(code_)
        try:
            scale, offset = analyte.conversion(unit_) if analyte and unit_ else (np.nan, np.nan)
        except UnitError:
            scale, offset = np.nan, np.nan
        low, high = analyte.plausible if analyte else (-np.inf, np.inf)
        conv.append((scale, offset, low, high, analyte is not None))
    scale, offset, low, high, graded = (np.array(c) for c in zip(*conv)) if conv else [np.zeros(0)] * 5
    value = lab["value"].fill_null(np.nan).to_numpy()
    has_value = ~np.isnan(value)
    for i in np.flatnonzero(has_value & graded.astype(bool)[ids] & np.isnan(scale)[ids]):
        code_, unit_ = reps[ids[i]]
        msg = f"unknown unit {unit_!r} for {code_}" if unit_ else f"no unit for {code_}"
        problems.append((int(i), Problem(f"{name} data row {i + 1}", unit_field, msg)))
    canon = value * scale[ids] + offset[ids]
    for i in np.flatnonzero((canon < low[ids]) | (canon > high[ids])):
        code_, unit_ = reps[ids[i]]
        a = known[code_]
        problems.append((int(i), Problem(f"{name} data row {i + 1}", "AVAL",
                                         f"implausible {code_} {value[i]:g} {unit_} (plausible {a.plausible[0]:g}-{a.plausible[1]:g} {a.unit})")))
    problems.sort(key=lambda p: p[0])
    return lab, problems


# The columns grading reads; the others are only copied to the output.
READ = ("PARAMCD", "LBTESTCD", "PARAM", "AVALU", *NUMERIC, *ALTERNATIVE.values(), "ATOXDSCL", "ATOXDSCH")
ADDED = ("ATOXGRL", "ATOXGRH", "ATOXDSCL", "ATOXDSCH", "ATOXRSNL", "ATOXRSNH")


def grade_file(input: Path, output: Path, criteria: str, reading: str, skip_invalid: bool) -> GradeReport:
    """Grade an ADLB-style CSV and write it back with ATOXGRL/ATOXGRH (see module doc).

    reading "auto" is admiral when the file has ATOXDSCL or ATOXDSCH, else literal. Bad input
    (missing column, non-numeric number, unknown unit, implausible value) fails the whole file
    unless ``skip_invalid``; then those rows are written ungraded with the reason and reported.
    """
    input, output = Path(input), Path(output)
    name = input.name
    if not input.is_file():
        raise InputError([Problem(str(input), "path", "no such file")])
    header = pl.read_csv(input, n_rows=0, infer_schema=False).columns
    missing = _require(header, name)
    if missing:
        raise InputError(missing)
    has_terms = "ATOXDSCL" in header or "ATOXDSCH" in header
    if reading == "auto":
        reading = "admiral" if has_terms else "literal"
    # only the columns grading reads, streamed: a bad number is reported as written, and no column is
    # held whole as text
    lab, indexed = read_lab_rows(pl.scan_csv(input, infer_schema=False).select(c for c in header if c in READ), name)
    rows = lab.height
    problems = [p for _, p in indexed]
    if problems and not skip_invalid:
        raise InputError(problems)

    if criteria == "iwcll-2018":
        from ..criteria.iwcll import grade_iwcll

        graded = grade_iwcll(lab)
        graded = graded.with_columns(pl.lit(None, dtype=pl.Int8).alias("grade_high"),
                                     pl.lit(None, dtype=pl.String).alias("term_high"),
                                     pl.lit("not graded by iwCLL", dtype=pl.String).alias("reason_high"))
    else:
        from ..criteria.ctcae import grade_frame

        graded = grade_frame(lab, criteria=criteria, reading=reading)
    del lab
    if indexed:  # skipped rows: no grade, the first problem as the reason
        why: dict[int, str] = {}
        for i, p in indexed:
            why.setdefault(i, f"invalid input: {p.field}: {p.message}" + (f": {p.detail}" if p.detail else ""))
        idx = np.array(sorted(why))
        reasons = pl.Series([why[i] for i in idx], dtype=pl.String)
        bad = np.zeros(rows, dtype=bool)
        bad[idx] = True
        mask = pl.Series(bad)
        graded = graded.with_columns(pl.when(mask).then(None).otherwise(pl.col(c)).alias(c) for c in ("grade_low", "grade_high"))
        graded = graded.with_columns(graded[c].cast(pl.String).scatter(idx, reasons) for c in ("reason_low", "reason_high"))
    sources = dict(zip(ADDED, ("grade_low", "grade_high", "term_low", "term_high", "reason_low", "reason_high")))
    # the terms applied are added only where the file has none; grade columns already there are replaced
    kept = {"ATOXDSCL", "ATOXDSCH"} & set(header)
    names = [k for k in ADDED if k not in kept]
    added = graded.lazy().select(pl.col(sources[k]).cast(pl.String).alias(k) for k in names)
    del graded
    output.parent.mkdir(parents=True, exist_ok=True)
    if _lines_are_rows(input, rows) and not set(names) & set(header):
        # the added fields of each line as one text (the header line gets the names), then the grading
        # frame is let go before the lines stream through
        extra = pl.concat([pl.LazyFrame({c: [c] for c in names}), added]).select(
            pl.concat_str([_csv_field(c) for c in names], separator=",").alias("extra")).collect()
        del added
        _write_beside_lines(input, output, extra)
    else:
        pl.read_csv(input, infer_schema=False).with_columns(added.collect().get_columns()).write_csv(output)
    return GradeReport(rows=rows, problems=problems if skip_invalid else [])


def _csv_field(col: str) -> pl.Expr:
    """A text column as one CSV field, quoted as polars' write_csv quotes (only when needed); null is empty."""
    text = pl.col(col)
    quoted = pl.lit('"') + text.str.replace_all('"', '""', literal=True) + pl.lit('"')
    return pl.when(text.str.contains(r'[",\r\n]')).then(quoted).otherwise(text).fill_null("").alias(col)


def _lines_are_rows(input: Path, rows: int) -> bool:
    """True when the file's lines are its header and rows one to one: no quoted line break, no CR line
    ends, no blank line (and no unit-separator byte, which the line reader splits on)."""
    lines, last = 0, b"\n"
    with input.open("rb") as fh:
        while chunk := fh.read(1 << 24):
            if b"\r" in chunk or b"\x1f" in chunk or b"\n\n" in chunk or (last == b"\n" and chunk[:1] == b"\n"):
                return False
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (last != b"\n") == rows + 1


def _write_beside_lines(input: Path, output: Path, extra: pl.DataFrame) -> None:
    """Stream every input line byte for byte, followed by a comma and its ``extra`` text
    (``_lines_are_rows`` must hold): no frame of every column as text, which was 5x the file in memory.
    Columns are added at the end (a file that has one of them is rewritten whole by the caller)."""
    scan = pl.scan_csv(input, has_header=False, separator="\x1f", quote_char=None, new_columns=["line"],
                       schema={"line": pl.String})
    pl.concat([scan, extra.lazy()], how="horizontal").select(pl.concat_str(["line", "extra"], separator=",")).sink_csv(
        output, include_header=False, quote_style="never")
