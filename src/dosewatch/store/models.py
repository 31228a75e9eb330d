"""The trial server's tables (SQLAlchemy 2 typed declarative models).

Clinical records keep the canonical record's columns (``dosewatch.record``): converted value and
unit beside the original ones. Every patient-linked row carries its ``site_id`` so that site
scoping is one filter on one column (``store.scope.scoped``). Nothing clinical is deleted: a row
is marked ``deleted`` with a reason. The audit table is append-only and hash-chained
(``store.audit``).
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ROLES = ("admin", "investigator", "nurse", "statistician", "monitor")


class Base(DeclarativeBase):
    pass


class Site(Base):
    __tablename__ = "sites"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20))  # one of ROLES
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class UserSite(Base):
    """The sites an investigator or nurse works at (other roles see every site)."""

    __tablename__ = "user_sites"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), primary_key=True)


class Trial(Base):
    __tablename__ = "trials"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    protocol_id: Mapped[str] = mapped_column(String(200))
    protocol_version: Mapped[int] = mapped_column(Integer)  # the version in force
    # decisions on cohorts and dose actions need the decider's electronic signature (store.signatures)
    signatures_required: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")


class ProtocolVersion(Base):
    """Every version of a trial's protocol, as the validated protocol's JSON."""

    __tablename__ = "protocol_versions"
    __table_args__ = (UniqueConstraint("trial_id", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id"))
    version: Mapped[int] = mapped_column(Integer)
    protocol_id: Mapped[str] = mapped_column(String(200))
    definition: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[str] = mapped_column(String(40))


class Patient(Base):
    __tablename__ = "patients"
    # (id, trial_id, site_id) is unique because id is; the index lets a record's trial and site be
    # checked against its patient's by one foreign key (see ``_record_args``).
    __table_args__ = (UniqueConstraint("trial_id", "patient_id"),
                      Index("uq_patients_id_trial_site", "id", "trial_id", "site_id", unique=True))
    id: Mapped[int] = mapped_column(primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id"))
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    patient_id: Mapped[str] = mapped_column(String(200))
    sex: Mapped[str | None] = mapped_column(String(1))
    birth_date: Mapped[dt.date | None] = mapped_column(Date)
    deceased_date: Mapped[dt.date | None] = mapped_column(Date)
    source: Mapped[str | None] = mapped_column(Text)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    study_id: Mapped[str | None] = mapped_column(String(200))
    age: Mapped[float | None] = mapped_column(Float)  # as the source states it, when there is no birth date
    age_date: Mapped[dt.date | None] = mapped_column(Date)


def _record_args(table: str, key: str) -> tuple:
    """A record's id is unique in its trial; its patient, trial and site are its patient's (one
    composite foreign key: one check a row, where three single ones made PostgreSQL's bulk inserts
    three times slower, and a record can no longer name another site than its patient's)."""
    return (UniqueConstraint("trial_id", key),
            ForeignKeyConstraint(["patient_pk", "trial_id", "site_id"],
                                 ["patients.id", "patients.trial_id", "patients.site_id"],
                                 name=f"fk_{table}_patient"))


class _Record:
    """Columns shared by observations, doses and events."""

    id: Mapped[int] = mapped_column(primary_key=True)
    trial_id: Mapped[int] = mapped_column(Integer)
    site_id: Mapped[int] = mapped_column(Integer)  # scoping; read by patient_pk or id
    patient_pk: Mapped[int] = mapped_column(Integer, index=True)
    time: Mapped[dt.datetime | None] = mapped_column(DateTime)
    date: Mapped[dt.date | None] = mapped_column(Date)
    time_known: Mapped[bool | None] = mapped_column(Boolean)
    tz_offset_min: Mapped[int | None] = mapped_column(Integer)  # UTC offset as written, not applied
    source: Mapped[str | None] = mapped_column(Text)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted_reason: Mapped[str | None] = mapped_column(Text)  # required when deleted (audited too)


class Observation(_Record, Base):
    __tablename__ = "observations"
    __table_args__ = _record_args("observations", "obs_id")
    obs_id: Mapped[str] = mapped_column(String(200))
    code: Mapped[str | None] = mapped_column(String(40))
    value: Mapped[float | None] = mapped_column(Float)
    unit: Mapped[str | None] = mapped_column(String(40))
    orig_value: Mapped[float | None] = mapped_column(Float)
    orig_unit: Mapped[str | None] = mapped_column(String(80))
    ref_low: Mapped[float | None] = mapped_column(Float)
    ref_high: Mapped[float | None] = mapped_column(Float)
    body_site: Mapped[str | None] = mapped_column(String(200))  # the record's "site" (lymph-node region)
    comparator: Mapped[str | None] = mapped_column(String(2))
    qualifiers: Mapped[str | None] = mapped_column(Text)
    ref_source: Mapped[str | None] = mapped_column(Text)


class Dose(_Record, Base):
    __tablename__ = "doses"
    __table_args__ = _record_args("doses", "dose_id")
    dose_id: Mapped[str] = mapped_column(String(200))
    drug: Mapped[str | None] = mapped_column(String(100))
    rxnorm: Mapped[str | None] = mapped_column(String(40))
    dose: Mapped[float | None] = mapped_column(Float)
    dose_unit: Mapped[str | None] = mapped_column(String(40))
    route: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str | None] = mapped_column(String(40))


