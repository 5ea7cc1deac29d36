"""The objects every route needs, kept on ``app.state.web``."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from fastapi.templating import Jinja2Templates

from workflow.archive import Archive
from workflow.service import Bedside

from .security import Viewer, current_viewer, require
from .settings import WebSettings


@dataclass
class Web:
    bedside: Bedside
    settings: WebSettings
    templates: Jinja2Templates
    archive: Archive | None

    def viewer(self, request: Request, roles: tuple[str, ...]) -> Viewer:
        viewer = current_viewer(request, self.bedside, self.settings)
        require(viewer, roles)
        return viewer


def web_of(request: Request) -> Web:
    web = request.app.state.web
    assert isinstance(web, Web)
    return web
