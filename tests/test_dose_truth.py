"""Recorded doses are the truth: the level and today's dose follow the last dose given and the dose
actions since; a dose that differs from the plan, and planned days with no record of the drug, are
flagged; the study day, state and Today stop counting at death or going off study.

The records are the demo's synthetic NORTH patient (daily labs, lenalidomide 25 mg and dexamethasone
on days 1-14 of the 21/28-day regimen) with its doses changed."""
from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from dosewatch.demo import seed_bundle_path
from dosewatch.io import read_any
from dosewatch.monitor import evaluate
from dosewatch.protocols import builtin
from dosewatch.record import Cohort
from dosewatch.store.demo import north_patient

PROTOCOL = builtin("lenalidomide-cll-25mg-2007")
DAY1 = dt.date(2007, 6, 4)


def date(day: int) -> dt.date:
    return DAY1 + dt.timedelta(days=day - 1)


def with_doses(record: Cohort, change) -> Cohort:
    """``record`` with its lenalidomide rows passed through ``change(frame) -> frame``."""
    len_ = pl.col("drug") == "lenalidomide"
    doses = pl.concat([record.doses.filter(~len_), change(record.doses.filter(len_))]).sort("time")
    return Cohort(record.patients, record.observations, doses, record.events)


def on(record: Cohort, day: int):
    return evaluate(record, PROTOCOL, as_of=date(day))[0]


def kinds(a, kind: str) -> list:
    return [x for x in a.alerts if x.rule == f"adherence:{kind}"]


def reduced_from(day: int, dose: float):
    return lambda d: d.with_columns(pl.when(pl.col("date") >= date(day)).then(dose).otherwise(pl.col("dose")).alias("dose"))


def test_doses_as_planned_give_no_dose_finding_and_the_planned_level():
    a = on(north_patient(), 14)
    assert kinds(a, "dose-differs-from-plan") == [] and kinds(a, "dose-above-plan") == []
    assert (a.level, a.today["study_drug"]["dose"], a.today["study_drug"]["state"]) == (5, 25.0, "on")


def test_a_reduction_the_investigator_made_stands_and_is_flagged_once():
    record = with_doses(north_patient(), reduced_from(8, 15.0))
    assert kinds(on(record, 7), "dose-differs-from-plan") == []
    a = on(record, 14)
    (differs,) = kinds(a, "dose-differs-from-plan")
    assert (differs.study_day, differs.severity) == (8, "warning")
    assert "15 mg given on day 8; plan is 25 mg" in differs.message and "level 3" in differs.message
    assert (a.level, a.today["study_drug"]["dose"]) == (3, 15.0)
    # the next cycle starts at the reduced level too (the regimen has no escalation)
    nxt = on(record, 29)
    assert (nxt.level, nxt.today["study_drug"]["dose"], nxt.today["study_drug"]["state"]) == (3, 15.0, "on")


def test_a_reduction_below_the_lowest_level_is_flagged_every_day():
    record = with_doses(north_patient(), reduced_from(12, 2.5))
    a = on(record, 14)
    assert [x.study_day for x in kinds(a, "dose-differs-from-plan")] == [12, 13, 14]
    assert a.level == 1


def test_a_dose_above_the_plan_does_not_raise_the_plan():
    record = with_doses(north_patient(), lambda d: d.with_columns(
        pl.when(pl.col("date") == date(10)).then(30.0).otherwise(pl.col("dose")).alias("dose")))
    a = on(record, 14)
    (above,) = kinds(a, "dose-above-plan")
    assert above.study_day == 10 and above.severity == "urgent"
    assert kinds(a, "dose-differs-from-plan") == [] and a.level == 5 and a.today["study_drug"]["dose"] == 25.0


def test_a_dose_on_a_day_the_plan_has_none_differs_from_the_plan():
    extra = lambda d: pl.concat([d, d.filter(pl.col("date") == date(14)).with_columns(  # noqa: E731
        date=pl.lit(date(23)), time=pl.col("time") + pl.duration(days=9), dose_id=pl.lit("off-week-dose"))])
    a = on(with_doses(north_patient(), extra), 23)
    (differs,) = kinds(a, "dose-differs-from-plan")
    assert differs.study_day == 23 and "off-day" in differs.message and differs.evidence[0].ref == "off-week-dose"


