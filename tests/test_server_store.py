"""The trial server's store: migrations on SQLite and PostgreSQL, imports (idempotent, all or
nothing, corrections with a reason), reassessment of the changed patients only, the audit chain
(tampering found), and two importers at once."""
from __future__ import annotations

import datetime as dt
import threading

import polars as pl
import pytest
from sqlalchemy import func, inspect, select, text
from test_server_support import DATABASES, body, fresh_database, small_bundle, synthetic_bundle, with_value

from dosewatch.errors import InputError
from dosewatch.store import admin, service
from dosewatch.store.audit import verify
from dosewatch.store.db import Store
from dosewatch.store.models import Assessment, AuditEntry, Base, Dose, Event, Observation, Patient
from dosewatch.store.records import load_cohort
from dosewatch.store.scope import SYSTEM, Viewer

TODAY = dt.date(2007, 7, 22)


@pytest.fixture(params=DATABASES)
def store(request, tmp_path):
    with fresh_database(request.param, tmp_path) as url:
        s = Store(url, today=TODAY)
        s.upgrade()
        with s.writing() as session:
            admin.add_site(session, "test", "A")
            admin.add_site(session, "test", "B")
            admin.add_trial(session, "test", "T", "lenalidomide-cll-25mg-2007")
        yield s
        s.dispose()


def do_import(store, bundle, viewer=SYSTEM, **kw):
    kw.setdefault("site", "A")
    with store.writing() as session:
        trial = admin.trial_by_code(session, "T")
        return service.import_records(session, trial, viewer, "fhir", body(bundle), as_of=store.today(), **kw)


def count(store, model) -> int:
    with store.reading() as session:
        return session.scalar(select(func.count()).select_from(model))


# -- migrations -------------------------------------------------------------------------------------

def test_migrations_build_the_models_tables_and_rerun_as_no_op(store):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from dosewatch.store.db import migrations_config

    store.upgrade()  # second run: nothing to do
    with store.engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) == set(Base.metadata.tables) | {"alembic_version"}
        head = ScriptDirectory.from_config(migrations_config(store.engine)).get_current_head()
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head == "0008"
        # the shipped migration and the models agree (no autogenerate difference)
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def at_revision(store, revision: str, bundle: dict) -> None:
    """``store`` with the test sites, trial and ``bundle`` at an earlier ``revision``: imported at
    the head (the import writes the current columns), then migrated down."""
    from alembic import command

    from dosewatch.store.db import migrations_config

    store.upgrade()
    with store.writing() as session:
        admin.add_site(session, "test", "A")
        admin.add_site(session, "test", "B")
        admin.add_trial(session, "test", "T", "lenalidomide-cll-25mg-2007")
    do_import(store, bundle)
    cfg = migrations_config(store.engine)
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


@pytest.mark.parametrize("kind", DATABASES)
def test_upgrade_keeps_the_records_and_ties_each_to_its_patients_site(kind, tmp_path):
    """0003 replaces the records' three foreign keys by one to (patient, trial, site): a database
    with data upgrades in place, and a record can no longer name a site other than its patient's."""
    from sqlalchemy.exc import IntegrityError

    with fresh_database(kind, tmp_path) as url:
        s = Store(url, today=TODAY)
        try:
            at_revision(s, "0002", small_bundle())
            before = count(s, Observation)
            s.upgrade()
            assert count(s, Observation) == before > 0
            assert verify_ok(s)
            with s.reading() as session:
                obs = session.scalars(select(Observation).limit(1)).one()
                row = {c: getattr(obs, c) for c in ("trial_id", "patient_pk", "code", "source")}
            with pytest.raises(IntegrityError), s.writing() as session:
                session.add(Observation(**row, obs_id="elsewhere", site_id=obs.site_id + 1, deleted=False))
            with s.writing() as session:  # the patient's own site is fine
                session.add(Observation(**row, obs_id="here", site_id=obs.site_id, deleted=False))
        finally:
            s.dispose()


@pytest.mark.parametrize("kind", DATABASES)
def test_upgrade_0004_gives_doses_and_events_an_offset_and_a_reimport_fills_it(kind, tmp_path):
    """0004 adds ``tz_offset_min`` to doses and events: the records are kept (offset empty), and
    importing the bundle again puts the offsets in as corrections (a changed offset is a change)."""
    bundle = small_bundle()
    with fresh_database(kind, tmp_path) as url:
        s = Store(url, today=TODAY)
        try:
            at_revision(s, "0003", bundle)
            with s.engine.connect() as conn:
                assert "tz_offset_min" not in {c["name"] for c in inspect(conn).get_columns("doses")}
            before = (count(s, Dose), count(s, Event))
            s.upgrade()
            with s.engine.connect() as conn:
                for table in ("doses", "events"):
                    assert "tz_offset_min" in {c["name"] for c in inspect(conn).get_columns(table)}
            assert (count(s, Dose), count(s, Event)) == before and min(before) > 0
            with s.reading() as session:
                assert session.scalar(select(func.count()).where(Dose.tz_offset_min.is_not(None))) == 0
            report = do_import(s, bundle, reason="offsets kept since 0004")
            assert (report.updated["doses"], report.updated["events"], report.updated["observations"]) == (
                before[0], before[1], 0)
            with s.reading() as session:
                assert set(session.scalars(select(Dose.tz_offset_min))) == {-300}
            assert verify_ok(s)
        finally:
            s.dispose()


