"""The safety review packet from the demo trial, its tables checked against the database (patients,
DLTs and worst grades per dose level from the stored assessments and doses), its PDF text
extracted and compared, its CONSORT-DEFINE items, and the `report review` command on the seed
patients while one is still inside the DLT window."""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from sqlalchemy import select
from test_server_support import client, demo_app, demo_template, login  # noqa: F401

from dosewatch.store.models import Assessment, Patient

SEED = Path(__file__).resolve().parents[1] / "src" / "dosewatch" / "data" / "seed" / "seed-patients.json"


def pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages), len(reader.pages)


def stored(demo_app):
    """Per patient from the database: the stored assessment's DLT status, its events' worst grade
    per term, and the level of the first dose (demo protocol: 5 mg steps, 25 mg = level 5)."""
    out = {}
    with demo_app.state.store.reading() as session:
        for pid, data in session.execute(select(Patient.patient_id, Assessment.data)
                                         .join(Assessment, Assessment.patient_pk == Patient.id)):
            worst: dict[str, int] = {}
            for e in data["events"]:
                if e.get("grade") is not None:
                    worst[e["term"]] = max(worst.get(e["term"], 0), e["grade"])
            out[pid] = {"dlt": data["dlt"].get("status"), "worst": worst, "day1": data.get("day1")}
    return out


@pytest.fixture(scope="module")
def demo_packet(demo_template, tmp_path_factory):
    """The demo trial's packet through the API, as PDF and as CONSORT items (one app for the module)."""
    import shutil

    from fastapi.testclient import TestClient

    from dosewatch.api import Settings, create_app
    from dosewatch.store.db import Store
    from dosewatch.store.demo import PASSWORD, TODAY

    path = tmp_path_factory.mktemp("packet") / "demo.db"
    shutil.copy(demo_template, path)
    store = Store(f"sqlite:///{path}", today=TODAY)
    app = create_app(Settings(secret_key="k" * 40, today=TODAY), store=store)
    with TestClient(app) as c:
        token = c.post("/api/token", data={"username": "statistician", "password": PASSWORD}).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        c.post("/api/trials/demo/cohort/decision", json={"decision": "accepted", "design": "3+3",
                                                         "signature": {"password": PASSWORD, "meaning": "approved"}},
               headers=auth).raise_for_status()
        pdf = c.get("/api/trials/demo/packet?design=3%2B3", headers=auth)
        items = c.get("/api/trials/demo/packet?design=3%2B3&format=json", headers=auth).json()
        html = c.get("/api/trials/demo/packet?design=3%2B3&format=html", headers=auth).text
    yield app, pdf, items, html
    store.dispose()


def test_the_pdf_is_a_packet(demo_packet):
    _, pdf, _, html = demo_packet
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-")
    text, pages = pdf_text(pdf.content)
    assert pages >= 6
    for heading in ("Safety review packet: demo", "1. Enrolment and exposure by dose level",
                    "2. Worst grade per patient and term, by dose level", "3. Dose-limiting toxicities",
                    "4. Grade 4–5 events and deaths", "5. Every patient over time", "6. Tumor lysis labs by dose level",
                    "7. The design and the next cohorts", "8. CONSORT-DEFINE and SPIRIT-DEFINE items from the data",
                    "9. Decision and signatures"):
        assert heading in text, heading
    # self-contained: nothing is fetched
    assert not re.search(r'(src|href)="https?://', html)


def test_the_tables_agree_with_the_database(demo_packet):
    app, pdf, items, _ = demo_packet
    db = stored(app)
    started = {pid: v for pid, v in db.items() if v["day1"]}
    flow = items["consort_define"]["13a participant flow by dose level"]
    # every patient who started the drug is at level 5 (25 mg) in the demo protocol
    assert {b["level"]: b["allocated"] for b in flow if b["allocated"]} == {5: len(started)}
    assert sum(b["dlts"] for b in flow) == sum(v["dlt"] == "DLT" for v in started.values())
    assert sum(b["in_dlt_window"] for b in flow) == sum(v["dlt"] == "in window" for v in started.values())
    # worst grade per patient and term, by level: counted from the stored assessments
    expected: dict[str, dict[str, int]] = {}
    for v in started.values():
        for term, grade in v["worst"].items():
            expected.setdefault(term, {}).setdefault(str(grade), 0)
            expected[term][str(grade)] += 1
    harms = {h["term"]: h["by level"]["5"] for h in items["consort_define"]["19 harms (worst grade per patient and term)"]}
    assert harms == expected
    text, _ = pdf_text(pdf.content)
    exposure = text[text.index("1. Enrolment"):text.index("2. Worst grade")]
    assert re.search(rf"\n5 25 mg {len(started)} ", exposure), exposure[:400]
    dlts = text[text.index("3. Dose-limiting"):text.index("4. Grade 4")]
    for pid, v in started.items():
        assert (pid in dlts) == (v["dlt"] == "DLT"), pid
    flat = " ".join(dlts.split())  # table cells wrap
    assert "Febrile neutropenia" in flat and "Laboratory tumor lysis syndrome" in flat


def test_the_signed_decision_is_in_the_packet(demo_packet):
    _, pdf, _, _ = demo_packet
    text, _ = pdf_text(pdf.content)
    signatures = " ".join(text[text.index("9. Decision and signatures"):].split())
    assert "Decision #1" in signatures and "statistician" in signatures and "approved" in signatures
    assert re.search(r"[0-9a-f]{64}", signatures.replace(" ", ""))  # the record's SHA-256


