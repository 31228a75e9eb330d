"""What every request meets before a route: refusals of what no route can take (a NUL character in
the path or the query), validation errors that always encode (an ``inf`` from ``1e400`` in a JSON
body is no JSON value), and the security headers every response carries (exports included)."""
from __future__ import annotations

import math
from typing import Any
from urllib.parse import unquote_to_bytes

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send


# Every response: nothing cached (patients' data, tokens), no type sniffing. Pages add their own
# Content-Security-Policy (``web.routes.SECURITY_HEADERS``); what a response sets itself is kept.
HEADERS = ((b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff"))


class SecurityHeaders:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in HEADERS if h[0] not in have)]
            await send(message)

        await self.app(scope, receive, with_headers)


class RefuseNul:
    """ASGI middleware: a NUL character in the path or the query string is refused with 400 before
    any route reads it (PostgreSQL cannot compare text with a NUL: it would be a 500)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _has_nul(scope):
            response = JSONResponse({"detail": "a NUL character in the request's path or query: refused"}, 400)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _has_nul(scope: Scope) -> bool:
    raw = scope.get("raw_path") or scope.get("path", "").encode("utf-8", "surrogateescape")
    query = scope.get("query_string", b"")
    return b"\x00" in unquote_to_bytes(raw) or b"\x00" in unquote_to_bytes(query.replace(b"+", b" ")) \
        or "\x00" in scope.get("path", "")


def _finite(value: Any) -> Any:
    """``value`` with every float that JSON cannot hold (inf, nan) written as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def install(app: FastAPI) -> None:
    app.add_middleware(RefuseNul)
    app.add_middleware(SecurityHeaders)  # added last: outermost, so the NUL refusal carries them too

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _finite(jsonable_encoder(exc.errors()))}, status_code=422)
