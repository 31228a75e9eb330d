"""The trial server's HTTP API on the demo database: the newcomer's path, site scoping by every
route, roles, tokens, imports (idempotent, all or nothing), hostile input, and no stack trace out."""
from __future__ import annotations

import io
import json
import zipfile

import pytest
from test_server_support import SECRET, body, client, demo_app, demo_template, login, small_bundle, synthetic_bundle  # noqa: F401

SEED = {"seed-1", "seed-2", "seed-3", "seed-4"}


def test_health_and_openapi(client):
    assert client.get("/api/health").json() == {"status": "ok", "database": "sqlite"}
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/token", "/api/trials/{trial}/fhir", "/api/trials/{trial}/sdtm", "/api/audit/verify",
                 "/api/trials/{trial}/patients/{patient_id}/assessment", "/api/alerts/{alert_id}/ack"):
        assert path in paths


def test_openapi_documents_every_json_response(client):
    spec = client.get("/openapi.json").json()
    ok = {(path, method): op["responses"]["200"] for path, ops in spec["paths"].items() if path.startswith("/api/")
          for method, op in ops.items()}
    untyped = [k for k, r in ok.items() if k != ("/api/trials/{trial}/export", "get")
               and r.get("content", {}).get("application/json", {}).get("schema", {}) in ({}, {"type": "object"})]
    assert untyped == []
    ref = lambda k: ok[k]["content"]["application/json"]["schema"]  # noqa: E731
    assert ref(("/api/trials/{trial}/patients/{patient_id}/assessment", "get")) == {
        "$ref": "#/components/schemas/AssessmentOut"}
    assert ref(("/api/trials/{trial}/alerts", "get"))["items"] == {"$ref": "#/components/schemas/AlertOut"}
    assert set(ok[("/api/trials/{trial}/export", "get")]["content"]) == {"application/fhir+json", "application/zip",
                                                                        "text/csv"}
    schemas = spec["components"]["schemas"]
    assert {"ImportReportOut", "PatientOut", "AuditEntryOut", "VerificationOut", "CohortNextOut"} <= set(schemas)


def test_newcomer_logs_in_imports_reads_the_tls_alert_acknowledges_it_and_sees_the_audit_entry(client):
    nurse = login(client, "nurse")
    r = client.post("/api/trials/demo/fhir", content=body(synthetic_bundle(1, "new")), headers=nurse)
    assert r.status_code == 200, r.text
    assert r.json()["created"]["patients"] == 1 and r.json()["rejected"] == []

    alerts = client.get("/api/trials/demo/alerts", params={"status": "open", "patient": "seed-1"}, headers=nurse).json()
    tls = next(a for a in alerts if a["rule"] == "lenalidomide-cll-25mg-2007:tls")
    assert tls["severity"] == "critical" and tls["evidence"]
    r = client.post(f"/api/alerts/{tls['id']}/ack", json={"note": "potassium repeated, team called"}, headers=nurse)
    assert r.status_code == 200 and r.json()["status"] == "acknowledged" and r.json()["ack_by"] == "nurse"
    assert client.post(f"/api/alerts/{tls['id']}/ack", json={}, headers=nurse).status_code == 400  # not open now

    entry = client.get("/api/audit", params={"patient": "seed-1", "limit": 1}, headers=nurse).json()[0]
    assert (entry["actor"], entry["action"], entry["entity_id"]) == ("nurse", "acknowledge", str(tls["id"]))
    assert entry["after"]["note"] == "potassium repeated, team called"
    assert client.get("/api/audit/verify", headers=login(client, "monitor")).json()["ok"] is True


def test_assessment_is_the_json_of_dosewatch_check(client, tmp_path):
    from dosewatch.demo import seed_bundle_path
    from dosewatch.monitor.report import monitor_path

    got = client.get("/api/trials/demo/patients/seed-2/assessment", params={"as_of": "2007-05-20"},
                     headers=login(client, "investigator")).json()
    want = next(a for a in monitor_path(seed_bundle_path(), "lenalidomide-cll-25mg-2007",
                                        as_of=__import__("datetime").date(2007, 5, 20)).assessments
                if a.patient_id == "seed-2")
    assert got == json.loads(json.dumps(want.as_dict()))
    stored = client.get("/api/trials/demo/patients/seed-2/assessment", headers=login(client, "monitor")).json()
    assert stored["as_of"] == "2007-07-22" and stored["protocol_version"] == 1


