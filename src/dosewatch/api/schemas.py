"""The API's JSON responses as pydantic models, so that ``/openapi.json`` documents every body.

Routes return plain dicts built by ``dosewatch.store.service``; FastAPI validates them against
these models and serializes them. Models whose objects carry the monitor's or a design's own keys
(``extra="allow"``) pass those keys through unchanged. The stored assessment is sent as stored
(JSON text, not re-validated); ``AssessmentOut`` documents it.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    """An object whose documented keys are the ones listed; others may follow."""

    model_config = ConfigDict(extra="allow")


# -- login ------------------------------------------------------------------------------------------

class Health(BaseModel):
    status: str = Field(description='"ok" when the database answers')
    database: str = Field(description="sqlite or postgresql")


class Token(BaseModel):
    access_token: str
    token_type: str = Field(description="bearer")
    expires_in: int = Field(description="seconds")


class Me(BaseModel):
    name: str
    role: str
    sites: list[str] = Field(description="the codes of the sites you see")
    all_sites: bool


# -- trials, imports, patients ----------------------------------------------------------------------

class TrialOut(BaseModel):
    code: str
    protocol: str
    protocol_version: int


class ProblemOut(BaseModel):
    source: str = Field(description='where: "<file> row <n>", a resource id, ...')
    field: str
    message: str
    severity: str = Field(description="error (a record dosewatch would use but cannot trust), warning (an "
                          "assumption dosewatch made) or notice (what dosewatch does not use)")
    code: str | None = Field(None, description="the kind of problem: not-used, unit, date, duplicate, ...")
    detail: str | None = Field(None, description="this record's own particulars")


class ProblemGroupOut(BaseModel):
    severity: str
    file: str
    row: int | None = Field(None, description="the first row (datasets)")
    resource: str | None = Field(None, description="the first resource (bundles)")
    field: str
    code: str
    message: str
    count: int = Field(description="how many rows or resources")
    rows: list[int] | None = None
    resources: list[str] | None = None
    details: list[str] | None = None


class ImportReportOut(BaseModel):
    created: dict[str, int] = Field(description="per table: patients, observations, doses, events")
    updated: dict[str, int]
    unchanged: dict[str, int]
    rejected: list[ProblemOut] = Field(description="records left out (only with skip_invalid; else 422)")
    warnings: list[ProblemOut] = Field(description="assumptions made to read records (each record)")
    notices: list[ProblemGroupOut] = Field(description="what was not used, grouped, with counts")
    counts: dict[str, int] = Field(description="problems per severity")
    patients_changed: list[str] = Field(description="patients whose data changed (and were reassessed)")


class PatientOut(BaseModel):
    patient_id: str
    site: str
    sex: str | None
    birth_date: dt.date | None
    deceased_date: dt.date | None
    state: str | None = Field(description="from the stored assessment: on drug, held, off study, dead, ...")
    study_day: int | None
    as_of: str | None = Field(description="the date of the stored assessment")


# -- the assessment (the JSON of one patient of `dosewatch check --protocol`) -----------------------

class EvidenceOut(_Open):
    id: str | None = Field(description="the record's id (observation, dose, event)")
    code: str | None
    value: float | None
    unit: str | None
    date: str
    note: str | None = None


class GradedEventOut(_Open):
    term: str
    criteria: str
    grade: int | None
    onset: str
    study_day: int | None
    evidence: list[EvidenceOut]
    rule: str | None = None
    detail: dict[str, Any] | None = None


class AssessmentAlertOut(_Open):
    study_day: int | None
    date: str
    severity: str
    message: str
    rule: str
    evidence: list[EvidenceOut]


class AssessmentDoseActionOut(_Open):
    study_day: int | None
    date: str
    drug: str
    action: str = Field(description="hold, hold-next-dose, resume, reduce, escalate, discontinue, continue")
    level: int | None
    dose: float | None
    rule: str
    reason: str


class FindingOut(_Open):
    study_day: int | None
    date: str
    kind: str
    message: str
    refs: list[str]


class AssessmentOut(_Open):
    patient_id: str
    protocol: str
    protocol_version: int
    as_of: str
    study_day: int | None
    day1: str | None
    state: str
    level: int | None
    events: list[GradedEventOut]
    alerts: list[AssessmentAlertOut]
    dose_actions: list[AssessmentDoseActionOut]
    adherence: list[FindingOut]
    dlt: dict[str, Any] = Field(description="the DLT window: status, window_end, followup_days, ...")
    today: dict[str, Any] = Field(description="cycle, cycle day, study drug, prophylaxis and assessments due")


# -- alerts, dose actions, cohort -------------------------------------------------------------------

class AlertOut(BaseModel):
    id: int
    patient_id: str
    status: str = Field(description="open, acknowledged or withdrawn")
    severity: str
    rule: str
    date: dt.date
    message: str
    evidence: list[EvidenceOut]
    study_day: int | None
    protocol_version: int
    ack_by: str | None
    ack_at: str | None
    ack_note: str | None


class SignatureOut(BaseModel):
    id: int
    entity: str = Field(description="cohort_decision or dose_action")
    entity_id: int
    signer: str
    role: str
    meaning: str = Field(description="reviewed, approved or overridden")
    statement: str = Field(description="what the meaning says, as shown to the signer")
    reason: str | None
    signed_at: str = Field(description="UTC, ISO 8601")
    record_hash: str = Field(description="SHA-256 of the signed record's content, checked by audit verify")


class DoseActionOut(_Open):
    id: int
    patient_id: str
    status: str = Field(description="proposed, accepted, overridden or withdrawn")
    study_day: int | None = None
    date: str | None = None
    drug: str | None = None
    action: str | None = None
    level: int | None = None
    dose: float | None = None
    rule: str | None = None
    reason: str | None = Field(None, description="the monitor's reason for the action")
    protocol_version: int
    decided_by: str | None
    decided_at: str | None
    decision_reason: str | None
    signatures: list[SignatureOut] = []


class CohortRowOut(BaseModel):
    patient_id: str
    dose: int = Field(description="dose level of the first dose")
    dlt: int
    followup: float
    status: str


class CohortNextOut(_Open):
    next_dose: int | None = Field(description="None when the trial stops")
    decision: str
    reason: str
    mtd: int | None
    protocol: str
    protocol_version: int
    design: str
    scope: str = Field(description='"all sites" or "your sites only"')
    skeleton: list[float] | None = Field(None, description="CRM and TITE-CRM: the skeleton used")
    cohort: list[CohortRowOut]
    not_counted: list[str]


class CohortDecisionOut(BaseModel):
    id: int
    decision: str
    dose_level: int | None
    recommendation: dict[str, Any]
    supersedes: int | None = None
    signatures: list[SignatureOut] = []


class CohortDecisionListOut(_Open):
    id: int
    design: str
    decision: str
    dose_level: int | None
    recommended: int | None
    reason: str | None
    decided_by: str
    decided_at: str
    supersedes: int | None
    superseded_by: int | None
    signatures: list[SignatureOut]


class DeletedOut(BaseModel):
    id: str
    kind: str
    patient_id: str
    deleted: bool
    reason: str


# -- audit ------------------------------------------------------------------------------------------

class AuditEntryOut(BaseModel):
    id: int
    at: str
    actor: str
    action: str
    entity: str
    entity_id: str
    patient_id: str | None
    before: Any = Field(description="the values before (JSON), or null")
    after: Any = Field(description="the values after (JSON), or null")
    reason: str | None
    hash: str


class VerificationOut(BaseModel):
    ok: bool
    entries: int
    first_bad_entry: int | None
    problem: str | None
    signatures: int = Field(0, description="electronic signatures checked against their records")
