"""CTCAE grading: every boundary of the CSVs, hand-written cases from the CTCAE text, and properties."""
from __future__ import annotations

import math

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dosewatch import units
from dosewatch.analytes import catalog
from dosewatch.criteria.ctcae import CRITERIA, compile_variant, grade_frame, load_terms


def grade(criteria, reading, code, value, unit, lln=None, uln=None, base=None, term_low=None, term_high=None):
    """(grade_low, grade_high, reason_low, reason_high) of one row."""
    data = {"code": [code], "value": [value], "unit": [unit], "ref_low": [lln], "ref_high": [uln], "base": [base]}
    if term_low is not None or term_high is not None:
        data |= {"term_low": [term_low], "term_high": [term_high]}
    schema = {"code": pl.String, "value": pl.Float64, "unit": pl.String, "ref_low": pl.Float64,
              "ref_high": pl.Float64, "base": pl.Float64, "term_low": pl.String, "term_high": pl.String}
    row = grade_frame(pl.DataFrame(data, schema={k: schema[k] for k in data}), criteria, reading).row(0, named=True)
    return row["grade_low"], row["grade_high"], row["reason_low"], row["reason_high"]


# ---------------------------------------------------------------- every CSV boundary, both sides

def _boundary_cases():
    for criteria in CRITERIA:
        for term in load_terms(criteria).values():
            for rule in term.rules:
                if rule.grade < 0:
                    continue  # a no-grade range: tested by hand
                for reading in ("literal", "admiral"):
                    if rule.reading in (reading, "both"):
                        yield pytest.param(criteria, reading, term, rule,
                                           id=f"{criteria}-{reading}-{term.name}-g{rule.grade}-{rule.basis}-{rule.unit or 'x'}")


def _context(term, rule, reading):
    """Unit, LLN, ULN and baseline that isolate ``rule``: no other rule of a higher or equal grade
    fires near its threshold."""
    wanted = ("admiral", "both") if reading == "admiral" else ("literal", "both")
    rules = [r for r in term.rules if r.reading in wanted]
    unit = rule.unit or next((r.unit for r in rules if r.unit), "U/L")
    absolute = [r.add for r in rules if r.basis == "abs" and r.unit in (unit, "")]
    # a multiple of the LLN/ULN is kept clear of the absolute cut-offs (v6 fibrinogen: < 0.25 x LLN, < 0.5 g/L)
    mult = rule.mult if rule.basis in ("LLN", "ULN") and rule.mult else 1.0
    if term.direction == "H":
        uln = min(absolute) * 0.8 / mult if absolute else 40.0
        lln = uln / 2
    else:
        lln = max(absolute) * 1.25 / mult if absolute else 100.0
        uln = lln * 2
    base = None
    if rule.basis == "BASE" and rule.condition == "base>ULN":
        base = uln * 2  # an abnormal baseline switches the ULN rules off
    elif rule.condition == "base<LLN":
        base, lln, uln = 100.0, 200.0, 1e6  # a baseline below the LLN, the ULN far away
    elif rule.condition == "value<LLN":
        base = 100.0  # the LLN just above the cut-off: the LLN multiples stay at grade 1
        lln = rule.mult * base * 1.1
    elif rule.basis == "ULN&BASE":
        base = uln * 1.5  # above both: the baseline decides (the ULN side is tested by hand)
    elif rule.basis == "BASE":
        base, uln = 100.0, 1e6  # ULN far away so only the baseline rule can fire
        if absolute and term.direction == "H":  # v6 INR: every baseline multiple below the absolute cut-offs
            base = min(absolute) / (2 * max(r.mult for r in rules if r.basis == "BASE"))
    elif any(r.basis == "BASE" and not r.condition for r in rules):
        base = 1e9  # a baseline far away: its rules stay quiet (admiral's grade 0 needs one)
    ref = {"abs": 0.0, "LLN": lln, "ULN": uln, "BASE": base, "ULN&BASE": max(uln, base or 0)}[rule.basis]
    return unit, lln, uln, base, rule.add + rule.mult * ref


@pytest.mark.parametrize("criteria,reading,term,rule", list(_boundary_cases()))
def test_every_boundary_both_sides(criteria, reading, term, rule):
    unit, lln, uln, base, cut = _context(term, rule, reading)
    worse = 1 if term.direction == "H" else -1
    step = abs(cut) * 1e-6 or 1e-6
    inclusive = rule.op in ("<=", ">=")
    met_value = cut if inclusive else cut + worse * step
    unmet_value = cut - worse * step if inclusive else cut
    direction = 0 if term.direction == "L" else 1
    kw = dict(term_low=term.name if direction == 0 else "", term_high=term.name if direction == 1 else "")
    met = grade(criteria, reading, term.codes[0], met_value, unit, lln, uln, base, **kw)
    unmet = grade(criteria, reading, term.codes[0], unmet_value, unit, lln, uln, base, **kw)
    assert met[direction] is not None and met[direction] >= rule.grade, (met_value, met)
    assert unmet[direction] is not None and unmet[direction] < rule.grade, (unmet_value, unmet)


