"""iwCLL 2018 grading of hematologic toxicity (Hallek et al., Blood 2018;131:2745-60, Table 5,
carried from Hallek 2008): platelets and hemoglobin by their fall from the pretreatment value,
neutrophils by absolute count. Thresholds in ``data/iwcll-2018.csv``; bands read as continuous
(criteria.md decision 8); a value on a cut-off gets the milder grade (relative tolerance 1e-9).
"""
from __future__ import annotations

import csv
from functools import cache
from importlib import resources

import numpy as np
import polars as pl

from .. import units
from ..errors import UnitError
from .ctcae import REL_TOL

_TOL = {">": 1 + REL_TOL, ">=": 1 - REL_TOL, "<": 1 - REL_TOL, "<=": 1 + REL_TOL}
_CMP = {">": np.greater, ">=": np.greater, "<": np.less, "<=": np.less}  # tolerance folded into the cut-off


@cache
def load_rules() -> dict[str, list[dict]]:
    """code -> rows of iwcll-2018.csv."""
    text = resources.files("dosewatch.criteria").joinpath("data/iwcll-2018.csv").read_text()
    rules: dict[str, list[dict]] = {}
    for row in csv.DictReader(text.splitlines()):
        rules.setdefault(row["code"], []).append(row)
    return rules


def _met(x: np.ndarray, row: dict) -> np.ndarray:
    return _CMP[row["op"]](x, float(row["cutoff"]) * _TOL[row["op"]])


def grade_iwcll(df: pl.DataFrame) -> pl.DataFrame:
    """Add ``grade_low`` (Int8), ``term_low`` and ``reason_low`` (why a grade is null) to rows with
    ``code``, ``value``, ``unit``, ``ref_low`` and ``base`` (baseline, same unit as value)."""
    n = df.height
    col = lambda c: df[c].cast(pl.Float64).fill_null(np.nan).to_numpy() if c in df.columns else np.full(n, np.nan)  # noqa: E731
    v, lln, base = col("value"), col("ref_low"), col("base")
    code = df["code"].cast(pl.String).to_numpy()
    unit = df["unit"].cast(pl.String).fill_null("").to_numpy()
    grade = np.zeros(n, dtype=np.int8)
    # reasons as small integer codes into `labels` (0 = graded): no per-row Python objects
    labels: list[str | None] = [None]

    def code_of(text: str) -> int:
        if text not in labels:
            labels.append(text)
        return labels.index(text)

    reason = np.zeros(n, dtype=np.int16)
    rules = load_rules()
    reason[~np.isin(code, list(rules))] = code_of("no iwCLL criterion")
    for c, rows in rules.items():
        on_code = code == c
        if not on_code.any():
            continue
        abs_unit = next((r["unit"] for r in rows if r["basis"] in ("abs", "BASE")), None)
        for u in np.unique(unit[on_code]):
            m = on_code & (unit == u)
            why = np.zeros(int(m.sum()), dtype=np.int16)
            scale = 1.0  # falls and LLN checks are unit-free; absolute cut-offs are in abs_unit
            if abs_unit:
                try:
                    scale, _ = units.linear_conversion(u, abs_unit)
                except UnitError:
                    scale = np.nan
                    why[:] = code_of(f"unit {u!r} not convertible to {abs_unit}")
            x, b, lo = v[m], base[m], lln[m]
            fall = (b - x) / b * 100  # percent decrease from the pretreatment value
            g_fall = np.zeros(len(x), dtype=np.int8)
            g_abs = np.zeros(len(x), dtype=np.int8)
            for r in sorted((r for r in rows if r["rule"] == "grade"), key=lambda r: int(r["grade"])):
                on_fall = r["basis"] == "FALL"
                np.copyto(g_fall if on_fall else g_abs, int(r["grade"]), where=_met(fall if on_fall else x * scale, r))
            fresh = why == 0  # a unit problem, once found, stands
            for r in rows:
                if r["rule"] == "requires":  # grades 1-4 by fall need the value below the LLN
                    below = np.less(x, lo * float(r["cutoff"]) * _TOL[r["op"]])
                    why[fresh & np.isnan(lo) & (g_fall > g_abs)] = code_of("no LLN")
                    g_fall[~below] = 0
            g = np.maximum(g_fall, g_abs)
            fall_grades = [int(r["grade"]) for r in rows if r["basis"] == "FALL"]
            if fall_grades:  # without a baseline the fall is unknown: null unless already the worst grade
                why[fresh & np.isnan(b) & (g_abs < max(fall_grades))] = code_of("no baseline")
            for r in rows:
                if r["rule"] == "not_evaluable":
                    why[fresh & _met(b * scale, r)] = code_of(f"not evaluable: baseline {r['op']} {r['cutoff']} {r['unit']}")
            why[fresh & np.isnan(x)] = code_of("missing value")
            reason[m] = why
            grade[m] = g
    null = reason != 0
    terms = {c: rows[0]["term"] for c, rows in rules.items()}
    return df.with_columns(
        pl.Series("grade_low", np.ma.masked_array(grade, mask=null), dtype=pl.Int8),
        df["code"].cast(pl.String).replace_strict(terms, default=None, return_dtype=pl.String).alias("term_low"),
        pl.Series(labels, dtype=pl.String).gather(pl.Series(reason, dtype=pl.UInt32)).alias("reason_low"),
    )
