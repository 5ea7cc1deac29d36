"""Posted forms parsed in the event loop, so page handlers can be plain functions.

FastAPI runs plain (``def``) handlers in its thread pool. Signing checks a password with argon2
and archiving renders and signs PDFs: done inside an ``async`` handler they would stall every
other request on the event loop (and pyHanko's own event loop cannot start inside a running one).
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request
from starlette.datastructures import FormData


async def _form(request: Request) -> FormData:
    return await request.form()


FORM: Any = Depends(_form)
