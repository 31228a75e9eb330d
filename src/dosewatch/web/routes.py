"""The dashboard's pages: server-rendered Jinja2 templates, enhanced by htmx (``hx-boost``).

Every page works without JavaScript: links are links and forms post and redirect. Routes are
thin: they read with ``web.queries`` (scoped to the viewer's sites) and write with
``store.service`` (the API's own functions, which check the role and write the audit trail).
"""
from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from markupsafe import Markup
from sqlalchemy import select

from ..escalation.crm import parse_skeleton
from ..store import service
from ..store import logins
from ..store.admin import viewer_of
from ..store.models import User
from ..store.scope import CAPABILITIES, Conflict, Forbidden, NotFound, Refused, Viewer, require
from ..store.signatures import SignatureRequest, sign_cohort_decision, sign_dose_action
from . import queries, session as web_session
from .timeline import timeline_svg

HERE = resources.files("dosewatch.web")
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)

# No inline script or style anywhere: the policy allows the package's own files only.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
MESSAGES = {"ack": "Alert acknowledged; the audit trail has the entry.", "decided": "Decision saved to the audit trail.",
            "signed": "Signed: the signature and the record's hash are in the audit trail.",
            "imported": "Import committed.", "cohort": "Cohort decision saved to the audit trail.",
            "notify": "Notification settings saved (and audited).", "units": "Units saved."}


class WebError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class LoginRequired(Exception):
    def __init__(self, next_url: str):
        self.next_url = next_url


def mount(app: FastAPI) -> None:
    """Add the dashboard to the trial server's app (it uses ``app.state.store`` and ``.settings``).
    Idempotent: a second call changes nothing."""
    if getattr(app.state, "web_mounted", False):
        return
    app.state.web_mounted = True
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(router)
    from .imports import router as imports_router
    from .notifications import router as notifications_router

    app.include_router(imports_router)
    app.include_router(notifications_router)

    @app.exception_handler(WebError)
    async def _web_error(request: Request, exc: WebError) -> Response:
        slot = _problem_slot(request)
        if slot:  # an htmx form that updates its own fragment: the message goes next to the form
            response = render(request, "problem.html", {"problem_text": exc.message}, status=exc.status)
            response.headers.update({"HX-Retarget": f"#{slot}", "HX-Reswap": "innerHTML"})
            return response
        return render(request, "error.html", {"status": exc.status, "problem_text": exc.message}, status=exc.status)

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        target = "/login?" + urlencode({"next": exc.next_url})
        if request.headers.get("HX-Request"):  # htmx: a full-page redirect, not a login form inside the page
            return Response(status_code=200, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)


# ------------------------------------------------------------------------------------------ helpers

@contextmanager
def translated() -> Iterator[None]:
    """The store's refusals as pages: another site's patient is 'not found', exactly as a missing one."""
    try:
        yield
    except NotFound as exc:
        raise WebError(404, str(exc.args[0]) if exc.args else "not found") from None
    except Forbidden as exc:
        raise WebError(403, str(exc)) from None
    except Conflict as exc:
        raise WebError(409, str(exc)) from None
    except Refused as exc:
        raise WebError(400, str(exc)) from None


def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    who = getattr(request.state, "web", None)
    viewer = who[0] if who else None
    context = {"viewer": viewer, "csrf": who[1].csrf if who else None, "can": _capabilities(viewer),
               "message": MESSAGES.get(request.query_params.get("msg", "")), **context}
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers.update(SECURITY_HEADERS)
    return response


def _capabilities(viewer: Viewer | None) -> dict[str, bool]:
    return {k: bool(viewer) and viewer.role in roles for k, roles in CAPABILITIES.items()}


def fragment_request(request: Request) -> bool:
    """An htmx request of a form that replaces only its fragment (``hx-post``), not a boosted page."""
    return bool(request.headers.get("HX-Request")) and not request.headers.get("HX-Boosted")


_ELEMENT_ID = re.compile(r"[A-Za-z][\w-]{0,80}")


