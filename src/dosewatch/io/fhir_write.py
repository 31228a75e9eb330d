"""FHIR R4 out: the canonical record as a collection Bundle (``cohort_to_bundle``) that reads back
to the same tables, and detected events as AdverseEvent resources (``adverse_events_bundle``)."""
from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

from .. import units
from ..analytes import Analyte, EventKind, catalog
from ..events import Event
from ..record import Cohort
from .fhir_base import (
    AE_OUTCOME, AE_SEVERITY, BP_PANEL, CATEGORY, CRITERIA_URL, FINDING, GENDER, GRADE_SEVERITY, GRADE_URL, LOINC,
    IMPUTED_URL, OBS_CATEGORY, QUALIFIERS_URL, RULE_URL, RXNORM, SEVERITY_SNOMED, SNOMED, UCUM, _model, fhir_id,
    format_when,
)
@cache
def _is_ucum(unit: str) -> bool:
    """True when ``unit`` is a UCUM code that reads back as itself."""
    if units.normalize_unit(unit) != unit:
        return False
    if units.is_known_ucum(unit):
        return True
    try:
        return unit == "1" or units.registry().from_ucum(unit) is not None
    except Exception:  # ucumvert raises its own parse errors
        return False


def _quantity(value: float, unit: str | None) -> dict:
    """A Quantity; the UCUM code is given only when the unit is its own UCUM spelling, so reading
    it back gives the same unit."""
    qty: dict[str, Any] = {"value": value}
    if unit is not None:
        qty["unit"] = unit
        if _is_ucum(unit):
            qty.update(system=UCUM, code=unit)
    return qty


def _subject(patient_id: str) -> dict:
    return {"reference": f"Patient/{fhir_id(patient_id)}"}


def _analyte_concept(analyte: Analyte, loinc: str | None = None) -> dict:
    if analyte.loinc:
        return {"coding": [{"system": LOINC, "code": loinc or analyte.loinc[0], "display": analyte.name}]}
    return {"coding": [{"system": FINDING, "code": analyte.code, "display": analyte.name}]}


def _value_fields(row: dict, analyte: Analyte) -> dict:
    """The value as read (orig_value/orig_unit), or the canonical value when there is no original."""
    value, unit = row["orig_value"], row["orig_unit"]
    if value is None or (unit is None and analyte.unit != "1"):
        value, unit = row["value"], row["unit"]
    out: dict[str, Any] = {}
    if unit is None and float(value).is_integer() and not row.get("comparator"):
        out["valueInteger"] = int(value)
    else:
        out["valueQuantity"] = _quantity(value, unit)
        if row.get("comparator"):
            out["valueQuantity"] = {"value": value, "comparator": row["comparator"],
                                    **{k: v for k, v in out["valueQuantity"].items() if k != "value"}}
    ref = {b: _quantity(row[f"ref_{b}"], analyte.unit) for b in ("low", "high") if row[f"ref_{b}"] is not None}
    if ref:  # written in the canonical unit, so that reading it back gives the same numbers
        out["referenceRange"] = [ref]
    return out


def _observation_id(obs_id: str, code: str) -> tuple[str, str | None]:
    """(FHIR Observation id, component LOINC): a row read from a panel component ("bp1#8480-6") is
    written back as that component of Observation "bp1"."""
    base, _, suffix = obs_id.partition("#")
    if suffix in catalog()[code].loinc:
        return fhir_id(base), suffix
    return fhir_id(obs_id), None


def _when_text(row: dict) -> str:
    """The FHIR dateTime of a record row (observation, dose or event), with its UTC offset."""
    return format_when(row["time"], row["time_known"], row["tz_offset_min"])


def _observations(cohort: Cohort) -> list[dict]:
    cat = catalog()
    groups: dict[str, list[tuple[str | None, dict]]] = {}  # FHIR resource id -> [(component LOINC, row)]
    for row in cohort.observations.iter_rows(named=True):
        rid, component = _observation_id(row["obs_id"], row["code"])
        groups.setdefault(rid, []).append((component, row))
    out = []
    for rid, rows in groups.items():
        first = rows[0][1]
        main = next((row for comp, row in rows if comp is None), None)
        lead = cat[(main or first)["code"]]
        resource: dict[str, Any] = {"resourceType": "Observation", "id": rid}
        qualifiers = next((row["qualifiers"] for _, row in rows if row["qualifiers"]), None)
        if qualifiers:  # position, time point, repetition: what tells this finding apart from another
            resource["extension"] = [{"url": QUALIFIERS_URL, "valueString": qualifiers}]
        resource.update(status="final",
                        category=[{"coding": [{"system": OBS_CATEGORY, "code": CATEGORY[lead.kind]}]}])
        if main is not None:
            resource["code"] = _analyte_concept(lead)
        elif {row["code"] for _, row in rows} <= {"SYSBP", "DIABP"}:
            resource["code"] = {"coding": [{"system": LOINC, "code": BP_PANEL, "display": "Blood pressure panel"}]}
        else:
            resource["code"] = {"text": "Panel"}
        resource["subject"] = _subject(first["patient_id"])
        resource["effectiveDateTime"] = _when_text(first)
        if main is not None:
            resource.update(_value_fields(main, lead))
        site = next((row["site"] for _, row in rows if row["site"]), None)
        if site:
            resource["bodySite"] = {"text": site}
        components = [{"code": _analyte_concept(cat[row["code"]], comp), **_value_fields(row, cat[row["code"]])}
                      for comp, row in rows if comp is not None]
        if components:
            resource["component"] = components
        out.append(resource)
    return out


