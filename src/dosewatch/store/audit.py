"""The audit trail: append-only entries, each carrying the SHA-256 of the one before.

An entry is written by the transaction that makes the change (``append`` inside
``Store.writing()``), so the change and its entry are committed together or not at all. The hash
covers every field of the entry, its id (so a reordering shows) and the previous hash (so an edit
or a removal breaks every later link); the head row holds the last id and hash (so removing the
newest entries shows too). ``verify`` names the first entry that does not fit.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from .models import AuditEntry, AuditHead

GENESIS = "0" * 64


def canonical(value: Any) -> str | None:
    """The JSON text that is stored and hashed (sorted keys, dates as ISO text)."""
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_iso, ensure_ascii=False)


def _iso(value: Any) -> str:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} in the audit trail")


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


FIELDS = ("id", "at", "actor", "action", "entity", "entity_id", "trial_id", "site_id", "patient_id",
          "before", "after", "reason", "prev_hash")


def entry_hash(row: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps([row[f] for f in FIELDS], separators=(",", ":")).encode()).hexdigest()


@dataclass
class Change:
    """One audited change, before it is chained."""

    actor: str
    action: str
    entity: str
    entity_id: str
    before: Any = None
    after: Any = None
    reason: str | None = None
    trial_id: int | None = None
    site_id: int | None = None
    patient_id: str | None = None


def append(session: Session, changes: list[Change]) -> None:
    """Chain and insert ``changes`` in the caller's (write-locked) transaction."""
    if not changes:
        return
    head = session.get(AuditHead, 1)
    at = now()
    rows = []
    last_id, last_hash = head.last_id, head.last_hash
    for c in changes:
        last_id += 1
        row = {"id": last_id, "at": at, "actor": c.actor, "action": c.action, "entity": c.entity,
               "entity_id": str(c.entity_id), "trial_id": c.trial_id, "site_id": c.site_id,
               "patient_id": c.patient_id, "before": canonical(c.before), "after": canonical(c.after),
               "reason": c.reason, "prev_hash": last_hash}
        row["hash"] = last_hash = entry_hash(row)
        rows.append(row)
    for start in range(0, len(rows), 1000):
        session.execute(insert(AuditEntry), rows[start:start + 1000])
    head.last_id, head.last_hash = last_id, last_hash
    session.flush()


@dataclass
class Verification:
    ok: bool
    entries: int
    first_bad: int | None = None
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "first_bad_entry": self.first_bad, "problem": self.problem}


def verify(session: Session) -> Verification:
    """Walk the chain in id order; the first entry whose id, link or hash does not fit is named."""
    expected_prev, expected_id, n = GENESIS, 1, 0
    cols = [getattr(AuditEntry, f) for f in FIELDS] + [AuditEntry.hash]
    for values in session.execute(select(*cols).order_by(AuditEntry.id)).yield_per(5000):
        row = dict(zip(FIELDS + ("hash",), values, strict=True))
        n += 1
        if row["id"] != expected_id:
            return Verification(False, n, expected_id, f"entry {expected_id} is missing (next is {row['id']})")
        if row["prev_hash"] != expected_prev:
            return Verification(False, n, row["id"], "its link to the previous entry is broken "
                                "(the previous entry was edited, removed or reordered)")
        if entry_hash(row) != row["hash"]:
            return Verification(False, n, row["id"], "its content does not match its hash (it was edited)")
        expected_prev, expected_id = row["hash"], expected_id + 1
    head = session.get(AuditHead, 1)
    if head is None or head.last_id != expected_id - 1 or head.last_hash != expected_prev:
        last = head.last_id if head else "?"
        return Verification(False, n, expected_id, f"the newest entries were removed (the chain ends at "
                            f"{expected_id - 1}, the head says {last})")
    return Verification(True, n)
