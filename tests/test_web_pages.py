"""The dashboard through FastAPI's TestClient: every page, login and session cookie, CSRF, roles,
site scoping (a NORTH nurse never sees an OSU patient), import preview and commit, the vendored
htmx file and the stylesheet's contrast."""
from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from dosewatch.api.app import Settings, create_app
from dosewatch.demo import seed_bundle_path
from dosewatch.store import demo, service
from dosewatch.store.db import Store
from dosewatch.store.models import Alert, AuditEntry, CohortDecision, DoseAction
from dosewatch.store.scope import Viewer
from dosewatch.web import queries
from dosewatch.web.routes import mount

STATIC = Path(__file__).parents[1] / "src" / "dosewatch" / "web" / "static"
PAGES = ["today", "alerts", "patients/seed-1", "cohort", "cohort?design=boin&target=0.3", "import", "audit",
         "audit?patient=seed-1", "cohort?design=crm&target=0.25", "cohort?design=tite-crm&target=0.25"]


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("web") / "demo.db"
    store = Store(f"sqlite:///{path}", today=demo.TODAY)
    store.upgrade()
    demo.create_demo(store)
    store.dispose()
    return path


@pytest.fixture
def app(demo_db, tmp_path):
    """A fresh copy of the demo database per test, so that writes do not leak between tests."""
    path = tmp_path / "demo.db"
    shutil.copy(demo_db, path)
    store = Store(f"sqlite:///{path}", today=demo.TODAY)
    application = create_app(Settings(db_url=store.url, secret_key="test-key-" + "x" * 40, today=demo.TODAY),
                             store=store)
    mount(application)  # idempotent: a no-op once create_app mounts the dashboard itself
    yield application
    store.dispose()


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def login(app, user: str, password: str = demo.PASSWORD) -> TestClient:
    client = TestClient(app)
    form = client.get("/login")
    r = client.post("/login", data={"username": user, "password": password, "csrf": csrf_of(form.text), "next": "/"},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    return client


def page(client: TestClient, path: str) -> str:
    r = client.get(f"/trials/demo/{path}")
    assert r.status_code == 200, (path, r.status_code, r.text[:500])
    return r.text


def alert_id(app, patient: str, rule_end: str) -> int:
    with app.state.store.reading() as session:
        rows = service.list_alerts(session, service.trial_by_code(session, "demo"), demo.DEMO, patient_id=patient)
    return next(a["id"] for a in rows if a["rule"].endswith(rule_end))


# ------------------------------------------------------------------------------------------ login

def test_pages_need_a_login_and_come_back_after_it(app):
    client = TestClient(app)
    r = client.get("/trials/demo/alerts?severity=critical", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Ftrials%2Fdemo%2Falerts%3Fseverity%3Dcritical"
    form = client.get(r.headers["location"])
    assert '<label for="username">' in form.text and '<label for="password">' in form.text
    r = client.post("/login", data={"username": "nurse", "password": demo.PASSWORD, "csrf": csrf_of(form.text),
                                    "next": "/trials/demo/alerts?severity=critical"}, follow_redirects=False)
    assert r.headers["location"] == "/trials/demo/alerts?severity=critical"
    assert client.get(r.headers["location"]).status_code == 200


def test_session_cookie_is_httponly_samesite_and_signed(app):
    client = TestClient(app)
    form = client.get("/login")
    r = client.post("/login", data={"username": "nurse", "password": demo.PASSWORD, "csrf": csrf_of(form.text)},
                    follow_redirects=False)
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("dosewatch_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http in tests; https sets it
    value = client.cookies["dosewatch_session"]
    forged = TestClient(app, cookies={"dosewatch_session": value[:-3] + ("AAA" if value[-3:] != "AAA" else "BBB")})
    assert forged.get("/trials/demo/today", follow_redirects=False).status_code == 303


def test_wrong_password_and_missing_login_token(app):
    client = TestClient(app)
    form = client.get("/login")
    r = client.post("/login", data={"username": "nurse", "password": "wrong-password", "csrf": csrf_of(form.text)})
    assert r.status_code == 401 and "Wrong user name or password." in r.text
    assert "dosewatch_session" not in client.cookies
    r = client.post("/login", data={"username": "nurse", "password": demo.PASSWORD, "csrf": "not-the-token"})
    assert r.status_code == 403
    assert "dosewatch_session" not in client.cookies


def test_login_never_redirects_off_site(app):
    client = TestClient(app)
    form = client.get("/login?next=//evil.example/x")
    assert 'value="/"' in form.text
    r = client.post("/login", data={"username": "nurse", "password": demo.PASSWORD, "csrf": csrf_of(form.text),
                                    "next": "https://evil.example/"}, follow_redirects=False)
    assert r.headers["location"] == "/"


def test_api_token_is_not_a_session_and_session_is_not_a_token(app):
    client = login(app, "nurse")
    token = client.post("/api/token", data={"username": "nurse", "password": demo.PASSWORD}).json()["access_token"]
    other = TestClient(app, cookies={"dosewatch_session": token})
    assert other.get("/trials/demo/today", follow_redirects=False).status_code == 303
    session_cookie = client.cookies["dosewatch_session"]
    assert TestClient(app).get("/api/me", headers={"Authorization": f"Bearer {session_cookie}"}).status_code == 401


def test_logout_needs_the_token_and_ends_the_session(app):
    client = login(app, "nurse")
    assert client.post("/logout", data={}, follow_redirects=False).status_code == 403
    html = page(client, "today")
    r = client.post("/logout", data={"csrf": csrf_of(html)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert client.get("/trials/demo/today", follow_redirects=False).status_code == 303


def test_a_deactivated_user_is_out_at_once(app):
    from dosewatch.store.models import User

    client = login(app, "nurse")
    with app.state.store.writing() as session:
        session.scalar(select(User).where(User.name == "nurse")).active = False
    assert client.get("/trials/demo/today", follow_redirects=False).status_code == 303


# ------------------------------------------------------------------------------------------ pages

def test_every_page_renders_with_security_headers_and_no_inline_script(app):
    client = login(app, "nurse")
    for path in PAGES:
        r = client.get(f"/trials/demo/{path}")
        assert r.status_code == 200, path
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"
        assert '<script src="/static/htmx.min.js"' in r.text
        assert re.search(r"<script(?![^>]*\bsrc=)", r.text) is None, path  # no inline script
        assert " style=" not in r.text, path  # no inline style (the policy forbids it)
        assert 'href="https://' not in r.text and 'src="https://' not in r.text  # nothing from a CDN


@pytest.mark.parametrize("user", ["investigator", "statistician"])
def test_every_form_field_has_a_label(app, user):
    client = login(app, user)
    for path in PAGES:
        html = page(client, path)
        for m in re.finditer(r"<(input|select|textarea)\b([^>]*)>", html):
            attrs = m.group(2)
            if 'type="hidden"' in attrs:
                continue
            ident = re.search(r'id="([^"]+)"', attrs)
            wrapped = html.rfind("<label>", 0, m.start()) > html.rfind("</label>", 0, m.start())
            assert wrapped or (ident and f'for="{ident.group(1)}"' in html), (path, attrs)


def test_today_lists_my_patients_with_state_and_open_alerts(app):
    html = page(login(app, "nurse"), "today")
    for pid in ("seed-1", "seed-2", "seed-3", "seed-4"):
        assert f"/patients/{pid}\">{pid}</a>" in html
    assert "north-1" not in html
    assert "state-dead" in html and "state-held" in html
    assert "<strong>Give lenalidomide 5 mg</strong>" in html and "lenalidomide 10 mg" not in html  # seed-3: 5 mg since day 57
    assert 'sev sev-critical' in html  # open critical alerts counted


def test_today_is_a_worklist_with_the_ended_patients_last(app):
    """Per patient what to do this morning: the dose to give, prophylaxis, labs due and overdue, the
    open alerts with what each asks for; the dead and those off study in their own section at the end."""
    html = page(login(app, "admin"), "today")
    active, _, ended = html.partition('<h2 id="ended">Off study or deceased</h2>')
    assert ended and "/patients/seed-1\">seed-1</a>" in ended and "seed-1" not in active  # seed-1 died on day 10
    assert "/patients/seed-4\">seed-4</a>" in ended  # off study
    north = active[active.index("/patients/north-1"):]
    north = north[:north.index("</tr>")]
    assert "<strong>Give lenalidomide" in north and '<li class="overdue">Overdue, days 1-' in north
    assert 1 <= north.count('class="overdue"') <= 3  # one line per set of missing codes (18 alerts), with its days
    seed2 = active[active.index("/patients/seed-2"):]
    seed2 = seed2[:seed2.index("</tr>")]
    assert "<ul class=\"todo-list\">" in seed2 and 'class="sev sev-' in seed2 and "</a>: " in seed2  # alert: what to do
    order = re.findall(r'/patients/(seed-\d|north-\d)">', active)
    assert order == sorted(order, key=lambda p: order.index(p))  # (the order is the page's: most urgent first)


def test_alert_inbox_most_severe_then_oldest_with_rule_source_and_action(app):
    html = page(login(app, "nurse"), "alerts")
    groups = [re.findall(r'<article class="alert compact sev-border-(\w+)"', g) for g in html.split('<section class="patient-alerts"')[1:]]
    assert len(groups) >= 2 and "critical" in groups[0]
    for severities in groups:  # within a patient: most severe first
        assert severities == sorted(severities, key=queries.severity_rank)
    firsts = [g[0] for g in groups]  # patients in the order of their most severe alert
    assert firsts == sorted(firsts, key=queries.severity_rank)
    first = html.index('<article class="alert')
    tls = html.index("lenalidomide-cll-25mg-2007:tls")
    assert tls > first
    assert "REVLIMID (lenalidomide) US Prescribing Information" in html  # the rule's source
    assert "hold lenalidomide" in html  # the protocol action
    assert "seed-1-k-d5" in html  # evidence
    assert "CTCAE v5.0 (27 Nov 2017), Metabolism and nutrition disorders: Hyperkalemia, grade 3" in html  # a grade alert's row


def test_lymphocytosis_is_not_shown_as_a_toxicity_in_the_lab_table(app):
    html = page(login(app, "nurse"), "patients/seed-1")
    table = html[html.index('<table class="labs">'):]
    assert "Leukocytosis" not in table and "Lymphocyte count increased" not in table  # iwCLL 2018: not a toxicity


def test_alert_inbox_filters(app):
    client = login(app, "nurse")
    html = page(client, "alerts?patient=seed-2&severity=urgent")
    patients = set(re.findall(r'/patients/(seed-\d)">', html))
    assert patients == {"seed-2"}
    assert set(re.findall(r'sev-border-(\w+)', html)) == {"urgent"}
    assert "No open alerts with these filters" in page(client, "alerts?site=NORTH")


def test_patient_page_has_timeline_with_tls_alert_on_its_day_labs_and_history(app):
    html = page(login(app, "nurse"), "patients/seed-1")
    svg = html[html.index("<svg"):html.index("</svg>")]
    marker = re.search(r'<g class="tl-alert" data-alert-id="(\d+)" data-rule="lenalidomide-cll-25mg-2007:tls" '
                       r'data-date="2007-03-08" data-study-day="4">', svg)
    assert marker, "the TLS alert is marked on 2007-03-08, study day 4"
    assert "day 4 (2007-03-08): critical alert lenalidomide-cll-25mg-2007:tls" in svg
    assert "prednisone" in svg and "tl-missed" in svg  # the steroid he did not take
    assert "Potassium" in svg and "TLS ≥6" in svg  # a lab against the TLS cut-off
    assert "Hyperkalemia grade" in svg or "G3 6" in svg
    assert 'class="g4"' in html or 'class="g3"' in html  # graded lab table
    assert "Alert history" in html and "adherence:prophylaxis-not-done" in html
    assert "Waiting for an investigator" in html and 'name="decision"' not in html  # the nurse cannot decide


def test_lab_thresholds_come_from_the_criteria_files(app):
    with app.state.store.reading() as session:
        trial = service.trial_by_code(session, "demo")
        view = queries.patient_view(session, trial, demo.DEMO, "seed-1")
        lines = queries.lab_thresholds(view["cohort"], view["protocol"], view["day1"])
    k = {ln["grade"]: ln["value"] for ln in lines["K"]}
    assert k[2] == pytest.approx(5.5) and k[3] == pytest.approx(6.0) and k[4] == pytest.approx(7.0)  # CTCAE v5.0
    assert k[1] == pytest.approx(5.1)  # 1 x this patient's ULN
    assert k[None] == pytest.approx(6.0)  # Cairo-Bishop Table I
    urate_tls = next(ln for ln in lines["URATE"] if ln["grade"] is None)
    assert urate_tls["label"] == "TLS ≥8 mg/dL"  # reported in mg/dL: the mg/dL cut-off (native-unit rule)
    ca = {ln["grade"]: ln["value"] for ln in lines["CA"]}
    assert ca[2] == pytest.approx(8 / 4.008, rel=1e-3)  # CA reported in mg/dL: "< 8 mg/dL", not "< 2.0 mmol/L"
    neut = {ln["grade"]: ln["value"] for ln in lines["NEUT"]}
    assert neut[4] == pytest.approx(0.5) and neut[1] == pytest.approx(2.0)  # iwCLL 2018 Table 5


def test_cohort_board_matches_the_api_and_shows_dlt_status(app):
    client = login(app, "nurse")
    html = page(client, "cohort")
    token = client.post("/api/token", data={"username": "nurse", "password": demo.PASSWORD}).json()["access_token"]
    api = client.get("/api/trials/demo/cohort/next", headers={"Authorization": f"Bearer {token}"}).json()
    assert f"dose level {api['next_dose']}" in html and api["reason"] in html.replace("&gt;", ">")
    assert "DLT (Laboratory tumor lysis syndrome, 2007-03-08)" in html
    assert "your sites only" in html and "north-1" not in html
    boin = page(client, "cohort?design=boin&target=0.3")
    assert "BOIN boundaries" in boin and "escalate if DLTs ≤" in boin
    assert "needs a target" in page(client, "cohort?design=boin")
    assert client.get("/trials/demo/cohort?design=rm -rf").status_code == 400


def test_audit_page_and_chain_status_by_role(app):
    nurse = page(login(app, "nurse"), "audit?patient=seed-1")
    assert "Chain verification is for the admin" in nurse and "Chain verified" not in nurse
    assert "seed-1" in nurse
    assert "Chain verified" not in page(login(app, "nurse"), "audit?patient=seed-1&verify=yes")
    client = login(app, "monitor")
    monitor = page(client, "audit?patient=seed-1")
    assert "Verify the chain" in monitor and "Chain verified" not in monitor  # on request: it reads the whole trail
    assert "Chain verified" in page(client, "audit?patient=seed-1&verify=yes")


def test_unknown_trial_and_patient_are_not_found_pages(app):
    client = login(app, "nurse")
    r = client.get("/trials/nope/today")
    assert r.status_code == 404 and "Not found" in r.text
    assert client.get("/trials/demo/patients/nobody").status_code == 404


# ------------------------------------------------------------------------------------------ scoping

def test_north_nurse_never_sees_osu_patients_on_any_page(app):
    client = login(app, "nurse-north")
    for path in PAGES[:2] + PAGES[3:6] + PAGES[8:] + ["audit", "alerts?site=OSU", "audit?patient=north-1"]:
        html = page(client, path)
        assert "seed-" not in html, path
        for site_mark in (">OSU<", "(OSU)", '"OSU"'):  # (the protocol's source text names the OSU study)
            assert site_mark not in html, path
    html = page(client, "alerts?patient=seed-1")  # the filter echoes what was typed, and finds nothing
    assert "/patients/seed-" not in html and "No open alerts with these filters" in html
    assert "north-1" in page(client, "today")
    assert client.get("/trials/demo/patients/seed-1").status_code == 404
    assert client.get("/trials/demo/audit?patient=seed-1").status_code == 404
    # Acting on another site's alert answers exactly like a missing one, and changes nothing.
    osu_alert = alert_id(app, "seed-1", ":tls")
    r = client.post(f"/trials/demo/alerts/{osu_alert}/ack", data={"csrf": csrf_of(page(client, "today")), "note": "x"})
    assert r.status_code == 404 and "no alert" in r.text
    with app.state.store.reading() as session:
        assert session.get(Alert, osu_alert).status == "open"


# ------------------------------------------------------------------------------------------ actions

def test_acknowledge_needs_the_csrf_token(app):
    client = login(app, "nurse")
    aid = alert_id(app, "seed-1", ":tls")
    assert client.post(f"/trials/demo/alerts/{aid}/ack", data={"note": "x"}).status_code == 403
    assert client.post(f"/trials/demo/alerts/{aid}/ack", data={"note": "x", "csrf": "forged"}).status_code == 403
    other = login(app, "investigator")  # a valid token, but another session's
    token = csrf_of(page(other, "today"))
    assert client.post(f"/trials/demo/alerts/{aid}/ack", data={"note": "x", "csrf": token}).status_code == 403
    with app.state.store.reading() as session:
        assert session.get(Alert, aid).status == "open"


def test_nurse_acknowledges_tls_alert_with_note_and_finds_the_audit_entry(app):
    client = login(app, "nurse")
    aid = alert_id(app, "seed-1", ":tls")
    html = page(client, "alerts")
    assert f'action="/trials/demo/alerts/{aid}/ack"' in html and f'action="/trials/demo/alerts/{aid}/ack"' in page(
        client, "patients/seed-1")
    r = client.post(f"/trials/demo/alerts/{aid}/ack",
                    data={"csrf": csrf_of(html), "note": "K repeated <script>x</script>", "next": "/trials/demo/alerts"},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/trials/demo/alerts?msg=ack#alert-{aid}"
    after = client.get(r.headers["location"]).text
    assert "Alert acknowledged" in after and f'id="alert-{aid}"' not in after  # no longer open
    with app.state.store.reading() as session:
        alert = session.get(Alert, aid)
        assert (alert.status, alert.ack_by) == ("acknowledged", "nurse")
    audit = page(client, "audit?patient=seed-1")
    assert "acknowledge" in audit and "K repeated &lt;script&gt;" in audit and "<script>x" not in audit
    patient = page(client, "patients/seed-1")
    assert "Acknowledged by nurse" in patient
    # A second acknowledgement is refused, not repeated.
    r = client.post(f"/trials/demo/alerts/{aid}/ack", data={"csrf": csrf_of(html), "note": "again"})
    assert r.status_code == 400 and "not open" in r.text


def test_read_only_roles_see_no_ack_form_and_cannot_post(app):
    client = login(app, "monitor")
    html = page(client, "alerts")
    assert ">Acknowledge</button>" not in html and "To do:" in html
    aid = alert_id(app, "seed-1", ":tls")
    r = client.post(f"/trials/demo/alerts/{aid}/ack", data={"csrf": csrf_of(html), "note": "x"})
    assert r.status_code == 403


def test_investigator_overrides_a_dose_action_with_a_reason(app):
    client = login(app, "investigator")
    html = page(client, "patients/seed-1")
    ids = [int(i) for i in re.findall(r'/dose-actions/(\d+)/decision', html)]
    assert ids
    url = f"/trials/demo/dose-actions/{ids[0]}/decision"
    r = client.post(url, data={"csrf": csrf_of(html), "decision": "overridden", "reason": "  "})
    assert r.status_code == 400 and "needs the reason" in r.text
    r = client.post(url, data={"csrf": csrf_of(html), "decision": "overridden", "reason": "TLS treated; resume"},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith(f"msg=decided#action-{ids[0]}")
    with app.state.store.reading() as session:
        action = session.get(DoseAction, ids[0])
        assert (action.status, action.decided_by, action.reason) == ("overridden", "investigator", "TLS treated; resume")
    assert "Overridden by investigator" in client.get(r.headers["location"]).text
    assert "TLS treated; resume" in page(client, "audit?patient=seed-1")


def test_nurse_cannot_decide_dose_actions(app):
    client = login(app, "nurse")
    with app.state.store.reading() as session:
        aid = session.scalar(select(DoseAction.id).limit(1))
    r = client.post(f"/trials/demo/dose-actions/{aid}/decision",
                    data={"csrf": csrf_of(page(client, "today")), "decision": "accepted"})
    assert r.status_code == 403


# ------------------------------------------------------------------------------------------ import

def audit_count(app) -> int:
    with app.state.store.reading() as session:
        return session.scalar(select(func.count()).select_from(AuditEntry))


def test_import_preview_saves_nothing_then_commit(app):
    client = login(app, "nurse")
    html = page(client, "import")
    before = audit_count(app)
    bundle = seed_bundle_path().read_bytes()
    r = client.post("/trials/demo/import", data={"csrf": csrf_of(html), "site": "OSU"},
                    files={"file": ("seed.json", bundle, "application/json")})
    assert r.status_code == 200 and "Validation report for seed.json" in r.text
    assert re.search(r"<th scope=\"row\">observations</th><td>0</td><td>0</td><td>[1-9]\d*</td>", r.text)
    assert audit_count(app) == before  # the preview was rolled back
    token = re.search(r'name="token" value="([^"]+)"', r.text).group(1)
    other = login(app, "investigator")
    assert other.post("/trials/demo/import/commit",
                      data={"csrf": csrf_of(page(other, "today")), "token": token}).status_code == 404
    r = client.post("/trials/demo/import/commit", data={"csrf": csrf_of(r.text), "token": token})
    assert r.status_code == 200 and "Committed seed.json" in r.text
    r = client.post("/trials/demo/import/commit", data={"csrf": csrf_of(r.text), "token": token})
    assert r.status_code == 410


def test_import_of_a_broken_file_lists_the_problems(app):
    client = login(app, "nurse")
    html = page(client, "import")
    r = client.post("/trials/demo/import", data={"csrf": csrf_of(html)},
                    files={"file": ("bad.json", b'{"resourceType": "Bundle", "entry": [{"resource": {}}]', "application/json")})
    assert r.status_code == 200 and "Rejected" in r.text
    r = client.post("/trials/demo/import", data={"csrf": csrf_of(html)},
                    files={"file": ("x.zip", b"not a zip", "application/zip")})
    assert "not a zip file" in r.text
    assert client.post("/trials/demo/import", data={"csrf": "forged"},
                       files={"file": ("x.zip", b"z", "application/zip")}).status_code == 403


def test_north_nurse_cannot_enrol_at_osu(app):
    client = login(app, "nurse-north")
    html = page(client, "import")
    assert '<option value="OSU">' not in html
    r = client.post("/trials/demo/import", data={"csrf": csrf_of(html), "site": "OSU"},
                    files={"file": ("seed.json", seed_bundle_path().read_bytes(), "application/json")})
    assert r.status_code == 404


# ------------------------------------------------------------------------------------------ files

def test_vendored_htmx_matches_its_recorded_hash():
    recorded = re.search(r"`htmx.min.js` \| npm `htmx.org` \| ([\d.]+) \| 0BSD \| `([0-9a-f]{64})`",
                         (STATIC / "VENDORED.md").read_text())
    assert recorded
    assert hashlib.sha256((STATIC / "htmx.min.js").read_bytes()).hexdigest() == recorded.group(2)


def _luminance(hex_colour: str) -> float:
    rgb = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def test_stylesheet_colour_pairs_meet_wcag_aa():
    css = (STATIC / "dashboard.css").read_text()
    colours = dict(re.findall(r"(--[\w-]+): (#[0-9a-f]{6});", css))
    pairs = re.findall(r"pair: (--[\w-]+) on (--[\w-]+)", css)
    assert len(pairs) >= 10
    for fg, bg in pairs:
        a, b = sorted((_luminance(colours[fg]), _luminance(colours[bg])), reverse=True)
        assert (a + 0.05) / (b + 0.05) >= 4.5, (fg, bg)


def test_mount_is_idempotent(app):
    n = len(app.routes)
    mount(app)
    assert len(app.routes) == n


def test_static_files_are_served(app):
    client = TestClient(app)
    assert client.get("/static/htmx.min.js").status_code == 200
    assert "text/css" in client.get("/static/dashboard.css").headers["content-type"]


def test_queries_scope_like_the_service(app):
    north = Viewer("nurse-north", "nurse", frozenset({2}))
    with app.state.store.reading() as session:
        trial = service.trial_by_code(session, "demo")
        assert [r["patient_id"] for r in queries.today_rows(session, trial, north)] == ["north-1"]
        assert all(r["patient_id"] == "north-1" for r in queries.alert_rows(session, trial, north))
        assert [p["patient_id"] for lv in queries.cohort_board(session, trial, north, "3+3", None)["levels"]
                for p in lv["patients"]] == ["north-1"]


# ------------------------------------------------------------------------------------------ long lists

def test_alert_inbox_pages_keep_the_filters_and_the_order(app, monkeypatch):
    client = login(app, "nurse")
    with app.state.store.reading() as session:
        trial = service.trial_by_code(session, "demo")
        expected = [r["id"] for r in queries.alert_rows(session, trial, Viewer("nurse", "nurse", frozenset({1})),
                                                        site="OSU")]
    assert len(expected) > 10
    monkeypatch.setattr(queries, "ALERTS_PER_PAGE", 4)
    seen, url = [], "/trials/demo/alerts?site=OSU"
    while url:
        html = client.get(url).text
        seen.append({int(i) for i in re.findall(r'<article class="alert[^"]*" id="alert-(\d+)"', html)})
        assert f"{len(expected)} open alerts: " in html
        nxt = re.search(r'<a href="([^"]+)" rel="next">', html)
        url = nxt.group(1).replace("&amp;", "&") if nxt else None
        if url:
            assert "site=OSU" in url and "page=" in url  # the filter stays
    # every alert once, most severe then oldest, across the pages (a page shows its alerts by patient)
    assert seen == [set(expected[i:i + 4]) for i in range(0, len(expected), 4)]
    last = client.get("/trials/demo/alerts?site=OSU&page=999").text  # past the end: the last page
    assert f"page {-(-len(expected) // 4)} of {-(-len(expected) // 4)}" in last


def test_today_pages(app, monkeypatch):
    monkeypatch.setattr(queries, "TODAY_PER_PAGE", 2)
    client = login(app, "nurse")
    first = page(client, "today")
    assert "Patients 1–2 of 4 (page 1 of 2)" in first and 'rel="next"' in first
    second = page(client, "today?page=2")
    names = set(re.findall(r'/patients/(seed-\d)">', first)) | set(re.findall(r'/patients/(seed-\d)">', second))
    assert names == {"seed-1", "seed-2", "seed-3", "seed-4"}


# ------------------------------------------------------------------------------------------ cohort decision

def cohort_form(html: str) -> dict[str, str]:
    form = html[html.index('action="/trials/demo/cohort/decision"'):]
    form = form[:form.index("</form>")]
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form))


def test_cohort_decision_form_is_for_the_statistician_only(app):
    for user in ("nurse", "monitor", "investigator"):
        client = login(app, user)
        html = page(client, "cohort?design=boin&target=0.3")
        assert "/cohort/decision" not in html.replace("POST /api/trials/demo/cohort/decision", ""), user
        r = client.post("/trials/demo/cohort/decision", data={"csrf": csrf_of(html), "design": "boin", "target": "0.3",
                                                               "decision": "accepted", "recommended": "4"})
        assert r.status_code == 403, user
    with app.state.store.reading() as session:
        assert session.scalar(select(func.count()).select_from(CohortDecision)) == 0
    assert "Decisions so far" not in page(login(app, "nurse"), "cohort")  # trial-wide: for the all-sites roles


def test_cohort_decision_needs_the_csrf_token(app):
    client = login(app, "statistician")
    fields = cohort_form(page(client, "cohort?design=boin&target=0.3"))
    for token in (None, "forged"):
        data = {**fields, "decision": "accepted"}
        data.pop("csrf") if token is None else data.update(csrf=token)
        assert client.post("/trials/demo/cohort/decision", data=data).status_code == 403
    with app.state.store.reading() as session:
        assert session.scalar(select(func.count()).select_from(CohortDecision)) == 0


def test_statistician_accepts_the_recommendation_and_finds_it_in_the_history_and_audit(app):
    client = login(app, "statistician")
    html = page(client, "cohort?design=boin&target=0.3")
    fields = cohort_form(html)
    assert fields["recommended"] == "4" and "Accept the recommendation: dose level 4" in html
    before = audit_count(app)
    r = client.post("/trials/demo/cohort/decision", data={**fields, "decision": "accepted"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/trials/demo/cohort?design=boin&target=0.3&msg=cohort#decisions"
    with app.state.store.reading() as session:
        row = session.scalars(select(CohortDecision)).one()
        assert (row.design, row.decision, row.dose_level, row.decided_by) == ("boin", "accepted", 4, "statistician")
        entry = session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
        assert (entry.action, entry.entity, entry.entity_id, entry.actor) == ("decide", "cohort_decision", str(row.id),
                                                                              "statistician")
    assert audit_count(app) == before + 1
    board = client.get(r.headers["location"]).text
    assert "Cohort decision saved" in board
    history = board[board.index("Decisions so far"):]
    assert f'id="decision-{row.id}"' in history and "accepted" in history and "boin" in history
    assert "cohort_decision" in page(client, "audit")


def test_choosing_another_level_needs_the_level_and_the_reason(app):
    client = login(app, "statistician")
    fields = cohort_form(page(client, "cohort"))  # 3+3
    url = "/trials/demo/cohort/decision"
    r = client.post(url, data={**fields, "decision": "overridden", "dose_level": "3", "reason": "  "})
    assert r.status_code == 400 and "needs the reason" in r.text
    r = client.post(url, data={**fields, "decision": "overridden", "reason": "DSMB asked for a lower dose"})
    assert r.status_code == 400 and "choose the dose level" in r.text
    with app.state.store.reading() as session:
        assert session.scalar(select(func.count()).select_from(CohortDecision)) == 0
    r = client.post(url, data={**fields, "decision": "overridden", "dose_level": "3",
                               "reason": "DSMB asked for a lower dose"}, follow_redirects=False)
    assert r.status_code == 303
    with app.state.store.reading() as session:
        row = session.scalars(select(CohortDecision)).one()
        assert (row.decision, row.dose_level, row.reason) == ("overridden", 3, "DSMB asked for a lower dose")
        assert row.recommendation["next_dose"] == 4  # the design's, kept beside the decision
    assert "DSMB asked for a lower dose" in page(client, "cohort")


def test_a_decision_on_a_recommendation_that_changed_is_not_saved(app):
    client = login(app, "statistician")
    fields = cohort_form(page(client, "cohort?design=boin&target=0.3"))
    r = client.post("/trials/demo/cohort/decision", data={**fields, "recommended": "2", "decision": "accepted"})
    assert r.status_code == 409 and "nothing was saved" in r.text
    with app.state.store.reading() as session:
        assert session.scalar(select(func.count()).select_from(CohortDecision)) == 0


# ------------------------------------------------------------------------------------------ CRM

@pytest.mark.parametrize("design", ["crm", "tite-crm"])
def test_crm_board_shows_skeleton_and_posterior_and_agrees_with_the_records(app, design):
    from dosewatch.escalation.cohort_cli import next_from_records
    from dosewatch.store.assess import trial_protocol
    from dosewatch.store.records import load_cohort

    nurse = Viewer("nurse", "nurse", frozenset({1}))
    skeleton = [0.05, 0.1, 0.2, 0.3, 0.45]
    with app.state.store.reading() as session:
        trial = service.trial_by_code(session, "demo")
        board = queries.cohort_board(session, trial, nurse, design, 0.25, skeleton)
        # what GET /api/.../cohort/next computes (service.cohort_next), given the same skeleton
        rec, used, _ = next_from_records(load_cohort(session, trial.id, nurse), trial_protocol(session, trial), design,
                                         as_of=demo.TODAY, target=0.25, skeleton=skeleton)
    assert (board["rec"]["next_dose"], board["rec"]["decision"], board["rec"]["mtd"]) == (rec.next_dose, rec.decision, rec.mtd)
    assert board["rec"]["ptox"] == pytest.approx(rec.extra["ptox"], rel=1e-12)
    assert board["n_used"] == len(used)
    html = page(login(app, "nurse"), f"cohort?design={design}&target=0.25&skeleton=0.05,0.1,0.2,0.3,0.45")
    assert f"dose level {rec.next_dose}" in html and rec.reason in html
    levels = html[html.index('<table class="levels">'):]
    for lv, (prior, post) in enumerate(zip(skeleton, rec.extra["ptox"]), start=1):
        assert f"<td>{prior:.3f}</td><td>{post:.3f} " in levels, lv
    assert "Posterior DLT probability (90% interval)" in html and "closest to the target" in html


def test_crm_board_agrees_with_the_api(app):
    client = login(app, "nurse")
    token = client.post("/api/token", data={"username": "nurse", "password": demo.PASSWORD}).json()["access_token"]
    html = page(client, "cohort?design=crm&target=0.25")
    skeleton = re.search(r'id="c-skeleton" name="skeleton" value="" size="28" maxlength="500"\s+placeholder="([^"]+)"',
                         html).group(1)
    assert "the default: dfcrm getprior" in html
    r = client.get(f"/api/trials/demo/cohort/next?design=crm&target=0.25&skeleton={skeleton}",
                   headers={"Authorization": f"Bearer {token}"})
    api = r.json()
    assert r.status_code == 200 and api["skeleton"] == [float(p) for p in skeleton.split(",")]
    assert f"dose level {api['next_dose']}" in html and api["reason"] in html
    board = html[html.index('<table class="levels">'):]
    for prior, post in zip(api["skeleton"], api["ptox"]):
        assert f"<td>{prior:.3f}</td><td>{post:.3f} " in board
    bad = client.get("/api/trials/demo/cohort/next?design=crm&target=0.25&skeleton=0.3,0.2,0.1,0.4,0.5",
                     headers={"Authorization": f"Bearer {token}"})
    assert bad.status_code == 400 and "increasing" in bad.json()["detail"]


def test_statistician_records_a_crm_decision_with_the_skeleton(app):
    client = login(app, "statistician")
    html = page(client, "cohort?design=tite-crm&target=0.25&skeleton=0.05,0.1,0.2,0.3,0.45")
    fields = cohort_form(html)
    assert fields["skeleton"] == "0.05,0.1,0.2,0.3,0.45" and "skeleton 0.05, 0.1, 0.2, 0.3, 0.45" in html
    r = client.post("/trials/demo/cohort/decision", data={**fields, "decision": "overridden", "dose_level": "1",
                                                          "reason": "two patients still in their window"},
                    follow_redirects=False)
    assert r.status_code == 303 and "skeleton=0.05%2C0.1%2C0.2%2C0.3%2C0.45" in r.headers["location"]
    with app.state.store.reading() as session:
        row = session.scalars(select(CohortDecision)).one()
        assert (row.design, row.decision, row.dose_level) == ("tite-crm", "overridden", 1)
        assert row.recommendation["skeleton"] == [0.05, 0.1, 0.2, 0.3, 0.45]
        assert str(row.recommendation["next_dose"]) == fields["recommended"]
    bad = {**fields, "skeleton": "0.5,0.4", "decision": "accepted"}
    assert client.post("/trials/demo/cohort/decision", data=bad).status_code == 400


def test_crm_board_explains_a_bad_skeleton(app):
    client = login(app, "statistician")
    assert "each between 0 and 1, increasing" in page(client, "cohort?design=crm&target=0.25&skeleton=0.3,0.2,0.1,0.4,0.5")
    assert "one probability per dose level" in page(client, "cohort?design=crm&target=0.25&skeleton=a,b")
    assert "the skeleton has 3 levels but protocol" in page(client, "cohort?design=crm&target=0.25&skeleton=0.1,0.2,0.3")
    assert "needs a target" in page(client, "cohort?design=tite-crm")


# ------------------------------------------------------------------------------------------ htmx fragments

HX = {"HX-Request": "true"}


def test_acknowledge_through_htmx_returns_only_the_alert(app):
    client = login(app, "nurse")
    aid = alert_id(app, "seed-1", ":tls")
    html = page(client, "alerts")
    assert (f'hx-post="/trials/demo/alerts/{aid}/ack" hx-target="#alert-{aid}" hx-swap="outerHTML"') in html
    r = client.post(f"/trials/demo/alerts/{aid}/ack", headers={**HX, "HX-Target": f"alert-{aid}"},
                    data={"csrf": csrf_of(html), "note": "K repeated", "next": "/trials/demo/alerts", "view": "inbox"})
    assert r.status_code == 200 and "<html" not in r.text and "<nav" not in r.text
    assert r.text.strip().startswith(f'<article class="alert compact sev-border-critical" id="alert-{aid}"')
    assert "Alert acknowledged" in r.text and "Acknowledged by nurse" in r.text and "K repeated" in r.text
    assert ">Acknowledge</button>" not in r.text  # the form is gone with the open state
    assert "Content-Security-Policy" in r.headers
    with app.state.store.reading() as session:
        assert session.get(Alert, aid).status == "acknowledged"
    assert "K repeated" in page(client, "audit?patient=seed-1")


def test_acknowledge_in_the_patient_history_through_htmx(app):
    client = login(app, "nurse")
    aid = alert_id(app, "seed-1", ":tls")
    html = page(client, "patients/seed-1")
    r = client.post(f"/trials/demo/alerts/{aid}/ack", headers={**HX, "HX-Target": f"alert-{aid}"},
                    data={"csrf": csrf_of(html), "note": "seen", "next": "/trials/demo/patients/seed-1", "view": "history"})
    assert r.status_code == 200 and r.text.strip().startswith(f'<details class="alert sev-border-critical" id="alert-{aid}" open>')
    assert "Acknowledged by nurse" in r.text


def test_htmx_problems_go_next_to_the_form(app):
    client = login(app, "nurse")
    aid = alert_id(app, "seed-1", ":tls")
    r = client.post(f"/trials/demo/alerts/{aid}/ack", headers={**HX, "HX-Target": f"alert-{aid}"},
                    data={"csrf": "forged", "note": "x"})
    assert r.status_code == 403 and r.headers["HX-Retarget"] == f"#alert-{aid}-problem"
    assert r.headers["HX-Reswap"] == "innerHTML" and r.text.strip().startswith('<p class="problem" role="alert">')
    assert f'id="alert-{aid}-problem"' in page(client, "alerts")  # the slot exists next to the form
    # a boosted page (hx-boost) keeps the full error page; a target that is not an element id is not echoed
    r = client.post(f"/trials/demo/alerts/{aid}/ack", headers={**HX, "HX-Boosted": "true"}, data={"csrf": "forged"})
    assert "HX-Retarget" not in r.headers and "<html" in r.text
    r = client.post(f"/trials/demo/alerts/{aid}/ack", headers={**HX, "HX-Target": "x\"><script>"}, data={"csrf": "forged"})
    assert "HX-Retarget" not in r.headers


def test_dose_decision_through_htmx_returns_only_the_action(app):
    client = login(app, "investigator")
    html = page(client, "patients/seed-1")
    action = int(re.findall(r'/dose-actions/(\d+)/decision', html)[0])
    assert f'hx-target="#action-{action}" hx-swap="outerHTML"' in html
    url = f"/trials/demo/dose-actions/{action}/decision"
    headers = {**HX, "HX-Target": f"action-{action}"}
    r = client.post(url, headers=headers, data={"csrf": csrf_of(html), "decision": "overridden", "reason": ""})
    assert r.status_code == 400 and r.headers["HX-Retarget"] == f"#action-{action}-problem"
    assert "an override needs the reason" in r.text
    r = client.post(url, headers=headers, data={"csrf": csrf_of(html), "decision": "overridden", "reason": "resume"})
    assert r.status_code == 200 and r.text.strip().startswith(f'<article class="action" id="action-{action}">')
    assert "Overridden by investigator" in r.text and "Decision saved" in r.text and "/decision\"" not in r.text
    assert f'/dose-actions/{action}/sign"' in r.text  # the decided action offers its signature instead
    with app.state.store.reading() as session:
        assert session.get(DoseAction, action).status == "overridden"


def test_the_api_docs_pages_are_offline_and_keep_the_policy(app):
    """/docs and /redoc load their scripts from this server only, start them from a file (no inline
    script), and send the dashboard's policy (ReDoc's page alone allows inline styles)."""
    import re

    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        for path, bundle in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
            r = client.get(path)
            assert r.status_code == 200
            sources = re.findall(r'<script src="([^"]+)"', r.text)
            assert sources == [f"/api-docs-files/{bundle}", "/static/api-docs.js"]
            assert "<script>" not in r.text and "http" not in r.text
            policy = r.headers["content-security-policy"]
            assert "script-src 'self';" in policy and "frame-ancestors 'none'" in policy
            assert ("'unsafe-inline'" in policy) == (path == "/redoc")
            for src in sources:
                assert client.get(src).status_code == 200


def test_a_refused_decision_comes_back_with_its_message_and_the_values_entered(app):
    client = login(app, "statistician")
    fields = cohort_form(page(client, "cohort"))  # 3+3
    r = client.post("/trials/demo/cohort/decision", data={**fields, "decision": "overridden",
                                                          "reason": "DSMB asked for a lower dose"})
    assert r.status_code == 400
    assert 'id="decision-problem">choose the dose level' in r.text  # beside the form, not a bare error page
    assert 'value="overridden" checked' in r.text and ">DSMB asked for a lower dose</textarea>" in r.text
    assert 'action="/trials/demo/cohort/decision"' in r.text  # the board and its form, ready to correct


def test_accepting_twice_records_one_decision(app):
    """A double click or a resent form: the second accept on the same recommendation is a 409 that
    says so, on the page and through the API; a decision that replaces it is still recorded."""
    client = login(app, "statistician")
    fields = cohort_form(page(client, "cohort"))
    url = "/trials/demo/cohort/decision"
    assert client.post(url, data={**fields, "decision": "accepted"}, follow_redirects=False).status_code == 303
    again = client.post(url, data={**fields, "decision": "accepted"})
    assert again.status_code == 409 and "already recorded" in again.text and "nothing was saved" in again.text
    with app.state.store.reading() as session:
        first = session.scalars(select(CohortDecision)).one()
    from dosewatch.store.demo import PASSWORD

    api = client.post("/api/token", data={"username": "statistician", "password": PASSWORD}).json()["access_token"]
    auth = {"Authorization": f"Bearer {api}"}
    r = client.post("/api/trials/demo/cohort/decision", json={"decision": "accepted", "design": "3+3"}, headers=auth)
    assert r.status_code == 409 and f"#{first.id}" in r.json()["detail"]
    r = client.post("/api/trials/demo/cohort/decision", json={"decision": "accepted", "design": "3+3",
                                                                "supersedes": first.id, "reason": "re-recorded"},
                    headers=auth)
    assert r.status_code == 200
    r = client.post("/api/trials/demo/cohort/decision", json={"decision": "overridden", "design": "3+3",
                                                                "dose_level": 2, "reason": "lower"}, headers=auth)
    assert r.status_code == 200  # a different decision is recorded
    with app.state.store.reading() as session:
        assert session.scalar(select(func.count()).select_from(CohortDecision)) == 3


def test_the_notifications_page_saves_settings_and_keeps_a_refused_form(app):
    client = login(app, "nurse")
    html = page(client, "settings")
    token = csrf_of(html)
    r = client.post("/trials/demo/settings/notifications", data={"csrf": token, "email": "nurse@osu.example",
                                                        "critical_now": "yes", "digest_hour": "7"},
                    follow_redirects=False)
    assert r.status_code == 303
    html = page(client, "settings?msg=notify")
    assert 'value="nurse@osu.example"' in html and '<option value="7" selected>' in html and "saved" in html
    r = client.post("/trials/demo/settings/notifications", data={"csrf": token, "email": "nurse at osu",
                                                        "webhook_url": "https://pager.example/hook"})
    assert r.status_code == 400 and 'id="notify-problem">the e-mail address' in r.text
    assert 'value="https://pager.example/hook"' in r.text  # the values come back with the message
    with app.state.store.reading() as session:
        from dosewatch.store.models import NotificationSetting

        assert session.scalars(select(NotificationSetting)).one().email == "nurse@osu.example"
    assert "Deliveries that failed" not in html
    assert "Deliveries that failed" in page(login(app, "admin"), "settings")
    r = client.post("/trials/demo/settings/notifications", data={"csrf": token, "digest_hour": "7a"})
    assert r.status_code == 400 and "digest hour" in r.text  # refused, not silently "no digest"
    r = client.post("/trials/demo/settings/notifications", data={"csrf": "forged", "email": "x@y.example"})
    assert r.status_code == 403


def test_the_inbox_reads_in_seconds(app):
    """One compact card per alert under its patient: what happened, what to do, the evidence folded
    away, a note prompt for the kind of alert, a button named by its action; units as written."""
    html = page(login(app, "nurse"), "alerts")
    seed1 = html[html.index('id="pa-1"'):html.index("</section>")]
    assert "seed-1" in seed1[:200] and seed1.count("<article") >= 3
    card = seed1[seed1.index("<article"):seed1.index("</article>")]
    assert "Laboratory tumor lysis syndrome (present)" in card and "To do:</strong> Tumor lysis syndrome - hold" in card
    assert card.count("hold lenalidomide, treat TLS") == 2  # the instruction, and once in the folded message
    assert '<details class="why">' in card and "potassium repeated" in card and ">Acknowledge</button>" in card
    assert "Acknowledge alert" not in html and "e.g. K repeated, 5.1" not in html
    flare = html[html.index("Tumor flare reaction (grade 5)") - 600:]
    assert "airway assessed" in flare[:3000]


@pytest.mark.parametrize("ucum, shown", [("10*9/L", "10⁹/L"), ("10*3/uL", "10³/µL"), ("Cel", "°C"),
                                         ("umol/L", "µmol/L"), ("mg/dL", "mg/dL"), ("1", ""), ("meq/L", "mEq/L"),
                                         ("{score}", ""), ("mL/min/{1.73_m2}", "mL/min/1.73 m²")])
def test_units_are_shown_as_people_write_them(ucum, shown):
    from dosewatch.web.display import unit_text

    assert unit_text(ucum) == shown


def test_the_timeline_has_axis_values_labels_that_fit_one_unit_and_doses_in_mg(app):
    """seed-3: 25 mg, then 10, then 5 written on the lenalidomide bars; each lab panel has values on
    its axis and is drawn in the unit the lab reported (the table's), its TLS cut-off too; the
    right-hand labels stay inside the picture; dose actions read as sentences."""
    html = page(login(app, "nurse"), "patients/seed-3")
    svg = html[html.index("<svg"):html.index("</svg>")]
    doses = re.findall(r'class="tl-dose"[^>]*>([^<]+)<', svg)
    assert doses[:1] == ["25 mg"] and "10 mg" in doses and "5 mg" in doses
    assert re.search(r'class="tl-small">mg/dL<', svg)  # phosphate, urate, calcium, creatinine as reported
    assert re.search(r'class="tl-tag" fill="[^"]+"><title>[^<]*</title>TLS ≥4\.49<', svg)  # 1.45 mmol/L in mg/dL
    width = int(re.search(r'viewBox="0 0 (\d+) ', svg).group(1))
    from dosewatch.web.timeline import LEFT, RIGHT, WIDTH

    for x, text in re.findall(r'<text x="([\d.]+)"[^>]*class="tl-tag"[^>]*>(?:<title>[^<]*</title>)?([^<]+)<', svg):
        if float(x) > WIDTH - RIGHT:  # a cut-off's label in the right margin: it fits in the picture
            assert float(x) + 6.2 * len(text) <= width + 2, text
    ticks = re.findall(rf'<text x="{LEFT - 6}" y="[\d.]+" text-anchor="end" class="tl-small">([\d.]+)<', svg)
    assert len(ticks) >= 7 * 2  # at least two values on each lab panel's axis
    seed1 = page(login(app, "nurse"), "patients/seed-1")
    assert "Hold lenalidomide (25 mg, dose level 5)" in seed1 and "grade -" not in seed1


def test_a_user_reads_labs_in_the_units_they_chose(app):
    """seed-1's creatinine as reported (mg/dL), then in SI (µmol/L, 88.4 times the number) on the lab
    table and the timeline; the choice is the user's own and audited; grading does not change."""
    client = login(app, "nurse")
    before = page(client, "patients/seed-1")
    assert "Values as reported" in before and re.search(r'class="tl-small">mg/dL<', before)
    token = csrf_of(page(client, "settings"))
    r = client.post("/trials/demo/settings/units", data={"csrf": token, "units": "si"}, follow_redirects=False)
    assert r.status_code == 303
    after = page(client, "patients/seed-1")
    assert "Values in SI units" in after and "CREAT µmol/L" in after and re.search(r'class="tl-small">µmol/L<', after)
    grades = lambda html: re.findall(r'class="grade-(\d)"', html)  # noqa: E731
    assert grades(after) == grades(before)  # the same cells reach the same grades
    assert "Values as reported" in page(login(app, "investigator"), "patients/seed-1")  # another user's choice
    r = client.post("/trials/demo/settings/units", data={"csrf": token, "units": "furlongs"})
    assert r.status_code == 400 and "units are one of" in r.text
    from dosewatch.store.models import AuditEntry

    with app.state.store.reading() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.entity == "user_preferences")).one()
        assert entry.actor == "nurse" and '"si"' in entry.after
