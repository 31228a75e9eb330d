"""What the API routes and the commands do, as functions of a session and a viewer.

Every list and lookup goes through ``scope.scoped``: a user never gets a row of a site they do not
work at, and a lookup of one answers ``NotFound`` exactly as for a row that does not exist.
"""
from __future__ import annotations

import datetime as dt
import io
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ..errors import InputError, Problem
from ..io import ReadResult
from .admin import trial_by_code  # noqa: F401  (part of this module's interface)
from .assess import recompute, trial_protocol
from .audit import Change, append, now
from .db import work_dir
from .models import Alert, AuditEntry, CohortDecision, DoseAction, Patient, Site, Trial
from .records import ImportReport, import_cohort, load_cohort
from .scope import Conflict, NotFound, Refused, Viewer, require, scoped, scoped_to_user

if TYPE_CHECKING:
    from .signatures import SignatureRequest
    from ..protocols.model import Protocol

MAX_ZIP_MEMBERS = 50
MAX_UNZIPPED = 500 * 1024 * 1024
_ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}


# ------------------------------------------------------------------------------------------ imports

def _import_site(session: Session, viewer: Viewer, site: str | None) -> int | None:
    """The site new patients are enrolled at: the one given, else the viewer's only site."""
    if site is None:
        return next(iter(viewer.site_ids)) if viewer.site_ids and len(viewer.site_ids) == 1 else None
    row = session.scalar(select(Site).where(Site.code == site))
    if row is None or not viewer.can_see_site(row.id):
        raise NotFound(f"no site {site!r}")
    return row.id


def read_upload(session: Session, trial: Trial, viewer: Viewer, kind: str, data: bytes,
                name: str | None = None) -> ReadResult:
    """Read an upload (a FHIR Bundle, ``kind="fhir"``; a zip of SDTM datasets, ``"sdtm"``) with
    every problem collected. Needs only a reading session (the trial's enrolled patients the viewer
    may see): run it before taking the write lock, which then is held for the writing only."""
    require(viewer, "import")
    with tempfile.TemporaryDirectory(prefix="dosewatch-import-", dir=work_dir()) as tmp:
        if kind == "fhir":
            from ..io.fhir import read_fhir

            path = Path(tmp) / _safe_name(name, "bundle.json")
            path.write_bytes(data)
            # Records of patients enrolled before need no Patient resource (only those the user may see).
            enrolled = set(session.scalars(scoped(select(Patient.patient_id).where(
                Patient.trial_id == trial.id, Patient.deleted.is_(False)), Patient, viewer)))
            return read_fhir(path, collect=True, known_patients=enrolled)
        if kind == "sdtm":
            from ..io.sdtm import read_sdtm

            return read_sdtm(_unzip(data, Path(tmp), _safe_name(name, "upload.zip")), collect=True)
    raise Refused(f"unknown import kind {kind!r}")


def import_records(session: Session, trial: Trial, viewer: Viewer, kind: str, data: bytes | None, *, as_of: dt.date,
                   site: str | None = None, skip_invalid: bool = False, reason: str | None = None,
                   name: str | None = None, read: ReadResult | None = None) -> ImportReport:
    """Import a FHIR Bundle (``kind="fhir"``, JSON bytes) or a zip of SDTM datasets (``"sdtm"``),
    then reassess the patients whose data changed, in the caller's write transaction. ``read``: the
    upload already read by ``read_upload`` (outside the write lock); else it is read here.

    A patient enrolled between the read and this write is safe: the read only refuses more (a
    reference to a patient it did not know), and every patient is checked again here."""
    require(viewer, "import")
    site_id = _import_site(session, viewer, site)
    if read is None:
        read = read_upload(session, trial, viewer, kind, data or b"", name)
    report = import_cohort(session, trial, read, viewer, site_id=site_id, skip_invalid=skip_invalid, reason=reason)
    recompute(session, trial, report.changed_pks, as_of, known=report.new_patients)
    return report


def _safe_name(name: str | None, default: str) -> str:
    base = Path(name or default).name
    return base if base and base.replace(".", "").replace("-", "").replace("_", "").isalnum() else default


