"""The audit chain against the database's own administrator (issue 15, item 5): entries are keyed
with an HMAC of the server's audit key, which is not in the database, so that an entry edited and every
later hash recomputed (as anyone could with plain SHA-256) is caught; migration 0008 re-keys an
existing chain only after verifying it."""
from __future__ import annotations

import hashlib
import json

import pytest
from sqlalchemy import text
from test_server_support import DATABASES, fresh_database, synthetic_bundle

from dosewatch.store import admin, service
from dosewatch.store.audit import FIELDS, GENESIS, audit_key, entry_hash, verify
from dosewatch.store.db import Store, migrations_config
from dosewatch.store.demo import TODAY
from dosewatch.store.scope import SYSTEM

SECRET = "audit-test-server-key-" + "y" * 30


@pytest.fixture(params=DATABASES)
def store(request, tmp_path):
    with fresh_database(request.param, tmp_path) as url:
        s = Store(url, today=TODAY, audit_secret=SECRET)
        s.upgrade()
        with s.writing() as session:
            admin.add_site(session, "test", "A")
            admin.add_trial(session, "test", "T", "lenalidomide-cll-25mg-2007")
            service.import_records(session, admin.trial_by_code(session, "T"), SYSTEM, "fhir",
                                   json.dumps(synthetic_bundle(1, "chain")).encode(), as_of=TODAY, site="A")
        yield s
        s.dispose()


def _rows(store) -> list[dict]:
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(f"SELECT {', '.join(FIELDS)}, hash FROM audit ORDER BY id"))]


def _rewrite(store, edit_id: int, digest) -> None:
    """The administrator's rewrite: entry ``edit_id``'s actor changed, then every link and hash from
    there on recomputed with ``digest`` (row -> hash), and the head set to the new last hash."""
    rows = _rows(store)
    prev = GENESIS
    with store.engine.begin() as conn:
        for row in rows:
            if row["id"] == edit_id:
                row["actor"] = "mallory"
            if row["id"] >= edit_id:
                row["prev_hash"] = prev
                row["hash"] = digest(row)
                conn.execute(text("UPDATE audit SET actor = :actor, prev_hash = :prev_hash, hash = :hash WHERE id = :id"),
                             row)
            prev = row["hash"]
        conn.execute(text("UPDATE audit_head SET last_hash = :h WHERE id = 1"), {"h": prev})


def _plain(row: dict) -> str:
    return hashlib.sha256(json.dumps([row[f] for f in FIELDS], separators=(",", ":")).encode()).hexdigest()


def test_the_chain_is_keyed_and_verifies(store):
    with store.reading() as session:
        result = verify(session)
    assert result.ok and result.entries >= 3
    rows = _rows(store)
    assert all(r["hash"] == entry_hash(r, audit_key(SECRET)) != _plain(r) for r in rows)


@pytest.mark.parametrize("how", ["plain SHA-256", "HMAC with another key"])
def test_an_entry_edited_and_the_chain_recomputed_is_caught(store, how):
    digest = _plain if how == "plain SHA-256" else (lambda row: entry_hash(row, audit_key("a guessed key")))
    _rewrite(store, 2, digest)
    with store.reading() as session:
        result = verify(session)
    assert not result.ok and result.first_bad == 2 and "keyed hash" in result.problem, result


def test_the_same_database_under_another_server_key_does_not_verify(store):
    """The key is what the chain's integrity rests on: it is outside the database."""
    other = Store(store.url, today=TODAY, audit_secret="another-server-key-" + "z" * 30)
    with other.reading() as session:
        assert not verify(session).ok
    other.dispose()


def _downgrade(store, revision: str) -> None:
    from alembic import command

    cfg = migrations_config(store.engine)
    cfg.attributes["audit_key"] = store.audit_key
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def test_migration_0008_rekeys_a_plain_chain_that_verifies(store):
    _downgrade(store, "0007")
    rows = _rows(store)
    assert all(r["hash"] == _plain(r) for r in rows)  # as version 0007 wrote it
    store.upgrade()
    with store.reading() as session:
        assert verify(session).ok
    assert [r["hash"] for r in _rows(store)] == [entry_hash(r, audit_key(SECRET)) for r in _rows(store)]


def test_migration_0008_refuses_to_rekey_a_chain_that_does_not_verify(store):
    _downgrade(store, "0007")
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE audit SET actor = 'mallory' WHERE id = 2"))
    with pytest.raises(RuntimeError, match="audit entry 2 does not verify"):
        store.upgrade()
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0007"
