"""Assessments in the database: the monitor (``dosewatch.monitor.evaluate``) run on stored records.

After an import only the patients whose data changed are recomputed; ``recompute_all`` is the
daily run, so that an overdue lab or a missed dose raises its alert without new data. Alerts and
dose actions are matched across runs by a key (rule, date, message / action), so an
acknowledgement or a decision stays with its alert or action; one that the new assessment no
longer gives is marked withdrawn, never deleted.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from ..monitor import evaluate
from ..protocols.model import Protocol
from ..record import Cohort
from .audit import now
from .models import Alert, Assessment, DoseAction, Patient, ProtocolVersion, Trial
from .records import load_cohort
from .scope import SYSTEM


def trial_protocol(session: Session, trial: Trial) -> Protocol:
    """The protocol version in force for ``trial``."""
    row = session.scalar(select(ProtocolVersion).where(ProtocolVersion.trial_id == trial.id,
                                                       ProtocolVersion.version == trial.protocol_version))
    return Protocol.model_validate(row.definition)


def _key(*parts: Any) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:40]


def recompute(session: Session, trial: Trial, patient_pks: list[int], as_of: dt.date,
              known: Cohort | None = None) -> int:
    """Assess these patients as of ``as_of`` and store the assessments, alerts and dose actions.
    ``known`` may hold the complete record of some of them (those an import just enrolled), which
    then need not be read back."""
    if not patient_pks:
        return 0
    protocol = trial_protocol(session, trial)
    patients = {p.patient_id: p for p in session.scalars(select(Patient).where(Patient.id.in_(patient_pks)))}
    given = set(known.patients["patient_id"].to_list()) if known is not None else set()
    load = [p.id for pid, p in patients.items() if pid not in given]
    parts = [load_cohort(session, trial.id, SYSTEM, load)] if load else []
    if given:
        parts.append(known)
    store_assessments(session, trial, protocol, patients, evaluate(Cohort.concat(parts), protocol, as_of), as_of)
    return len(patients)


def store_assessments(session: Session, trial: Trial, protocol: Protocol, patients: dict[str, Patient],
                      assessments: list, as_of: dt.date, computed_before: str | None = None) -> int:
    """Store the monitor's assessments of ``patients`` (by patient id) with their alerts and dose
    actions. With ``computed_before``, a patient whose stored assessment is newer (an import
    reassessed it meanwhile, from newer records) keeps it. Returns how many were stored."""
    stamp = now()
    pks = [p.id for p in patients.values()]
    stored = {r.patient_pk: r for r in session.scalars(select(Assessment).where(Assessment.patient_pk.in_(pks)))}
    alerts, actions = _by_patient(session, Alert, pks), _by_patient(session, DoseAction, pks)
    n = 0
    for a in assessments:
        p = patients[a.patient_id]
        row = stored.get(p.id)
        if computed_before is not None and row is not None and (row.computed_at or "") > computed_before:
            continue  # ISO 8601 UTC stamps (``audit.now``) compare as text
        data = a.as_dict()
        if row is None:
            row = Assessment(trial_id=trial.id, site_id=p.site_id, patient_pk=p.id)
            session.add(row)
        row.as_of, row.protocol_version, row.data, row.computed_at = as_of, protocol.version, data, stamp
        _sync(session, Alert, p, trial, protocol.version, alerts.get(p.id, {}),
              {_key(x["rule"], x["date"], x["message"]): x for x in data["alerts"] if x["severity"] != "info"},
              live="open", withdrawn_from=("open",))
        _sync(session, DoseAction, p, trial, protocol.version, actions.get(p.id, {}),
              {_key(x["rule"], x["date"], x["drug"], x["action"], x["level"]): x for x in data["dose_actions"]},
              live="proposed", withdrawn_from=("proposed",))
        n += 1
    session.flush()
    return n


def _by_patient(session: Session, model, pks: list[int]) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for start in range(0, len(pks), 1000):
        for r in session.scalars(select(model).where(model.patient_pk.in_(pks[start:start + 1000]))):
            out.setdefault(r.patient_pk, {})[r.key] = r
    return out


def _sync(session: Session, model, patient: Patient, trial: Trial, version: int, stored: dict[str, Any],
          current: dict[str, dict], live: str, withdrawn_from: tuple[str, ...]) -> None:
    new = []
    for key, item in current.items():
        row = stored.get(key)
        if row is None:
            extra = ({"severity": item["severity"], "rule": item["rule"], "message": item["message"]}
                     if model is Alert else {"action": item["action"]})
            new.append({"trial_id": trial.id, "site_id": patient.site_id, "patient_pk": patient.id, "key": key,
                        "date": dt.date.fromisoformat(item["date"]), "data": item, "protocol_version": version,
                        "status": live, **extra})
        elif row.status == "withdrawn":
            row.status = live
    for key, row in stored.items():
        if key not in current and row.status in withdrawn_from:
            row.status = "withdrawn"
    if new:  # Core executemany: thousands of alerts after a large import
        session.execute(insert(model.__table__), new)


def recompute_all(session: Session, trial: Trial, as_of: dt.date) -> int:
    """The daily run: every patient of the trial."""
    pks = list(session.scalars(select(Patient.id).where(Patient.trial_id == trial.id, Patient.deleted.is_(False))))
    return recompute(session, trial, pks, as_of)


BATCH = 100  # patients a write transaction of the daily run stores: the lock is held for that only


def reassess_all(store, batch: int = BATCH) -> dict[str, int]:
    """The daily run on every trial as of ``store.today()``: patients are read and assessed outside
    the write lock, ``batch`` at a time, and each batch stored in its own short write transaction,
    so that imports and acknowledgements never wait behind a whole trial's reassessment."""
    with store.reading() as session:
        codes = list(session.scalars(select(Trial.code).order_by(Trial.code)))
    done = {}
    for code in codes:
        with store.reading() as session:
            trial = session.scalar(select(Trial).where(Trial.code == code))
            pks = list(session.scalars(select(Patient.id).where(Patient.trial_id == trial.id,
                                                                Patient.deleted.is_(False)).order_by(Patient.id)))
        done[code] = 0
        for start in range(0, len(pks), batch):
            chunk = pks[start:start + batch]
            began = now()
            with store.reading() as session:
                protocol = trial_protocol(session, trial)
                patients = {p.patient_id: p for p in session.scalars(select(Patient).where(Patient.id.in_(chunk)))}
                cohort = load_cohort(session, trial.id, SYSTEM, chunk)
            assessments = evaluate(cohort, protocol, store.today())
            with store.writing() as session:
                done[code] += store_assessments(session, trial, protocol, patients, assessments, store.today(),
                                                computed_before=began)
    return done