def _problem_slot(request: Request) -> str | None:
    """The element that shows a fragment request's problem: ``<target id>-problem`` (each fragment
    has one, see macros.html)."""
    target = request.headers.get("HX-Target") or ""
    return f"{target}-problem" if fragment_request(request) and _ELEMENT_ID.fullmatch(target) else None


def pager(request: Request, paging: dict[str, int]) -> dict[str, Any]:
    """Links to the previous and next page that keep the other query parameters (the filters)."""
    def link(n: int) -> str:
        query = [(k, v) for k, v in request.query_params.multi_items() if k not in ("page", "msg")]
        return request.url.path + "?" + urlencode(query + [("page", str(n))])

    page, last = paging["page"], paging["pages"]
    return {**paging, "prev": link(page - 1) if page > 1 else None, "next": link(page + 1) if page < last else None,
            "first": (paging["page"] - 1) * paging["per_page"] + 1,
            "last": min(paging["page"] * paging["per_page"], paging["total"])}


def page_number(value: str) -> int:
    return int(value) if value.isdigit() and len(value) < 7 else 1


def store_of(request: Request):
    return request.app.state.store


def logged_in(request: Request) -> Viewer:
    """The viewer of the session cookie; a page without one goes to the login form."""
    key = request.app.state.settings.secret_key
    sess = web_session.decode(request.cookies.get(web_session.SESSION_COOKIE), key)
    if sess is not None:
        with store_of(request).reading() as session:
            user = session.scalar(select(User).where(User.name == sess.user))
            if user is not None and user.active:
                viewer = viewer_of(session, user)
                request.state.web = (viewer, sess)
                return viewer
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    raise LoginRequired(path if request.method == "GET" else "/")


async def posted(request: Request) -> tuple[Viewer, Any]:
    """A POST's viewer and form, after its CSRF token matched the session's."""
    viewer = logged_in(request)
    form = await request.form(max_files=0, max_fields=50)
    given = form.get("csrf") or request.headers.get("X-CSRF-Token")
    if not web_session.same_token(request.state.web[1].csrf, given if isinstance(given, str) else None):
        raise WebError(403, "the form's security token did not match: reload the page and try again")
    return viewer, form


def safe_next(url: str | None, default: str) -> str:
    """Only a path on this site (no scheme, no //host): an open redirect is a phishing tool."""
    if url and url.startswith("/") and not url.startswith("//") and "\\" not in url:
        return url
    return default


def text(form, name: str, limit: int = 2000) -> str | None:
    value = form.get(name)
    if value is None or not isinstance(value, str):
        return None
    value = value.strip()
    if len(value) > limit:
        raise WebError(400, f"{name} is longer than {limit} characters")
    return value or None


def trial_or_404(session, code: str):
    with translated():
        return service.trial_by_code(session, code)


def nav(trial: str, page: str) -> dict[str, Any]:
    return {"trial": trial, "page": page}


# ------------------------------------------------------------------------------------------ login

@router.get("/", response_class=HTMLResponse)
def home(request: Request) -> Response:
    logged_in(request)
    with store_of(request).reading() as session:
        codes = queries.trial_codes(session)
    if not codes:
        return render(request, "error.html", {"status": 200, "problem_text": "No trial yet: an administrator adds one "
                                              "with `dosewatch trials add`."})
    return RedirectResponse(f"/trials/{quote(codes[0])}/today", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> Response:
    token = web_session.new_token()
    response = render(request, "login.html", {"next": safe_next(next, "/"), "login_csrf": token, "error": None})
    _set_cookie(request, response, web_session.LOGIN_COOKIE, token, 600)
    return response


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    form = await request.form(max_files=0, max_fields=10)
    next_url = safe_next(text(form, "next", 500), "/")
    if not web_session.same_token(request.cookies.get(web_session.LOGIN_COOKIE), text(form, "csrf", 200)):
        raise WebError(403, "the login form expired: reload the page and try again")
    name, password = text(form, "username", 64) or "", form.get("password") or ""
    client = request.client.host if request.client else "unknown"
    try:
        user = await run_in_threadpool(logins.login, store_of(request), request.app.state.login_throttle, name,
                                       password if isinstance(password, str) else "", client)
    except logins.LockedOut as exc:
        raise WebError(429, str(exc)) from None
    if user is None:
        token = web_session.new_token()
        response = render(request, "login.html", {"next": next_url, "login_csrf": token,
                                                  "error": "Wrong user name or password."}, status=401)
        _set_cookie(request, response, web_session.LOGIN_COOKIE, token, 600)
        return response
    response = RedirectResponse(next_url, status_code=303)
    cookie = web_session.encode(user.name, request.app.state.settings.secret_key)
    _set_cookie(request, response, web_session.SESSION_COOKIE, cookie, web_session.SESSION_HOURS * 3600)
    response.delete_cookie(web_session.LOGIN_COOKIE, path="/")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    await posted(request)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(web_session.SESSION_COOKIE, path="/")
    return response


def _set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="lax",
                        secure=request.url.scheme == "https")


