"""History consistency: one evaluation at the end gives every alert, event and dose action the day a
day-by-day replay (the monitor run as of the end of each day, as `dosewatch demo` does) first shows it.

For every replayed day d: what the final evaluation knew by d (alerts by ``known_on``, dose actions by
date, events by the day they were first supported) equals the replay's evaluation as of d, item for
item. Events are compared from the patient's day 1 (before it, pretreatment values are findings of
their own; from day 1 they are the baseline). Days are sampled to keep the run short: the seed patients
every day of their first five weeks and every fourth day after; 2,000 generated patients (enrolled over
four weeks, so each sampled calendar day meets them on different study days) on every seventh day.
"""
from __future__ import annotations

import datetime as dt

import pytest

from dosewatch.demo import PROTOCOL, seed_bundle_path
from dosewatch.io import read_any
from dosewatch.monitor import Assessment, evaluate
from dosewatch.monitor.history import SEP, known_on
from dosewatch.protocols import builtin
from dosewatch.record import Cohort
from dosewatch.synthetic import synthetic_cohort


def known_by(a: Assessment, day: dt.date | None = None) -> set[tuple]:
    """The alerts, dose actions and events of ``a`` the record supported by ``day`` (all without)."""
    out: set[tuple] = set()
    for x in a.alerts:
        if day is None or x.known_on <= day:
            out.add(("alert", x.rule, x.date, x.severity, x.message, tuple(e.ref for e in x.evidence)))
    for x in a.dose_actions:
        if day is None or x.date <= day:
            out.add(("action", x.rule, x.date, x.action, x.level, x.dose))
    if a.day1 is not None and (day or a.as_of) >= a.day1:
        for e in a.events:
            if day is None or known_on(e) <= day:
                out.add(("event", e.term, e.criteria, e.grade, e.onset, tuple(x.ref for x in e.evidence)))
    return out


def replay_differences(record: Cohort, protocol, days: list[dt.date], as_of: dt.date) -> list[tuple]:
    final = {a.patient_id: a for a in evaluate(record, protocol, as_of)}
    for a in final.values():  # a copy's ids never leak out of the history
        assert SEP not in repr(known_by(a)) + repr([e.detail for e in a.events])
    differences = []
    for day in days:
        for a in evaluate(record, protocol, day):
            got, want = known_by(final[a.patient_id], day), known_by(a)
            if got != want:
                differences.append((day, a.patient_id, sorted(got - want, key=str)[:3], sorted(want - got, key=str)[:3]))
    return differences


def last_date(record: Cohort) -> dt.date:
    return max(t["date"].max() for t in (record.observations, record.doses, record.events) if t.height)


@pytest.fixture(scope="module")
def seed():
    return read_any(seed_bundle_path()).cohort


@pytest.mark.parametrize("pid", ["seed-1", "seed-2", "seed-3", "seed-4"])
def test_seed_patients_replayed_day_by_day_match_one_evaluation_at_the_end(seed, pid):
    protocol = builtin(PROTOCOL)
    record = seed.patient(pid)
    d1 = record.first_dose_dates(protocol.study_drug.drug)[pid]
    last = max(last_date(record), record.patients["deceased_date"][0] or d1)
    days = [d1 + dt.timedelta(days=k) for k in [*range(-3, 36), *range(36, (last - d1).days + 1, 4)]]
    assert replay_differences(record, protocol, [d for d in days if d <= last], last) == []


def test_generated_patients_replayed_match_one_evaluation_at_the_end():
    # A third of the patients on a toxicity trajectory (TLS, neutropenia, flare), so that holds,
    # resumes and grades that rise over days are common.
    cohort, as_of = synthetic_cohort(2000, seed=7, last_patient_day=14,
                                     toxic={"tls": 0.12, "neutropenia": 0.08, "flare": 0.12})
    protocol = builtin("lenalidomide-cll-escalation")
    first = cohort.observations["date"].min()
    days = [first + dt.timedelta(days=k) for k in range(2, (as_of - first).days, 7)]
    final = evaluate(cohort, protocol, as_of)
    assert sum(len(a.dose_actions) for a in final) > 100  # the trajectories do act
    # episodes that rose through grades over days, and alerts with later confirming values
    aki = [{e.grade for e in a.events if e.term == "Acute kidney injury" and e.criteria == "kdigo-2012"} for a in final]
    assert sum(len(grades) > 1 for grades in aki) >= 5
    assert sum(any(x.followup for x in a.alerts) for a in final) > 50
    assert replay_differences(cohort, protocol, days, as_of) == []


def test_alert_evidence_is_known_on_its_day_and_later_values_are_followup(seed):
    for a in evaluate(seed, builtin(PROTOCOL)):
        for alert in a.alerts:
            assert all(e.date <= alert.known_on for e in alert.evidence), alert
            assert all(e.date > alert.known_on for e in alert.followup), alert
            assert all(SEP not in e.ref for e in (*alert.evidence, *alert.followup)), alert
    seed1 = evaluate(seed.patient("seed-1"), builtin(PROTOCOL))[0]
    tls = next(x for x in seed1.alerts if x.rule.endswith(":tls") and x.study_day == 4)
    assert [e.date.isoformat() for e in tls.evidence if e.code == "K"] == []  # the high potassium came on day 5
    assert any(e.code == "K" and e.date == dt.date(2007, 3, 9) for e in tls.followup)


def test_seed_1_flare_grades_are_dated_by_the_day_each_was_supported(seed):
    a = evaluate(seed.patient("seed-1"), builtin(PROTOCOL))[0]
    flare = [(x.study_day, x.severity, x.message.split(":")[0]) for x in a.alerts if "Tumor flare" in x.message]
    assert flare == [(4, "warning", "Tumor flare reaction (grade 1)"), (5, "warning", "Tumor flare reaction (grade 2)"),
                     (8, "critical", "Tumor flare reaction (grade 4)"), (10, "critical", "Tumor flare reaction (grade 5)")]
    assert [(x.study_day, x.action) for x in a.dose_actions] == [(4, "hold"), (8, "discontinue")]
