"""Real studies and real EHR exports, read as they are (../shared/realworld/, read in place).

The CDISC pilot study (SDTM, 306 subjects) and two Synthea FHIR exports: every row or resource is
accounted for (read into the record, or reported with its reason), strict ``check`` runs without
``--skip-invalid``, every export runs, and what dosewatch did not grade is listed with its reason.
"""
from __future__ import annotations

import collections
import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from dosewatch.cli import app
from dosewatch.errors import counts, group_problems
from dosewatch.io import ReadOptions, read_any

REALWORLD = Path(__file__).resolve().parents[2] / "shared" / "realworld"
PILOT = REALWORLD / "sdtm-cdiscpilot01"
SYNTHEA = sorted((REALWORLD / "fhir-synthea").glob("*.json"))

pytestmark = pytest.mark.skipif(not PILOT.is_dir() or len(SYNTHEA) < 2, reason="../shared/realworld is not beside")


def run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def pilot():
    return read_any(PILOT, collect=True)


def rows_in(path: Path) -> int:
    return pl.read_csv(path, infer_schema=False).height


def sources_of(table: pl.DataFrame, file: str) -> set[int]:
    prefix = f"{file} row "
    return {int(s[len(prefix):]) for s in table["source"].to_list() if s.startswith(prefix)}


# -- the CDISC pilot study (SDTM) ---------------------------------------------------------------------

def test_pilot_reads_without_an_error_and_every_row_is_accounted_for(pilot):
    assert counts(pilot.problems) == {"error": 0, "warning": 1442, "notice": 26666}
    c = pilot.cohort
    assert c.patients.height == rows_in(PILOT / "DM.csv") == 306
    reported = collections.defaultdict(set)
    for p in pilot.problems:
        file, row, _ = p.location()
        if row is not None and p.severity != "warning":  # warnings are about rows that were read
            reported[file].add(row)
    for file, table in (("LB.csv", c.observations), ("VS.csv", c.observations), ("AE.csv", c.events)):
        read = sources_of(table, file)
        # AE rows are read even when they are outside the event catalog (a notice): both sets then meet
        left_out = reported[file] - read
        assert len(read) + len(left_out) == rows_in(PILOT / file), file
    assert len(sources_of(c.observations, "VS.csv")) == 29_643 - 8  # only the 8 tests not done are not read
    ex_rows = sources_of(c.doses, "EX.csv")
    assert len(ex_rows) == rows_in(PILOT / "EX.csv") == 591  # every exposure row is read


def test_pilot_lab_rows_read_and_left_out_add_up_by_test_code(pilot):
    lb = pl.read_csv(PILOT / "LB.csv", infer_schema=False)
    read = pilot.cohort.observations.filter(pl.col("source").str.starts_with("LB.csv "))
    notices = [p for p in pilot.problems if p.file == "LB.csv" and p.severity == "notice"]
    assert read.height + len(notices) == lb.height == 59_580
    # one notice line per test code dosewatch does not grade, never one per row
    not_used = [g for g in group_problems(notices) if g.kind == "not-used"]
    codes = {g.message.split()[2] for g in not_used}
    assert len(not_used) == len(codes) == 28 and {"BUN", "PROT", "TSH", "HCT"} <= codes
    assert sum(g.count for g in not_used) == len(notices)


def test_pilot_pulse_is_heart_rate_and_positions_are_distinct_findings(pilot):
    obs = pilot.cohort.observations
    vs = pl.read_csv(PILOT / "VS.csv", infer_schema=False)
    pulse = vs.filter((pl.col("VSTESTCD") == "PULSE") & pl.col("VSORRES").is_not_null()).height
    assert obs.filter(pl.col("code") == "HR").height == pulse > 8000
    # supine and standing blood pressures at one visit are three findings, told apart by their qualifiers
    bp = obs.filter((pl.col("code") == "SYSBP") & (pl.col("patient_id") == "01-701-1015")
                    & (pl.col("date") == pl.date(2013, 12, 26)))
    assert sorted(bp["qualifiers"].to_list()) == [
        "POS=STANDING; TPT=AFTER STANDING FOR 1 MINUTE; TPTNUM=816",
        "POS=STANDING; TPT=AFTER STANDING FOR 3 MINUTES; TPTNUM=817",
        "POS=SUPINE; TPT=AFTER LYING DOWN FOR 5 MINUTES; TPTNUM=815"]


