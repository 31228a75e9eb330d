"""Tumor flare reaction detection and CTCAE v3.0 "Tumor flare" grading (criteria/flare.py)."""
import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dosewatch.criteria.flare import detect_tumor_flare
from dosewatch.record import DOSES_SCHEMA, EVENTS_SCHEMA, OBSERVATIONS_SCHEMA, PATIENTS_SCHEMA, Cohort, frame

DAY1 = dt.date(2024, 3, 1)
UNITS = {"LNDIAM": "cm", "SPLEEN": "cm", "LIVER": "cm", "LYM": "10*9/L", "TEMP": "Cel"}


def day(n: int) -> dt.date:
    """Study day n (no day 0)."""
    return DAY1 + dt.timedelta(days=n - 1 if n > 0 else n)


def ob(code: str, study_day: int, value: float, site: str | None = None, hour: int = 9) -> dict:
    when = dt.datetime.combine(day(study_day), dt.time(hour))
    unit = UNITS.get(code, "1")
    return {"patient_id": "p1", "code": code, "time": when, "date": when.date(), "time_known": True,
            "value": value, "unit": unit, "orig_value": value, "orig_unit": unit, "site": site}


def cohort(obs: list[dict], events: list[dict] = (), doses: list[dict] = ()) -> Cohort:
    for i, row in enumerate(obs):
        row.setdefault("obs_id", f"o{i}")
    evs = [{"patient_id": "p1", "event_id": f"e{i}", "time_known": False, "date": day(d), "code": code}
           for i, (code, d) in enumerate(events)]
    dose_rows = [{"patient_id": "p1", "dose_id": f"d{i}", "drug": "lenalidomide", "date": day(d),
                  "time": dt.datetime.combine(day(d), dt.time(8)), "time_known": True, "dose": mg,
                  "dose_unit": "mg", "status": "completed"} for i, (d, mg) in enumerate(doses)]
    patients = frame([{"patient_id": "p1", "sex": "M"}], PATIENTS_SCHEMA)
    return Cohort(patients, frame(obs, OBSERVATIONS_SCHEMA), frame(dose_rows, DOSES_SCHEMA), frame(evs, EVENTS_SCHEMA))


def flare(c: Cohort, **kw) -> list:
    return detect_tumor_flare(c, {"p1": DAY1}, **kw)


BASE = [ob("LNDIAM", -2, 4.0, "neck"), ob("LNDIAM", -2, 1.6, "axilla"), ob("LYM", -2, 40.0), ob("SPLEEN", -2, 3.0),
        ob("TONSIL", -2, 1)]


# ## Test 1: the rule: a lymphoid finding plus a companion on the same day ----


def test_tender_node_with_mild_pain_is_a_grade_1_flare():
    (event,) = flare(cohort([ob("LNTENDER", 3, 1, "neck"), ob("PAIN", 3, 1)]))
    assert (event.term, event.criteria, event.grade, event.onset) == ("Tumor flare reaction", "ctcae-3.0", 1, day(3))
    assert {e.ref for e in event.evidence} == {"o0", "o1"}
    assert event.detail["findings"] == ["node-tender", "pain"]


@pytest.mark.parametrize(
    "obs",
    [
        [ob("LNTENDER", 3, 1, "neck")],  # lymphoid finding alone
        [ob("PAIN", 3, 2), ob("TEMP", 3, 38.5), ob("RASH", 3, 1)],  # companions alone
        [ob("LNTENDER", 3, 0, "neck"), ob("PAIN", 3, 2)],  # not tender
        [ob("LNTENDER", 3, 1, "neck"), ob("PAIN", 4, 2)],  # companion on another day
        [ob("LNTENDER", 3, 1, "neck"), ob("PAIN", 3, 0), ob("RASH", 3, 0), ob("FEVER", 3, 0), ob("TEMP", 3, 37.9)],
    ],
)
def test_no_flare(obs):
    assert flare(cohort(obs)) == []


@pytest.mark.parametrize(
    ("companion", "expected"),
    [
        (ob("TEMP", 3, 38.0), 1), (ob("TEMP", 3, 37.99), 0), (ob("FEVER", 3, 1), 1), (ob("RASH", 3, 1), 1),
        (ob("PAINNRS", 3, 1), 1), (ob("PAINNRS", 3, 0), 0),
        (ob("LYM", 3, 50.0), 1), (ob("LYM", 3, 49.99), 0),  # ALC +25% of baseline 40 exactly vs just below
    ],
)
def test_each_companion(companion, expected):
    assert len(flare(cohort([*BASE, ob("LNTENDER", 3, 1, "neck"), companion]))) == expected


@pytest.mark.parametrize(
    ("site", "value", "expected"),
    [
        ("neck", 5.0, 1),  # 4.0 -> 5.0: +25%, +1.0 cm
        ("neck", 4.99, 0),  # +24.75%
        ("axilla", 2.0, 0),  # 1.6 -> 2.0: +25% but only +0.4 cm
        ("axilla", 2.1, 1),  # +0.5 cm, +31%
        ("groin", 9.0, 0),  # no baseline at this site
    ],
)
def test_node_enlargement_thresholds_per_site(site, value, expected):
    events = flare(cohort([*BASE, ob("LNDIAM", 4, value, site), ob("TEMP", 4, 38.4)]))
    assert len(events) == expected
    if expected:
        refs = [e.ref for e in events[0].evidence]
        assert refs[-1] == ("o0" if site == "neck" else "o1")  # the baseline measurement is evidence


