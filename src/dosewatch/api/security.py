"""Bearer tokens (JWT, HS256) with an expiry, signed with the server's key."""
from __future__ import annotations

import datetime as dt
import os
import secrets
from pathlib import Path

import jwt

ALGORITHM = "HS256"


def server_key(folder: Path) -> str:
    """$DOSEWATCH_SECRET_KEY, else a random key kept in ``folder/secret.key`` (readable by the owner
    only) so that tokens survive a restart."""
    if os.environ.get("DOSEWATCH_SECRET_KEY"):
        return os.environ["DOSEWATCH_SECRET_KEY"]
    path = folder / "secret.key"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def create_token(user: str, key: str, minutes: int) -> str:
    now = dt.datetime.now(dt.timezone.utc)
    return jwt.encode({"sub": user, "iat": now, "exp": now + dt.timedelta(minutes=minutes)}, key, algorithm=ALGORITHM)


def token_user(token: str, key: str) -> str | None:
    """The user a valid, unexpired token names; None for anything else."""
    try:
        payload = jwt.decode(token, key, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]})
    except jwt.PyJWTError:
        return None
    sub = payload.get("sub")
    return sub if isinstance(sub, str) else None
