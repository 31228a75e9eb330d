"""Reported clinical events act on their own (issue 14, item 4): airway obstruction, mechanical
ventilation, seizure, sepsis, cardiac arrhythmia, dialysis and death raise an alert on the day
reported (critical for the life-threatening ones) and feed the protocol's dose rules as grade >= 3
non-hematologic events, whether or not a syndrome's criteria are met."""
from __future__ import annotations

import copy
import datetime as dt
import json

import polars as pl
import pytest
from typer.testing import CliRunner

from dosewatch.cli import app
from dosewatch.demo import seed_bundle_path
from dosewatch.io import read_any
from dosewatch.io.sdtm_write import write_sdtm
from dosewatch.monitor import evaluate
from dosewatch.protocols import builtin
from dosewatch.record import EVENTS_SCHEMA, Cohort

LEN = builtin("lenalidomide-cll-25mg-2007")
VEN = builtin("venetoclax-cll-rampup")
DAY1 = dt.date(2007, 4, 9)  # seed-2's first lenalidomide dose
DAY12 = DAY1 + dt.timedelta(days=11)


@pytest.fixture(scope="module")
def seed2() -> Cohort:
    """seed-2 up to day 20: on drug, no flare, no event of grade >= 3 yet."""
    return read_any(seed_bundle_path()).cohort.patient("seed-2").known_on(DAY1 + dt.timedelta(days=19))


def with_event(cohort: Cohort, code: str | None, term: str, date: dt.date, grade: int | None = None,
               source: str = "AE") -> Cohort:
    row = {k: None for k in EVENTS_SCHEMA} | {
        "patient_id": "seed-2", "event_id": f"ev-{term}", "code": code, "term": term,
        "time": dt.datetime.combine(date, dt.time(10)), "date": date, "time_known": True, "grade": grade,
        "source": source, "grade_source": None if grade is None else "AETOXGR"}
    events = pl.concat([cohort.events, pl.DataFrame([row], schema=EVENTS_SCHEMA)])
    return Cohort(cohort.patients, cohort.observations, cohort.doses, events)


def on_day(cohort: Cohort, day: int, protocol=LEN):
    return evaluate(cohort, protocol, as_of=DAY1 + dt.timedelta(days=day - 1))[0]


def test_seed_2_has_nothing_severe_before_day_20(seed2):
    a = on_day(seed2, 20)
    assert not [x for x in a.alerts if x.severity == "critical"]
    assert not a.dose_actions and a.state in ("on drug", "off drug week")


CRITICAL = ("AIRWAY", "MECHVENT", "SEIZURE", "SEPSIS", "DEATH")
URGENT = ("ARRHYTHMIA", "DIALYSIS")
TERMS = {"AIRWAY": "Airway obstruction", "MECHVENT": "Mechanical ventilation", "SEIZURE": "Seizure",
         "SEPSIS": "Sepsis", "DEATH": "Death", "ARRHYTHMIA": "Cardiac arrhythmia", "DIALYSIS": "Dialysis"}


@pytest.mark.parametrize("code", CRITICAL + URGENT)
def test_each_reported_event_alerts_and_acts_on_the_day_reported(seed2, code):
    rec = with_event(seed2, code, TERMS[code], DAY12)
    before = on_day(rec, 11)
    assert not [x for x in before.alerts if x.study_day == 12] and not before.dose_actions
    a = on_day(rec, 12)
    (alert,) = [x for x in a.alerts if x.study_day == 12 and x.severity in ("critical", "urgent")]
    assert alert.severity == ("critical" if code in CRITICAL else "urgent"), alert
    assert TERMS[code] in alert.message and alert.evidence[0].ref == f"ev-{TERMS[code]}"
    (action,) = a.dose_actions
    assert action.study_day == 12 and TERMS[code] in action.reason
    if code == "DEATH":
        assert (action.action, action.rule) == ("discontinue", "lenalidomide-cll-25mg-2007:death")
    else:
        assert (action.action, action.rule) == ("hold", "lenalidomide-cll-25mg-2007:other-grade-3")
        assert on_day(rec, 13).state == "held"