def test_report_review_command_with_a_patient_in_the_window(tmp_path):
    from typer.testing import CliRunner

    from dosewatch.cli import app

    out, html, items = tmp_path / "packet.pdf", tmp_path / "packet.html", tmp_path / "items.json"
    res = CliRunner().invoke(app, ["report", "review", str(SEED), "--protocol", "lenalidomide-cll-escalation",
                                   "--design", "boin", "--target", "0.25", "--as-of", "2007-06-10", "--cohort-sizes",
                                   "3", "-o", str(out), "--html", str(html), "--items", str(items), "--trial", "T1"])
    assert res.exit_code == 0, res.output
    text, _ = pdf_text(out.read_bytes())
    assert "Safety review packet: T1" in text and "seed-4" in text
    # seed-4 (day 7 of 28 on 2007-06-10) is resolved both ways before the next cohort
    assert "P:N 5NNN" in text and "P:T 5TTT" in text
    consort = json.loads(items.read_text())
    assert consort["consort_define"]["13a participant flow by dose level"][5]["in_dlt_window"] == 1
    assert [c["level"] for c in consort["consort_define"]["13a path of doses (cohorts in order of day 1)"]] == [6]
    assert "<html" in html.read_text()
    bad = CliRunner().invoke(app, ["report", "review", str(SEED), "--protocol", "lenalidomide-cll-escalation",
                                   "--design", "boin", "-o", str(tmp_path / "p.pdf")])
    assert bad.exit_code == 2 and "target" in bad.stderr


def test_the_packet_gives_the_designs_operating_characteristics(tmp_path):
    """SPIRIT-DEFINE item 8 from the simulation that matches the R packages: the packet's figures are
    escalation.simulate's on the same settings, from the protocol's start level; a safe curve is
    escalated to the top, a toxic one stops."""
    from typer.testing import CliRunner

    from dosewatch.cli import app
    from dosewatch.escalation.simulate import simulate

    curve = "0.02,0.05,0.1,0.25,0.4,0.55"
    out, items = tmp_path / "packet.pdf", tmp_path / "items.json"
    res = CliRunner().invoke(app, ["report", "review", str(SEED), "--protocol", "lenalidomide-cll-escalation",
                                   "--design", "boin", "--target", "0.25", "--as-of", "2007-06-10", "-o", str(out),
                                   "--items", str(items), "--oc-true-tox", curve, "--oc-trials", "500"])
    assert res.exit_code == 0, res.output
    oc = json.loads(items.read_text())["spirit_define"]["operating characteristics"]
    direct = simulate("boin", [float(x) for x in curve.split(",")], target=0.25, max_cohorts=10, trials=500,
                      seed=1, start_dose=1).to_dict()
    assert oc["selected as MTD (%)"] == [round(x, 1) for x in direct["selection_pct"]]
    assert oc["mean patients per level"] == [round(x, 2) for x in direct["mean_patients"]]
    assert sum(oc["selected as MTD (%)"]) + oc["stopped without an MTD (%)"] == pytest.approx(100, abs=0.5)
    assert max(range(6), key=lambda i: oc["selected as MTD (%)"][i]) == 3  # level 4: true 0.25
    text, _ = pdf_text(out.read_bytes())
    assert "Operating characteristics" in text and "500 times" in text

    from dosewatch.protocols import builtin
    from dosewatch.review.oc import operating_characteristics

    proto = builtin("lenalidomide-cll-escalation")
    toxic = operating_characteristics(proto, "3+3", {}, [0.9] * 6, trials=300)
    safe = operating_characteristics(proto, "3+3", {}, [0.01] * 6, trials=300)
    assert toxic["stopped without an MTD (%)"] > 90 and safe["selected as MTD (%)"][-1] > 90
    with pytest.raises(ValueError, match="6"):
        operating_characteristics(proto, "3+3", {}, [0.1, 0.2], trials=10)
    with pytest.raises(ValueError, match="accrual"):
        operating_characteristics(proto, "tite-boin", {"target": 0.25}, [0.1] * 6, trials=10)
    bad = CliRunner().invoke(app, ["report", "review", str(SEED), "--protocol", "lenalidomide-cll-escalation",
                                   "--design", "3+3", "-o", str(tmp_path / "p.pdf"), "--oc-true-tox", "0.1,0.2"])
    assert bad.exit_code != 0 and "protocol has 6" in bad.stderr


def test_the_servers_packet_takes_a_true_curve(demo_packet):
    from fastapi.testclient import TestClient

    from dosewatch.store.demo import PASSWORD

    app = demo_packet[0]
    with TestClient(app) as c:
        token = c.post("/api/token", data={"username": "statistician", "password": PASSWORD}).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        levels = len(c.get("/api/trials/demo/packet?design=3%2B3&format=json", headers=auth).json()[
            "spirit_define"]["11a interventions"]["dose levels"])
        curve = ",".join(["0.05"] * levels)
        items = c.get(f"/api/trials/demo/packet?design=3%2B3&format=json&oc_true_tox={curve}", headers=auth).json()
        oc = items["spirit_define"]["operating characteristics"]
        assert oc["trials simulated"] == 2000 and len(oc["selected as MTD (%)"]) == levels
        for bad in ("0.1,abc", "0.1", ",".join(["1.5"] * levels)):
            r = c.get(f"/api/trials/demo/packet?design=3%2B3&format=json&oc_true_tox={bad}", headers=auth)
            assert r.status_code == 400, (bad, r.status_code, r.text[:200])
