"""The clinical review of the built-in protocols (issue 14, item 6): what it fixed, both sides, and
docs/protocols.md listing every rule."""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import polars as pl
import pytest

from dosewatch.demo import seed_bundle_path
from dosewatch.io import read_any
from dosewatch.monitor import evaluate
from dosewatch.protocols import BUILTIN, builtin
from dosewatch.record import EVENTS_SCHEMA, Cohort

DAY1 = dt.date(2007, 4, 9)  # seed-2's first dose
DAY12 = DAY1 + dt.timedelta(days=11)


@pytest.fixture(scope="module")
def seed2() -> Cohort:
    return read_any(seed_bundle_path()).cohort.patient("seed-2").known_on(DAY1 + dt.timedelta(days=19))


def with_seizure(cohort: Cohort, grade: int) -> Cohort:
    row = {k: None for k in EVENTS_SCHEMA} | {
        "patient_id": "seed-2", "event_id": "sz", "code": "SEIZURE", "term": "Seizure", "grade": grade,
        "time": dt.datetime.combine(DAY12, dt.time(10)), "date": DAY12, "time_known": True, "source": "AE"}
    return Cohort(cohort.patients, cohort.observations, cohort.doses,
                  pl.concat([cohort.events, pl.DataFrame([row], schema=EVENTS_SCHEMA)]))


@pytest.mark.parametrize("pid", BUILTIN)
def test_a_grade_3_non_hematologic_event_in_the_window_is_a_dlt(seed2, pid):
    protocol = builtin(pid)
    drug = protocol.study_drug.drug
    doses = seed2.doses.with_columns(drug=pl.when(pl.col("drug") == "lenalidomide").then(pl.lit(drug)).otherwise("drug"))
    base = Cohort(seed2.patients, seed2.observations, doses, seed2.events)
    as_of = DAY1 + dt.timedelta(days=14)
    three = evaluate(with_seizure(base, 3), protocol, as_of)[0].dlt
    assert (three["status"], three["event"], three["study_day"]) == ("DLT", "Seizure", 12)
    assert evaluate(with_seizure(base, 2), protocol, as_of)[0].dlt["status"] == "in window"


def _venetoclax_with_platelets(seed2: Cohort, value: float) -> Cohort:
    doses = seed2.doses.with_columns(drug=pl.when(pl.col("drug") == "lenalidomide").then(pl.lit("venetoclax"))
                                     .otherwise("drug"))
    obs = seed2.observations.with_columns(
        value=pl.when((pl.col("code") == "PLAT") & (pl.col("date") == DAY12)).then(pl.lit(value)).otherwise("value"),
        orig_value=pl.when((pl.col("code") == "PLAT") & (pl.col("date") == DAY12)).then(
            pl.lit(value) * pl.col("orig_value") / pl.col("value")).otherwise("orig_value"))
    return Cohort(seed2.patients, obs, doses, seed2.events)


def test_venetoclax_holds_for_grade_4_thrombocytopenia_not_grade_3(seed2):
    assert seed2.observations.filter((pl.col("code") == "PLAT") & (pl.col("date") == DAY12)).height == 1
    ven = builtin("venetoclax-cll-rampup")
    four = evaluate(_venetoclax_with_platelets(seed2, 20.0), ven, DAY12)[0]  # CTCAE v5.0 grade 4: < 25
    assert [(x.study_day, x.action, x.rule) for x in four.dose_actions] == [(12, "hold", "venetoclax-cll-rampup:neutropenia")]
    three = evaluate(_venetoclax_with_platelets(seed2, 25.0), ven, DAY12)[0]  # 25 is grade 3 (band edge)
    assert not three.dose_actions


def test_every_rule_of_every_builtin_protocol_is_reviewed_in_the_docs():
    text = (Path(__file__).parents[1] / "docs" / "protocols.md").read_text()
    review = text[text.index("## Clinical review"):]
    for pid in BUILTIN:
        section = review[review.index(f"### `{pid}`") if f"### `{pid}`" in review else review.index(pid):]
        for rule in builtin(pid).dose_rules:
            assert re.search(rf"\| `{re.escape(rule.id)}`", section), (pid, rule.id)
        for r in builtin(pid).dose_rules:
            assert r.severity in ("critical", "urgent", "warning", "info")
