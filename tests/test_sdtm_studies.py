"""SDTM as studies write it: bounds ("<40"), severities instead of grades, partial dates, placebo,
qualifiers that tell findings apart, CDISC synonyms, a stated age, the study id (tests/data/sdtm/study
changed row by row; the real pilot study is read in test_realworld.py)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from dosewatch.check import check_cohort
from dosewatch.errors import InputError
from dosewatch.io.sdtm import read_sdtm
from dosewatch.io.sdtm_write import write_sdtm
from sdtm_support import append, set_header, study

def events_of(cohort, pid: str, term: str) -> list:
    return [e for r in check_cohort(cohort) if r.patient_id == pid for e in r.events if e.term == term]


# -- a result written as a bound -----------------------------------------------------------------------

GLUC = "DW01,LB,P1,{seq},GLUC,Glucose,SERUM,{res},mg/dL,70,100,,,,,,2024-01-1{day}"
K = "DW01,LB,P1,{seq},K,Potassium,SERUM,{res},mmol/L,3.5,5.1,,,,,,2024-01-1{day}"


@pytest.mark.parametrize("result, grade", [
    ("<40", 3),  # CTCAE v5.0 Hypoglycemia grade 3: <40 - 30 mg/dL; the value is below 40
    ("<=40", 2),  # 40 itself is grade 2 (<55 - 40 mg/dL)
    ("40", 2),
    ("<30", 4),  # grade 4: <30 mg/dL
    ("≤30", 3),
])
def test_a_glucose_bound_is_graded_as_the_grade_it_guarantees(tmp_path, result, grade):
    folder = append(study(tmp_path), "lb", GLUC.format(seq=20, res=result, day=3))
    [event] = events_of(read_sdtm(folder).cohort, "P1", "Hypoglycemia")
    assert event.grade == grade
    assert event.evidence[0].value == float(result.lstrip("<=≤"))
    strict = result.startswith("<") and not result.startswith("<=")
    assert event.evidence[0].note == (f"result {result.replace('≤', '<=')}: graded "
                                      f"{'as a value just below the bound' if strict else 'at the bound'}"
                                      if result[0] in "<≤" else None)


@pytest.mark.parametrize("result, grade", [(">6.0", 3), (">=6.0", 2), (">7.0", 4), ("6.0", 2)])
def test_a_potassium_bound_above(tmp_path, result, grade):
    """CTCAE v5.0 Hyperkalemia: grade 2 >5.5 - 6.0, grade 3 >6.0 - 7.0, grade 4 >7.0 mmol/L."""
    folder = append(study(tmp_path), "lb", K.format(seq=20, res=result, day=3))
    cohort = read_sdtm(folder).cohort
    assert cohort.observations.filter(pl.col("obs_id") == "LB-P1-20")["comparator"].to_list() == [
        result[:2] if result[1] == "=" else result[0] if result[0] in "<>" else None]
    assert max(e.grade for e in events_of(cohort, "P1", "Hyperkalemia")) == grade


def test_a_bound_without_a_number_is_kept_and_listed_as_not_graded(tmp_path):
    folder = append(study(tmp_path), "lb", K.format(seq=20, res="<LLOQ", day=3))
    read = read_sdtm(folder)  # strict: a warning, not an error
    [warning] = [p for p in read.problems if p.source == "lb.csv row 17"]
    assert (warning.severity, warning.kind, warning.detail) == ("warning", "comparator", "'<LLOQ'")
    row = read.cohort.observations.filter(pl.col("obs_id") == "LB-P1-20").row(0, named=True)
    assert (row["value"], row["comparator"]) == (None, "<")
    [p1] = [r for r in check_cohort(read.cohort) if r.patient_id == "P1"]
    assert {"code": "K", "reason": "comparator without a number", "n": 1} in p1.not_graded


def test_an_empty_finding_is_not_read_with_a_warning(tmp_path):
    """No result and no --STAT NOT DONE (SDTMIG asks for one): nothing to read, nothing to misread."""
    read = read_sdtm(append(study(tmp_path), "lb", K.format(seq=20, res="", day=3)))
    [warning] = [p for p in read.problems if p.source == "lb.csv row 17"]
    assert (warning.severity, warning.kind, warning.field) == ("warning", "no-result", "LBORRES")
    assert "LB-P1-20" not in read.cohort.observations["obs_id"].to_list()


def test_an_event_not_done_is_not_read(tmp_path):
    """A solicited event whose diary was not kept (CESTAT NOT DONE) has no date: a notice, not an error."""
    folder = set_header(study(tmp_path), "ce", ",CESTAT", ",")
    append(folder, "ce", "DW01,CE,P1,2,Chills,Chills,,,,NOT DONE")
    read = read_sdtm(folder)
    assert [(p.field, p.severity, p.kind) for p in read.problems if p.source == "ce.csv row 3"] == [
        ("CESTAT", "notice", "not-done")]
    assert "CE-P1-2" not in read.cohort.events["event_id"].to_list()


def test_a_result_that_is_not_a_number_nor_a_bound_is_still_an_error(tmp_path):
    with pytest.raises(InputError) as info:
        read_sdtm(append(study(tmp_path), "lb", K.format(seq=20, res="HAEMOLYSED", day=3)))
    assert [str(p) for p in info.value.problems] == ["lb.csv row 17: LBORRES: non-numeric result ('HAEMOLYSED')"]


# -- adverse events: grade from severity, partial dates ---------------------------------------------------

def ae_study(tmp_path: Path, *rows: str) -> Path:
    folder = set_header(study(tmp_path), "ae", ",AESEV,AESLIFE,AESDTH", ",,,")
    return append(folder, "ae", *rows)


@pytest.mark.parametrize("toxgr, sev, life, death, grade, source", [
    ("", "MILD", "", "", 1, "severity mild"),
    ("", "Moderate", "N", "N", 2, "severity moderate"),
    ("", "SEVERE", "", "", 3, "severity severe"),
    ("", "SEVERE", "Y", "", 4, "life-threatening"),
    ("", "MODERATE", "Y", "Y", 5, "fatal outcome"),
    ("2", "SEVERE", "", "", 2, "toxicity grade"),  # a stated toxicity grade wins over the severity
    ("", "", "", "", None, None),
])
def test_an_events_grade_and_where_it_came_from(tmp_path, toxgr, sev, life, death, grade, source):
    folder = ae_study(tmp_path, f"DW01,AE,P2,2,Headache,Headache,{toxgr},2024-01-12,,{sev},{life},{death}")
    read = read_sdtm(folder)
    row = read.cohort.events.filter(pl.col("event_id") == "AE-P2-2").row(0, named=True)
    assert (row["grade"], row["grade_source"]) == (grade, source)
    mapped = [p for p in read.problems if p.kind == "grade-from-severity"]
    assert len(mapped) == (source or "").startswith("severity")


def test_a_severity_that_is_not_mild_moderate_or_severe_gives_no_grade(tmp_path):
    read = read_sdtm(ae_study(tmp_path, "DW01,AE,P2,2,Headache,Headache,,2024-01-12,,GRADE 2,,"))
    assert read.cohort.events.filter(pl.col("event_id") == "AE-P2-2")["grade"].to_list() == [None]
    assert [(p.field, p.severity) for p in read.problems if p.source == "ae.csv row 2"] == [
        ("AESEV", "warning"), ("AEDECOD", "notice")]


@pytest.mark.parametrize("start, end, date, end_date, rule", [
    # P1's first exposure (RFXSTDTC) is 2024-01-08: a partial start in that month or year may be on treatment
    ("2024-01", "", "2024-01-08", None, "the first exposure (DM.RFXSTDTC)"),
    ("2024", "", "2024-01-08", None, "the first exposure (DM.RFXSTDTC)"),
    ("2023-12", "", "2023-12-01", None, "the first day of its month"),
    ("2023", "", "2023-01-01", None, "the first day of its year"),
    ("2024-02", "", "2024-02-01", None, "the first day of its month"),
    ("2024-01-12", "2024-02", "2024-01-12", "2024-02-29", "the last day of its month"),  # 2024 is a leap year
    ("2024-01-12", "2024", "2024-01-12", "2024-12-31", "the last day of its year"),
])
def test_partial_event_dates_are_completed_by_a_stated_rule(tmp_path, start, end, date, end_date, rule):
    folder = ae_study(tmp_path, f"DW01,AE,P1,1,Rash,Rash,2,{start},{end},,,")
    read = read_sdtm(folder)
    row = read.cohort.events.filter(pl.col("event_id") == "AE-P1-1").row(0, named=True)
    assert row["date"].isoformat() == date and not row["time_known"]
    assert (row["end_date"].isoformat() if row["end_date"] else None) == end_date
    assert rule in row["imputed"]
    assert [p.kind for p in read.problems if p.source == "ae.csv row 2" and p.severity == "warning"] == [
        "partial-date"]


def test_a_month_that_does_not_exist_is_still_an_error(tmp_path):
    with pytest.raises(InputError) as info:
        read_sdtm(ae_study(tmp_path, "DW01,AE,P1,1,Rash,Rash,2,2024-13,,,,"))
    assert [(p.source, p.field) for p in info.value.problems] == [("ae.csv row 2", "AESTDTC")]


# -- placebo ----------------------------------------------------------------------------------------------

def placebo_study(tmp_path: Path, arm_p2: str = "Placebo") -> Path:
    folder = set_header(study(tmp_path), "dm", ",ARM", ",Lenalidomide")
    dm = folder / "dm.csv"
    dm.write_text(dm.read_text().replace("2024-01-09,,,Lenalidomide", f"2024-01-09,,,{arm_p2}"))
    ex = folder / "ex.csv"  # P2 takes the blinded treatment instead of Revlimid
    ex.write_text(ex.read_text().replace("DW01,EX,P2,1,Revlimid,5,mg,,ORAL,,2024-01-09,2024-01-10",
                                         "DW01,EX,P2,1,PLACEBO,0,mg,QD,ORAL,,2024-01-09,2024-01-10"))
    return folder


def test_placebo_fixes_day_1_and_is_never_a_missed_dose(tmp_path):
    read = read_sdtm(placebo_study(tmp_path))
    doses = read.cohort.doses.filter(pl.col("patient_id") == "P2")
    assert doses.select("drug", "status", "dose").rows() == [("placebo", "completed", 0.0)] * 2
    assert read.cohort.first_dose_dates("lenalidomide")["P2"] == dt.date(2024, 1, 9)
    assert [p.kind for p in read.problems if p.file == "ex.csv"] == ["placebo"]


@pytest.mark.parametrize("arm, adj, status, drug", [
    ("Placebo", "", "completed", "placebo"),  # EXDOSE 0 of the blinded treatment in a placebo arm
    ("Placebo", "ADVERSE EVENT", "not-done", "lenalidomide"),  # a dose withheld, with its reason
    ("Lenalidomide", "", "not-done", "lenalidomide"),  # outside a placebo arm: a dose not given (a warning)
])
def test_a_zero_dose_is_placebo_only_in_a_placebo_arm_without_a_reason(tmp_path, arm, adj, status, drug):
    folder = placebo_study(tmp_path, arm)
    append(folder, "ex", f"DW01,EX,P2,2,LENALIDOMIDE,0,mg,QD,ORAL,{adj},2024-01-11,2024-01-11")
    dose = read_sdtm(folder).cohort.doses.filter(pl.col("dose_id") == "EX-P2-2").row(0, named=True)
    assert (dose["status"], dose["drug"]) == (status, drug)


# -- findings: qualifiers, synonyms -----------------------------------------------------------------------

def vs_study(tmp_path: Path, *rows: str) -> Path:
    folder = set_header(study(tmp_path), "vs", ",VSPOS,VSTPTNUM,VISITNUM", ",,,1")
    return append(folder, "vs", *rows)


BP = "DW01,VS,P1,{seq},SYSBP,Systolic,{value},mmHg,{value},mmHg,,2024-01-11,{pos},{tpt},{visit}"


def test_supine_and_standing_pressures_at_one_time_are_two_findings(tmp_path):
    folder = vs_study(tmp_path, BP.format(seq=10, value=120, pos="SUPINE", tpt=815, visit=2),
                      BP.format(seq=11, value=120, pos="STANDING", tpt=816, visit=2))
    obs = read_sdtm(folder).cohort.observations.filter(pl.col("code") == "SYSBP")
    assert sorted(obs["qualifiers"].to_list()) == ["POS=STANDING; TPTNUM=816", "POS=SUPINE; TPTNUM=815"]


def test_the_same_finding_twice_is_read_once(tmp_path):
    folder = vs_study(tmp_path, BP.format(seq=10, value=120, pos="SUPINE", tpt=815, visit=2),
                      BP.format(seq=11, value=120, pos="SUPINE", tpt=815, visit=2))
    read = read_sdtm(folder)
    [problem] = [p for p in read.problems if p.source == "vs.csv row 6"]
    assert (problem.severity, problem.kind, problem.detail) == ("warning", "repeated", "as row 5")
    assert read.cohort.observations.filter(pl.col("code") == "SYSBP")["obs_id"].to_list() == ["VS-P1-10"]


def test_two_visits_on_one_date_are_two_records(tmp_path):
    """SDTMIG's natural key of a finding has VISITNUM: two visits on one date are two records."""
    folder = vs_study(tmp_path, BP.format(seq=10, value=120, pos="SUPINE", tpt=815, visit=2),
                      BP.format(seq=11, value=120, pos="SUPINE", tpt=815, visit=3))
    obs = read_sdtm(folder).cohort.observations.filter(pl.col("code") == "SYSBP")
    assert sorted(obs["qualifiers"].to_list()) == ["POS=SUPINE; TPTNUM=815; VISITNUM=2",
                                                   "POS=SUPINE; TPTNUM=815; VISITNUM=3"]