class Event(_Record, Base):
    __tablename__ = "events"
    __table_args__ = _record_args("events", "event_id")
    event_id: Mapped[str] = mapped_column(String(200))
    code: Mapped[str | None] = mapped_column(String(40))
    term: Mapped[str | None] = mapped_column(Text)
    end_date: Mapped[dt.date | None] = mapped_column(Date)
    grade: Mapped[int | None] = mapped_column(Integer)
    codes: Mapped[str | None] = mapped_column(Text)
    grade_source: Mapped[str | None] = mapped_column(String(200))
    imputed: Mapped[str | None] = mapped_column(Text)


class Assessment(Base):
    """The latest assessment of a patient: the monitor's JSON and the protocol version it used."""

    __tablename__ = "assessments"
    id: Mapped[int] = mapped_column(primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id"))
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    patient_pk: Mapped[int] = mapped_column(ForeignKey("patients.id"), unique=True)
    as_of: Mapped[dt.date] = mapped_column(Date)
    protocol_version: Mapped[int] = mapped_column(Integer)
    data: Mapped[dict] = mapped_column(JSON)
    computed_at: Mapped[str] = mapped_column(String(40))


class Alert(Base):
    """An alert the monitor raised (info alerts are not stored). ``key`` identifies it across
    recomputations so that an acknowledgement sticks."""

    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("patient_pk", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id"))
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    patient_pk: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    key: Mapped[str] = mapped_column(String(64))
    date: Mapped[dt.date] = mapped_column(Date)
    severity: Mapped[str] = mapped_column(String(20))
    rule: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict] = mapped_column(JSON)  # the alert as in the assessment JSON
    protocol_version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="open")  # open | acknowledged | withdrawn
    ack_by: Mapped[str | None] = mapped_column(String(64))
    ack_at: Mapped[str | None] = mapped_column(String(40))
    ack_note: Mapped[str | None] = mapped_column(Text)


