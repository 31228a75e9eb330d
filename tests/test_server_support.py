"""Shared fixtures and builders for the trial server's tests (imported by tests/test_server_*.py).

PostgreSQL tests run when DOSEWATCH_TEST_PG_URL is set (``.ci/run`` sets it); each test gets a
fresh schema, dropped afterwards, so runs are repeatable.
"""
from __future__ import annotations

import copy
import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from dosewatch.demo import seed_bundle_path

PG_URL = os.environ.get("DOSEWATCH_TEST_PG_URL")
DATABASES = [
    "sqlite",
    pytest.param("postgresql", marks=[pytest.mark.postgres,
                                      pytest.mark.skipif(not PG_URL, reason="DOSEWATCH_TEST_PG_URL is not set")]),
]
SECRET = "test-secret-key-" + "x" * 32


@contextmanager
def fresh_database(kind: str, folder: Path):
    """A database URL nobody used before: a new SQLite file, or a new PostgreSQL schema."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / f'{uuid.uuid4().hex[:8]}.db'}"
        return
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(PG_URL)
    schema = f"dw_test_{uuid.uuid4().hex[:10]}"
    dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def seed_bundle() -> dict:
    return json.loads(seed_bundle_path().read_text())


def small_bundle(patients=("seed-1",), last: str = "2007-03-10") -> dict:
    """The seed bundle cut to some patients and their records up to ``last`` (fast to read)."""
    bundle = seed_bundle()
    keep = []
    for e in bundle["entry"]:
        r = e["resource"]
        pid = r["id"] if r["resourceType"] == "Patient" else r["subject"]["reference"].split("/")[-1]
        when = r.get("effectiveDateTime") or r.get("onsetDateTime") or ""
        if pid in patients and when[:10] <= last:
            keep.append(e)
    bundle["entry"] = keep
    return bundle


def synthetic_bundle(n: int, prefix: str = "syn") -> dict:
    """``n`` synthetic patients (the demo's NORTH patient under new ids) as a FHIR Bundle."""
    from dosewatch.io.fhir_write import cohort_to_bundle
    from dosewatch.record import Cohort
    from dosewatch.store.demo import north_patient

    parts = [north_patient(dt.date(2007, 6, 4) + dt.timedelta(days=i % 20), pid=f"{prefix}-{i}") for i in range(n)]
    return cohort_to_bundle(Cohort.concat(parts))


def with_value(bundle: dict, resource_id: str, value: float) -> dict:
    out = copy.deepcopy(bundle)
    for e in out["entry"]:
        if e["resource"]["id"] == resource_id:
            e["resource"]["valueQuantity"]["value"] = value
    return out


def body(bundle: dict) -> bytes:
    return json.dumps(bundle).encode()


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory) -> Path:
    """A demo database built once per run (SQLite); tests copy it."""
    from dosewatch.store.db import Store
    from dosewatch.store.demo import TODAY, create_demo

    path = tmp_path_factory.mktemp("demo") / "demo.db"
    store = Store(f"sqlite:///{path}", today=TODAY)
    store.upgrade()
    create_demo(store)
    with store.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    store.dispose()
    return path


@pytest.fixture
def demo_app(demo_template, tmp_path):
    """A fresh copy of the demo database behind the API."""
    from dosewatch.api import Settings, create_app
    from dosewatch.store.db import Store
    from dosewatch.store.demo import TODAY

    path = tmp_path / "demo.db"
    shutil.copy(demo_template, path)
    store = Store(f"sqlite:///{path}", today=TODAY)
    app = create_app(Settings(secret_key=SECRET, today=TODAY), store=store)
    yield app
    store.dispose()


@pytest.fixture
def client(demo_app):
    from fastapi.testclient import TestClient

    with TestClient(demo_app, raise_server_exceptions=False) as c:
        yield c


def login(client, user: str, password: str | None = None) -> dict[str, str]:
    from dosewatch.store.demo import PASSWORD

    r = client.post("/api/token", data={"username": user, "password": password or PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(proc: subprocess.Popen, base: str, timeout: float = 120) -> None:
    """Wait until the server started as ``proc`` answers ``GET /api/health``; fail with its output
    if it stops or does not answer in time."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{base}/api/health", timeout=2):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("the server did not start:\n" + proc.stdout.read().decode(errors="replace"))
            time.sleep(0.3)


def json_paths(value, path=()):
    """Every path into a JSON document (dict keys and list indexes), the root first: where a fuzz test
    puts its replacement."""
    yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from json_paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from json_paths(v, (*path, i))