def test_split_doses_that_add_up_to_the_plan_are_the_plan():
    halves = lambda d: pl.concat([d.with_columns(dose=pl.lit(12.5)),  # noqa: E731
                                  d.with_columns(dose=pl.lit(12.5), dose_id=pl.col("dose_id") + "-b")])
    a = on(with_doses(north_patient(), halves), 14)
    assert kinds(a, "dose-differs-from-plan") == [] and a.level == 5


def test_planned_days_without_a_record_are_flagged_from_the_second_one():
    record = north_patient()  # lenalidomide recorded on days 1-14 only; the plan has it on days 1-21
    assert kinds(on(record, 15), "study-drug-not-recorded") == []  # day 15 is today: not yet missing
    assert kinds(on(record, 16), "study-drug-not-recorded") == []  # one day without a record
    (gap,) = kinds(on(record, 17), "study-drug-not-recorded")
    assert (gap.study_day, gap.known_on, gap.severity) == (16, date(17), "warning")
    assert "days 15 and 16" in gap.message
    # one finding for the whole gap, however long; none in the off week or while the state is held
    assert len(kinds(on(record, 49), "study-drug-not-recorded")) == 1


def test_a_dose_recorded_as_not_taken_is_a_record():
    not_taken = lambda d: pl.concat([d, d.filter(pl.col("date") == date(14)).with_columns(  # noqa: E731
        date=pl.lit(date(15)), time=pl.col("time") + pl.duration(days=1), status=pl.lit("not-done"),
        dose_id=pl.lit("d15-not-taken"))])
    record = with_doses(north_patient(), not_taken)
    assert kinds(on(record, 17), "study-drug-not-recorded") == []  # only day 16 is without a record
    (gap,) = kinds(on(record, 18), "study-drug-not-recorded")
    assert "days 16 and 17" in gap.message


def test_one_missing_day_between_records_is_not_flagged():
    record = with_doses(north_patient(), lambda d: d.filter(pl.col("date") != date(6)))
    assert kinds(on(record, 14), "study-drug-not-recorded") == []
    record = with_doses(north_patient(), lambda d: d.filter(~pl.col("date").is_in([date(6), date(7)])))
    (gap,) = kinds(on(record, 14), "study-drug-not-recorded")
    assert gap.study_day == 7


def test_after_death_nothing_counts_on():
    record = north_patient()
    record = Cohort(record.patients.with_columns(deceased_date=pl.lit(date(10))), record.observations,
                    record.doses.filter(pl.col("date") < date(10)), record.events)
    a = on(record, 40)
    assert a.state == "dead" and a.as_dict()["study_day"] == 10
    assert a.today["study_drug"]["dose"] is None and a.today["prophylaxis"] == [] and a.today["assessments_due"] == []
    assert [x for x in a.alerts if x.rule.startswith("adherence:") and x.date >= date(10)] == []
    alive = on(north_patient(), 40)
    assert alive.as_dict()["study_day"] == 40 and alive.state == "on drug"


@pytest.fixture(scope="module")
def seed():
    return read_any(seed_bundle_path()).cohort


def test_seed_3_today_is_the_5_mg_given_since_day_57(seed):
    a = evaluate(seed.patient("seed-3"), PROTOCOL)[0]
    assert (a.level, a.today["study_drug"]["dose"]) == (1, 5.0)
    assert [x.study_day for x in kinds(a, "dose-differs-from-plan")] == [57]
    before = evaluate(seed.patient("seed-3"), PROTOCOL, as_of=dt.date(2007, 6, 24))[0]  # day 49: 10 mg since day 29
    assert (before.level, before.today["study_drug"]["dose"]) == (2, 10.0)


def test_seed_4_off_study_stops_the_study_day_at_the_discontinuation(seed):
    a = evaluate(seed.patient("seed-4"), PROTOCOL)[0]
    assert a.state == "off study" and a.as_dict()["study_day"] == 25
    assert a.today["study_drug"] == {"drug": "lenalidomide", "dose": None, "unit": "mg", "state": "off study"}