# ---------------------------------------------------------------- hand-written from the CTCAE text

CASES = [
    # criteria, reading, code, value, unit, LLN, ULN, base, expected (low, high)
    # Neutrophil count decreased: <LLN-1.5 / <1.5-1.0 / <1.0-0.5 / <0.5 x 10e9/L; <1500/mm3 ...
    ("ctcae-5.0", "literal", "NEUT", 1.5, "10^9/L", 2.0, 7.5, None, (1, None)),
    ("ctcae-5.0", "literal", "NEUT", 1.49, "10^9/L", 2.0, 7.5, None, (2, None)),
    ("ctcae-5.0", "literal", "NEUT", 1.0, "10^9/L", 2.0, 7.5, None, (2, None)),
    ("ctcae-5.0", "literal", "NEUT", 0.5, "10^9/L", 2.0, 7.5, None, (3, None)),
    ("ctcae-5.0", "literal", "NEUT", 0.49, "10^9/L", 2.0, 7.5, None, (4, None)),
    ("ctcae-5.0", "literal", "NEUT", 999, "/mm3", 2000, 7500, None, (3, None)),
    ("ctcae-5.0", "literal", "NEUT", 1000, "/uL", 2000, 7500, None, (2, None)),
    ("ctcae-5.0", "literal", "NEUT", 2.5, "10^9/L", 2.0, 7.5, None, (0, None)),
    # Platelet count decreased <75 / <50 / <25 x 10e9/L
    ("ctcae-5.0", "literal", "PLAT", 75, "10^9/L", 150, 400, None, (1, None)),
    ("ctcae-5.0", "literal", "PLAT", 24.9, "10^9/L", 150, 400, None, (4, None)),
    # Hyperkalemia >ULN-5.5 / >5.5-6.0 / >6.0-7.0 / >7.0 mmol/L; K 6.0 is grade 2
    ("ctcae-5.0", "literal", "K", 5.5, "mmol/L", 3.5, 5.1, None, (0, 1)),
    ("ctcae-5.0", "literal", "K", 6.0, "mmol/L", 3.5, 5.1, None, (0, 2)),
    ("ctcae-5.0", "literal", "K", 6.01, "mEq/L", 3.5, 5.1, None, (0, 3)),
    ("ctcae-5.0", "literal", "K", 7.01, "mmol/L", 3.5, 5.1, None, (0, 4)),
    # Hypokalemia <LLN-3.0 (grade 1; grade 2 needs symptoms) / <3.0-2.5 / <2.5; admiral: <LLN is grade 2
    ("ctcae-5.0", "literal", "K", 3.0, "mmol/L", 3.5, 5.1, None, (1, 0)),
    ("ctcae-5.0", "admiral", "K", 3.0, "mmol/L", 3.5, 5.1, None, (2, 0)),
    ("ctcae-4.03", "admiral", "K", 2.99, "mmol/L", 3.5, 5.1, None, (3, 0)),
    ("ctcae-5.0", "literal", "K", 2.49, "mmol/L", 3.5, 5.1, None, (4, 0)),
    # Anemia <LLN-10.0 g/dL; <LLN-6.2 mmol/L; <LLN-100 g/L / <10.0-8.0 g/dL ... / <8.0 g/dL; <4.9 mmol/L; <80 g/L
    ("ctcae-5.0", "literal", "HGB", 8.0, "g/dL", 12, 16, None, (2, 0)),
    ("ctcae-5.0", "literal", "HGB", 7.9, "g/dL", 12, 16, None, (3, 0)),
    ("ctcae-5.0", "literal", "HGB", 80, "g/L", 120, 160, None, (2, 0)),
    ("ctcae-5.0", "literal", "HGB", 4.9, "mmol/L", 7.4, 9.9, None, (2, 0)),
    ("ctcae-5.0", "literal", "HGB", 4.89, "mmol/L", 7.4, 9.9, None, (3, 0)),
    ("ctcae-4.03", "admiral", "HGB", 4.89, "mmol/L", 7.4, 9.9, None, (None, None)),  # admiral: g/L and g/dL only
    # Hemoglobin increased: v5 >0-2 / >2-4 / >4 g/dL above ULN; v4.03 above baseline if baseline is above ULN
    ("ctcae-5.0", "literal", "HGB", 18.0, "g/dL", 12, 16, None, (0, 1)),
    ("ctcae-5.0", "literal", "HGB", 181, "g/L", 120, 160, None, (0, 2)),
    ("ctcae-4.03", "literal", "HGB", 18.5, "g/dL", 12, 16, 17.0, (0, 1)),
    ("ctcae-4.03", "literal", "HGB", 19.5, "g/dL", 12, 16, 17.0, (0, 2)),
    # Creatinine increased v5: >ULN-1.5xULN; >1.5-3.0 x baseline or ULN; >3.0 x baseline; >6.0 x ULN
    ("ctcae-5.0", "literal", "CREAT", 1.05, "mg/dL", 0.6, 1.3, 0.7, (None, 0)),  # 1.5 x 0.7 in floating point
    ("ctcae-5.0", "literal", "CREAT", 1.06, "mg/dL", 0.6, 1.3, 0.7, (None, 2)),  # baseline clause below the ULN
    ("ctcae-5.0", "literal", "CREAT", 1.25, "mg/dL", 0.6, 1.3, 1.0, (None, 0)),  # v5 grade 1 is ULN only
    ("ctcae-5.0", "literal", "CREAT", 2.2, "mg/dL", 0.6, 1.3, 0.7, (None, 3)),
    ("ctcae-5.0", "literal", "CREAT", 7.9, "mg/dL", 0.6, 1.3, None, (None, 4)),
    ("ctcae-5.0", "literal", "CREAT", 1.4, "mg/dL", 0.6, 1.3, None, (None, 1)),
    # v4.03 adds ">1 - 1.5 x baseline" to grade 1
    ("ctcae-4.03", "literal", "CREAT", 1.25, "mg/dL", 0.6, 1.3, 1.0, (None, 1)),
    ("ctcae-4.03", "admiral", "CREAT", 1.0, "mg/dL", 0.6, 1.3, 1.0, (None, 0)),
    ("ctcae-4.03", "admiral", "CREAT", 1.0, "mg/dL", 0.6, 1.3, None, (None, None)),
    ("ctcae-4.03", "literal", "CREAT", 1.0, "mg/dL", 0.6, 1.3, None, (None, 0)),
    ("ctcae-4.03", "admiral", "CREAT", 3.5, "mg/dL", 0.6, None, 1.0, (None, 3)),
    ("ctcae-4.03", "literal", "CREAT", 3.5, "mg/dL", 0.6, None, 1.0, (None, None)),
    # ALT v4.03 >ULN-3.0 / >3.0-5.0 / >5.0-20.0 / >20.0 x ULN; v5 1.5-3.0 x baseline if baseline abnormal
    ("ctcae-4.03", "literal", "ALT", 120, "U/L", 5, 40, None, (None, 1)),
    ("ctcae-4.03", "literal", "ALT", 121, "U/L", 5, 40, None, (None, 2)),
    ("ctcae-4.03", "literal", "ALT", 801, "U/L", 5, 40, None, (None, 4)),
    ("ctcae-5.0", "literal", "ALT", 119, "U/L", 5, 40, 80, (None, 0)),
    ("ctcae-5.0", "literal", "ALT", 120, "U/L", 5, 40, 80, (None, 1)),
    ("ctcae-5.0", "literal", "ALT", 241, "U/L", 5, 40, 80, (None, 2)),
    ("ctcae-5.0", "literal", "ALT", 121, "U/L", 5, 40, 30, (None, 2)),
    # a normal baseline: the baseline multiples do not apply (160 > 5.0 x baseline 30, yet grade 2)
    ("ctcae-5.0", "literal", "ALT", 160, "U/L", 5, 40, 30, (None, 2)),
    ("ctcae-5.0", "literal", "ALT", 200, "U/L", 5, 40, 30, (None, 2)),
    ("ctcae-5.0", "literal", "ALT", 201, "U/L", 5, 40, 30, (None, 3)),
    ("ctcae-5.0", "literal", "ALT", 121, "U/L", 5, None, 30, (None, None)),
    # Hyponatremia v5: 125-129 asymptomatic grade 2; 120-124 grade 3; admiral takes 125-129 as symptomatic
    ("ctcae-5.0", "literal", "SODIUM", 129, "mmol/L", 135, 145, None, (2, 0)),
    ("ctcae-5.0", "literal", "SODIUM", 124, "mmol/L", 135, 145, None, (3, 0)),
    ("ctcae-5.0", "literal", "SODIUM", 119, "mmol/L", 135, 145, None, (4, 0)),
    ("ctcae-5.0", "admiral", "SODIUM", 129, "mmol/L", 135, 145, None, (3, 0)),
    ("ctcae-4.03", "literal", "SODIUM", 129.9, "mmol/L", 135, 145, None, (3, 0)),
    ("ctcae-4.03", "literal", "SODIUM", 130, "mmol/L", 135, 145, None, (1, 0)),
    ("ctcae-5.0", "literal", "SODIUM", 151, "mmol/L", 135, 145, None, (0, 2)),
    # Calcium: corrected >ULN-11.5 mg/dL; >ULN-2.9 mmol/L / >11.5-12.5; >2.9-3.1 ...; ionized >ULN-1.5 ...
    ("ctcae-5.0", "literal", "CA", 11.5, "mg/dL", 8.6, 10.2, None, (0, 1)),
    ("ctcae-5.0", "literal", "CA", 11.6, "mg/dL", 8.6, 10.2, None, (0, 2)),
    ("ctcae-5.0", "literal", "CA", 2.9, "mmol/L", 2.15, 2.55, None, (0, 1)),
    ("ctcae-5.0", "literal", "CA", 1.74, "mmol/L", 2.15, 2.55, None, (3, 0)),
    ("ctcae-5.0", "literal", "CAION", 1.55, "mmol/L", 1.12, 1.32, None, (0, 2)),
    ("ctcae-5.0", "literal", "CAION", 0.85, "mmol/L", 1.12, 1.32, None, (3, 0)),
    ("ctcae-5.0", "literal", "CAION", 3.4, "mg/dL", 4.5, 5.3, None, (3, 0)),  # 0.848 mmol/L
    ("ctcae-5.0", "admiral", "CAION", 3.4, "mg/dL", 4.5, 5.3, None, (3, 0)),  # admiral's 3.6 mg/dL
    # Hypoalbuminemia <LLN-3 g/dL; <LLN-30 g/L / <3-2 g/dL / <2 g/dL
    ("ctcae-5.0", "literal", "ALB", 2.9, "g/dL", 3.5, 5.0, None, (2, None)),
    ("ctcae-5.0", "literal", "ALB", 19, "g/L", 35, 50, None, (3, None)),
    # Hyperuricemia v4.03: >ULN-10 mg/dL (0.59 mmol/L) grade 1 (grade 3 with consequences); >10 mg/dL grade 4
    ("ctcae-4.03", "literal", "URATE", 500, "umol/L", 150, 420, None, (None, 1)),
    ("ctcae-4.03", "admiral", "URATE", 500, "umol/L", 150, 420, None, (None, 3)),
    ("ctcae-4.03", "literal", "URATE", 10.1, "mg/dL", 2.5, 7.0, None, (None, 4)),
    ("ctcae-4.03", "admiral", "URATE", 591, "umol/L", 150, 420, None, (None, 4)),
    ("ctcae-5.0", "literal", "URATE", 500, "umol/L", 150, 420, None, (None, 1)),
    # Hypophosphatemia v4.03 <LLN-2.5 mg/dL; <LLN-0.8 mmol/L / <0.8-0.6 / <0.6-0.3 / <0.3; none in v5
    ("ctcae-4.03", "literal", "PHOS", 0.59, "mmol/L", 0.8, 1.5, None, (3, None)),
    ("ctcae-4.03", "literal", "PHOS", 1.9, "mg/dL", 2.5, 4.5, None, (3, None)),
    ("ctcae-5.0", "literal", "PHOS", 0.2, "mmol/L", 0.8, 1.5, None, (None, None)),
    # Glucose: v4.03 hyperglycemia >250-500 mg/dL; >13.9-27.8 mmol/L grade 3 (grades 1-2 need fasting)
    ("ctcae-4.03", "literal", "GLUC", 13.9, "mmol/L", 3.9, 6.1, None, (0, 0)),
    ("ctcae-4.03", "literal", "GLUC", 14.0, "mmol/L", 3.9, 6.1, None, (0, 3)),
    ("ctcae-4.03", "literal", "GLUC", 501, "mg/dL", 70, 110, None, (0, 4)),
    ("ctcae-5.0", "literal", "GLUC", 2.1, "mmol/L", 3.9, 6.1, None, (3, None)),
    # Cholesterol high >ULN-300 mg/dL; >ULN-7.75 mmol/L / >300-400 ...
    ("ctcae-5.0", "literal", "CHOL", 7.76, "mmol/L", 0, 5.2, None, (None, 2)),
    ("ctcae-5.0", "literal", "CHOL", 401, "mg/dL", 0, 200, None, (None, 3)),
    # Leukocytosis >100,000/mm3; lymphocyte count increased >4000/mm3 - 20,000/mm3 / >20,000/mm3
    ("ctcae-5.0", "literal", "WBC", 100, "10^9/L", 4, 11, None, (0, 0)),
    ("ctcae-5.0", "literal", "WBC", 100.1, "10^9/L", 4, 11, None, (0, 3)),
    ("ctcae-5.0", "literal", "WBC", 100001, "/mm3", 4000, 11000, None, (0, 3)),
    ("ctcae-5.0", "literal", "LYM", 4.0, "10^9/L", 1, 4, None, (0, 0)),
    ("ctcae-5.0", "literal", "LYM", 4.1, "10^9/L", 1, 4, None, (0, 2)),
    ("ctcae-5.0", "literal", "LYM", 20.1, "10^9/L", 1, 4, None, (0, 3)),
    ("ctcae-5.0", "literal", "LYM", 0.19, "10^9/L", 1, 4, None, (4, 0)),
    # CD4 lymphocytes decreased <LLN-500 / <500-200 / <200-50 / <50 /mm3
    ("ctcae-4.03", "literal", "CD4", 0.049, "10^9/L", 0.4, 1.6, None, (4, None)),
    ("ctcae-4.03", "literal", "CD4", 199, "/mm3", 400, 1600, None, (3, None)),
    # Enzymes and bilirubin (v4.03): ALP/GGT >2.5 x ULN grade 2; bilirubin >1.5; CPK >10 x ULN grade 4
    ("ctcae-4.03", "literal", "ALP", 326, "U/L", 40, 130, None, (None, 2)),
    ("ctcae-4.03", "literal", "GGT", 1001, "U/L", 5, 50, None, (None, 4)),
    ("ctcae-4.03", "literal", "BILI", 31.6, "umol/L", 3, 21, None, (None, 2)),
    ("ctcae-4.03", "literal", "CK", 2001, "U/L", 30, 200, None, (None, 4)),
    ("ctcae-5.0", "literal", "LDH", 300, "U/L", 100, 250, None, (None, 1)),
    # missing limits
    ("ctcae-5.0", "literal", "PLAT", 100, "10^9/L", None, 400, None, (None, None)),
    ("ctcae-5.0", "literal", "PLAT", 60, "10^9/L", None, 400, None, (2, None)),
]


