"""FHIR R4 Bundle reader and writers (see docs/fhir.md).

Every resource is validated with the maintained pydantic models of ``fhir.resources.R4B`` (R4B is
wire-compatible with R4 for the resources read here; the package default is R5). Values are then
taken from the raw JSON, so that numbers and times are kept exactly as written. Every problem in
the bundle is collected in one pass; ``finish`` then applies the all-or-nothing rule.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import pydantic

from .. import units
from ..analytes import Analyte, catalog
from ..drugs import drug_catalog
from ..errors import Problem, UnitError
from ..events import Event
from ..record import (
    DOSES_SCHEMA,
    EVENTS_SCHEMA,
    OBSERVATIONS_SCHEMA,
    PATIENTS_SCHEMA,
    Cohort,
    frame,
)
from . import ReadResult, finish

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
FINDING = "https://dosewatch.org/fhir/CodeSystem/finding"
GRADE_URL = "https://dosewatch.org/fhir/StructureDefinition/grade"
CRITERIA_URL = "https://dosewatch.org/fhir/StructureDefinition/criteria"
RULE_URL = "https://dosewatch.org/fhir/StructureDefinition/rule"
AE_SEVERITY = "http://terminology.hl7.org/CodeSystem/adverse-event-severity"
AE_OUTCOME = "http://terminology.hl7.org/CodeSystem/adverse-event-outcome"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
BP_PANEL = "85354-9"  # LOINC "Blood pressure panel with all children optional"

BUNDLE_TYPES = {"collection", "transaction", "batch", "searchset"}
DOSE_STATUSES = {"in-progress", "not-done", "on-hold", "completed", "entered-in-error", "stopped", "unknown"}
SEX = {"male": "M", "female": "F", "other": "U", "unknown": "U"}
GENDER = {"M": "male", "F": "female", "U": "unknown"}
# R4 AdverseEvent.severity / Condition.severity (SNOMED) read as CTCAE grades 1-3: CTCAE v5.0 describes
# grade 1 as mild, grade 2 as moderate and grade 3 as severe.
SEVERITY_GRADE = {"mild": 1, "moderate": 2, "severe": 3, "255604002": 1, "6736007": 2, "24484000": 3}
GRADE_SEVERITY = {1: "mild", 2: "moderate", 3: "severe", 4: "severe", 5: "severe"}
CATEGORY = {"lab": "laboratory", "vital": "vital-signs", "exam": "exam", "symptom": "survey"}
_MODULES = {
    "Patient": "patient",
    "Medication": "medication",
    "Observation": "observation",
    "MedicationAdministration": "medicationadministration",
    "Condition": "condition",
    "AdverseEvent": "adverseevent",
    "Bundle": "bundle",
}


@cache
def _model(resource_type: str):
    import importlib

    return getattr(importlib.import_module(f"fhir.resources.R4B.{_MODULES[resource_type]}"), resource_type)


# ---------------------------------------------------------------------------------------------- validation by shape
#
# Validating every resource with its pydantic model takes ~0.3 ms an Observation: too slow for a
# trial's daily labs. A resource's verdict depends on its shape (which elements, nested how, with
# which JSON types) and on each primitive value against its FHIR type (code, id, uri, dateTime,
# decimal, ...); fhir.resources checks no value against another. So the first resource of each
# shape is validated in full; its shape's primitive elements get the same type validators the model
# uses (``TypeAdapter`` of the field's annotation); a later resource of that shape has only its
# values checked (each distinct value once per position). Any failure, and any shape whose path
# cannot be followed (contained resources), goes to the full validation, which reports the errors.

_SHAPES: dict[tuple, list | None] = {}  # (resource type, shape) -> [(validator, values seen)] or None: always in full
_SEEN_MAX = 256


def _shape(value: Any, leaves: list) -> Any:
    """The hashable shape of a JSON value; appends its primitive values to ``leaves`` in order."""
    kind = type(value)  # json.loads gives plain dicts and lists; list comprehensions beat generators here
    if kind is dict:
        return tuple([(k, _shape(v, leaves)) for k, v in value.items()])
    if kind is list:
        return (None, *[_shape(v, leaves) for v in value])  # a dict's items are pairs: no clash
    leaves.append(value)
    return kind


def _leaves_ok(checks: list, leaves: list) -> bool:
    try:
        for (check, seen), value in zip(checks, leaves, strict=True):
            if value not in seen:
                check(value)
                if len(seen) < _SEEN_MAX:
                    seen.add(value)
    except (pydantic.ValidationError, ValueError, TypeError):
        return False
    return True


@cache
def _adapter(annotation: Any):
    return pydantic.TypeAdapter(annotation).validate_python


def _unwrap(annotation: Any) -> Any:
    import typing

    while typing.get_origin(annotation) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def _leaf_checks(model: Any, resource: dict, root: bool = True) -> list | None:
    """The validators of a (valid) resource's primitive values, in ``_shape`` order; None when a
    path cannot be followed to its FHIR type."""
    import typing

    out: list = []

    def walk_model(klass: Any, obj: dict, root: bool = False) -> None:
        fields = {f.alias or name: f.annotation for name, f in klass.model_fields.items()}
        for k, v in obj.items():
            if root and k == "resourceType":
                out.append((lambda _: None, set()))
            elif k in fields:
                walk(fields[k], v)
            else:
                raise LookupError(k)

    def walk(annotation: Any, value: Any) -> None:
        annotation = _unwrap(annotation)
        if isinstance(value, list):
            if typing.get_origin(annotation) is not list:
                raise LookupError(annotation)
            for item in value:
                walk(typing.get_args(annotation)[0], item)
        elif isinstance(value, dict):
            if not hasattr(annotation, "get_model_klass") or annotation.get_model_klass() is None:
                raise LookupError(annotation)
            walk_model(annotation.get_model_klass(), value)
        else:
            out.append((_adapter(annotation), set()))

    try:
        walk_model(model, resource, root=root)
    except (LookupError, TypeError, pydantic.PydanticSchemaGenerationError):
        return None
    return out


# ---------------------------------------------------------------------------------------------- times

_DATETIME = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?"
)


class When(NamedTuple):
    """A record's time fields (the canonical columns of the same names: ``**when._asdict()``)."""

    time: dt.datetime  # wall-clock time as written (midnight when only a date is given)
    date: dt.date
    time_known: bool
    tz_offset_min: int | None