def cohort_to_bundle(cohort: Cohort) -> dict:
    """A FHIR R4 collection Bundle holding the cohort: Patient, Observation (LOINC or the dosewatch
    finding code; the value in the unit it was read in), MedicationAdministration (RxNorm) and
    Condition (clinical events; a death also as Patient.deceasedDateTime). Reading it back gives the
    same canonical tables (apart from ``source``)."""
    cat = catalog()
    deaths = cohort.events.filter(cohort.events["code"] == "DEATH")
    death_events: dict[str, dict] = {}
    for row in cohort.patients.filter(cohort.patients["deceased_date"].is_not_null()).iter_rows(named=True):
        match = deaths.filter((deaths["patient_id"] == row["patient_id"]) & (deaths["date"] == row["deceased_date"]))
        if len(match):
            death_events[row["patient_id"]] = match.row(0, named=True)
    resources: list[dict] = []
    for row in cohort.patients.iter_rows(named=True):
        patient: dict[str, Any] = {"resourceType": "Patient", "id": fhir_id(row["patient_id"]),
                                   "gender": GENDER.get(row["sex"], "unknown")}
        if row["birth_date"]:
            patient["birthDate"] = row["birth_date"].isoformat()
        death = death_events.get(row["patient_id"])
        if death:
            patient["deceasedDateTime"] = _when_text(death)
        elif row["deceased_date"]:
            patient["deceasedDateTime"] = row["deceased_date"].isoformat()
        resources.append(patient)
    resources += _observations(cohort)
    for row in cohort.doses.iter_rows(named=True):
        concept: dict[str, Any] = {"text": row["drug"]}
        if row["rxnorm"]:
            concept["coding"] = [{"system": RXNORM, "code": row["rxnorm"]}]
        admin: dict[str, Any] = {
            "resourceType": "MedicationAdministration", "id": fhir_id(row["dose_id"]), "status": row["status"],
            "medicationCodeableConcept": concept, "subject": _subject(row["patient_id"]),
            "effectiveDateTime": _when_text(row),
        }
        dosage: dict[str, Any] = {}
        if row["dose"] is not None:
            dosage["dose"] = _quantity(row["dose"], row["dose_unit"])
        if row["route"]:
            dosage["route"] = {"text": row["route"]}
        if dosage:
            admin["dosage"] = dosage
        resources.append(admin)
    skip = {(e["patient_id"], e["event_id"]) for e in death_events.values()}
    for row in cohort.events.iter_rows(named=True):
        if (row["patient_id"], row["event_id"]) in skip:
            continue
        resources.append(_condition(row, cat.events.get(row["code"])))
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


def _condition(row: dict, kind: EventKind | None) -> dict:
    """A clinical event as a Condition: its text and the codes it was read with (else the event
    catalog's SNOMED CT code), its grade (a grade read from a severity goes back as that severity)."""
    concept: dict[str, Any] = {"text": row["term"] or (kind.term if kind else "event")}
    codings = [{"system": SNOMED, "code": kind.snomed[0], "display": kind.term}] if kind and kind.snomed else []
    codings += [dict(zip(("system", "code"), c.split("|", 1), strict=True)) for c in (row["codes"] or "").split()
                if "|" in c]
    if codings:
        concept["coding"] = codings
    condition: dict[str, Any] = {"resourceType": "Condition", "id": fhir_id(row["event_id"])}
    extension = []
    severity = (row["grade_source"] or "").removeprefix("severity ").lower()
    if row["grade"] is not None and severity not in SEVERITY_SNOMED:
        extension.append({"url": GRADE_URL, "valueInteger": row["grade"]})
    if row["imputed"]:
        extension.append({"url": IMPUTED_URL, "valueString": row["imputed"]})
    if extension:
        condition["extension"] = extension
    if row["grade"] is not None and severity in SEVERITY_SNOMED:
        condition["severity"] = {"coding": [{"system": SNOMED, "code": SEVERITY_SNOMED[severity],
                                             "display": severity}], "text": severity}
    condition.update(code=concept, subject=_subject(row["patient_id"]), onsetDateTime=_when_text(row))
    if row["end_date"]:
        condition["abatementDateTime"] = row["end_date"].isoformat()
    return condition