CASES_V6 = [
    # CTCAE v6.0 (22 Jul 2025; text as in admiral's ncictcaev6.json, errata of 20 Jan 2026 applied)
    # Neutrophil count decreased: <1.5 - 1.0 / <1.0 - 0.5 / <0.5 - 0.1 / <0.1 x 10^9/L, no LLN
    ("ctcae-6.0", "literal", "NEUT", 1.5, "10^9/L", 2.0, 7.5, None, (0, None)),
    ("ctcae-6.0", "literal", "NEUT", 1.49, "10^9/L", None, None, None, (1, None)),
    ("ctcae-6.0", "literal", "NEUT", 1.0, "10^9/L", 2.0, 7.5, None, (1, None)),
    ("ctcae-6.0", "literal", "NEUT", 0.99, "10^9/L", 2.0, 7.5, None, (2, None)),
    ("ctcae-6.0", "literal", "NEUT", 0.1, "10^9/L", 2.0, 7.5, None, (3, None)),
    ("ctcae-6.0", "literal", "NEUT", 99, "/mm3", 2000, 7500, None, (4, None)),
    ("ctcae-6.0", "admiral", "NEUT", 0.099, "10^3/uL", 2.0, 7.5, None, (4, None)),
    # Thrombocytopenia (was Platelet count decreased): grade 3 <50 - 10, grade 4 <10 x 10^9/L
    ("ctcae-6.0", "literal", "PLAT", 24.9, "10^9/L", 150, 400, None, (3, None)),
    ("ctcae-6.0", "literal", "PLAT", 10, "10^9/L", 150, 400, None, (3, None)),
    ("ctcae-6.0", "literal", "PLAT", 9999, "/mm3", 150000, 400000, None, (4, None)),
    # Creatinine increased: the baseline clause only "if baseline is below LLN"
    ("ctcae-6.0", "literal", "CREAT", 1.06, "mg/dL", 0.6, 1.3, 0.7, (None, 0)),   # v5: grade 2
    ("ctcae-6.0", "literal", "CREAT", 0.76, "mg/dL", 0.6, 1.3, 0.5, (None, 2)),   # > 1.5 x a baseline below LLN
    ("ctcae-6.0", "literal", "CREAT", 1.51, "mg/dL", 0.6, 1.3, 0.5, (None, 3)),
    ("ctcae-6.0", "admiral", "CREAT", 1.51, "mg/dL", 0.6, 1.3, 0.5, (None, 3)),
    ("ctcae-6.0", "literal", "CREAT", 1.51, "mg/dL", None, 1.3, 0.5, (None, 1)),  # no LLN: the clause cannot apply
    ("ctcae-6.0", "literal", "CREAT", 7.9, "mg/dL", 0.6, 1.3, 0.5, (None, 4)),
    # ALT/AST with a baseline above the ULN: 1.0 - 1.5 / >1.5 - 2.0 / >2.0 - 4.0 / >4.0 x baseline
    ("ctcae-6.0", "literal", "ALT", 80, "U/L", 5, 40, 80, (None, 1)),
    ("ctcae-6.0", "literal", "ALT", 79, "U/L", 5, 40, 80, (None, 0)),
    ("ctcae-6.0", "literal", "ALT", 121, "U/L", 5, 40, 80, (None, 2)),
    ("ctcae-6.0", "literal", "AST", 161, "U/L", 5, 40, 80, (None, 3)),
    ("ctcae-6.0", "literal", "AST", 321, "U/L", 5, 40, 80, (None, 4)),
    ("ctcae-6.0", "literal", "ALT", 121, "U/L", 5, 40, 30, (None, 2)),  # normal baseline: ULN multiples
    ("ctcae-6.0", "literal", "BILI", 51, "umol/L", 3, 21, 30, (None, 2)),  # > 1.5 x baseline 30
    ("ctcae-6.0", "literal", "BILI", 76, "umol/L", 3, 21, 30, (None, 3)),  # > 2.5 x baseline
    ("ctcae-6.0", "literal", "GGT", 91, "U/L", 5, 50, 60, (None, 2)),  # > 1.5 x baseline 60
    ("ctcae-6.0", "literal", "GGT", 181, "U/L", 5, 50, 60, (None, 3)),
    # Alkaline phosphatase increased: grade 1 ">Baseline and ULN" only
    ("ctcae-6.0", "literal", "ALP", 131, "U/L", 40, 130, 100, (None, 1)),
    ("ctcae-6.0", "literal", "ALP", 131, "U/L", 40, 130, 140, (None, 0)),
    ("ctcae-6.0", "literal", "ALP", 141, "U/L", 40, 130, 140, (None, 1)),
    ("ctcae-6.0", "literal", "ALP", 2000, "U/L", 40, 130, 100, (None, 1)),
    ("ctcae-6.0", "admiral", "ALP", 120, "U/L", 40, None, 130, (None, 0)),  # <= baseline: no grade without ULN
    ("ctcae-6.0", "admiral", "ALP", 140, "U/L", 40, None, 130, (None, None)),
    ("ctcae-6.0", "literal", "ALP", 120, "U/L", 40, 130, None, (None, 0)),
    ("ctcae-6.0", "literal", "ALP", 140, "U/L", 40, 130, None, (None, None)),
    # Lipase increased: >1.5 - 3.0 x ULN; >3.0 - 5.0 x ULN and asymptomatic (grade 2); admiral: grade 3
    ("ctcae-6.0", "literal", "LIPASE", 250, "U/L", 10, 60, None, (None, 2)),
    ("ctcae-6.0", "admiral", "LIPASE", 250, "U/L", 10, 60, None, (None, 3)),
    ("ctcae-6.0", "literal", "LIPASE", 301, "U/L", 10, 60, None, (None, 3)),
    ("ctcae-6.0", "admiral", "LIPASE", 301, "U/L", 10, 60, None, (None, 4)),
    # Creatinine clearance decreased: 26 - 49 (grade 2), 10 - 25 (grade 3) ml/min; below 10 not graded
    ("ctcae-6.0", "literal", "CREATCLR", 50, "mL/min", None, None, None, (0, None)),
    ("ctcae-6.0", "literal", "CREATCLR", 49.5, "mL/min", None, None, None, (2, None)),
    ("ctcae-6.0", "admiral", "CREATCLR", 49.5, "mL/min", None, None, None, (0, None)),
    ("ctcae-6.0", "literal", "CREATCLR", 25.5, "mL/min", None, None, None, (3, None)),
    ("ctcae-6.0", "admiral", "CREATCLR", 25.5, "mL/min", None, None, None, (2, None)),
    ("ctcae-6.0", "literal", "CREATCLR", 10, "mL/min", None, None, None, (3, None)),
    ("ctcae-6.0", "admiral", "CREATCLR", 9.9, "mL/min", None, None, None, (None, None)),
    # Hyponatremia 125 - <130 and asymptomatic (2); admiral assumes symptomatic (3)
    ("ctcae-6.0", "literal", "SODIUM", 129.9, "mmol/L", 135, 145, None, (2, 0)),
    ("ctcae-6.0", "admiral", "SODIUM", 129.9, "mmol/L", 135, 145, None, (3, 0)),
    # Hyperglycemia: non-fasting >13.9 / >27.8 mmol/L (grades 3-4)
    ("ctcae-6.0", "literal", "GLUC", 13.9, "mmol/L", 3.9, 6.1, None, (0, 0)),
    ("ctcae-6.0", "literal", "GLUC", 251, "mg/dL", 70, 110, None, (0, 3)),
    # magnesium, triglycerides, INR, pH (numbers printed by v6.0)
    ("ctcae-6.0", "literal", "MG", 1.24, "mmol/L", 0.7, 1.0, None, (0, 3)),
    ("ctcae-6.0", "literal", "MG", 0.89, "mg/dL", 1.7, 2.2, None, (3, 0)),
    ("ctcae-6.0", "literal", "TRIG", 151, "mg/dL", None, None, None, (None, 1)),
    ("ctcae-6.0", "literal", "INR", 1.6, "", None, None, 1.0, (None, 2)),
    ("ctcae-6.0", "admiral", "INR", 1.3, "", None, None, 0.8, (None, 2)),   # > 1.5 x baseline (anticoagulation assumed)
    ("ctcae-6.0", "admiral", "INR", 1.1, "", None, None, None, (None, None)),
    ("ctcae-6.0", "literal", "PH", 7.29, "", 7.35, 7.45, None, (3, 0)),
    # Fibrinogen decreased: LLN multiples; admiral adds % falls from baseline when the value is below the LLN
    ("ctcae-6.0", "literal", "FIBRINO", 1.4, "g/L", 2.0, 4.0, 3.0, (2, None)),
    ("ctcae-6.0", "admiral", "FIBRINO", 1.4, "g/L", 2.0, 4.0, 3.0, (3, None)),   # a 53% fall
    ("ctcae-6.0", "literal", "FIBRINO", 45, "mg/dL", 200, 400, None, (4, None)),
    # Lymphocyte count decreased has no v6.0 lab criteria
    ("ctcae-6.0", "literal", "LYM", 0.19, "10^9/L", 1, 4, None, (None, 0)),
]