def parse_when(text: Any) -> When:
    """A FHIR date, dateTime or instant, keeping the wall-clock time and the UTC offset apart.

    Raises ValueError for anything but a full date (a year or year-month is too vague to grade)."""
    m = _DATETIME.fullmatch(text.strip()) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"{text!r} is not a FHIR date/time")
    year, month, day, hour, minute, second, frac, tz = m.groups()
    if day is None:
        raise ValueError(f"partial date {text!r}: a full date is needed")
    date = dt.date(int(year), int(month), int(day))
    if hour is None:
        return When(dt.datetime(date.year, date.month, date.day), date, False, None)
    micro = int((frac or "0")[:6].ljust(6, "0"))
    time = dt.datetime(date.year, date.month, date.day, int(hour), int(minute), int(second or 0), micro)
    offset = None
    if tz:
        offset = 0 if tz == "Z" else (1 if tz[0] == "+" else -1) * (int(tz[1:3]) * 60 + int(tz[4:6]))
    return When(time, date, True, offset)


def format_when(time: dt.datetime, time_known: bool, tz_offset_min: int | None = None) -> str:
    """FHIR dateTime for a wall-clock time; FHIR requires an offset with a time, so an unknown one is
    written as +00:00 (see docs/fhir.md)."""
    if not time_known:
        return time.date().isoformat()
    off = tz_offset_min or 0
    sign = "-" if off < 0 else "+"
    return f"{time.isoformat()}{sign}{abs(off) // 60:02d}:{abs(off) % 60:02d}"


# ---------------------------------------------------------------------------------------------- reader


def _codings(concept: Any) -> list[dict]:
    return [c for c in (concept or {}).get("coding", []) if isinstance(c, dict)]


def _concept_text(concept: Any) -> str | None:
    concept = concept or {}
    return concept.get("text") or next((c["display"] for c in _codings(concept) if c.get("display")), None)


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "(resource)"


