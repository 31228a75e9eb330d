"""``create_app(settings)``: the FastAPI application, its error handling and its routers."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import OperationalError

from ..errors import InputError
from ..store.db import Store, clean_stale, data_dir, work_dir
from ..store.logins import LoginThrottle
from ..store.scope import Conflict, Forbidden, NotFound, Refused
from . import edge
from .security import server_key

if TYPE_CHECKING:
    from ..store.notify import NotifyConfig

log = logging.getLogger("dosewatch.api")


@dataclass
class Settings:
    db_url: str | None = None  # None: SQLite file in the data folder
    secret_key: str = field(default_factory=lambda: server_key(data_dir()))
    token_minutes: int = 60
    max_upload_bytes: int = 50 * 1024 * 1024
    today: dt.date | None = None  # fixed assessment date (the demo's data are from 2007)
    reassess_hour: int | None = None  # reassess every trial at start and daily at this hour (local time)
    notify: "NotifyConfig | None" = None  # send alerts to people (store.notify) every notify_every seconds
    notify_every: float = 15.0


class DetailOut(BaseModel):
    detail: str = Field(description="what was refused and why, in words")


# Every API answer a client may get besides the route's own (the handlers below): documented, so that
# /openapi.json lists every status a route can return (schemathesis checks it).
ERRORS = {400: {"model": DetailOut, "description": "refused: the request cannot be done as asked (or a NUL "
                                                   "character in the path or query)"},
          401: {"model": DetailOut, "description": "not logged in, or the token expired"},
          403: {"model": DetailOut, "description": "the user's role does not allow this"},
          404: {"model": DetailOut, "description": "not there, or not visible to this user (not told apart)"},
          409: {"model": DetailOut, "description": "repeats what is already recorded: nothing new was saved"},
          413: {"model": DetailOut, "description": "upload larger than the server's limit"},
          503: {"model": DetailOut, "description": "the server is busy writing: try again (Retry-After)"}}


def create_app(settings: Settings | None = None, store: Store | None = None) -> FastAPI:
    """The API on ``store`` (or a new one on ``settings.db_url``), migrated to the newest schema."""
    settings = settings or Settings()
    store = store or Store(settings.db_url, today=settings.today)
    store.upgrade()
    # Temporary folders a killed server left (an import's lives seconds; an hour is safe with workers).
    clean_stale(work_dir(), "dosewatch-import-", 3600)
    app = FastAPI(title="dosewatch trial server", version="0.1.0", lifespan=_lifespan, docs_url=None, redoc_url=None,
                  description="Patients' records, assessments, alerts and decisions of a trial, by site and role.")
    app.state.settings, app.state.store = settings, store
    app.state.login_throttle = LoginThrottle()
    _handlers(app)
    edge.install(app)
    from .routes import audit, decisions, login, notifications, trials

    for module in (login, trials, decisions, audit, notifications):
        app.include_router(module.router, prefix="/api", responses=ERRORS)
    from ..web.routes import mount

    mount(app)  # the dashboard: server-rendered pages on the same store, roles and site scoping
    from .docs_pages import mount_docs

    mount_docs(app)  # Swagger UI and ReDoc from the installed package (offline)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI):
    """The daily reassessment runs beside the server (``serve`` sets the hour; several workers of
    ``app_from_env`` leave it to ``dosewatch trials reassess`` from cron)."""
    settings = app.state.settings
    tasks = []
    if settings.reassess_hour is not None:
        tasks.append(asyncio.create_task(reassess_daily(app.state.store, settings.reassess_hour)))
    if settings.notify is not None:
        tasks.append(asyncio.create_task(notify_forever(app.state.store, settings.notify, settings.notify_every)))
    yield
    for task in tasks:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def notify_forever(store: Store, config: "NotifyConfig", every: float) -> None:
    """A delivery pass every ``every`` seconds (store.notify); a failure is logged and retried."""
    from ..channels import send
    from ..store.notify import deliver_once

    while True:
        try:
            counts = await asyncio.to_thread(deliver_once, store, config, send)
            if counts["sent"] or counts["failed"]:
                log.info("notifications: %s", counts)
        except Exception:
            log.exception("notification pass failed")
        await asyncio.sleep(every)


async def reassess_daily(store: Store, hour: int) -> None:
    """Reassess every trial now, then every day at ``hour``, so that an overdue lab or a missed dose
    raises its alert without new data. A failure is logged and retried at the next run."""
    from ..store.assess import reassess_all

    while True:
        try:
            done = await asyncio.to_thread(reassess_all, store)
            log.info("daily reassessment: %s", ", ".join(f"{t} {n} patient(s)" for t, n in done.items()) or "no trial")
        except Exception:
            log.exception("daily reassessment failed")
        now = dt.datetime.now()
        due = now.replace(hour=hour, minute=0, second=0, microsecond=0)
        if due <= now:
            due += dt.timedelta(days=1)
        await asyncio.sleep((due - now).total_seconds())


def _problem(status: int, detail: str, **extra) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status)


def _handlers(app: FastAPI) -> None:
    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return _problem(404, str(exc.args[0]) if exc.args else "not found")

    @app.exception_handler(Forbidden)
    async def _forbidden(_: Request, exc: Forbidden) -> JSONResponse:
        return _problem(403, str(exc))

    @app.exception_handler(Conflict)
    async def _conflict(_: Request, exc: Conflict) -> JSONResponse:
        return _problem(409, str(exc))

    @app.exception_handler(Refused)
    async def _refused(_: Request, exc: Refused) -> JSONResponse:
        return _problem(400, str(exc))

    @app.exception_handler(InputError)
    async def _input(_: Request, exc: InputError) -> JSONResponse:
        n = len(exc.problems)
        return _problem(422, f"{n} problem(s) in the input; nothing was saved",
                        rejected=[p.as_dict() for p in exc.problems[:1000]])

    @app.exception_handler(OperationalError)
    async def _busy(request: Request, exc: OperationalError) -> JSONResponse:
        # Writes wait up to 60 s for the lock (SQLite busy_timeout) and hold it only to write, so
        # this is rare: the client is told to retry, not shown the driver's words.
        if "locked" not in str(exc.orig).lower():
            return await _crash(request, exc)
        log.warning("database busy on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "the server is busy writing: try again in a few seconds"}, status_code=503,
                            headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        # The trace goes to the server's log under an id; the client gets the id only.
        ref = uuid.uuid4().hex[:12]
        log.error("internal error %s on %s %s", ref, request.method, request.url.path, exc_info=exc)
        return _problem(500, f"internal error (reference {ref})")


def app_from_env() -> FastAPI:
    """For ``uvicorn --factory dosewatch.api.app:app_from_env`` (and ``dosewatch serve --workers``):
    the database from $DOSEWATCH_DB, a fixed assessment date from $DOSEWATCH_TODAY (YYYY-MM-DD), if
    set. No daily reassessment here: one process runs it for all workers."""
    import os

    today = os.environ.get("DOSEWATCH_TODAY")
    return create_app(Settings(db_url=os.environ.get("DOSEWATCH_DB") or None,
                               today=dt.date.fromisoformat(today) if today else None))