@pytest.mark.parametrize("criteria,reading,code,value,unit,lln,uln,base,expected", CASES + CASES_V6)
def test_ctcae_text(criteria, reading, code, value, unit, lln, uln, base, expected):
    assert grade(criteria, reading, code, value, unit, lln, uln, base)[:2] == expected


def test_reasons():
    assert grade("ctcae-5.0", "literal", "PLAT", 100, "10^9/L", None, 400)[2] == "no LLN"
    assert grade("ctcae-5.0", "literal", "ALT", 100, "U/L", 5, None)[3] == "no ULN"
    assert grade("ctcae-5.0", "literal", "K", None, "mmol/L", 3.5, 5.1)[2:] == ("missing value", "missing value")
    assert grade("ctcae-5.0", "literal", "NEUT", 1.0, "10^9/L", 2, 7.5)[3] == "no term"
    assert "not convertible" in grade("ctcae-5.0", "literal", "K", 4.0, "U/L", 3.5, 5.1)[2]
    assert "admiral" in grade("ctcae-5.0", "admiral", "HGB", 7.0, "mmol/L", 7.4, 9.9)[2]
    assert grade("ctcae-4.03", "admiral", "CREAT", 1.0, "mg/dL", 0.6, 1.3, None)[3] == "no baseline"
    # a given term column wins; an empty term means that direction is not graded
    low, high, _, why = grade("ctcae-4.03", "admiral", "LYM", 0.3, "10^9/L", 1, 4, None,
                              term_low="CD4 lymphocytes decreased", term_high="")
    assert (low, high, why) == (2, None, "no term")


