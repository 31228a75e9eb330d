"""The dashboard in a real browser: Debian's chromium driven by Playwright, against the demo served
by uvicorn on 127.0.0.1. Skipped only when /usr/bin/chromium is absent (CI installs it).

Screenshots of every page go to $DOSEWATCH_SCREENSHOTS (the docs use
``DOSEWATCH_SCREENSHOTS=docs/screenshots``), else to the test's temporary folder.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_server_support import free_port, wait_until_up

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run"]
PASSWORD = "demo-password"

SERVER = r"""
import sys
import uvicorn
from dosewatch.api.app import Settings, create_app
from dosewatch.store import demo
from dosewatch.store.db import Store
from dosewatch.web.routes import mount

store = Store(sys.argv[1], today=demo.TODAY)
store.upgrade()
demo.create_demo(store)
app = create_app(Settings(db_url=store.url, secret_key="browser-test-" + "k" * 40, today=demo.TODAY), store=store)
mount(app)  # idempotent: a no-op once create_app mounts the dashboard itself
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser")
    port = free_port()
    env = {**os.environ, "DOSEWATCH_DATA": str(folder)}
    proc = subprocess.Popen([sys.executable, "-c", SERVER, f"sqlite:///{folder / 'demo.db'}", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    wait_until_up(proc, base)
    yield base
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("DOSEWATCH_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def log_in(browser, base: str, user: str, width: int = 1280, height: int = 860):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.goto(base + "/")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/trials/demo/today$"))
    return page


def test_nurse_finds_tls_alert_on_its_day_acknowledges_it_and_finds_the_audit_entry(server, browser, shots):
    page = log_in(browser, server, "nurse")
    assert page.get_by_role("heading", name=re.compile("Today")).is_visible()
    page.screenshot(path=shots / "today.png")
    page.get_by_role("link", name="seed-1", exact=True).click()
    page.wait_for_url(re.compile(r"/patients/seed-1$"))
    # The first TLS alert (laboratory TLS; clinical TLS follows on day 6) is drawn on the day it fired:
    # study day 4, 2007-03-08.
    markers = page.locator('svg.timeline g.tl-alert[data-rule$=":tls"]')
    days = sorted(m.get_attribute("data-date") for m in markers.all())
    assert days[0] == "2007-03-08"
    marker = page.locator('svg.timeline g.tl-alert[data-rule$=":tls"][data-date="2007-03-08"]')
    assert marker.get_attribute("data-study-day") == "4"
    alert_id = marker.get_attribute("data-alert-id")
    page.screenshot(path=shots / "patient.png")
    page.locator("svg.timeline").screenshot(path=shots / "timeline.png")
    # Acknowledge it from the alert history, with the keyboard.
    entry = page.locator(f"#alert-{alert_id}")
    assert "Laboratory tumor lysis syndrome" in entry.inner_text()
    assert "Cairo" in entry.inner_text() or "REVLIMID" in entry.inner_text()  # the rule's source
    note = page.get_by_label("Note").and_(page.locator(f"#note-{alert_id}"))
    note.fill("K repeated: 5.2, haemolysed sample")
    page.evaluate("window.dosewatchMarker = 'still this page'")
    note.press("Enter")
    # htmx replaces only this alert's entry (its own confirmation inside it); no page load, no redirect
    page.locator(f"#alert-{alert_id} .flash").get_by_text("Alert acknowledged").wait_for()
    assert "Acknowledged by nurse" in page.locator(f"#alert-{alert_id}").text_content()
    assert page.evaluate("window.dosewatchMarker") == "still this page"
    assert page.url.endswith("/patients/seed-1") and page.locator("main > .flash").count() == 0
    # The audit trail has the entry.
    page.get_by_role("link", name="this patient's audit entries").click()
    page.wait_for_url(re.compile(r"/audit\?patient=seed-1"))
    row = page.locator("table.audit tbody tr").filter(has_text="acknowledge").first
    assert f"alert {alert_id}" in row.inner_text() and "K repeated: 5.2" in row.inner_text()
    page.screenshot(path=shots / "audit.png")
    # The other pages, for the docs.
    page.get_by_role("link", name="Alert inbox").click()
    page.wait_for_url(re.compile(r"/alerts$"))
    page.screenshot(path=shots / "alerts.png")
    page.goto(server + "/trials/demo/cohort?design=boin&target=0.3")
    assert page.get_by_role("heading", name=re.compile("BOIN boundaries")).is_visible()
    page.screenshot(path=shots / "cohort.png", full_page=True)
    page.get_by_role("link", name="Import").click()
    page.wait_for_url(re.compile(r"/import$"))
    from dosewatch.demo import seed_bundle_path

    page.get_by_label("File").set_input_files(str(seed_bundle_path()))
    page.get_by_role("button", name="Check the file").click()
    page.get_by_role("heading", name=re.compile("Validation report")).wait_for()
    page.screenshot(path=shots / "import.png", full_page=True)
    page.context.close()


def test_other_sites_nurse_finds_none_of_osu_patients(server, browser, shots):
    page = log_in(browser, server, "nurse-north")
    seen = []
    for name in ("Today", "Alert inbox", "Cohort board", "Import", "Audit"):
        page.get_by_role("navigation", name="Pages").get_by_role("link", name=name).click()
        page.wait_for_load_state()
        text = page.locator("main").inner_text()
        seen.append(text)
        assert "seed-" not in text, name
    assert "north-1" in seen[0]
    page.goto(server + "/trials/demo/alerts?site=OSU")
    assert "seed-" not in page.locator("main").inner_text()
    response = page.goto(server + "/trials/demo/patients/seed-1")
    assert response.status == 404 and page.get_by_role("heading", name="Not found").is_visible()
    page.goto(server + "/trials/demo/today")
    page.set_viewport_size({"width": 820, "height": 1180})  # tablet
    page.screenshot(path=shots / "today-north-tablet.png")
    page.context.close()


def test_today_shows_the_dose_actually_given_and_flags_doses_not_recorded(server, browser, shots):
    page = log_in(browser, server, "investigator")
    row = lambda pid: page.locator("table.today tbody tr").filter(  # noqa: E731
        has=page.get_by_role("link", name=pid, exact=True)).inner_text()
    seed3 = row("seed-3")  # 5 mg daily since day 57: the reduction stands
    assert "Give lenalidomide 5 mg" in seed3 and "Give lenalidomide 10 mg" not in seed3
    seed1 = page.locator("table.today.ended tbody tr").filter(  # died on day 10: the study day stops there
        has=page.get_by_role("link", name="seed-1", exact=True)).inner_text()
    assert "dead" in seed1 and "\t10\t" in seed1
    page.context.close()
    page = log_in(browser, server, "nurse-north")
    north = row("north-1")  # no lenalidomide recorded after day 14
    assert "WARNING lenalidomide planned on days 15 and 16 but not recorded" in north
    page.goto(server + "/trials/demo/alerts?patient=north-1")
    assert "lenalidomide planned on days 15 and 16 but not recorded" in page.locator("main").inner_text()
    page.context.close()


def test_investigator_overrides_a_dose_action_with_a_reason(server, browser, shots):
    page = log_in(browser, server, "investigator")
    page.goto(server + "/trials/demo/patients/seed-2")
    form = page.locator("form.decision").first
    form.get_by_role("radio", name="Override", exact=True).check()
    form.get_by_role("button", name="Save decision").click()
    # The browser refuses nothing here (the reason is optional for accept); the server refuses the override.
    # htmx: the refusal appears next to the form, which keeps what was entered
    action = form.locator("xpath=ancestor::article").get_attribute("id")
    page.locator(f"#{action}-problem").get_by_text("an override needs the reason").wait_for()
    assert form.get_by_role("radio", name="Override", exact=True).is_checked()
    form.get_by_label("Reason (required to override)").fill("Neutrophils recovered; continue at level 4")
    form.get_by_role("button", name="Save decision").click()
    page.locator(f"#{action} .flash").get_by_text("Decision saved").wait_for()
    text = page.locator(f"#{action}").inner_text()
    assert "Overridden by investigator" in text and "Neutrophils recovered" in text
    page.locator(f"#{action}").scroll_into_view_if_needed()
    page.screenshot(path=shots / "dose-decision.png")
    page.context.close()


def test_statistician_reads_crm_and_records_the_cohort_decision(server, browser, shots):
    page = log_in(browser, server, "statistician")
    page.goto(server + "/trials/demo/cohort?design=crm&target=0.25")
    assert page.get_by_role("columnheader", name=re.compile("Posterior DLT probability")).is_visible()
    page.screenshot(path=shots / "cohort-crm.png", full_page=True)
    page.goto(server + "/trials/demo/cohort?design=boin&target=0.3")
    form = page.locator("form.decision")
    form.get_by_role("radio", name="Choose another level").check()
    form.get_by_label("Dose level (when choosing another)").select_option("3")
    form.get_by_role("button", name="Record the decision").click()
    page.get_by_text("needs the reason").wait_for()  # refused by the server: nothing saved
    page.goto(server + "/trials/demo/cohort?design=boin&target=0.3")
    form = page.locator("form.decision")
    form.get_by_role("radio", name="Choose another level").check()
    form.get_by_label("Dose level (when choosing another)").select_option("3")
    form.get_by_label("Reason (required when choosing another level)").fill("Safety board: one level lower first")
    form.get_by_role("button", name="Record the decision").click()
    page.get_by_text("Cohort decision saved").wait_for()
    row = page.locator("table.decisions tbody tr").first
    assert "overridden" in row.inner_text() and "Safety board: one level lower first" in row.inner_text()
    page.locator("#decisions").scroll_into_view_if_needed()
    page.screenshot(path=shots / "cohort-decision.png")
    page.context.close()


def test_signing_decisions_and_downloading_the_packet(server, browser, shots, tmp_path):
    """The investigator signs a dose decision; the statistician records and signs the cohort decision;
    the investigator (the committee chair) co-signs it on the board; the packet downloaded from the
    board carries both signatures."""
    page = log_in(browser, server, "investigator")
    page.goto(server + "/trials/demo/patients/seed-1")
    form = page.locator("form.decision").first
    action = form.locator("xpath=ancestor::article").get_attribute("id")
    form.get_by_role("radio", name="Accept", exact=True).check()
    form.get_by_label("Your password, again").fill("not my password")
    form.get_by_role("radio", name=re.compile("^Approved")).check()
    form.get_by_role("button", name="Save decision").click()
    page.locator(f"#{action}-problem").get_by_text("password is not right").wait_for()
    form.get_by_label("Your password, again").fill(PASSWORD)
    form.get_by_role("button", name="Save decision").click()
    page.locator(f"#{action} .flash").get_by_text("Signed").wait_for()
    assert "Approved by investigator (investigator)" in page.locator(f"#{action}").inner_text()
    page.screenshot(path=shots / "dose-decision-signed.png")

    stat = log_in(browser, server, "statistician")
    stat.goto(server + "/trials/demo/cohort?design=boin&target=0.3")
    form = stat.locator("form.decision")
    form.get_by_role("radio", name=re.compile("^Accept the recommendation")).check()
    form.get_by_label("Your password, again").fill(PASSWORD)
    form.get_by_role("radio", name=re.compile("^Approved")).check()
    form.get_by_role("button", name="Record the decision").click()
    stat.get_by_text("Signed:").wait_for()
    stat.context.close()

    page.goto(server + "/trials/demo/cohort?design=boin&target=0.3")
    row = page.locator("table.decisions tbody tr").first
    assert "by statistician (statistician)" in row.inner_text()
    row.get_by_text(re.compile("^Sign decision")).click()
    row.get_by_label("Your password, again").fill(PASSWORD)
    row.get_by_role("radio", name=re.compile("^Approved")).check()
    row.get_by_role("button", name="Sign").click()
    page.get_by_text("Signed:").wait_for()
    row = page.locator("table.decisions tbody tr").first
    assert "by investigator (investigator)" in row.inner_text()
    page.locator("#decisions").scroll_into_view_if_needed()
    page.screenshot(path=shots / "cohort-signed.png")

    with page.expect_download(timeout=180_000) as info:  # the packet is made on the request: seconds
        page.get_by_role("link", name="Download the safety review packet (PDF)").click()
    path = tmp_path / info.value.suggested_filename
    info.value.save_as(path)
    assert path.name == "demo-safety-review-2007-07-22.pdf" and path.read_bytes().startswith(b"%PDF-")
    from pypdf import PdfReader

    text = " ".join(" ".join(p.extract_text() for p in PdfReader(path).pages).split())
    assert "Safety review packet: demo" in text
    signed = text[text.index("9. Decision and signatures"):]
    assert "statistician statistician approved" in signed and "investigator investigator approved" in signed
    page.context.close()


@pytest.mark.parametrize("path, rendered", [("/docs", "#swagger-ui .opblock"), ("/redoc", "text=Download OpenAPI")])
def test_the_api_docs_render_offline(server, browser, shots, path, rendered):
    """Swagger UI and ReDoc from the installed package: both draw the API, and nothing is fetched
    from another host (ReDoc's footer logo from its CDN is blocked by the policy, so it never leaves)."""
    page = browser.new_page()
    fetched: list[str] = []
    page.on("response", lambda r: fetched.append(r.url))
    page.goto(server + path)
    page.wait_for_selector(rendered, timeout=20_000)
    assert "/api/trials/{trial}/fhir" in page.content()
    assert [u for u in fetched if not u.startswith((server, "blob:", "data:"))] == []
    page.screenshot(path=str(shots / f"api{path.replace('/', '-')}.png"))
    page.close()


PAGES = ["/trials/demo/today", "/trials/demo/alerts", "/trials/demo/alerts?status=all", "/trials/demo/patients/seed-1",
         "/trials/demo/patients/seed-3", "/trials/demo/cohort", "/trials/demo/cohort?design=tite-crm&target=0.3",
         "/trials/demo/cohort?design=boin&target=0.3", "/trials/demo/import", "/trials/demo/audit",
         "/trials/demo/settings"]
ROLE_PAGES = {"nurse": PAGES,  # every page; the others where their role adds forms
              "investigator": [p for p in PAGES if "/patients/" in p],
              "statistician": [p for p in PAGES if "/cohort" in p]}


@pytest.mark.parametrize("user", list(ROLE_PAGES))
def test_every_page_passes_axe_core_at_desktop_and_tablet_width(server, browser, user):
    """axe-core (4.12, bundled by axe-playwright-python) on every dashboard page, as each role sees
    it, at 1,280 and 768 px: no serious or critical violation. The login page is checked logged out.
    /docs and /redoc are Swagger UI's and ReDoc's own pages and are not checked here."""
    from axe_playwright_python.sync_playwright import Axe

    axe, found = Axe(), []
    for width in (1280, 768):
        context = browser.new_context(viewport={"width": width, "height": 900})
        page = context.new_page()
        page.goto(server + "/login")
        for path in ["/login"] + ROLE_PAGES[user]:
            if path != "/login":
                page.goto(server + path)
            page.wait_for_load_state("networkidle")
            violations = axe.run(page).response["violations"]
            found += [(width, path, v["id"], v["impact"], [n["html"][:100] for n in v["nodes"][:2]])
                      for v in violations if v["impact"] in ("serious", "critical")]
            if path == "/login":
                page.fill("input[name=username]", user)
                page.fill("input[name=password]", PASSWORD)
                page.click("button[type=submit]")
        context.close()
    assert found == []


def test_the_keyboard_reaches_the_content_and_the_patient_page_prints_the_record(server, browser, shots):
    page = browser.new_page(viewport={"width": 768, "height": 1000})
    page.goto(server + "/login")
    page.fill("input[name=username]", "nurse")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.goto(server + "/trials/demo/patients/seed-1")
    page.keyboard.press("Tab")  # the first stop is the skip link
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.locator(".table-wrap").first.focus()  # a table that scrolls sideways takes the focus (arrow keys)
    assert page.evaluate("document.activeElement.getAttribute('role')") == "region"
    page.emulate_media(media="print")
    assert not page.locator("header nav").is_visible() and not page.locator("main form").first.is_visible()
    assert page.locator("main h1").is_visible() and page.locator("main table").first.is_visible()
    page.screenshot(path=str(shots / "patient-print.png"), full_page=True)
    page.close()


def test_today_worklist_order_and_the_ended_section(server, browser, shots):
    page = log_in(browser, server, "nurse", width=768)
    active = page.locator("table.today:not(.ended) tbody th[scope=row] a").all_inner_texts()
    ended = page.locator("table.today.ended tbody th[scope=row] a").all_inner_texts()
    assert set(ended) == {"seed-1", "seed-4"} and not set(active) & set(ended)  # dead, off study: at the end
    first = page.locator("table.today:not(.ended) tbody tr").first
    assert first.locator(".sev-critical").count() >= 1  # the patient with a critical open alert comes first
    assert first.get_by_text(re.compile(r"^(Give|Do not give) lenalidomide")).count() == 1  # what to do with the dose
    page.screenshot(path=shots / "today-worklist-tablet.png", full_page=True)
    page.context.close()


def test_a_nurse_chooses_si_units_and_reads_the_patient_page_in_them(server, browser, shots):
    page = log_in(browser, server, "nurse")
    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Settings").click()
    page.get_by_label("Show lab values").select_option("si")
    page.get_by_role("form", name="Units").get_by_role("button", name="Save").click()
    page.get_by_text("Units saved.").wait_for()
    page.goto(server + "/trials/demo/patients/seed-1")
    assert page.get_by_text(re.compile("^Values in SI units")).count() == 1
    creatinine = page.locator("svg.timeline text.tl-small", has_text="µmol/L")
    assert creatinine.count() >= 1
    page.locator("svg.timeline").screenshot(path=shots / "timeline-si.png")
    page.goto(server + "/trials/demo/settings")  # back to as reported, for the other tests
    page.get_by_label("Show lab values").select_option("reported")
    page.get_by_role("form", name="Units").get_by_role("button", name="Save").click()
    page.get_by_text("Units saved.").wait_for()
    page.context.close()


def test_accepting_twice_on_the_board_records_one_decision(server, browser):
    page = log_in(browser, server, "statistician")
    board = server + "/trials/demo/cohort?design=tite-crm&target=0.3"
    for attempt in range(2):
        page.goto(board)
        form = page.locator("form.decision")
        form.get_by_role("radio", name=re.compile("^Accept the recommendation")).check()
        form.get_by_role("button", name="Record the decision").click()
        if attempt == 0:
            page.get_by_text("Cohort decision saved").wait_for()
    page.locator("#decision-problem").get_by_text("already recorded").wait_for()  # the second: said on the page
    assert page.locator("form.decision").count() == 1  # the board and its form come back
    rows = page.locator("table.decisions tbody tr", has_text="tite-crm")
    assert rows.count() == 1
    page.context.close()