def test_pulse_is_read_as_heart_rate(tmp_path):
    folder = append(study(tmp_path), "vs", "DW01,VS,P1,5,PULSE,Pulse Rate,72,BEATS/MIN,72,BEATS/MIN,,2024-01-11")
    hr = read_sdtm(folder).cohort.observations.filter(pl.col("obs_id") == "VS-P1-5").row(0, named=True)
    assert (hr["code"], hr["value"], hr["unit"]) == ("HR", 72.0, "/min")


def test_a_blood_pressure_without_a_unit_is_read_in_mmhg_with_a_warning(tmp_path):
    folder = append(study(tmp_path), "vs", "DW01,VS,P1,5,DIABP,Diastolic,80,,80,,,2024-01-11")
    read = read_sdtm(folder)
    assert read.cohort.observations.filter(pl.col("obs_id") == "VS-P1-5")["orig_unit"].to_list() == ["mm[Hg]"]
    assert [(p.field, p.severity, p.kind) for p in read.problems if p.source == "vs.csv row 5"] == [
        ("VSORRESU", "warning", "assumed")]


# -- DM: stated age, study id -----------------------------------------------------------------------------

@pytest.mark.parametrize("age, unit, years", [("63", "YEARS", 63.0), ("18", "MONTHS", 1.5), ("63", "", 63.0)])
def test_a_stated_age_stands_in_for_a_birth_date(tmp_path, age, unit, years):
    folder = set_header(study(tmp_path), "dm", ",AGE,AGEU,RFSTDTC", f",{age},{unit},2024-01-08")
    dm = folder / "dm.csv"
    dm.write_text(dm.read_text().replace("1948-05-02", ""))
    read = read_sdtm(folder)
    p1 = read.cohort.patients.filter(pl.col("patient_id") == "P1").row(0, named=True)
    assert (p1["birth_date"], p1["age"], p1["age_date"], p1["study_id"]) == (None, years, dt.date(2024, 1, 8), "DW01")
    assert [p.field for p in read.problems if p.source == "dm.csv row 1"] == (["AGEU"] if not unit else [])


def test_the_new_fields_survive_a_write_and_a_read(tmp_path):
    folder = ae_study(tmp_path, "DW01,AE,P1,1,Rash,Rash,,2024-01,,MODERATE,,")
    folder = set_header(folder, "vs", ",VSPOS,VSTPTNUM,VISITNUM", ",,,1")
    append(folder, "vs", BP.format(seq=10, value=120, pos="SUPINE", tpt=815, visit=2),
           BP.format(seq=11, value=120, pos="STANDING", tpt=816, visit=2))
    append(folder, "lb", GLUC.format(seq=20, res="<40", day=3))
    first = read_sdtm(folder).cohort
    write_sdtm(first, tmp_path / "out")
    second = read_sdtm(tmp_path / "out").cohort
    for table in ("patients", "observations", "doses"):
        assert_frame_equal(getattr(second, table).drop("source"), getattr(first, table).drop("source"))
    # events: the completed date is written as a full date, so the rule is not read back
    assert_frame_equal(second.events.drop("source", "imputed"), first.events.drop("source", "imputed"))
    assert set(pl.read_csv(tmp_path / "out" / "lb.csv", infer_schema=False)["STUDYID"]) == {"DW01"}