@pytest.mark.parametrize(("code", "value", "expected"), [("SPLEEN", 4.0, 1), ("SPLEEN", 3.9, 0), ("TONSIL", 2, 1), ("TONSIL", 1, 0)])
def test_spleen_and_tonsil_enlargement(code, value, expected):
    assert len(flare(cohort([*BASE, ob(code, 5, value), ob("RASH", 5, 1)]))) == expected


def test_companion_days_setting_is_in_the_data_file():
    from dosewatch.criteria.renal import load_table

    assert load_table("tumor-flare.yaml")["companion_days"] == 0


# ## Test 2: the window after day 1, and re-anchoring at dose increases ----


@pytest.mark.parametrize(("study_day", "expected"), [(-1, 0), (1, 1), (57, 1), (58, 0)])
def test_window_day_1_to_56_days_after(study_day, expected):
    assert len(flare(cohort([ob("LNTENDER", study_day, 1, "neck"), ob("PAIN", study_day, 1)]))) == expected


def test_reanchor_at_dose_increase():
    obs = [ob("LNDIAM", 25, 3.0, "neck"), ob("LNDIAM", 80, 4.0, "neck"), ob("TEMP", 80, 38.2)]
    doses = [(d, 2.5) for d in range(1, 30)] + [(30, 5.0)]  # continuous: the only new anchor is the increase
    assert flare(cohort(obs, doses=doses)) == []
    (event,) = flare(cohort(obs, doses=doses), reanchor_on_dose_increase=True)
    assert event.onset == day(80) and event.detail["anchor"] == day(30).isoformat()


def test_restart_after_a_pause_opens_a_new_window():
    # dosed days 1-8, paused, restarted day 60: a flare on day 62 is past day 1's window but in the restart's
    obs = [ob("LNTENDER", 62, 1, "neck"), ob("PAIN", 62, 2)]
    doses = [(d, 25.0) for d in range(1, 9)] + [(60, 10.0)]
    (event,) = flare(cohort(obs, doses=doses))
    assert event.onset == day(62) and event.detail["anchor"] == day(60).isoformat()
    assert flare(cohort(obs, doses=[(d, 25.0) for d in range(1, 9)])) == []


def test_a_clear_examination_separates_two_flares():
    obs = [ob("LNTENDER", 3, 1, "neck"), ob("PAIN", 3, 2), ob("LNTENDER", 10, 0, "neck"), ob("PAIN", 10, 0),
           ob("LNTENDER", 20, 1, "neck"), ob("PAIN", 20, 1)]
    events = flare(cohort(obs))
    assert [(e.onset, e.grade) for e in events] == [(day(3), 2), (day(20), 1)]


def test_an_ongoing_flare_is_not_repeated_from_a_later_anchor():
    obs = [ob("LNTENDER", d, 1, "neck") for d in (3, 10, 20)] + [ob("PAIN", d, 1) for d in (3, 10, 20)]
    events = flare(cohort(obs, doses=[(1, 5.0), (8, 10.0)]), reanchor_on_dose_increase=True)
    assert [e.onset for e in events] == [day(3)]


# ## Test 3: CTCAE v3.0 grade from pain, airway, death ----


@pytest.mark.parametrize(
    ("code", "value", "grade"),
    [("PAIN", 1, 1), ("PAIN", 2, 2), ("PAIN", 3, 3), ("PAINNRS", 4, 1), ("PAINNRS", 5, 2), ("PAINNRS", 6, 2), ("PAINNRS", 7, 3)],
)
def test_grade_from_recorded_pain(code, value, grade):
    (event,) = flare(cohort([ob("LNTENDER", 3, 1, "neck"), ob(code, 3, value)]))
    assert event.grade == grade


def test_painless_flare_is_grade_1_and_worst_pain_in_the_flare_counts():
    (event,) = flare(cohort([ob("LNTENDER", 3, 1, "neck"), ob("TEMP", 3, 38.4)]))
    assert event.grade == 1
    obs = [ob("LNTENDER", 3, 1, "neck"), ob("FEVER", 3, 1), ob("LNTENDER", 5, 1, "neck"), ob("RASH", 5, 1), ob("PAIN", 4, 3)]
    (event,) = flare(cohort(obs))
    assert event.grade == 3 and "o4" in [e.ref for e in event.evidence]


@pytest.mark.parametrize(("code", "when", "grade"), [("AIRWAY", 4, 4), ("MECHVENT", 5, 4), ("DEATH", 4, 5), ("AIRWAY", 2, 1), ("AIRWAY", 6, 4), ("AIRWAY", 7, 1)])
def test_airway_compromise_is_grade_4_and_death_5(code, when, grade):
    # flare on days 3-4; clinical events count from onset (day 3) to 2 days after the last flare day (day 6)
    obs = [ob("LNTENDER", 3, 1, "neck"), ob("PAIN", 3, 1), ob("LNTENDER", 4, 1, "neck"), ob("PAIN", 4, 1)]
    (event,) = flare(cohort(obs, events=[(code, when)]))
    assert event.grade == grade
    if grade >= 4:
        assert event.evidence[-1].ref == "e0"


@settings(max_examples=30, deadline=None)
@given(a=st.integers(0, 10), b=st.integers(0, 10))
def test_grade_never_falls_as_nrs_pain_rises(a, b):
    lo, hi = sorted((a, b))
    g = [flare(cohort([ob("LNTENDER", 3, 1, "neck"), ob("RASH", 3, 1), ob("PAINNRS", 3, v)]))[0].grade for v in (lo, hi)]
    assert g[0] <= g[1]
