"""What the FHIR reader and writers share: code systems and extension URLs, the R4B models, FHIR
dates and times (wall-clock time and UTC offset kept apart), codings and ids."""
from __future__ import annotations

import datetime as dt
import hashlib
import re
from functools import cache, lru_cache
from typing import Any, NamedTuple

from ..analytes import FINDING, LOINC  # noqa: F401  (shared by the reader and the writers)

UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
MEDDRA = "http://terminology.hl7.org/CodeSystem/mdr"
QUALIFIERS_URL = "https://dosewatch.org/fhir/StructureDefinition/qualifiers"
IMPUTED_URL = "https://dosewatch.org/fhir/StructureDefinition/date-imputed"
BODY_POSITION_URL = "http://hl7.org/fhir/StructureDefinition/observation-bodyPosition"
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
SEVERITY_SNOMED = {"mild": "255604002", "moderate": "6736007", "severe": "24484000"}
SEVERITY_WORD = {1: "mild", 2: "moderate", 3: "severe"}
GRADE_SEVERITY = {1: "mild", 2: "moderate", 3: "severe", 4: "severe", 5: "severe"}
CATEGORY = {"lab": "laboratory", "vital": "vital-signs", "exam": "exam", "symptom": "survey"}
_MODULES = {
    "Patient": "patient",
    "Medication": "medication",
    "Observation": "observation",
    "MedicationAdministration": "medicationadministration",
    "Condition": "condition",
    "AdverseEvent": "adverseevent",
    "MedicationRequest": "medicationrequest",
    "MedicationStatement": "medicationstatement",
    "DiagnosticReport": "diagnosticreport",
    "Bundle": "bundle",
}


@cache
def _model(resource_type: str):
    import importlib

    return getattr(importlib.import_module(f"fhir.resources.R4B.{_MODULES[resource_type]}"), resource_type)


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
    """A FHIR date, dateTime or instant, keeping the wall-clock time and the UTC offset apart (see
    ``_parse_when``); a text is parsed once, as an export repeats each encounter's time."""
    if isinstance(text, str):
        return _parse_when_text(text)
    return _parse_when(text)


@lru_cache(maxsize=8192)
def _parse_when_text(text: str) -> When:
    return _parse_when(text)


def _parse_when(text: Any) -> When:
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


def _codings(concept: Any) -> list[dict]:
    codings = concept.get("coding") if isinstance(concept, dict) else None
    return [c for c in codings if isinstance(c, dict)] if isinstance(codings, list) else []


def _concept_text(concept: Any) -> str | None:
    if not isinstance(concept, dict):
        return None
    text = concept.get("text")
    if isinstance(text, str) and text:
        return text
    return next((c["display"] for c in _codings(concept) if isinstance(c.get("display"), str) and c["display"]), None)


_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def fhir_id(value: str) -> str:
    """A valid FHIR id for a record id: unchanged when already valid, else cleaned and made unique by a hash."""
    if _FHIR_ID.fullmatch(value):
        return value
    digest = hashlib.sha1(value.encode()).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9.-]', '-', value)[:55]}-{digest}"


def _extension(resource: dict, url: str) -> Any:
    for ext in resource.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == url:
            return next((v for k, v in ext.items() if k.startswith("value")), None)
    return None


def _unit(qty: dict) -> str | None:
    """The unit of a Quantity: its UCUM code, else its unit text as written."""
    if qty.get("system") == UCUM and qty.get("code"):
        return qty["code"]
    return qty.get("unit") or qty.get("code")


def _describe(concept: Any) -> str:
    codes = [f"{c.get('system', '')}|{c.get('code', '')}" for c in _codings(concept)]
    text = (concept or {}).get("text") if isinstance(concept, dict) else None
    shown = [next((repr(c["display"]) for c in _codings(concept) if c.get("display")), repr(text))] \
        if (text or any(c.get("display") for c in _codings(concept))) else []
    return ", ".join(codes + shown) or "(none)"


@lru_cache(maxsize=8192)
def _relative(ref: str, rtype: str) -> str | None:
    """'Patient/p1' from 'Patient/p1', 'http://host/fhir/Patient/p1' or 'Patient/p1/_history/2'."""
    m = re.search(rf"(?:^|/){rtype}/([A-Za-z0-9\-.]{{1,64}})(?:/_history/[^/]+)?$", ref)
    return f"{rtype}/{m.group(1)}" if m else None

