"""The server as an attacker or a careless client meets it (issue 15): every input gets a 4xx with
where and why, never a 500: damaged, encrypted and deflate64 zips, year-0 dates, NUL characters in
paths, queries, forms and records, ids beyond the database's range, JSON bodies with numbers or
nesting no parser should take; and mutated bundles posted through the API."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_server_support import body, client, demo_app, demo_template, login, json_paths, synthetic_bundle  # noqa: F401

STUDY = Path(__file__).parent / "data" / "sdtm" / "study"


def _zip(files: dict[str, str], method=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


def _study(**edits) -> dict[str, str]:
    files = {p.name: p.read_text() for p in sorted(STUDY.glob("*.csv"))}
    for name, (old, new) in edits.items():
        files[f"{name}.csv"] = files[f"{name}.csv"].replace(old, new)
    return files


def _patched(data: bytes, signature: bytes, offset: int, patch) -> bytes:
    """Every local (PK\\3\\4) or central (PK\\1\\2) header of the zip changed by ``patch``."""
    out = bytearray(data)
    i = out.find(signature)
    while i >= 0:
        patch(out, i + offset)
        i = out.find(signature, i + 4)
    return bytes(out)


def _encrypted(data: bytes) -> bytes:
    def flag(b, at):
        b[at] |= 1
    return _patched(_patched(data, b"PK\x03\x04", 6, flag), b"PK\x01\x02", 8, flag)


def _deflate64(data: bytes) -> bytes:
    def method(b, at):
        b[at:at + 2] = (9).to_bytes(2, "little")
    return _patched(_patched(data, b"PK\x03\x04", 8, method), b"PK\x01\x02", 10, method)


def _garbled(data: bytes) -> bytes:
    out = bytearray(data)
    out[len(out) // 3: len(out) // 3 + 40] = b"\x00" * 40
    return bytes(out)


def _bad_crc(data: bytes) -> bytes:
    out = bytearray(data)
    out[out.find(b"STUDYID")] = ord("X")
    return bytes(out)


ZIPS = {
    "garbled data": (_garbled(_zip(_study())), "damaged in the zip"),
    "encrypted": (_encrypted(_zip(_study())), "encrypted"),
    "deflate64": (_deflate64(_zip(_study())), "method 9"),
    "a bad CRC": (_bad_crc(_zip(_study(), zipfile.ZIP_STORED)), "damaged in the zip"),
    "cut short": (_zip(_study())[:-30], "not a zip file"),
}


@pytest.mark.parametrize("what", list(ZIPS))
def test_damaged_encrypted_and_deflate64_zips_get_422_naming_the_member(client, what):
    content, message = ZIPS[what]
    r = client.post("/api/trials/demo/sdtm", content=content,
                    headers={**login(client, "nurse"), "Content-Type": "application/zip"})
    assert r.status_code == 422 and message in r.text, r.text[:300]


def test_a_good_zip_still_imports(client):
    r = client.post("/api/trials/demo/sdtm?site=OSU", content=_zip(_study()),
                    headers={**login(client, "nurse"), "Content-Type": "application/zip"})
    assert r.status_code == 200 and r.json()["created"]["patients"] == 3, r.text[:300]


@pytest.mark.parametrize("skip", [False, True])
def test_year_0_reference_dates_are_refused_with_the_row_not_a_500(client, skip):
    r = client.post(f"/api/trials/demo/sdtm?skip_invalid={str(skip).lower()}",
                    content=_zip(_study(dm=("2024-", "0000-"))),
                    headers={**login(client, "nurse"), "Content-Type": "application/zip"})
    assert r.status_code == (200 if skip else 422), r.text[:300]
    rejected = r.json()["rejected"]
    assert any(p["source"] == "dm.csv row 1" and p["field"] == "RFXSTDTC" for p in rejected), rejected[:3]


@pytest.mark.parametrize("damage", ["empty dm.csv", "dm.csv with a duplicate column", "lb.csv with a duplicate column"])
def test_skip_invalid_refuses_an_import_whose_file_is_unreadable(client, damage):
    """Its rows could not be named one by one: the import is refused, nothing saved (issue 15)."""
    files = _study()
    if damage == "empty dm.csv":
        files["dm.csv"] = ""
    elif damage.startswith("dm.csv"):
        files["dm.csv"] = files["dm.csv"].replace("SUBJID,SEX", "USUBJID,SEX", 1)
    else:
        files["lb.csv"] = files["lb.csv"].replace("LBSEQ", "USUBJID", 1)
    nurse = {**login(client, "nurse"), "Content-Type": "application/zip"}
    r = client.post("/api/trials/demo/sdtm?site=OSU&skip_invalid=true", content=_zip(files), headers=nurse)
    assert r.status_code == 422, r.text[:300]
    assert not any(p["patient_id"] in ("P1", "P2", "P3")
                   for p in client.get("/api/trials/demo/patients", headers=login(client, "admin")).json())


NUL_REQUESTS = [
    ("GET", "/api/trials/de%00mo/patients"),
    ("GET", "/api/trials/demo/patients/seed%001/assessment"),
    ("GET", "/api/trials/demo/alerts?patient=a%00b"),
    ("GET", "/api/audit?trial=x%00"),
    ("POST", "/api/trials/demo/fhir?site=O%00SU"),
    ("DELETE", "/api/trials/demo/observations/x%00?reason=why"),
    ("GET", "/trials/de%00mo"),
]


@pytest.mark.parametrize("method, url", NUL_REQUESTS, ids=[u for _, u in NUL_REQUESTS])
def test_a_nul_in_a_path_or_query_is_a_400(client, method, url):
    r = client.request(method, url, headers=login(client, "admin"), content=b"{}")
    assert r.status_code == 400 and "NUL" in r.text, (r.status_code, r.text[:200])


def test_a_nul_in_a_form_or_json_body_is_a_400(client):
    r = client.post("/api/token", data={"username": "nurse\x00", "password": "x"})
    assert r.status_code == 400 and "NUL" in r.text
    r = client.post("/api/alerts/1/ack", json={"note": "seen\x00"}, headers=login(client, "admin"))
    assert r.status_code == 400 and "NUL" in r.text


def test_a_nul_in_a_record_is_refused_naming_row_and_field(client):
    files = {name: text.replace(",P1,", ",P\x001,") for name, text in _study().items()}
    r = client.post("/api/trials/demo/sdtm?site=OSU", content=_zip(files),
                    headers={**login(client, "nurse"), "Content-Type": "application/zip"})
    assert r.status_code == 422, r.text[:300]
    rejected = r.json()["rejected"]
    assert any(p["source"] == "dm.csv row 1" and p["field"] == "patient_id" and "NUL" in p["message"]
               for p in rejected), rejected[:3]
    assert any(p["source"].startswith("lb.csv row") for p in rejected), rejected[:5]  # its records named too


@pytest.mark.parametrize("url", ["/api/alerts/99999999999999999999999999/ack", f"/api/alerts/{2**63}/ack",
                                 f"/api/alerts/{2**31}/ack", "/api/alerts/0/ack", "/api/alerts/-1/ack"])
def test_ids_beyond_the_database_range_are_422(client, url):
    assert client.post(url, json={}, headers=login(client, "admin")).status_code == 422


@pytest.mark.parametrize("design", ["crm", "tite-crm"])
def test_a_crm_decision_without_skeleton_or_target_is_a_4xx(client, design):
    admin = login(client, "admin")
    r = client.post("/api/trials/demo/cohort/decision", json={"decision": "accepted", "design": design}, headers=admin)
    assert r.status_code == 400, r.text[:200]
    r = client.post("/api/trials/demo/cohort/decision", json={"decision": "accepted", "design": design,
                                                             "target": 0.3}, headers=admin)
    assert r.status_code == 400 and "skeleton" in r.text, r.text[:200]


@pytest.mark.parametrize("content", [b'{"decision": "accepted", "target": 1e400}',
                                     b'{"decision": "accepted", "dose_level": ' + b"9" * 5000 + b"}",
                                     b'{"decision": "accepted", "reason": ' + b"[" * 5000 + b"]" * 5000 + b"}",
                                     b'{"decision": "accepted", "target": NaN}'])
def test_json_bodies_no_parser_should_take_are_4xx(client, content):
    r = client.post("/api/trials/demo/cohort/decision", content=content,
                    headers={**login(client, "admin"), "Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:200])


BASE = synthetic_bundle(1, "fuzz")


REPLACEMENTS = ["null", "{}", "[]", '"x"', "-1", "true", "1e400", "9" * 5000, "[null]", '"0000-01-01"',
                '"a\\u0000b"', '{"resourceType": "Foo"}', "[" * 150 + "]" * 150]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(choices=st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(REPLACEMENTS)), min_size=1, max_size=3))
def test_mutated_bundles_through_the_api_never_get_a_5xx(client, choices):
    doc = json.loads(json.dumps(BASE))
    marks = {}
    for n, (where, raw) in enumerate(choices):
        paths = [p for p in json_paths(doc) if p]
        path = paths[where % len(paths)]
        target = doc
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = f"@@{n}@@"
        marks[f'"@@{n}@@"'] = raw
    text = json.dumps(doc)
    for mark, raw in marks.items():
        text = text.replace(mark, raw)
    for skip in ("false", "true"):
        r = client.post(f"/api/trials/demo/fhir?site=OSU&skip_invalid={skip}", content=text.encode(),
                        headers=login(client, "nurse"))
        assert r.status_code < 500, r.text[:300]


# -- no refusal reveals another site's ids (issue 15, item 2) ----------------------------------------

def _obs_ids(demo_app, patient_id: str) -> list[str]:
    from sqlalchemy import select

    from dosewatch.store.models import Observation, Patient

    with demo_app.state.store.reading() as session:
        return list(session.scalars(select(Observation.obs_id).join(Patient, Patient.id == Observation.patient_pk)
                                    .where(Patient.patient_id == patient_id).order_by(Observation.obs_id)))


def _bundle_taking(obs_id: str) -> bytes:
    """A new patient whose first observation has the id ``obs_id``."""
    bundle = synthetic_bundle(1, "taker")
    obs = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation")
    obs["id"] = obs_id
    return body(bundle)


def _refusal(client, content: bytes, user: str) -> list[str]:
    r = client.post("/api/trials/demo/fhir", content=content, headers=login(client, user))
    assert r.status_code == 422, r.text[:300]
    return [p["message"] for p in r.json()["rejected"]]


def test_an_id_held_at_another_site_reads_as_one_held_at_your_own(client, demo_app):
    """nurse-north works at NORTH only; seed-1 is an OSU patient, north-1 a NORTH one."""
    theirs, own = _obs_ids(demo_app, "seed-1")[0], _obs_ids(demo_app, "north-1")[0]
    hidden = _refusal(client, _bundle_taking(theirs), "nurse-north")
    visible = _refusal(client, _bundle_taking(own), "nurse-north")
    assert hidden == [f"observation id {theirs} cannot be used: it is taken in this trial (choose another id)"]
    assert visible == [m.replace(theirs, own) for m in hidden]  # the same words, whoever holds the id


def test_another_sites_patient_id_is_refused_as_taken_never_by_its_site(client):
    """seed-2 is an OSU patient; nurse-north (NORTH only, so ?site defaults to NORTH) sends a
    Patient of that id. (Without ?site, a multi-site user gets the answer of a new patient:
    tests/test_server_store.py.)"""
    bundle = _renamed(synthetic_bundle(1, "brand-new"), "brand-new-0", "seed-2")
    messages = _refusal(client, body(bundle), "nurse-north")
    assert "patient id seed-2 cannot be used: it is taken in this trial (choose another id)" in messages
    assert not any("site" in m or "another patient" in m for m in messages)


def _renamed(bundle: dict, old: str, new: str) -> dict:
    return json.loads(json.dumps(bundle).replace(old, new))


def test_the_dashboard_preview_shows_the_same_words(demo_app, client):
    import re

    from fastapi.testclient import TestClient

    from dosewatch.store.demo import PASSWORD

    theirs = _obs_ids(demo_app, "seed-1")[0]
    web = TestClient(demo_app)
    form = web.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    web.post("/login", data={"username": "nurse-north", "password": PASSWORD, "csrf": csrf, "next": "/"})
    html = web.get("/trials/demo/import").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', html).group(1)
    r = web.post("/trials/demo/import", data={"csrf": csrf},
                 files={"file": ("taker.json", _bundle_taking(theirs), "application/json")})
    assert r.status_code == 200
    assert f"observation id {theirs} cannot be used: it is taken in this trial" in r.text
    assert "another patient" not in r.text and "do not work at" not in r.text


# -- login throttling, headers, paths, private files (issue 15, item 6) ------------------------------

def test_wrong_passwords_lock_the_name_out_with_an_audit_entry(client):
    from dosewatch.store.demo import PASSWORD
    from dosewatch.store.logins import MAX_PER_NAME

    for _ in range(MAX_PER_NAME):
        assert client.post("/api/token", data={"username": "nurse", "password": "guess"}).status_code == 401
    r = client.post("/api/token", data={"username": "nurse", "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 60  # even the right password, for now
    assert client.post("/api/token", data={"username": "investigator", "password": PASSWORD}).status_code == 200
    entries = client.get("/api/audit?limit=5", headers=login(client, "admin")).json()
    assert any(e["action"] == "lockout" and e["entity_id"] == "nurse" for e in entries), entries[:2]


def test_a_client_guessing_many_names_is_refused_too(client):
    from dosewatch.store.logins import MAX_PER_CLIENT

    answers = [client.post("/api/token", data={"username": f"user{i}", "password": "guess"}).status_code
               for i in range(MAX_PER_CLIENT + 1)]
    assert answers[:MAX_PER_CLIENT] == [401] * MAX_PER_CLIENT and answers[-1] == 429


@pytest.mark.parametrize("method, url", [
    ("GET", "/api/health"), ("GET", "/api/trials/demo/export?format=fhir"), ("GET", "/api/trials/demo/export?format=sdtm"),
    ("GET", "/api/trials/demo/patients/nobody/assessment"), ("GET", "/api/trials/demo/patients"),
    ("GET", "/api/trials/de%00mo/patients"), ("POST", "/api/alerts/0/ack"), ("GET", "/login"),
    ("GET", "/openapi.json")])
def test_every_response_carries_no_store_and_nosniff(client, method, url):
    r = client.request(method, url, headers=login(client, "admin"), json={})
    assert r.headers["cache-control"] == "no-store" and r.headers["x-content-type-options"] == "nosniff", \
        (r.status_code, dict(r.headers))


def test_messages_name_no_server_path(client):
    from dosewatch.store.db import data_dir

    nurse = login(client, "nurse")
    answers = [client.post("/api/trials/demo/fhir", content=b"{", headers=nurse).text,
               client.post("/api/trials/demo/sdtm", content=_zip({"notes.txt": "x"}),
                           headers={**nurse, "Content-Type": "application/zip"}).text,
               client.post("/api/trials/demo/sdtm", content=_zip(_study(dm=("USUBJID", "X"))),
                           headers={**nurse, "Content-Type": "application/zip"}).text]
    for text in answers:
        assert "/tmp" not in text and str(data_dir()) not in text and "dosewatch-import-" not in text, text[:300]


def test_the_sqlite_file_and_the_server_folders_are_private(tmp_path, monkeypatch):
    import os
    import stat

    from dosewatch.store.db import Store, private_dir, work_dir

    monkeypatch.setenv("DOSEWATCH_DATA", str(tmp_path / "data"))
    store = Store(f"sqlite:///{tmp_path / 'new.db'}")
    store.upgrade()
    assert stat.S_IMODE((tmp_path / "new.db").stat().st_mode) == 0o600
    assert stat.S_IMODE(work_dir().stat().st_mode) == 0o700
    store.dispose()
    if os.getuid() == 0:  # a folder another user made first is refused
        theirs = tmp_path / "theirs"
        theirs.mkdir()
        os.chown(theirs, 65534, 65534)
        with pytest.raises(PermissionError):
            private_dir(theirs)


def test_temporary_folders_a_killed_server_left_are_removed_at_start(tmp_path, monkeypatch):
    import os
    import time

    from dosewatch.api import Settings, create_app
    from dosewatch.store.db import work_dir

    monkeypatch.setenv("DOSEWATCH_DATA", str(tmp_path / "data"))
    stale, fresh = work_dir() / "dosewatch-import-stale", work_dir() / "dosewatch-import-fresh"
    for folder in (stale, fresh):
        folder.mkdir()
        (folder / "bundle.json").write_text("{}")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    create_app(Settings(db_url=f"sqlite:///{tmp_path / 'x.db'}", secret_key="k" * 40)).state.store.dispose()
    assert not stale.exists() and fresh.exists()