# ------------------------------------------------------------------------------------------ today

@router.get("/trials/{trial}/today", response_class=HTMLResponse)
def today(request: Request, trial: str, page: str = "1") -> Response:
    viewer = logged_in(request)
    store = store_of(request)
    with store.reading() as session:
        t = trial_or_404(session, trial)
        found = queries.today_page(session, t, viewer, page_number(page), queries.TODAY_PER_PAGE)
        sites = queries.visible_sites(session, viewer)
    return render(request, "today.html", {**nav(trial, "today"), "rows": found["rows"], "paging": pager(request, found),
                                          "today": store.today(), "sites": sites, "severities": queries.SEVERITIES})


# ------------------------------------------------------------------------------------------ alerts

@router.get("/trials/{trial}/alerts", response_class=HTMLResponse)
def alerts(request: Request, trial: str, site: str = "", patient: str = "", severity: str = "",
           page: str = "1") -> Response:
    viewer = logged_in(request)
    with store_of(request).reading() as session:
        t = trial_or_404(session, trial)
        found = queries.alert_page(session, t, viewer, site=site[:64] or None, patient_id=patient[:200] or None,
                                   severity=severity[:20] or None, page=page_number(page),
                                   per_page=queries.ALERTS_PER_PAGE)
        sites = queries.visible_sites(session, viewer)
    return render(request, "alerts.html", {**nav(trial, "alerts"), "rows": found["rows"], "sites": sites,
                                           "paging": pager(request, found), "by_severity": found["by_severity"],
                                           "severities": queries.SEVERITIES,
                                           "filters": {"site": site, "patient": patient, "severity": severity},
                                           "here": request.url.path + (f"?{request.url.query}" if request.url.query else "")})


@router.post("/trials/{trial}/alerts/{alert_id}/ack")
async def acknowledge(request: Request, trial: str, alert_id: int) -> Response:
    """Acknowledge with a note. A plain form post redirects back to the page; htmx (``hx-post``)
    gets the alert's fragment only, as the inbox or the patient's history shows it."""
    viewer, form = await posted(request)
    note = text(form, "note")
    back = safe_next(text(form, "next", 500), f"/trials/{quote(trial)}/alerts")
    with store_of(request).writing() as session, translated():
        service.acknowledge(session, viewer, alert_id, note)
        row = queries.alert_row(session, trial_or_404(session, trial), viewer, alert_id)
    if fragment_request(request):
        kind = "history" if form.get("view") == "history" else "inbox"
        return render(request, "fragment_alert.html", {"trial": trial, "a": row, "kind": kind, "here": back,
                                                       "done": MESSAGES["ack"]})
    return RedirectResponse(_with_msg(back, "ack") + f"#alert-{alert_id}", status_code=303)


def _with_msg(url: str, msg: str) -> str:
    url = url.split("#", 1)[0]
    return url + ("&" if "?" in url else "?") + f"msg={msg}"


# ------------------------------------------------------------------------------------------ patient

