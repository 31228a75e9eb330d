"""KDIGO 2012 AKI staging, CTCAE v5.0 Acute kidney injury and Cockcroft-Gault (criteria/renal.py)."""
import datetime as dt
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dosewatch.analytes import catalog
from dosewatch.criteria.renal import cockcroft_gault, detect_aki
from dosewatch.record import (
    EVENTS_SCHEMA,
    OBSERVATIONS_SCHEMA,
    PATIENTS_SCHEMA,
    Cohort,
    frame,
)

PER_MG_DL = catalog()["CREAT"].conversion("mg/dL")[0]  # 88.40 umol/L per mg/dL
DAY1 = dt.date(2024, 3, 1)
T0 = dt.datetime(2024, 3, 1, 8, 0)


def creat(when: dt.datetime, value: float, unit: str = "umol/L", pid: str = "p1") -> dict:
    canonical = value * PER_MG_DL if unit == "mg/dL" else value
    return {
        "patient_id": pid, "code": "CREAT", "time": when, "date": when.date(), "time_known": True,
        "value": canonical, "unit": "umol/L", "orig_value": value, "orig_unit": unit,
    }


def cohort(obs: list[dict], events: list[dict] = (), deceased: dt.date | None = None) -> Cohort:
    for i, row in enumerate(obs):
        row.setdefault("obs_id", f"c{i}")
    pids = sorted({r["patient_id"] for r in obs} | {"p1"})
    patients = [{"patient_id": p, "sex": "M", "birth_date": dt.date(1950, 1, 1), "deceased_date": deceased} for p in pids]
    evs = [{"patient_id": "p1", "event_id": f"e{i}", "time_known": False, **e} for i, e in enumerate(events)]
    return Cohort(frame(patients, PATIENTS_SCHEMA), frame(obs, OBSERVATIONS_SCHEMA), events=frame(evs, EVENTS_SCHEMA))


def kdigo(c: Cohort, **kw) -> list:
    pids = c.patient_ids
    return [e for e in detect_aki(c, {p: DAY1 for p in pids}, **kw) if e.criteria == "kdigo-2012"]


def stage(c: Cohort, **kw) -> int:
    """The worst KDIGO stage found for p1 (0: no AKI)."""
    return max((e.grade for e in kdigo(c, **kw) if e.patient_id == "p1"), default=0)


# ## Test 1: the +0.3 mg/dL (26.5 umol/L) rule within 48 h ----


def test_rise_of_exactly_0_3_mg_dl_meets_despite_floating_point():
    c = cohort([creat(T0, 0.9, "mg/dL"), creat(T0 + dt.timedelta(hours=24), 1.2, "mg/dL")])
    (event,) = kdigo(c)
    assert (event.term, event.grade, event.onset, event.rule) == ("Acute kidney injury", 1, T0.date() + dt.timedelta(days=1), "stage-1")
    assert [e.ref for e in event.evidence] == ["c1", "c0"]
    assert event.evidence[0].unit == "mg/dL" and event.evidence[0].value == 1.2


def test_rise_just_below_0_3_mg_dl_is_not_aki():
    c = cohort([creat(T0, 0.9, "mg/dL"), creat(T0 + dt.timedelta(hours=24), 1.19, "mg/dL")])
    assert kdigo(c) == []


@pytest.mark.parametrize(("later", "expected"), [(106.5, 1), (106.49, 0)])
def test_rise_of_26_5_umol_l_both_sides(later, expected):
    c = cohort([creat(T0, 80.0), creat(T0 + dt.timedelta(hours=6), later)])
    assert stage(c) == expected


@pytest.mark.parametrize(("gap", "expected"), [(dt.timedelta(hours=48), 1), (dt.timedelta(hours=48, minutes=1), 0)])
def test_48_hour_window_both_sides(gap, expected):
    # 0.9 -> 1.2 mg/dL is 1.33 x: only the 48-hour rule can make it AKI
    c = cohort([creat(T0, 0.9, "mg/dL"), creat(T0 + gap, 1.2, "mg/dL")])
    assert stage(c) == expected


