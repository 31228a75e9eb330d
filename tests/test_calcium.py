"""Albumin-corrected calcium (criteria/calcium.py): Payne BMJ 1973, both printed forms."""
import datetime as dt

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dosewatch.analytes import catalog
from dosewatch.criteria.calcium import with_corrected_calcium
from dosewatch.record import OBSERVATIONS_SCHEMA, frame

CAT = catalog()
DAY = dt.date(2024, 3, 10)


def obs(obs_id, code, orig, unit, *, day=DAY, hour=8, pid="p1"):
    """One observation as a reader would give it: canonical value plus the value as reported."""
    return dict(patient_id=pid, obs_id=obs_id, code=code, time=dt.datetime.combine(day, dt.time(hour)), date=day,
                time_known=True, value=float(CAT[code].to_canonical(orig, unit)), unit=CAT[code].unit,
                orig_value=orig, orig_unit=unit, ref_low=2.15 if code == "CA" else None,
                ref_high=2.55 if code == "CA" else None)


def corrected(rows):
    out = with_corrected_calcium(frame(rows, OBSERVATIONS_SCHEMA))
    return out.filter(pl.col("code") == "CACORR").sort("obs_id")


def test_si_form():
    # 2.00 mmol/L + 0.02 x (40 - 30 g/L) = 2.20 mmol/L
    got = corrected([obs("ca", "CA", 2.0, "mmol/L"), obs("alb", "ALB", 30.0, "g/L")])
    row = got.row(0, named=True)
    assert row["obs_id"] == "ca+alb"
    assert row["value"] == pytest.approx(2.2)
    assert (row["orig_value"], row["orig_unit"], row["unit"]) == (pytest.approx(2.2), "mmol/L", "mmol/L")
    assert (row["ref_low"], row["ref_high"]) == (2.15, 2.55)  # the total calcium's range
    assert "Payne" in row["source"]


@pytest.mark.parametrize("alb, alb_unit", [(3.0, "g/dL"), (30.0, "g/L")])
def test_conventional_form_whatever_the_albumin_unit(alb, alb_unit):
    # 8.0 mg/dL + 0.8 x (4.0 - 3.0 g/dL) = 8.8 mg/dL, kept in mg/dL; canonical value converted exactly
    got = corrected([obs("ca", "CA", 8.0, "mg/dL"), obs("alb", "ALB", alb, alb_unit)]).row(0, named=True)
    assert got["orig_value"] == pytest.approx(8.8)
    assert got["orig_unit"] == "mg/dL"
    assert got["value"] == pytest.approx(8.8 / 4.008, rel=1e-4)


def test_high_albumin_corrects_downwards():
    got = corrected([obs("ca", "CA", 2.5, "mmol/L"), obs("alb", "ALB", 45.0, "g/L")]).row(0, named=True)
    assert got["value"] == pytest.approx(2.4)


def test_other_reported_unit_is_given_back_in_that_unit():
    # 4.0 mEq/L = 2.0 mmol/L; + 0.02 x (40 - 30) = 2.2 mmol/L = 4.4 mEq/L
    got = corrected([obs("ca", "CA", 4.0, "mEq/L"), obs("alb", "ALB", 30.0, "g/L")]).row(0, named=True)
    assert got["value"] == pytest.approx(2.2)
    assert (got["orig_value"], got["orig_unit"]) == (pytest.approx(4.4), "mEq/L")


def test_albumin_on_another_date_is_not_used():
    day_before = DAY - dt.timedelta(days=1)
    assert corrected([obs("ca", "CA", 2.0, "mmol/L"), obs("alb", "ALB", 30.0, "g/L", day=day_before)]).is_empty()


def test_albumin_of_another_patient_is_not_used():
    assert corrected([obs("ca", "CA", 2.0, "mmol/L"), obs("alb", "ALB", 30.0, "g/L", pid="p2")]).is_empty()


def test_closest_albumin_that_day():
    rows = [obs("ca", "CA", 2.0, "mmol/L", hour=8), obs("a-early", "ALB", 30.0, "g/L", hour=6),
            obs("a-late", "ALB", 20.0, "g/L", hour=11), obs("ca2", "CA", 2.0, "mmol/L", hour=12)]
    got = corrected(rows)
    assert got["obs_id"].to_list() == ["ca+a-early", "ca2+a-late"]
    assert got["value"].to_list() == pytest.approx([2.2, 2.4])


def test_equally_near_albumins_the_later_is_used():
    rows = [obs("ca", "CA", 2.0, "mmol/L", hour=10), obs("a8", "ALB", 30.0, "g/L", hour=8),
            obs("a12", "ALB", 20.0, "g/L", hour=12)]
    assert corrected(rows)["obs_id"].to_list() == ["ca+a12"]


def test_calcium_without_reported_unit_uses_the_canonical_value():
    row = obs("ca", "CA", 2.0, "mmol/L") | {"orig_value": None, "orig_unit": None}
    got = corrected([row, obs("alb", "ALB", 30.0, "g/L")]).row(0, named=True)
    assert got["value"] == pytest.approx(2.2)


def test_not_derived_twice():
    rows = [obs("ca", "CA", 2.0, "mmol/L"), obs("alb", "ALB", 30.0, "g/L")]
    once = with_corrected_calcium(frame(rows, OBSERVATIONS_SCHEMA))
    twice = with_corrected_calcium(once)
    assert once.height == 3
    assert twice.equals(once)


def test_measured_corrected_calcium_is_kept_and_not_duplicated():
    measured = obs("lab-cc", "CACORR", 2.31, "mmol/L")
    rows = [obs("ca", "CA", 2.0, "mmol/L"), obs("alb", "ALB", 30.0, "g/L"), measured]
    got = corrected(rows)
    assert got["obs_id"].to_list() == ["lab-cc"]
    assert got["value"].to_list() == [pytest.approx(2.31)]


def test_measured_corrected_calcium_of_another_draw_does_not_block():
    rows = [obs("ca", "CA", 2.0, "mmol/L", hour=16), obs("alb", "ALB", 30.0, "g/L", hour=16),
            obs("lab-cc", "CACORR", 2.31, "mmol/L", hour=8)]
    assert corrected(rows)["obs_id"].to_list() == ["ca+alb", "lab-cc"]


def test_no_calcium_or_no_albumin_changes_nothing():
    rows = frame([obs("ca", "CA", 2.0, "mmol/L")], OBSERVATIONS_SCHEMA)
    assert with_corrected_calcium(rows).equals(rows)


@settings(max_examples=60, deadline=None)
@given(ca=st.floats(1.0, 3.5), alb=st.floats(10.0, 55.0))
def test_both_printed_forms_agree_within_their_rounding(ca, alb):
    # 0.8 mg/dL per g/dL is 0.01996 mmol/L per g/L, not 0.02: the forms differ by < 0.002 mmol/L
    si = corrected([obs("ca", "CA", ca, "mmol/L"), obs("alb", "ALB", alb, "g/L")])["value"][0]
    conv = corrected([obs("ca", "CA", ca * 4.008, "mg/dL"), obs("alb", "ALB", alb / 10, "g/dL")])["value"][0]
    assert abs(si - conv) < 0.002
