"""``dosewatch cohort next``: patients' records -> the monitor's DLT status and follow-up -> a design."""
from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from dosewatch.escalation.cohort_cli import cohort_app, cohort_rows, next_from_records
from dosewatch.io import read_any
from dosewatch.protocols import load_protocol

SEED = Path(__file__).resolve().parents[1] / "src" / "dosewatch" / "data" / "seed" / "seed-patients.json"
app = typer.Typer()
app.add_typer(cohort_app, name="cohort")


@pytest.fixture(scope="module")
def record():
    return read_any(SEED).cohort


def test_rows_take_the_first_dose_level_and_the_monitor_status(record):
    proto = load_protocol("lenalidomide-cll-escalation")
    rows = cohort_rows(record, proto)
    assert [r.patient_id for r in rows] == ["seed-1", "seed-2", "seed-3", "seed-4"]
    # every seed patient started lenalidomide at 25 mg, level 6 of this protocol, and had a DLT
    assert {r.dose for r in rows} == {6}
    assert all(r.dlt == 1 and r.followup == proto.dlt.window_days for r in rows)
    assert [r.day1 for r in rows] == sorted(r.day1 for r in rows)


def test_pending_patients_count_only_for_tite(record):
    proto = load_protocol("lenalidomide-cll-escalation")
    as_of = dt.date(2007, 6, 10)  # seed-4 started on 2007-06-04
    rows = {r.patient_id: r for r in cohort_rows(record, proto, as_of)}
    assert rows["seed-4"].status == "in window" and rows["seed-4"].dlt == 0
    assert rows["seed-4"].followup == 7
    rec, used, left = next_from_records(record, proto, "boin", target=0.25, as_of=as_of)
    assert [r.patient_id for r in left] == ["seed-4"] and len(used) == 3
    rec, used, left = next_from_records(record, proto, "tite-boin", target=0.25, as_of=as_of)
    assert not left and len(used) == 4


def test_command_writes_the_cohort_and_prints_json(tmp_path):
    out = tmp_path / "cohort.csv"
    res = CliRunner().invoke(app, ["cohort", "next", str(SEED), "--protocol", "lenalidomide-cll-escalation",
                                   "--design", "boin", "--target", "0.25", "--cohort-out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    # 4/4 DLTs at dose 6: dose 6 is eliminated, de-escalate to 5
    assert (d["next_dose"], d["decision"]) == (5, "de-escalate")
    assert "eliminated" in d["reason"]
    with out.open() as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0]) == ["dose", "dlt", "followup", "patient_id"]
    assert [(r["dose"], r["dlt"], r["followup"]) for r in table] == [("6", "1", "28")] * 4


def test_command_3plus3_table_and_reason():
    res = CliRunner().invoke(app, ["cohort", "next", str(SEED), "--protocol", "lenalidomide-cll-escalation",
                                   "--design", "3+3", "--as-of", "2007-05-20"])
    assert res.exit_code == 0, res.output
    assert "de-escalate" in res.stdout and "seed-3" in res.stdout


def test_command_errors():
    res = CliRunner().invoke(app, ["cohort", "next", str(SEED), "--protocol", "no-such-protocol", "--design", "boin",
                                   "--target", "0.25"])
    assert res.exit_code == 2 and "no-such-protocol" in res.stderr
    res = CliRunner().invoke(app, ["cohort", "next", "/nonexistent.json", "--protocol", "lenalidomide-cll-escalation",
                                   "--design", "boin", "--target", "0.25"])
    assert res.exit_code == 2