def test_pilot_placebo_fixes_day_1_and_is_never_a_missed_dose(pilot):
    c = pilot.cohort
    placebo = c.doses.filter(pl.col("drug") == "placebo")
    assert placebo.height == 12_713 and set(placebo["status"]) == {"completed"}
    assert c.doses.filter(pl.col("status") == "not-done").is_empty()
    day1 = c.first_dose_dates("xanomeline")
    dm = pl.read_csv(PILOT / "DM.csv", infer_schema=False)
    exposed = dm.filter(pl.col("RFXSTDTC").is_not_null())
    assert len(day1) == exposed.height == 254
    # day 1 is RFXSTDTC, the first exposure to study treatment, in both arms
    assert all(day1[s].isoformat() == d for s, d in exposed.select("USUBJID", "RFXSTDTC").iter_rows())


def test_pilot_severity_becomes_a_grade_and_says_so(pilot):
    ae = pl.read_csv(PILOT / "AE.csv", infer_schema=False)
    events = pilot.cohort.events.filter(pl.col("source").str.starts_with("AE.csv "))
    assert events.height == ae.height == 1191
    # no AETOXGR in the study: a fatal outcome is grade 5, a life-threatening event grade 4 (CTCAE v5.0's
    # grade descriptions), else AESEV MILD / MODERATE / SEVERE is grade 1 / 2 / 3
    fatal = (pl.col("AESDTH") == "Y") | (pl.col("AEOUT") == "FATAL")
    expected = ae.select(pl.when(fatal).then(pl.lit("fatal outcome 5"))
                         .when(pl.col("AESLIFE") == "Y").then(pl.lit("life-threatening 4"))
                         .otherwise(pl.format("severity {} {}", pl.col("AESEV").str.to_lowercase(),
                                              pl.col("AESEV").replace_strict({"MILD": "1", "MODERATE": "2",
                                                                              "SEVERE": "3"}))).alias("k"))
    got = events.select(pl.format("{} {}", "grade_source", "grade").alias("k"))
    assert sorted(got["k"].to_list()) == sorted(expected["k"].to_list())
    assert got["k"].value_counts().height == 5  # mild, moderate, severe, life-threatening, fatal


def test_pilot_partial_start_dates_are_kept_with_their_rule(pilot):
    events = pilot.cohort.events.filter(pl.col("imputed").is_not_null())
    assert events.height == 26  # every partial AESTDTC of the study
    row = events.filter(pl.col("source") == "AE.csv row 43").row(0, named=True)
    assert row["date"].isoformat() == "2003-01-01" and not row["time_known"]
    assert row["imputed"] == "AESTDTC '2003' (year precision) completed to 2003-01-01, the first day of its year"


def test_pilot_bounds_are_graded_conservatively_and_marked(tmp_path):
    out = run("check", PILOT, "--study-drug", "xanomeline", "--format", "json")
    assert out.exit_code == 0, out.output
    results = json.loads(out.stdout)
    assert len(results) == 306 and all(r["not_graded"] == [] for r in results)  # the pilot sends every range
    [hypo] = [e for r in results if r["patient_id"] == "01-701-1115" for e in r["events"]
              if e["term"] == "Hypoglycemia"]
    # glucose <40 mg/dL: CTCAE v5.0 Hypoglycemia grade 3 is "<40 - 30 mg/dL"
    assert hypo["grade"] == 3 and hypo["evidence"][0]["value"] == 40.0
    assert hypo["evidence"][0]["note"] == "result <40: graded as a value just below the bound"
    assert "0 errors left out, 1,442 warnings, 26,666 notices" in out.stderr


