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
from collections.abc import Iterable
from typing import Any

import polars as pl

from sqlalchemy import select
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
    chain(session, [(c.actor, c.action, c.entity, str(c.entity_id), c.trial_id, c.site_id, c.patient_id,
                     canonical(c.before), canonical(c.after), c.reason) for c in changes])


# An entry before it is chained: the FIELDS between "at" and "prev_hash", before / after as JSON text.
Entry = tuple[str, str, str, str, "int | None", "int | None", "str | None", "str | None", "str | None", "str | None"]


def chain(session: Session, entries: Iterable[Entry]) -> int:
    """Number, link and hash ``entries`` and insert them (in bulk) in the caller's write-locked
    transaction; the hashing is the only per-entry Python work. Returns how many were written."""
    head = session.get(AuditHead, 1)
    at = now()
    last_id, last_hash = head.last_id, head.last_hash
    entries = list(entries)
    if not entries:
        return 0
    ids, links, digests = [], [], []
    dumps, sha256 = json.JSONEncoder(separators=(",", ":")).encode, hashlib.sha256
    for e in entries:
        last_id += 1
        ids.append(last_id)
        links.append(last_hash)
        last_hash = sha256(dumps([last_id, at, *e, last_hash]).encode()).hexdigest()
        digests.append(last_hash)
    from .bulk import insert_frame

    names = FIELDS[2:-1]
    schema = {"actor": pl.String, "action": pl.String, "entity": pl.String, "entity_id": pl.String,
              "trial_id": pl.Int64, "site_id": pl.Int64, "patient_id": pl.String, "before": pl.String,
              "after": pl.String, "reason": pl.String}
    df = pl.DataFrame(dict(zip(names, zip(*entries), strict=True)), schema=schema)
    insert_frame(session, "audit", df.select(pl.Series("id", ids, pl.Int64), pl.lit(at).alias("at"), *names,
                                             pl.Series("prev_hash", links), pl.Series("hash", digests)))
    head.last_id, head.last_hash = last_id, last_hash
    session.flush()
    return len(ids)


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
