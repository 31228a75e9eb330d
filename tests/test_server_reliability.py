"""Reliability of the trial server: the API on PostgreSQL, a schemathesis run against
/openapi.json (bounded, in-process, no 500), and kill -9 of a server in the middle of an import."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from sqlalchemy import func, select
from test_server_support import (DATABASES, SECRET, body, demo_template, fresh_database, login,  # noqa: F401
                                 synthetic_bundle)

from dosewatch.store.demo import PASSWORD, TODAY


# -- the API on both databases ----------------------------------------------------------------------

@pytest.mark.parametrize("kind", [d for d in DATABASES if getattr(d, "values", (d,))[0] == "postgresql"])
def test_demo_and_site_scoping_on_postgresql(kind, tmp_path):
    from fastapi.testclient import TestClient

    from dosewatch.api import Settings, create_app
    from dosewatch.store.db import Store
    from dosewatch.store.demo import create_demo

    with fresh_database(kind, tmp_path) as url:
        store = Store(url, today=TODAY)
        app = create_app(Settings(secret_key=SECRET, today=TODAY), store=store)
        create_demo(store)
        with TestClient(app, raise_server_exceptions=False) as client:
            assert client.get("/api/health").json()["database"] == "postgresql"
            north, nurse = login(client, "nurse-north"), login(client, "nurse")
            assert [p["patient_id"] for p in client.get("/api/trials/demo/patients", headers=north).json()] == ["north-1"]
            assert client.get("/api/trials/demo/patients/seed-1/assessment", headers=north).status_code == 404
            assert client.get("/api/trials/demo/patients/seed-1/assessment", headers=login(client, "nurse")).json()[
                "patient_id"] == "seed-1"  # the one-query read path, compiled for PostgreSQL
            tls = next(a for a in client.get("/api/trials/demo/alerts?status=open&patient=seed-1", headers=nurse).json()
                       if a["rule"].endswith(":tls"))
            assert client.post(f"/api/alerts/{tls['id']}/ack", json={"note": "seen"}, headers=nurse).status_code == 200
            again = client.post("/api/trials/demo/fhir", content=body(synthetic_bundle(1, "pg")), headers=north).json()
            assert again["created"]["patients"] == 1
            assert client.get("/api/audit/verify", headers=login(client, "monitor")).json()["ok"] is True
        store.dispose()


# -- schemathesis -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fuzz_app(demo_template, tmp_path_factory):
    from dosewatch.api import Settings, create_app
    from dosewatch.store.db import Store

    path = tmp_path_factory.mktemp("fuzz") / "demo.db"
    shutil.copy(demo_template, path)
    store = Store(f"sqlite:///{path}", today=TODAY)
    yield create_app(Settings(secret_key=SECRET, today=TODAY), store=store)
    store.dispose()


@schemathesis.serializer("application/zip")
def _zip_bytes(ctx, value) -> bytes:
    """The SDTM upload's body: whatever bytes were generated (most are not a zip: a 4xx is expected)."""
    return value if isinstance(value, bytes) else str(value).encode()


def test_no_request_gets_a_500(fuzz_app):
    """Every operation of /openapi.json with generated parameters and bodies, as the admin (bounded):
    no 5xx (a 503 "busy" is documented), and no status the operation's OpenAPI responses do not list."""
    from fastapi.testclient import TestClient
    from hypothesis import given

    with TestClient(fuzz_app) as client:
        headers = login(client, "admin")
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=6, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def no_500(case) -> None:
            response = case.call(headers=headers)
            assert response.status_code < 500 or response.status_code == 503, (
                f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}")
            documented = case.operation.definition.raw.get("responses", {})
            assert str(response.status_code) in documented, (  # no undocumented status either
                f"{case.method} {case.operation.path} -> {response.status_code}, not in its OpenAPI responses "
                f"{sorted(documented)}: {response.text[:200]}")

        no_500()


# -- kill -9 in the middle of an import -------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(url: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "DOSEWATCH_DB": url, "DOSEWATCH_TODAY": TODAY.isoformat(),
           "DOSEWATCH_SECRET_KEY": SECRET}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "dosewatch.api.app:app_from_env",
                             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("the server did not start")


