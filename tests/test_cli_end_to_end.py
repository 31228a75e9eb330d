"""The dosewatch command end to end on real files: the shipped FHIR bundle, SDTM written from it,
graded ADLB, AE datasets, validation and the demo."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from dosewatch.cli import app
from dosewatch.demo import seed_bundle_path

RUNNER = CliRunner()
DOSEWATCH = Path(sys.executable).parent / "dosewatch"


def run(*args):
    result = RUNNER.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def events_by_patient(payload):
    return {p["patient_id"]: [(e["term"], e["criteria"], e["grade"], e["onset"], e["study_day"]) for e in p["events"]]
            for p in payload}


@pytest.fixture(scope="module")
def fhir_check():
    out = subprocess.run([DOSEWATCH, "check", seed_bundle_path(), "--format", "json"], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def test_check_json_fields(fhir_check):
    assert [p["patient_id"] for p in fhir_check] == ["seed-1", "seed-2", "seed-3", "seed-4"]
    event = next(e for e in fhir_check[0]["events"] if e["term"] == "Laboratory tumor lysis syndrome")
    assert event["criteria"] == "cairo-bishop-2004" and event["study_day"] == 4 and event["onset"] == "2007-03-08"
    assert all({"id", "code", "value", "unit", "date"} <= set(ev) for ev in event["evidence"])
    assert any(ev["id"].startswith("seed-1-k-") for ev in event["evidence"])
    days = [e["study_day"] for p in fhir_check for e in p["events"]]
    assert 0 not in days
    # patient 1: WBC 197,000 and bulky nodes -> high TLS risk by the venetoclax label tiers
    assert fhir_check[0]["tls_risk"]["category"] == "high" and fhir_check[1]["tls_risk"]["category"] == "medium"


def test_sdtm_from_the_same_records_gives_the_same_events(fhir_check, tmp_path):
    run("export", seed_bundle_path(), "--to", "sdtm", "-o", tmp_path / "sdtm")
    assert {p.name for p in (tmp_path / "sdtm").iterdir()} >= {"dm.csv", "lb.csv", "vs.csv", "ex.csv"}
    out = run("check", tmp_path / "sdtm", "--format", "json")
    assert events_by_patient(json.loads(out.stdout)) == events_by_patient(fhir_check)


def test_fhir_round_trip_through_export_gives_the_same_events(fhir_check, tmp_path):
    run("export", seed_bundle_path(), "--to", "fhir", "-o", tmp_path / "again.json")
    out = run("check", tmp_path / "again.json", "--format", "json")
    assert events_by_patient(json.loads(out.stdout)) == events_by_patient(fhir_check)


def test_howard_is_selectable_and_labelled(tmp_path):
    out = json.loads(run("check", seed_bundle_path(), "--format", "json", "--tls", "howard-2011").stdout)
    crits = {e["criteria"] for p in out for e in p["events"] if e["term"].endswith("tumor lysis syndrome") and e["criteria"] != "ctcae-5.0"}
    assert crits == {"howard-2011"}


def test_check_with_protocol_adds_alerts_actions_dlt_and_state():
    out = json.loads(run("check", seed_bundle_path(), "--protocol", "lenalidomide-cll-25mg-2007",
                         "--as-of", "2007-03-08", "--format", "json").stdout)
    p1 = out[0]
    assert p1["patient_id"] == "seed-1" and p1["state"] == "on drug"
    assert any(a["rule"] == "lenalidomide-cll-25mg-2007:tls" and a["study_day"] == 4 for a in p1["alerts"])
    assert p1["dose_actions"][0]["action"] == "hold" and p1["dlt"]["status"] == "DLT"
    assert out[1]["state"] == "not started"  # patient 2 started a month later


def test_export_graded_adlb_and_ae(tmp_path):
    run("export", seed_bundle_path(), "--to", "adlb", "-o", tmp_path / "adlb.csv")
    adlb = pl.read_csv(tmp_path / "adlb.csv", infer_schema_length=0)
    assert {"USUBJID", "PARAMCD", "AVAL", "AVALU", "BASE", "ADY", "ATOXGRL", "ATOXGRH"} <= set(adlb.columns)
    k = adlb.filter((pl.col("USUBJID") == "seed-1") & (pl.col("PARAMCD") == "K") & (pl.col("ADY") == "8"))
    assert k["ATOXGRH"].to_list() == ["4"]  # K 7.1 mmol/L > 7.0: CTCAE v5.0 hyperkalemia grade 4
    run("export", seed_bundle_path(), "--to", "ae", "-o", tmp_path / "ae.csv")
    ae = pl.read_csv(tmp_path / "ae.csv", infer_schema_length=0)
    assert "Laboratory tumor lysis syndrome" in ae["AEDECOD"].to_list()
    run("export", seed_bundle_path(), "--to", "fhir-ae", "-o", tmp_path / "ae.json")
    bundle = json.loads((tmp_path / "ae.json").read_text())
    assert {e["resource"]["resourceType"] for e in bundle["entry"]} == {"AdverseEvent"}


def test_grade_command_on_the_exported_adlb(tmp_path):
    run("export", seed_bundle_path(), "--to", "adlb", "-o", tmp_path / "adlb.csv")
    graded = pl.read_csv(tmp_path / "adlb.csv", infer_schema_length=0).drop("ATOXGRL", "ATOXGRH", "ATOXDSCL", "ATOXDSCH")
    graded.write_csv(tmp_path / "plain.csv")
    run("grade", tmp_path / "plain.csv", "-o", tmp_path / "out.csv", "--criteria", "ctcae-5.0")
    out = pl.read_csv(tmp_path / "out.csv", infer_schema_length=0)
    assert out.height == graded.height and {"ATOXGRL", "ATOXGRH"} <= set(out.columns)


def test_validate_reports_every_problem_and_exits_1(tmp_path):
    bundle = json.loads(seed_bundle_path().read_text())
    obs = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"
               and e["resource"]["code"]["coding"][0]["code"] == "2823-3")
    obs["valueQuantity"].update(value=60, unit="mmol/L", code="mmol/L")  # a potassium of 60 mmol/L
    bundle["entry"].append({"resource": {**obs, "id": "k-furlongs", "valueQuantity": {"value": 4, "unit": "furlongs"}}})
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(bundle))
    result = RUNNER.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 1
    assert f"Observation/{obs['id']}" in result.output and "implausible" in result.output.lower()
    assert "Observation/k-furlongs" in result.output and "furlongs" in result.output
    clean = RUNNER.invoke(app, ["validate", str(seed_bundle_path())])
    assert clean.exit_code == 0 and "no problems" in clean.output


def test_check_refuses_bad_input_unless_asked_and_imports_nothing_half(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text('{"resourceType": "Bundle", "type": "collection", "entry": [')
    result = RUNNER.invoke(app, ["check", str(bad)])
    assert result.exit_code == 2 and "broken.json" in result.output and "line 1" in result.output


def test_demo_writes_pictures_and_report(tmp_path):
    result = RUNNER.invoke(app, ["demo", "--out", str(tmp_path)], env={"COLUMNS": "240"})
    assert result.exit_code == 0, result.output
    assert "prophylaxis-not-done" in result.output and "seed-4" in result.output
    for pid in ("seed-1", "seed-2", "seed-3", "seed-4"):
        assert (tmp_path / f"{pid}-timeline.png").stat().st_size > 10_000
    html = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64" in html and "lenalidomide-cll-25mg-2007:tls" in html
