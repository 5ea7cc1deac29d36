"""Posted forms parsed in the event loop, so page handlers can be plain functions.

FastAPI runs plain (``def``) handlers in its thread pool. Signing checks a password with argon2
and archiving renders and signs PDFs: done inside an ``async`` handler they would stall every
other request on the event loop (and pyHanko's own event loop cannot start inside a running one).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

from fastapi import Depends, Request
from starlette.datastructures import FormData, UploadFile

from workflow.core.errors import InputError
from workflow.core.photos import PHOTO_FIELD_PREFIX

NUL = "\x00"


def _field(name: str) -> str:
    """The item a form field carries (``v_spo2_pct`` is ``spo2_pct``), as errors name it."""
    return name.removeprefix("v_") or "form"


def _refuse(request: Request, name: str, message: str) -> InputError:
    """Bad input in a form field, named in words: a protocol item by its label."""
    field = _field(name)
    protocol = request.app.state.web.bedside.protocol
    label = next((it.label for s in protocol.steps for it in s.items if it.id == field), None)
    return InputError(field, message, label=label)


async def _form(request: Request) -> FormData:
    return await _checked_form(request, files=False)


async def _form_with_photos(request: Request) -> FormData:
    """A step's form: as ``_form``, except that ``photo_<id>`` parts may be files (the
    camera's upload; the service checks their content)."""
    return await _checked_form(request, files=True)


async def _checked_form(request: Request, *, files: bool) -> FormData:
    """The posted form, refused (422, naming the field) when a part is a file (no page takes
    one, and its text would otherwise be the upload's repr), when a value holds a NUL character
    (no text a person types; PostgreSQL refuses it) or bytes that are not UTF-8 (Starlette would
    silently read them as Latin-1 or U+FFFD and the garbage could be signed)."""
    body = await request.body()  # bounded by the body limit; form() reads this copy
    form = await request.form()
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            if files and name.startswith(PHOTO_FIELD_PREFIX):
                continue
            await form.close()
            raise _refuse(request, name, "a file cannot be posted here")
        if NUL in value or NUL in name:
            raise _refuse(request, name, "must not contain a NUL character")
    has_files = any(isinstance(v, UploadFile) for _, v in form.multi_items())
    bad = _not_utf8(body, form, request.headers.get("content-type", ""), has_files)
    if bad is not None:
        raise _refuse(request, bad, "is not valid UTF-8 text")
    return form


def _not_utf8(
    body: bytes, form: FormData, content_type: str, has_files: bool = False
) -> str | None:
    """The first field whose bytes are not UTF-8, or None when all of them are."""
    if content_type.startswith("application/x-www-form-urlencoded"):
        for pair in body.split(b"&"):
            key, _, text = pair.partition(b"=")
            try:
                for part in (key, text):
                    unquote_to_bytes(part.replace(b"+", b" ")).decode("utf-8")
            except UnicodeDecodeError:
                return _field(unquote_to_bytes(key).decode("utf-8", "replace"))
        return None
    if not content_type.startswith("multipart/form-data"):
        return None  # not a form at all: nothing was read from it
    try:
        body.decode("utf-8")  # a text-only multipart form is UTF-8 throughout
        return None
    except UnicodeDecodeError:
        pass
    for name, value in form.multi_items():  # Starlette read the bad part as Latin-1
        if isinstance(value, UploadFile):
            continue  # a photo's bytes are not text
        try:
            raw = str(value).encode("latin-1")
        except UnicodeEncodeError:
            continue
        if raw in body:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return _field(name)
    # With a photo in it the body is binary anyway: only its text parts had to be UTF-8.
    return None if has_files else "form"


FORM: Any = Depends(_form)
PHOTO_FORM: Any = Depends(_form_with_photos)