@router.get("/trials/{trial}/patients/{patient_id}", response_class=HTMLResponse)
def patient(request: Request, trial: str, patient_id: str) -> Response:
    from ..store.preferences import units_of

    viewer = logged_in(request)
    with store_of(request).reading() as session, translated():
        t = trial_or_404(session, trial)
        view = queries.patient_view(session, t, viewer, patient_id[:200], units_of(session, viewer.name))
        thresholds = queries.lab_thresholds(view["cohort"], view["protocol"], view["day1"])
    svg = timeline_svg(view["cohort"], view["day1"], view["protocol"], view["alerts"],
                       view["assessment"].get("events", []), thresholds, view["lab_table"]["worst"], view["units"])
    return render(request, "patient.html", {**nav(trial, "patient"), **view, "timeline": Markup(svg),
                                            "here": request.url.path})


def signature_from(form) -> SignatureRequest | None:
    """The signature part of a form (password again, meaning, reason), or None when no password was
    entered; a meaning without the password (or the reverse) is refused."""
    password = form.get("sign_password") or ""
    meaning = text(form, "sign_meaning", 20)
    if not isinstance(password, str) or not password:
        if meaning:
            raise WebError(400, "enter your password again to sign")
        return None
    if not meaning:
        raise WebError(400, "choose the meaning of your signature (approved, reviewed or overridden)")
    return SignatureRequest(password[:200], meaning, text(form, "sign_reason"))


def _action_done(request: Request, trial: str, action_id: int, viewer: Viewer, message: str) -> Response:
    """After a decision or a signature: the action's fragment (htmx) or back to the patient page."""
    with store_of(request).reading() as session, translated():
        d = service.dose_action(session, viewer, action_id)
        required = bool(service.trial_by_code(session, trial).signatures_required)
    if fragment_request(request):
        return render(request, "fragment_action.html", {"trial": trial, "d": d, "done": MESSAGES[message],
                                                        "signatures_required": required})
    back = f"/trials/{quote(trial)}/patients/{quote(d['patient_id'])}"
    return RedirectResponse(_with_msg(back, message) + f"#action-{action_id}", status_code=303)


@router.post("/trials/{trial}/dose-actions/{action_id}/decision")
async def decide(request: Request, trial: str, action_id: int) -> Response:
    viewer, form = await posted(request)
    decision = text(form, "decision", 20)
    signature = signature_from(form)
    with store_of(request).writing() as session, translated():
        service.decide_dose_action(session, viewer, action_id, decision or "", text(form, "reason"), signature)
    return _action_done(request, trial, action_id, viewer, "signed" if signature else "decided")


@router.post("/trials/{trial}/dose-actions/{action_id}/sign")
async def sign_action(request: Request, trial: str, action_id: int) -> Response:
    viewer, form = await posted(request)
    signature = signature_from(form)
    if signature is None:
        raise WebError(400, "enter your password again to sign")
    with store_of(request).writing() as session, translated():
        sign_dose_action(session, viewer, action_id, signature)
    return _action_done(request, trial, action_id, viewer, "signed")


# ------------------------------------------------------------------------------------------ cohort

@router.get("/trials/{trial}/cohort", response_class=HTMLResponse)
def cohort(request: Request, trial: str, design: str = "3+3", target: str = "", skeleton: str = "") -> Response:
    return _cohort_page(request, trial, design, target, skeleton)