def _extension(resource: dict, url: str) -> Any:
    for ext in resource.get("extension", []):
        if ext.get("url") == url:
            return next((v for k, v in ext.items() if k.startswith("value")), None)
    return None


class _Reader:
    """One pass over a bundle's entries, collecting rows and problems."""

    def __init__(self, name: str, known_patients: set[str] | None = None):
        self.name = name
        # Patients enrolled before (the server's import): referenced without a Patient resource.
        self.known = {fhir_id(p): p for p in known_patients or ()}
        self.problems: list[Problem] = []
        self.n_errors = 0
        self.patients: list[dict] = []
        self.observations: list[dict] = []
        self.doses: list[dict] = []
        self.events: list[dict] = []
        self.patient_keys: dict[str, str] = {}  # "Patient/p1" or fullUrl -> patient id
        self.valid_patients: set[str] = set()
        self.death: dict[str, dt.date] = {}
        self.medications: dict[str, dict | None] = {}  # "Medication/m1" or fullUrl -> resource (None: invalid)
        self.seen: dict[tuple[str, str], int] = {}  # (type, id) -> entry index where first seen
        self.same_content: dict[tuple, str] = {}
        self.conversions: dict[tuple[str, str], tuple[float, float] | str] = {}

    # -- problems
    def error(self, where: str, field: str, message: str) -> None:
        self.problems.append(Problem(where, field, message))
        self.n_errors += 1

    def warn(self, where: str, field: str, message: str) -> None:
        self.problems.append(Problem(where, field, message, "warning"))

    # -- entries
    def read(self, bundle: Any) -> None:
        where = f"{self.name} Bundle"
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            self.error(where, "resourceType", "not a FHIR Bundle")
            return
        if bundle.get("type") not in BUNDLE_TYPES:
            self.error(where, "type", f"bundle type {bundle.get('type')!r} is not read "
                       f"(need one of {', '.join(sorted(BUNDLE_TYPES))})")
        entries = bundle.get("entry") or []
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            self.error(where, "entry", "entry must be a list of objects")
            return
        # The bundle's own fields (fullUrl, request, search), without the resources validated below.
        shell = {**bundle, "entry": [{k: v for k, v in e.items() if k != "resource"} for e in entries] or None}
        shell = {k: v for k, v in shell.items() if v is not None}
        if not self.shell_ok(shell) and not self.validate("Bundle", shell, where):
            return
        items = []
        for i, entry in enumerate(entries):
            resource = entry.get("resource")
            method = (entry.get("request") or {}).get("method")
            if not isinstance(resource, dict):
                self.warn(f"{self.name} entry[{i}]", "resource",
                          f"no resource (request {method}): not read" if method else "no resource: not read")
                continue
            if method and method not in ("PUT", "POST"):
                self.warn(f"{self.name} entry[{i}]", "request.method", f"{method} entry not read")
                continue
            rtype, rid = resource.get("resourceType"), resource.get("id")
            if not isinstance(rtype, str):
                self.error(f"{self.name} entry[{i}]", "resource.resourceType", "resource without a resourceType")
                continue
            where = f"{self.name} {rtype}/{rid}" if isinstance(rid, str) else f"{self.name} entry[{i}] {rtype}"
            local_id = rid if isinstance(rid, str) else _id_from_url(entry.get("fullUrl")) or f"entry{i}"
            items.append((i, entry, resource, rtype, local_id, where))
        # Patients and Medications first: the others refer to them, in any order.
        for i, entry, resource, rtype, local_id, where in items:
            if rtype in ("Patient", "Medication") and self.first(rtype, local_id, where, i):
                (self.patient if rtype == "Patient" else self.medication)(entry, resource, local_id, where)
        handlers = {
            "Observation": self.observation,
            "MedicationAdministration": self.administration,
            "Condition": self.condition,
            "AdverseEvent": self.condition,
        }
        for i, entry, resource, rtype, local_id, where in items:
            if rtype in ("Patient", "Medication"):
                continue
            if rtype == "OperationOutcome":
                notes = "; ".join(str(x.get("diagnostics") or _concept_text(x.get("details")) or x.get("code"))
                                  for x in resource.get("issue", []) if isinstance(x, dict))
                self.warn(where, "issue", f"OperationOutcome ignored: {notes or 'no issue text'}")
            elif rtype in handlers:
                if self.first(rtype, local_id, where, i) and self.validate(rtype, resource, where):
                    handlers[rtype](resource, local_id, where)
            else:
                self.warn(where, "resourceType", f"{rtype} is not read by dosewatch")

    def shell_ok(self, shell: dict) -> bool:
        """The bundle's own fields by shape (``_shape``): the Bundle with one entry of each shape is
        validated, the other entries' values are checked with that entry's validators. False: not
        shown valid this way (the full validation then names the errors)."""
        reps: dict[Any, tuple[dict, list]] = {}
        for entry in shell.get("entry", []):
            leaves: list = []
            reps.setdefault(_shape(entry, leaves), (entry, []))[1].append(leaves)
        try:
            _model("Bundle").model_validate({**shell, "entry": [e for e, _ in reps.values()]} if reps else shell)
        except pydantic.ValidationError:
            return False
        from fhir.resources.R4B.bundle import BundleEntry

        for entry, values in reps.values():
            checks = _leaf_checks(BundleEntry, entry, root=False)
            if checks is None or not all(_leaves_ok(checks, leaves) for leaves in values):
                return False
        return True

    def first(self, rtype: str, local_id: str, where: str, index: int) -> bool:
        """False (and an error) when the same resource was already read from an earlier entry."""
        key = (rtype, local_id)
        if key in self.seen:
            self.error(where, "id", f"duplicate resource: {rtype}/{local_id} is also entry[{self.seen[key]}]")
            return False
        self.seen[key] = index
        return True

    def validate(self, rtype: str, resource: dict, where: str) -> bool:
        """Validate with fhir.resources, or (the same verdict, faster) by shape: see ``_shape``."""
        leaves: list = []
        key = (rtype, _shape(resource, leaves)) if rtype != "Bundle" else None
        checks = _SHAPES.get(key)
        if checks is not None and _leaves_ok(checks, leaves):
            return True
        try:
            _model(rtype).model_validate(resource)
        except pydantic.ValidationError as exc:
            for err in exc.errors():
                self.error(where, _loc(err["loc"]), f"invalid FHIR R4 {rtype}: {' '.join(err['msg'].split())}")
            return False
        if key is not None and key not in _SHAPES and len(_SHAPES) < 10_000:
            _SHAPES[key] = _leaf_checks(_model(rtype), resource)
        return True

    # -- references
    def subject(self, resource: dict, where: str) -> str | None:
        ref = (resource.get("subject") or {}).get("reference")
        if not ref:
            self.error(where, "subject", "no patient reference")
            return None
        relative = _relative(ref, "Patient")
        pid = self.patient_keys.get(ref) or self.patient_keys.get(relative)
        if pid is None and relative is not None and relative[len("Patient/"):] in self.known:
            return self.known[relative[len("Patient/"):]]
        if pid is None:
            what = "not a Patient" if relative is None else "not in the bundle"
            self.error(where, "subject", f"reference {ref!r}: patient {what}")
        elif pid not in self.valid_patients:
            self.error(where, "subject", f"reference {ref!r}: that patient is invalid and was not read")
            return None
        return pid

    def when(self, resource: dict, where: str, fields: tuple[str, ...], missing: str) -> When | None:
        """The first of ``fields`` present ("effectivePeriod.start" looks one level down)."""
        for field in fields:
            head, _, tail = field.partition(".")
            text = resource.get(head)
            if tail:
                text = (text or {}).get(tail)
            if text is not None:
                try:
                    return parse_when(text)
                except ValueError as exc:
                    self.error(where, field, str(exc))
                    return None
        self.error(where, missing, f"missing effective time (none of {', '.join(fields)})")
        return None

    # -- Patient, Medication
    def patient(self, entry: dict, resource: dict, pid: str, where: str) -> None:
        self.patient_keys[f"Patient/{pid}"] = pid
        if entry.get("fullUrl"):
            self.patient_keys[entry["fullUrl"]] = pid
        n0 = self.n_errors
        if not self.validate("Patient", resource, where):
            return
        gender = resource.get("gender")
        if gender is not None and gender not in SEX:
            self.error(where, "gender", f"unknown gender {gender!r} (male, female, other, unknown)")
        birth = self.partial_ok(resource, "birthDate", where)
        death = self.partial_ok(resource, "deceasedDateTime", where)
        if resource.get("deceasedBoolean") is True:
            self.warn(where, "deceasedBoolean", "deceased without a date: no death date recorded")
        if self.n_errors > n0:
            return
        self.valid_patients.add(pid)
        source = f"{self.name} Patient/{pid}"
        self.patients.append({
            "patient_id": pid, "sex": SEX.get(gender, "U"), "birth_date": birth and birth.date,
            "deceased_date": death and death.date, "source": source,
        })
        if death:
            self.death[pid] = death.date
            self.events.append({
                "patient_id": pid, "event_id": f"{pid}#deceased", "code": "DEATH",
                "term": catalog().events["DEATH"].term, **death._asdict(), "source": source,
            })

    def partial_ok(self, resource: dict, field: str, where: str) -> When | None:
        """A date where a partial value is tolerated (privacy): reported and left empty, not guessed."""
        if resource.get(field) is None:
            return None
        try:
            return parse_when(resource[field])
        except ValueError as exc:
            self.warn(where, field, f"{exc}; left empty")
            return None

    def medication(self, entry: dict, resource: dict, mid: str, where: str) -> None:
        ok = self.validate("Medication", resource, where)
        for key in (f"Medication/{mid}", entry.get("fullUrl")):
            if key:
                self.medications[key] = resource if ok else None

    # -- Observation
    def observation(self, res: dict, obs_id: str, where: str) -> None:
        status = res.get("status")
        if status in ("entered-in-error", "cancelled"):
            self.warn(where, "status", f"status {status}: not read")
            return
        n0 = self.n_errors
        pid = self.subject(res, where)
        when = self.when(res, where, ("effectiveDateTime", "effectivePeriod.start", "effectiveInstant"), "effective[x]")
        site = _concept_text(res.get("bodySite"))
        resource_ok = self.n_errors == n0
        analyte = self.analyte(res.get("code"))
        parts = []  # (json holding the value, obs id, analyte, field prefix)
        known_parts = 0
        for j, comp in enumerate(res.get("component") or []):
            comp_analyte = self.analyte(comp.get("code"))
            code = next((c.get("code") for c in _codings(comp.get("code")) if c.get("system") == LOINC), None)
            if comp_analyte is None:
                self.warn(where, f"component[{j}].code", f"component {_describe(comp.get('code'))} not read: "
                          "no recognised LOINC code")
            else:
                known_parts += 1
                parts.append((comp, f"{obs_id}#{code}", comp_analyte, f"component[{j}]."))
        has_value = any(k.startswith("value") for k in res)
        if analyte is None:
            if not known_parts:
                self.error(where, "code", f"unknown code {_describe(res.get('code'))}: no recognised LOINC "
                           f"({LOINC}) or dosewatch finding ({FINDING}) code")
        elif has_value or not known_parts:
            parts.insert(0, (res, obs_id, analyte, ""))
        for part, row_id, part_analyte, prefix in parts:
            m0 = self.n_errors
            row = self.measurement(part, part_analyte, where, prefix)
            if row is None or not resource_ok or self.n_errors > m0:
                continue
            if part_analyte.sited:
                if site is None:
                    self.warn(where, "bodySite", f"{part_analyte.name} without a lymph-node site")
            row.update(patient_id=pid, obs_id=row_id, **when._asdict(), site=site if part_analyte.sited else None,
                       source=f"{self.name} Observation/{row_id}")
            key = (pid, row["code"], when.time, row["site"], row["value"])
            if key in self.same_content:
                self.error(where, f"{prefix}value[x]", f"duplicate of Observation/{self.same_content[key]} "
                           "(same patient, code, time, site and value)")
                continue
            self.same_content[key] = row_id
            self.observations.append(row)

    def analyte(self, concept: Any) -> Analyte | None:
        cat = catalog()
        for coding in _codings(concept):
            system, code = coding.get("system"), coding.get("code")
            if system == LOINC and code in cat.by_loinc:
                return cat.by_loinc[code]
            if system == FINDING and code in cat:
                return cat[code]
        return None

    def measurement(self, part: dict, analyte: Analyte, where: str, prefix: str) -> dict | None:
        """Value and reference range of an Observation or one of its components, in canonical units."""
        if "valueQuantity" in part:
            qty = part["valueQuantity"]
            if qty.get("value") is None:
                self.error(where, f"{prefix}valueQuantity.value", "no value")
                return None
            if qty.get("comparator"):
                self.warn(where, f"{prefix}valueQuantity.comparator",
                          f"comparator {qty['comparator']!r} ignored: read as {qty['value']}")
            orig_value, orig_unit = float(qty["value"]), _unit(qty)
            field = f"{prefix}valueQuantity.unit"
        elif "valueInteger" in part:
            orig_value, orig_unit, field = float(part["valueInteger"]), None, f"{prefix}valueInteger"
        elif "valueBoolean" in part:
            orig_value, orig_unit, field = float(part["valueBoolean"]), None, f"{prefix}valueBoolean"
        else:
            found = next((k for k in part if k.startswith("value")), None)
            absent = _concept_text(part.get("dataAbsentReason"))
            self.error(where, f"{prefix}{found or 'value[x]'}",
                       f"{found} is not read (valueQuantity, valueInteger or valueBoolean)" if found
                       else f"no value{f' (data absent: {absent})' if absent else ''}")
            return None
        conversion = self.conversion(analyte, orig_unit, where, field)
        if conversion is None:
            return None
        value = orig_value * conversion[0] + conversion[1]
        low, high = analyte.plausible
        if not low <= value <= high:
            shown = f"{orig_value:g} {orig_unit or ''}".strip()
            self.error(where, field.replace(".unit", ".value"),
                       f"implausible {analyte.name} {shown} (= {value:g} {analyte.unit}; plausible "
                       f"{low:g}-{high:g} {analyte.unit})")
            return None
        row = {"code": analyte.code, "value": value, "unit": analyte.unit,
               "orig_value": orig_value, "orig_unit": orig_unit}
        ranges = part.get("referenceRange") or [{}]
        for bound in ("low", "high"):
            qty = ranges[0].get(bound)
            if qty and qty.get("value") is not None:
                unit = _unit(qty) if ("code" in qty or "unit" in qty) else orig_unit
                conv = self.conversion(analyte, unit, where, f"{prefix}referenceRange[0].{bound}.unit")
                if conv:
                    row[f"ref_{bound}"] = float(qty["value"]) * conv[0] + conv[1]
        return row

    def conversion(self, analyte: Analyte, unit: str | None, where: str, field: str) -> tuple[float, float] | None:
        key = (analyte.code, unit or "1")
        if key not in self.conversions:
            try:
                self.conversions[key] = analyte.conversion(units.normalize_unit(unit))
            except UnitError as exc:
                self.conversions[key] = f"{exc} for {analyte.name} (canonical unit {analyte.unit})"
        conv = self.conversions[key]
        if isinstance(conv, str):
            self.error(where, field, conv)
            return None
        return conv

    # -- MedicationAdministration
    def administration(self, res: dict, dose_id: str, where: str) -> None:
        status = res.get("status")
        if status == "entered-in-error":
            self.warn(where, "status", "status entered-in-error: not read")
            return
        n0 = self.n_errors
        if status not in DOSE_STATUSES:
            self.error(where, "status", f"unknown status {status!r} ({', '.join(sorted(DOSE_STATUSES))})")
        pid = self.subject(res, where)
        when = self.when(res, where, ("effectiveDateTime", "effectivePeriod.start"), "effective[x]")
        drug, rxnorm = self.drug(res, where)
        dosage = res.get("dosage") or {}
        dose = dosage.get("dose") or {}
        if pid and when and status == "completed" and pid in self.death and when.date > self.death[pid]:
            self.error(where, "effectiveDateTime" if "effectiveDateTime" in res else "effectivePeriod.start",
                       f"dose given (status completed) on {when.date} after the patient's death on {self.death[pid]}")
        if self.n_errors > n0:
            return
        self.doses.append({
            "patient_id": pid, "dose_id": dose_id, "drug": drug, "rxnorm": rxnorm, **when._asdict(),
            "dose": None if dose.get("value") is None else float(dose["value"]),
            "dose_unit": _unit(dose) if dose else None, "route": _concept_text(dosage.get("route")),
            "status": status, "source": f"{self.name} MedicationAdministration/{dose_id}",
        })

    def drug(self, res: dict, where: str) -> tuple[str | None, str | None]:
        field, concept = "medicationCodeableConcept", res.get("medicationCodeableConcept")
        if concept is None:
            field, ref = "medicationReference", (res.get("medicationReference") or {}).get("reference", "")
            if ref.startswith("#"):
                med = next((c for c in res.get("contained", []) if c.get("id") == ref[1:]), None)
                known = med is not None
            else:
                known = ref in self.medications or _relative(ref, "Medication") in self.medications
                med = self.medications.get(ref) or self.medications.get(_relative(ref, "Medication"))
            if med is None:
                self.error(where, field, f"reference {ref!r}: Medication "
                           f"{'is invalid and was not read' if known else 'not found'}")
                return None, None
            concept = med.get("code")
        codes = [c.get("code") for c in _codings(concept) if c.get("system") == RXNORM and c.get("code")]
        texts = [t for t in [(concept or {}).get("text"), *(c.get("display") for c in _codings(concept))] if t]
        found = next((d for d in (drug_catalog().find(code=c) for c in codes) if d), None)
        found = found or next((d for d in (drug_catalog().find(text=t) for t in texts) if d), None)
        if found is None:
            self.error(where, field, f"unknown drug {_describe(concept)}: no recognised RxNorm code ({RXNORM}) "
                       "or drug name")
            return None, None
        return found.name, codes[0] if codes else (found.rxnorm[0] if found.rxnorm else None)

    # -- Condition, AdverseEvent
    def condition(self, res: dict, event_id: str, where: str) -> None:
        rtype = res["resourceType"]
        if any(c.get("code") == "entered-in-error" for c in _codings(res.get("verificationStatus"))):
            self.warn(where, "verificationStatus", "entered-in-error: not read")
            return
        if res.get("actuality") == "potential":
            self.warn(where, "actuality", "potential adverse event: not read")
            return
        n0 = self.n_errors
        code_field = "code" if rtype == "Condition" else "event"
        concept = res.get(code_field)
        kind = next((catalog().event_by_snomed[c["code"]] for c in _codings(concept)
                     if c.get("system") == SNOMED and c.get("code") in catalog().event_by_snomed), None)
        if kind is None:
            texts = [(concept or {}).get("text"), *(c.get("display") for c in _codings(concept))]
            kind = next((k for k in map(catalog().event_for_text, texts) if k), None)
        if kind is None:
            self.error(where, code_field, f"unknown event {_describe(concept)}: no recognised SNOMED CT code "
                       f"({SNOMED}) or term")
        pid = self.subject(res, where)
        fields = (("onsetDateTime", "onsetPeriod.start", "recordedDate") if rtype == "Condition"
                  else ("date", "detected", "recordedDate"))
        when = self.when(res, where, fields, fields[0].replace("DateTime", "[x]"))
        end = None
        if res.get("abatementDateTime"):
            try:
                end = parse_when(res["abatementDateTime"]).date
            except ValueError as exc:
                self.error(where, "abatementDateTime", str(exc))
        grade = self.grade(res, where)
        if self.n_errors > n0:
            return
        self.events.append({
            "patient_id": pid, "event_id": event_id, "code": kind.code, "term": _concept_text(concept) or kind.term,
            **when._asdict(), "end_date": end, "grade": grade,
            "source": f"{self.name} {rtype}/{event_id}",
        })

    def grade(self, res: dict, where: str) -> int | None:
        grade = _extension(res, GRADE_URL)
        if grade is not None:
            if isinstance(grade, bool) or not isinstance(grade, int) or not 1 <= grade <= 5:
                self.error(where, f"extension({GRADE_URL})", f"grade {grade!r} is not an integer 1-5")
                return None
            return grade
        severity = res.get("severity")
        for key in [c.get("code") for c in _codings(severity)] + [(severity or {}).get("text")]:
            if isinstance(key, str) and key.lower() in SEVERITY_GRADE:
                return SEVERITY_GRADE[key.lower()]
        return None


