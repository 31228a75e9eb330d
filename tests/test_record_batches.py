"""Checking a cohort in parts of a few patients gives what checking it whole gives."""
import polars as pl
import pytest

from dosewatch.check import check_cohort
from dosewatch.demo import seed_bundle_path
from dosewatch.io import read_any
from dosewatch.record import Cohort


@pytest.fixture(scope="module")
def seed():
    return read_any(seed_bundle_path()).cohort


def test_batches_keep_every_record_of_a_patient_together(seed):
    parts = list(seed.batches(3))
    assert [p.patient_ids for p in parts] == [seed.patient_ids[:3], seed.patient_ids[3:]]
    for name in ("patients", "observations", "doses", "events"):
        whole = getattr(seed, name)
        assert sum(getattr(p, name).height for p in parts) == whole.height
        for p in parts:
            assert set(getattr(p, name)["patient_id"]) <= set(p.patient_ids)
    assert list(seed.batches(10)) == [seed]


def test_a_patient_with_records_but_no_patient_row_is_not_dropped(seed):
    orphan = seed.observations.head(5).with_columns(patient_id=pl.lit("no-such-patient"))
    cohort = Cohort(seed.patients, pl.concat([seed.observations, orphan]), seed.doses, seed.events)
    parts = list(cohort.batches(2))
    assert sum(p.observations.height for p in parts) == cohort.observations.height
    assert parts[-1].observations.filter(pl.col("patient_id") == "no-such-patient").height == 5
    assert [r.patient_id for r in check_cohort(cohort, batch_patients=2)][-1] == "no-such-patient"


@pytest.mark.parametrize("size", [1, 3])
def test_checking_in_parts_gives_the_same_events(seed, size):
    whole = [p.as_dict() for p in check_cohort(seed)]
    assert [p.as_dict() for p in check_cohort(seed, batch_patients=size)] == whole
    assert sum(len(p["events"]) for p in whole) > 20
