"""The dashboard's import: an upload read and checked, then run in a transaction that is rolled
back (the preview: the validation report, nothing saved); the file waits (an hour at most) in the
data folder's private ``uploads/`` for the commit. Reading happens before the write lock is taken.
Mounted with the other pages (``routes.mount``)."""
from __future__ import annotations

import json
import time
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from ..errors import InputError
from ..store import service
from ..store.db import data_dir, private_dir
from ..store.scope import Viewer
from . import queries, session as web_session
from .routes import WebError, logged_in, nav, posted, render, store_of, text, translated, trial_or_404

router = APIRouter(include_in_schema=False)
UPLOAD_TTL = 3600  # seconds an uploaded file waits for its commit


@router.get("/trials/{trial}/import", response_class=HTMLResponse)
def import_form(request: Request, trial: str) -> Response:
    viewer = logged_in(request)
    with store_of(request).reading() as session:
        trial_or_404(session, trial)
        sites = queries.visible_sites(session, viewer)
    return render(request, "import.html", {**nav(trial, "import"), "sites": sites, "report": None})


def _upload_dir() -> Path:
    # In the data folder, private and checked (a shared /tmp folder could be another user's).
    folder = private_dir(data_dir() / "uploads")
    now = time.time()
    for old in folder.iterdir():  # uploads never committed
        if now - old.stat().st_mtime > UPLOAD_TTL:
            old.unlink(missing_ok=True)
    return folder


@router.post("/trials/{trial}/import", response_class=HTMLResponse)
async def import_preview(request: Request, trial: str) -> Response:
    """Read the upload and run the import in a transaction that is rolled back: the validation
    report, with nothing saved. The file waits (an hour at most) for the commit."""
    viewer = logged_in(request)
    limit = request.app.state.settings.max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise WebError(413, f"the upload is larger than {limit // (1024 * 1024)} MB")
    form = await request.form(max_files=1, max_fields=10)
    if not web_session.same_token(request.state.web[1].csrf, form.get("csrf")):
        raise WebError(403, "the form's security token did not match: reload the page and try again")
    upload = form.get("file")
    if upload is None or isinstance(upload, str) or not upload.filename:
        raise WebError(400, "choose a file: a FHIR Bundle (.json) or a zip of SDTM datasets (.zip)")
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise WebError(413, f"the upload is larger than {limit // (1024 * 1024)} MB")
    kind = "sdtm" if upload.filename.lower().endswith(".zip") else "fhir"
    site = text(form, "site", 64)
    store = store_of(request)
    report, problems = await run_in_threadpool(_dry_run, store, trial, viewer, kind, data, site, upload.filename)
    token = web_session.new_token()
    folder = _upload_dir()
    (folder / f"{token}.bin").write_bytes(data)
    (folder / f"{token}.json").write_text(json.dumps({"user": viewer.name, "trial": trial, "kind": kind,
                                                      "site": site, "name": upload.filename}))
    with store.reading() as session:
        sites = queries.visible_sites(session, viewer)
    return render(request, "import.html", {**nav(trial, "import"), "sites": sites, "report": report,
                                           "problems": problems, "token": token, "name": upload.filename,
                                           "kind": kind, "site": site})


class _Rollback(Exception):
    pass


def _dry_run(store, trial: str, viewer: Viewer, kind: str, data: bytes, site: str | None, name: str):
    """(report, problems): the import as it would be, then rolled back (audit entries too)."""
    report = None
    try:
        read = _read_upload(store, trial, viewer, kind, data, name)  # no lock held while reading
        with store.writing() as session, translated():
            t = service.trial_by_code(session, trial)
            report = service.import_records(session, t, viewer, kind, None, as_of=store.today(), site=site,
                                            skip_invalid=True, reason="(preview)", name=name, read=read).as_dict()
            raise _Rollback
    except _Rollback:
        return report, []
    except InputError as exc:
        return None, [p.as_dict() for p in exc.problems[:1000]]


def _read_upload(store, trial: str, viewer: Viewer, kind: str, data: bytes, name: str):
    with store.reading() as session, translated():
        return service.read_upload(session, service.trial_by_code(session, trial), viewer, kind, data, name)


def _commit(store, trial: str, viewer: Viewer, meta: dict, data: bytes, skip_invalid: bool, reason: str | None):
    read = _read_upload(store, trial, viewer, meta["kind"], data, meta["name"])  # no lock held while reading
    with store.writing() as session, translated():
        t = service.trial_by_code(session, trial)
        return service.import_records(session, t, viewer, meta["kind"], None, as_of=store.today(), site=meta["site"],
                                      skip_invalid=skip_invalid, reason=reason, name=meta["name"], read=read).as_dict()


@router.post("/trials/{trial}/import/commit", response_class=HTMLResponse)
async def import_commit(request: Request, trial: str) -> Response:
    viewer, form = await posted(request)
    token = text(form, "token", 100) or ""
    folder = _upload_dir()
    meta_path, data_path = folder / f"{token}.json", folder / f"{token}.bin"
    if not token.replace("-", "").replace("_", "").isalnum() or not meta_path.exists():
        raise WebError(410, "this upload is no longer waiting (committed already, or older than an hour): upload again")
    meta = json.loads(meta_path.read_text())
    if meta["user"] != viewer.name or meta["trial"] != trial:
        raise WebError(404, "no such upload")
    store = store_of(request)
    problems: list[dict] = []
    report = None
    try:
        report = await run_in_threadpool(_commit, store, trial, viewer, meta, data_path.read_bytes(),
                                         form.get("skip_invalid") == "yes", text(form, "reason"))
    except InputError as exc:
        problems = [p.as_dict() for p in exc.problems[:1000]]
    if report is not None:
        meta_path.unlink(missing_ok=True)
        data_path.unlink(missing_ok=True)
    with store.reading() as session:
        sites = queries.visible_sites(session, viewer)
    return render(request, "import.html", {**nav(trial, "import"), "sites": sites, "report": report,
                                           "problems": problems, "committed": report is not None,
                                           "token": None if report else token, "name": meta["name"],
                                           "kind": meta["kind"], "site": meta["site"]},
                  status=200 if report is not None else 422)