@pytest.mark.parametrize("kind", DATABASES)
def test_upgrade_0005_keeps_the_records_and_adds_the_real_world_fields(kind, tmp_path):
    """0005 adds the study id and stated age of patients, a finding's comparator, qualifiers and range
    source, and an event's codes, grade source and date completion: records are kept, the new fields
    empty, and an import after the upgrade stores them."""
    bundle = small_bundle()
    new = {"patients": ("study_id", "age", "age_date"), "observations": ("comparator", "qualifiers", "ref_source"),
           "events": ("codes", "grade_source", "imputed")}
    with fresh_database(kind, tmp_path) as url:
        s = Store(url, today=TODAY)
        try:
            at_revision(s, "0004", bundle)
            with s.engine.connect() as conn:
                for table, columns in new.items():
                    assert not set(columns) & {c["name"] for c in inspect(conn).get_columns(table)}
            before = (count(s, Observation), count(s, Event))
            s.upgrade()
            with s.engine.connect() as conn:
                for table, columns in new.items():
                    assert set(columns) <= {c["name"] for c in inspect(conn).get_columns(table)}
            assert (count(s, Observation), count(s, Event)) == before and min(before) > 0
            first = next(e["resource"] for e in bundle["entry"] if "valueQuantity" in e["resource"])
            first["valueQuantity"]["comparator"] = "<"
            report = do_import(s, bundle, reason="the result was a bound")
            assert report.updated["observations"] == 1
            with s.reading() as session:
                assert session.scalars(select(Observation.comparator).where(Observation.comparator.is_not(None))
                                       ).all() == ["<"]
            assert verify_ok(s)
        finally:
            s.dispose()


def verify_ok(store) -> bool:
    with store.reading() as session:
        return verify(session).ok


def test_sqlite_runs_with_wal_and_foreign_keys(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'x.db'}")
    s.upgrade()
    with s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


# -- imports ----------------------------------------------------------------------------------------

def test_dose_and_event_offsets_are_stored_exported_and_a_changed_offset_is_a_correction(store):
    import json

    bundle = small_bundle()
    resources = {e["resource"]["id"]: e["resource"] for e in bundle["entry"]}
    dose = next(r for r in resources.values() if r["resourceType"] == "MedicationAdministration")
    cond = next(r for r in resources.values() if r["resourceType"] == "Condition")
    dated = next(r for r in resources.values() if r["resourceType"] == "MedicationAdministration" and r is not dose)
    dose["effectiveDateTime"] = dose["effectiveDateTime"][:19] + "+02:00"
    cond["onsetDateTime"] = cond["onsetDateTime"][:19] + "+02:00"
    dated["effectiveDateTime"] = dated["effectiveDateTime"][:10]  # a date: no offset
    do_import(store, bundle)
    with store.reading() as session:
        got = load_cohort(session, 1, SYSTEM)
        trial = admin.trial_by_code(session, "T")
        exported = json.loads(service.export(session, trial, SYSTEM, "fhir")[0])
    offsets = dict(got.doses.select("dose_id", "tz_offset_min").rows())
    assert (offsets[dose["id"]], offsets[dated["id"]]) == (120, None)
    assert dict(got.events.select("event_id", "tz_offset_min").rows())[cond["id"]] == 120
    out = {e["resource"]["id"]: e["resource"] for e in exported["entry"]}
    assert out[dose["id"]]["effectiveDateTime"] == dose["effectiveDateTime"]
    assert out[dose["id"]]["effectiveDateTime"].endswith("+02:00")
    assert out[cond["id"]]["onsetDateTime"] == cond["onsetDateTime"]
    assert out[dated["id"]]["effectiveDateTime"] == dated["effectiveDateTime"]

    dose["effectiveDateTime"] = dose["effectiveDateTime"][:19] + "+01:00"  # the same clock time, another offset
    report = do_import(store, bundle, reason="offset corrected")
    assert (report.updated["doses"], report.updated["events"], report.unchanged["doses"]) == (
        1, 0, len(got.doses) - 1)
    with store.reading() as session:
        entry = session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
    assert (entry.action, entry.entity_id) == ("update", dose["id"])
    assert '"tz_offset_min":60' in entry.after and '"tz_offset_min":120' in entry.before


