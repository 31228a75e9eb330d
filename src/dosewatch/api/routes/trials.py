"""A trial's records: imports, patients, assessments, alerts, dose actions, cohort, export."""
from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ...store import service
from ...store.scope import Refused
from ..deps import AsOf, CurrentViewer, StoreDep, Token, UploadBody, check_as_of, current_viewer
from ..schemas import (
    AlertOut,
    AssessmentOut,
    CohortNextOut,
    DeletedOut,
    DoseActionOut,
    ImportReportOut,
    PatientOut,
    TrialOut,
)
from ..security import token_user

router = APIRouter(prefix="/trials", tags=["trials"])


class AlertStatus(str, Enum):
    open = "open"
    acknowledged = "acknowledged"
    withdrawn = "withdrawn"


class ActionStatus(str, Enum):
    proposed = "proposed"
    accepted = "accepted"
    overridden = "overridden"
    withdrawn = "withdrawn"


class Design(str, Enum):
    three_plus_three = "3+3"
    boin = "boin"
    crm = "crm"
    tite_crm = "tite-crm"
    tite_boin = "tite-boin"


class RecordKind(str, Enum):
    observations = "observations"
    doses = "doses"
    events = "events"


class ExportFormat(str, Enum):
    fhir = "fhir"
    sdtm = "sdtm"
    adlb = "adlb"
    submission = "submission"


SkipInvalid = Annotated[bool, Query(description="keep the valid part and report the rest (default: all or nothing)")]
SiteCode = Annotated[str | None, Query(max_length=64, description="site to enrol new patients at (default: your only site)")]
Reason = Annotated[str | None, Query(max_length=2000, description="why stored records are corrected (required then)")]
Target = Annotated[float | None, Query(gt=0, lt=1, description="target toxicity probability (all designs but 3+3)")]

FHIR_BODY = {"requestBody": {"required": True, "content": {
    "application/fhir+json": {"schema": {"type": "object"}}, "application/json": {"schema": {"type": "object"}}}}}
ZIP_BODY = {"requestBody": {"required": True, "content": {
    "application/zip": {"schema": {"type": "string", "format": "binary"}}}}}


@router.get("")
def list_trials(viewer: CurrentViewer, store: StoreDep) -> list[TrialOut]:
    from sqlalchemy import select

    from ...store.models import Trial

    with store.reading() as session:
        return [{"code": t.code, "protocol": t.protocol_id, "protocol_version": t.protocol_version}
                for t in session.scalars(select(Trial).order_by(Trial.code))]


def _import(store, viewer, trial: str, kind: str, body: bytes, site, skip_invalid, reason) -> dict[str, Any]:
    # Read and validate first, with no lock held (a 7 MB upload reads for seconds); then write.
    with store.reading() as session:
        read = service.read_upload(session, service.trial_by_code(session, trial), viewer, kind, body)
    with store.writing() as session:
        report = service.import_records(session, service.trial_by_code(session, trial), viewer, kind, None,
                                        as_of=store.today(), site=site, skip_invalid=skip_invalid, reason=reason,
                                        read=read)
    return report.as_dict()


@router.post("/{trial}/fhir", openapi_extra=FHIR_BODY)
def import_fhir(trial: str, viewer: CurrentViewer, store: StoreDep, body: UploadBody, site: SiteCode = None,
                skip_invalid: SkipInvalid = False, reason: Reason = None) -> ImportReportOut:
    """Import a FHIR R4 Bundle: created, updated, unchanged, rejected (with reason and where)."""
    return _import(store, viewer, trial, "fhir", body, site, skip_invalid, reason)


@router.post("/{trial}/sdtm", openapi_extra=ZIP_BODY)
def import_sdtm(trial: str, viewer: CurrentViewer, store: StoreDep, body: UploadBody, site: SiteCode = None,
                skip_invalid: SkipInvalid = False, reason: Reason = None) -> ImportReportOut:
    """Import a zip of SDTM datasets (DM, LB, EX, ... as CSV or XPT)."""
    return _import(store, viewer, trial, "sdtm", body, site, skip_invalid, reason)