def test_admiral_unit_check_ignores_case():
    assert grade("ctcae-4.03", "admiral", "K", 6.5, "MMOL/L", 3.5, 5.1)[1] == 3
    assert grade("ctcae-4.03", "admiral", "K", 6.5, "mEq/L", 3.5, 5.1)[1] is None
    assert grade("ctcae-4.03", "literal", "K", 6.5, "mEq/L", 3.5, 5.1)[1] == 3


def test_output_shape_and_order():
    df = pl.DataFrame({"code": ["K", "NEUT", "K"], "value": [6.5, 0.4, 4.0], "unit": ["mmol/L", "10^9/L", "mmol/L"],
                       "ref_low": [3.5, 2.0, 3.5], "ref_high": [5.1, 7.5, 5.1], "base": [None, None, None]})
    out = grade_frame(df)
    assert out.columns == df.columns + ["grade_low", "grade_high", "term_low", "term_high", "reason_low", "reason_high"]
    assert out["grade_low"].dtype == pl.Int8
    assert out["grade_high"].to_list() == [3, None, 0]
    assert out["term_low"].cast(pl.String).to_list() == ["Hypokalemia", "Neutrophil count decreased", "Hypokalemia"]
    assert grade_frame(df.head(0)).height == 0


# ---------------------------------------------------------------- properties