def test_import_round_trips_the_canonical_record_and_twice_changes_nothing(store, tmp_path):
    from dosewatch.io.fhir import read_fhir

    bundle = small_bundle()
    first = do_import(store, bundle)
    assert first.created == {"patients": 1, "observations": 162, "doses": 19, "events": 2}
    n_audit = count(store, AuditEntry)
    again = do_import(store, bundle)
    assert sum(again.created.values()) == sum(again.updated.values()) == 0
    assert again.unchanged == first.created
    assert count(store, AuditEntry) == n_audit  # nothing changed, nothing audited

    path = tmp_path / "b.json"
    path.write_bytes(body(bundle))
    expected = read_fhir(path).cohort
    with store.reading() as session:
        got = load_cohort(session, 1, SYSTEM)
    for name in ("patients", "observations", "doses", "events"):
        a, b = getattr(got, name).drop("source"), getattr(expected, name).drop("source")
        assert a.sort(a.columns[:2]).equals(b.sort(b.columns[:2])), name
    # converted and original value both kept
    obs = got.observations.filter(pl.col("obs_id") == "seed-1-urate-d2").row(0, named=True)
    assert (obs["orig_value"], obs["orig_unit"], obs["unit"]) == (7.3, "mg/dL", "umol/L")


def test_an_import_with_a_bad_record_writes_nothing_unless_skip_invalid(store):
    bundle = small_bundle()
    bad = next(e["resource"] for e in bundle["entry"] if e["resource"]["id"] == "seed-1-k-d1")
    bad["valueQuantity"]["unit"] = bad["valueQuantity"]["code"] = "furlongs"
    with pytest.raises(InputError) as err:
        do_import(store, bundle)
    assert any("seed-1-k-d1" in p.source and "furlongs" in p.message for p in err.value.problems)
    assert count(store, Patient) == count(store, Observation) == 0
    assert count(store, AuditEntry) == 3  # the sites and the trial only

    report = do_import(store, bundle, skip_invalid=True)
    assert report.created["observations"] == 161
    assert [p.source for p in report.rejected] == ["bundle.json Observation/seed-1-k-d1"]


def test_year_9999_is_refused_with_where_it_is(store):
    bundle = small_bundle()
    bad = next(e["resource"] for e in bundle["entry"] if e["resource"]["id"] == "seed-1-k-d1")
    bad["effectiveDateTime"] = "9999-03-06T07:30:00-05:00"
    with pytest.raises(InputError) as err:
        do_import(store, bundle)
    assert [(p.source, p.field, p.message) for p in err.value.problems] == [
        ("bundle.json Observation/seed-1-k-d1", "date", "date 9999-03-06 is in the future")]


def test_a_correction_needs_a_reason_is_audited_and_reassesses_that_patient_only(store):
    bundle = small_bundle(("seed-1", "seed-3"))
    do_import(store, bundle)
    with store.reading() as session:
        stamps = dict(session.execute(select(Patient.patient_id, Assessment.computed_at)
                                      .join(Assessment, Assessment.patient_pk == Patient.id)).all())
    changed = with_value(bundle, "seed-1-k-d1", 5.1)
    with pytest.raises(InputError, match="reason"):
        do_import(store, changed)
    report = do_import(store, changed, reason="lab re-issued the result")
    assert report.updated["observations"] == 1 and report.patients == ["seed-1"]
    with store.reading() as session:
        entry = session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
        after = dict(session.execute(select(Patient.patient_id, Assessment.computed_at)
                                     .join(Assessment, Assessment.patient_pk == Patient.id)).all())
    assert (entry.action, entry.entity_id, entry.reason) == ("update", "seed-1-k-d1", "lab re-issued the result")
    assert '"orig_value":5.1' in entry.after and '"orig_value":' in entry.before
    assert after["seed-3"] == stamps["seed-3"] and after["seed-1"] != stamps["seed-1"]


def test_a_patient_enrolled_elsewhere_is_refused_to_a_site_user(store):
    do_import(store, small_bundle(), site="B")
    with store.reading() as session:
        site_a = admin.site_by_code(session, "A").id
    nurse_a = Viewer("nurse-a", "nurse", frozenset({site_a}))
    with pytest.raises(InputError) as refused:
        do_import(store, with_value(small_bundle(), "seed-1-k-d1", 5.0), viewer=nurse_a, site=None, reason="x")
    messages = [p.message for p in refused.value.problems]
    assert "patient id seed-1 cannot be used: it is taken in this trial (choose another id)" in messages
    assert not any("site" in m for m in messages)  # never where it is held
    nurse_ab = Viewer("nurse-ab", "nurse", frozenset({site_a, site_a + 1000}))  # two sites, neither is B's
    with pytest.raises(InputError) as refused:
        do_import(store, small_bundle(), viewer=nurse_ab, site=None, reason="x")
    assert "patient seed-1 is new: give the site to enrol at (?site=CODE)" in [p.message for p in refused.value.problems]
    # every record of the refused patient is named, none dropped unlisted
    assert messages.count("record left out: its patient was refused") == len(messages) - 1


