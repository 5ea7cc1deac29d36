"""The web UI and JSON API (FastAPI + Jinja2). No clinical logic: it calls ``Bedside`` and
reads ``Case`` objects; the case machine decides everything."""

from .app import create_app
from .settings import WebSettings

__all__ = ["WebSettings", "create_app"]