def test_pilot_validate_is_a_short_report_and_json_counts_add_up():
    text = run("validate", PILOT)
    assert text.exit_code == 0  # warnings and notices only
    assert len(text.stdout.splitlines()) < 200
    assert text.stdout.splitlines()[0].endswith("0 errors, 1,442 warnings, 26,666 notices")
    as_json = run("validate", PILOT, "--format", "json")
    report = json.loads(as_json.stdout)
    assert report["counts"] == {"error": 0, "warning": 1442, "notice": 26666}
    for severity, n in report["counts"].items():
        assert sum(p["count"] for p in report["problems"] if p["severity"] == severity) == n
    assert all({"severity", "file", "field", "code", "message", "count"} <= set(p) for p in report["problems"])
    assert all(("row" in p) != ("resource" in p) for p in report["problems"])


def test_pilot_age_stands_in_for_a_missing_birth_date(tmp_path):
    """Without BRTHDTC, DM.AGE (at RFSTDTC) gives Cockcroft-Gault its age: the TLS risk still works."""
    folder = tmp_path / "pilot"
    folder.mkdir()
    for name in ("LB.csv", "VS.csv", "EX.csv"):
        (folder / name).symlink_to(PILOT / name)
    pl.read_csv(PILOT / "DM.csv", infer_schema=False).drop("BRTHDTC").write_csv(folder / "DM.csv")
    without = json.loads(run("check", folder, "--study-drug", "xanomeline", "--format", "json").stdout)
    with_birth = {r["patient_id"]: r for r in json.loads(
        run("check", PILOT, "--study-drug", "xanomeline", "--format", "json").stdout)}
    compared = 0
    for r in without:
        a, b = (r["tls_risk"] or {}).get("crcl"), (with_birth[r["patient_id"]]["tls_risk"] or {}).get("crcl")
        if b is not None:
            assert a is not None and a == pytest.approx(b, rel=0.03)  # age known to the year, not the day
            compared += 1
    assert compared > 200


def test_pilot_adlb_export_grades_again_with_the_grade_command(tmp_path):
    """The exported ADLB is a file `dosewatch grade` reads (as ADaM writes it: AVAL, AVALU, ANRLO/ANRHI)."""
    assert run("export", PILOT, "--to", "adlb", "-o", tmp_path / "adlb.csv", "--study-drug", "xanomeline").exit_code == 0
    out = run("grade", tmp_path / "adlb.csv", "-o", tmp_path / "graded.csv")
    assert out.exit_code == 0, out.output
    graded = pl.read_csv(tmp_path / "graded.csv", infer_schema=False)
    exported = pl.read_csv(tmp_path / "adlb.csv", infer_schema=False)
    assert graded.height == exported.height == read_any(PILOT).cohort.observations.filter(
        pl.col("code").is_in(["ALB", "ALP", "ALT", "AST", "BILI", "CA", "CHOL", "CK", "CREAT", "GGT", "GLUC", "HGB",
                              "K", "LYM", "PHOS", "PLAT", "SODIUM", "URATE", "WBC"])).height
    # graded in canonical units by `grade`, in the reported unit by the export: the same grade on nearly every row
    same = (graded["ATOXGRH"].fill_null("") == exported["ATOXGRH"].fill_null("")).sum()
    assert same / graded.height > 0.99