def test_stored_assessment_is_dosewatch_check_protocol_as_of_on_the_same_records(client):
    """What the server stored for each seed patient (assessed on import and daily, as of its today) is
    byte for byte what `dosewatch check --protocol --as-of` prints for the same Bundle: the airway flare
    and its discontinuation on day 8, the flare warnings of days 4 and 5, kidney injury on days 6 and 7."""
    from typer.testing import CliRunner

    from dosewatch.cli import app
    from dosewatch.demo import seed_bundle_path

    r = CliRunner().invoke(app, ["check", str(seed_bundle_path()), "--protocol", "lenalidomide-cll-25mg-2007",
                                 "--as-of", "2007-07-22", "--format", "json"])
    assert r.exit_code == 0, r.output
    cli = {a["patient_id"]: a for a in json.loads(r.stdout)}
    monitor = login(client, "monitor")
    for pid in sorted(SEED):
        stored = client.get(f"/api/trials/demo/patients/{pid}/assessment", headers=monitor).json()
        assert stored == cli[pid], pid
    seed1 = cli["seed-1"]
    assert [(a["study_day"], a["action"]) for a in seed1["dose_actions"]] == [(4, "hold"), (8, "discontinue")]
    days = {(a["study_day"], a["rule"].split(":")[-1], a["severity"]) for a in seed1["alerts"]}
    assert {(4, "flare-mild", "warning"), (5, "flare-mild", "warning"), (8, "airway", "critical"),
            (6, "renal", "urgent"), (7, "renal", "urgent")} <= days
    for alert in (a for p in cli.values() for a in p["alerts"]):  # evidence known on the alert's day, the rest later
        assert all(e["date"] <= alert["known_on"] for e in alert["evidence"]), alert
        assert all(e["date"] > alert["known_on"] for e in alert["followup"]), alert
    tls = next(a for a in seed1["alerts"] if a["rule"].endswith(":tls") and a["study_day"] == 4)
    assert "2007-03-09" not in {e["date"] for e in tls["evidence"]}
    assert "2007-03-09" in {e["date"] for e in tls["followup"]}  # the day-5 potassium


# -- site scoping -----------------------------------------------------------------------------------

def test_a_nurse_of_one_site_never_sees_the_other_sites_patients(client):
    north = login(client, "nurse-north")
    assert [p["patient_id"] for p in client.get("/api/trials/demo/patients", headers=north).json()] == ["north-1"]
    for pid in SEED:
        assert client.get(f"/api/trials/demo/patients/{pid}/assessment", headers=north).status_code == 404
        assert client.get(f"/api/trials/demo/patients/{pid}/assessment?as_of=2007-05-01", headers=north).status_code == 404
    assert client.get("/api/trials/demo/patients/nobody/assessment", headers=north).json()["detail"] == \
        "no patient 'nobody' in trial demo"  # the same answer as for another site's patient

    alerts = client.get("/api/trials/demo/alerts", headers=north).json()
    assert alerts and {a["patient_id"] for a in alerts} == {"north-1"}
    osu_alerts = client.get("/api/trials/demo/alerts", headers=login(client, "nurse")).json()
    assert client.post(f"/api/alerts/{osu_alerts[0]['id']}/ack", json={}, headers=north).status_code == 404
    assert {d["patient_id"] for d in client.get("/api/trials/demo/dose-actions", headers=north).json()} <= {"north-1"}

    cohort = client.get("/api/trials/demo/cohort/next", headers=north).json()
    assert cohort["scope"] == "your sites only"
    assert {r["patient_id"] for r in cohort["cohort"]} | set(cohort["not_counted"]) == {"north-1"}

    audit = client.get("/api/audit", headers=north).json()
    assert audit and {e["patient_id"] for e in audit} == {"north-1"}
    assert client.get("/api/audit", params={"patient": "seed-1"}, headers=north).json() == []

    fhir = client.get("/api/trials/demo/export?format=fhir", headers=north).text
    sdtm = zipfile.ZipFile(io.BytesIO(client.get("/api/trials/demo/export?format=sdtm", headers=north).content))
    adlb = client.get("/api/trials/demo/export?format=adlb", headers=north).text
    texts = [fhir, adlb] + [sdtm.read(n).decode() for n in sdtm.namelist()]
    assert all("north-1" in fhir for fhir in texts[:2])
    assert not any(pid in t for pid in SEED for t in texts)