def _unzip(data: bytes, folder: Path, name: str) -> Path:
    """Extract the CSV / XPT datasets of a zip (flat: folders inside the zip are ignored), refusing
    zip bombs and anything that is not a dataset."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError):
        raise InputError([Problem(name, "(file)", "not a zip file")]) from None
    members = [m for m in archive.infolist() if not m.is_dir()]
    if len(members) > MAX_ZIP_MEMBERS:
        raise InputError([Problem(name, "(file)", f"more than {MAX_ZIP_MEMBERS} files in the zip")])
    if sum(m.file_size for m in members) > MAX_UNZIPPED:
        raise InputError([Problem(name, "(file)", "the zip unpacks to more than the size limit")])
    out = folder / "sdtm"
    out.mkdir()
    for m in members:
        base = Path(m.filename).name
        if Path(base).suffix.lower() not in (".csv", ".xpt") or base.startswith("."):
            continue
        where = f"{name} {m.filename}"
        if (out / base).exists():
            raise InputError([Problem(where, "(file)", f"two files named {base}")])
        if m.flag_bits & 0x1:
            raise InputError([Problem(where, "(file)", "encrypted in the zip: send it unencrypted")])
        if m.compress_type not in _ZIP_METHODS:
            raise InputError([Problem(where, "(file)", f"compressed with method {m.compress_type}, which cannot be "
                                      "read (use deflate, bzip2, lzma or none)")])
        try:
            with archive.open(m) as src:
                (out / base).write_bytes(src.read(MAX_UNZIPPED + 1))
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError, ValueError):
            # a damaged member (bad CRC, truncated or garbled data): nothing of the zip is read
            raise InputError([Problem(where, "(file)", "damaged in the zip: cannot be unpacked")]) from None
    return out


# ------------------------------------------------------------------------------------------ reads

def patient_by_id(session: Session, trial: Trial, viewer: Viewer, patient_id: str) -> Patient:
    stmt = select(Patient).where(Patient.trial_id == trial.id, Patient.patient_id == patient_id,
                                 Patient.deleted.is_(False))
    patient = session.scalar(scoped(stmt, Patient, viewer))
    if patient is None:
        raise NotFound(f"no patient {patient_id!r} in trial {trial.code}")
    return patient


def list_patients(session: Session, trial: Trial, viewer: Viewer) -> list[dict[str, Any]]:
    from .models import Assessment

    stmt = (select(Patient, Site.code, Assessment.data)
            .join(Site, Site.id == Patient.site_id)
            .outerjoin(Assessment, Assessment.patient_pk == Patient.id)
            .where(Patient.trial_id == trial.id, Patient.deleted.is_(False)).order_by(Patient.patient_id))
    out = []
    for p, site, data in session.execute(scoped(stmt, Patient, viewer)):
        out.append({"patient_id": p.patient_id, "site": site, "sex": p.sex, "birth_date": p.birth_date,
                    "deceased_date": p.deceased_date, "state": (data or {}).get("state"),
                    "study_day": (data or {}).get("study_day"), "as_of": (data or {}).get("as_of")})
    return out


def patient_assessment(session: Session, trial: Trial, viewer: Viewer, patient_id: str,
                       as_of: dt.date | None) -> dict[str, Any]:
    """The stored assessment, or (with ``as_of``) one computed now from the stored record: the same
    JSON as one patient of ``dosewatch check --protocol``."""
    from ..monitor import evaluate
    from .models import Assessment

    patient = patient_by_id(session, trial, viewer, patient_id)
    if as_of is None:
        row = session.scalar(select(Assessment).where(Assessment.patient_pk == patient.id))
        if row is not None:
            return row.data
    cohort = load_cohort(session, trial.id, viewer, [patient.id])
    return evaluate(cohort, trial_protocol(session, trial), as_of)[0].as_dict()


def _stored_assessment_stmt(trial_code: Any, patient_id: Any):
    from sqlalchemy import Text, cast

    from .models import Assessment

    return (select(cast(Assessment.data, Text)).join(Patient, Patient.id == Assessment.patient_pk)
            .join(Trial, Trial.id == Patient.trial_id)
            .where(Trial.code == trial_code, Patient.patient_id == patient_id, Patient.deleted.is_(False)))


def stored_assessment_text(session: Session, trial_code: str, viewer: Viewer, patient_id: str) -> str | None:
    """The stored assessment's JSON as stored, in one scoped query (the fast read: no decoding and
    encoding again); None when there is none to show (the caller then takes the slow path, which
    tells a missing trial or patient apart)."""
    return session.scalar(scoped(_stored_assessment_stmt(trial_code, patient_id), Patient, viewer))


_READ_SQL: dict[str, tuple[str, Any]] = {}  # dialect name -> (SQL, parameters from (trial, patient, user))


def stored_assessment_text_for_user(engine: Engine, trial_code: str, user_name: str, patient_id: str) -> str | None:
    """``stored_assessment_text`` for the active user ``user_name``, whose role and sites are looked
    up in the same query (``scope.scoped_to_user``): the API's read path, one query a request. None
    when there is nothing this user may see (unknown or inactive user, trial, patient, or another
    site's patient); the caller then takes the slow path, which answers 401 or 404.

    The statement is built and compiled once per dialect and run on a pooled driver connection:
    building, caching and compiling it again cost more than the query itself."""
    from sqlalchemy import bindparam

    dialect = engine.dialect
    if dialect.name not in _READ_SQL:
        stmt = scoped_to_user(_stored_assessment_stmt(bindparam("trial"), bindparam("patient")), Patient,
                              bindparam("user"))
        state = stmt.compile(dialect=dialect).construct_expanded_state({"trial": "", "patient": "", "user": ""})
        fixed, order = dict(state.parameters), state.positiontup
        if order:  # positional (SQLite: ?)
            params = lambda values: [values.get(n, fixed[n]) for n in order]  # noqa: E731
        else:  # named (psycopg: %(name)s)
            params = lambda values: {**fixed, **values}  # noqa: E731
        _READ_SQL[dialect.name] = (state.statement, params)
    sql, params = _READ_SQL[dialect.name]
    conn = engine.raw_connection()
    # One statement needs no transaction: on PostgreSQL, autocommit spares the BEGIN and the
    # ROLLBACK (two round trips); SQLite's driver connections are in autocommit mode already.
    driver = conn.driver_connection if dialect.name == "postgresql" else None
    try:
        if driver is not None:
            driver.autocommit = True
        cur = conn.cursor()
        cur.execute(sql, params({"trial": trial_code, "patient": patient_id, "user": user_name}))
        row = cur.fetchone()
        cur.close()
    finally:
        try:
            if driver is not None:
                driver.autocommit = False
        finally:
            conn.close()  # back to the pool
    return row[0] if row else None


def _alert_dict(a: Alert, patient_id: str) -> dict[str, Any]:
    return {"id": a.id, "patient_id": patient_id, "status": a.status, "severity": a.severity, "rule": a.rule,
            "date": a.date, "message": a.message, "evidence": a.data.get("evidence", []),
            "study_day": a.data.get("study_day"), "protocol_version": a.protocol_version,
            "ack_by": a.ack_by, "ack_at": a.ack_at, "ack_note": a.ack_note}


def list_alerts(session: Session, trial: Trial, viewer: Viewer, status: str | None = None,
                patient_id: str | None = None) -> list[dict[str, Any]]:
    stmt = (select(Alert, Patient.patient_id).join(Patient, Patient.id == Alert.patient_pk)
            .where(Alert.trial_id == trial.id).order_by(Alert.date, Alert.id))
    if status:
        stmt = stmt.where(Alert.status == status)
    if patient_id:
        stmt = stmt.where(Patient.patient_id == patient_id)
    return [_alert_dict(a, pid) for a, pid in session.execute(scoped(stmt, Alert, viewer))]


def _dose_action_dict(d: DoseAction, patient_id: str) -> dict[str, Any]:
    return {"id": d.id, "patient_id": patient_id, "status": d.status, **d.data, "protocol_version": d.protocol_version,
            "decided_by": d.decided_by, "decided_at": d.decided_at, "decision_reason": d.reason}


def list_dose_actions(session: Session, trial: Trial, viewer: Viewer, status: str | None = None) -> list[dict[str, Any]]:
    stmt = (select(DoseAction, Patient.patient_id).join(Patient, Patient.id == DoseAction.patient_pk)
            .where(DoseAction.trial_id == trial.id).order_by(DoseAction.date, DoseAction.id))
    if status:
        stmt = stmt.where(DoseAction.status == status)
    from .signatures import signatures_of

    out = [_dose_action_dict(d, pid) for d, pid in session.execute(scoped(stmt, DoseAction, viewer))]
    sigs = signatures_of(session, "dose_action", [d["id"] for d in out if d["status"] in ("accepted", "overridden")])
    for d in out:
        d["signatures"] = sigs.get(d["id"], [])
    return out


def audit_entries(session: Session, viewer: Viewer, patient_id: str | None = None, trial: Trial | None = None,
                  limit: int = 1000) -> list[dict[str, Any]]:
    """Audit entries, newest first. Site-scoped users see the entries of their sites' patients only."""
    import json

    stmt = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if patient_id is not None:
        stmt = stmt.where(AuditEntry.patient_id == patient_id)
    if trial is not None:
        stmt = stmt.where(AuditEntry.trial_id == trial.id)
    out = []
    for e in session.scalars(scoped(stmt, AuditEntry, viewer)):
        out.append({"id": e.id, "at": e.at, "actor": e.actor, "action": e.action, "entity": e.entity,
                    "entity_id": e.entity_id, "patient_id": e.patient_id,
                    "before": json.loads(e.before) if e.before else None,
                    "after": json.loads(e.after) if e.after else None, "reason": e.reason, "hash": e.hash})
    return out


# ------------------------------------------------------------------------------------------ decisions

def acknowledge(session: Session, viewer: Viewer, alert_id: int, note: str | None) -> dict[str, Any]:
    require(viewer, "acknowledge")
    row = session.execute(scoped(select(Alert, Patient.patient_id).join(Patient, Patient.id == Alert.patient_pk)
                                 .where(Alert.id == alert_id), Alert, viewer)).first()
    if row is None:
        raise NotFound(f"no alert {alert_id}")
    alert, pid = row
    if alert.status != "open":
        raise Refused(f"alert {alert_id} is {alert.status}, not open")
    alert.status, alert.ack_by, alert.ack_at, alert.ack_note = "acknowledged", viewer.name, now(), note
    append(session, [Change(viewer.name, "acknowledge", "alert", str(alert.id), {"status": "open"},
                            {"status": "acknowledged", "note": note}, note, alert.trial_id, alert.site_id, pid)])
    return _alert_dict(alert, pid)


def decide_dose_action(session: Session, viewer: Viewer, action_id: int, decision: str,
                       reason: str | None, signature: "SignatureRequest | None" = None) -> dict[str, Any]:
    """Accept or override a proposed dose action; an override needs the reason. With ``signature``
    (required when the trial requires signatures) the decision is signed in the same transaction."""
    from .signatures import check_request, sign, signatures_of

    require(viewer, "decide_dose")
    action, pid = dose_action_row(session, viewer, action_id)
    if decision not in ("accepted", "overridden"):
        raise Refused("decision is accepted or overridden")
    if decision == "overridden" and not (reason and reason.strip()):
        raise Refused("an override needs the reason")
    if action.status != "proposed":
        raise Refused(f"dose action {action_id} is {action.status}, not proposed")
    _signature_needed(session, action.trial_id, signature)
    if signature is not None:
        check_request(signature, "dose_action", decision)
    action.status, action.decided_by, action.decided_at, action.reason = decision, viewer.name, now(), reason
    append(session, [Change(viewer.name, "decide", "dose_action", str(action.id), {"status": "proposed"},
                            {"status": decision, "action": action.action, "date": action.date}, reason,
                            action.trial_id, action.site_id, pid)])
    if signature is not None:
        session.flush()
        sign(session, viewer, "dose_action", action.id, signature, trial_id=action.trial_id, site_id=action.site_id,
             patient_id=pid, decision=decision)
    out = _dose_action_dict(action, pid)
    out["signatures"] = signatures_of(session, "dose_action", [action.id]).get(action.id, [])
    return out


def dose_action_row(session: Session, viewer: Viewer, action_id: int) -> tuple[DoseAction, str]:
    """(dose action, patient id) at the viewer's sites; NotFound otherwise."""
    row = session.execute(scoped(select(DoseAction, Patient.patient_id)
                                 .join(Patient, Patient.id == DoseAction.patient_pk)
                                 .where(DoseAction.id == action_id), DoseAction, viewer)).first()
    if row is None:
        raise NotFound(f"no dose action {action_id}")
    return row[0], row[1]


def dose_action(session: Session, viewer: Viewer, action_id: int) -> dict[str, Any]:
    """One dose action at the viewer's sites, with its signatures."""
    from .signatures import signatures_of

    out = _dose_action_dict(*dose_action_row(session, viewer, action_id))
    out["signatures"] = signatures_of(session, "dose_action", [action_id]).get(action_id, [])
    return out


def _signature_needed(session: Session, trial_id: int, signature: "SignatureRequest | None") -> None:
    trial = session.get(Trial, trial_id)
    if signature is None and trial is not None and trial.signatures_required:
        raise Refused(f"trial {trial.code} requires an electronic signature on every decision: enter your "
                      "password again and the meaning of the signature")


def delete_record(session: Session, trial: Trial, viewer: Viewer, table: str, record_id: str, reason: str,
                  as_of: dt.date) -> dict[str, Any]:
    """Mark an observation, dose or event deleted, with the reason (nothing clinical is removed);
    audited, then the patient is reassessed without it. Importing it again leaves it deleted."""
    from .records import RECORDS

    require(viewer, "import")
    if table not in RECORDS:
        raise Refused(f"unknown record kind {table!r}: use {', '.join(RECORDS)}")
    if not (reason and reason.strip()):
        raise Refused("give the reason for the deletion (?reason=...)")
    model, key, _ = RECORDS[table]
    row = session.execute(scoped(select(model, Patient.patient_id).join(Patient, Patient.id == model.patient_pk)
                                 .where(model.trial_id == trial.id, getattr(model, key) == record_id),
                                 model, viewer)).first()
    if row is None:
        raise NotFound(f"no {table[:-1]} {record_id!r} in trial {trial.code}")
    record, pid = row
    if record.deleted:
        raise Refused(f"{table[:-1]} {record_id} is already deleted")
    record.deleted, record.deleted_reason = True, reason
    append(session, [Change(viewer.name, "delete", table[:-1], record_id, {"deleted": False}, {"deleted": True},
                            reason, trial.id, record.site_id, pid)])
    recompute(session, trial, [record.patient_pk], as_of)
    return {"id": record_id, "kind": table[:-1], "patient_id": pid, "deleted": True, "reason": reason}


@dataclass(frozen=True)
class StoredCohort:
    """The patients a design counts, from the stored assessments: one row per patient who started
    the study drug (in the order of day 1), the monitor's DLT judgement of each (status, days left,
    the DLT event and date) and the dates the assessments were made."""

    rows: list  # escalation.cohort_cli.CohortRow
    dlt: dict[str, dict[str, Any]]
    as_of: list[dt.date]


def stored_cohort(session: Session, trial: Trial, viewer: Viewer, protocol: Protocol) -> StoredCohort:
    """The cohort as ``escalation.cohort_cli.cohort_rows`` builds it, read from the stored
    assessments (made at every change and daily) instead of re-running the monitor on the trial:
    the level of each patient's first dose of the study drug, DLT status and follow-up, as the
    trial's ``protocol`` defines them."""
    from ..escalation.cohort_cli import CohortRow, level_of_dose
    from .models import Assessment, Dose

    stmt = (select(Patient.id, Patient.patient_id, Assessment.data["day1"], Assessment.data["dlt"], Assessment.as_of)
            .join(Assessment, Assessment.patient_pk == Patient.id)
            .where(Patient.trial_id == trial.id, Patient.deleted.is_(False)))
    assessed = [(pk, pid, dt.date.fromisoformat(day1), dlt, as_of)
                for pk, pid, day1, dlt, as_of in session.execute(scoped(stmt, Patient, viewer)) if day1 and dlt]
    # The amount of each patient's first dose: one query on the day-1 dates, not one a patient.
    day1 = {pk: d for pk, _, d, _, _ in assessed}
    first: dict[int, float] = {}
    if day1:
        doses = (select(Dose.patient_pk, Dose.date, Dose.dose)
                 .where(Dose.trial_id == trial.id, Dose.drug == protocol.study_drug.drug, Dose.status == "completed",
                        Dose.deleted.is_(False), Dose.dose.is_not(None), Dose.date.in_(sorted(set(day1.values()))))
                 .order_by(Dose.id))
        for pk, date, dose in session.execute(scoped(doses, Dose, viewer)):
            if day1.get(pk) == date:
                first.setdefault(pk, float(dose))
    rows, dlts, dates = [], {}, set()
    window = protocol.dlt.window_days
    for pk, pid, d1, dlt, assessed_on in assessed:
        if pk not in first:
            continue
        level = level_of_dose(protocol.study_drug.levels, first[pk])
        if level is None:
            raise ValueError(f"patient {pid}: first dose {first[pk]:g} {protocol.study_drug.unit} is not "
                             f"one of the levels of protocol {protocol.id}")
        followup = float(window if dlt["status"] != "in window" else dlt["followup_days"])
        rows.append(CohortRow(pid, d1, level, 1 if dlt["status"] == "DLT" else 0, followup, dlt["status"]))
        dlts[pid] = dlt
        dates.add(assessed_on)
    rows.sort(key=lambda r: (r.day1, r.patient_id))
    return StoredCohort(rows, dlts, sorted(dates))


def cohort_next(session: Session, trial: Trial, viewer: Viewer, design: str, as_of: dt.date | None,
                target: float | None = None, skeleton: list[float] | None = None) -> dict[str, Any]:
    """The design's next dose from the patients the viewer may see (``scope`` says which): from the
    stored assessments when ``as_of`` is None (what the dashboard shows), else from the monitor run
    on the records as of that date. CRM and TITE-CRM need a ``skeleton``."""
    from ..escalation.cohort_cli import cohort_rows, fit_rows

    protocol = trial_protocol(session, trial)
    if as_of is None:
        rows = stored_cohort(session, trial, viewer, protocol).rows
    else:
        rows = cohort_rows(load_cohort(session, trial.id, viewer), protocol, as_of)
    rec, used, left = fit_rows(rows, protocol, design, target=target, skeleton=skeleton)
    scope = "all sites" if viewer.all_sites else "your sites only"
    return {**rec.to_dict(), "protocol": trial.protocol_id, "protocol_version": trial.protocol_version,
            "design": design, "scope": scope, "skeleton": skeleton,
            "cohort": [{"patient_id": r.patient_id, "dose": r.dose, "dlt": r.dlt, "followup": r.followup,
                        "status": r.status} for r in used],
            "not_counted": [r.patient_id for r in left]}


def decide_cohort(session: Session, trial: Trial, viewer: Viewer, design: str, decision: str, dose_level: int | None,
                  reason: str | None, as_of: dt.date | None, target: float | None = None,
                  skeleton: list[float] | None = None, signature: "SignatureRequest | None" = None,
                  supersedes: int | None = None) -> dict[str, Any]:
    """Record the decision on the next cohort beside the design's recommendation (``cohort_next``
    with the same arguments), audited; signed with ``signature`` (required when the trial requires
    signatures). ``supersedes`` names an earlier decision this one replaces (with the reason): a
    decision is never changed."""
    from .signatures import check_request, sign, signatures_of

    require(viewer, "decide_cohort")
    if decision not in ("accepted", "overridden"):
        raise Refused("decision is accepted or overridden")
    _signature_needed(session, trial.id, signature)
    if signature is not None:
        check_request(signature, "cohort_decision", decision)
    if supersedes is not None:
        old = session.get(CohortDecision, supersedes)
        if old is None or old.trial_id != trial.id:
            raise NotFound(f"no cohort decision {supersedes} in trial {trial.code}")
        later = session.scalar(select(CohortDecision.id).where(CohortDecision.supersedes == supersedes))
        if later is not None:
            raise Refused(f"cohort decision {supersedes} was already superseded by decision {later}")
        if not (reason and reason.strip()):
            raise Refused("a decision that supersedes another needs the reason")
    rec = cohort_next(session, trial, viewer, design, as_of, target, skeleton)
    if decision == "overridden" and not (reason and reason.strip()):
        raise Refused("an override needs the reason")
    level = rec["next_dose"] if decision == "accepted" else dose_level
    if supersedes is None:
        _refuse_a_repeat(session, trial, design, decision, level, _jsonable(rec))
    row = CohortDecision(trial_id=trial.id, design=design, recommendation=_jsonable(rec), decision=decision,
                         dose_level=level, reason=reason, decided_by=viewer.name, decided_at=now(),
                         supersedes=supersedes)
    session.add(row)
    session.flush()
    append(session, [Change(viewer.name, "decide", "cohort_decision", str(row.id), None,
                            {"decision": decision, "dose_level": level, "recommended": rec["next_dose"],
                             "supersedes": supersedes}, reason, trial.id)])
    if signature is not None:
        sign(session, viewer, "cohort_decision", row.id, signature, trial_id=trial.id, decision=decision)
    return {"id": row.id, "decision": decision, "dose_level": level, "recommendation": row.recommendation,
            "supersedes": supersedes, "signatures": signatures_of(session, "cohort_decision", [row.id]).get(row.id, [])}


def _refuse_a_repeat(session: Session, trial: Trial, design: str, decision: str, level: int | None,
                     recommendation: dict[str, Any]) -> None:
    """A second click, a resent form or a retried request: the same decision on the same
    recommendation (the same records) as one still in force is not recorded again."""
    replaced = select(CohortDecision.supersedes).where(CohortDecision.supersedes.is_not(None))
    same = session.scalars(select(CohortDecision).where(
        CohortDecision.trial_id == trial.id, CohortDecision.design == design, CohortDecision.decision == decision,
        CohortDecision.id.not_in(replaced)).order_by(CohortDecision.id.desc())).all()
    for old in same:
        if old.dose_level == level and old.recommendation == recommendation:
            raise Conflict(f"this decision is already recorded (#{old.id}, {old.decided_at[:16]} by {old.decided_by}) "
                           "on the same recommendation: nothing was saved; to change it, record a decision that "
                           "replaces it, with the reason")


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))