def test_pilot_every_export_runs_and_keeps_the_study_id(tmp_path):
    for to, out in (("sdtm", tmp_path / "sdtm"), ("adlb", tmp_path / "adlb.csv"), ("ae", tmp_path / "ae.csv"),
                    ("fhir", tmp_path / "pilot.json"), ("fhir-ae", tmp_path / "ae.json")):
        result = run("export", PILOT, "--to", to, "-o", out, "--study-drug", "xanomeline")
        assert result.exit_code == 0, (to, result.output)
    for name in ("dm.csv", "lb.csv", "vs.csv", "ex.csv"):
        assert set(pl.read_csv(tmp_path / "sdtm" / name, infer_schema=False)["STUDYID"]) == {"CDISCPILOT01"}
    adlb = pl.read_csv(tmp_path / "adlb.csv", infer_schema=False)
    assert set(adlb["STUDYID"]) == {"CDISCPILOT01"} and {"ATOXRSNL", "ATOXRSNH"} <= set(adlb.columns)
    assert set(pl.read_csv(tmp_path / "ae.csv", infer_schema=False)["STUDYID"]) == {"CDISCPILOT01"}
    # the FHIR export reads back: every AE (NAUSEA and the other terms outside the catalog) as a Condition
    back = read_any(tmp_path / "pilot.json")
    assert back.errors == [] and back.cohort.events.filter(pl.col("term") == "NAUSEA").height == 21


# -- Synthea FHIR exports -----------------------------------------------------------------------------

@pytest.mark.parametrize("path", SYNTHEA, ids=lambda p: p.name.split("_")[0])
def test_synthea_every_resource_is_read_or_reported(path):
    bundle = json.loads(path.read_text())
    result = read_any(path)  # strict: no error
    c = result.cohort
    read = {s.split(" ", 1)[1].split("#")[0] for t in (c.patients, c.observations, c.events)
            for s in t["source"].to_list()}
    reported = {p.location()[2] for p in result.problems}
    for entry in bundle["entry"]:
        r = entry["resource"]
        key = f"{r['resourceType']}/{r['id']}"
        assert key in read or key in reported or r["resourceType"] == "DiagnosticReport", key
    assert counts(result.problems)["error"] == 0


@pytest.mark.parametrize("path", SYNTHEA, ids=lambda p: p.name.split("_")[0])
def test_synthea_validate_reports_no_error_and_counts_every_notice(path):
    out = run("validate", path, "--format", "json")
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["counts"]["error"] == 0 and report["counts"]["notice"] > 50
    assert sum(p["count"] for p in report["problems"]) == sum(report["counts"].values())
    assert all("resource" in p for p in report["problems"])


@pytest.mark.parametrize("path", SYNTHEA, ids=lambda p: p.name.split("_")[0])
def test_synthea_check_runs_and_says_what_it_could_not_grade(path):
    out = run("check", path, "--format", "json")
    assert out.exit_code == 0, out.output
    [patient] = json.loads(out.stdout)
    reasons = {(x["code"], x["reason"]) for x in patient["not_graded"]}
    assert ("CHOL", "no ULN") in reasons  # Synthea sends no reference ranges
    assert all(x["n"] >= 1 for x in patient["not_graded"])


def test_synthea_site_ranges_fill_what_the_export_lacks(tmp_path):
    path = next(p for p in SYNTHEA if p.name.startswith("Jordan"))
    ranges = tmp_path / "ranges.csv"
    ranges.write_text("code,sex,age_low,age_high,unit,low,high,source\n"
                      "ALT,,18,,U/L,7,10,site manual 2024 (set low to grade the example)\n"
                      "K,,,,mmol/L,3.5,5.1,site manual 2024\n")
    out = run("check", path, "--format", "json", "--ranges", ranges)
    assert out.exit_code == 0, out.output
    [patient] = json.loads(out.stdout)
    assert not {("ALT", "no ULN"), ("K", "no LLN"), ("K", "no ULN")} & {(x["code"], x["reason"])
                                                                        for x in patient["not_graded"]}
    alt = [e for e in patient["events"] if e["term"] == "Alanine aminotransferase increased"]
    assert alt and "limits of normal from site ranges ranges.csv row 1: site manual 2024" in alt[0]["evidence"][0]["note"]
    bad = tmp_path / "bad.csv"
    bad.write_text("code,sex,age_low,age_high,unit,low,high,source\nALTT,,,,U/L,7,40,x\n")
    refused = run("check", path, "--ranges", bad)
    assert refused.exit_code == 2 and "bad.csv row 1: code: not a dosewatch analyte code ('ALTT')" in refused.output


