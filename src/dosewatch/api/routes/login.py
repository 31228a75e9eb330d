"""Health, login (OAuth2 password form -> bearer token), who am I."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordRequestForm

from ...store import logins
from ..deps import CurrentViewer, StoreDep
from ..schemas import Health, Me, Token
from ..security import create_token

router = APIRouter(tags=["login"])


@router.get("/health")
def health(store: StoreDep) -> Health:
    from sqlalchemy import text

    with store.reading() as session:
        session.execute(text("SELECT 1"))
    return Health(status="ok", database=store.engine.dialect.name)


@router.post("/token", responses={401: {"description": "wrong user name or password"}, 429: {
    "description": "locked out after too many wrong passwords (Retry-After: seconds)"}})
def login(request: Request, store: StoreDep, form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> Token:
    client = request.client.host if request.client else "unknown"
    try:
        user = logins.login(store, request.app.state.login_throttle, form.username, form.password, client)
    except logins.LockedOut as exc:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, str(exc),
                            headers={"Retry-After": str(exc.retry_after)}) from None
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong user name or password",
                            headers={"WWW-Authenticate": "Bearer"})
    settings = request.app.state.settings
    return Token(access_token=create_token(user.name, settings.secret_key, settings.token_minutes),
                 token_type="bearer", expires_in=settings.token_minutes * 60)


@router.get("/me")
def me(viewer: CurrentViewer, store: StoreDep) -> Me:
    from sqlalchemy import select

    from ...store.models import Site

    with store.reading() as session:
        stmt = select(Site.code).order_by(Site.code)
        if viewer.site_ids is not None:
            stmt = stmt.where(Site.id.in_(sorted(viewer.site_ids)))
        sites = list(session.scalars(stmt))
    return Me(name=viewer.name, role=viewer.role, sites=sites, all_sites=viewer.all_sites)
