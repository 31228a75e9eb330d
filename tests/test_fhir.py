"""FHIR R4 reader and writers (src/dosewatch/io/fhir.py), on the hand-written bundles in tests/data/fhir."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
from fhir.resources.R4B.adverseevent import AdverseEvent
from fhir.resources.R4B.bundle import Bundle
from hypothesis import given, settings
from hypothesis import strategies as st

from dosewatch.errors import InputError
from dosewatch.events import Event, Evidence
from dosewatch.io import read_any
from dosewatch.io.fhir import read_fhir
from dosewatch.io.fhir_base import GRADE_URL, fhir_id, parse_when
from dosewatch.io.fhir_write import adverse_events_bundle, cohort_to_bundle, write_json

DATA = Path(__file__).parent / "data" / "fhir"
PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1950-01-01"}


@pytest.fixture(scope="module")
def collection():
    return read_fhir(DATA / "collection.json")


def obs(cohort, obs_id: str) -> dict:
    rows = cohort.observations.filter(pl.col("obs_id") == obs_id).to_dicts()
    assert len(rows) == 1, obs_id
    return rows[0]


def bundle_file(tmp_path: Path, *resources: dict, name: str = "b.json", type: str = "collection") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"resourceType": "Bundle", "type": type,
                                "entry": [{"resource": r} for r in resources]}))
    return path


def potassium(obs_id: str = "k", value=4.0, unit: str = "mmol/L", **extra) -> dict:
    return {"resourceType": "Observation", "id": obs_id, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]},
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2024-01-02T08:00:00+01:00",
            "valueQuantity": {"value": value, "unit": unit}, **extra}


def problems_of(result, severity: str = "error") -> list[str]:
    return [str(p) for p in result.problems if p.severity == severity]


# ------------------------------------------------------------------------------------------ Patient


def test_patients_sex_birth_and_death(collection):
    patients = {r["patient_id"]: r for r in collection.cohort.patients.to_dicts()}
    assert patients["p1"]["sex"] == "M" and patients["p1"]["birth_date"] == dt.date(1950, 4, 12)
    assert patients["p2"]["sex"] == "F" and patients["p2"]["deceased_date"] == dt.date(2024, 3, 10)
    assert patients["p1"]["deceased_date"] is None
    assert patients["p3"]["sex"] == "U"  # gender "other"
    assert patients["p1"]["source"] == "collection.json Patient/p1"


def test_partial_birth_date_is_left_empty_with_a_warning(collection):
    [p3] = collection.cohort.patients.filter(pl.col("patient_id") == "p3").to_dicts()
    assert p3["birth_date"] is None
    assert ("collection.json Patient/p3: birthDate: partial or unreadable date: left empty "
            "(partial date '1960': a full date is needed)") in problems_of(collection, "warning")


def test_deceased_date_time_yields_a_death_event(collection):
    death = collection.cohort.events.filter(pl.col("code") == "DEATH").to_dicts()
    assert len(death) == 1
    assert death[0]["patient_id"] == "p2" and death[0]["term"] == "Death"
    assert death[0]["time"] == dt.datetime(2024, 3, 10, 14, 0) and death[0]["time_known"]


def test_deceased_boolean_without_date_is_a_warning(tmp_path):
    path = bundle_file(tmp_path, {**PATIENT, "deceasedBoolean": True})
    result = read_fhir(path)
    assert result.cohort.patients["deceased_date"].to_list() == [None]
    assert "b.json Patient/p1: deceasedBoolean: deceased without a date: no death date recorded" in \
        problems_of(result, "warning")


def test_unknown_gender_code_is_an_error(tmp_path):
    result = read_fhir(bundle_file(tmp_path, {**PATIENT, "gender": "M"}), collect=True)
    assert problems_of(result) == ["b.json Patient/p1: gender: unknown gender (male, female, other, unknown) ('M')"]


# ------------------------------------------------------------------------------------------ Observation


def test_potassium_in_meq_per_litre_with_reference_range(collection):
    k = obs(collection.cohort, "k1")
    assert (k["code"], k["value"], k["unit"]) == ("K", 5.8, "mmol/L")
    assert (k["orig_value"], k["orig_unit"]) == (5.8, "mEq/L")
    assert (k["ref_low"], k["ref_high"]) == (3.5, 5.1)


def test_creatinine_mg_per_dl_to_umol_per_litre_prefers_the_ucum_code(collection):
    cr = obs(collection.cohort, "cr1")
    assert cr["unit"] == "umol/L" and cr["orig_unit"] == "mg/dL"  # the UCUM code, not the unit text
    assert cr["value"] == pytest.approx(1.2 * 10_000 / 113.12, rel=1e-12)  # 106.08 umol/L
    assert cr["ref_low"] == pytest.approx(0.7 * 10_000 / 113.12, rel=1e-12)
    assert cr["ref_high"] == pytest.approx(1.3 * 10_000 / 113.12, rel=1e-12)


def test_white_cells_per_microlitre_and_temperature_in_fahrenheit(collection):
    wbc = obs(collection.cohort, "wbc1")
    assert (wbc["value"], wbc["unit"], wbc["orig_value"], wbc["orig_unit"]) == (150.0, "10*9/L", 150000.0, "/uL")
    temp = obs(collection.cohort, "t1")
    assert temp["unit"] == "Cel" and temp["value"] == pytest.approx((101.3 - 32) * 5 / 9, rel=1e-12)
    assert temp["orig_unit"] == "[degF]"


def test_haemoglobin_and_platelets_in_conventional_units(tmp_path):
    hb = obs(read_fhir(DATA / "searchset.json").cohort, "hb1")
    assert (hb["value"], hb["unit"]) == (pytest.approx(95.0), "g/L")
    plt = read_fhir(DATA / "transaction.json").cohort.observations
    assert plt["value"].to_list() == [48.0, 52.0] and set(plt["unit"]) == {"10*9/L"}


def test_effective_times_keep_wall_clock_and_offset(collection):
    k = obs(collection.cohort, "k1")
    assert (k["time"], k["date"], k["time_known"], k["tz_offset_min"]) == (
        dt.datetime(2024, 1, 3, 8, 30), dt.date(2024, 1, 3), True, 60)
    wbc = obs(collection.cohort, "wbc1")  # effectivePeriod.start
    assert (wbc["time"], wbc["tz_offset_min"]) == (dt.datetime(2024, 1, 4, 7, 0), -300)
    temp = obs(collection.cohort, "t1")  # effectiveInstant with milliseconds
    assert (temp["time"], temp["tz_offset_min"]) == (dt.datetime(2024, 1, 4, 21, 15, 0, 250_000), 0)


def test_date_only_effective_time_is_not_a_known_time(collection):
    sbp = obs(collection.cohort, "bp1#8480-6")
    assert (sbp["time"], sbp["date"], sbp["time_known"], sbp["tz_offset_min"]) == (
        dt.datetime(2024, 1, 5), dt.date(2024, 1, 5), False, None)


def test_blood_pressure_panel_components_become_observations(collection):
    sbp, dbp = obs(collection.cohort, "bp1#8480-6"), obs(collection.cohort, "bp1#8462-4")
    assert (sbp["code"], sbp["value"], sbp["unit"]) == ("SYSBP", 130.0, "mm[Hg]")
    assert (dbp["code"], dbp["value"]) == ("DIABP", 85.0)
    assert collection.cohort.observations.filter(pl.col("obs_id").str.starts_with("bp1")).height == 2
    assert ("collection.json Observation/bp1: component[2].code: component http://loinc.org|8478-0, 'Mean blood "
            "pressure' is not used by dosewatch") in problems_of(collection, "notice")


def test_lymph_node_site_from_body_site_text_or_coding_display(collection):
    ln = obs(collection.cohort, "ln1")
    assert (ln["code"], ln["value"], ln["unit"], ln["site"]) == ("LNDIAM", 3.5, "cm", "left cervical")
    tender = obs(collection.cohort, "ten1")
    assert tender["site"] == "Right axillary lymph node"
    assert obs(collection.cohort, "k1")["site"] is None


def test_boolean_and_integer_values_for_flags_and_scores(collection):
    tender = obs(collection.cohort, "ten1")
    assert (tender["code"], tender["value"], tender["unit"], tender["orig_unit"]) == ("LNTENDER", 1.0, "1", None)
    pain = obs(collection.cohort, "pain1")
    assert (pain["code"], pain["value"]) == ("PAIN", 2.0)


def test_entered_in_error_observation_is_skipped_with_a_notice(collection):
    assert "k-wrong" not in collection.cohort.observations["obs_id"].to_list()
    assert "collection.json Observation/k-wrong: status: status entered-in-error: not read" in \
        problems_of(collection, "notice")


def test_comparator_is_kept_with_a_warning(tmp_path):
    path = bundle_file(tmp_path, PATIENT, potassium(valueQuantity={"value": 2.5, "comparator": "<", "unit": "mmol/L"}))
    result = read_fhir(path)
    assert ("b.json Observation/k: valueQuantity.comparator: result given as a bound: read as the bound with its "
            "comparator, graded as the grade the bound guarantees (<2.5)") in problems_of(result, "warning")
    k = obs(result.cohort, "k")
    assert (k["value"], k["comparator"]) == (2.5, "<")
    bad = bundle_file(tmp_path, PATIENT, potassium(valueQuantity={"value": 2.5, "comparator": "~", "unit": "mmol/L"}))
    assert problems_of(read_fhir(bad, collect=True)) == [  # not a FHIR comparator: invalid R4
        "b.json Observation/k: valueQuantity.comparator: invalid FHIR R4 Observation: Value error, Code value "
        "string does not match spec regex."] or problems_of(read_fhir(bad, collect=True))


def test_missing_value_and_unread_value_types(tmp_path):
    absent = potassium("a")
    del absent["valueQuantity"]
    absent["dataAbsentReason"] = {"text": "haemolysed"}
    text = potassium("s")
    del text["valueQuantity"]
    text["valueString"] = "high"
    result = read_fhir(bundle_file(tmp_path, PATIENT, absent, text), collect=True)
    assert problems_of(result) == [
        "b.json Observation/s: valueString: valueString is not read (valueQuantity, valueInteger or valueBoolean)"]
    # a value the source says is absent is not an untrustworthy value: a notice, with the reason
    assert problems_of(result, "notice") == ["b.json Observation/a: value[x]: no value (data absent) (haemolysed)"]


def test_partial_effective_date_is_an_error(tmp_path):
    result = read_fhir(bundle_file(tmp_path, PATIENT, potassium(effectiveDateTime="2024-01")), collect=True)
    assert problems_of(result) == ["b.json Observation/k: effectiveDateTime: partial date '2024-01': "
                                   "a full date is needed"]


def test_subject_must_be_a_patient(tmp_path):
    result = read_fhir(bundle_file(tmp_path, PATIENT, potassium(subject={"reference": "Group/g1"})), collect=True)
    assert problems_of(result) == ["b.json Observation/k: subject: reference 'Group/g1': patient not a Patient"]


def test_dosewatch_finding_code_system(tmp_path):
    spleen = {"resourceType": "Observation", "id": "sp", "status": "final",
              "code": {"coding": [{"system": "https://dosewatch.org/fhir/CodeSystem/finding", "code": "SPLEEN"}]},
              "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2024-01-02",
              "valueQuantity": {"value": 4, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"}}
    row = obs(read_fhir(bundle_file(tmp_path, PATIENT, spleen)).cohort, "sp")
    assert (row["code"], row["value"], row["unit"]) == ("SPLEEN", 4.0, "cm")


@settings(max_examples=40, deadline=None)
@given(st.floats(min_value=1.0, max_value=15.0, allow_nan=False))
def test_potassium_reads_the_same_in_mmol_and_meq(tmp_path_factory, value):
    tmp = tmp_path_factory.mktemp("k")
    cohort = read_fhir(bundle_file(tmp, PATIENT, potassium("a", value, "mmol/L"),
                                   potassium("b", value, "mEq/L", effectiveDateTime="2024-01-03"))).cohort
    a, b = cohort.observations["value"].to_list()
    assert a == pytest.approx(b, rel=1e-12) and a == pytest.approx(value, rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.floats(min_value=0.1, max_value=30.0, allow_nan=False))
def test_creatinine_mg_per_dl_converts_by_molar_mass(tmp_path_factory, value):
    creat = potassium("c", value, "mg/dL")
    creat["code"] = {"coding": [{"system": "http://loinc.org", "code": "2160-0"}]}
    row = obs(read_fhir(bundle_file(tmp_path_factory.mktemp("c"), PATIENT, creat)).cohort, "c")
    assert row["value"] == pytest.approx(value * 10_000 / 113.12, rel=1e-9)


# ------------------------------------------------------------------------------------------ doses


def test_medication_administrations(collection):
    doses = {r["dose_id"]: r for r in collection.cohort.doses.to_dicts()}
    d1 = doses["d1"]  # RxNorm code
    assert (d1["drug"], d1["rxnorm"], d1["dose"], d1["dose_unit"], d1["route"], d1["status"]) == (
        "lenalidomide", "342369", 2.5, "mg", "Oral route", "completed")
    assert d1["time"] == dt.datetime(2024, 1, 2, 9, 0) and d1["time_known"]
    d2 = doses["d2"]  # text only (brand name), effectivePeriod.start, unit text without code
    assert (d2["drug"], d2["rxnorm"], d2["dose"], d2["dose_unit"], d2["route"]) == (
        "lenalidomide", "342369", 5.0, "mg", "oral")
    assert d2["date"] == dt.date(2024, 1, 9)
    d3 = doses["d3"]  # contained Medication, missed dose kept
    assert (d3["drug"], d3["status"], d3["dose"], d3["time_known"]) == ("dexamethasone", "not-done", None, False)
    assert doses["d4"]["drug"] == "allopurinol"  # Medication elsewhere in the bundle
    assert doses["d5"]["drug"] == "venetoclax"


def test_dose_status_entered_in_error_and_unknown_status(tmp_path):
    base = {"resourceType": "MedicationAdministration", "subject": {"reference": "Patient/p1"},
            "medicationCodeableConcept": {"text": "lenalidomide"}, "effectiveDateTime": "2024-01-02"}
    path = bundle_file(tmp_path, PATIENT, {**base, "id": "e", "status": "entered-in-error"},
                       {**base, "id": "x", "status": "given"})
    result = read_fhir(path, collect=True)
    assert result.cohort.doses.height == 0
    assert "b.json MedicationAdministration/e: status: status entered-in-error: not read" in \
        problems_of(result, "notice")
    assert problems_of(result) == ["b.json MedicationAdministration/x: status: unknown status "
                                   "(completed, entered-in-error, in-progress, not-done, on-hold, stopped, unknown) "
                                   "('given')"]


def test_missing_medication_reference(tmp_path):
    dose = {"resourceType": "MedicationAdministration", "id": "d", "status": "completed",
            "medicationReference": {"reference": "Medication/nope"}, "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2024-01-02"}
    result = read_fhir(bundle_file(tmp_path, PATIENT, dose), collect=True)
    assert problems_of(result) == ["b.json MedicationAdministration/d: medicationReference: "
                                   "reference 'Medication/nope': Medication not found"]


# ------------------------------------------------------------------------------------------ events


def test_conditions_and_adverse_events(collection):
    events = {r["event_id"]: r for r in collection.cohort.events.to_dicts()}
    c1 = events["c1"]  # SNOMED code, grade extension, abatement
    assert (c1["code"], c1["term"], c1["grade"], c1["end_date"]) == (
        "SEPSIS", "Gram-negative sepsis", 4, dt.date(2024, 3, 8))
    assert c1["time"] == dt.datetime(2024, 3, 5, 10, 0)
    c2 = events["c2"]  # text only, recordedDate
    assert (c2["code"], c2["date"], c2["time_known"], c2["grade"]) == ("HOSPITAL", dt.date(2024, 1, 6), False, None)
    ae = events["ae1"]  # AdverseEvent: text, date, severity severe -> grade 3
    assert (ae["code"], ae["term"], ae["grade"], ae["source"]) == (
        "ARRHYTHMIA", "Ventricular tachycardia", 3, "collection.json AdverseEvent/ae1")


def test_bad_grade_extension_and_potential_adverse_event(tmp_path):
    cond = {"resourceType": "Condition", "id": "c", "code": {"text": "sepsis"}, "subject": {"reference": "Patient/p1"},
            "onsetDateTime": "2024-01-02", "extension": [{"url": GRADE_URL, "valueInteger": 7}]}
    potential = {"resourceType": "AdverseEvent", "id": "pe", "actuality": "potential", "event": {"text": "sepsis"},
                 "subject": {"reference": "Patient/p1"}, "date": "2024-01-02"}
    result = read_fhir(bundle_file(tmp_path, PATIENT, cond, potential), collect=True)
    assert problems_of(result) == [f"b.json Condition/c: extension({GRADE_URL}): grade is not an integer 1-5 (7)"]
    assert "b.json AdverseEvent/pe: actuality: potential adverse event: not read" in problems_of(result, "notice")


# ------------------------------------------------------------------------------------------ bundle kinds


def test_transaction_bundle_resolves_urn_uuid_references():
    result = read_fhir(DATA / "transaction.json")
    patient = "0f3b2c1a-7d7e-4a8b-9c51-3e1f0a6b2d11"
    assert result.cohort.patient_ids == [patient]
    assert result.cohort.observations["patient_id"].to_list() == [patient, patient]
    assert result.cohort.observations["obs_id"].to_list() == ["7a1c9e44-2b6f-4d0e-8f3a-5c2d1b0e9f77", "plt2"]
    assert problems_of(result, "notice") == ["transaction.json entry[3]: resource: no resource (request DELETE): "
                                             "not read"]


def test_searchset_operation_outcome_is_ignored_with_a_note():
    result = read_fhir(DATA / "searchset.json")
    assert result.cohort.observations.height == 1
    assert problems_of(result, "warning") == ["searchset.json OperationOutcome/oo1: issue: OperationOutcome in the "
                                              "bundle: not read (2 results hidden by access rules)"]


def test_a_resource_type_dosewatch_does_not_read_is_a_notice(collection):
    assert "collection.json Encounter/enc1: resourceType: Encounter is not read by dosewatch" in \
        problems_of(collection, "notice")
    assert collection.errors == []


def test_read_any_dispatches_json_to_the_fhir_reader():
    assert read_any(DATA / "collection.json").cohort.patient_ids == ["p1", "p2", "p3"]


def test_not_a_bundle_and_unread_bundle_type(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(PATIENT))
    assert problems_of(read_fhir(path, collect=True)) == ["p.json Bundle: resourceType: not a FHIR Bundle"]
    history = bundle_file(tmp_path, PATIENT, type="history")
    assert problems_of(read_fhir(history, collect=True)) == [
        "b.json Bundle: type: bundle type is not read (need one of batch, collection, searchset, transaction) "
        "('history')"]


def test_malformed_json_names_file_line_and_column():
    with pytest.raises(InputError) as exc:
        read_fhir(DATA / "malformed.json")
    [problem] = exc.value.problems
    assert (problem.source, problem.field) == ("malformed.json line 4 column 3", "json")
    assert (problem.message, problem.detail) == ("malformed JSON", "Expecting ',' delimiter")


# ------------------------------------------------------------------------------------------ problems

EXPECTED = [
    ("Patient/pbad", "birthDate", "invalid FHIR R4 Patient"),
    ("Observation/v1", "valueQuantity.value", "invalid FHIR R4 Observation"),
    ("Observation/u2", "valueQuantity.unit", "cannot convert '10*9/L' to 'mmol/L' for Potassium"),
    ("Observation/u3", "valueQuantity.unit", "unknown unit 'furlongs' for Potassium"),
    ("Observation/i1", "valueQuantity.value", "implausible Potassium (plausible 1-15 mmol/L) (60 mmol/L = 60 mmol/L)"),
    ("Observation/t1", "effective[x]", "missing effective time"),
    ("Observation/dup", "id", "duplicate resource: the same type and id as an earlier entry (Observation/dup is also "
                              "entry[9])"),
    ("Observation/r2", "subject", "reference 'Patient/pbad': that patient is invalid and was not read"),
    ("entry[14] Observation", "subject", "no patient reference"),
    ("MedicationAdministration/late", "effectiveDateTime",
     "dose given (status completed) after the patient's death (2024-02-05 after 2024-02-01)"),
]


def test_every_problem_is_collected_in_one_pass_naming_resource_and_field():
    result = read_fhir(DATA / "problems.json", collect=True)
    errors = result.errors
    assert len(errors) == len(EXPECTED)
    for problem, (where, field, message) in zip(errors, EXPECTED, strict=True):
        assert problem.source == f"problems.json {where}"
        assert problem.field == field
        assert message in str(problem)
    # what dosewatch does not use, and what it assumed, are not errors
    assert [(p.source, p.field) for p in result.problems if p.severity == "notice"] == [
        ("problems.json Observation/u1", "code"),  # HbA1c: a LOINC dosewatch does not grade
        ("problems.json MedicationAdministration/m1", "medicationCodeableConcept"),  # aspirin: kept by its name
        ("problems.json Condition/x1", "code"),  # headache: kept as a reported event
        ("problems.json Encounter/e1", "resourceType")]
    assert [(p.source, p.kind) for p in result.problems if p.severity == "warning"] == [
        ("problems.json Observation/same2", "unit-text"),  # mEq/L read as UCUM meq/L
        ("problems.json Observation/same2", "repeated"),  # the same result as Observation/ok1: read once
        ("problems.json Observation/r1", "assumed")]  # Patient/nobody referenced, not in the bundle: created


def test_all_or_nothing_raises_with_every_error():
    with pytest.raises(InputError) as exc:
        read_fhir(DATA / "problems.json")
    assert [(p.source, p.field) for p in exc.value.problems] == [
        (f"problems.json {where}", field) for where, field, _ in EXPECTED]
    assert all(p.severity == "error" for p in exc.value.problems)


def test_skip_invalid_keeps_valid_records_and_lists_every_dropped_one():
    result = read_fhir(DATA / "problems.json", skip_invalid=True)
    cohort = result.cohort
    assert cohort.patient_ids == ["q1", "nobody"]  # nobody: referenced but absent, created with unknown sex
    assert cohort.observations["obs_id"].to_list() == ["ok1", "dup", "r1"]  # the first "dup"; its duplicate dropped
    assert cohort.doses.select("dose_id", "drug").rows() == [("early", "lenalidomide"), ("m1", "aspirin")]
    assert cohort.events.select("event_id", "code", "term").rows() == [
        ("q1#deceased", "DEATH", "Death"), ("x1", None, "Headache")]
    assert len(result.errors) == len(EXPECTED)


# ------------------------------------------------------------------------------------------ writers


def assert_same_tables(a, b):
    for name in ("patients", "observations", "doses", "events"):
        left, right = getattr(a, name).drop("source"), getattr(b, name).drop("source")
        assert left.equals(right), name


@pytest.mark.parametrize("name", ["collection.json", "transaction.json", "searchset.json"])
def test_round_trip_gives_identical_canonical_tables(tmp_path, name):
    first = read_fhir(DATA / name).cohort
    bundle = cohort_to_bundle(first)
    Bundle.model_validate(bundle)
    write_json(bundle, tmp_path / "out.json")
    second = read_fhir(tmp_path / "out.json")
    assert second.errors == []
    assert_same_tables(first, second.cohort)
    assert second.cohort.observations["source"][0].startswith("out.json Observation/")


def test_dose_and_event_offsets_survive_a_round_trip(tmp_path):
    dose = {"resourceType": "MedicationAdministration", "status": "completed", "subject": {"reference": "Patient/p1"},
            "medicationCodeableConcept": {"text": "lenalidomide"}}
    path = bundle_file(
        tmp_path, PATIENT,
        {**dose, "id": "d1", "effectiveDateTime": "2024-01-01T08:00:00+02:00"},
        {**dose, "id": "d2", "effectivePeriod": {"start": "2024-01-02T08:00:00-05:30"}},
        {**dose, "id": "d3", "effectiveDateTime": "2024-01-03"},
        {"resourceType": "Condition", "id": "c1", "code": {"text": "sepsis"}, "subject": {"reference": "Patient/p1"},
         "onsetDateTime": "2024-01-04T22:15:00+02:00"},
        {"resourceType": "AdverseEvent", "id": "ae1", "actuality": "actual", "event": {"text": "sepsis"},
         "subject": {"reference": "Patient/p1"}, "date": "2024-01-05T01:00:00-03:00"})
    first = read_fhir(path).cohort
    offsets = lambda table, key: dict(zip(table[key], table["tz_offset_min"], strict=True))  # noqa: E731
    # a date has no offset (FHIR requires one with every time, so only a date-only dose has none)
    assert offsets(first.doses, "dose_id") == {"d1": 120, "d2": -330, "d3": None}
    assert offsets(first.events, "event_id") == {"c1": 120, "ae1": -180}
    assert first.doses.filter(pl.col("dose_id") == "d1")["time"][0] == dt.datetime(2024, 1, 1, 8, 0)  # not applied

    bundle = cohort_to_bundle(first)
    resources = {e["resource"]["id"]: e["resource"] for e in bundle["entry"]}
    assert resources["d1"]["effectiveDateTime"] == "2024-01-01T08:00:00+02:00"
    assert resources["d3"]["effectiveDateTime"] == "2024-01-03"
    assert resources["c1"]["onsetDateTime"] == "2024-01-04T22:15:00+02:00"
    write_json(bundle, tmp_path / "out.json")
    assert_same_tables(first, read_fhir(tmp_path / "out.json").cohort)


def test_written_observations_keep_the_original_unit_and_loinc(collection):
    bundle = cohort_to_bundle(collection.cohort)
    resources = {(e["resource"]["resourceType"], e["resource"]["id"]): e["resource"] for e in bundle["entry"]}
    creat = resources[("Observation", "cr1")]
    assert creat["code"]["coding"][0] == {"system": "http://loinc.org", "code": "2160-0", "display": "Creatinine"}
    assert creat["valueQuantity"] == {"value": 1.2, "unit": "mg/dL", "system": "http://unitsofmeasure.org",
                                      "code": "mg/dL"}
    assert creat["effectiveDateTime"] == "2024-01-03T08:30:00+01:00"
    assert creat["referenceRange"][0]["low"]["unit"] == "umol/L"  # ranges in the canonical unit
    assert resources[("Observation", "k1")]["valueQuantity"] == {"value": 5.8, "unit": "mEq/L"}  # not UCUM: no code
    panel = resources[("Observation", "bp1")]
    assert panel["code"]["coding"][0]["code"] == "85354-9"
    assert [c["code"]["coding"][0]["code"] for c in panel["component"]] == ["8480-6", "8462-4"]
    assert resources[("Observation", "ln1")]["bodySite"] == {"text": "left cervical"}
    assert resources[("Observation", "ten1")]["valueInteger"] == 1
    assert resources[("Patient", "p2")]["deceasedDateTime"] == "2024-03-10T14:00:00+01:00"  # the offset read
    assert ("Condition", "p2#deceased") not in resources and ("Condition", "c1") in resources
    assert resources[("MedicationAdministration", "d1")]["medicationCodeableConcept"] == {
        "text": "lenalidomide", "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "342369"}]}


def test_writer_makes_valid_ids_from_foreign_record_ids(collection):
    assert fhir_id("p1") == "p1"
    messy = fhir_id("STUDY 01_701/1015")
    assert messy.startswith("STUDY-01-701-1015-") and len(messy) <= 64
    assert fhir_id("STUDY 01_701/1015") != fhir_id("STUDY-01-701-1015")
    renamed = collection.cohort.patients.with_columns(pl.lit("A_1").alias("patient_id"))
    cohort = type(collection.cohort)(renamed.head(1))
    Bundle.model_validate(cohort_to_bundle(cohort))


def test_canonical_value_written_when_there_is_no_original(collection):
    table = collection.cohort.observations.filter(pl.col("obs_id") == "cr1").with_columns(
        pl.lit(None, pl.Float64).alias("orig_value"), pl.lit(None, pl.String).alias("orig_unit"))
    cohort = type(collection.cohort)(collection.cohort.patients, table)
    [resource] = [e["resource"] for e in cohort_to_bundle(cohort)["entry"] if e["resource"]["id"] == "cr1"]
    assert resource["valueQuantity"]["unit"] == "umol/L"
    assert resource["valueQuantity"]["value"] == pytest.approx(106.082, abs=1e-3)


def test_adverse_events_bundle_validates_and_cites_its_evidence(collection):
    event = Event(
        patient_id="p1", term="Hyperkalemia", criteria="ctcae-5.0", grade=2, onset=dt.date(2024, 1, 3),
        evidence=(Evidence("k1", "K", 5.8, "mmol/L", dt.date(2024, 1, 3), note="> 5.5"),
                  Evidence("bp1#8480-6", "SYSBP", 130.0, "mm[Hg]", dt.date(2024, 1, 5)),
                  Evidence("c2", "HOSPITAL", None, None, dt.date(2024, 1, 6))),
        rule="K-high")
    fatal = Event(patient_id="p2", term="Sepsis", criteria="ctcae-5.0", grade=5, onset=dt.date(2024, 3, 10))
    bundle = adverse_events_bundle([event, fatal], collection.cohort, study_drug="lenalidomide")
    assert bundle["type"] == "collection"
    first, second = (AdverseEvent.model_validate(e["resource"]) for e in bundle["entry"])
    ae = bundle["entry"][0]["resource"]
    assert ae["subject"] == {"reference": "Patient/p1"} and ae["date"] == "2024-01-03"
    assert ae["event"] == {"text": "Hyperkalemia"} and ae["actuality"] == "actual"
    assert {"url": GRADE_URL, "valueInteger": 2} in ae["extension"]
    assert ae["severity"]["coding"][0]["code"] == "moderate"
    assert [h.get("reference") for h in ae["subjectMedicalHistory"]] == [
        "Observation/k1", "Observation/bp1", "Condition/c2"]
    assert ae["subjectMedicalHistory"][0]["display"] == "K 5.8 mmol/L on 2024-01-03 (> 5.5)"
    # the last completed study-drug dose up to the onset: d1 (2 Jan), not d2 (9 Jan)
    assert ae["suspectEntity"] == [{"instance": {"reference": "MedicationAdministration/d1",
                                                 "display": "lenalidomide 2.5 mg on 2024-01-02"}}]
    fatal_ae = bundle["entry"][1]["resource"]
    assert fatal_ae["outcome"]["coding"][0]["code"] == "fatal" and "suspectEntity" not in fatal_ae
    assert first.id != second.id
    assert adverse_events_bundle([event], collection.cohort) == adverse_events_bundle([event], collection.cohort)


def test_parse_when():
    assert parse_when("2024-01-02") == (dt.datetime(2024, 1, 2), dt.date(2024, 1, 2), False, None)
    assert parse_when("2024-01-02T23:59:59.1234567-03:30") == (
        dt.datetime(2024, 1, 2, 23, 59, 59, 123456), dt.date(2024, 1, 2), True, -210)
    for bad in ("2024", "2024-01", "yesterday", 20240102):
        with pytest.raises(ValueError):
            parse_when(bad)


def test_bundle_entry_fields_are_validated(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "transaction",
                                "entry": [{"resource": PATIENT, "request": {"method": "POST"}}]}))
    result = read_fhir(path, collect=True)
    assert [(p.source, p.field) for p in result.errors] == [("t.json Bundle", "entry[0].request.url")]
    assert "invalid FHIR R4 Bundle" in result.errors[0].message


# -- patients enrolled before (the trial server's import) --------------------------------------------

def test_known_patients_are_referred_to_without_a_patient_resource(tmp_path):
    path = bundle_file(tmp_path, potassium("k1"), potassium("k2", subject={"reference": "Patient/p2"}))
    alone = read_fhir(path)  # a file on its own: patients referenced but absent are created (a warning each)
    assert alone.cohort.patients.select("patient_id", "sex", "birth_date").rows() == [("p1", "U", None),
                                                                                      ("p2", "U", None)]
    assert [p.detail for p in alone.problems if p.kind == "assumed"] == ["patient p1", "patient p2"]
    result = read_fhir(path, known_patients={"p1", "p2"})
    assert result.cohort.patients.is_empty()  # not created: the store links them
    assert sorted(result.cohort.observations["patient_id"].to_list()) == ["p1", "p2"]
    # only the known ones: another reference is still an error naming the resource and field
    result = read_fhir(path, known_patients={"p1"}, collect=True)
    assert [(p.source, p.field) for p in result.errors] == [("b.json Observation/k2", "subject")]


def test_a_known_patient_with_an_id_that_is_not_a_fhir_id_is_found_by_its_written_id(tmp_path):
    pid = "SITE 01/0042"
    path = bundle_file(tmp_path, potassium("k1", subject={"reference": f"Patient/{fhir_id(pid)}"}))
    assert read_fhir(path, known_patients={pid}).cohort.observations["patient_id"].to_list() == [pid]


def test_a_patient_resource_in_the_bundle_wins_over_the_known_one(tmp_path):
    path = bundle_file(tmp_path, {**PATIENT, "gender": "robot"}, potassium("k1"))
    result = read_fhir(path, known_patients={"p1"}, collect=True)
    assert any(p.field == "subject" and "invalid" in p.message for p in result.errors)


# -- validation by shape (the fast path): the same verdict as fhir.resources --------------------------

@pytest.mark.parametrize("field, value", [
    ("status", "final  "),  # a code with trailing blanks
    ("status", ""),
    ("id", "no spaces allowed"),
    ("effectiveDateTime", "2024-13-02T08:00:00+01:00"),
    ("effectiveDateTime", "yesterday"),
    ("subject.reference", ""),
    ("valueQuantity.code", ""),
    ("valueQuantity.code", "mmol/L "),
])
def test_a_bad_value_in_a_known_shape_is_reported_as_by_full_validation(tmp_path, field, value):
    from fhir.resources.R4B.observation import Observation

    good = [potassium(f"k{i}", value=4.0 + i / 10) for i in range(3)]
    for g in good:  # one shape: valueQuantity with a system and a code
        g["valueQuantity"].update(system="http://unitsofmeasure.org", code="mmol/L")
    bad = json.loads(json.dumps(good[0]))
    bad["id"], bad["valueQuantity"]["value"] = "bad", 5.0
    head, _, tail = field.partition(".")
    if tail:
        bad[head][tail] = value
    else:
        bad[head] = value
    try:
        Observation.model_validate(bad)
        expected = False
    except Exception:
        expected = True
    result = read_fhir(bundle_file(tmp_path, PATIENT, *good, bad), collect=True)  # the good ones first
    assert expected  # each case is invalid FHIR
    bad_id = "bad" if field != "id" else value
    assert {p.source for p in result.errors} == {f"b.json Observation/{bad_id}"}  # named, with the field
    assert any(p.field.startswith(head) for p in result.errors)
    assert result.cohort.observations["obs_id"].to_list() == ["k0", "k1", "k2"]