def test_a_painless_airway_obstruction_condition_is_critical_and_holds_on_that_day(tmp_path):
    """End to end on a FHIR file: an airway obstruction reported as a Condition on day 12, without the
    pain and lymphocyte rise of a flare."""
    bundle = json.loads(seed_bundle_path().read_text())
    keep = []
    for e in bundle["entry"]:
        r = e["resource"]
        pid = r["id"] if r["resourceType"] == "Patient" else r["subject"]["reference"].split("/")[-1]
        when = r.get("effectiveDateTime") or r.get("onsetDateTime") or r.get("effectivePeriod", {}).get("start") or ""
        if pid == "seed-2" and when[:10] <= "2007-04-28":
            keep.append(e)
    bundle["entry"] = keep
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(bundle))
    airway = copy.deepcopy(bundle)
    airway["entry"].append({"fullUrl": "urn:uuid:airway-1", "resource": {
        "resourceType": "Condition", "id": "airway-1", "subject": {"reference": "Patient/seed-2"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "79688008"}], "text": "stridor, airway obstruction"},
        "onsetDateTime": "2007-04-20T09:30:00-05:00"}})
    path = tmp_path / "airway.json"
    path.write_text(json.dumps(airway))

    def check(p):
        out = CliRunner().invoke(app, ["check", str(p), "--protocol", LEN.id, "--as-of", "2007-04-20", "--format", "json"])
        assert out.exit_code == 0, out.output
        return json.loads(out.stdout)[0]

    none = check(plain)
    assert not [x for x in none["alerts"] if x["study_day"] == 12 and x["severity"] != "info"]
    assert not none["dose_actions"]
    a = check(path)
    assert not [e for e in a["events"] if e["term"] == "Tumor flare reaction"]  # no flare: painless
    crit = [x for x in a["alerts"] if x["severity"] == "critical"]
    assert [x["study_day"] for x in crit] == [12] and "Airway obstruction reported" in crit[0]["message"]
    assert "secure the airway" in crit[0]["message"]
    assert [(x["study_day"], x["action"], x["rule"]) for x in a["dose_actions"]] == [
        (12, "hold", "lenalidomide-cll-25mg-2007:other-grade-3")]
    (event,) = [e for e in a["events"] if e["term"] == "Airway obstruction"]
    assert event["grade"] is None and event["detail"]["rule_grade"] == 3  # no grade in the record: read as 3


def test_an_sdtm_ae_of_airway_obstruction_acts_the_same(seed2, tmp_path):
    rec = with_event(seed2, "AIRWAY", "Airway obstruction", DAY12)
    write_sdtm(rec, tmp_path)
    ce = pl.read_csv(tmp_path / "ce.csv", infer_schema=False)
    ce.rename({c: "AE" + c[2:] for c in ce.columns if c.startswith("CE")}).with_columns(
        DOMAIN=pl.lit("AE")).write_csv(tmp_path / "ae.csv")
    (tmp_path / "ce.csv").unlink()
    a = evaluate(read_any(tmp_path).cohort, LEN, as_of=DAY12)[0]
    assert [(x.severity, x.study_day) for x in a.alerts if x.severity == "critical"] == [("critical", 12)]
    assert [(x.study_day, x.action) for x in a.dose_actions] == [(12, "hold")]


def test_a_reported_grade_is_used_and_below_3_alerts_without_a_dose_action(seed2):
    a = on_day(with_event(seed2, "AIRWAY", "Airway obstruction", DAY12, grade=2), 12)
    assert [x.severity for x in a.alerts if x.study_day == 12] == ["critical"]  # an emergency whatever its grade
    assert not a.dose_actions
    a = on_day(with_event(seed2, "ARRHYTHMIA", "Cardiac arrhythmia", DAY12, grade=3), 12)
    assert [(x.action, x.study_day) for x in a.dose_actions] == [("hold", 12)]
    # sepsis has no grade below 4 in CTCAE v5.0: a reported grade 2 is read as 4
    a = on_day(with_event(seed2, "SEPSIS", "Sepsis", DAY12, grade=2), 12)
    assert [(x.action, x.study_day) for x in a.dose_actions] == [("hold", 12)]
    assert "grade 4" in a.dose_actions[0].reason


def test_events_outside_the_list_stay_an_info_line(seed2):
    for code, term in (("HOSPITAL", "Hospitalization"), (None, "Pneumonitis")):
        a = on_day(with_event(seed2, code, term, DAY12), 12)
        assert [x.severity for x in a.alerts if x.study_day == 12] == ["info"] and not a.dose_actions


