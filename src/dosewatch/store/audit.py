"""The audit trail: append-only entries, each carrying the keyed hash of the one before.

An entry is written by the transaction that makes the change (``append`` inside
``Store.writing()``), so the change and its entry are committed together or not at all. The hash
covers every field of the entry, its id (so a reordering shows) and the previous hash (so an edit
or a removal breaks every later link); the head row holds the last id and hash (so removing the
newest entries shows too). ``verify`` names the first entry that does not fit.

The hash is an HMAC-SHA256 keyed with the server's audit key, which is kept outside the database
($DOSEWATCH_AUDIT_KEY or ``audit.key`` in the data folder, ``db.load_audit_secret``): whoever can write
the database but not read that key cannot edit an entry and recompute the chain after it (a plain
SHA-256 chain could be recomputed by anyone). The threat model is in docs/server.md.

Electronic signatures live in the same chain: a signature's entry (action ``sign``) carries the
signer, role, meaning, time and the SHA-256 of the signed record's content (``record_hash``).
``verify`` then checks each one against the ``signatures`` row and the record as it is now, so an
edited decision, an edited or removed signature, or a signature row without its entry shows.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from dataclasses import dataclass
from collections.abc import Iterable
from typing import Any

import polars as pl

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import AuditEntry, AuditHead, CohortDecision, DoseAction, Signature

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


KEY_CONTEXT = b"dosewatch audit chain, HMAC-SHA256, v1"


def audit_key(secret: str) -> bytes:
    """The chain's HMAC key, derived from the server's audit secret (``db.load_audit_secret``)."""
    return hmac.new(secret.encode(), KEY_CONTEXT, hashlib.sha256).digest()


def session_key(session: Session) -> bytes:
    """The audit key of the store the session belongs to (``Store`` puts it in the session's info)."""
    key = session.info.get("audit_key")
    if key is None:
        from .db import data_dir, load_audit_secret

        key = audit_key(load_audit_secret(data_dir()))
    return key


def entry_hash(row: dict[str, Any], key: bytes) -> str:
    return hmac.new(key, json.dumps([row[f] for f in FIELDS], separators=(",", ":")).encode(),
                    hashlib.sha256).hexdigest()


def plain_hash(row: dict[str, Any]) -> str:
    """The chain's hash before migration 0008 (unkeyed SHA-256): read only to re-key a chain."""
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
    dumps, sha256, mac = json.JSONEncoder(separators=(",", ":")).encode, hashlib.sha256, hmac.new
    key = session_key(session)
    for e in entries:
        last_id += 1
        ids.append(last_id)
        links.append(last_hash)
        last_hash = mac(key, dumps([last_id, at, *e, last_hash]).encode(), sha256).hexdigest()
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
    signatures: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "first_bad_entry": self.first_bad, "problem": self.problem,
                "signatures": self.signatures}


# ------------------------------------------------------------------------------------------ signatures

# The fields of each kind of record that a signature covers: every column a decision is made of.
SIGNED_FIELDS = {
    "cohort_decision": (CohortDecision, ("id", "trial_id", "design", "recommendation", "decision", "dose_level",
                                         "reason", "decided_by", "decided_at", "supersedes")),
    "dose_action": (DoseAction, ("id", "trial_id", "site_id", "patient_pk", "key", "date", "action", "data",
                                 "protocol_version", "status", "decided_by", "decided_at", "reason")),
}
# The fields of a signature that its audit entry repeats (and the hash chain protects).
SIGNATURE_FIELDS = ("entity", "entity_id", "signer", "role", "meaning", "reason", "signed_at", "record_hash")


def record_hash(session: Session, entity: str, entity_id: int) -> str | None:
    """SHA-256 of the canonical JSON of the signed fields of the record as stored now (None when
    the record is gone)."""
    model, fields = SIGNED_FIELDS[entity]
    row = session.get(model, entity_id)
    if row is None:
        return None
    return hashlib.sha256(canonical({f: getattr(row, f) for f in fields}).encode()).hexdigest()


def signature_fields(sig: Signature) -> dict[str, Any]:
    return {f: getattr(sig, f) for f in SIGNATURE_FIELDS}


def _check_signatures(session: Session, signed: list[tuple[int, dict[str, Any]]]) -> Verification | None:
    """Each ``sign`` entry (its id, its ``after``) against its signature row and the record now; and
    no signature row without an entry. The first problem, or None."""
    rows = {s.id: s for s in session.scalars(select(Signature))}
    seen: set[int] = set()
    for entry_id, after in signed:
        sig = rows.get(after.get("signature_id"))
        if sig is None:
            return Verification(False, 0, entry_id, f"signature {after.get('signature_id')} of this entry was removed")
        seen.add(sig.id)
        if {f: after.get(f) for f in SIGNATURE_FIELDS} != signature_fields(sig):
            return Verification(False, 0, entry_id, f"signature {sig.id} was edited after it was written")
        now_hash = record_hash(session, sig.entity, sig.entity_id)
        if now_hash != sig.record_hash:
            what = "was removed after it was signed" if now_hash is None else "was changed after it was signed"
            return Verification(False, 0, entry_id, f"{sig.entity.replace('_', ' ')} {sig.entity_id} {what} "
                                                    f"by {sig.signer} as {sig.meaning}")
    extra = sorted(set(rows) - seen)
    if extra:
        return Verification(False, 0, None, f"signature {extra[0]} has no audit entry (it was added outside dosewatch)")
    return None


def verify(session: Session) -> Verification:
    """Walk the chain in id order; the first entry whose id, link or hash does not fit is named.
    Then every signature against its entry and the signed record."""
    expected_prev, expected_id, n = GENESIS, 1, 0
    key = session_key(session)
    signed: list[tuple[int, dict[str, Any]]] = []
    cols = [getattr(AuditEntry, f) for f in FIELDS] + [AuditEntry.hash]
    for values in session.execute(select(*cols).order_by(AuditEntry.id)).yield_per(5000):
        row = dict(zip(FIELDS + ("hash",), values, strict=True))
        n += 1
        if row["id"] != expected_id:
            return Verification(False, n, expected_id, f"entry {expected_id} is missing (next is {row['id']})")
        if row["prev_hash"] != expected_prev:
            return Verification(False, n, row["id"], "its link to the previous entry is broken "
                                "(the previous entry was edited, removed or reordered)")
        if entry_hash(row, key) != row["hash"]:
            return Verification(False, n, row["id"], "its content does not match its keyed hash (it was edited, "
                                "or the chain was recomputed without the server key)")
        if row["action"] == "sign":
            signed.append((row["id"], json.loads(row["after"] or "{}")))
        expected_prev, expected_id = row["hash"], expected_id + 1
    head = session.get(AuditHead, 1)
    if head is None or head.last_id != expected_id - 1 or head.last_hash != expected_prev:
        last = head.last_id if head else "?"
        return Verification(False, n, expected_id, f"the newest entries were removed (the chain ends at "
                            f"{expected_id - 1}, the head says {last})")
    problem = _check_signatures(session, signed)
    if problem is not None:
        problem.entries = n
        return problem
    return Verification(True, n, signatures=len(signed))