def test_native_unit_gap_for_the_rise():
    # +26.51 umol/L meets the printed 26.5 umol/L; the same rise reported in mg/dL is 0.2999 mg/dL, short of 0.3.
    rise = 26.51
    in_si = cohort([creat(T0, 80.0), creat(T0 + dt.timedelta(hours=6), 80.0 + rise)])
    in_us = cohort([creat(T0, 80.0 / PER_MG_DL, "mg/dL"), creat(T0 + dt.timedelta(hours=6), (80.0 + rise) / PER_MG_DL, "mg/dL")])
    assert stage(in_si) == 1
    assert stage(in_us) == 0


# ## Test 2: stages by multiple of baseline; gaps go to the lower stage ----


@pytest.mark.parametrize(
    ("later", "expected"),
    [(149.9, 0), (150.0, 1), (195.0, 1), (199.99, 1), (200.0, 2), (295.0, 2), (299.99, 2), (300.0, 3)],
)
def test_stage_by_ratio(later, expected):
    # 5 days apart: outside the 48-hour rule, inside the 7-day window
    c = cohort([creat(T0, 100.0), creat(T0 + dt.timedelta(days=5), later)])
    assert stage(c) == expected


def test_ratio_in_floating_point_meets_1_5():
    c = cohort([creat(T0, 0.7, "mg/dL"), creat(T0 + dt.timedelta(days=5), 1.05, "mg/dL")])
    assert stage(c) == 1


@pytest.mark.parametrize(("gap", "expected"), [(dt.timedelta(days=7), 1), (dt.timedelta(days=7, minutes=1), 0)])
def test_7_day_baseline_window_both_sides(gap, expected):
    c = cohort([creat(T0, 100.0), creat(T0 + gap, 150.0)])
    assert stage(c) == expected


def test_pretreatment_baseline_setting_has_no_7_day_limit():
    c = cohort([creat(T0 - dt.timedelta(days=20), 100.0), creat(T0 + dt.timedelta(days=10), 150.0)])
    assert stage(c) == 0
    assert stage(c, baseline="pretreatment") == 1


def test_lowest_value_of_the_7_days_is_the_baseline():
    c = cohort([creat(T0, 100.0), creat(T0 + dt.timedelta(days=2), 90.0), creat(T0 + dt.timedelta(days=5), 180.0)])
    (event,) = kdigo(c)
    assert event.grade == 2 and "c1" in [e.ref for e in event.evidence]


def test_unknown_baseline_setting_is_refused():
    with pytest.raises(ValueError, match="unknown AKI baseline 'first'"):
        detect_aki(cohort([creat(T0, 80.0)]), {"p1": DAY1}, baseline="first")


# ## Test 3: >= 4.0 mg/dL (353.6 umol/L) is stage 3 only with AKI present ----


def test_3_8_to_4_0_mg_dl_is_not_aki():
    c = cohort([creat(T0, 3.8, "mg/dL"), creat(T0 + dt.timedelta(hours=24), 4.0, "mg/dL")])
    assert kdigo(c) == []


@pytest.mark.parametrize(("later", "expected"), [(4.0, 3), (3.99, 1)])
def test_4_0_mg_dl_with_aki_present_is_stage_3(later, expected):
    c = cohort([creat(T0, 3.6, "mg/dL"), creat(T0 + dt.timedelta(hours=24), later, "mg/dL")])
    (event,) = kdigo(c)
    assert event.grade == expected


@pytest.mark.parametrize(("later", "expected"), [(353.6, 3), (353.59, 1)])
def test_353_6_umol_l_with_aki_present(later, expected):
    c = cohort([creat(T0, 320.0), creat(T0 + dt.timedelta(hours=24), later)])
    assert stage(c) == expected