def _copy_demo(kind: str, url: str, demo_template) -> None:
    """The demo database at ``url``: a copy of the template (SQLite), or built there (PostgreSQL)."""
    if kind == "sqlite":
        shutil.copy(demo_template, url.removeprefix("sqlite:///"))
        return
    from dosewatch.store.db import Store
    from dosewatch.store.demo import create_demo

    store = Store(url, today=TODAY)
    store.upgrade()
    create_demo(store)
    store.dispose()


def _import_started(kind: str, url: str):
    """A test of whether an import is writing: a writer holds SQLite's write lock (taken by the
    import's BEGIN IMMEDIATE, before it reads the upload), or the audit chain's head row is locked
    by a writer (PostgreSQL). (The WAL file's time is no such test: SQLite writes the WAL when the
    transaction commits, so a kill then came after the commit.)"""
    if kind == "sqlite":
        import sqlite3

        path = url.removeprefix("sqlite:///")

        def writing() -> bool:
            conn = sqlite3.connect(path, timeout=0, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
                return False
            except sqlite3.OperationalError:  # database is locked
                return True
            finally:
                conn.close()

        return writing
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    dsn = u.set(drivername="postgresql", query={}).render_as_string(hide_password=False)
    conn = psycopg.connect(dsn, options=u.query["options"], autocommit=False)

    def locked() -> bool:
        try:
            conn.execute("SELECT 1 FROM audit_head WHERE id = 1 FOR UPDATE NOWAIT")
            return False
        except psycopg.errors.LockNotAvailable:
            return True
        finally:
            conn.rollback()

    return locked


@pytest.mark.parametrize("kind", DATABASES)
def test_kill_9_during_an_import_keeps_acknowledged_imports_and_no_partial_one(kind, demo_template, tmp_path):
    from dosewatch.store.audit import verify
    from dosewatch.store.db import Store
    from dosewatch.store.models import Observation, Patient

    with fresh_database(kind, tmp_path) as url:
        _copy_demo(kind, url, demo_template)
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        server = _start_server(url, port)
        try:
            token = httpx.post(f"{base}/api/token", data={"username": "nurse", "password": PASSWORD}).json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            small, large = synthetic_bundle(1, "acked"), synthetic_bundle(30, "big")
            acked = httpx.post(f"{base}/api/trials/demo/fhir", content=body(small), headers=auth, timeout=120)
            assert acked.status_code == 200
            answer: dict = {}

            def send() -> None:
                try:
                    answer["response"] = httpx.post(f"{base}/api/trials/demo/fhir", content=body(large), headers=auth,
                                                    timeout=300)
                except httpx.HTTPError as exc:
                    answer["error"] = exc

            started = _import_started(kind, url)
            sender = threading.Thread(target=send)
            sender.start()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and "response" not in answer and not started():
                time.sleep(0.005)  # the import starts writing
            server.send_signal(signal.SIGKILL)
            server.wait(timeout=30)
            sender.join(timeout=60)
        finally:
            if server.poll() is None:
                server.kill()
        completed = "response" in answer and answer["response"].status_code == 200

        server = _start_server(url, port)  # restart: SQLite recovers from its WAL, PostgreSQL from its log
        try:
            token = httpx.post(f"{base}/api/token", data={"username": "admin", "password": PASSWORD}).json()["access_token"]
            pids = {p["patient_id"] for p in httpx.get(f"{base}/api/trials/demo/patients",
                                                       headers={"Authorization": f"Bearer {token}"}).json()}
        finally:
            server.kill()
            server.wait(timeout=30)
        assert "acked-0" in pids
        big = {p for p in pids if p.startswith("big-")}
        everyone = {f"big-{i}" for i in range(30)}
        # Acknowledged: all there. Not acknowledged: none, or all (committed just before the kill,
        # the answer lost with the server); never a part.
        assert big == everyone if completed else big in (set(), everyone)

        store = Store(url)
        with store.reading() as session:
            n_big = session.scalar(select(func.count()).select_from(Observation)
                                   .join(Patient, Patient.id == Observation.patient_pk)
                                   .where(Patient.patient_id.like("big-%")))
            assert n_big == (30 * 17 * 12 if big else 0)
            assert verify(session).ok
        store.dispose()
