"""The dashboard's Settings page: the units the logged-in user reads labs in (``store.preferences``),
how they are told of alerts (``store.notify``), and for the admin the deliveries that fail.
Mounted with the other pages (``routes.mount``)."""
from __future__ import annotations

import datetime as dt
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from ..store.models import User
from ..store.notify import failures, save_settings, settings_of
from ..store.preferences import UNITS, save_units, units_of
from .routes import WebError, logged_in, nav, posted, render, store_of, text, translated, trial_or_404

router = APIRouter(include_in_schema=False)


def _page(request: Request, trial: str, form: dict | None = None, problem: str | None = None,
          status: int = 200) -> Response:
    viewer = logged_in(request)
    with store_of(request).reading() as session:
        trial_or_404(session, trial)
        current = settings_of(session, session.scalar(select(User).where(User.name == viewer.name)))
        problems = failures(session, limit=100) if viewer.role == "admin" else []
        units = units_of(session, viewer.name)
    return render(request, "notifications.html", {**nav(trial, "settings"), "settings": form or current,
                                                  "problem": problem, "failures": problems, "units": units,
                                                  "unit_choices": UNITS, "hours": list(range(24))}, status=status)


@router.get("/trials/{trial}/settings", response_class=HTMLResponse)
def settings_page(request: Request, trial: str) -> Response:
    return _page(request, trial)


@router.post("/trials/{trial}/settings/units")
async def save_unit_choice(request: Request, trial: str) -> Response:
    viewer, form = await posted(request)
    choice = text(form, "units", 20) or ""

    def save() -> None:
        with store_of(request).writing() as session, translated():
            save_units(session, session.scalar(select(User).where(User.name == viewer.name)), choice)

    await run_in_threadpool(save)
    return RedirectResponse(f"/trials/{quote(trial)}/settings?msg=units", status_code=303)


@router.post("/trials/{trial}/settings/notifications")
async def save_notifications(request: Request, trial: str) -> Response:
    viewer, form = await posted(request)
    hour = text(form, "digest_hour", 2)
    if hour is not None and not hour.isdigit():
        raise WebError(400, "the digest hour is 0 to 23, or none")
    entered = {"email": text(form, "email", 254), "webhook_url": text(form, "webhook_url", 2000),
               "critical_now": form.get("critical_now") == "yes", "digest_hour": int(hour) if hour else None}

    def save() -> None:
        with store_of(request).writing() as session, translated():
            user = session.scalar(select(User).where(User.name == viewer.name))
            save_settings(session, user, **entered, now=dt.datetime.now(dt.timezone.utc))

    try:
        await run_in_threadpool(save)
    except WebError as exc:
        return _page(request, trial, {**entered, "active": False}, exc.message, exc.status)
    return RedirectResponse(f"/trials/{quote(trial)}/settings?msg=notify", status_code=303)
