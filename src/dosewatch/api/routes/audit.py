"""The audit trail: entries (scoped to your sites) and the chain's verification."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ...store import service
from ...store.audit import verify
from ...store.scope import require
from ..deps import CurrentViewer, StoreDep
from ..schemas import AuditEntryOut, VerificationOut

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("")
def entries(viewer: CurrentViewer, store: StoreDep, patient: Annotated[str | None, Query(max_length=200)] = None,
            trial: Annotated[str | None, Query(max_length=64)] = None,
            limit: Annotated[int, Query(ge=1, le=10000)] = 1000) -> list[AuditEntryOut]:
    """Audit entries, newest first."""
    with store.reading() as session:
        found = service.trial_by_code(session, trial) if trial else None
        return service.audit_entries(session, viewer, patient, found, limit)


@router.get("/verify")
def verify_chain(viewer: CurrentViewer, store: StoreDep) -> VerificationOut:
    """Recompute the hash chain; names the first entry that was edited, removed or reordered."""
    require(viewer, "verify_audit")
    with store.reading() as session:
        return verify(session).as_dict()
