"""FHIR R4 Bundle reader (see docs/fhir.md; writing: ``fhir_write``).

Every resource dosewatch reads is validated with the maintained pydantic models of
``fhir.resources.R4B`` (R4B is wire-compatible with R4 for the resources read here; the package
default is R5), by shape where a resource of the same shape was already validated (``fhir_shape``).
Values are then taken from the raw JSON, so that numbers and times are kept exactly as written.
Every problem in the bundle is collected in one pass; ``finish`` then applies the all-or-nothing rule.

EHR exports hold much that dosewatch does not use (claims, encounters, codes it does not grade):
those are counted notices, never errors. What an export leaves implicit is completed with a stated
assumption (a warning): an Observation without its own time takes its DiagnosticReport's, a Patient
referenced but absent is created with unknown sex and birth date.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pydantic

from .. import units
from ..analytes import Analyte, Catalog, catalog
from ..drugs import drug_catalog
from ..errors import Problem, UnitError
from ..record import DOSES_SCHEMA, EVENTS_SCHEMA, OBSERVATIONS_SCHEMA, PATIENTS_SCHEMA, Cohort, frame
from . import ReadResult, finish
from .fhir_base import (
    BODY_POSITION_URL, BUNDLE_TYPES, DOSE_STATUSES, GRADE_URL, QUALIFIERS_URL, RXNORM,
    IMPUTED_URL, SEVERITY_GRADE, SEVERITY_WORD, SEX, SNOMED, UCUM, When, _codings, _concept_text, _model, fhir_id, parse_when,
)
from .fhir_shape import _SHAPES, _leaf_checks, _leaves_ok, _shallow_shape, _shape

MAX_NESTING = 8  # Bundles inside Bundles read, at most this deep
DOSE_RESOURCES = {"administration": "MedicationAdministration", "request": "MedicationRequest",
                  "statement": "MedicationStatement"}
MAX_DOSE_DAYS = 366  # a prescription or statement is expanded to daily doses over at most a year
_COMPARATORS = {"<", "<=", ">", ">="}


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "(resource)"


def _extension(resource: dict, url: str) -> Any:
    for ext in resource.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == url:
            return next((v for k, v in ext.items() if k.startswith("value")), None)
    return None


# -- lazy resources: an EHR export is mostly what dosewatch does not read (claims, encounters, codes it
# does not grade). The bundle is split into entries with each resource kept as raw JSON (msgspec.Raw,
# no copy); a resource is decoded into Python objects only when dosewatch reads it, and otherwise only
# its type, id and (for an Observation) codes are looked at.

class _Head(msgspec.Struct):
    resourceType: Any = None
    id: Any = None


class _ObservationHead(msgspec.Struct):
    code: msgspec.Raw = msgspec.Raw()  # empty when absent
    component: msgspec.Raw = msgspec.Raw()


_ENTRIES = msgspec.json.Decoder(list[dict[str, msgspec.Raw]])
_TOP = msgspec.json.Decoder(dict[str, msgspec.Raw])
_HEAD = msgspec.json.Decoder(_Head)
_OBSERVATION_HEAD = msgspec.json.Decoder(_ObservationHead)


def _lazy_bundle(data: bytes | msgspec.Raw) -> dict:
    """A JSON object with its ``entry`` split into entries whose ``resource`` stays raw; every other
    field decoded. Raises (msgspec.DecodeError, orjson.JSONDecodeError) when it is not that shape."""
    top = _TOP.decode(data)
    out = {k: orjson.loads(memoryview(v)) for k, v in top.items() if k != "entry"}
    if "entry" in top:
        out["entry"] = [{k: (v if k == "resource" else orjson.loads(memoryview(v))) for k, v in e.items()}
                        for e in _ENTRIES.decode(top["entry"])]
    return out


def _decoded(resource: Any) -> Any:
    """A resource as Python objects (decoding it when it is still raw)."""
    return orjson.loads(memoryview(resource)) if isinstance(resource, msgspec.Raw) else resource


def _head(resource: Any) -> tuple[Any, Any] | None:
    """(resourceType, id) of a resource, raw or decoded; None when it is not a JSON object."""
    if isinstance(resource, msgspec.Raw):
        try:
            head = _HEAD.decode(resource)
        except msgspec.DecodeError:  # not an object
            return None
        return head.resourceType, head.id
    return (resource.get("resourceType"), resource.get("id")) if isinstance(resource, dict) else None


class _Reader:
    """One pass over a bundle's entries, collecting rows and problems."""

    def __init__(self, name: str, known_patients: set[str] | None = None, cat: Catalog | None = None,
                 doses_from: tuple[str, ...] = ("administration",)):
        self.name = name
        self.cat = cat or catalog()
        self.dose_types = {DOSE_RESOURCES[k] for k in doses_from}
        # Patients enrolled before (the server's import): referenced without a Patient resource.
        self.server = known_patients is not None
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
        self.report_time: dict[str, tuple[str, str]] = {}  # result reference -> (report, its time as written)
        self.seen: dict[tuple[str, str], int] = {}  # (type, id) -> entry index where first seen
        self.same_content: dict[tuple, str] = {}
        self.conversions: dict[tuple[str, str], tuple[float, float] | str] = {}
        self.full_url: str | None = None  # the fullUrl of the entry being read
        self.code_notes: dict[bytes, str | None] = {}  # an Observation code's JSON -> its notice (None: read)

    # -- problems
    def error(self, where: str, field: str, message: str, kind: str = "", detail: str = "") -> None:
        self.problems.append(Problem(where, field, message, "error", kind, detail, self.name))
        self.n_errors += 1

    def warn(self, where: str, field: str, message: str, kind: str = "", detail: str = "") -> None:
        self.problems.append(Problem(where, field, message, "warning", kind, detail, self.name))

    def notice(self, where: str, field: str, message: str, kind: str = "not-used", detail: str = "") -> None:
        self.problems.append(Problem(where, field, message, "notice", kind, detail, self.name))

    # -- entries
    def entries(self, bundle: Any, where: str, depth: int) -> list[tuple] | None:
        """The entries of a Bundle (and of the Bundles inside it) as (index, entry, resource, type,
        local id, where); None when the bundle itself cannot be read."""
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            self.error(where, "resourceType", "not a FHIR Bundle", "file")
            return None
        btype = bundle.get("type")
        if not isinstance(btype, str) or btype not in BUNDLE_TYPES:
            self.error(where, "type", f"bundle type is not read (need one of {', '.join(sorted(BUNDLE_TYPES))})",
                       "file", repr(btype)[:80])
        entries = bundle.get("entry") or []
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            self.error(where, "entry", "entry must be a list of objects", "file")
            return None
        # The bundle's own fields (fullUrl, request, search), without the resources validated below.
        shell = {**bundle, "entry": [{k: v for k, v in e.items() if k != "resource"} for e in entries] or None}
        shell = {k: v for k, v in shell.items() if v is not None}
        if not self.shell_ok(shell) and not self.validate("Bundle", shell, where):
            return None
        prefix = where.removesuffix(" Bundle").removeprefix(self.name).strip()
        items = []
        for i, entry in enumerate(entries):
            at = f"{self.name} {prefix} entry[{i}]".replace("  ", " ")
            resource = entry.get("resource")
            request = entry.get("request")
            method = request.get("method") if isinstance(request, dict) else None
            head = _head(resource)
            if head is None:
                self.notice(at, "resource", f"no resource (request {method}): not read" if method
                            else "no resource: not read", "no-resource")
                continue
            if method and method not in ("PUT", "POST"):
                self.warn(at, "request.method", f"{method} entry not read", "not-used")
                continue
            rtype, rid = head
            if not isinstance(rtype, str):
                self.error(at, "resource.resourceType", "resource without a resourceType", "value")
                continue
            if rtype == "Bundle":  # a Bundle of Bundles (a paged search, a bulk export): read entry by entry
                if depth >= MAX_NESTING:
                    self.error(f"{at} Bundle", "resource", f"Bundles nested more than {MAX_NESTING} deep", "file")
                    continue
                try:
                    inner = _lazy_bundle(resource) if isinstance(resource, msgspec.Raw) else resource
                except (msgspec.DecodeError, orjson.JSONDecodeError):
                    inner = _decoded(resource)
                items += self.entries(inner, f"{at} Bundle", depth + 1) or []
                continue
            where_ = f"{self.name} {rtype}/{rid}" if isinstance(rid, str) else f"{at} {rtype}"
            local_id = rid if isinstance(rid, str) else _id_from_url(entry.get("fullUrl")) or f"entry{i}"
            items.append((i, entry, resource, rtype, local_id, where_))
        return items

    def read(self, bundle: Any) -> None:
        items = self.entries(bundle, f"{self.name} Bundle", 0)
        if items is None:
            return
        # Patients, Medications and the times of DiagnosticReports first: the others refer to them.
        for i, entry, resource, rtype, local_id, where in items:
            if rtype in ("Patient", "Medication") and self.first(rtype, local_id, where, i):
                (self.patient if rtype == "Patient" else self.medication)(entry, _decoded(resource), local_id, where)
            elif rtype == "DiagnosticReport":
                self.report(_decoded(resource), local_id)
        handlers = {
            "Observation": self.observation,
            "MedicationAdministration": self.administration,
            "MedicationRequest": self.prescription,
            "MedicationStatement": self.prescription,
            "Condition": self.condition,
            "AdverseEvent": self.condition,
        }
        for i, entry, resource, rtype, local_id, where in items:
            if rtype in ("Patient", "Medication", "DiagnosticReport"):
                continue
            self.full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
            if rtype == "OperationOutcome":
                issues = _decoded(resource).get("issue")
                notes = "; ".join(str(x.get("diagnostics") or _concept_text(x.get("details")) or x.get("code"))
                                  for x in (issues if isinstance(issues, list) else []) if isinstance(x, dict))
                self.warn(where, "issue", "OperationOutcome in the bundle: not read", "not-used",
                          notes[:200] or "no issue text")
            elif rtype in handlers and (rtype not in DOSE_RESOURCES.values() or rtype in self.dose_types):
                if not self.first(rtype, local_id, where, i):
                    continue
                # An Observation of a code dosewatch does not use is a notice, and is not validated: what
                # dosewatch does not read cannot mislead it, and most of an EHR export is such.
                if rtype == "Observation":
                    unused = self.unused_code(resource)
                    if unused is not None:
                        self.notice(where, "code", unused)
                        continue
                resource = _decoded(resource)
                if self.validate(rtype, resource, where):
                    handlers[rtype](resource, local_id, where)
            elif rtype in DOSE_RESOURCES.values():
                flag = next(k for k, v in DOSE_RESOURCES.items() if v == rtype)
                self.notice(where, "resourceType", f"{rtype} not read as doses (--doses-from {flag} reads it)")
            else:
                self.notice(where, "resourceType", f"{rtype} is not read by dosewatch")

    def shell_ok(self, shell: dict) -> bool:
        """The bundle's own fields by shape (``_shape``): the Bundle with one entry of each shape is
        validated, the other entries' values are checked with that entry's validators. False: not
        shown valid this way (the full validation then names the errors)."""
        reps: dict[Any, tuple[dict, list]] = {}
        for entry in shell.get("entry", []):
            leaves: list = []
            key = _shallow_shape(entry, leaves)
            if key is None:
                leaves = []
                key = _shape(entry, leaves)
            reps.setdefault(key, (entry, []))[1].append(leaves)
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
            self.error(where, "id", "duplicate resource: the same type and id as an earlier entry", "duplicate",
                       f"{rtype}/{local_id} is also entry[{self.seen[key]}]")
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
                self.error(where, _loc(err["loc"]), f"invalid FHIR R4 {rtype}: {' '.join(err['msg'].split())}",
                           "invalid")
            return False
        if key is not None and key not in _SHAPES and len(_SHAPES) < 10_000:
            _SHAPES[key] = _leaf_checks(_model(rtype), resource)
        return True

    # -- references
    def subject(self, resource: dict, where: str) -> str | None:
        ref = (resource.get("subject") or {}).get("reference")
        if not ref:
            self.error(where, "subject", "no patient reference", "reference")
            return None
        relative = _relative(ref, "Patient")
        pid = self.patient_keys.get(ref) or self.patient_keys.get(relative)
        if pid is None and relative is not None and relative[len("Patient/"):] in self.known:
            return self.known[relative[len("Patient/"):]]
        if pid is None and not self.server and (relative is not None or ref.startswith("urn:uuid:")):
            return self.referenced_patient(ref, relative, where)
        if pid is None:
            what = "not a Patient" if relative is None else "not in the bundle"
            self.error(where, "subject", f"reference {ref!r}: patient {what}", "reference")
        elif pid not in self.valid_patients:
            self.error(where, "subject", f"reference {ref!r}: that patient is invalid and was not read", "reference")
            return None
        return pid

    def referenced_patient(self, ref: str, relative: str | None, where: str) -> str:
        """A patient the records refer to but the bundle does not hold: created with unknown sex and
        birth date (an export of one patient's data often leaves the Patient out)."""
        pid = relative[len("Patient/"):] if relative else ref[len("urn:uuid:"):]
        self.patient_keys[ref] = pid
        if relative:
            self.patient_keys[relative] = pid
        self.valid_patients.add(pid)
        self.patients.append({"patient_id": pid, "sex": "U", "source": f"{self.name} {ref}"})
        self.warn(where, "subject", "patient referenced but not in the bundle: created with unknown sex and birth "
                  "date", "assumed", f"patient {pid}")
        return pid

    def when(self, resource: dict, where: str, fields: tuple[str, ...], missing: str, fallback: str | None = None
             ) -> When | None:
        """The first of ``fields`` present ("effectivePeriod.start" looks one level down), else the
        time of the DiagnosticReport that lists the resource (``fallback``: its reference keys)."""
        for field in fields:
            head, _, tail = field.partition(".")
            text = resource.get(head)
            if tail:
                text = (text or {}).get(tail) if isinstance(text, dict) else None
            if text is not None:
                try:
                    return parse_when(text)
                except (ValueError, AttributeError) as exc:
                    self.error(where, field, str(exc), "date")
                    return None
        report = next((self.report_time[k] for k in (fallback, self.full_url) if k and k in self.report_time), None)
        if report is not None:
            try:
                when = parse_when(report[1])
            except (ValueError, AttributeError) as exc:
                self.error(where, missing, f"no time of its own, and its report's is unusable: {exc}", "date")
                return None
            self.warn(where, missing, "no time of its own: the time of the DiagnosticReport that lists it",
                      "assumed", report[0])
            return when
        self.error(where, missing, f"missing effective time (none of {', '.join(fields)})", "date")
        return None

    # -- Patient, Medication, DiagnosticReport
    def patient(self, entry: dict, resource: dict, pid: str, where: str) -> None:
        self.patient_keys[f"Patient/{pid}"] = pid
        if isinstance(entry.get("fullUrl"), str):
            self.patient_keys[entry["fullUrl"]] = pid
        n0 = self.n_errors
        if not self.validate("Patient", resource, where):
            return
        gender = resource.get("gender")
        if gender is not None and gender not in SEX:
            self.error(where, "gender", "unknown gender (male, female, other, unknown)", "value", repr(gender))
        birth = self.partial_ok(resource, "birthDate", where)
        death = self.partial_ok(resource, "deceasedDateTime", where)
        if resource.get("deceasedBoolean") is True:
            self.warn(where, "deceasedBoolean", "deceased without a date: no death date recorded", "value")
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
        except (ValueError, AttributeError) as exc:
            self.warn(where, field, "partial or unreadable date: left empty", "partial-date", str(exc))
            return None

    def medication(self, entry: dict, resource: dict, mid: str, where: str) -> None:
        ok = self.validate("Medication", resource, where)
        for key in (f"Medication/{mid}", entry.get("fullUrl")):
            if isinstance(key, str):
                self.medications[key] = resource if ok else None

    def report(self, res: dict, rid: str) -> None:
        """Remember a DiagnosticReport's time for the results it lists (only that is read of it)."""
        period = res.get("effectivePeriod")
        text = res.get("effectiveDateTime") or (period.get("start") if isinstance(period, dict) else None)
        results = res.get("result")
        if not isinstance(text, str) or not isinstance(results, list):
            return
        for r in results:
            ref = r.get("reference") if isinstance(r, dict) else None
            if isinstance(ref, str):
                self.report_time.setdefault(ref, (f"DiagnosticReport/{rid}", text))
                relative = _relative(ref, "Observation")
                if relative:
                    self.report_time.setdefault(relative, (f"DiagnosticReport/{rid}", text))

    # -- Observation
    def observation(self, res: dict, obs_id: str, where: str) -> None:
        status = res.get("status")
        if status in ("entered-in-error", "cancelled"):
            self.notice(where, "status", f"status {status}: not read", "not-done")
            return
        n0 = self.n_errors
        pid = self.subject(res, where)
        when = self.when(res, where, ("effectiveDateTime", "effectivePeriod.start", "effectiveInstant"),
                         "effective[x]", f"Observation/{obs_id}")
        site = _concept_text(res.get("bodySite"))
        qualifiers = self.qualifiers(res)
        resource_ok = self.n_errors == n0
        analyte, _ = self.analyte(res.get("code"))
        parts = []  # (json holding the value, obs id, analyte, field prefix)
        for j, comp in enumerate(res.get("component") or []):
            comp_analyte, code = self.analyte(comp.get("code")) if isinstance(comp, dict) else (None, None)
            if comp_analyte is None:
                self.notice(where, f"component[{j}].code", f"component {_describe(comp.get('code'))} is not used "
                            "by dosewatch" if isinstance(comp, dict) else "component is not an object")
            else:
                parts.append((comp, f"{obs_id}#{code}", comp_analyte, f"component[{j}]."))
        has_value = any(k.startswith("value") for k in res)
        if analyte is not None and (has_value or not parts):
            parts.insert(0, (res, obs_id, analyte, ""))
        for part, row_id, part_analyte, prefix in parts:
            m0 = self.n_errors
            row = self.measurement(part, part_analyte, where, prefix)
            if row is None or not resource_ok or self.n_errors > m0:
                continue
            if part_analyte.sited:
                if site is None:
                    self.warn(where, "bodySite", f"{part_analyte.name} without a lymph-node site", "value")
            row.update(patient_id=pid, obs_id=row_id, **when._asdict(), site=site if part_analyte.sited else None,
                       qualifiers=qualifiers, source=f"{self.name} Observation/{row_id}")
            key = (pid, row["code"], when.time, row["site"], qualifiers, row["value"])
            if key in self.same_content:  # the same result recorded twice (Synthea: in two encounters)
                self.warn(where, f"{prefix}value[x]", "the same result as another Observation (patient, code, "
                          "time, site, qualifiers and value): read once", "repeated",
                          f"Observation/{self.same_content[key]}")
                continue
            self.same_content[key] = row_id
            self.observations.append(row)

    def unused_code(self, resource: Any) -> str | None:
        """The notice for an Observation none of whose codes (its own, its components') dosewatch reads;
        None when dosewatch reads it. Raw codes are looked up once per distinct JSON text."""
        if isinstance(resource, msgspec.Raw):
            try:
                head = _OBSERVATION_HEAD.decode(resource)
            except msgspec.DecodeError:
                return None  # not the shape of an Observation: validation names what is wrong
            key = bytes(head.code)
            if key not in self.code_notes:
                code = orjson.loads(key) if key else None
                self.code_notes[key] = None if self.analyte(code)[0] is not None else \
                    f"code {_describe(code)} is not used by dosewatch"
            note = self.code_notes[key]
            components = orjson.loads(memoryview(head.component)) if note and len(head.component) else None
        else:
            code, components = resource.get("code"), resource.get("component")
            note = None if self.analyte(code)[0] is not None else f"code {_describe(code)} is not used by dosewatch"
        if note and isinstance(components, list) and any(
                isinstance(c, dict) and self.analyte(c.get("code"))[0] is not None for c in components):
            return None
        return note

    def qualifiers(self, res: dict) -> str | None:
        """What tells this finding apart from another of the same code and time: the body position
        (extension observation-bodyPosition) and dosewatch's own qualifiers extension."""
        written = _extension(res, QUALIFIERS_URL)
        if isinstance(written, str):
            return written
        position = _extension(res, BODY_POSITION_URL)
        text = _concept_text(position) if isinstance(position, dict) else None
        return f"POS={text.upper()}" if text else None

    def analyte(self, concept: Any) -> tuple[Analyte | None, str | None]:
        """The analyte a concept codes (LOINC, dosewatch's finding codes or a site's local codes), and the
        code that matched."""
        for coding in _codings(concept):
            found = self.cat.for_coding(coding.get("system"), coding.get("code"))
            if found is not None:
                return found, coding.get("code")
        return None, None

    def measurement(self, part: dict, analyte: Analyte, where: str, prefix: str) -> dict | None:
        """Value and reference range of an Observation or one of its components, in canonical units."""
        comparator = None
        if "valueQuantity" in part:
            qty = part["valueQuantity"]
            if not isinstance(qty, dict) or qty.get("value") is None:
                self.error(where, f"{prefix}valueQuantity.value", "no value", "value")
                return None
            comparator = qty.get("comparator")
            if comparator is not None:
                if comparator not in _COMPARATORS:
                    self.error(where, f"{prefix}valueQuantity.comparator", "unknown comparator", "value",
                               repr(comparator))
                    return None
                self.warn(where, f"{prefix}valueQuantity.comparator", "result given as a bound: read as the bound "
                          "with its comparator, graded as the grade the bound guarantees", "comparator",
                          f"{comparator}{qty['value']}")
            orig_value = float(qty["value"])
            orig_unit = self.quantity_unit(qty, analyte, where, f"{prefix}valueQuantity")
            field = f"{prefix}valueQuantity.unit"
        elif "valueInteger" in part:
            orig_value, orig_unit, field = float(part["valueInteger"]), None, f"{prefix}valueInteger"
        elif "valueBoolean" in part:
            orig_value, orig_unit, field = float(part["valueBoolean"]), None, f"{prefix}valueBoolean"
        else:
            found = next((k for k in part if k.startswith("value")), None)
            absent = _concept_text(part.get("dataAbsentReason"))
            if found:
                self.error(where, f"{prefix}{found}", f"{found} is not read (valueQuantity, valueInteger or "
                           "valueBoolean)", "value")
            else:
                self.notice(where, f"{prefix}value[x]", "no value" + (" (data absent)" if absent else ""),
                            "not-done", absent or "")
            return None
        if orig_unit is None and analyte.unit != "1":
            if not analyte.assume_unit:
                self.error(where, field, f"no unit ({analyte.name} is read in {analyte.unit} or a unit convertible "
                           "to it)", "unit")
                return None
            self.warn(where, field, f"no unit: read as {analyte.unit}, the unit {analyte.name} is measured in",
                      "assumed")
            orig_unit = analyte.unit
        conversion = self.conversion(analyte, orig_unit, where, field)
        if conversion is None:
            return None
        value = orig_value * conversion[0] + conversion[1]
        if value != value or abs(value) == float("inf"):
            self.error(where, field.replace(".unit", ".value"), "not a finite number", "value")
            return None
        low, high = analyte.plausible
        if not low <= value <= high:
            shown = f"{orig_value:g} {orig_unit or ''}".strip()
            self.error(where, field.replace(".unit", ".value"), f"implausible {analyte.name} (plausible "
                       f"{low:g}-{high:g} {analyte.unit})", "implausible", f"{shown} = {value:g} {analyte.unit}")
            return None
        row = {"code": analyte.code, "value": value, "unit": analyte.unit,
               "orig_value": orig_value, "orig_unit": orig_unit, "comparator": comparator}
        ranges = part.get("referenceRange") or [{}]
        first = ranges[0] if isinstance(ranges, list) and ranges and isinstance(ranges[0], dict) else {}
        for bound in ("low", "high"):
            qty = first.get(bound)
            if isinstance(qty, dict) and qty.get("value") is not None:
                unit = _unit(qty) if ("code" in qty or "unit" in qty) else orig_unit
                conv = self.conversion(analyte, unit, where, f"{prefix}referenceRange[0].{bound}.unit")
                if conv:
                    row[f"ref_{bound}"] = float(qty["value"]) * conv[0] + conv[1]
        return row

    def quantity_unit(self, qty: dict, analyte: Analyte, where: str, field: str) -> str | None:
        """A Quantity's unit: its UCUM code, else its unit text read as UCUM (a warning)."""
        if qty.get("system") == UCUM and qty.get("code"):
            return qty["code"]
        text = qty.get("unit") or qty.get("code")
        if text is None:
            return None
        ucum = units.normalize_unit(text)
        if ucum != text:  # a spelling UCUM does not write ("mEq/L", "K/uL"): read as its UCUM twin
            self.warn(where, f"{field}.unit", "unit text is not a UCUM code: read as the UCUM unit it names",
                      "unit-text", f"'{text}' as {ucum}")
        return text

    def conversion(self, analyte: Analyte, unit: str | None, where: str, field: str) -> tuple[float, float] | None:
        key = (analyte.code, unit or "1")
        if key not in self.conversions:
            try:
                self.conversions[key] = analyte.conversion(units.normalize_unit(unit))
            except UnitError as exc:
                self.conversions[key] = f"{exc} for {analyte.name} (canonical unit {analyte.unit})"
        conv = self.conversions[key]
        if isinstance(conv, str):
            self.error(where, field, conv, "unit")
            return None
        return conv

    # -- MedicationAdministration, MedicationRequest, MedicationStatement
    def administration(self, res: dict, dose_id: str, where: str) -> None:
        status = res.get("status")
        if status == "entered-in-error":
            self.notice(where, "status", "status entered-in-error: not read", "not-done")
            return
        n0 = self.n_errors
        if status not in DOSE_STATUSES:
            self.error(where, "status", f"unknown status ({', '.join(sorted(DOSE_STATUSES))})", "value", repr(status))
        pid = self.subject(res, where)
        when = self.when(res, where, ("effectiveDateTime", "effectivePeriod.start"), "effective[x]")
        drug, rxnorm = self.drug(res, where)
        dosage = res.get("dosage") or {}
        dose = dosage.get("dose") or {}
        if pid and when and status == "completed" and pid in self.death and when.date > self.death[pid]:
            self.error(where, "effectiveDateTime" if "effectiveDateTime" in res else "effectivePeriod.start",
                       "dose given (status completed) after the patient's death", "date",
                       f"{when.date} after {self.death[pid]}")
        if self.n_errors > n0:
            return
        self.doses.append({
            "patient_id": pid, "dose_id": dose_id, "drug": drug, "rxnorm": rxnorm, **when._asdict(),
            "dose": None if dose.get("value") is None else float(dose["value"]),
            "dose_unit": _unit(dose) if dose else None, "route": _concept_text(dosage.get("route")),
            "status": status, "source": f"{self.name} MedicationAdministration/{dose_id}",
        })

    def prescription(self, res: dict, dose_id: str, where: str) -> None:
        """A MedicationRequest or MedicationStatement read as doses (only with ``--doses-from``): one dose
        a day over its period when taken daily, else one dose at its start. An assumption: a warning."""
        rtype = res["resourceType"]
        status = res.get("status")
        taken = {"active", "completed", "stopped", "intended"} if rtype == "MedicationStatement" else \
            {"active", "completed", "stopped"}
        if status == "not-taken":
            dose_status = "not-done"
        elif status in taken:
            dose_status = "completed"
        else:
            self.notice(where, "status", f"{rtype} with status {status}: not read as doses", "not-done")
            return
        n0 = self.n_errors
        pid = self.subject(res, where)
        dosage = res.get("dosageInstruction") if rtype == "MedicationRequest" else res.get("dosage")
        first = dosage[0] if isinstance(dosage, list) and dosage and isinstance(dosage[0], dict) else {}
        repeat = ((first.get("timing") or {}).get("repeat") or {}) if isinstance(first.get("timing"), dict) else {}
        bounds = repeat.get("boundsPeriod") if isinstance(repeat.get("boundsPeriod"), dict) else {}
        if rtype == "MedicationRequest":
            validity = ((res.get("dispenseRequest") or {}).get("validityPeriod") or {})
            start_fields = ("authoredOn",)
            start = self.when({"start": bounds.get("start"), **res}, where, ("start", *start_fields), "authoredOn")
            end_text = bounds.get("end") or (validity.get("end") if isinstance(validity, dict) else None)
        else:
            start = self.when(res, where, ("effectiveDateTime", "effectivePeriod.start"), "effective[x]")
            period = res.get("effectivePeriod") if isinstance(res.get("effectivePeriod"), dict) else {}
            end_text = bounds.get("end") or period.get("end")
        drug, rxnorm = self.drug(res, where)
        if self.n_errors > n0 or start is None:
            return
        days = 1
        daily = repeat.get("frequency", 1) == 1 and repeat.get("period", 1) == 1 and repeat.get("periodUnit") == "d"
        if end_text and daily:
            try:
                days = (parse_when(end_text).date - start.date).days + 1
            except (ValueError, AttributeError):
                days = 1
        days = max(1, min(days, MAX_DOSE_DAYS))
        rate = first.get("doseAndRate")
        qty = (rate[0].get("doseQuantity") if isinstance(rate, list) and rate and isinstance(rate[0], dict) else None)
        qty = qty if isinstance(qty, dict) else {}
        flag = "request" if rtype == "MedicationRequest" else "statement"
        self.warn(where, "resourceType", f"{rtype} read as doses given (--doses-from {flag}): it records an "
                  "intention or a report, not an administration", "assumed",
                  f"{days} daily dose(s) from {start.date}" if days > 1 else f"one dose on {start.date}")
        for n in range(days):
            date = start.date + dt.timedelta(days=n)
            when = start if n == 0 else When(dt.datetime(date.year, date.month, date.day), date, False, None)
            self.doses.append({
                "patient_id": pid, "dose_id": dose_id if days == 1 else f"{dose_id}-{n + 1}", "drug": drug,
                "rxnorm": rxnorm, **when._asdict(),
                "dose": None if qty.get("value") is None else float(qty["value"]),
                "dose_unit": _unit(qty) if qty else None, "route": _concept_text(first.get("route")),
                "status": dose_status, "source": f"{self.name} {rtype}/{dose_id}",
            })

    def drug(self, res: dict, where: str) -> tuple[str | None, str | None]:
        field, concept = "medicationCodeableConcept", res.get("medicationCodeableConcept")
        if concept is None:
            field, ref = "medicationReference", (res.get("medicationReference") or {}).get("reference", "")
            ref = ref if isinstance(ref, str) else ""
            if ref.startswith("#"):
                contained = res.get("contained")
                med = next((c for c in (contained if isinstance(contained, list) else [])
                            if isinstance(c, dict) and c.get("id") == ref[1:]), None)
                known = med is not None
            else:
                known = ref in self.medications or _relative(ref, "Medication") in self.medications
                med = self.medications.get(ref) or self.medications.get(_relative(ref, "Medication"))
            if med is None:
                self.error(where, field, f"reference {ref!r}: Medication "
                           f"{'is invalid and was not read' if known else 'not found'}", "reference")
                return None, None
            concept = med.get("code")
        codes = [c.get("code") for c in _codings(concept) if c.get("system") == RXNORM and c.get("code")]
        texts = [t for t in [(concept or {}).get("text"), *(c.get("display") for c in _codings(concept))]
                 if isinstance(t, str) and t]
        found = next((d for d in (drug_catalog().find(code=c) for c in codes) if d), None)
        found = found or next((d for d in (drug_catalog().find(text=t) for t in texts) if d), None)
        if found is not None:
            return found.name, codes[0] if codes else (found.rxnorm[0] if found.rxnorm else None)
        if not codes and not texts:
            self.error(where, field, "no drug: neither an RxNorm code nor a name", "value")
            return None, None
        name = texts[0].lower() if texts else f"rxnorm {codes[0]}"
        self.notice(where, field, "drug not in dosewatch's drug catalog: kept by its name (give it as --study-drug "
                    "to make it the study drug)", "not-used", name)
        return name, codes[0] if codes else None

    # -- Condition, AdverseEvent
    def condition(self, res: dict, event_id: str, where: str) -> None:
        rtype = res["resourceType"]
        if any(c.get("code") == "entered-in-error" for c in _codings(res.get("verificationStatus"))):
            self.notice(where, "verificationStatus", "entered-in-error: not read", "not-done")
            return
        if res.get("actuality") == "potential":
            self.notice(where, "actuality", "potential adverse event: not read", "not-done")
            return
        n0 = self.n_errors
        code_field = "code" if rtype == "Condition" else "event"
        concept = res.get(code_field)
        kind = next((catalog().event_by_snomed[c["code"]] for c in _codings(concept)
                     if c.get("system") == SNOMED and c.get("code") in catalog().event_by_snomed), None)
        if kind is None:
            texts = [(concept or {}).get("text"), *(c.get("display") for c in _codings(concept))]
            kind = next((k for k in map(self.cat.event_for_text, [t for t in texts if isinstance(t, str)]) if k), None)
        text = _concept_text(concept)
        # the source's codes beyond the event catalog's own SNOMED CT code (which ``code`` already says)
        own = (SNOMED, kind.snomed[0]) if kind is not None and kind.snomed else None
        codes = " ".join(f"{c.get('system')}|{c.get('code')}" for c in _codings(concept)
                         if isinstance(c.get("system"), str) and isinstance(c.get("code"), str)
                         and (c.get("system"), c.get("code")) != own) or None
        if kind is None and not text and not codes:
            self.error(where, code_field, "no event: neither a code nor a text", "value")
        pid = self.subject(res, where)
        fields = (("onsetDateTime", "onsetPeriod.start", "recordedDate") if rtype == "Condition"
                  else ("date", "detected", "recordedDate"))
        when = self.when(res, where, fields, fields[0].replace("DateTime", "[x]"))
        end = None
        if res.get("abatementDateTime"):
            try:
                end = parse_when(res["abatementDateTime"]).date
            except (ValueError, AttributeError) as exc:
                self.error(where, "abatementDateTime", str(exc), "date")
        grade, grade_source = self.grade(res, where)
        if self.n_errors > n0:
            return
        if kind is None:
            self.notice(where, code_field, "event not in dosewatch's event catalog: kept as a reported event (no "
                        "criterion acts on it)", "not-used", text or codes or "")
        self.events.append({
            "patient_id": pid, "event_id": event_id, "code": kind.code if kind else None,
            "term": text or (kind.term if kind else codes), **when._asdict(), "end_date": end, "grade": grade,
            "source": f"{self.name} {rtype}/{event_id}", "codes": codes, "grade_source": grade_source,
            "imputed": imputed if isinstance(imputed := _extension(res, IMPUTED_URL), str) else None,
        })

    def grade(self, res: dict, where: str) -> tuple[int | None, str | None]:
        grade = _extension(res, GRADE_URL)
        if grade is not None:
            if isinstance(grade, bool) or not isinstance(grade, int) or not 1 <= grade <= 5:
                self.error(where, f"extension({GRADE_URL})", "grade is not an integer 1-5", "value", repr(grade))
                return None, None
            return grade, "toxicity grade"
        severity = res.get("severity")
        for key in [c.get("code") for c in _codings(severity)] + [(severity or {}).get("text")]:
            if isinstance(key, str) and key.lower() in SEVERITY_GRADE:
                grade = SEVERITY_GRADE[key.lower()]
                return grade, f"severity {SEVERITY_WORD[grade]}"
        return None, None


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