# ## Test 4: clinical facts: RRT is KDIGO stage 3; CTCAE v5 grade only with the fact ----


def _aki_cohort(events=(), deceased=None) -> Cohort:
    return cohort([creat(T0, 100.0), creat(T0 + dt.timedelta(days=1), 160.0)], events, deceased)


def test_no_clinical_fact_gives_no_ctcae_event():
    assert [e.criteria for e in detect_aki(_aki_cohort(), {"p1": DAY1})] == ["kdigo-2012"]


def test_dialysis_is_stage_3_and_ctcae_grade_4():
    when = T0 + dt.timedelta(days=2)
    events = detect_aki(_aki_cohort([{"code": "DIALYSIS", "time": when, "date": when.date()}]), {"p1": DAY1})
    by = {e.criteria: e for e in events}
    assert by["kdigo-2012"].grade == 3 and by["kdigo-2012"].detail["stage_by"] == "renal replacement therapy started"
    assert by["ctcae-5.0"].grade == 4 and by["ctcae-5.0"].term == "Acute kidney injury"
    assert by["ctcae-5.0"].evidence[-1].ref == "e0"


def test_hospitalization_is_ctcae_grade_3_and_death_grade_5():
    when = T0 + dt.timedelta(days=1)
    hosp = detect_aki(_aki_cohort([{"code": "HOSPITAL", "time": when, "date": when.date()}]), {"p1": DAY1})
    assert [(e.criteria, e.grade) for e in hosp] == [("kdigo-2012", 1), ("ctcae-5.0", 3)]
    dead = detect_aki(_aki_cohort(deceased=when.date() + dt.timedelta(days=2)), {"p1": DAY1})
    assert [(e.criteria, e.grade) for e in dead] == [("kdigo-2012", 1), ("ctcae-5.0", 5)]
    assert dead[1].evidence[-1].ref == "Patient/p1"


@pytest.mark.parametrize(("days_after_t0", "expected"), [(3, [("kdigo-2012", 3), ("ctcae-5.0", 4)]), (4, [("kdigo-2012", 1)])])
def test_clinical_event_counts_up_to_the_grace_days(days_after_t0, expected):
    # last AKI creatinine on 2 Mar; grace 2 days: dialysis on 4 Mar counts, on 5 Mar does not
    when = T0 + dt.timedelta(days=days_after_t0)
    events = detect_aki(_aki_cohort([{"code": "DIALYSIS", "time": when, "date": when.date()}]), {"p1": DAY1})
    assert [(e.criteria, e.grade) for e in events] == expected


def test_aki_before_day_1_is_not_reported_and_episodes_split():
    obs = [
        creat(T0 - dt.timedelta(days=3), 100.0),
        creat(T0 - dt.timedelta(days=2), 160.0),  # AKI before day 1
        creat(T0 + dt.timedelta(days=10), 100.0),
        creat(T0 + dt.timedelta(days=11), 160.0),  # episode 1
        creat(T0 + dt.timedelta(days=12), 210.0),  # still AKI, stage 2
        creat(T0 + dt.timedelta(days=30), 100.0),  # not AKI: ends the episode
        creat(T0 + dt.timedelta(days=31), 140.0),  # episode 2 (+40 within 48 h)
    ]
    events = kdigo(cohort(obs))
    assert [(e.onset, e.grade) for e in events] == [(dt.date(2024, 3, 12), 2), (dt.date(2024, 4, 1), 1)]


def test_patients_missing_from_day1_are_not_evaluated():
    c = cohort([creat(T0, 100.0, pid="p2"), creat(T0 + dt.timedelta(days=1), 200.0, pid="p2")])
    assert detect_aki(c, {"p1": DAY1}) == []


def test_ctcae_version_other_than_5_is_refused():
    with pytest.raises(ValueError, match="ctcae-5.0 only"):
        detect_aki(_aki_cohort(), {"p1": DAY1}, ctcae="ctcae-4.03")