# -- the audit chain --------------------------------------------------------------------------------

def _tamper(store, sql: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(text(sql))


@pytest.mark.parametrize("sql, first_bad", [
    ("UPDATE audit SET after = '{\"code\":\"Z\"}' WHERE id = 2", 2),  # an entry edited
    ("DELETE FROM audit WHERE id = 2", 2),  # an entry removed
    ("UPDATE audit SET id = -1 WHERE id = 2; UPDATE audit SET id = 2 WHERE id = 3; "
     "UPDATE audit SET id = 3 WHERE id = -1", 2),  # two entries swapped
    ("DELETE FROM audit WHERE id = 3", 3),  # the newest removed
])
def test_audit_verify_names_the_first_entry_tampered_with(store, sql, first_bad):
    with store.reading() as session:
        assert verify(session).ok
    for statement in sql.split("; "):
        _tamper(store, statement)
    with store.reading() as session:
        result = verify(session)
    assert not result.ok and result.first_bad == first_bad, result


def test_the_audit_command_reports_the_broken_entry(store):
    from typer.testing import CliRunner

    from dosewatch.server_cli import audit_app

    runner = CliRunner()
    assert runner.invoke(audit_app, ["verify", "--db", store.url]).exit_code == 0
    _tamper(store, "UPDATE audit SET actor = 'mallory' WHERE id = 1")
    out = runner.invoke(audit_app, ["verify", "--db", store.url])
    assert out.exit_code == 1 and "entry 1" in out.output


# -- concurrency ------------------------------------------------------------------------------------

def test_two_importers_at_once_leave_no_duplicate_and_lose_nothing(store):
    one, two = synthetic_bundle(6, "p"), synthetic_bundle(6, "p")
    people = [e for e in two["entry"] if e["resource"]["resourceType"] == "Patient"]
    two["entry"] = people + two["entry"][len(two["entry"]) // 3:]  # overlapping parts, same content
    one["entry"] += synthetic_bundle(2, "q")["entry"]
    reports, errors = [], []

    def run(bundle):
        try:
            reports.append(do_import(store, bundle))
        except Exception as exc:  # pragma: no cover - shown in the assertion
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(b,)) for b in (one, two)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors and len(reports) == 2
    ids = {e["resource"]["id"] for b in (one, two) for e in b["entry"] if e["resource"]["resourceType"] == "Observation"}
    assert count(store, Observation) == len(ids)
    assert count(store, Patient) == 8
    assert sum(r.created["observations"] for r in reports) == len(ids)
    with store.reading() as session:
        assert verify(session).ok


@pytest.mark.parametrize("url, said", [
    ("sqlite:///{tmp}/no/such/folder/x.db", "check that its folder exists"),
    ("postgresql+psycopg://someone:secret-pw@127.0.0.1:1/test", "check that PostgreSQL runs"),
    ("mysql://x@y/z", "is not a database dosewatch can use"),
    ("not a url", "is not a database dosewatch can use"),
])
def test_a_database_that_cannot_be_opened_is_one_line_naming_it(tmp_path, url, said):
    """The real command (not the test runner): one line on stderr naming the database, the password
    hidden, and what to do; exit 2; no traceback."""
    import subprocess
    import sys
    from pathlib import Path

    dosewatch = str(Path(sys.executable).parent / "dosewatch")
    run = subprocess.run([dosewatch, "db", "upgrade", "--db", url.format(tmp=tmp_path)], capture_output=True, text=True)
    assert run.returncode == 2 and run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and said in lines[0], run.stderr
    assert "secret-pw" not in run.stderr and "Traceback" not in run.stderr


def test_export_makes_the_output_folder_and_refuses_a_wrong_suffix_first(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    dosewatch = str(Path(sys.executable).parent / "dosewatch")
    seed = Path(__file__).resolve().parents[1] / "src" / "dosewatch" / "data" / "seed" / "seed-patients.json"
    out = tmp_path / "new" / "folder" / "adlb.csv"
    run = subprocess.run([dosewatch, "export", str(seed), "--to", "adlb", "-o", str(out)], capture_output=True, text=True)
    assert run.returncode == 0 and out.stat().st_size > 0, run.stderr
    missing = tmp_path / "missing.json"  # never read: the output is refused first
    run = subprocess.run([dosewatch, "export", str(missing), "--to", "adlb", "-o", str(tmp_path / "out")],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "write adlb as .csv or .xpt" in run.stderr and "missing.json" not in run.stderr