def _variants():
    out = []
    for criteria in CRITERIA:
        for term in load_terms(criteria).values():
            for reading in ("literal", "admiral"):
                wanted = ("admiral", "both") if reading == "admiral" else ("literal", "both")
                for unit in dict.fromkeys(r.unit for r in term.rules if r.reading in wanted and r.unit) or ["U/L"]:
                    out.append((criteria, reading, term, unit))
    return out


VARIANTS = _variants()
finite = st.floats(min_value=1e-3, max_value=1e5, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(VARIANTS), st.lists(finite, min_size=2, max_size=30), finite, finite,
       st.one_of(st.none(), finite))
def test_grade_never_falls_as_value_worsens(variant, values, lim_a, lim_b, base):
    criteria, reading, term, unit = variant
    lln, uln = sorted((lim_a, lim_b))
    values = sorted(values, reverse=term.direction == "L")  # from mild to worse
    col = "term_low" if term.direction == "L" else "term_high"
    df = pl.DataFrame({"code": term.codes[0], "value": values, "unit": unit, "ref_low": lln, "ref_high": uln,
                       "base": base, col: term.name}, schema_overrides={"base": pl.Float64})
    grades = grade_frame(df, criteria, reading)[f"grade_{col[5:]}"].to_list()
    known = [g for g in grades if g is not None]
    assert known == sorted(known), (values, grades)