def _unit(qty: dict) -> str | None:
    """The unit of a Quantity: its UCUM code, else its unit text as written."""
    if qty.get("system") == UCUM and qty.get("code"):
        return qty["code"]
    return qty.get("unit") or qty.get("code")


def _describe(concept: Any) -> str:
    codes = [f"{c.get('system', '')}|{c.get('code', '')}" for c in _codings(concept)]
    text = (concept or {}).get("text")
    return ", ".join(codes + ([repr(text)] if text else [])) or "(none)"


def _relative(ref: str, rtype: str) -> str | None:
    """'Patient/p1' from 'Patient/p1', 'http://host/fhir/Patient/p1' or 'Patient/p1/_history/2'."""
    m = re.search(rf"(?:^|/){rtype}/([A-Za-z0-9\-.]{{1,64}})(?:/_history/[^/]+)?$", ref)
    return f"{rtype}/{m.group(1)}" if m else None


def _id_from_url(url: str | None) -> str | None:
    if not url:
        return None
    return url.rsplit(":", 1)[-1] if url.startswith("urn:") else url.rstrip("/").rsplit("/", 1)[-1]


def read_fhir(path: str | Path, *, skip_invalid: bool = False, collect: bool = False,
              known_patients: set[str] | None = None) -> ReadResult:
    """Read a FHIR R4 Bundle (collection, transaction, batch or searchset) into a Cohort.

    All problems are collected in one pass. Any error fails the whole read (InputError) unless
    ``skip_invalid`` (invalid records are dropped and listed) or ``collect`` is set.
    ``known_patients`` are patients enrolled before (the server passes the trial's): records may
    refer to them (``Patient/<id>``) without a Patient resource in the bundle; they are not added
    to the patients table, only their records are read."""
    path = Path(path)
    reader = _Reader(path.name, known_patients)
    try:
        bundle = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        reader.error(f"{path.name} line {exc.lineno} column {exc.colno}", "json", f"malformed JSON: {exc.msg}")
    except (OSError, UnicodeDecodeError) as exc:
        reader.error(path.name, "file", f"cannot read: {exc}")
    else:
        reader.read(bundle)
    cohort = Cohort(
        frame(reader.patients, PATIENTS_SCHEMA),
        frame(reader.observations, OBSERVATIONS_SCHEMA),
        frame(reader.doses, DOSES_SCHEMA),
        frame(reader.events, EVENTS_SCHEMA),
    )
    return finish(ReadResult(cohort, reader.problems), skip_invalid=skip_invalid, collect=collect)


