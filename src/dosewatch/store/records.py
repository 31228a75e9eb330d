"""The canonical record in the database: import a read ``Cohort`` into a trial, load one back.

An import is planned first (what is new, changed, unchanged, refused) and written only when the
plan is accepted: with any refused record nothing is written unless ``skip_invalid``. Records are
matched by their id (resource id, SDTM sequence id), so importing the same data twice changes
nothing. A changed record is a correction: it needs a reason, and its audit entry keeps the values
before and after.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from sqlalchemy import Column, MetaData, String, Table, insert, select, text, true, update
from sqlalchemy.orm import Session

from ..errors import InputError, Problem, counts, group_problems
from ..io import ReadResult
from ..io.reading import unreadable
from ..record import DOSES_SCHEMA, EVENTS_SCHEMA, OBSERVATIONS_SCHEMA, PATIENTS_SCHEMA, Cohort
from .audit import Change, append, canonical, chain
from .bulk import insert_frame, read_frame
from .models import Dose, Event, Observation, Patient, Trial
from .scope import Viewer, scoped

# canonical table -> (model, id column, schema)
RECORDS = {
    "observations": (Observation, "obs_id", OBSERVATIONS_SCHEMA),
    "doses": (Dose, "dose_id", DOSES_SCHEMA),
    "events": (Event, "event_id", EVENTS_SCHEMA),
}
RENAME = {"site": "body_site"}  # record column -> model attribute (``site`` means a body site there)
PATIENT_FIELDS = ("sex", "birth_date", "deceased_date", "study_id", "age", "age_date")
CHUNK = 1000
IMPORT_IDS = Table("import_ids", MetaData(), Column("id", String, primary_key=True))  # temporary, per import


KINDS = {"observations": "observation", "doses": "dose", "events": "event"}


def taken_id(kind: str, rid: str) -> str:
    """The refusal of an id another record holds, worded the same whoever holds it (the user's own
    patient or another site's, which must not be learned from it): the id, never its holder or site."""
    return f"{kind} id {rid} cannot be used: it is taken in this trial (choose another id)"


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
    warnings: list[Problem] = field(default_factory=list)  # assumptions made to read a record
    notices: list[Problem] = field(default_factory=list)  # what was not used (reported grouped)
    patients: list[str] = field(default_factory=list)  # patients whose data changed
    changed_pks: list[int] = field(default_factory=list)
    new_patients: Cohort | None = None  # the complete record of the patients this import enrolled

    def as_dict(self) -> dict[str, Any]:
        return {"created": self.created, "updated": self.updated, "unchanged": self.unchanged,
                "rejected": [p.as_dict() for p in self.rejected], "warnings": [p.as_dict() for p in self.warnings],
                "notices": [g.as_dict() for g in group_problems(self.notices)],
                "counts": counts(self.rejected + self.warnings + self.notices),
                "patients_changed": self.patients}


def _future_dates(cohort: Cohort, latest: dt.date) -> tuple[Cohort, list[Problem]]:
    """Dates after ``latest`` cannot have been measured or given yet (a year 9999 typo): refused."""
    checks = {"patients": ("birth_date", "deceased_date"), "observations": ("date",), "doses": ("date",),
              "events": ("date",)}
    return _refuse_rows(cohort, {t: [(c, (pl.col(c) > latest).fill_null(False),
                                      lambda row, c=c: f"date {row[c].isoformat()} is in the future") for c in cols]
                                 for t, cols in checks.items()})


def _nul_characters(cohort: Cohort) -> tuple[Cohort, list[Problem]]:
    """Text with a NUL character cannot be stored (PostgreSQL refuses it) and is no clinical text:
    refused, naming the row and the field."""
    checks = {table: [(c, pl.col(c).str.contains("\x00", literal=True).fill_null(False),
                       lambda _row: "a NUL character in the text") for c, t in getattr(cohort, table).schema.items()
                      if t == pl.String]
              for table in ("patients", *RECORDS)}
    return _refuse_rows(cohort, checks)


def _refuse_rows(cohort: Cohort, checks: dict[str, list[tuple[str, pl.Expr, Any]]]) -> tuple[Cohort, list[Problem]]:
    """Rows failing a check (table -> [(column, failing, message of a row)]) refused with a problem
    each; a refused patient takes their records along (each named too)."""
    problems: list[Problem] = []
    kept = {}
    for table in ("patients", *RECORDS):
        df = getattr(cohort, table).with_row_index("_i")
        bad: list[int] = []
        for col, failing, message in checks.get(table, []):
            for row in df.filter(failing & ~pl.col("_i").is_in(bad)).iter_rows(named=True):
                problems.append(Problem(row["source"] or table, col, message(row)))
                bad.append(row["_i"])
        kept[table] = df.filter(~pl.col("_i").is_in(bad)).drop("_i")
    refused = set(cohort.patients.filter(~pl.col("patient_id").is_in(kept["patients"]["patient_id"].implode()))
                  ["patient_id"].to_list())
    cohort, left_out = _without(Cohort(**kept), refused)
    return cohort, problems + left_out


def _without(cohort: Cohort, patient_ids: set[str]) -> tuple[Cohort, list[Problem]]:
    """``cohort`` without the patients ``patient_ids`` and their records; each record left out is
    named (skip_invalid never drops a row unlisted)."""
    if not patient_ids:
        return cohort, []
    keep = ~pl.col("patient_id").is_in(sorted(patient_ids))
    problems = []
    for table, (_, key, _) in RECORDS.items():
        df: pl.DataFrame = getattr(cohort, table)
        for pid, rid, source in df.filter(~keep).select("patient_id", key, "source").iter_rows():
            problems.append(Problem(source or rid, "patient_id", "record left out: its patient was refused",
                                    detail=f"patient {pid}"))
    return Cohort(cohort.patients.filter(keep), cohort.observations.filter(keep), cohort.doses.filter(keep),
                  cohort.events.filter(keep)), problems


def _chunks(items: list, size: int = CHUNK):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _stored(session: Session, table: str, ids: list[str], trial_id: int) -> pl.DataFrame:
    """The stored rows of ``table`` with these record ids: ``_pk``, ``_patient_pk``, the id and the
    compared fields. Many ids go through a temporary table (one join instead of many ``IN`` lists)."""
    model, key, schema = RECORDS[table]
    fields = record_fields(table)
    cols = [model.id.label("_pk"), model.patient_pk.label("_patient_pk"), getattr(model, key).label(key),
            *(getattr(model, _attr(c)).label(c) for c in fields)]
    out = {"_pk": pl.Int64, "_patient_pk": pl.Int64, key: pl.String, **{c: schema[c] for c in fields}}
    stmt = select(*cols).where(model.trial_id == trial_id)
    if len(ids) <= 4 * CHUNK:
        frames = [read_frame(session, stmt.where(getattr(model, key).in_(chunk)), out) for chunk in _chunks(ids)]
        return pl.concat(frames) if frames else pl.DataFrame(schema=out)
    sqlite = session.bind.dialect.name == "sqlite"
    session.execute(text("CREATE TEMP TABLE IF NOT EXISTS import_ids (id TEXT)" + ("" if sqlite else " ON COMMIT DROP")))
    session.execute(text("DELETE FROM import_ids"))
    insert_frame(session, "import_ids", pl.DataFrame({"id": ids}, schema={"id": pl.String}).unique())
    if sqlite:  # SQLite looks each id up in the (trial_id, id) index
        found = read_frame(session, stmt.join(IMPORT_IDS, IMPORT_IDS.c.id == getattr(model, key)), out)
    else:
        # One index lookup per id (a LATERAL subquery that OFFSET 0 keeps from being flattened): the
        # planner, without statistics on the fresh rows, otherwise hashes every stored row of the
        # trial, a cost that grows with the trial instead of with the import.
        lookup = stmt.where(getattr(model, key) == IMPORT_IDS.c.id).offset(0).lateral("stored")
        found = read_frame(session, select(lookup).select_from(IMPORT_IDS).join(lookup, true()), out)
    session.execute(text("DELETE FROM import_ids"))
    return found


def _created_json(df: pl.DataFrame, fields: list[str]) -> pl.Series:
    """The audit entry's ``after`` of each new record: its fields as JSON (sorted keys, ISO dates),
    encoded on the whole column."""
    exprs = []
    for c in sorted(fields):
        dtype = df.schema[c]
        if isinstance(dtype, pl.Datetime):
            exprs.append(pl.when(pl.col(c).dt.microsecond() == 0).then(pl.col(c).dt.strftime("%Y-%m-%dT%H:%M:%S"))
                         .otherwise(pl.col(c).dt.strftime("%Y-%m-%dT%H:%M:%S%.6f")).alias(c))
        elif dtype == pl.Date:
            exprs.append(pl.col(c).dt.strftime("%Y-%m-%d"))
        else:
            exprs.append(pl.col(c))
    return df.select(pl.struct(exprs).struct.json_encode()).to_series()


def _first_source(cohort: Cohort, pid: str) -> str:
    for table in RECORDS:
        df = getattr(cohort, table).filter(pl.col("patient_id") == pid)
        if df.height:
            return df["source"][0] or pid
    return pid


def import_cohort(session: Session, trial: Trial, read: ReadResult, viewer: Viewer, *, site_id: int | None,
                  skip_invalid: bool = False, reason: str | None = None, latest: dt.date | None = None) -> ImportReport:
    """Import what a reader read (``read_fhir`` / ``read_sdtm`` with ``collect=True``) into ``trial``,
    in the caller's write transaction. New patients are enrolled at ``site_id``; patients already
    enrolled at a site the viewer cannot see are refused. Records may belong to an enrolled patient
    the input has no patient row for (FHIR ``known_patients``). Raises ``InputError`` (nothing
    written) when anything is refused, unless ``skip_invalid``."""
    latest = latest or dt.date.today() + dt.timedelta(days=1)
    report = ImportReport(warnings=[p for p in read.problems if p.severity == "warning"],
                          notices=[p for p in read.problems if p.severity == "notice"])
    errors = [p for p in read.problems if p.severity == "error"]
    cohort, found = _future_dates(read.cohort, latest)
    errors += found
    cohort, found = _nul_characters(cohort)
    errors += found

    # Patients: existing ones must be at a site the viewer sees; new ones need a site.
    listed = cohort.patients["patient_id"].to_list()
    referred = set().union(*(getattr(cohort, t)["patient_id"].unique().to_list() for t in RECORDS)) - set(listed)
    existing = {p.patient_id: p for chunk in _chunks(listed + sorted(referred))
                for p in session.scalars(select(Patient).where(Patient.trial_id == trial.id,
                                                               Patient.patient_id.in_(chunk)))}
    refused = set()
    for row in cohort.patients.iter_rows(named=True):
        pid, old = row["patient_id"], existing.get(row["patient_id"])
        hidden = old is not None and not viewer.can_see_site(old.site_id)
        if hidden and site_id is not None:
            errors.append(Problem(row["source"] or pid, "patient_id", taken_id("patient", pid)))
            refused.add(pid)
        elif (old is None or hidden) and site_id is None:  # another site's patient: the answer for a new one
            errors.append(Problem(row["source"] or pid, "site", f"patient {pid} is new: give the site to enrol at (?site=CODE)"))
            refused.add(pid)
    for pid in sorted(referred):
        old = existing.get(pid)
        if old is None or not viewer.can_see_site(old.site_id):  # the same answer for another site's patient
            errors.append(Problem(_first_source(cohort, pid), "patient_id", f"patient {pid} is not enrolled in "
                                  f"trial {trial.code} (and has no patient record in the input)"))
            refused.add(pid)
    cohort, left_out = _without(cohort, refused)
    errors += left_out

    # Records: match by id (on whole columns); an id already used by another patient is refused.
    pk_of = {pid: p.id for pid, p in existing.items()}
    own = pl.DataFrame({"patient_id": list(pk_of), "_own_pk": list(pk_of.values())},
                       schema={"patient_id": pl.String, "_own_pk": pl.Int64})
    plans = {}
    for table, (_, key, _) in RECORDS.items():
        df: pl.DataFrame = getattr(cohort, table)
        fields = record_fields(table)
        old = _stored(session, table, df[key].to_list(), trial.id).rename({c: f"{c}__old" for c in fields})
        joined = df.join(old, on=key, how="left", maintain_order="left").join(
            own, on="patient_id", how="left", maintain_order="left")
        matched = joined.filter(pl.col("_pk").is_not_null())
        other = matched.filter(pl.col("_own_pk").ne_missing(pl.col("_patient_pk")))
        for source, rid in other.select("source", key).iter_rows():
            errors.append(Problem(source or rid, key, taken_id(KINDS[table], rid)))
        matched = matched.filter(pl.col("_own_pk").eq_missing(pl.col("_patient_pk")))
        differs = pl.any_horizontal([pl.col(c).ne_missing(pl.col(f"{c}__old")) for c in fields])
        changed = []
        for row in matched.filter(differs).iter_rows(named=True):
            diff = {c: (row[f"{c}__old"], row[c]) for c in fields if not _same(row[f"{c}__old"], row[c])}
            changed.append((row["_pk"], row, diff))
        plans[table] = {"new": joined.filter(pl.col("_pk").is_null()).select(df.columns), "changed": changed,
                        "same": matched.height - len(changed)}

    if errors and (not skip_invalid or unreadable(errors)):  # a whole file unread: its rows unnamed
        raise InputError(errors)
    report.rejected = errors
    n_changed = sum(len(p["changed"]) for p in plans.values())
    changed_patients = [pid for pid, p in existing.items() if pid in listed and pid not in refused and
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
    append(session, changes)
    changes.clear()

    # Records: new ones in bulk (with their audit entries), corrections one by one.
    where = pl.DataFrame({"patient_id": list(pk_of), "patient_pk": list(pk_of.values()),
                          "site_id": [site_of[p] for p in pk_of]},
                         schema={"patient_id": pl.String, "patient_pk": pl.Int64, "site_id": pl.Int64})
    touched = {r["patient_id"] for r in new_patients} | set(changed_patients)
    for table, (model, key, _) in RECORDS.items():
        plan, fields = plans[table], record_fields(table)
        entity = table[:-1]
        new = plan["new"].join(where, on="patient_id", how="left", maintain_order="left")
        insert_frame(session, model.__tablename__, new.select(
            pl.lit(trial.id, pl.Int64).alias("trial_id"), "site_id", "patient_pk", key, "source",
            pl.lit(False).alias("deleted"), *(pl.col(c).alias(_attr(c)) for c in fields)))
        # One creation entry per patient and table: the ids created and the SHA-256 of their values
        # (JSON lines, in id order, as ``_created_json`` writes them); the values are the stored rows,
        # and any later correction has its own entry with the values before and after.
        created = new.select("patient_id", "site_id", key, _created_json(new, fields).alias("_json")).group_by(
            "patient_id", "site_id", maintain_order=True).agg(pl.col(key), pl.col("_json").str.join("\n"))
        chain(session, (
            (actor, "create", entity, f"{len(ids)} {table}", trial.id, site, pid, None,
             canonical({"ids": ids, "sha256": hashlib.sha256(lines.encode()).hexdigest()}), None)
            for pid, site, ids, lines in created.iter_rows()))
        updates = [{"id": pk, **{_attr(c): new for c, (_, new) in diff.items()}} for pk, _, diff in plan["changed"]]
        for chunk in _chunks(updates):
            session.execute(update(model), chunk)
        for _, r, diff in plan["changed"]:
            audit("update", entity, r[key], site_of[r["patient_id"]], r["patient_id"],
                  before={c: old for c, (old, _) in diff.items()}, after={c: new for c, (_, new) in diff.items()},
                  why=reason)
        append(session, changes)
        changes.clear()
        report.created[table], report.updated[table], report.unchanged[table] = (
            new.height, len(plan["changed"]), plan["same"])
        touched |= set(new["patient_id"].unique().to_list()) | {r["patient_id"] for _, r, _ in plan["changed"]}
    enrolled = [r["patient_id"] for r in new_patients]
    mine = pl.col("patient_id").is_in(enrolled)
    report.new_patients = Cohort(cohort.patients.filter(mine).sort("patient_id"),  # as load_cohort orders them
                                 *(plans[t]["new"].filter(mine) for t in RECORDS))
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

    pcols = [getattr(Patient, c) for c in PATIENTS_SCHEMA]
    patients = read_frame(session, where(select(*pcols), Patient).order_by(Patient.patient_id), PATIENTS_SCHEMA)
    tables = {}
    for table, (model, key, schema) in RECORDS.items():
        cols = [getattr(model, _attr(c)) if c != "patient_id" else Patient.patient_id for c in schema]
        stmt = where(select(*cols).join(Patient, Patient.id == model.patient_pk), model).order_by(model.id)
        tables[table] = read_frame(session, stmt, schema)
    return Cohort(patients, tables["observations"], tables["doses"], tables["events"])