def _printed_units(term):
    return list(dict.fromkeys(r.unit for r in term.rules if r.reading in ("literal", "both") and r.unit))


def _gaps(term, target):
    """Intervals (in ``target`` units) between the cut-offs of one boundary printed in two units."""
    analyte = catalog()[term.codes[0]]
    by_grade: dict[int, list[float]] = {}
    for r in term.rules:
        if r.reading in ("literal", "both") and r.basis == "abs":
            scale, _ = units.linear_conversion(r.unit, target, analyte.molar_mass, analyte.valence)
            by_grade.setdefault(r.grade, []).append(r.add * scale)
    return [(min(c), max(c)) for c in by_grade.values() if len(c) > 1]


# terms printed in two units whose analyte dosewatch can convert (the v6-only magnesium, triglycerides and
# fibrinogen have no catalog entry yet: a value in an unprinted unit is left ungraded, tested below)
MULTI_UNIT = [(c, t) for c in CRITERIA for t in load_terms(c).values()
              if len(_printed_units(t)) > 1 and t.codes[0] in catalog().analytes]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(MULTI_UNIT), st.floats(min_value=0.05, max_value=3.0), st.data())
def test_same_value_in_two_units_grades_the_same_outside_the_gaps(case, factor, data):
    criteria, term = case
    printed = _printed_units(term)
    primary = printed[0]
    analyte = catalog()[term.codes[0]]
    cuts = [r.add for r in term.rules if r.basis == "abs" and r.unit == primary]
    value = max(cuts) * factor
    gaps = _gaps(term, primary)
    if any(lo * (1 - 1e-6) <= value <= hi * (1 + 1e-6) for lo, hi in gaps):
        return
    other = data.draw(st.sampled_from(printed[1:]))
    scale, _ = units.linear_conversion(primary, other, analyte.molar_mass, analyte.valence)
    # reference limits well inside the grade-1 band so only absolute cut-offs decide
    limit = min(cuts) * 0.8 if term.direction == "H" else max(cuts) * 1.25
    kw = {"term_low": term.name if term.direction == "L" else "", "term_high": term.name if term.direction == "H" else ""}
    a = grade(criteria, "literal", term.codes[0], value, primary, limit, limit, None, **kw)
    b = grade(criteria, "literal", term.codes[0], value * scale, other, limit * scale, limit * scale, None, **kw)
    assert a[:2] == b[:2], (value, primary, other, a, b)