def _cohort_page(request: Request, trial: str, design: str, target: str, skeleton: str,
                 form: dict[str, str] | None = None, form_problem: str | None = None, status: int = 200) -> Response:
    """The board; after a refused decision, with the refusal beside the form and the values entered."""
    viewer = logged_in(request)
    store = store_of(request)
    if design not in queries.DESIGNS:
        raise WebError(400, f"design is one of {', '.join(queries.DESIGNS)}")
    problem, board, target_value, skeleton_values, decisions = None, None, None, None, []
    try:
        target_value = float(target) if target.strip() else None
    except ValueError:
        problem = "the target toxicity probability is a number between 0 and 1, e.g. 0.3"
    with store.reading() as session:
        t = trial_or_404(session, trial)
        levels = [lv.level for lv in queries.trial_protocol(session, t).study_drug.levels]
        if problem is None and design in queries.CRM_DESIGNS and target_value is not None:
            try:
                skeleton_values = (parse_skeleton(skeleton[:500]) if skeleton.strip()
                                   else queries.default_skeleton(target_value, len(levels)))
            except ValueError as exc:
                problem = str(exc)
        if problem is None:
            try:
                with translated():
                    board = queries.cohort_board(session, t, viewer, design, target_value, skeleton_values)
            except ValueError as exc:  # a design that needs a target, or does not fit the protocol
                problem = str(exc)
        if viewer.all_sites or viewer.role in CAPABILITIES["sign_cohort"]:
            decisions = queries.cohort_decisions(session, t)
        required = bool(t.signatures_required)
    return render(request, "cohort.html", {**nav(trial, "cohort"), "board": board, "problem": problem,
                                           "signatures_required": required,
                                           "design": design, "target": target, "designs": queries.DESIGNS,
                                           "skeleton": ",".join(f"{p:g}" for p in skeleton_values or []),
                                           "default_skeleton": not skeleton.strip(), "levels": sorted(levels),
                                           "decisions": decisions, "form": form or {}, "form_problem": form_problem},
                  status=status)


@router.post("/trials/{trial}/cohort/decision")
async def cohort_decision(request: Request, trial: str) -> Response:
    """The statistician's decision on the next cohort, through the API's own service function
    (role check, the recommendation from the stored assessments as the board shows it, the audit
    entry). The form carries the level the board showed; if the assessments changed since, nothing
    is saved."""
    viewer, form = await posted(request)
    with translated():
        require(viewer, "decide_cohort")  # before reading the form: the role is refused first
    design, decision = text(form, "design", 20) or "", text(form, "decision", 20) or ""
    if design not in queries.DESIGNS:
        raise WebError(400, f"design is one of {', '.join(queries.DESIGNS)}")
    try:
        target = float(text(form, "target", 20)) if text(form, "target", 20) else None
        level = int(text(form, "dose_level", 10)) if text(form, "dose_level", 10) else None
        skeleton = parse_skeleton(text(form, "skeleton", 500)) if design in queries.CRM_DESIGNS else None
    except ValueError as exc:
        raise WebError(400, str(exc) if "skeleton" in str(exc) else
                       "the target is a number between 0 and 1 and the dose level a whole number") from None
    if target is not None and not 0 < target < 1:
        raise WebError(400, "the target toxicity probability is between 0 and 1")
    shown, reason = text(form, "recommended", 10), text(form, "reason")
    signature = signature_from(form)
    try:
        supersedes = int(text(form, "supersedes", 12)) if text(form, "supersedes", 12) else None
    except ValueError:
        raise WebError(400, "choose the decision this one replaces from the list") from None
    store = store_of(request)

    def save() -> None:
        with store.writing() as session, translated():
            t = service.trial_by_code(session, trial)
            levels = {lv.level for lv in queries.trial_protocol(session, t).study_drug.levels}
            if decision == "overridden" and level not in levels:
                raise WebError(400, "choose the dose level for the next cohort")
            chosen = level if decision == "overridden" else None
            try:
                result = service.decide_cohort(session, t, viewer, design, decision, chosen, reason, None, target,
                                               skeleton, signature, supersedes)
            except Refused:
                raise
            except ValueError as exc:  # a design that does not fit the protocol or the records
                raise Refused(str(exc)) from exc
            recommended = result["recommendation"].get("next_dose")
            if shown != ("stop" if recommended is None else str(recommended)):  # raising rolls the decision back
                raise WebError(409, "the recommendation changed since the board was shown (new records or "
                                    "assessments): nothing was saved; look at the board again and decide")

    try:
        await run_in_threadpool(save)
    except WebError as exc:
        if exc.status == 403:
            raise
        entered = {k: text(form, k, 2000) or "" for k in ("decision", "dose_level", "reason", "supersedes")}
        return _cohort_page(request, trial, design, text(form, "target", 20) or "", text(form, "skeleton", 500) or "",
                            entered, exc.message, exc.status)
    query = urlencode({"design": design, **({"target": text(form, "target", 20)} if target is not None else {}),
                       **({"skeleton": ",".join(f"{p:g}" for p in skeleton)} if skeleton else {}),
                       "msg": "signed" if signature else "cohort"})
    return RedirectResponse(f"/trials/{quote(trial)}/cohort?{query}#decisions", status_code=303)