# ------------------------------------------------------------------------------------------ export

def export(session: Session, trial: Trial, viewer: Viewer, fmt: str) -> tuple[bytes, str, str]:
    """(content, media type, file name) of the viewer's part of the trial as FHIR, SDTM (zip), ADLB or
    a submission package (zip: Dataset-JSON v1.1, Define-XML 2.1, XPT)."""
    cohort = load_cohort(session, trial.id, viewer)
    protocol = trial_protocol(session, trial)
    day1 = cohort.first_dose_dates(protocol.study_drug.drug)
    if fmt == "fhir":
        import json

        from ..io.fhir_write import cohort_to_bundle

        return json.dumps(cohort_to_bundle(cohort), indent=1).encode(), "application/fhir+json", f"{trial.code}.json"
    with tempfile.TemporaryDirectory(prefix="dosewatch-export-") as tmp:
        if fmt == "sdtm":
            from ..io.sdtm_write import write_sdtm

            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
                for path in write_sdtm(cohort, Path(tmp), studyid=trial.code):
                    zf.write(path, path.name)
            return buf.getvalue(), "application/zip", f"{trial.code}-sdtm.zip"
        if fmt == "submission":
            from ..submission import build_package, write_package

            package = build_package(cohort, study_drug=protocol.study_drug.drug, criteria=protocol.surveillance.ctcae,
                                    tls_criteria=protocol.surveillance.tls, studyid=trial.code)
            files = write_package(package, Path(tmp), study_name=trial.code, protocol_name=protocol.id,
                                  description=f"{trial.code}: {protocol.title}")
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
                for path in files:
                    zf.write(path, path.name)
            return buf.getvalue(), "application/zip", f"{trial.code}-submission.zip"
        if fmt == "adlb":
            from ..export import write_adlb

            out = Path(tmp) / "adlb.csv"
            write_adlb(cohort, day1, out, "ctcae-5.0")
            return out.read_bytes(), "text/csv", f"{trial.code}-adlb.csv"
    raise Refused(f"unknown export format {fmt!r}: use fhir, sdtm, adlb or submission")
