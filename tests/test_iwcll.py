"""iwCLL 2018 hematologic toxicity grading (Hallek 2018 / 2008 Table 5)."""
from __future__ import annotations

import polars as pl
import pytest

from dosewatch.criteria.iwcll import grade_iwcll, load_rules


def iw(code, value, unit, lln, base):
    df = pl.DataFrame({"code": [code], "value": [value], "unit": [unit], "ref_low": [lln], "base": [base]},
                      schema={"code": pl.String, "value": pl.Float64, "unit": pl.String, "ref_low": pl.Float64,
                              "base": pl.Float64})
    row = grade_iwcll(df).row(0, named=True)
    return row["grade_low"], row["reason_low"]


@pytest.mark.parametrize("code,value,unit,lln,base,expected", [
    # platelets: fall from pretreatment >10% g1, >=25% g2, >=50% g3, >=75% g4; below LLN required
    ("PLAT", 90.0, "10^9/L", 150, 100, 0),     # 10% fall: not more than 10%
    ("PLAT", 89.9, "10^9/L", 150, 100, 1),
    ("PLAT", 75.0, "10^9/L", 150, 100, 2),     # 25% exactly: grade 2
    ("PLAT", 75.1, "10^9/L", 150, 100, 1),
    ("PLAT", 50.0, "10^9/L", 150, 100, 3),
    ("PLAT", 50.1, "10^9/L", 150, 100, 2),
    ("PLAT", 100.0, "10^9/L", 150, 400, 4),    # 75% fall
    ("PLAT", 100.1, "10^9/L", 150, 400, 3),
    ("PLAT", 160.0, "10^9/L", 150, 400, 0),    # a 60% fall but not below normal
    ("PLAT", 19.9, "10^9/L", 150, 22, 4),      # <20 x 10^9/L is grade 4 at any fall (here 10%)
    ("PLAT", 20.0, "10^9/L", 150, 30, 2),      # 20 is not <20: graded by its 33% fall
    ("PLAT", 19900, "/uL", 150000, 22000, 4),
    # hemoglobin: same bands, below LLN required
    ("HGB", 108.0, "g/L", 120, 120, 0),
    ("HGB", 107.9, "g/L", 120, 120, 1),
    ("HGB", 9.0, "g/dL", 12, 12, 2),
    ("HGB", 6.0, "g/dL", 12, 12, 3),
    ("HGB", 3.0, "g/dL", 12, 12, 4),
    ("HGB", 115, "g/L", 110, 140, 0),          # 18% fall, above LLN
    # neutrophils: >=2.0 g0, 1.5-2.0 g1, 1.0-1.5 g2, 0.5-1.0 g3, <0.5 g4 (x 10^9/L)
    ("NEUT", 2.0, "10^9/L", 2.0, 3.0, 0),
    ("NEUT", 1.99, "10^9/L", 2.0, 3.0, 1),
    ("NEUT", 1.5, "10^9/L", 2.0, 3.0, 1),
    ("NEUT", 1.49, "10^9/L", 2.0, 3.0, 2),
    ("NEUT", 1.0, "10^9/L", 2.0, 3.0, 2),
    ("NEUT", 0.99, "10^9/L", 2.0, 3.0, 3),
    ("NEUT", 0.5, "10^9/L", 2.0, 3.0, 3),
    ("NEUT", 0.49, "10^9/L", 2.0, 3.0, 4),
    ("NEUT", 490, "/uL", 2000, 3000, 4),
])
def test_bands(code, value, unit, lln, base, expected):
    assert iw(code, value, unit, lln, base) == (expected, None)


def test_not_evaluable():
    assert iw("NEUT", 0.4, "10^9/L", 2.0, 0.99) == (None, "not evaluable: baseline < 1.0 10^9/L")
    assert iw("NEUT", 0.4, "10^9/L", 2.0, 1.0)[0] == 4
    assert iw("PLAT", 10, "10^9/L", 150, 20)[1].startswith("not evaluable")
    assert iw("PLAT", 10, "10^9/L", 150, 20.1)[0] == 4


def test_missing_inputs():
    assert iw("PLAT", 60, "10^9/L", 150, None) == (None, "no baseline")
    assert iw("PLAT", 15, "10^9/L", 150, None) == (4, None)  # absolute grade 4 needs no baseline
    assert iw("HGB", 80, "g/L", None, 120) == (None, "no LLN")
    assert iw("HGB", 115, "g/L", None, 120) == (0, None)   # a 4% fall is grade 0 whatever the LLN
    assert iw("PLAT", None, "10^9/L", 150, 200) == (None, "missing value")
    assert iw("K", 4.0, "mmol/L", 3.5, 4.0) == (None, "no iwCLL criterion")


def test_every_rule_has_a_source():
    for rows in load_rules().values():
        for r in rows:
            assert "Hallek" in r["source"] and r["text"]
