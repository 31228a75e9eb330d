"""CTCAE v5.0 Febrile neutropenia and Fever (criteria/neutropenia.py)."""
import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dosewatch.analytes import catalog
from dosewatch.criteria.neutropenia import detect_febrile_neutropenia, fever_grade
from dosewatch.record import EVENTS_SCHEMA, OBSERVATIONS_SCHEMA, PATIENTS_SCHEMA, Cohort, frame

DAY1 = dt.date(2024, 3, 1)
T0 = dt.datetime(2024, 3, 3, 8, 0)
F_SCALE, F_OFFSET = catalog()["TEMP"].conversion("[degF]")


def temp(when: dt.datetime, value: float, unit: str = "Cel", time_known: bool = True) -> dict:
    canonical = value * F_SCALE + F_OFFSET if unit == "[degF]" else value
    return {"patient_id": "p1", "code": "TEMP", "time": when, "date": when.date(), "time_known": time_known,
            "value": canonical, "unit": "Cel", "orig_value": value, "orig_unit": unit}


def anc(when: dt.datetime, value: float) -> dict:
    return {"patient_id": "p1", "code": "NEUT", "time": when, "date": when.date(), "time_known": True,
            "value": value, "unit": "10*9/L", "orig_value": value, "orig_unit": "10*9/L"}


def cohort(obs: list[dict], events: list[dict] = ()) -> Cohort:
    for i, row in enumerate(obs):
        row.setdefault("obs_id", f"o{i}")
    evs = [{"patient_id": "p1", "event_id": f"e{i}", "time_known": False, **e} for i, e in enumerate(events)]
    patients = frame([{"patient_id": "p1", "sex": "F"}], PATIENTS_SCHEMA)
    return Cohort(patients, frame(obs, OBSERVATIONS_SCHEMA), events=frame(evs, EVENTS_SCHEMA))


def fn(c: Cohort, **kw) -> list:
    return detect_febrile_neutropenia(c, {"p1": DAY1}, **kw)


# ## Test 1: a single temperature > 38.3 C (101 F) ----


@pytest.mark.parametrize(("t", "expected"), [(38.3, 0), (38.31, 1)])
def test_single_temperature_38_3_exact_vs_38_31(t, expected):
    assert len(fn(cohort([temp(T0, t), anc(T0, 0.5)]))) == expected


@pytest.mark.parametrize(("t", "expected"), [(101.0, 0), (101.01, 1)])
def test_single_temperature_in_fahrenheit_uses_101(t, expected):
    assert len(fn(cohort([temp(T0, t, "[degF]"), anc(T0, 0.5)]))) == expected


def test_the_101_f_vs_38_3_c_gap():
    # 101.0 F is 38.33 C: above 38.3 C when converted, but not above the printed 101 F (native-unit rule)
    assert 38.3 < 101.0 * F_SCALE + F_OFFSET
    assert fn(cohort([temp(T0, 101.0, "[degF]"), anc(T0, 0.5)])) == []
    assert len(fn(cohort([temp(T0, 38.33), anc(T0, 0.5)]))) == 1


# ## Test 2: a sustained temperature >= 38.0 C (100.4 F) for more than one hour ----


@pytest.mark.parametrize(("minutes", "expected"), [(60, 0), (61, 1)])
def test_sustained_38_0_for_60_vs_61_minutes(minutes, expected):
    obs = [temp(T0, 38.0), temp(T0 + dt.timedelta(minutes=minutes), 38.0), anc(T0, 0.5)]
    assert len(fn(cohort(obs))) == expected


def test_sustained_needs_no_reading_below_38_in_between():
    obs = [temp(T0, 38.1), temp(T0 + dt.timedelta(minutes=30), 37.9), temp(T0 + dt.timedelta(minutes=90), 38.1), anc(T0, 0.5)]
    assert fn(cohort(obs)) == []


def test_sustained_in_fahrenheit_and_37_99_is_not_fever():
    f = [temp(T0, 100.4, "[degF]"), temp(T0 + dt.timedelta(minutes=61), 100.4, "[degF]"), anc(T0, 0.5)]
    assert len(fn(cohort(f))) == 1
    low = [temp(T0, 37.99), temp(T0 + dt.timedelta(minutes=120), 37.99), anc(T0, 0.5)]
    assert fn(cohort(low)) == []


