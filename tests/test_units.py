"""Unit normalisation and conversion (analytes.yaml + units.py)."""
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dosewatch.analytes import catalog
from dosewatch.errors import UnitError
from dosewatch.record import study_day
from dosewatch.units import convert, normalize_unit

CAT = catalog()


@pytest.mark.parametrize(
    "code, value, unit, expected",
    [
        ("CREAT", 1.0, "mg/dL", 88.40),  # 113.12 g/mol: 1 mg/dL = 88.4 umol/L (criteria.md section 7)
        ("CREAT", 4.0, "mg/dL", 353.6),
        ("URATE", 8.0, "mg/dL", 475.88),  # 168.11 g/mol: 8 mg/dL = 475.8 umol/L, below Cairo-Bishop's 476
        ("PHOS", 4.5, "mg/dL", 1.4528),  # as phosphorus, 30.974 g/mol
        ("CA", 7.0, "mg/dL", 1.7466),  # 40.078 g/mol
        ("CA", 4.0, "mEq/L", 2.0),  # divalent: 2 mEq = 1 mmol
        ("K", 5.5, "mEq/L", 5.5),  # monovalent
        ("HGB", 10.0, "g/dL", 100.0),
        ("HGB", 6.206, "mmol/L", 100.0),  # Hb monomer 16114.5 g/mol: 10 g/dL = 6.206 mmol/L
        ("WBC", 197000, "/uL", 197.0),
        ("WBC", 1500, "/mm3", 1.5),
        ("NEUT", 1.5, "10^3/uL", 1.5),
        ("NEUT", 1.5, "GI/L", 1.5),
        ("PLAT", 75, "K/uL", 75.0),
        ("TEMP", 101.0, "[degF]", 38.333),
        ("TEMP", 100.4, "F", 38.0),
        ("LDH", 5.0, "ukat/L", 300.0),
        ("ALB", 4.0, "g/dL", 40.0),
        ("WEIGHT", 220.0, "lb", 99.79),
    ],
)
def test_conversion_to_canonical(code, value, unit, expected):
    assert CAT[code].to_canonical(value, unit) == pytest.approx(expected, rel=2e-4)


@pytest.mark.parametrize("spelling, ucum", [("mEq/L", "meq/L"), ("10^9/L", "10*9/L"), ("x10E9/L", "10*9/L"),
                                            ("µmol/L", "umol/L"), ("mg/dl", "mg/dL"), ("mmHg", "mm[Hg]"), ("°C", "Cel")])
def test_normalize_unit(spelling, ucum):
    assert normalize_unit(spelling) == ucum


@pytest.mark.parametrize("code, unit", [("K", "mg"), ("CREAT", "kg"), ("K", "furlongs"), ("WBC", "mmol/L"), ("TEMP", "cm")])
def test_incompatible_or_unknown_unit_is_refused(code, unit):
    with pytest.raises(UnitError, match=unit.replace("[", r"\[")):
        CAT[code].conversion(unit)


def test_equivalents_need_a_valence():
    with pytest.raises(UnitError, match="valence"):
        CAT["CREAT"].conversion("mEq/L")


@given(st.sampled_from(["CREAT", "URATE", "PHOS", "CA", "HGB", "K", "TEMP"]), st.floats(0.01, 1e4))
def test_round_trip_between_units(code, x):
    analyte = CAT[code]
    other = {"CREAT": "mg/dL", "URATE": "mg/dL", "PHOS": "mg/dL", "CA": "mg/dL", "HGB": "g/dL", "K": "mEq/L",
             "TEMP": "[degF]"}[code]
    assert analyte.from_canonical(analyte.to_canonical(x, other), other) == pytest.approx(x, rel=1e-9)


def test_conversion_works_on_whole_columns():
    import numpy as np

    values = np.array([0.5, 1.0, 2.0])
    assert convert(values, "mg/dL", "umol/L", molar_mass=113.12) == pytest.approx(values * 88.4016973)


def test_every_catalog_unit_parses_and_codes_are_unique():
    loinc = [c for a in CAT.analytes.values() for c in a.loinc]
    assert len(loinc) == len(set(loinc))
    for a in CAT.analytes.values():
        assert a.conversion(a.unit) == (1.0, 0.0)
        lo, hi = a.plausible
        assert lo < hi


@pytest.mark.parametrize("date, expected", [(dt.date(2007, 3, 5), 1), (dt.date(2007, 3, 6), 2),
                                            (dt.date(2007, 3, 4), -1), (dt.date(2007, 3, 2), -3)])
def test_study_day_has_no_day_zero(date, expected):
    assert study_day(date, dt.date(2007, 3, 5)) == expected


# -- the shipped conversion table (data/unit-conversions.json, tools/make_unit_table.py) ----------------

def test_the_shipped_conversion_table_is_what_pint_computes():
    from dosewatch import units

    rows = units._table()
    assert len(rows) > 300
    for (src, dst, mm, val), (scale, offset) in rows.items():
        assert units.pint_conversion(src, dst, mm, val) == (scale, offset), (src, dst, mm, val)


def test_reading_and_checking_real_data_builds_no_unit_registry():
    """The conversions real studies need are in the table: pint and ucumvert are not even imported."""
    import subprocess
    import sys
    from pathlib import Path

    shared = Path(__file__).resolve().parents[2] / "shared" / "realworld"
    if not shared.is_dir():
        pytest.skip("../shared/realworld is not beside")
    code = (
        "import sys, glob\n"
        "from dosewatch.io import read_any\n"
        "from dosewatch.check import check_cohort, CheckSettings\n"
        f"paths = ['{shared}/sdtm-cdiscpilot01', *glob.glob('{shared}/fhir-synthea/*.json')]\n"
        "for p in paths:\n"
        "    check_cohort(read_any(p).cohort, CheckSettings(study_drug='xanomeline'))\n"
        "print(sorted(m for m in ('pint', 'ucumvert') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
