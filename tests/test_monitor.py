"""The monitor on the seed abstract's four patients (the shipped synthetic FHIR bundle): each alert and
action on the first day the data support it, never earlier and never later."""
import datetime as dt

import pytest

from dosewatch.demo import seed_bundle_path
from dosewatch.io import read_any
from dosewatch.monitor import evaluate
from dosewatch.protocols import builtin

PROTOCOL = builtin("lenalidomide-cll-25mg-2007")


@pytest.fixture(scope="module")
def seed():
    return read_any(seed_bundle_path()).cohort


def on(seed, pid, day):
    """The assessment of one patient as of the end of a study day."""
    record = seed.patient(pid)
    day1 = record.first_dose_dates("lenalidomide")[pid]
    return evaluate(record, PROTOCOL, as_of=day1 + dt.timedelta(days=day - 1))[0]


def alerts(a, rule_suffix):
    return [x for x in a.alerts if x.rule.endswith(rule_suffix)]


def test_patient_1_missed_steroid_is_flagged_on_day_3(seed):
    assert not alerts(on(seed, "seed-1", 2), "prophylaxis-not-done")
    (first, *_) = alerts(on(seed, "seed-1", 3), "prophylaxis-not-done")
    assert first.study_day == 3 and "prednisone" in first.message and first.severity == "urgent"


def test_patient_1_laboratory_tls_on_day_4_holds_the_drug(seed):
    assert not [e for e in on(seed, "seed-1", 3).events if e.term == "Laboratory tumor lysis syndrome"]
    a = on(seed, "seed-1", 4)
    (ltls,) = [e for e in a.events if e.term == "Laboratory tumor lysis syndrome"]
    assert ltls.criteria == "cairo-bishop-2004" and ltls.onset == dt.date(2007, 3, 8)
    (tls_alert,) = alerts(a, ":tls")
    assert tls_alert.severity == "critical" and tls_alert.study_day == 4
    assert [(x.action, x.study_day, x.rule) for x in a.dose_actions][:1] == [("hold", 4, "lenalidomide-cll-25mg-2007:tls")]
    assert a.dlt["status"] == "DLT" and a.dlt["study_day"] == 4


def test_patient_1_dose_given_after_the_hold_is_flagged(seed):
    a = on(seed, "seed-1", 5)
    (held,) = alerts(a, "dose-while-held")
    assert held.study_day == 5


def test_patient_1_clinical_tls_and_death(seed):
    a = on(seed, "seed-1", 10)
    clinical = [e for e in a.events if e.term == "Clinical tumor lysis syndrome"]
    assert clinical and clinical[0].onset == dt.date(2007, 3, 10)  # day 6: creatinine >= 1.5 x ULN
    assert a.state == "dead"
    assert on(seed, "seed-1", 9).state != "dead"


def test_patient_2_febrile_neutropenia_on_day_25_not_before(seed):
    assert not [e for e in on(seed, "seed-2", 24).events if e.term == "Febrile neutropenia"]
    a = on(seed, "seed-2", 25)
    (fn,) = [e for e in a.events if e.term == "Febrile neutropenia"]
    assert fn.onset == dt.date(2007, 5, 3) and fn.grade >= 3
    assert any(x.rule.endswith(":neutropenia") and x.study_day == 25 for x in a.alerts)
    assert a.dlt["status"] == "DLT" and a.dlt["event"] == "Febrile neutropenia"


def test_patient_2_is_in_the_dlt_window_before_day_25(seed):
    a = on(seed, "seed-2", 20)
    assert a.dlt["status"] == "in window" and a.dlt["days_left"] == 8
    assert a.state == "on drug"
    assert on(seed, "seed-2", 23).state == "off drug week"


def test_patient_3_flare_on_day_8_then_recurrences_after_each_reduction(seed):
    assert not [e for e in on(seed, "seed-3", 7).events if e.term == "Tumor flare reaction"]
    a = on(seed, "seed-3", 64)
    flares = [(e.onset, e.grade) for e in a.events if e.term == "Tumor flare reaction"]
    day1 = dt.date(2007, 5, 7)
    assert [((d - day1).days + 1, g) for d, g in flares] == [(8, 3), (31, 2), (59, 2)]
    actions = [(x.study_day, x.action, x.dose) for x in a.dose_actions]
    assert actions[0] == (8, "hold", 25.0)
    assert (29, "resume", 10.0) in actions  # restarted at 10 mg, below the rule's 20 mg


def test_patient_4_airway_flare_in_the_off_week_discontinues(seed):
    a = on(seed, "seed-4", 25)
    flare = [e for e in a.events if e.term == "Tumor flare reaction"]
    assert flare and flare[-1].grade == 4
    (stop,) = [x for x in a.dose_actions if x.action == "discontinue"]
    assert stop.study_day == 25 or stop.study_day == (flare[-1].onset - dt.date(2007, 6, 4)).days + 1
    assert any(x.severity == "critical" and x.rule.endswith(":airway") and x.study_day == 25 for x in a.alerts)
    assert a.state == "off study"


def test_assessment_json_shape(seed):
    d = on(seed, "seed-2", 25).as_dict()
    assert {"patient_id", "alerts", "dose_actions", "dlt", "state", "events", "protocol_version"} <= set(d)
    alert = d["alerts"][0]
    assert {"study_day", "date", "severity", "message", "rule", "evidence"} <= set(alert)
    action = d["dose_actions"][0]
    assert {"study_day", "drug", "action", "level", "dose", "rule"} <= set(action)


def test_today_lists_planned_dose_and_due_assessments(seed):
    a = on(seed, "seed-2", 3)
    assert a.today["study_drug"]["dose"] == 25.0
    assert a.today["prophylaxis"] == [{"drug": "dexamethasone", "dose": 12.0, "unit": "mg"}]
    assert "K" in a.today["assessments_due"] and a.today["cycle"] == 1 and a.today["cycle_day"] == 3


def test_missing_required_lab_is_reported_the_day_after(seed):
    record = seed.patient("seed-2")
    drop = record.observations.filter(~((record.observations["code"] == "K") & (record.observations["date"] == dt.date(2007, 4, 11))))
    from dosewatch.record import Cohort

    thinner = Cohort(record.patients, drop, record.doses, record.events)
    same_day = evaluate(thinner, PROTOCOL, as_of=dt.date(2007, 4, 11))[0]
    assert not [f for f in same_day.adherence if f.kind == "lab-missing"]  # still due today
    next_day = evaluate(thinner, PROTOCOL, as_of=dt.date(2007, 4, 12))[0]
    (missing,) = [f for f in next_day.adherence if f.kind == "lab-missing"]
    assert missing.study_day == 3 and "K" in missing.message.split(": ")[1].split(", ")