# ---------------------------------------------------------------------------------------------- writers

_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def fhir_id(value: str) -> str:
    """A valid FHIR id for a record id: unchanged when already valid, else cleaned and made unique by a hash."""
    if _FHIR_ID.fullmatch(value):
        return value
    digest = hashlib.sha1(value.encode()).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9.-]', '-', value)[:55]}-{digest}"


@cache
def _is_ucum(unit: str) -> bool:
    """True when ``unit`` is a UCUM code that reads back as itself."""
    if units.normalize_unit(unit) != unit:
        return False
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
    if unit is None and float(value).is_integer():
        out["valueInteger"] = int(value)
    else:
        out["valueQuantity"] = _quantity(value, unit)
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
        resource: dict[str, Any] = {
            "resourceType": "Observation", "id": rid, "status": "final",
            "category": [{"coding": [{"system": OBS_CATEGORY, "code": CATEGORY[lead.kind]}]}],
        }
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
        kind = cat.events[row["code"]]
        concept = {"text": row["term"] or kind.term}
        if kind.snomed:
            concept["coding"] = [{"system": SNOMED, "code": kind.snomed[0], "display": kind.term}]
        condition: dict[str, Any] = {"resourceType": "Condition", "id": fhir_id(row["event_id"])}
        if row["grade"] is not None:
            condition["extension"] = [{"url": GRADE_URL, "valueInteger": row["grade"]}]
        condition.update(code=concept, subject=_subject(row["patient_id"]),
                         onsetDateTime=_when_text(row))
        if row["end_date"]:
            condition["abatementDateTime"] = row["end_date"].isoformat()
        resources.append(condition)
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


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