def test_venetoclax_interrupts_at_the_same_dose_for_a_reported_seizure(seed2):
    doses = seed2.doses.with_columns(drug=pl.when(pl.col("drug") == "lenalidomide").then(pl.lit("venetoclax"))
                                     .otherwise("drug"))
    rec = with_event(Cohort(seed2.patients, seed2.observations, doses, seed2.events), "SEIZURE", "Seizure", DAY12)
    a = on_day(rec, 12, VEN)
    assert [x.severity for x in a.alerts if x.study_day == 12 and x.rule != "adherence:lab-missing"][:1] == ["critical"]
    assert [(x.study_day, x.action, x.rule) for x in a.dose_actions] == [(12, "hold", "venetoclax-cll-rampup:other-grade-3")]


def test_febrile_neutropenia_with_sepsis_is_critical_and_the_hold_cites_its_rule():
    seed = read_any(seed_bundle_path()).cohort.patient("seed-2")
    a = on_day(seed, 25)
    (fn,) = [x for x in a.alerts if x.message.startswith("Febrile neutropenia")]
    assert fn.severity == "critical" and fn.study_day == 25 and fn.rule.endswith(":neutropenia")
    hold = a.dose_actions[0]
    assert (hold.study_day, hold.action, hold.rule) == (25, "hold", "lenalidomide-cll-25mg-2007:neutropenia")
    assert hold.reason.startswith("Febrile neutropenia")
    # without the sepsis the same febrile neutropenia is urgent
    quiet = Cohort(seed.patients, seed.observations, seed.doses, seed.events.filter(pl.col("code") != "SEPSIS"))
    (fn,) = [x for x in on_day(quiet, 25).alerts if x.message.startswith("Febrile neutropenia")]
    assert fn.severity == "urgent"


def test_the_inbox_card_puts_what_a_reported_event_asks_first(seed2):
    from dosewatch.web.display import alert_parts
    from dosewatch.web.queries import rule_info

    a = on_day(with_event(seed2, "AIRWAY", "Airway obstruction", DAY12), 12)
    (alert,) = [x.as_dict() for x in a.alerts if x.severity == "critical"]
    parts = alert_parts({**alert, "info": rule_info(LEN, alert["rule"], alert["message"])})
    assert parts["what"] == "Airway obstruction reported (no grade; dose rules read grade 3)"
    assert parts["todo"].startswith("Emergency: secure the airway now") and "hold lenalidomide" in parts["todo"]
    b = on_day(with_event(seed2, "AIRWAY", "Airway obstruction", DAY12, grade=2), 12)
    (alert,) = [x.as_dict() for x in b.alerts if x.severity == "critical"]
    parts = alert_parts({**alert, "info": rule_info(LEN, alert["rule"], alert["message"])})
    assert parts["what"] == "Airway obstruction reported (grade 2)" and parts["todo"].startswith("Emergency: secure")


def test_a_fhir_adverse_event_with_its_grade_acts_the_same(tmp_path):
    bundle = json.loads(seed_bundle_path().read_text())
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["id"] == "seed-2"
                       or e["resource"].get("subject", {}).get("reference") == "Patient/seed-2"]
    bundle["entry"].append({"fullUrl": "urn:uuid:ae-1", "resource": {
        "resourceType": "AdverseEvent", "id": "ae-1", "actuality": "actual", "subject": {"reference": "Patient/seed-2"},
        "event": {"coding": [{"system": "http://snomed.info/sct", "code": "91175000"}], "text": "Seizure"},
        "date": "2007-04-20T11:00:00-05:00",
        "extension": [{"url": "https://dosewatch.org/fhir/StructureDefinition/grade", "valueInteger": 4}]}})
    path = tmp_path / "ae.json"
    path.write_text(json.dumps(bundle))
    got = read_any(path)
    assert not [p for p in got.problems if p.severity == "error"]
    a = evaluate(got.cohort, LEN, as_of=DAY12)[0]
    (seizure,) = [e for e in a.events if e.term == "Seizure"]
    assert seizure.grade == 4 and "rule_grade" not in seizure.detail  # the reported grade is the one read
    assert [(x.severity, x.study_day) for x in a.alerts if x.severity == "critical"] == [("critical", 12)]
    assert [(x.study_day, x.action) for x in a.dose_actions] == [(12, "hold")] and "grade 4" in a.dose_actions[0].reason
