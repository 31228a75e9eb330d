"""The dashboard: server-rendered pages (Jinja2 + htmx) on the trial server, mounted by ``web.routes.mount``."""