@pytest.mark.parametrize("criteria,code,si,conventional,expected", [
    # Hb: 4.9 mmol/L is printed beside 8.0 g/dL (= 4.965 mmol/L): 4.95 mmol/L is grade 2 as
    # reported, grade 3 once written in g/dL (7.98)
    ("ctcae-5.0", "HGB", (4.95, "mmol/L"), (4.95 / 0.6205591237705171, "g/dL"), ((2, 0), (3, 0))),
    # Ca: 2.9 mmol/L beside 11.5 mg/dL (= 2.869 mmol/L): 2.88 mmol/L is grade 1, 11.54 mg/dL grade 2
    ("ctcae-5.0", "CA", (2.88, "mmol/L"), (2.88 * 4.0078, "mg/dL"), ((0, 1), (0, 2))),
    # hypocalcemia: 2.0 mmol/L beside 8.0 mg/dL (= 1.996 mmol/L)
    ("ctcae-5.0", "CA", (1.998, "mmol/L"), (1.998 * 4.0078, "mg/dL"), ((2, 0), (1, 0))),
    # urate v4.03: 0.59 mmol/L beside 10 mg/dL (= 0.5948 mmol/L)
    ("ctcae-4.03", "URATE", (592, "umol/L"), (592 * 0.016811, "mg/dL"), ((None, 4), (None, 1))),
])
def test_named_unit_gaps(criteria, code, si, conventional, expected):
    analyte = catalog()[code]
    lims = {"mmol/L": (2.1, 2.6), "mg/dL": (2.1 * 4.0078, 2.6 * 4.0078), "g/dL": (12, 16),
            "umol/L": (150, 420), "mg/dL-urate": (2.5, 7.06)}
    results = []
    for value, unit in (si, conventional):
        if code == "HGB":
            lo, hi = (7.4, 9.9) if unit == "mmol/L" else (12, 16)
        elif code == "URATE":
            lo, hi = lims["umol/L"] if unit == "umol/L" else lims["mg/dL-urate"]
        else:
            lo, hi = lims[unit]
        results.append(grade(criteria, "literal", code, value, unit, lo, hi)[:2])
    assert tuple(results) == expected
    assert analyte.code == code


def test_tolerance_on_a_computed_cut_off():
    # 1.2 - 0.9 style: 1.5 x 0.7 is 1.0499999999999998 in floating point; 1.05 is on the cut-off
    assert 1.5 * 0.7 < 1.05
    assert grade("ctcae-5.0", "literal", "CREAT", 1.05, "mg/dL", 0.6, 1.3, 0.7)[1] == 0
    # ALT 3 x ULN with ULN 0.1 + 0.2 (0.30000000000000004): 0.9 is on the cut-off, grade 1
    assert grade("ctcae-4.03", "literal", "ALT", 0.9, "U/L", 0.0, 0.1 + 0.2)[1] == 1


def test_compiled_thresholds_are_in_the_reported_unit():
    v = compile_variant("ctcae-5.0", "literal", "Hypocalcemia", "mg/dL")  # printed: uses 8.0 mg/dL
    assert math.isclose(v.slots[(2, "abs")][1], 8.0, rel_tol=1e-8)
    v = compile_variant("ctcae-5.0", "literal", "Hyperkalemia", "mEq/L")  # converted from mmol/L
    assert math.isclose(v.slots[(2, "abs")][1], 5.5, rel_tol=1e-8)
