"""The audit chain keyed: every entry's hash becomes an HMAC-SHA256 with the key derived from the
server key (kept outside the database), so that whoever can write the database cannot rewrite an
entry and recompute the chain after it.

The existing chain is first verified as it was written (plain SHA-256 links): a chain that does
not verify is not re-keyed (that would launder the edit) and the upgrade stops, naming the entry.

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import context, op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

BATCH = 5000


def _key() -> bytes:
    key = context.config.attributes.get("audit_key")
    if key is None:
        from dosewatch.store.audit import audit_key
        from dosewatch.store.db import data_dir, load_audit_secret

        key = audit_key(load_audit_secret(data_dir()))
    return key


def _rehash(old, new) -> None:
    """Verify the chain with ``old`` (row -> hash) and rewrite every link with ``new``."""
    from dosewatch.store.audit import FIELDS, GENESIS

    conn = op.get_bind()
    audit = sa.table("audit", *(sa.column(f) for f in (*FIELDS, "hash")))
    rows = conn.execute(sa.select(*(audit.c[f] for f in (*FIELDS, "hash"))).order_by(audit.c.id))
    prev_old, prev_new, expected_id, updates = GENESIS, GENESIS, 1, []
    for values in rows:
        row = dict(zip((*FIELDS, "hash"), values))
        if row["id"] != expected_id or row["prev_hash"] != prev_old or old(row) != row["hash"]:
            raise RuntimeError(f"audit entry {expected_id} does not verify: the chain is not re-keyed. Restore the "
                               "database from a backup (or find the edit with `dosewatch audit verify` on the "
                               "previous version) before upgrading.")
        prev_old = row["hash"]
        digest = new({**row, "prev_hash": prev_new})
        updates.append({"b_id": row["id"], "b_prev": prev_new, "b_hash": digest})
        prev_new, expected_id = digest, expected_id + 1
    head = conn.execute(sa.text("SELECT last_id, last_hash FROM audit_head WHERE id = 1")).first()
    if head is not None and (head.last_id != expected_id - 1 or head.last_hash != prev_old):
        raise RuntimeError(f"the audit chain's newest entries were removed (the chain ends at {expected_id - 1}, "
                           f"the head says {head.last_id}): the chain is not re-keyed.")
    stmt = sa.update(audit).where(audit.c.id == sa.bindparam("b_id")).values(
        prev_hash=sa.bindparam("b_prev"), hash=sa.bindparam("b_hash"))
    for start in range(0, len(updates), BATCH):
        conn.execute(stmt, updates[start:start + BATCH])
    if head is not None:
        conn.execute(sa.text("UPDATE audit_head SET last_hash = :h WHERE id = 1"), {"h": prev_new})


def upgrade() -> None:
    from dosewatch.store.audit import entry_hash, plain_hash

    key = _key()
    _rehash(plain_hash, lambda row: entry_hash(row, key))


def downgrade() -> None:
    from dosewatch.store.audit import entry_hash, plain_hash

    key = _key()
    _rehash(lambda row: entry_hash(row, key), plain_hash)