# ## Test 5: properties ----


@settings(max_examples=60, deadline=None)
@given(
    base=st.floats(40, 600),
    x1=st.floats(20, 3000),
    x2=st.floats(20, 3000),
    hours=st.sampled_from([6, 47, 72]),
)
def test_stage_never_falls_as_the_later_creatinine_rises(base, x1, x2, hours):
    lo, hi = sorted((x1, x2))
    later = T0 + dt.timedelta(hours=hours)
    s_lo = stage(cohort([creat(T0, base), creat(later, lo)]))
    s_hi = stage(cohort([creat(T0, base), creat(later, hi)]))
    assert s_lo <= s_hi


@settings(max_examples=60, deadline=None)
@given(base=st.floats(40, 600), later=st.floats(20, 3000))
def test_same_values_in_two_units_stage_alike_outside_the_named_gaps(base, later):
    rise = later - base
    # named gaps: +26.5 vs +0.3 mg/dL (26.52 umol/L) and 353.6 umol/L vs 4.0 mg/dL (353.607 umol/L)
    if 26.5 * (1 - 1e-6) <= rise <= 0.3 * PER_MG_DL * (1 + 1e-6) or 353.6 * (1 - 1e-6) <= later <= 4.0 * PER_MG_DL * (1 + 1e-6):
        return
    t1 = T0 + dt.timedelta(hours=24)
    si = cohort([creat(T0, base), creat(t1, later)])
    us = cohort([creat(T0, base / PER_MG_DL, "mg/dL"), creat(t1, later / PER_MG_DL, "mg/dL")])
    assert stage(si) == stage(us)


# ## Test 6: Cockcroft-Gault ----


def test_cockcroft_gault_worked_examples_by_hand():
    # male, 60 y, 72 kg, SCr 1.0 mg/dL: (140 - 60) x 72 / (72 x 1.0) = 80 mL/min; female x 0.85 = 68
    assert cockcroft_gault(60, 72, PER_MG_DL, "M") == pytest.approx(80.0, rel=1e-12)
    assert cockcroft_gault(60, 72, PER_MG_DL, "F") == pytest.approx(68.0, rel=1e-12)
    # 80 y, 60 kg, 120 umol/L: 60 x 60 / (72 x 120 / 88.4017) = 36.834 mL/min; female 31.309
    assert cockcroft_gault(80, 60, 120.0, "M") == pytest.approx(36.834, abs=5e-4)
    assert cockcroft_gault(80, 60, 120.0, "F") == pytest.approx(31.309, abs=5e-4)


def test_cockcroft_gault_is_vectorised_and_needs_sex():
    out = cockcroft_gault(np.array([60, 80, 60]), np.array([72, 60, 72]), np.array([PER_MG_DL, 120.0, PER_MG_DL]), np.array(["M", "F", "U"]))
    assert isinstance(out, np.ndarray) and out.shape == (3,)
    assert out[0] == pytest.approx(80.0) and out[1] == pytest.approx(31.309, abs=5e-4)
    assert math.isnan(out[2])


def test_cockcroft_gault_does_not_round_low_creatinine():
    # 0.5 mg/dL stays 0.5 (some protocols round up to 1.0): 80 x 72 / (72 x 0.5) = 160
    assert cockcroft_gault(60, 72, 0.5 * PER_MG_DL, "M") == pytest.approx(160.0)


@given(
    age=st.floats(18, 100),
    weight=st.floats(30, 200),
    c1=st.floats(10, 3000),
    c2=st.floats(10, 3000),
    sex=st.sampled_from(["M", "F"]),
)
def test_cockcroft_gault_decreases_as_creatinine_rises(age, weight, c1, c2, sex):
    lo, hi = sorted((c1, c2))
    assert cockcroft_gault(age, weight, lo, sex) >= cockcroft_gault(age, weight, hi, sex)