def test_synthea_prescriptions_are_doses_only_when_asked(tmp_path):
    path = next(p for p in SYNTHEA if p.name.startswith("Jordan"))
    plain = read_any(path)
    assert plain.cohort.doses.is_empty()
    asked = read_any(path, options=ReadOptions(doses_from=("administration", "request")))
    doses = asked.cohort.doses
    n_requests = sum(1 for e in json.loads(path.read_text())["entry"]
                     if e["resource"]["resourceType"] == "MedicationRequest")
    assert doses.height >= 1 and doses["source"].str.contains(" MedicationRequest/").all()
    assert len({s.split("/")[1].rsplit("-", 1)[0] if s.count("-") > 5 else s for s in doses["source"]}) <= n_requests
    assert any(p.kind == "assumed" and p.field == "resourceType" for p in asked.problems)


def test_a_bundle_of_bundles_is_read_entry_by_entry(tmp_path):
    outer = {"resourceType": "Bundle", "type": "collection",
             "entry": [{"resource": json.loads(p.read_text())} for p in SYNTHEA]}
    path = tmp_path / "both.json"
    path.write_text(json.dumps(outer))
    both = read_any(path)
    alone = [read_any(p).cohort for p in SYNTHEA]
    assert both.cohort.patients.height == 2
    assert both.cohort.observations.height == sum(c.observations.height for c in alone)


def test_an_observation_without_its_own_time_takes_its_reports(tmp_path):
    path = next(p for p in SYNTHEA if p.name.startswith("Jordan"))
    bundle = json.loads(path.read_text())
    report = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"
                  and any("Potassium" in (r.get("display") or "") for r in e["resource"]["result"]))
    ref = next(r["reference"] for r in report["result"] if r.get("display") == "Potassium")
    entry = next(e for e in bundle["entry"] if e.get("fullUrl") == ref)
    when = entry["resource"].pop("effectiveDateTime")
    entry["resource"].pop("issued", None)
    out = tmp_path / "b.json"
    out.write_text(json.dumps(bundle))
    result = read_any(out)
    k = result.cohort.observations.filter(pl.col("obs_id") == entry["resource"]["id"]).row(0, named=True)
    assert k["date"].isoformat() == when[:10] == report["effectiveDateTime"][:10]
    [warning] = [p for p in result.problems if p.kind == "assumed" and p.field == "effective[x]"]
    assert warning.detail == f"DiagnosticReport/{report['id']}"


def test_a_patient_referenced_but_absent_is_created_unknown(tmp_path):
    path = next(p for p in SYNTHEA if p.name.startswith("Alejandro"))
    bundle = json.loads(path.read_text())
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["resourceType"] != "Patient"]
    out = tmp_path / "b.json"
    out.write_text(json.dumps(bundle))
    result = read_any(out)
    [row] = result.cohort.patients.rows(named=True)
    assert (row["sex"], row["birth_date"]) == ("U", None)
    assert [p.detail for p in result.problems if p.kind == "assumed"] == [f"patient {row['patient_id']}"]


def test_a_component_without_a_unit_says_so(tmp_path):
    path = next(p for p in SYNTHEA if p.name.startswith("Jordan"))
    bundle = json.loads(path.read_text())
    bp = next(e["resource"] for e in bundle["entry"] if e["resource"].get("component"))
    for comp in bp["component"]:
        del comp["valueQuantity"]["code"], comp["valueQuantity"]["unit"]
    creat = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"
                 and e["resource"]["code"]["coding"][0]["code"] == "38483-4")
    del creat["valueQuantity"]["code"], creat["valueQuantity"]["unit"]
    out = tmp_path / "b.json"
    out.write_text(json.dumps(bundle))
    result = read_any(out, collect=True)
    # blood pressure is measured in mm[Hg] only: assumed, with a warning; creatinine could be mg/dL or umol/L
    assumed = [p for p in result.problems if p.source.endswith(bp["id"]) and p.kind == "assumed"]
    assert [p.field for p in assumed] == ["component[0].valueQuantity.unit", "component[1].valueQuantity.unit"]
    [error] = result.errors
    assert (error.source.endswith(creat["id"]), error.field, error.message) == (
        True, "valueQuantity.unit", "no unit (Creatinine is read in umol/L or a unit convertible to it)")


