"""The trial server's HTTP API (FastAPI): ``create_app(settings)``."""
from .app import Settings, create_app

__all__ = ["Settings", "create_app"]
