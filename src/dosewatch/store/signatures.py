"""Electronic signatures on decisions, in the manner 21 CFR Part 11 asks for (11.50 signature
manifestations, 11.70 signature/record linking, 11.200 re-entering the password at each signing)
and REDCap and OpenClinica offer: the signer re-enters the password and states what the signature
means; the signature (name, role, time, meaning, reason, SHA-256 of the signed record) is a row and
an entry of the hash-chained audit trail, which ``audit verify`` checks against the record.

A signed record is never changed: a dose action is decided once, and a cohort decision is replaced
by a new decision that names it (``supersedes``), with its own reason and signature.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .admin import verify_password
from .audit import Change, append, now, record_hash, signature_fields
from .models import Signature, User
from .scope import CAPABILITIES, Forbidden, Refused, Viewer

MEANINGS = {
    "reviewed": "I have reviewed this decision and the data behind it",
    "approved": "I approve this decision",
    "overridden": "I decide against the design's recommendation, for the reason given",
}
# Who may sign which record: the roles that may make the decision, and for a cohort decision also
# the investigator (the principal investigator or the safety review committee's chair).
SIGNERS = {"cohort_decision": CAPABILITIES["sign_cohort"], "dose_action": CAPABILITIES["sign_dose"]}


@dataclass(frozen=True)
class SignatureRequest:
    """What the signer enters: the password again, the meaning and (for an override, always) a reason."""

    password: str
    meaning: str
    reason: str | None = None


def check_request(request: SignatureRequest, entity: str, decision: str | None = None) -> None:
    if request.meaning not in MEANINGS:
        raise Refused(f"the meaning of a signature is one of {', '.join(MEANINGS)}")
    if request.meaning == "overridden" and not (request.reason and request.reason.strip()):
        raise Refused("a signature that overrides needs the reason")
    if decision == "overridden" and request.meaning == "approved":
        raise Refused("the decision overrides the recommendation: sign it as 'overridden' (with the reason) "
                      "or 'reviewed'")
    if decision == "accepted" and request.meaning == "overridden":
        raise Refused("the decision accepts the recommendation: sign it as 'approved' or 'reviewed'")
    if entity not in SIGNERS:
        raise Refused(f"{entity} records are not signed")


def sign(session: Session, viewer: Viewer, entity: str, entity_id: int, request: SignatureRequest, *,
         trial_id: int, site_id: int | None = None, patient_id: str | None = None,
         decision: str | None = None) -> dict[str, Any]:
    """Sign the stored record ``entity`` ``entity_id`` in the caller's transaction (after the record
    is flushed): password checked again, then the signature row and its audit entry."""
    check_request(request, entity, decision)
    if viewer.role not in SIGNERS[entity]:
        raise Forbidden(f"role {viewer.role} may not sign a {entity.replace('_', ' ')}")
    user = session.scalar(select(User).where(User.name == viewer.name, User.active.is_(True)))
    if user is None or not verify_password(request.password, user.password_hash):
        # nothing is written: the caller's transaction rolls back with this refusal
        raise Refused("the password is not right: the signature needs your own password again")
    digest = record_hash(session, entity, entity_id)
    if digest is None:
        raise Refused(f"no {entity.replace('_', ' ')} {entity_id} to sign")
    same = session.scalar(select(Signature).where(Signature.entity == entity, Signature.entity_id == entity_id,
                                                  Signature.signer == viewer.name,
                                                  Signature.meaning == request.meaning))
    if same is not None:
        raise Refused(f"you signed this {entity.replace('_', ' ')} as {request.meaning} already")
    sig = Signature(trial_id=trial_id, site_id=site_id, entity=entity, entity_id=entity_id, signer=viewer.name,
                    role=viewer.role, meaning=request.meaning, reason=request.reason or None, signed_at=now(),
                    record_hash=digest)
    session.add(sig)
    session.flush()
    append(session, [Change(viewer.name, "sign", "signature", str(sig.id), None,
                            {"signature_id": sig.id, **signature_fields(sig)}, sig.reason, trial_id, site_id,
                            patient_id)])
    return signature_dict(sig)


def signature_dict(sig: Signature) -> dict[str, Any]:
    return {"id": sig.id, **signature_fields(sig), "statement": MEANINGS.get(sig.meaning, sig.meaning)}


def signatures_of(session: Session, entity: str, ids) -> dict[int, list[dict[str, Any]]]:
    """The signatures of these records, oldest first, by record id."""
    out: dict[int, list[dict[str, Any]]] = {}
    ids = sorted(set(ids))
    if not ids:
        return out
    for sig in session.scalars(select(Signature).where(Signature.entity == entity, Signature.entity_id.in_(ids))
                               .order_by(Signature.id)):
        out.setdefault(sig.entity_id, []).append(signature_dict(sig))
    return out


# ------------------------------------------------------------------------------------------ signing later

def sign_cohort_decision(session: Session, trial, viewer: Viewer, decision_id: int,
                         request: SignatureRequest) -> dict[str, Any]:
    """Sign a recorded cohort decision (the committee chair approving the statistician's decision,
    the statistician reviewing it). A superseded decision is no longer signed."""
    from .models import CohortDecision

    row = session.get(CohortDecision, decision_id)
    if row is None or row.trial_id != trial.id:
        from .scope import NotFound

        raise NotFound(f"no cohort decision {decision_id} in trial {trial.code}")
    later = session.scalar(select(CohortDecision.id).where(CohortDecision.supersedes == decision_id))
    if later is not None:
        raise Refused(f"cohort decision {decision_id} was superseded by decision {later}: sign that one")
    return sign(session, viewer, "cohort_decision", decision_id, request, trial_id=trial.id, decision=row.decision)


def sign_dose_action(session: Session, viewer: Viewer, action_id: int, request: SignatureRequest) -> dict[str, Any]:
    """Sign a decided dose action at one of the viewer's sites."""
    from .service import dose_action_row

    action, pid = dose_action_row(session, viewer, action_id)
    if action.status not in ("accepted", "overridden"):
        raise Refused(f"dose action {action_id} is {action.status}: only a decision is signed")
    return sign(session, viewer, "dose_action", action.id, request, trial_id=action.trial_id, site_id=action.site_id,
                patient_id=pid, decision=action.status)


def cohort_decisions(session: Session, trial, limit: int = 50) -> list[dict[str, Any]]:
    """The decisions on the next cohort, newest first, each with the design's recommendation at the
    time, its signatures and the decision that superseded it (if any)."""
    from .models import CohortDecision

    rows = list(session.scalars(select(CohortDecision).where(CohortDecision.trial_id == trial.id)
                                .order_by(CohortDecision.id.desc()).limit(limit)))
    superseded = dict(session.execute(select(CohortDecision.supersedes, CohortDecision.id)
                                      .where(CohortDecision.trial_id == trial.id,
                                             CohortDecision.supersedes.is_not(None))).all())
    sigs = signatures_of(session, "cohort_decision", [d.id for d in rows])
    return [{"id": d.id, "design": d.design, "decision": d.decision, "dose_level": d.dose_level,
             "recommended": (d.recommendation or {}).get("next_dose"),
             "recommended_decision": (d.recommendation or {}).get("decision"),
             "recommendation": d.recommendation, "reason": d.reason, "decided_by": d.decided_by,
             "decided_at": d.decided_at, "supersedes": d.supersedes, "superseded_by": superseded.get(d.id),
             "signatures": sigs.get(d.id, [])} for d in rows]