@router.get("/{trial}/patients")
def patients(trial: str, viewer: CurrentViewer, store: StoreDep) -> list[PatientOut]:
    with store.reading() as session:
        return service.list_patients(session, service.trial_by_code(session, trial), viewer)


ASSESSMENT_DOC = {200: {"model": AssessmentOut, "description": "the assessment (JSON of `dosewatch check --protocol`)"}}


@router.get("/{trial}/patients/{patient_id}/assessment", response_model=None, responses=ASSESSMENT_DOC)
async def assessment(trial: str, patient_id: str, request: Request, token: Token,
                     as_of: dt.date | None = None) -> Response:
    """The patient's assessment: the stored one, or as of a date (the JSON of ``dosewatch check --protocol``).

    The stored one is read in one query (the user's sites checked inside it) and sent as the
    database holds it; anything else (a date, no stored assessment, not found, not logged in) takes
    the general path, with the same answers as every other route. (Few dependencies: each costs
    time on every read.)"""
    store = request.app.state.store
    if as_of is None:
        name = token_user(token, request.app.state.settings.secret_key)
        if name is not None:
            # On the event loop: one indexed query (SQLite in-process, PostgreSQL one round trip
            # in autocommit) costs less than the hop to the thread pool and back, and measured
            # better throughput and tail latency on both (docs/server.md).
            text = service.stored_assessment_text_for_user(store.engine, trial, name, patient_id)
            if text is not None:
                return Response(text, media_type="application/json")
    return await run_in_threadpool(_assessment, request, store, token, trial, patient_id, as_of)


def _assessment(request: Request, store, token: str, trial: str, patient_id: str, as_of) -> Response:
    viewer = current_viewer(request, store, token)
    as_of = check_as_of(as_of)
    with store.reading() as session:
        data = service.patient_assessment(session, service.trial_by_code(session, trial), viewer, patient_id, as_of)
    return JSONResponse(jsonable_encoder(data))


@router.get("/{trial}/alerts")
def alerts(trial: str, viewer: CurrentViewer, store: StoreDep, status: AlertStatus | None = None,
           patient: Annotated[str | None, Query(max_length=200)] = None) -> list[AlertOut]:
    with store.reading() as session:
        return service.list_alerts(session, service.trial_by_code(session, trial), viewer,
                                   status.value if status else None, patient)


@router.get("/{trial}/dose-actions")
def dose_actions(trial: str, viewer: CurrentViewer, store: StoreDep,
                 status: ActionStatus | None = None) -> list[DoseActionOut]:
    with store.reading() as session:
        return service.list_dose_actions(session, service.trial_by_code(session, trial), viewer,
                                         status.value if status else None)


Skeleton = Annotated[str | None, Query(max_length=500, description="CRM and TITE-CRM: the prior DLT probability "
                                       "of each dose level, lowest first, comma-separated (e.g. 0.05,0.1,0.2,0.3,0.45)")]


@router.get("/{trial}/cohort/next")
def cohort_next(trial: str, viewer: CurrentViewer, store: StoreDep, design: Design = Design.three_plus_three,
                target: Target = None, as_of: AsOf = None, skeleton: Skeleton = None) -> CohortNextOut:
    """The design's next dose from the monitor's DLT judgement of the patients you may see: the
    stored assessments (what the dashboard shows), or, with ``as_of``, the monitor run as of that date."""
    from ...escalation.crm import parse_skeleton

    with store.reading() as session:
        try:
            return service.cohort_next(session, service.trial_by_code(session, trial), viewer, design.value,
                                       as_of, target, parse_skeleton(skeleton) if skeleton else None)
        except ValueError as exc:  # a design that does not fit the protocol or the records, a bad skeleton
            raise Refused(str(exc)) from exc


@router.delete("/{trial}/{kind}/{record_id}")
def delete_record(trial: str, kind: RecordKind, record_id: Annotated[str, Path(max_length=200)], viewer: CurrentViewer,
                  store: StoreDep, reason: Annotated[str, Query(min_length=1, max_length=2000,
                                                                  description="why (required)")]) -> DeletedOut:
    """Mark a record deleted with the reason: it stays stored and audited, and is left out of assessments."""
    with store.writing() as session:
        return service.delete_record(session, service.trial_by_code(session, trial), viewer, kind.value, record_id,
                                     reason, store.today())


