"""The canonical record in the database: import a read ``Cohort`` into a trial, load one back.

An import is planned first (what is new, changed, unchanged, refused) and written only when the
plan is accepted: with any refused record nothing is written unless ``skip_invalid``. Records are
matched by their id (resource id, SDTM sequence id), so importing the same data twice changes
nothing. A changed record is a correction: it needs a reason, and its audit entry keeps the values
before and after.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from ..errors import InputError, Problem
from ..io import ReadResult
from ..record import DOSES_SCHEMA, EVENTS_SCHEMA, OBSERVATIONS_SCHEMA, PATIENTS_SCHEMA, Cohort
from .audit import Change, append
from .models import Dose, Event, Observation, Patient, Trial
from .scope import Viewer, scoped

# canonical table -> (model, id column, schema)
RECORDS = {
    "observations": (Observation, "obs_id", OBSERVATIONS_SCHEMA),
    "doses": (Dose, "dose_id", DOSES_SCHEMA),
    "events": (Event, "event_id", EVENTS_SCHEMA),
}
RENAME = {"site": "body_site"}  # record column -> model attribute (``site`` means a body site there)
PATIENT_FIELDS = ("sex", "birth_date", "deceased_date")
CHUNK = 1000


def record_fields(table: str) -> list[str]:
    """The compared (and audited) columns of a record table: all but the patient, the id and the source."""
    _, key, schema = RECORDS[table]
    return [c for c in schema if c not in ("patient_id", key, "source")]


def _attr(column: str) -> str:
    return RENAME.get(column, column)


def _same(a: Any, b: Any) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)


@dataclass
class ImportReport:
    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    rejected: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    patients: list[str] = field(default_factory=list)  # patients whose data changed
    changed_pks: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"created": self.created, "updated": self.updated, "unchanged": self.unchanged,
                "rejected": [p.as_dict() for p in self.rejected], "warnings": [p.as_dict() for p in self.warnings],
                "patients_changed": self.patients}


def _future_dates(cohort: Cohort, latest: dt.date) -> tuple[Cohort, list[Problem]]:
    """Dates after ``latest`` cannot have been measured or given yet (a year 9999 typo): refused."""
    problems: list[Problem] = []
    checks = {"patients": ("birth_date", "deceased_date"), "observations": ("date",), "doses": ("date",),
              "events": ("date",)}
    kept = {}
    for table, cols in checks.items():
        df: pl.DataFrame = getattr(cohort, table)
        bad = pl.any_horizontal([(pl.col(c) > latest).fill_null(False) for c in cols])
        for row in df.filter(bad).iter_rows(named=True):
            col = next(c for c in cols if row[c] is not None and row[c] > latest)
            problems.append(Problem(row["source"] or table, col, f"date {row[col].isoformat()} is in the future"))
        kept[table] = df.filter(~bad)
    refused = set(cohort.patients.filter(~pl.col("patient_id").is_in(kept["patients"]["patient_id"].implode()))
                  ["patient_id"].to_list())
    return _without(Cohort(**kept), refused), problems


def _without(cohort: Cohort, patient_ids: set[str]) -> Cohort:
    if not patient_ids:
        return cohort
    keep = ~pl.col("patient_id").is_in(sorted(patient_ids))
    return Cohort(cohort.patients.filter(keep), cohort.observations.filter(keep), cohort.doses.filter(keep),
                  cohort.events.filter(keep))


def _chunks(items: list, size: int = CHUNK):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def import_cohort(session: Session, trial: Trial, read: ReadResult, viewer: Viewer, *, site_id: int | None,
                  skip_invalid: bool = False, reason: str | None = None, latest: dt.date | None = None) -> ImportReport:
    """Import what a reader read (``read_fhir`` / ``read_sdtm`` with ``collect=True``) into ``trial``,
    in the caller's write transaction. New patients are enrolled at ``site_id``; patients already
    enrolled at a site the viewer cannot see are refused. Raises ``InputError`` (nothing written)
    when anything is refused, unless ``skip_invalid``."""
    latest = latest or dt.date.today() + dt.timedelta(days=1)
    report = ImportReport(warnings=[p for p in read.problems if p.severity != "error"])
    errors = [p for p in read.problems if p.severity == "error"]
    cohort, found = _future_dates(read.cohort, latest)
    errors += found

    # Patients: existing ones must be at a site the viewer sees; new ones need a site.
    ids = cohort.patients["patient_id"].to_list()
    existing = {p.patient_id: p for chunk in _chunks(ids)
                for p in session.scalars(select(Patient).where(Patient.trial_id == trial.id,
                                                               Patient.patient_id.in_(chunk)))}
    refused = set()
    for row in cohort.patients.iter_rows(named=True):
        pid, old = row["patient_id"], existing.get(row["patient_id"])
        if old is not None and not viewer.can_see_site(old.site_id):
            errors.append(Problem(row["source"] or pid, "patient_id", f"patient {pid} is enrolled at a site you do not work at"))
            refused.add(pid)
        elif old is None and site_id is None:
            errors.append(Problem(row["source"] or pid, "site", f"patient {pid} is new: give the site to enrol at (?site=CODE)"))
            refused.add(pid)
    cohort = _without(cohort, refused)

    # Records: match by id; an id already used by another patient is refused.
    plans = {}
    pk_of = {pid: p.id for pid, p in existing.items()}
    for table, (model, key, _) in RECORDS.items():
        df: pl.DataFrame = getattr(cohort, table)
        fields = record_fields(table)
        cols = [model.id, model.patient_pk, getattr(model, key)] + [getattr(model, _attr(c)) for c in fields]
        old = {}
        for chunk in _chunks(df[key].to_list()):
            for row in session.execute(select(*cols).where(model.trial_id == trial.id, getattr(model, key).in_(chunk))):
                old[row[2]] = (row[0], row[1], dict(zip(fields, row[3:], strict=True)))
        plan = {"new": [], "changed": [], "same": 0}
        for row in df.iter_rows(named=True):
            rid, pid = row[key], row["patient_id"]
            if rid not in old:
                plan["new"].append(row)
                continue
            pk, patient_pk, before = old[rid]
            if pk_of.get(pid) != patient_pk:
                errors.append(Problem(row["source"] or rid, key, f"{rid} is already recorded for another patient"))
                continue
            diff = {c: (before[c], row[c]) for c in fields if not _same(before[c], row[c])}
            if diff:
                plan["changed"].append((pk, row, diff))
            else:
                plan["same"] += 1
        plans[table] = plan

    if errors and not skip_invalid:
        raise InputError(errors)
    report.rejected = errors
    n_changed = sum(len(p["changed"]) for p in plans.values())
    changed_patients = [pid for pid, p in existing.items() if pid in ids and pid not in refused and
                        any(not _same(getattr(p, c), r[c]) for r in cohort.patients.filter(
                            pl.col("patient_id") == pid).iter_rows(named=True) for c in PATIENT_FIELDS)]
    if (n_changed or changed_patients) and not (reason and reason.strip()):
        raise InputError([Problem("import", "reason", f"{n_changed + len(changed_patients)} stored record(s) would "
                                  "be corrected: give the reason for the correction (?reason=...)")])

    changes: list[Change] = []
    actor = viewer.name

    def audit(action: str, entity: str, rid: str, site: int, pid: str, before=None, after=None, why=None) -> None:
        changes.append(Change(actor, action, entity, rid, before, after, why, trial.id, site, pid))

    # Patients: insert the new ones, correct the changed ones.
    new_patients = [r for r in cohort.patients.iter_rows(named=True) if r["patient_id"] not in existing]
    for chunk in _chunks(new_patients):
        rows = [{"trial_id": trial.id, "site_id": site_id, "patient_id": r["patient_id"], "source": r["source"],
                 "deleted": False, **{c: r[c] for c in PATIENT_FIELDS}} for r in chunk]
        for pk, pid in session.execute(insert(Patient).returning(Patient.id, Patient.patient_id), rows):
            pk_of[pid] = pk
    site_of = {pid: site_id for pid in (r["patient_id"] for r in new_patients)}
    site_of.update({pid: p.site_id for pid, p in existing.items()})
    for r in new_patients:
        audit("create", "patient", r["patient_id"], site_id, r["patient_id"],
              after={c: r[c] for c in PATIENT_FIELDS})
    for pid in changed_patients:
        p, r = existing[pid], cohort.patients.filter(pl.col("patient_id") == pid).row(0, named=True)
        before = {c: getattr(p, c) for c in PATIENT_FIELDS if not _same(getattr(p, c), r[c])}
        after = {c: r[c] for c in before}
        for c, v in after.items():
            setattr(p, c, v)
        audit("update", "patient", pid, p.site_id, pid, before, after, reason)
    report.created["patients"], report.updated["patients"] = len(new_patients), len(changed_patients)
    report.unchanged["patients"] = cohort.patients.height - len(new_patients) - len(changed_patients)

    touched = {r["patient_id"] for r in new_patients} | set(changed_patients)
    for table, (model, key, _) in RECORDS.items():
        plan, fields = plans[table], record_fields(table)
        entity = table[:-1]
        rows = [{"trial_id": trial.id, "site_id": site_of[r["patient_id"]], "patient_pk": pk_of[r["patient_id"]],
                 key: r[key], "source": r["source"], "deleted": False, **{_attr(c): r[c] for c in fields}}
                for r in plan["new"]]
        for chunk in _chunks(rows):
            session.execute(insert(model), chunk)
        for r in plan["new"]:
            audit("create", entity, r[key], site_of[r["patient_id"]], r["patient_id"], after={c: r[c] for c in fields})
        updates = [{"id": pk, **{_attr(c): new for c, (_, new) in diff.items()}} for pk, _, diff in plan["changed"]]
        for chunk in _chunks(updates):
            session.execute(update(model), chunk)
        for _, r, diff in plan["changed"]:
            audit("update", entity, r[key], site_of[r["patient_id"]], r["patient_id"],
                  before={c: old for c, (old, _) in diff.items()}, after={c: new for c, (_, new) in diff.items()},
                  why=reason)
        report.created[table], report.updated[table], report.unchanged[table] = (
            len(plan["new"]), len(plan["changed"]), plan["same"])
        touched |= {r["patient_id"] for r in plan["new"]} | {r["patient_id"] for _, r, _ in plan["changed"]}
    append(session, changes)
    report.patients = sorted(touched)
    report.changed_pks = sorted(pk_of[pid] for pid in touched)
    return report


def load_cohort(session: Session, trial_id: int, viewer: Viewer, patient_pks: list[int] | None = None) -> Cohort:
    """The trial's record as a ``Cohort`` (canonical shape), limited to the viewer's sites and,
    when given, to some patients. Records marked deleted are left out."""
    def where(stmt, model):
        stmt = scoped(stmt.where(model.trial_id == trial_id, model.deleted.is_(False)), model, viewer)
        if patient_pks is not None:
            stmt = stmt.where((model.id if model is Patient else model.patient_pk).in_(patient_pks))
        return stmt

    pcols = [Patient.patient_id, Patient.sex, Patient.birth_date, Patient.deceased_date, Patient.source]
    patients = pl.DataFrame(session.execute(where(select(*pcols), Patient).order_by(Patient.patient_id)).all(),
                            schema=PATIENTS_SCHEMA, orient="row")
    tables = {}
    for table, (model, key, schema) in RECORDS.items():
        cols = [getattr(model, _attr(c)) if c != "patient_id" else Patient.patient_id for c in schema]
        stmt = where(select(*cols).join(Patient, Patient.id == model.patient_pk), model).order_by(model.id)
        tables[table] = pl.DataFrame(session.execute(stmt).all(), schema=schema, orient="row")
    return Cohort(patients, tables["observations"], tables["doses"], tables["events"])
