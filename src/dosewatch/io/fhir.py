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
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pydantic

from ..analytes import Catalog, catalog
from ..errors import Problem
from ..record import DOSES_SCHEMA, EVENTS_SCHEMA, OBSERVATIONS_SCHEMA, PATIENTS_SCHEMA, Cohort, frame
from . import ReadResult, finish
from .fhir_base import BUNDLE_TYPES, SEX, When, _concept_text, _describe, _model, _relative, fhir_id, parse_when
from .fhir_conditions import ConditionReading
from .fhir_doses import DoseReading
from .fhir_findings import FindingReading
from .json_bounds import json_excess
from .fhir_shape import _SHAPES, _leaf_checks, _leaves_ok, _shallow_shape, _shape

MAX_NESTING = 8  # Bundles inside Bundles read, at most this deep
DOSE_RESOURCES = {"administration": "MedicationAdministration", "request": "MedicationRequest",
                  "statement": "MedicationStatement"}


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "(resource)"


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


class _Reader(FindingReading, DoseReading, ConditionReading):
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
        if None in leaves or key is None:
            null = _null_member(resource)
            if null is not None:  # fhir.resources reads a null as absent; FHIR JSON has no nulls
                self.error(where, null, f"invalid FHIR R4 {rtype}: null is not a FHIR value (leave the element out)",
                           "invalid")
                return False
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
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # fhir.resources fails so on a few shapes it has no error for (a contained resource of
            # an unknown type or a resourceType that is not a string): still a resource it refuses.
            self.error(where, _contained_field(resource), f"invalid FHIR R4 {rtype}: a resource of a shape FHIR "
                       "does not allow", "invalid", f"{type(exc).__name__}: {str(exc)[:120]}")
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

    def unused_code(self, resource: Any) -> str | None:
        """The notice for an Observation none of whose codes (its own, its components') dosewatch reads;
        None when dosewatch reads it. Raw codes are looked up once per distinct JSON text."""
        if isinstance(resource, msgspec.Raw):
            try:
                head = _OBSERVATION_HEAD.decode(resource)
            except msgspec.DecodeError:
                return None  # not the shape of an Observation: validation names what is wrong
            key = bytes(head.code)
            if b"null" in key:
                return None  # a code with a null: read, so that validation names it
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

    def medication(self, entry: dict, resource: dict, mid: str, where: str) -> None:
        ok = self.validate("Medication", resource, where)
        for key in (f"Medication/{mid}", entry.get("fullUrl")):
            if isinstance(key, str):
                self.medications[key] = resource if ok else None

def _null_member(value: Any, path: str = "") -> str | None:
    """The path of the first object member whose value is null (array items may be: FHIR pairs a
    primitive array's nulls with its extensions, ``"_given": [null, {...}]``)."""
    if isinstance(value, dict):
        for k, v in value.items():
            here = f"{path}.{k}" if path else k
            if v is None:
                return here
            found = _null_member(v, here)
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _null_member(v, f"{path}[{i}]")
            if found:
                return found
    return None


def _contained_field(resource: dict) -> str:
    """The field at fault when fhir.resources fails without a ValidationError: so far always a
    contained resource (of a type R4 does not have, or with a resourceType that is not a string)."""
    return "contained" if resource.get("contained") is not None else "(resource)"


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


_UNREAD = object()


def _parse(path: Path, reader: _Reader) -> Any:
    """The bundle's JSON (entries' resources kept raw), or ``_UNREAD`` and an error naming the line."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        reader.error(path.name, "file", "cannot read the file", "file", exc.strerror or type(exc).__name__)
        return _UNREAD
    excess = json_excess(data)  # before any parser: they fail on these otherwise than by an error
    if excess is not None:
        reader.error(f"{path.name} line {excess.line} column {excess.column}", "json", "malformed JSON", "file",
                     excess.message)
        return _UNREAD
    try:
        try:
            return _lazy_bundle(data)
        except (msgspec.DecodeError, orjson.JSONDecodeError):  # not a JSON object with a list of entries
            return _load_json(data)
    except json.JSONDecodeError as exc:
        reader.error(f"{path.name} line {exc.lineno} column {exc.colno}", "json", "malformed JSON", "file", exc.msg)
    except UnicodeDecodeError as exc:
        reader.error(path.name, "file", "cannot read the file: not UTF-8 text", "file", str(exc))
    except (RecursionError, ValueError) as exc:
        reader.error(path.name, "json", "malformed JSON", "file", str(exc)[:200])
    return _UNREAD


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
    bundle = _parse(path, reader)
    if bundle is not _UNREAD:
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
