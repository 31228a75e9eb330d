"""The browser's login: a signed session cookie and the CSRF token that every form carries.

The cookie is a JWT (HS256, the server's key) with audience ``dosewatch-web``, so an API bearer
token is not a session and a session is not a bearer token. It holds the user's name and a random
CSRF token; forms send the token back in a hidden field (or htmx in the ``X-CSRF-Token`` header)
and every POST compares the two. The user is looked up on every request, so a deactivated user is
out at once. Before login there is no session: the login form's token is checked against a
short-lived cookie of its own (double submit).
"""
from __future__ import annotations

import datetime as dt
import hmac
import secrets
from dataclasses import dataclass

import jwt

SESSION_COOKIE = "dosewatch_session"
LOGIN_COOKIE = "dosewatch_login"
AUDIENCE = "dosewatch-web"
SESSION_HOURS = 8  # one working day; after it the user logs in again


@dataclass(frozen=True)
class WebSession:
    user: str
    csrf: str


def new_token() -> str:
    return secrets.token_urlsafe(32)


def encode(user: str, key: str, hours: int = SESSION_HOURS) -> str:
    now = dt.datetime.now(dt.timezone.utc)
    claims = {"sub": user, "csrf": new_token(), "aud": AUDIENCE, "iat": now, "exp": now + dt.timedelta(hours=hours)}
    return jwt.encode(claims, key, algorithm="HS256")


def decode(cookie: str | None, key: str) -> WebSession | None:
    """The session a valid, unexpired cookie holds; None for anything else."""
    if not cookie:
        return None
    try:
        claims = jwt.decode(cookie, key, algorithms=["HS256"], audience=AUDIENCE,
                            options={"require": ["exp", "sub", "aud"]})
    except jwt.PyJWTError:
        return None
    user, csrf = claims.get("sub"), claims.get("csrf")
    return WebSession(user, csrf) if isinstance(user, str) and isinstance(csrf, str) and csrf else None


def same_token(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(expected.encode(), given.encode())