def test_all_sites_roles_see_every_site(client):
    for user in ("admin", "statistician", "monitor"):
        pids = {p["patient_id"] for p in client.get("/api/trials/demo/patients", headers=login(client, user)).json()}
        assert pids == SEED | {"north-1"}


def test_a_site_user_cannot_import_a_patient_of_another_site(client):
    bundle = small_bundle()  # seed-1 is enrolled at OSU
    r = client.post("/api/trials/demo/fhir?skip_invalid=true", content=body(bundle), headers=login(client, "nurse-north"))
    assert r.status_code == 200
    assert r.json()["created"] == {"patients": 0, "observations": 0, "doses": 0, "events": 0}
    messages = {p["message"] for p in r.json()["rejected"]}
    assert "patient id seed-1 cannot be used: it is taken in this trial (choose another id)" in messages
    assert not any("site" in m for m in messages)  # never where the id is held
    assert client.post("/api/trials/demo/fhir?site=OSU", content=body(bundle),
                       headers=login(client, "nurse-north")).status_code == 404  # a site they do not work at


# -- roles ------------------------------------------------------------------------------------------

def test_roles(client):
    monitor, nurse, inv, stat = (login(client, u) for u in ("monitor", "nurse", "investigator", "statistician"))
    alert = client.get("/api/trials/demo/alerts?status=open", headers=nurse).json()[0]
    action = client.get("/api/trials/demo/dose-actions?status=proposed", headers=nurse).json()[0]
    assert client.post(f"/api/alerts/{alert['id']}/ack", json={}, headers=monitor).status_code == 403
    assert client.post("/api/trials/demo/fhir", content=body(small_bundle()), headers=monitor).status_code == 403
    decision = {"decision": "overridden", "reason": "patient already off drug"}
    assert client.post(f"/api/dose-actions/{action['id']}/decision", json=decision, headers=nurse).status_code == 403
    assert client.post(f"/api/dose-actions/{action['id']}/decision", json={"decision": "overridden"},
                       headers=inv).status_code == 400  # an override needs a reason
    r = client.post(f"/api/dose-actions/{action['id']}/decision", json=decision, headers=inv)
    assert r.json()["status"] == "overridden" and r.json()["decided_by"] == "investigator"
    cohort = {"decision": "accepted", "design": "3+3"}
    assert client.post("/api/trials/demo/cohort/decision", json=cohort, headers=inv).status_code == 403
    r = client.post("/api/trials/demo/cohort/decision", json=cohort, headers=stat)
    assert r.status_code == 200 and r.json()["dose_level"] == r.json()["recommendation"]["next_dose"]
    crm = {"decision": "accepted", "design": "crm", "target": 0.25, "skeleton": [0.05, 0.1, 0.2, 0.3, 0.45]}
    r = client.post("/api/trials/demo/cohort/decision", json=crm, headers=stat)
    shown = client.get("/api/trials/demo/cohort/next?design=crm&target=0.25&skeleton=0.05,0.1,0.2,0.3,0.45",
                       headers=stat).json()
    assert r.status_code == 200 and r.json()["dose_level"] == shown["next_dose"]
    assert r.json()["recommendation"]["ptox"] == shown["ptox"]
    no_skeleton = client.post("/api/trials/demo/cohort/decision", json={**crm, "skeleton": None}, headers=stat)
    assert no_skeleton.status_code == 400 and "skeleton" in no_skeleton.json()["detail"]


# -- tokens and errors ------------------------------------------------------------------------------

