"""Dependencies as ``Annotated`` aliases, so that route signatures read like their specification.

``CurrentViewer`` is who is asking (from the bearer token); what they may see is decided in one
place, ``dosewatch.store.scope.scoped``, which every store query applies.
"""
from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import select

from ..store.db import Store
from ..store.models import User, UserSite
from ..store.scope import ALL_SITES_ROLES, Viewer
from .security import token_user

oauth2 = OAuth2PasswordBearer(tokenUrl="/api/token")


async def get_store(request: Request) -> Store:
    # async: FastAPI runs a plain ``def`` dependency in the thread pool, a hop per request for nothing
    return request.app.state.store


StoreDep = Annotated[Store, Depends(get_store)]


Token = Annotated[str, Depends(oauth2)]


def current_viewer(request: Request, store: StoreDep, token: Token) -> Viewer:
    unauthorized = HTTPException(status.HTTP_401_UNAUTHORIZED, "not logged in, or the token expired",
                                 headers={"WWW-Authenticate": "Bearer"})
    name = token_user(token, request.app.state.settings.secret_key)
    if name is None:
        raise unauthorized
    with store.reading() as session:  # one query: the user and their sites
        rows = session.execute(select(User.role, User.active, UserSite.site_id)
                               .outerjoin(UserSite, UserSite.user_id == User.id).where(User.name == name)).all()
    if not rows or not rows[0].active:
        raise unauthorized
    role = rows[0].role
    sites = None if role in ALL_SITES_ROLES else frozenset(r.site_id for r in rows if r.site_id is not None)
    return Viewer(name, role, sites)


CurrentViewer = Annotated[Viewer, Depends(current_viewer)]


async def upload_body(request: Request) -> bytes:
    """The request body, refused with 413 beyond the upload limit (read in chunks, never whole)."""
    limit = request.app.state.settings.max_upload_bytes
    too_big = HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"upload larger than {limit} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


UploadBody = Annotated[bytes, Depends(upload_body)]


def check_as_of(as_of: dt.date | None = None) -> dt.date | None:
    """An evaluation date the monitor can work with: not before 1900, not after tomorrow."""
    if as_of is not None and not dt.date(1900, 1, 1) <= as_of <= dt.date.today() + dt.timedelta(days=1):
        raise HTTPException(422, f"as_of {as_of.isoformat()} is out of range "
                            "(1900-01-01 to tomorrow)")
    return as_of


async def as_of_param(as_of: dt.date | None = None) -> dt.date | None:
    return check_as_of(as_of)


AsOf = Annotated[dt.date | None, Depends(as_of_param)]
