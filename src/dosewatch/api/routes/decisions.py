"""Acknowledging alerts, deciding dose actions and cohorts: each written with its audit entry."""
from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from ...escalation.crm import check_skeleton
from ...store import service, signatures
from ...store.scope import Refused
from ..deps import CurrentViewer, StoreDep, check_as_of
from ..schemas import AlertOut, CohortDecisionListOut, CohortDecisionOut, DoseActionOut, SignatureOut
from .trials import Design

router = APIRouter(tags=["decisions"])
RowId = Annotated[int, Path(ge=1, le=2**31 - 1)]  # a database id (32-bit on every backend)


class Ack(BaseModel):
    note: str | None = Field(None, max_length=2000)


class Decision(str, Enum):
    accepted = "accepted"
    overridden = "overridden"


class Meaning(str, Enum):
    reviewed = "reviewed"
    approved = "approved"
    overridden = "overridden"


class SignatureIn(BaseModel):
    """An electronic signature: your password again, what the signature means, and the reason
    (required when it overrides)."""

    password: str = Field(max_length=200)
    meaning: Meaning
    reason: str | None = Field(None, max_length=2000)

    def request(self) -> signatures.SignatureRequest:
        return signatures.SignatureRequest(self.password, self.meaning.value, self.reason)


def _request(signature: SignatureIn | None) -> signatures.SignatureRequest | None:
    return None if signature is None else signature.request()


class DoseDecision(BaseModel):
    decision: Decision
    reason: str | None = Field(None, max_length=2000, description="required for an override")
    signature: SignatureIn | None = Field(None, description="sign the decision (required when the trial "
                                                            "requires signatures)")


class CohortDecisionIn(BaseModel):
    design: Design = Design.three_plus_three
    decision: Decision
    dose_level: int | None = Field(None, ge=1, le=100, description="the level chosen, for an override")
    reason: str | None = Field(None, max_length=2000)
    target: float | None = Field(None, gt=0, lt=1)
    skeleton: list[float] | None = Field(None, min_length=1, max_length=50,
                                         description="CRM and TITE-CRM: the prior DLT probability of each level")
    as_of: dt.date | None = Field(None, description="the monitor as of this date; default: the stored assessments")
    signature: SignatureIn | None = Field(None, description="sign the decision (required when the trial "
                                                            "requires signatures)")
    supersedes: int | None = Field(None, ge=1, le=2**31 - 1,
                                   description="an earlier decision this one replaces (the reason is required)")


@router.post("/alerts/{alert_id}/ack")
def acknowledge(alert_id: RowId, body: Ack, viewer: CurrentViewer, store: StoreDep) -> AlertOut:
    with store.writing() as session:
        return service.acknowledge(session, viewer, alert_id, body.note)


@router.post("/dose-actions/{action_id}/decision")
def decide_dose_action(action_id: RowId, body: DoseDecision, viewer: CurrentViewer,
                       store: StoreDep) -> DoseActionOut:
    with store.writing() as session:
        return service.decide_dose_action(session, viewer, action_id, body.decision.value, body.reason,
                                          _request(body.signature))


@router.post("/dose-actions/{action_id}/sign")
def sign_dose_action(action_id: RowId, body: SignatureIn, viewer: CurrentViewer, store: StoreDep) -> SignatureOut:
    """Sign a decided dose action (password again, meaning, reason)."""
    with store.writing() as session:
        return signatures.sign_dose_action(session, viewer, action_id, body.request())


@router.post("/trials/{trial}/cohort/decision")
def decide_cohort(trial: str, body: CohortDecisionIn, viewer: CurrentViewer, store: StoreDep) -> CohortDecisionOut:
    with store.writing() as session:
        try:
            return service.decide_cohort(session, service.trial_by_code(session, trial), viewer, body.design.value,
                                         body.decision.value, body.dose_level, body.reason,
                                         check_as_of(body.as_of), body.target,
                                         None if body.skeleton is None else check_skeleton(body.skeleton),
                                         _request(body.signature), body.supersedes)
        except Refused:
            raise
        except ValueError as exc:
            raise Refused(str(exc)) from exc


@router.get("/trials/{trial}/cohort/decisions")
def cohort_decisions(trial: str, viewer: CurrentViewer, store: StoreDep) -> list[CohortDecisionListOut]:
    """The decisions on the next cohort, newest first, with their signatures and what superseded
    them. Site-scoped roles get them without the recommendation's patient list."""
    with store.reading() as session:
        rows = signatures.cohort_decisions(session, service.trial_by_code(session, trial), limit=1000)
    if not viewer.all_sites:
        rows = [{k: v for k, v in r.items() if k != "recommendation"} for r in rows]
    return rows


@router.post("/trials/{trial}/cohort/decisions/{decision_id}/sign")
def sign_cohort_decision(trial: str, decision_id: RowId, body: SignatureIn, viewer: CurrentViewer,
                         store: StoreDep) -> SignatureOut:
    """Sign a recorded cohort decision: the committee chair's approval, a statistician's review."""
    with store.writing() as session:
        return signatures.sign_cohort_decision(session, service.trial_by_code(session, trial), viewer, decision_id,
                                               body.request())

