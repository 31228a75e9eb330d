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
thresholds in the reported unit, and rows are graded by gathering those thresholds and comparing
whole numpy columns, chunk by chunk, so that no Python runs per row.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import numpy as np
import polars as pl

from .. import units
from ..analytes import catalog
from ..errors import UnitError

CRITERIA = ("ctcae-5.0", "ctcae-4.03")
READINGS = ("literal", "admiral")
REL_TOL = 1e-9
_CHUNK = 1 << 17  # rows per evaluation chunk: keeps the temporaries in cache
# Where a rule's reference comes from: the normal limit of the term's direction, or the baseline.
# Which column a rule compares against: nothing (abs), the normal limit of the term's direction
# (lim), the baseline (base); a baseline condition picks a masked copy of that column:
# lim_n = the ULN where the baseline is not above it (or missing), base_h = the baseline where it is.
_REF = {("abs", ""): "abs", ("LLN", ""): "lim", ("ULN", ""): "lim", ("BASE", ""): "base",
        ("ULN", "base<=ULN"): "lim_n", ("BASE", "base>ULN"): "base_h"}


@dataclass(frozen=True)
class Rule:
    """One grade boundary: met when value `op` add + mult x reference."""

    grade: int
    basis: str  # abs | LLN | ULN | BASE
    op: str  # < <= > >=
    mult: float
    add: float
    unit: str  # unit of `add` (abs cut-offs and increments); "" for pure multiples
    condition: str  # "" | base<=ULN | base>ULN
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
        rule = Rule(int(r["grade"]), r["basis"], r["op"], mult, add, r["unit"], r["condition"], r["reading"],
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
    # every ref but a plain baseline needs the LLN/ULN (a baseline condition compares with the ULN)
    variant.max_lim_grade = max((g for g, ref in variant.slots if ref != "abs" and ref != "base"), default=0)
    lowest = min(g for g, _ in variant.slots)
    low = [ref for g, ref in variant.slots if g == lowest]
    variant.need_lim0 = any(ref not in ("abs", "base") for ref in low)
    variant.need_base0 = "base" in low
    variant.conditional = any(ref in ("lim_n", "base_h") for _, ref in variant.slots)
    return variant


def _factorize(*columns: pl.Series) -> tuple[np.ndarray, list[tuple]]:
    """Small integer ids (intp) for the distinct combinations of the columns, and the values of
    each combination. Strings are hashed once (polars), combined in numpy, and mapped to ids
    through a small collision-free multiplicative hash table: a few passes over the columns."""
    key = np.zeros(len(columns[0]), dtype=np.uint64)
    for col in columns:
        key = key * np.uint64(0x9E3779B97F4A7C15) + col.hash(seed=7).to_numpy()
    # one row index per distinct key (a hash pass over integers only), then read that row's values
    first = pl.DataFrame({"k": key}).with_row_index("i").unique(subset="k", keep="any")
    uniq = first["k"].to_numpy()
    reps = [tuple(col[i] for col in columns) for i in first["i"].to_list()]
    bits = max(4, math.ceil(math.log2(len(uniq) + 1)) + 2)
    rng = np.random.default_rng(0)
    for attempt in range(1000):  # a multiplier that spreads the few distinct keys without collision
        mult = rng.integers(1, 2**63, dtype=np.uint64) | np.uint64(1)
        buckets = (uniq * mult) >> np.uint64(64 - bits)
        if len(np.unique(buckets)) == len(uniq):
            break
        bits += attempt % 20 == 19
    table = np.zeros(1 << bits, dtype=np.intp)
    table[buckets.astype(np.intp)] = np.arange(len(uniq))
    return table[((key * mult) >> np.uint64(64 - bits)).astype(np.intp)], reps


def _f64(df: pl.DataFrame, name: str) -> np.ndarray:
    if name not in df.columns:
        return np.full(df.height, np.nan)
    return df[name].cast(pl.Float64).fill_null(float("nan")).to_numpy()


def _grade_block(direction, variants, bounds, x, lim, base, uln, reading, grade, reason):
    """Grade one block of rows sorted by variant (variant j owns rows bounds[j]:bounds[j+1]): each
    variant compares its values with its own few cut-offs. Writes grade (int8) and a reason code:
    0 graded, 1 the variant's reason, 2 missing value, 3 no LLN/ULN, 4 no baseline."""
    cmp = np.greater if direction == "H" else np.less
    for j in np.flatnonzero(bounds[1:] > bounds[:-1]):
        var = variants[j]
        sl = slice(int(bounds[j]), int(bounds[j + 1]))
        if var.reason is not None:
            reason[sl] = 1
            continue
        xs, g, r = x[sl], grade[sl], reason[sl]
        refs = {"lim": lim[sl], "base": base[sl]}
        if var.conditional:
            high = refs["base"] > uln[sl]
            refs["lim_n"] = np.where(high, np.nan, uln[sl])
            refs["base_h"] = np.where(high, refs["base"], np.nan)
        for (gr, ref), (m, a) in var.slots.items():
            if ref == "abs":
                t = a
            else:
                t = m * refs[ref]
                if a:
                    t += a
            np.maximum(g, cmp(xs, t).view(np.int8) * np.int8(gr), out=g)
        nan_lim = np.isnan(refs["lim"])
        if reading == "admiral":
            zero = g == 0
            if var.need_base0:
                r[zero & np.isnan(refs["base"])] = 4
            if var.need_lim0:
                r[zero & nan_lim] = 3
        elif var.max_lim_grade:
            r[nan_lim & (g < var.max_lim_grade)] = 3
        r[np.isnan(xs)] = 2


def _grade_both(low, high, vid, v, lo, hi, base, reading):
    """Grades and reason codes in both directions. Rows are taken in cache-sized chunks, and
    within a chunk sorted by variant, so that each variant works on a contiguous block."""
    n = len(v)
    out = [np.zeros(n, dtype=np.int8) for _ in range(4)]  # grade_low, reason_low, grade_high, reason_high
    small = vid.astype(np.uint16) if len(low) < 1 << 16 else vid
    for s in range(0, n, _CHUNK):
        sl = slice(s, min(n, s + _CHUNK))
        order = np.argsort(small[sl], kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(vid[sl], minlength=len(low)))])
        x, lo_s, hi_s, base_s = v[sl][order], lo[sl][order], hi[sl][order], base[sl][order]
        for k, (direction, variants, lim) in enumerate((("L", low, lo_s), ("H", high, hi_s))):
            g, r = np.zeros(len(x), np.int8), np.zeros(len(x), np.int8)
            _grade_block(direction, variants, bounds, x, lim, base_s, hi_s, reading, g, r)
            out[2 * k][sl][order] = g
            out[2 * k + 1][sl][order] = r
    return out


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
    vid, reps = _factorize(*keys) if n else (np.zeros(0, np.intp), [])
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
    vid32 = vid.astype(np.uint32)
    term_index = pl.Series(vid32)  # shared by both term columns
    for k, (direction, suffix) in enumerate((("L", "low"), ("H", "high"))):
        term_col = f"term_{suffix}"
        grade, reason = graded[2 * k], graded[2 * k + 1]
        variants_d = variants[direction]
        new_cols.append(pl.Series(f"grade_{suffix}", np.ma.masked_array(grade, mask=reason > 0), dtype=pl.Int8))
        if term_col not in given:
            new_cols.append(_enum_column(term_col, [var.term for var in variants_d], term_index))
        fixed = [None, None, "missing value", "no LLN" if direction == "L" else "no ULN", "no baseline"]
        labels = [var.reason if r == 1 else fixed[r] for var in variants_d for r in range(5)]
        new_cols.append(_enum_column(f"reason_{suffix}", labels, pl.Series(vid32 * np.uint32(5) + reason.view(np.uint8))))
    out = df.with_columns(new_cols)
    order = df.columns + [c for c in ("grade_low", "grade_high", "term_low", "term_high", "reason_low", "reason_high")
                          if c not in df.columns]
    return out.select(order)