def test_tokens_expire_and_bad_ones_are_refused(client):
    from dosewatch.api.security import create_token

    assert client.post("/api/token", data={"username": "nurse", "password": "wrong"}).status_code == 401
    assert client.post("/api/token", data={"username": "nobody", "password": "wrong"}).status_code == 401
    expired = create_token("nurse", SECRET, minutes=-1)
    forged = create_token("admin", "another-key-" + "y" * 32, minutes=10)
    for token in (expired, forged, "not-a-token"):
        r = client.get("/api/trials/demo/patients", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401
    assert client.get("/api/trials/demo/patients").status_code == 401


def test_the_one_query_assessment_read_answers_as_every_other_route(client, demo_app):
    """The stored assessment is read in one query that checks the user's sites itself: a bad token
    or an inactive user gets 401, another site's or a missing patient 404, all-sites roles see all."""
    from sqlalchemy import update

    from dosewatch.api.security import create_token
    from dosewatch.store.models import User

    url = "/api/trials/demo/patients/{}/assessment"
    north, nurse, monitor = login(client, "nurse-north"), login(client, "nurse"), login(client, "monitor")
    assert client.get(url.format("north-1"), headers=north).json()["patient_id"] == "north-1"
    assert client.get(url.format("seed-1"), headers=north).status_code == 404
    assert client.get(url.format("nobody"), headers=nurse).status_code == 404
    assert client.get("/api/trials/nothere/patients/seed-1/assessment", headers=nurse).status_code == 404
    assert {client.get(url.format(p), headers=monitor).json()["patient_id"] for p in ("seed-1", "north-1")} == {
        "seed-1", "north-1"}
    for token in (create_token("nurse", SECRET, minutes=-1), create_token("ghost", SECRET, minutes=10)):
        assert client.get(url.format("seed-1"), headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert client.get(url.format("seed-1")).status_code == 401
    with demo_app.state.store.writing() as session:
        session.execute(update(User).where(User.name == "nurse").values(active=False))
    assert client.get(url.format("seed-1"), headers=nurse).status_code == 401
    r = client.get(url.format("seed-1"), headers=monitor)
    assert r.headers["content-type"] == "application/json" and r.json()["as_of"] == "2007-07-22"


def test_no_stack_trace_reaches_the_client(client, monkeypatch):
    from dosewatch.store import service

    def boom(*args, **kwargs):
        raise RuntimeError("secret internals at /srv/db")

    monkeypatch.setattr(service, "list_patients", boom)
    r = client.get("/api/trials/demo/patients", headers=login(client, "admin"))
    assert r.status_code == 500 and r.json()["detail"].startswith("internal error (reference ")
    assert "secret" not in r.text and "Traceback" not in r.text


# -- imports ----------------------------------------------------------------------------------------

def test_api_import_is_idempotent_and_all_or_nothing(client):
    nurse = login(client, "nurse")
    bundle = synthetic_bundle(2, "imp")
    first = client.post("/api/trials/demo/fhir", content=body(bundle), headers=nurse).json()
    second = client.post("/api/trials/demo/fhir", content=body(bundle), headers=nurse).json()
    assert sum(second["created"].values()) == sum(second["updated"].values()) == 0
    assert second["unchanged"] == first["created"]

    obs = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation")
    obs["valueQuantity"]["value"] = 99.0
    r = client.post("/api/trials/demo/fhir", content=body(bundle), headers=nurse)
    assert r.status_code == 422 and "reason" in r.json()["rejected"][0]["message"]
    r = client.post("/api/trials/demo/fhir", params={"reason": "transcription error"}, content=body(bundle), headers=nurse)
    assert r.json()["updated"]["observations"] == 1


def _zip_folder(folder) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, f"study/{path.name}")
    return buf.getvalue()


def test_sdtm_zip_import_twice_changes_nothing(client):
    from pathlib import Path

    north = {**login(client, "nurse-north"), "Content-Type": "application/zip"}
    zipped = _zip_folder(Path(__file__).parent / "data" / "sdtm" / "study")
    first = client.post("/api/trials/demo/sdtm", content=zipped, headers=north)
    assert first.status_code == 200, first.text
    assert first.json()["created"]["patients"] == 3 and first.json()["created"]["observations"] > 0
    second = client.post("/api/trials/demo/sdtm", content=zipped, headers=north).json()
    assert second["unchanged"] == first.json()["created"]
    sites = {p["patient_id"]: p["site"] for p in client.get("/api/trials/demo/patients", headers=north).json()}
    assert sites == {"north-1": "NORTH", "P1": "NORTH", "P2": "NORTH", "P3": "NORTH"}


HOSTILE = [
    ("broken JSON", b'{"resourceType": "Bundle", "entry": [', "malformed JSON"),
    ("a Patient, not a Bundle", json.dumps({"resourceType": "Patient", "id": "x"}).encode(), "not a FHIR Bundle"),
    ("JSON that is a list", b"[1, 2, 3]", "not a FHIR Bundle"),
    ("not UTF-8", b"\xff\xfe\x00garbage", "cannot read"),
    ("an empty body", b"", "malformed JSON"),
]


@pytest.mark.parametrize("what, content, message", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_malformed_uploads_get_a_4xx_with_a_clear_message(client, what, content, message):
    r = client.post("/api/trials/demo/fhir", content=content, headers=login(client, "nurse"))
    assert r.status_code == 422 and message in json.dumps(r.json()), r.text


def _one_observation(**changes) -> dict:
    bundle = synthetic_bundle(1, "hostile")
    obs = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation")
    for path, value in changes.items():
        target = obs
        *parents, last = path.split(".")
        for p in parents:
            target = target[p]
        target[last] = value
    return bundle


@pytest.mark.parametrize("changes, message", [
    ({"valueQuantity.unit": "parsecs", "valueQuantity.code": "parsecs"}, "parsecs"),
    ({"effectiveDateTime": "9999-12-31T08:00:00Z"}, "is in the future"),
    ({"id": "x'); DROP TABLE patients;--"}, "id"),
    ({"valueQuantity.value": "1e400"}, "value"),
], ids=["unknown unit", "year 9999", "SQL in an id", "number as text"])
def test_hostile_records_are_refused_with_where_and_why(client, changes, message):
    r = client.post("/api/trials/demo/fhir", content=body(_one_observation(**changes)), headers=login(client, "nurse"))
    assert r.status_code == 422, r.text
    assert any(message in p["message"] or message in p["field"] for p in r.json()["rejected"])
    assert client.get("/api/health").status_code == 200  # tables still there


def test_html_and_sql_in_text_are_stored_as_text(client):
    bundle = synthetic_bundle(1, "txt")
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    patient["name"] = [{"text": "<script>alert(1)</script>'; DROP TABLE users;--"}]
    nurse = login(client, "nurse")
    assert client.post("/api/trials/demo/fhir", content=body(bundle), headers=nurse).status_code == 200
    r = client.get("/api/trials/demo/patients", headers=nurse)
    assert r.headers["content-type"] == "application/json" and "txt-0" in r.text
    assert client.post("/api/token", data={"username": "nurse", "password": "demo-password"}).status_code == 200


def test_uploads_over_the_limit_get_413(client, demo_app):
    demo_app.state.settings.max_upload_bytes = 1000
    r = client.post("/api/trials/demo/fhir", content=b" " * 5000, headers=login(client, "nurse"))
    assert r.status_code == 413


def test_zip_bombs_and_non_zips_are_refused(client):
    nurse = {**login(client, "nurse"), "Content-Type": "application/zip"}
    assert "not a zip file" in client.post("/api/trials/demo/sdtm", content=b"PK-not-really", headers=nurse).text
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(60):
            zf.writestr(f"x{i}.csv", "a,b\n")
    r = client.post("/api/trials/demo/sdtm", content=buf.getvalue(), headers=nurse)
    assert r.status_code == 422 and "more than 50 files" in r.text


def test_as_of_out_of_range_is_refused(client):
    r = client.get("/api/trials/demo/patients/seed-1/assessment?as_of=9999-01-01", headers=login(client, "admin"))
    assert r.status_code == 422 and "out of range" in r.text


@pytest.mark.parametrize("skeleton", ["0.3,0.1,0.2", "0.1,abc", "0,0.5", "1.5"])
def test_a_bad_skeleton_is_refused_on_every_route(client, skeleton):
    """CRM's skeleton is checked inside each route's refusal, never a 500 (the packet once was not)."""
    admin = login(client, "admin")
    for path in ("cohort/next", "packet"):
        r = client.get(f"/api/trials/demo/{path}", params={"design": "crm", "skeleton": skeleton}, headers=admin)
        assert r.status_code == 400 and "skeleton" in r.text, (path, r.status_code, r.text[:200])
    values = [float(x) if x.replace(".", "").isdigit() else 0.5 for x in skeleton.split(",")]
    r = client.post("/api/trials/demo/cohort/decision", json={"decision": "accepted", "design": "crm",
                                                             "skeleton": values}, headers=admin)
    assert r.status_code in (400, 422), r.text[:200]