def _id_from_url(url: str | None) -> str | None:
    if not isinstance(url, str) or not url:
        return None
    return url.rsplit(":", 1)[-1] if url.startswith("urn:") else url.rstrip("/").rsplit("/", 1)[-1]


def _load_json(data: bytes) -> Any:
    """JSON parsed by orjson (several times faster than the json module); on anything orjson refuses,
    the json module, whose messages name the line and column (and which reads integers of any size)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data.decode("utf-8"))


def read_fhir(path: str | Path, *, skip_invalid: bool = False, collect: bool = False,
              known_patients: set[str] | None = None, cat: Catalog | None = None,
              doses_from: tuple[str, ...] = ("administration",)) -> ReadResult:
    """Read a FHIR R4 Bundle (collection, transaction, batch or searchset; Bundles inside it too)
    into a Cohort.

    All problems are collected in one pass. Any error fails the whole read (InputError) unless
    ``skip_invalid`` (invalid records are dropped and listed) or ``collect`` is set.
    ``known_patients`` are patients enrolled before (the server passes the trial's): records may
    refer to them (``Patient/<id>``) without a Patient resource in the bundle; they are not added
    to the patients table, only their records are read (and a reference to any other patient not in
    the bundle is an error). ``cat`` is the analyte catalog (with a site's local codes, if any);
    ``doses_from`` names the resources read as doses: ``administration`` (the default), ``request``,
    ``statement``."""
    path = Path(path)
    reader = _Reader(path.name, known_patients, cat, doses_from)
    try:
        data = path.read_bytes()
        try:
            bundle = _lazy_bundle(data)
        except (msgspec.DecodeError, orjson.JSONDecodeError):  # not a JSON object with a list of entries
            bundle = _load_json(data)
    except json.JSONDecodeError as exc:
        reader.error(f"{path.name} line {exc.lineno} column {exc.colno}", "json", "malformed JSON", "file", exc.msg)
    except (OSError, UnicodeDecodeError) as exc:
        reader.error(path.name, "file", "cannot read the file", "file", str(exc))
    except RecursionError:
        reader.error(path.name, "json", "malformed JSON: nested too deeply", "file")
    else:
        try:
            reader.read(bundle)
        except RecursionError:
            reader.error(path.name, "json", "a resource is nested too deeply to read", "file")
    cohort = Cohort(
        frame(reader.patients, PATIENTS_SCHEMA),
        frame(reader.observations, OBSERVATIONS_SCHEMA),
        frame(reader.doses, DOSES_SCHEMA),
        frame(reader.events, EVENTS_SCHEMA),
    )
    return finish(ReadResult(cohort, reader.problems), skip_invalid=skip_invalid, collect=collect)
