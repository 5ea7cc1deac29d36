"""The FastAPI application: pages, the JSON API, static files and the one error handler."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader

from workflow.archive import Archive
from workflow.service import Bedside
from workflow.timing import phase

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
from .headers import ResponseHeaders
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

    # Outermost (added last): its headers go on every answer, the error handler's too.
    app.add_middleware(ResponseHeaders)

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
