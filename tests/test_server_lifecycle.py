"""The trial server's record over time: observations for patients enrolled before (no Patient
resource), records marked deleted with a reason, the daily reassessment, protocol versions, and
the bulk import path (the audit entries of a large import, reading it back)."""
from __future__ import annotations

import datetime as dt
import json

from test_server_support import body, client, demo_app, demo_template, login, small_bundle  # noqa: F401

from dosewatch.store.demo import TODAY


def _without_patient(bundle: dict) -> dict:
    return {**bundle, "entry": [e for e in bundle["entry"] if e["resource"]["resourceType"] != "Patient"]}


def _k(obs_id: str, pid: str, day: str, value: float) -> dict:
    return {"resource": {"resourceType": "Observation", "id": obs_id, "status": "final",
                         "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]},
                         "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": f"{day}T08:00:00+00:00",
                         "valueQuantity": {"value": value, "unit": "mmol/L", "system": "http://unitsofmeasure.org",
                                           "code": "mmol/L"}}}


def test_observations_for_an_enrolled_patient_need_no_patient_resource(client):
    nurse, north = login(client, "nurse"), login(client, "nurse-north")
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [_k("later-k-1", "seed-1", "2007-07-20", 4.3)]}
    r = client.post("/api/trials/demo/fhir", content=body(bundle), headers=nurse)
    assert r.status_code == 200, r.text
    assert r.json()["created"]["observations"] == 1 and r.json()["created"]["patients"] == 0
    assert r.json()["patients_changed"] == ["seed-1"]
    # another site's patient is "not in the bundle", exactly like a patient that does not exist
    for pid in ("seed-2", "nobody"):
        r = client.post("/api/trials/demo/fhir", content=body({**bundle, "entry": [_k("x-1", pid, "2007-07-20", 4.0)]}),
                        headers=north)
        assert r.status_code == 422
        assert r.json()["rejected"][0]["field"] == "subject" and "not in the bundle" in r.json()["rejected"][0]["message"]


def test_a_record_is_marked_deleted_with_a_reason_audited_and_left_out_of_assessments(client):
    nurse, north, monitor = login(client, "nurse"), login(client, "nurse-north"), login(client, "monitor")
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [_k("high-k", "seed-4", "2007-07-21", 6.6)]}
    assert client.post("/api/trials/demo/fhir", content=body(bundle), headers=nurse).status_code == 200

    def k_values():
        a = client.get("/api/trials/demo/patients/seed-4/assessment?as_of=2007-07-22", headers=nurse).json()
        return json.dumps(a)

    assert "high-k" in k_values()
    url = "/api/trials/demo/observations/high-k"
    assert client.delete(url, headers=nurse).status_code == 422  # the reason is required
    assert client.delete(url, params={"reason": "wrong patient"}, headers=north).status_code == 404  # not theirs
    assert client.delete(url, params={"reason": "wrong patient"}, headers=monitor).status_code == 403
    r = client.delete(url, params={"reason": "sample from another patient"}, headers=nurse)
    assert r.status_code == 200 and r.json()["deleted"] is True
    assert client.delete(url, params={"reason": "again"}, headers=nurse).status_code == 400
    assert "high-k" not in k_values()
    assert "high-k" not in json.dumps(client.get("/api/trials/demo/patients/seed-4/assessment", headers=nurse).json())
    entry = client.get("/api/audit", params={"patient": "seed-4", "limit": 1}, headers=nurse).json()[0]
    assert (entry["action"], entry["entity_id"], entry["reason"]) == ("delete", "high-k", "sample from another patient")
    # importing it again leaves it deleted (it is unchanged)
    r = client.post("/api/trials/demo/fhir", content=body(bundle), headers=nurse).json()
    assert r["unchanged"]["observations"] == 1 and "high-k" not in k_values()
    assert client.get("/api/audit/verify", headers=monitor).json()["ok"] is True


def test_the_daily_reassessment_raises_an_overdue_lab_without_new_data(demo_app):
    from dosewatch.store.assess import reassess_all

    store = demo_app.state.store
    with store.reading() as session:
        from sqlalchemy import func, select

        from dosewatch.store.models import Alert
        before = session.scalar(select(func.count()).select_from(Alert).where(Alert.status == "open"))
    store.fixed_today = TODAY + dt.timedelta(days=10)  # ten days on, nothing imported
    assert reassess_all(store) == {"demo": 5}
    with store.reading() as session:
        after = session.scalar(select(func.count()).select_from(Alert).where(Alert.status == "open"))
        assert after > before


def test_the_server_reassesses_on_start(demo_app):
    from fastapi.testclient import TestClient

    from dosewatch.store.models import Assessment

    store = demo_app.state.store
    store.fixed_today = TODAY + dt.timedelta(days=3)
    demo_app.state.settings.reassess_hour = 2
    with TestClient(demo_app) as c:
        from sqlalchemy import select
        for _ in range(200):
            with store.reading() as session:
                if set(session.scalars(select(Assessment.as_of))) == {store.fixed_today}:
                    break
            __import__("time").sleep(0.05)
        else:
            raise AssertionError("not reassessed on start")
        assert c.get("/api/health").status_code == 200


def test_a_protocol_change_is_a_new_version_that_later_assessments_name(demo_app, tmp_path):
    import yaml
    from typer.testing import CliRunner

    from dosewatch.protocols import load_protocol
    from dosewatch.server_cli import trials_app

    store = demo_app.state.store
    proto = load_protocol("lenalidomide-cll-25mg-2007").model_dump(mode="json", exclude_none=True)
    path = tmp_path / "v2.yaml"
    path.write_text(yaml.safe_dump({**proto, "version": 2}))
    runner = CliRunner()
    args = ["set-protocol", "demo", "--protocol", str(path), "--db", store.url, "--as-of", TODAY.isoformat()]
    assert runner.invoke(trials_app, args).exit_code != 0  # --reason is required
    out = runner.invoke(trials_app, [*args, "--reason", "amendment 1"])
    assert out.exit_code == 0, out.output
    assert "version 2" in out.output
    assert runner.invoke(trials_app, [*args, "--reason", "again"]).exit_code == 2  # 2 is not above 2
    from fastapi.testclient import TestClient
    with TestClient(demo_app) as c:
        a = c.get("/api/trials/demo/patients/seed-1/assessment", headers=login(c, "monitor")).json()
        assert a["protocol_version"] == 2
        assert c.get("/api/trials", headers=login(c, "monitor")).json()[0]["protocol_version"] == 2
        entry = c.get("/api/audit", params={"limit": 1}, headers=login(c, "admin")).json()
        assert any(e["reason"] == "amendment 1" for e in c.get("/api/audit", headers=login(c, "admin")).json())
        assert entry
