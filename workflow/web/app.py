"""The FastAPI application: pages, the JSON API, static files and the one error handler."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader

from workflow.archive import Archive
from workflow.service import Bedside
from workflow.timing import phase, recording

from . import (
    api,
    api_courses,
    api_interop,
    api_orders,
    api_photos,
    balance,
    errors,
    pages_audit,
    pages_auth,
    pages_clinical,
    pages_danger,
    pages_formulary,
    pages_orders,
    photos,
)
from .context import Web
from .settings import WebSettings, default_templates_dir
from .sweeper import run_sweeper, sweep_once


def create_app(
    bedside: Bedside,
    settings: WebSettings | None = None,
    archive: Archive | None = None,
    on_shutdown: Sequence[Callable[[], object]] = (),
) -> FastAPI:
    """The web app. ``on_shutdown`` runs when the server stops gracefully, after the last
    request: uvicorn re-raises the stopping signal once it returns, so code after
    ``uvicorn.run`` never runs and cleanup belongs here."""
    # Without explicit settings, the site's bedside.yaml (read once when the home was opened).
    settings = settings or WebSettings.for_site(bedside.settings)
    folder = settings.templates_dir or default_templates_dir()
    # Autoescape everything: a patient named <script> stays text.
    env = Environment(loader=FileSystemLoader(str(folder)), autoescape=True)
    templates = Jinja2Templates(env=env)
    _time_rendering(templates)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await sweep_once(bedside, settings)  # before the first request: sessions left idle
        sweeper = asyncio.create_task(run_sweeper(bedside, settings))
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            for stop in on_shutdown:
                stop()

    app = FastAPI(
        lifespan=lifespan,
        title="Bedside",
        summary="Checked, signed preparation and administration of high-dose aldesleukin",
        docs_url=None,
        redoc_url=None,
    )
    app.state.web = Web(bedside, settings, templates, archive)
    app.mount("/static", StaticFiles(directory=str(folder / "static")), name="static")
    for router in ROUTERS:
        app.include_router(router)
    errors.install(app, templates)

    @app.middleware("http")
    async def headers(request, call_next):  # type: ignore[no-untyped-def]
        # Server-Timing: where this request's time went (auth, load, rules, append, commit,
        # records, render; workflow/timing.py), for the browser's developer tools and benches.
        started = time.perf_counter()
        with recording() as timings:
            response = await call_next(request)
        response.headers["Server-Timing"] = timings.header(time.perf_counter() - started)
        _security_headers(request, response)
        return response

    return app


def _time_rendering(templates: Jinja2Templates) -> None:
    """Every page rendered through ``templates`` is timed as the ``render`` phase."""
    render = templates.TemplateResponse

    def timed(*args: Any, **kwargs: Any) -> Any:
        with phase("render"):
            return render(*args, **kwargs)

    templates.TemplateResponse = timed  # type: ignore[method-assign]


# Pages first, then the JSON API; each module owns its routes (the order is the match order).
ROUTERS = (
    pages_auth.router,
    pages_clinical.router,
    pages_orders.router,
    pages_formulary.router,
    pages_danger.router,
    pages_audit.router,
    api.router,
    api_courses.router,
    api_interop.router,
    api_orders.router,
    balance.router,
    api_photos.router,
    photos.router,
)


def _security_headers(request: Request, response: Response) -> None:
    """Headers every answer carries (OWASP ASVS 14.4)."""
    # Clinical pages must not be kept by shared browsers or proxies.
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    )
    if pages_auth.secure(request):
        # ASVS 14.4.5: once reached over HTTPS, never again over plain HTTP.
        response.headers.setdefault(
            "Strict-Transport-Security", "max-age=31536000; includeSubDomains"
        )
    if request.url.path.startswith("/api/") and response.headers.get("content-type", "").startswith(
        "application/json"
    ):
        # ASVS 14.4.2: an API answer opened in a browser is a download, never a page.
        response.headers.setdefault("Content-Disposition", 'attachment; filename="api.json"')
