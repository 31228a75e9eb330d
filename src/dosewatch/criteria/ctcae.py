"""CTCAE lab grading on whole columns.

The thresholds live in ``data/ctcae-<version>.csv``, one row per grade boundary with its source.
Each row reads: grade ``grade`` is met when the value is ``op`` than ``add + mult x REF``, where REF
is nothing (``basis`` abs), the LLN, the ULN or the baseline; ``cutoff`` is the number (abs), the
multiple ("1.5") or an increment in ``unit`` ("+2"). A grade is the highest grade met (a semicolon
in CTCAE means "or"); a value on a cut-off gets the milder grade (relative tolerance 1e-9).

Two readings (``reading``):

- ``literal`` (criteria.md decisions 1-5): numbers alone; rows printed in the unit the value was
  reported in, else the value's unit converted exactly to the term's first printed unit. A missing
  LLN/ULN makes the grade null whenever it could decide the grade; a missing baseline means the
  baseline clauses do not apply.
- ``admiral``: pharmaverse admiral's worst-case rows; the unit must equal one of admiral's unit
  checks ignoring case (no conversion); references missing at grades >= 2 count as not met, while
  grade 0 needs the references of the lowest-grade rules.

Speed: rows are keyed by (term or code, unit) once; each distinct key is compiled to per-grade
thresholds in the reported unit, and one loop (ctcae_kernel.py: numpy, or numba for millions of rows)
grades every row in both directions against its key's few thresholds, so that no Python runs per row.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import numpy as np
import polars as pl

from .. import units
from ..analytes import catalog
from ..errors import UnitError
from ..keys import factorize, readonly
from .ctcae_kernel import grade_rows

CRITERIA = ("ctcae-5.0", "ctcae-4.03", "ctcae-6.0")
READINGS = ("literal", "admiral")
REL_TOL = 1e-9
# Which column a rule compares against: nothing (abs), the normal limit of the term's direction
# (lim), the baseline (base); a condition picks a masked copy of that column:
# lim_n = the ULN where the baseline is not above it (or missing), base_h = the baseline where it is,
# base_l = the baseline where it is below the LLN (v6 creatinine), base_vl = the baseline where the
# value is below the LLN (admiral's v6 fibrinogen); lim_base = the higher of the ULN and the baseline
# (v6 "> Baseline and ULN"). A grade "NA" rule names values the term does not grade (v6 CrCl < 10).
_REF = {("abs", ""): "abs", ("LLN", ""): "lim", ("ULN", ""): "lim", ("BASE", ""): "base",
        ("ULN", "base<=ULN"): "lim_n", ("BASE", "base>ULN"): "base_h", ("BASE", "base<LLN"): "base_l",
        ("BASE", "value<LLN"): "base_vl", ("ULN&BASE", ""): "lim_base"}
NO_GRADE = -1  # the grade of a rule that leaves the value ungraded


@dataclass(frozen=True)
class Rule:
    """One grade boundary: met when value `op` add + mult x reference."""

    grade: int
    basis: str  # abs | LLN | ULN | BASE | ULN&BASE
    op: str  # < <= > >=
    mult: float
    add: float
    unit: str  # unit of `add` (abs cut-offs and increments); "" for pure multiples
    condition: str  # "" | base<=ULN | base>ULN | base<LLN | value<LLN
    reading: str  # literal | admiral | both
    source: str
    text: str


@dataclass(frozen=True)
class Term:
    name: str
    direction: str  # L | H
    codes: tuple[str, ...]  # analyte codes this term grades by default; the first gives the molar mass
    rules: tuple[Rule, ...]


@cache
def load_terms(criteria: str) -> dict[str, Term]:
    """The terms of a CTCAE version, from its CSV."""
    if criteria not in CRITERIA:
        raise ValueError(f"unknown criteria {criteria!r}; expected one of {', '.join(CRITERIA)}")
    text = resources.files("dosewatch.criteria").joinpath(f"data/{criteria}.csv").read_text()
    rows: dict[str, list] = {}
    for r in csv.DictReader(text.splitlines()):
        cutoff = r["cutoff"]
        if r["basis"] == "abs":
            mult, add = 0.0, float(cutoff)
        elif cutoff.startswith("+"):
            mult, add = 1.0, float(cutoff)
        else:
            mult, add = float(cutoff), 0.0
        rule = Rule(NO_GRADE if r["grade"] == "NA" else int(r["grade"]), r["basis"], r["op"], mult, add, r["unit"], r["condition"], r["reading"],
                    r["source"], r["text"])
        rows.setdefault(r["term"], [r["direction"], tuple(r["codes"].split()), []])[2].append(rule)
    return {name: Term(name, d, codes, tuple(rules)) for name, (d, codes, rules) in rows.items()}


@cache
def default_terms(criteria: str) -> dict[tuple[str, str], str]:
    """(analyte code, direction) -> term; the first term listed for a code and direction wins."""
    out: dict[tuple[str, str], str] = {}
    for term in load_terms(criteria).values():
        for code in term.codes:
            out.setdefault((code, term.direction), term.name)
    return out


@dataclass
class Variant:
    """A term compiled for one reported unit: per (grade, reference) the cut-off's multiplier and
    addend, tolerance included and in the reported unit (see _REF for the references)."""

    term: str | None
    reason: str | None = None  # why every row of this variant is ungraded
    slots: dict[tuple[int, str], tuple[float, float]] = field(default_factory=dict)
    max_lim_grade: int = 0  # literal: highest grade that needs the LLN/ULN
    need_lim0: bool = False  # admiral: grade 0 needs the LLN/ULN
    need_base0: bool = False  # admiral: grade 0 needs the baseline
    conditional: bool = False  # has rules that depend on whether the baseline is above the ULN


def _tolerance(op: str) -> float:
    # strict ops move the cut-off towards the severe side, so that a value on it stays milder
    return {">": 1 + REL_TOL, ">=": 1 - REL_TOL, "<": 1 - REL_TOL, "<=": 1 + REL_TOL}[op]


@cache
def compile_variant(criteria: str, reading: str, term_name: str | None, unit: str | None) -> Variant:
    """Compile a term for values reported in ``unit`` (cached: called once per distinct key)."""
    if not term_name:
        return Variant(None, "no term")
    term = load_terms(criteria).get(term_name)
    if term is None:
        return Variant(term_name, f"unknown term {term_name!r} in {criteria}")
    wanted = ("admiral", "both") if reading == "admiral" else ("literal", "both")
    rules = [r for r in term.rules if r.reading in wanted]
    if not rules:
        return Variant(term.name, f"{term.name} is not graded in the {reading} reading")
    printed = list(dict.fromkeys(r.unit for r in rules if r.unit))
    scale = 1.0
    if printed and reading == "admiral":
        match = [u for u in printed if unit is not None and u.lower() == unit.lower()]
        if not match:
            return Variant(term.name, f"unit {unit} not in admiral's unit check ({', '.join(printed)})")
        target = match[0]
    elif printed:
        norm = units.normalize_unit(unit)
        match = [u for u in printed if units.normalize_unit(u) == norm]
        target = match[0] if match else printed[0]
        if not match:
            analyte = catalog().analytes.get(term.codes[0])
            mm, val = (analyte.molar_mass, analyte.valence) if analyte else (None, None)
            try:
                scale, offset = units.linear_conversion(unit or "", target, mm, val)
            except UnitError:
                return Variant(term.name, f"unit {unit} not printed by the criterion and not convertible to {target}")
            if offset:
                return Variant(term.name, f"unit {unit} needs an offset conversion")
    variant = Variant(term.name)
    for r in rules:
        if r.unit and r.unit != target:
            continue
        key = (r.grade, _REF[r.basis, r.condition])
        if key in variant.slots:
            raise ValueError(f"{criteria}: {term.name} has two {key[1]} rules for grade {r.grade}")
        f = _tolerance(r.op)
        variant.slots[key] = (r.mult * f, r.add / scale * f)
    if not variant.slots:
        return variant
    # The LLN/ULN decides the rules on it and whether the baseline is above the ULN; a missing LLN
    # only means a "below LLN" clause does not apply; lim_base rules decide their own missing refs.
    needs_lim = ("lim", "lim_n", "base_h")
    variant.max_lim_grade = max((g for g, ref in variant.slots if ref in needs_lim), default=0)
    lowest = min(g for g, ref in variant.slots if g != NO_GRADE)
    low = [ref for g, ref in variant.slots if g == lowest]
    variant.need_lim0 = any(ref in needs_lim for ref in low)
    variant.need_base0 = "base" in low
    variant.conditional = any(ref in ("lim_n", "base_h") for _, ref in variant.slots)
    return variant


# Where a compiled slot takes its reference (see _REF): index into the kernel's reference switch.
_REF_CODE = {"abs": 0, "lim": 1, "base": 2, "lim_n": 3, "base_h": 4, "base_l": 5, "base_vl": 6, "lim_base": 7}


def _f64(df: pl.DataFrame, name: str) -> np.ndarray:
    if name not in df.columns:
        return np.full(df.height, np.nan)
    return df[name].cast(pl.Float64).fill_null(float("nan")).to_numpy()


def _grade_both(low: list[Variant], high: list[Variant], vid, v, lo, hi, base, reading):
    """Grades and reason codes in both directions: the variants laid out as small arrays (one row of
    slots per direction and variant), then one compiled pass over the rows."""
    n_var = len(low)
    width = max([len(var.slots) for var in low + high] + [1])
    nslots = np.zeros((2, n_var), np.int64)
    s_grade = np.zeros((2, n_var, width), np.int8)
    s_ref = np.zeros((2, n_var, width), np.int8)
    s_mult = np.zeros((2, n_var, width))
    s_add = np.zeros((2, n_var, width))
    has_reason = np.zeros((2, n_var), np.bool_)
    max_lim = np.zeros((2, n_var), np.int8)
    need_lim0 = np.zeros((2, n_var), np.bool_)
    need_base0 = np.zeros((2, n_var), np.bool_)
    for d, variants in enumerate((low, high)):
        for j, var in enumerate(variants):
            has_reason[d, j] = var.reason is not None
            max_lim[d, j], need_lim0[d, j], need_base0[d, j] = var.max_lim_grade, var.need_lim0, var.need_base0
            nslots[d, j] = len(var.slots)
            for k, ((gr, ref), (m, a)) in enumerate(var.slots.items()):
                s_grade[d, j, k], s_ref[d, j, k], s_mult[d, j, k], s_add[d, j, k] = gr, _REF_CODE[ref], m, a
    n = len(v)
    grade, reason = np.zeros((2, n), np.int8), np.zeros((2, n), np.int8)
    v, lo, hi, base = (readonly(a, np.float64) for a in (v, lo, hi, base))
    grade_rows(vid, v, lo, hi, base, reading == "admiral", nslots, s_grade, s_ref, s_mult, s_add,
                has_reason, max_lim, need_lim0, need_base0, grade, reason)
    return grade[0], reason[0], grade[1], reason[1]


def _enum_column(name: str, labels: list[str | None], index: pl.Series) -> pl.Series:
    """A string column from a label per index value (null labels give null), built as an Enum gather."""
    names = sorted({label for label in labels if label})
    values = pl.Series([label if label else None for label in labels], dtype=pl.Enum(names))
    return values.gather(index).alias(name)


def grade_frame(df: pl.DataFrame, criteria: str = "ctcae-5.0", reading: str = "literal") -> pl.DataFrame:
    """Grade lab rows against CTCAE in both directions.

    Input columns: ``code`` (analyte code), ``value``, ``unit`` (as written), ``ref_low``,
    ``ref_high``, ``base`` (same unit as value; may be null); optional ``term_low`` /
    ``term_high`` (when present, the term is read from them and a null or empty term leaves that
    direction ungraded). Returns the input plus ``grade_low``, ``grade_high`` (Int8, null when no
    grade), ``term_low``, ``term_high`` and ``reason_low``, ``reason_high`` (why a grade is null).
    """
    if reading not in READINGS:
        raise ValueError(f"unknown reading {reading!r}; expected one of {', '.join(READINGS)}")
    load_terms(criteria)
    for col in ("code", "value", "unit"):
        if col not in df.columns:
            raise ValueError(f"grade_frame needs a {col!r} column")
    n = df.height
    v = _f64(df, "value")
    lo, hi, base = _f64(df, "ref_low"), _f64(df, "ref_high"), _f64(df, "base")
    given = [c for c in ("term_low", "term_high") if c in df.columns]
    keys = [df["code"].cast(pl.String), df["unit"].cast(pl.String)] + [df[c].cast(pl.String) for c in given]
    vid, reps = factorize(*keys) if n else (np.zeros(0, np.uint32), [])
    defaults = default_terms(criteria)
    variants = {}
    for direction, suffix in (("L", "low"), ("H", "high")):
        term_col = f"term_{suffix}"
        variants[direction] = [
            compile_variant(criteria, reading, (rep[2 + given.index(term_col)] or None) if term_col in given
                            else defaults.get((rep[0], direction)), rep[1])
            for rep in reps
        ]
    graded = _grade_both(variants["L"], variants["H"], vid, v, lo, hi, base, reading)
    new_cols = []
    vid32 = vid.astype(np.uint32, copy=False)
    term_index = pl.Series(vid32)  # shared by both term columns
    for k, (direction, suffix) in enumerate((("L", "low"), ("H", "high"))):
        term_col = f"term_{suffix}"
        grade, reason = graded[2 * k], graded[2 * k + 1]
        variants_d = variants[direction]
        new_cols.append(pl.Series(f"grade_{suffix}", np.ma.masked_array(grade, mask=reason > 0), dtype=pl.Int8))
        if term_col not in given:
            new_cols.append(_enum_column(term_col, [var.term for var in variants_d], term_index))
        fixed = [None, None, "missing value", "no LLN" if direction == "L" else "no ULN", "no baseline", None]
        labels = [var.reason if r == 1 else f"outside the values {var.term} grades" if r == 5 else fixed[r]
                  for var in variants_d for r in range(6)]
        new_cols.append(_enum_column(f"reason_{suffix}", labels, pl.Series(vid32 * np.uint32(6) + reason.view(np.uint8))))
    out = df.with_columns(new_cols)
    order = df.columns + [c for c in ("grade_low", "grade_high", "term_low", "term_high", "reason_low", "reason_high")
                          if c not in df.columns]
    return out.select(order)