def test_a_sites_local_codes_are_read_through_a_code_map(tmp_path):
    path = next(p for p in SYNTHEA if p.name.startswith("Jordan"))
    bundle = json.loads(path.read_text())
    local = 0
    for e in bundle["entry"]:
        r = e["resource"]
        if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "6298-4":
            r["code"] = {"coding": [{"system": "http://hospital.example/lab", "code": "K-SER"}]}
            local += 1
    out = tmp_path / "b.json"
    out.write_text(json.dumps(bundle))
    before = read_any(out).cohort.observations.filter(pl.col("code") == "K").height  # 2823-3: not renamed
    codes = tmp_path / "codes.csv"
    codes.write_text("system,code,analyte\nhttp://hospital.example/lab,K-SER,K\n")
    after = read_any(out, options=ReadOptions(codes=codes))
    assert after.cohort.observations.filter(pl.col("code") == "K").height == before + local and local > 0
    folder_codes = tmp_path / "codes2.csv"
    folder_codes.write_text("system,code,analyte\nSDTM:LB,UREAN,CREAT\n")
    assert run("validate", out, "--codes", folder_codes).exit_code == 0


def test_every_export_of_a_synthea_record_runs(tmp_path):
    for path in SYNTHEA:
        for to, name in (("fhir", "x.json"), ("sdtm", "sdtm"), ("adlb", "x.csv"), ("fhir-ae", "ae.json")):
            result = run("export", path, "--to", to, "-o", tmp_path / name)
            assert result.exit_code == 0, (path.name, to, result.output)
        back = read_any(tmp_path / "x.json")
        assert back.errors == [] and back.cohort.events.height == read_any(path).cohort.events.height


# -- through the trial server -------------------------------------------------------------------------

def test_the_pilot_study_imports_into_the_trial_server_and_reports_what_it_did_not_use(tmp_path):
    """The pilot zipped, as a data manager uploads it: every read row stored, notices grouped."""
    import datetime as dt
    import io
    import zipfile

    from dosewatch.store import admin, service
    from dosewatch.store.db import Store
    from dosewatch.store.scope import SYSTEM

    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as z:
        for name in ("DM.csv", "LB.csv", "VS.csv", "EX.csv", "AE.csv"):
            z.write(PILOT / name, name)
    store = Store(f"sqlite:///{tmp_path / 'trial.db'}", today=dt.date(2015, 1, 1))
    try:
        store.upgrade()
        with store.writing() as session:
            admin.add_site(session, "test", "701")
            admin.add_trial(session, "test", "PILOT", "lenalidomide-cll-25mg-2007")
        with store.writing() as session:
            trial = admin.trial_by_code(session, "PILOT")
            report = service.import_records(session, trial, SYSTEM, "sdtm", data.getvalue(), as_of=store.today(),
                                            site="701", name="pilot.zip").as_dict()
        read = read_any(PILOT)
        assert report["created"]["observations"] == read.cohort.observations.height
        assert report["created"]["doses"] == read.cohort.doses.height
        assert report["counts"] == {"error": 0, "warning": 1442, "notice": 26666}
        assert len(report["warnings"]) == 1442 and report["rejected"] == []
        assert sum(g["count"] for g in report["notices"]) == 26666 and len(report["notices"]) < 40
    finally:
        store.dispose()
