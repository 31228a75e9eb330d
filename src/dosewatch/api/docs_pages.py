"""The API's documentation pages, offline: Swagger UI at ``/docs`` and ReDoc at ``/redoc``, their
files served from the installed ``fastapi-offline`` package (no CDN) and started by the package's
own ``api-docs.js``, so that the pages run under the dashboard's Content-Security-Policy (no inline
script). FastAPI's own pages load both from a CDN and start them with an inline script."""
from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from ..web.routes import SECURITY_HEADERS

ASSETS = "/api-docs-files"
# Swagger UI runs under the dashboard's own headers. ReDoc (styled-components) adds <style> elements
# and takes no nonce from outside its bundle, so its page alone allows inline styles; scripts stay
# 'self' on both, and ReDoc's search index runs in a worker from blob:.
STRICT = SECURITY_HEADERS
_POLICY = SECURITY_HEADERS["Content-Security-Policy"]
REDOC = {**SECURITY_HEADERS, "Content-Security-Policy": _POLICY.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
         + "; worker-src 'self' blob:"}


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="{assets}/favicon.png">{css}
</head><body>
<div id="{target}" data-openapi="{openapi}"></div>
<script src="{assets}/{bundle}"></script>
<script src="/static/api-docs.js"></script>
</body></html>"""


def _page(app: FastAPI, title: str, target: str, bundle: str, headers: dict[str, str], css: str = "") -> HTMLResponse:
    html = _PAGE.format(title=f"{app.title} - {title}", assets=ASSETS, css=css, target=target,
                        openapi=app.openapi_url, bundle=bundle)
    return HTMLResponse(html, headers=headers)


def mount_docs(app: FastAPI) -> None:
    """Serve /docs and /redoc from the package (the app is made with ``docs_url=None, redoc_url=None``)."""
    files = resources.files("fastapi_offline") / "static"
    app.mount(ASSETS, StaticFiles(directory=str(files)), name="api-docs-files")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return _page(app, "Swagger UI", "swagger-ui", "swagger-ui-bundle.js", STRICT,
                     f'\n<link rel="stylesheet" href="{ASSETS}/swagger-ui.css">')

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return _page(app, "ReDoc", "redoc", "redoc.standalone.js", REDOC)