@router.get("/trials/{trial}/cohort/packet.pdf")
def cohort_packet(request: Request, trial: str, design: str = "3+3", target: str = "", skeleton: str = "") -> Response:
    """The safety review packet (PDF) of the board as shown: the same design, target and skeleton."""
    from ..review.packet import pdf_bytes, render_html
    from ..review.server import trial_packet

    viewer = logged_in(request)
    if design not in queries.DESIGNS:
        raise WebError(400, f"design is one of {', '.join(queries.DESIGNS)}")
    store = store_of(request)
    try:
        options: dict[str, Any] = {"target": float(target)} if target.strip() else {}
        if skeleton.strip():
            options["skeleton"] = parse_skeleton(skeleton[:500])
    except ValueError:
        raise WebError(400, "the target is a number between 0 and 1; the skeleton one probability per level") from None
    with store.reading() as session, translated():
        t = trial_or_404(session, trial)
        if design in queries.CRM_DESIGNS and "skeleton" not in options and "target" in options:
            levels = queries.trial_protocol(session, t).study_drug.levels
            options["skeleton"] = queries.default_skeleton(options["target"], len(levels))
        try:
            content, cohort = trial_packet(session, t, viewer, as_of=store.today(), design=design,
                                           design_options=options)
        except ValueError as exc:
            raise WebError(400, str(exc)) from None
    name = f"{trial}-safety-review-{store.today().isoformat()}.pdf"
    response = Response(pdf_bytes(render_html(content, cohort)), media_type="application/pdf",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
    response.headers.update(SECURITY_HEADERS)
    return response


@router.post("/trials/{trial}/cohort/decisions/{decision_id}/sign")
async def cohort_sign(request: Request, trial: str, decision_id: int) -> Response:
    """A signature on a recorded cohort decision (the committee chair's approval)."""
    viewer, form = await posted(request)
    signature = signature_from(form)
    if signature is None:
        raise WebError(400, "enter your password again to sign")
    with store_of(request).writing() as session, translated():
        sign_cohort_decision(session, service.trial_by_code(session, trial), viewer, decision_id, signature)
    back = safe_next(text(form, "next", 500), f"/trials/{quote(trial)}/cohort")
    return RedirectResponse(_with_msg(back, "signed") + f"#decision-{decision_id}", status_code=303)


# ------------------------------------------------------------------------------------------ audit

@router.get("/trials/{trial}/audit", response_class=HTMLResponse)
def audit(request: Request, trial: str, patient: str = "", verify: str = "") -> Response:
    viewer = logged_in(request)
    with store_of(request).reading() as session, translated():
        t = trial_or_404(session, trial)
        view = queries.audit_view(session, viewer, t, patient[:200] or None, verify_chain=verify == "yes")
    return render(request, "audit.html", {**nav(trial, "audit"), **view, "patient": patient})


def _jinja_filters() -> None:
    def json_short(value: Any, limit: int = 160) -> str:
        if value is None:
            return ""
        s = json.dumps(value, default=str, sort_keys=True)
        return s if len(s) <= limit else s[: limit - 1] + "…"

    def fmt_date(value: Any) -> str:
        return value.isoformat() if isinstance(value, dt.date) else str(value or "")

    from .display import action_words, alert_parts, grouped_in_order, note_prompt, reason_words, unit_text

    templates.env.filters["json_short"] = json_short
    templates.env.filters["d"] = fmt_date
    templates.env.filters["unit"] = unit_text
    templates.env.filters["alert_parts"] = alert_parts
    templates.env.filters["note_prompt"] = note_prompt
    templates.env.filters["groupby_first"] = grouped_in_order
    templates.env.filters["action_words"] = action_words
    templates.env.filters["reason_words"] = reason_words


_jinja_filters()