def test_sustained_needs_clock_times():
    obs = [temp(T0, 38.1, time_known=False), temp(T0 + dt.timedelta(days=1), 38.1, time_known=False), anc(T0, 0.5)]
    assert fn(cohort(obs)) == []


def test_sustained_evidence_names_the_start_of_the_run():
    obs = [temp(T0, 38.1), temp(T0 + dt.timedelta(minutes=90), 38.2), anc(T0, 0.4)]
    (event,) = fn(cohort(obs))
    assert [e.ref for e in event.evidence] == ["o1", "o0", "o2"]
    assert event.onset == T0.date() and event.grade == 3 and event.term == "Febrile neutropenia"


# ## Test 3: ANC < 1.0 x 10^9/L, paired within the window ----


@pytest.mark.parametrize(("value", "expected"), [(1.0, 0), (0.99, 1)])
def test_anc_1_0_is_not_neutropenic(value, expected):
    assert len(fn(cohort([temp(T0, 39.0), anc(T0, value)]))) == expected


@pytest.mark.parametrize(("hours", "expected"), [(24, 1), (25, 0)])
def test_pairing_window_default_24_hours(hours, expected):
    assert len(fn(cohort([temp(T0, 39.0), anc(T0 + dt.timedelta(hours=hours), 0.5)]))) == expected


def test_pairing_window_is_a_setting():
    obs = [temp(T0, 39.0), anc(T0 - dt.timedelta(hours=30), 0.5)]
    assert fn(cohort(obs)) == []
    (event,) = fn(cohort(obs), window_hours=36)
    assert event.detail["window_hours"] == 36


def test_fevers_close_together_are_one_episode_and_far_apart_two():
    obs = [temp(T0, 39.0), temp(T0 + dt.timedelta(hours=12), 39.1), anc(T0, 0.5),
           temp(T0 + dt.timedelta(days=10), 39.0), anc(T0 + dt.timedelta(days=10), 0.3)]
    events = fn(cohort(obs))
    assert [e.onset for e in events] == [T0.date(), T0.date() + dt.timedelta(days=10)]


def test_fever_before_day_1_is_not_reported():
    before = T0 - dt.timedelta(days=5)
    assert fn(cohort([temp(before, 39.0), anc(before, 0.5)])) == []


# ## Test 4: grades 4 and 5 from clinical facts ----


@pytest.mark.parametrize(("code", "grade"), [("SEPSIS", 4), ("MECHVENT", 4), ("DEATH", 5), ("HOSPITAL", 3)])
def test_grade_from_clinical_events(code, grade):
    when = T0 + dt.timedelta(days=1)
    (event,) = fn(cohort([temp(T0, 39.0), anc(T0, 0.5)], [{"code": code, "time": when, "date": when.date()}]))
    assert event.grade == grade
    if grade > 3:
        assert event.evidence[-1].ref == "e0"


# ## Test 5: CTCAE v5.0 Fever grade ----


@pytest.mark.parametrize(
    ("t", "grade"), [(37.99, 0), (38.0, 1), (39.0, 1), (39.01, 2), (40.0, 2), (40.01, 3), (float("nan"), 0)]
)
def test_fever_grade_bands(t, grade):
    assert fever_grade(t) == grade


def test_fever_grade_4_needs_more_than_24_hours_above_40():
    assert fever_grade(np.array([40.5, 40.5, 40.5]), np.array([0, 24, 24.5])).tolist() == [3, 3, 4]


@settings(max_examples=100)
@given(a=st.floats(30, 44), b=st.floats(30, 44))
def test_fever_grade_is_monotone(a, b):
    lo, hi = sorted((a, b))
    assert fever_grade(lo) <= fever_grade(hi)


@settings(max_examples=40, deadline=None)
@given(c=st.floats(36.0, 41.0))
def test_same_temperature_in_two_units_gives_the_same_answer_outside_the_gap(c):
    if 38.3 <= c <= (101.0 - 32) / 1.8 + 1e-6:  # the named gap between 38.3 C and 101 F
        return
    f = c * 1.8 + 32
    in_c = fn(cohort([temp(T0, c), anc(T0, 0.5)]))
    in_f = fn(cohort([temp(T0, f, "[degF]"), anc(T0, 0.5)]))
    assert len(in_c) == len(in_f)
