"""Electronic signatures on decisions: the password again, a meaning, the signature in the hash-chained
audit trail; ``audit verify`` catches an edited signed record, an edited, removed or added signature;
a signed cohort decision is superseded, never changed. On SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import delete, select, update
from test_server_support import (DATABASES, body, client, demo_app, demo_template, fresh_database,  # noqa: F401
                                 login, small_bundle)

from dosewatch.store import admin, service, signatures
from dosewatch.store.audit import verify
from dosewatch.store.db import Store
from dosewatch.store.models import AuditEntry, CohortDecision, DoseAction, Signature
from dosewatch.store.scope import SYSTEM, Forbidden, Refused, Viewer
from dosewatch.store.signatures import SignatureRequest

TODAY = dt.date(2007, 3, 10)
PASSWORD = "a-long-enough-password"
INV = Viewer("inv", "investigator", None)  # site ids filled in the fixture
STAT = Viewer("stat", "statistician", None)


@pytest.fixture(params=DATABASES)
def store(request, tmp_path):
    with fresh_database(request.param, tmp_path) as url:
        s = Store(url, today=TODAY)
        s.upgrade()
        with s.writing() as session:
            site = admin.add_site(session, "test", "A")
            admin.add_user(session, "test", "inv", "investigator", PASSWORD, ["A"])
            admin.add_user(session, "test", "stat", "statistician", PASSWORD)
            admin.add_user(session, "test", "chair", "investigator", PASSWORD, ["A"])
            admin.add_user(session, "test", "nurse", "nurse", PASSWORD, ["A"])
            trial = admin.add_trial(session, "test", "T", "lenalidomide-cll-25mg-2007")
            service.import_records(session, trial, SYSTEM, "fhir", body(small_bundle()), as_of=TODAY, site="A")
            s.site_id = site.id
        yield s
        s.dispose()


def viewer(store, name, role):
    return Viewer(name, role, None if role == "statistician" else frozenset({store.site_id}))


def proposed_action(store) -> int:
    with store.reading() as session:
        return session.scalar(select(DoseAction.id).where(DoseAction.status == "proposed").order_by(DoseAction.id))


def verification(store):
    with store.reading() as session:
        return verify(session)


def test_a_signed_dose_decision_and_its_tampering(store):
    inv = viewer(store, "inv", "investigator")
    aid = proposed_action(store)
    with pytest.raises(Refused, match="password is not right"), store.writing() as session:
        service.decide_dose_action(session, inv, aid, "accepted", None, SignatureRequest("wrong", "approved"))
    with store.reading() as session:  # nothing was saved: the decision rolled back with the signature
        assert session.get(DoseAction, aid).status == "proposed"
        assert session.scalar(select(Signature.id)) is None
    with store.writing() as session:
        out = service.decide_dose_action(session, inv, aid, "accepted", None,
                                         SignatureRequest(PASSWORD, "approved", "labs reviewed"))
    sig = out["signatures"][0]
    assert (sig["signer"], sig["role"], sig["meaning"], sig["reason"]) == ("inv", "investigator", "approved",
                                                                           "labs reviewed")
    assert len(sig["record_hash"]) == 64 and sig["statement"] == signatures.MEANINGS["approved"]
    with store.reading() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "sign")).one()
        assert entry.actor == "inv" and sig["record_hash"] in entry.after and entry.patient_id == "seed-1"
        listed = service.list_dose_actions(session, admin.trial_by_code(session, "T"), inv)
        assert [d["signatures"] for d in listed if d["id"] == aid] == [[sig]]
    good = verification(store)
    assert good.ok and good.signatures == 1
    # the signed record edited behind dosewatch's back
    with store.writing() as session:
        session.execute(update(DoseAction).where(DoseAction.id == aid).values(reason="edited later"))
    bad = verification(store)
    assert not bad.ok and bad.first_bad == entry.id
    assert f"dose action {aid} was changed after it was signed by inv as approved" in bad.problem
    with store.writing() as session:
        session.execute(update(DoseAction).where(DoseAction.id == aid).values(reason=None))
    assert verification(store).ok
    # the signature edited, removed, or one added without its entry
    with store.writing() as session:
        session.execute(update(Signature).values(meaning="reviewed"))
    assert "was edited after it was written" in verification(store).problem
    with store.writing() as session:
        session.execute(update(Signature).values(meaning="approved"))
        row = {c: getattr(session.scalars(select(Signature)).one(), c)
               for c in ("trial_id", "site_id", "entity", "entity_id", "signer", "role", "meaning", "reason", "signed_at",
                         "record_hash")}
        session.execute(delete(Signature))
    assert "was removed" in verification(store).problem
    with store.writing() as session:
        session.add(Signature(id=sig["id"], **row))
    assert verification(store).ok
    with store.writing() as session:
        session.add(Signature(**{**row, "signer": "forger"}))
    assert "has no audit entry" in verification(store).problem


def test_signing_rules(store):
    inv, nurse = viewer(store, "inv", "investigator"), viewer(store, "nurse", "nurse")
    aid = proposed_action(store)
    with pytest.raises(Refused, match="only a decision is signed"), store.writing() as session:
        signatures.sign_dose_action(session, inv, aid, SignatureRequest(PASSWORD, "reviewed"))
    with store.writing() as session:
        service.decide_dose_action(session, inv, aid, "overridden", "patient already off drug")
    for request, message in ((SignatureRequest(PASSWORD, "approved"), "sign it as 'overridden'"),
                             (SignatureRequest(PASSWORD, "overridden"), "needs the reason"),
                             (SignatureRequest(PASSWORD, "agreed"), "one of reviewed")):
        with pytest.raises(Refused, match=message), store.writing() as session:
            signatures.sign_dose_action(session, inv, aid, request)
    with pytest.raises(Forbidden), store.writing() as session:
        signatures.sign_dose_action(session, nurse, aid, SignatureRequest(PASSWORD, "reviewed"))
    with store.writing() as session:
        signatures.sign_dose_action(session, inv, aid, SignatureRequest(PASSWORD, "overridden", "off drug"))
    with pytest.raises(Refused, match="already"), store.writing() as session:
        signatures.sign_dose_action(session, inv, aid, SignatureRequest(PASSWORD, "overridden", "again"))
    with store.writing() as session:  # another meaning by another signer is a second signature
        signatures.sign_dose_action(session, viewer(store, "chair", "investigator"), aid,
                                    SignatureRequest(PASSWORD, "reviewed"))
    assert verification(store).signatures == 2


def test_cohort_decision_signed_cosigned_and_superseded(store):
    stat, chair = STAT, viewer(store, "chair", "investigator")
    with store.writing() as session:
        trial = admin.trial_by_code(session, "T")
        first = service.decide_cohort(session, trial, stat, "3+3", "accepted", None, None, None,
                                      signature=SignatureRequest(PASSWORD, "approved"))
        signatures.sign_cohort_decision(session, trial, chair, first["id"], SignatureRequest(PASSWORD, "approved"))
    with pytest.raises(Refused, match="needs the reason"), store.writing() as session:
        service.decide_cohort(session, admin.trial_by_code(session, "T"), stat, "3+3", "overridden", 1,
                              None, None, supersedes=first["id"])
    with store.writing() as session:
        second = service.decide_cohort(session, admin.trial_by_code(session, "T"), stat, "3+3", "overridden", 1,
                                       "the committee chose the lowest level after a late DLT", None,
                                       signature=SignatureRequest(PASSWORD, "overridden", "late DLT"),
                                       supersedes=first["id"])
    assert second["supersedes"] == first["id"] and second["signatures"][0]["meaning"] == "overridden"
    with pytest.raises(Refused, match="superseded by decision"), store.writing() as session:
        signatures.sign_cohort_decision(session, admin.trial_by_code(session, "T"), chair, first["id"],
                                        SignatureRequest(PASSWORD, "reviewed"))
    with pytest.raises(Refused, match="already superseded"), store.writing() as session:
        service.decide_cohort(session, admin.trial_by_code(session, "T"), stat, "3+3", "accepted", None,
                              "again", None, supersedes=first["id"])
    with store.reading() as session:
        rows = signatures.cohort_decisions(session, admin.trial_by_code(session, "T"))
        old = session.get(CohortDecision, first["id"])
        assert old.decision == "accepted" and old.dose_level == first["dose_level"]  # untouched
    assert [r["id"] for r in rows] == [second["id"], first["id"]]
    assert rows[1]["superseded_by"] == second["id"]
    assert [(s["signer"], s["role"], s["meaning"]) for s in rows[1]["signatures"]] == [
        ("stat", "statistician", "approved"), ("chair", "investigator", "approved")]
    result = verification(store)
    assert result.ok and result.signatures == 3
    with store.writing() as session:  # a signed decision changed in the database is caught
        session.execute(update(CohortDecision).where(CohortDecision.id == first["id"]).values(design="boin"))
    assert f"cohort decision {first['id']} was changed after it was signed" in verification(store).problem


def test_a_trial_can_require_signatures(store):
    inv = viewer(store, "inv", "investigator")
    aid = proposed_action(store)
    with store.writing() as session:
        with pytest.raises(Refused, match="reason"):
            admin.require_signatures(session, "test", admin.trial_by_code(session, "T"), True, "")
        admin.require_signatures(session, "test", admin.trial_by_code(session, "T"), True, "Part 11 SOP")
    with pytest.raises(Refused, match="requires an electronic signature"), store.writing() as session:
        service.decide_dose_action(session, inv, aid, "accepted", None)
    with pytest.raises(Refused, match="requires an electronic signature"), store.writing() as session:
        service.decide_cohort(session, admin.trial_by_code(session, "T"), STAT, "3+3", "accepted", None, None, None)
    with store.writing() as session:
        out = service.decide_dose_action(session, inv, aid, "accepted", None, SignatureRequest(PASSWORD, "approved"))
    assert out["status"] == "accepted" and len(out["signatures"]) == 1
    assert verification(store).ok


def test_audit_verify_command_names_the_changed_signed_record(tmp_path):
    from typer.testing import CliRunner

    from dosewatch.cli import app

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    s = Store(url, today=TODAY)
    s.upgrade()
    with s.writing() as session:
        admin.add_site(session, "test", "A")
        admin.add_user(session, "test", "stat", "statistician", PASSWORD)
        trial = admin.add_trial(session, "test", "T", "lenalidomide-cll-25mg-2007")
        service.import_records(session, trial, SYSTEM, "fhir", body(small_bundle()), as_of=TODAY, site="A")
        did = service.decide_cohort(session, trial, STAT, "3+3", "accepted", None, None, None,
                                    signature=SignatureRequest(PASSWORD, "approved"))["id"]
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "verify", "--db", url])
    assert ok.exit_code == 0 and "1 signature(s) match their records" in ok.stdout
    with s.writing() as session:
        session.execute(update(CohortDecision).where(CohortDecision.id == did).values(reason="added later"))
    s.dispose()
    bad = runner.invoke(app, ["audit", "verify", "--db", url])
    assert bad.exit_code == 1 and f"cohort decision {did} was changed after it was signed by stat" in bad.stdout
    res = runner.invoke(app, ["trials", "signatures", "T", "--required", "--reason", "SOP 12", "--db", url])
    assert res.exit_code == 0 and "signatures required" in res.stdout


def test_api_signing(client):
    from dosewatch.store.demo import PASSWORD as DEMO

    inv, stat, nurse = login(client, "investigator"), login(client, "statistician"), login(client, "nurse")
    action = client.get("/api/trials/demo/dose-actions?status=proposed", headers=inv).json()[0]
    url = f"/api/dose-actions/{action['id']}/decision"
    wrong = {"decision": "accepted", "signature": {"password": "nope", "meaning": "approved"}}
    assert client.post(url, json=wrong, headers=inv).status_code == 400
    assert client.get(f"/api/trials/demo/dose-actions?status=proposed", headers=inv).json()[0]["id"] == action["id"]
    r = client.post(url, json={**wrong, "signature": {"password": DEMO, "meaning": "approved"}}, headers=inv)
    assert r.status_code == 200 and r.json()["signatures"][0]["signer"] == "investigator"
    r = client.post(f"/api/dose-actions/{action['id']}/sign", json={"password": DEMO, "meaning": "reviewed"},
                    headers=nurse)
    assert r.status_code == 403
    r = client.post("/api/trials/demo/cohort/decision", json={"decision": "accepted", "design": "3+3"}, headers=stat)
    did = r.json()["id"]
    r = client.post(f"/api/trials/demo/cohort/decisions/{did}/sign",
                    json={"password": DEMO, "meaning": "approved"}, headers=inv)
    assert r.status_code == 200 and r.json()["role"] == "investigator"
    listed = client.get("/api/trials/demo/cohort/decisions", headers=inv).json()
    assert listed[0]["signatures"][0]["signer"] == "investigator" and "recommendation" not in listed[0]
    assert "recommendation" in client.get("/api/trials/demo/cohort/decisions", headers=stat).json()[0]
    check = client.get("/api/audit/verify", headers=stat).json()
    assert check["ok"] and check["signatures"] == 2


# ---------------------------------------------------------------- the dashboard

def web_login(app, user):
    import re

    from fastapi.testclient import TestClient

    from dosewatch.store.demo import PASSWORD as DEMO

    c = TestClient(app)
    form = c.get("/login").text
    token = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    assert c.post("/login", data={"username": user, "password": DEMO, "csrf": token, "next": "/"},
                  follow_redirects=False).status_code == 303
    return c


def csrf(html):
    import re

    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def test_dashboard_signs_a_dose_decision_and_a_cohort_decision(demo_app):
    import re

    from dosewatch.store.demo import PASSWORD as DEMO

    inv = web_login(demo_app, "investigator")
    html = inv.get("/trials/demo/patients/seed-1").text
    assert 'name="sign_password"' in html and "Electronic signature (optional)" in html
    aid = int(re.findall(r"/dose-actions/(\d+)/decision", html)[0])
    url = f"/trials/demo/dose-actions/{aid}/decision"
    r = inv.post(url, data={"csrf": csrf(html), "decision": "accepted", "sign_password": "wrong",
                            "sign_meaning": "approved"})
    assert r.status_code == 400 and "password is not right" in r.text
    r = inv.post(url, data={"csrf": csrf(html), "decision": "accepted", "sign_meaning": "approved"})
    assert r.status_code == 400 and "password again" in r.text
    r = inv.post(url, data={"csrf": csrf(html), "decision": "accepted", "sign_password": DEMO,
                            "sign_meaning": "approved", "sign_reason": "labs seen"})
    assert r.status_code == 200 and "Signed:" in r.text
    assert "Approved</strong> by investigator (investigator)" in r.text and "labs seen" in r.text
    # the statistician records a signed cohort decision; the investigator (the chair) co-signs it
    stat = web_login(demo_app, "statistician")
    board = stat.get("/trials/demo/cohort?design=boin&target=0.3").text
    form = board[board.index('action="/trials/demo/cohort/decision"'):]
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form[:form.index("</form>")]))
    r = stat.post("/trials/demo/cohort/decision", data={**fields, "decision": "accepted", "sign_password": DEMO,
                                                         "sign_meaning": "approved"}, follow_redirects=False)
    assert r.status_code == 303 and "msg=signed" in r.headers["location"]
    board = inv.get("/trials/demo/cohort?design=boin&target=0.3").text
    did = int(re.findall(r'id="decision-(\d+)"', board)[0])
    assert "by statistician (statistician)" in board and f"/cohort/decisions/{did}/sign" in board
    r = inv.post(f"/trials/demo/cohort/decisions/{did}/sign",
                 data={"csrf": csrf(board), "sign_password": DEMO, "sign_meaning": "approved",
                       "next": "/trials/demo/cohort?design=boin&target=0.3"}, follow_redirects=False)
    assert r.status_code == 303
    board = inv.get(r.headers["location"]).text
    assert "by investigator (investigator)" in board and "Signed:" in board
    # a replacing decision: the old one is shown superseded and can no longer be signed
    board = stat.get("/trials/demo/cohort?design=boin&target=0.3").text
    form = board[board.index('action="/trials/demo/cohort/decision"'):]
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form[:form.index("</form>")]))
    r = stat.post("/trials/demo/cohort/decision", data={**fields, "decision": "overridden", "dose_level": "3",
                                                         "reason": "the committee held at level 3",
                                                         "supersedes": str(did)}, follow_redirects=False)
    assert r.status_code == 303
    board = stat.get("/trials/demo/cohort?design=boin&target=0.3").text
    assert f"superseded by #{did + 1}" in board and f"/cohort/decisions/{did}/sign" not in board
    check = stat.get("/trials/demo/audit?verify=yes").text
    assert "Chain verified" in check and "3 electronic signatures match the signed records" in check