def adverse_events_bundle(events: list[Event], cohort: Cohort, *, study_drug: str | None = None) -> dict:
    """FHIR R4 AdverseEvent resources for detected events, in a collection Bundle.

    Each AdverseEvent has the term as ``event.text``, the onset as ``date``, the grade in the dosewatch
    grade extension (and as ``severity`` mild/moderate/severe), the criteria and rule in extensions,
    the evidence observations and conditions as ``subjectMedicalHistory`` references, and evidence
    doses plus the last completed dose of ``study_drug`` up to the onset as ``suspectEntity``.
    Every resource is validated with fhir.resources.R4B before it is returned."""
    obs_ids = dict(zip(cohort.observations["obs_id"].to_list(), cohort.observations["code"].to_list(), strict=True))
    event_ids = set(cohort.events["event_id"].to_list())
    doses = cohort.doses.filter(cohort.doses["status"] == "completed")
    dose_ids = set(cohort.doses["dose_id"].to_list())
    model = _model("AdverseEvent")
    entries = []
    for ev in events:
        key = "|".join([ev.patient_id, ev.term, ev.criteria, ev.rule or "", ev.onset.isoformat()])
        extension = [{"url": CRITERIA_URL, "valueString": ev.criteria}]
        if ev.rule:
            extension.append({"url": RULE_URL, "valueString": ev.rule})
        if ev.grade is not None:
            extension.append({"url": GRADE_URL, "valueInteger": ev.grade})
        ae: dict[str, Any] = {
            "resourceType": "AdverseEvent", "id": "ae-" + hashlib.sha1(key.encode()).hexdigest()[:16],
            "extension": extension, "actuality": "actual", "event": {"text": ev.term},
            "subject": _subject(ev.patient_id), "date": ev.onset.isoformat(),
        }
        if ev.grade is not None:
            ae["severity"] = {"coding": [{"system": AE_SEVERITY, "code": GRADE_SEVERITY[ev.grade]}]}
            if ev.grade == 5:
                ae["outcome"] = {"coding": [{"system": AE_OUTCOME, "code": "fatal"}]}
        history, suspects = [], []
        for evidence in ev.evidence:
            shown = f"{evidence.code} {'' if evidence.value is None else f'{evidence.value:g}'} {evidence.unit or ''}"
            display = " ".join(shown.split()) + f" on {evidence.date.isoformat()}"
            display += f" ({evidence.note})" if evidence.note else ""
            if evidence.ref in obs_ids:
                rid = _observation_id(evidence.ref, obs_ids[evidence.ref])[0]
                history.append({"reference": f"Observation/{rid}", "display": display})
            elif evidence.ref in dose_ids:
                suspects.append({"instance": {"reference": f"MedicationAdministration/{fhir_id(evidence.ref)}",
                                              "display": display}})
            elif evidence.ref in event_ids and not evidence.ref.endswith("#deceased"):  # not a Condition
                history.append({"reference": f"Condition/{fhir_id(evidence.ref)}", "display": display})
            else:
                history.append({"identifier": {"value": evidence.ref}, "display": display})
        if study_drug:
            given = doses.filter((doses["patient_id"] == ev.patient_id) & (doses["drug"] == study_drug.lower())
                                 & (doses["date"] <= ev.onset)).sort("time")
            if len(given):
                last = given.row(-1, named=True)
                ref = f"MedicationAdministration/{fhir_id(last['dose_id'])}"
                if all(s["instance"]["reference"] != ref for s in suspects):
                    amount = "" if last["dose"] is None else f" {last['dose']:g} {last['dose_unit'] or ''}".rstrip()
                    suspects.append({"instance": {"reference": ref, "display":
                                                  f"{last['drug']}{amount} on {last['date'].isoformat()}"}})
        if history:
            ae["subjectMedicalHistory"] = history
        if suspects:
            ae["suspectEntity"] = suspects
        model.model_validate(ae)  # a failure here is a bug in this writer, not in the input
        entries.append({"resource": ae})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def write_json(bundle: dict, path: str | Path) -> None:
    """Write a bundle as UTF-8 JSON."""
    Path(path).write_text(json.dumps(bundle, ensure_ascii=False) + "\n", encoding="utf-8")  # C encoder: no indent