EXPORT_DOC = {200: {"description": "the file: a FHIR Bundle, a zip of SDTM datasets, ADLB as CSV, or a zip of the "
                                   "submission package (Dataset-JSON v1.1, define.xml, define.html, XPT)", "content": {
    "application/fhir+json": {"schema": {"type": "object"}}, "application/zip": {"schema": {"type": "string", "format": "binary"}},
    "text/csv": {"schema": {"type": "string"}}}}}


@router.get("/{trial}/export", response_class=Response, responses=EXPORT_DOC)
def export(trial: str, viewer: CurrentViewer, store: StoreDep, format: ExportFormat = ExportFormat.fhir) -> Response:
    with store.reading() as session:
        content, media, name = service.export(session, service.trial_by_code(session, trial), viewer, format.value)
    return Response(content, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})


class PacketFormat(str, Enum):
    pdf = "pdf"
    html = "html"
    json = "json"


PACKET_DOC = {200: {"description": "the safety review packet (PDF or HTML), or its CONSORT-DEFINE / SPIRIT-DEFINE "
                                   "items (JSON)", "content": {
    "application/pdf": {"schema": {"type": "string", "format": "binary"}}, "text/html": {"schema": {"type": "string"}},
    "application/json": {"schema": {"type": "object", "required": ["source", "trial", "as_of", "spirit_define",
                                                                   "consort_define"], "properties": {
        "source": {"type": "string"}, "trial": {"type": "string"}, "as_of": {"type": "string", "format": "date"},
        "spirit_define": {"type": "object", "description": "SPIRIT-DEFINE items the protocol and design answer"},
        "consort_define": {"type": "object", "description": "CONSORT-DEFINE items the records answer"}}}}}}}


OcTrueTox = Annotated[str | None, Query(max_length=500, description="the design's operating characteristics "
                                      "simulated on this true DLT probability per dose level, lowest first, "
                                      "comma-separated (2,000 trials, seed 1, 10 cohorts of 3)")]


@router.get("/{trial}/packet", response_class=Response, responses=PACKET_DOC)
def packet(trial: str, viewer: CurrentViewer, store: StoreDep, design: Design = Design.three_plus_three,
           target: Target = None, skeleton: Skeleton = None, format: PacketFormat = PacketFormat.pdf,
           oc_true_tox: OcTrueTox = None,
           oc_accrual: Annotated[float | None, Query(gt=0, le=100, description="TITE designs: patients enrolled per "
                                                      "day in the simulation")] = None) -> Response:
    """The safety review packet of the patients you may see, as of the server's today: exposure and
    worst grades by dose level, DLTs, grade 4-5 events and deaths, swimmer and tumor lysis plots,
    the design's recommendation with its dose-transition pathways, CONSORT-DEFINE items and the
    cohort decisions with their signatures."""
    from ...escalation.crm import parse_skeleton
    from ...review.packet import pdf_bytes, render_html
    from ...review.server import trial_packet

    with store.reading() as session:
        t = service.trial_by_code(session, trial)
        try:
            options = {k: v for k, v in (("target", target),
                                         ("skeleton", parse_skeleton(skeleton) if skeleton else None)) if v is not None}
            curve = [float(x) for x in oc_true_tox.split(",") if x.strip()] if oc_true_tox else None
            content, cohort = trial_packet(session, t, viewer, as_of=store.today(), design=design.value,
                                           design_options=options, oc_true_tox=curve, oc_accrual=oc_accrual)
        except ValueError as exc:  # a design that does not fit the protocol or the records, a bad skeleton
            raise Refused(str(exc)) from exc
    if format is PacketFormat.json:
        return JSONResponse(jsonable_encoder(content.consort))
    page = render_html(content, cohort)
    if format is PacketFormat.html:
        return Response(page, media_type="text/html")
    name = f"{trial}-safety-review-{store.today().isoformat()}.pdf"
    return Response(pdf_bytes(page), media_type="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