class DoseAction(Base):
    """A dose action the protocol's rules gave, and the investigator's decision on it."""

    __tablename__ = "dose_actions"
    __table_args__ = (UniqueConstraint("patient_pk", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id"))
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    patient_pk: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    key: Mapped[str] = mapped_column(String(64))
    date: Mapped[dt.date] = mapped_column(Date)
    action: Mapped[str] = mapped_column(String(40))
    data: Mapped[dict] = mapped_column(JSON)
    protocol_version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="proposed")  # proposed | accepted | overridden | withdrawn
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[str | None] = mapped_column(String(40))
    reason: Mapped[str | None] = mapped_column(Text)


class CohortDecision(Base):
    """A statistician's decision on the next cohort, with the design's recommendation beside it."""

    __tablename__ = "cohort_decisions"
    id: Mapped[int] = mapped_column(primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id"))
    design: Mapped[str] = mapped_column(String(40))
    recommendation: Mapped[dict] = mapped_column(JSON)
    decision: Mapped[str] = mapped_column(String(20))  # accepted | overridden
    dose_level: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[str] = mapped_column(String(64))
    decided_at: Mapped[str] = mapped_column(String(40))
    # the decision this one replaces (a decision is never changed, only superseded; store.signatures)
    supersedes: Mapped[int | None] = mapped_column(ForeignKey("cohort_decisions.id"))


class Signature(Base):
    """An electronic signature on a decision (21 CFR 11.50 / 11.70 style): who (name and role, the
    password re-entered), when, what it means, and the SHA-256 of the signed record's content, which
    ``store.audit.verify`` recomputes; the same fields are in the signature's audit entry."""

    __tablename__ = "signatures"
    id: Mapped[int] = mapped_column(primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id"), index=True)
    site_id: Mapped[int | None] = mapped_column(Integer)  # the patient's site for a dose action
    entity: Mapped[str] = mapped_column(String(40))  # cohort_decision | dose_action
    entity_id: Mapped[int] = mapped_column(Integer)
    signer: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(20))
    meaning: Mapped[str] = mapped_column(String(20))  # reviewed | approved | overridden
    reason: Mapped[str | None] = mapped_column(Text)
    signed_at: Mapped[str] = mapped_column(String(40))
    record_hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (Index("ix_signatures_entity", "entity", "entity_id"),)


class AuditEntry(Base):
    """Append-only. ``hash`` is the HMAC-SHA256 (the server's audit key, kept outside the database: ``audit.audit_key``)
    of this entry's fields and ``prev_hash`` (the previous entry's hash); ids are given in order by
    the writer holding the chain's lock."""

    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(40))  # UTC ISO 8601, as hashed
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(40))  # create | update | delete | acknowledge | decide | ...
    entity: Mapped[str] = mapped_column(String(40))  # table name
    entity_id: Mapped[str] = mapped_column(String(200))
    trial_id: Mapped[int | None] = mapped_column(Integer, index=True)
    site_id: Mapped[int | None] = mapped_column(Integer, index=True)
    patient_id: Mapped[str | None] = mapped_column(String(200), index=True)
    before: Mapped[str | None] = mapped_column(Text)  # canonical JSON, as hashed
    after: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """One row: the last entry's id and hash. Every writer locks it first, so the chain has one
    writer at a time, and removing the newest entries is detected too."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(primary_key=True)
    last_id: Mapped[int] = mapped_column(Integer)
    last_hash: Mapped[str] = mapped_column(String(64))


class NotificationSetting(Base):
    """How one user is told of alerts (``store.notify``): critical alerts at once, urgent and
    warning alerts in a daily digest, by e-mail and/or webhook. Only alerts raised after the
    settings were saved are sent (``after_alert``: the highest alert id then)."""

    __tablename__ = "notification_settings"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(254))
    webhook_url: Mapped[str | None] = mapped_column(String(2000))
    critical_now: Mapped[bool] = mapped_column(Boolean, default=True)
    digest_hour: Mapped[int | None] = mapped_column(Integer)  # local hour of the daily digest; None: no digest
    after_alert: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[str] = mapped_column(String(40))


class UserPreference(Base):
    """How a user reads the pages: lab values as reported, in SI units, or in US conventional units."""

    __tablename__ = "user_preferences"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    units: Mapped[str] = mapped_column(String(12), default="reported")  # reported | si | conventional


class Delivery(Base):
    """One alert to one person by one channel, sent once: the unique key makes every enqueuer
    (several workers, a restart) agree on one row, and a sender claims a row before sending it."""

    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("alert_id", "user_id", "channel"),
                      Index("ix_deliveries_due", "status", "due_at"))
    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    channel: Mapped[str] = mapped_column(String(10))  # email | webhook
    kind: Mapped[str] = mapped_column(String(10))  # now | digest
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending | sending | sent | failed
    due_at: Mapped[str] = mapped_column(String(40))  # UTC ISO time: send at or after it
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[str | None] = mapped_column(String(40))  # a claim by a sender, until then
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[str] = mapped_column(String(40))
