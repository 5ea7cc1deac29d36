"""Sign in and out (pages). The login form has its own CSRF token (a double-submit cookie)
because there is no session yet to bind one to."""

from __future__ import annotations

import hmac
from urllib.parse import urlparse

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from workflow.service.vocabulary import SignIn

from .context import web_of
from .formdata import FORM
from .forms import user_id_of
from .security import (
    LOGIN_CSRF_COOKIE,
    SIGNED_OUT,
    CsrfFailed,
    NotSignedIn,
    check_csrf,
    current_viewer,
    new_login_csrf,
)
from .settings import ADMIN, AUDIT, PHARMACY, WARD

router = APIRouter(include_in_schema=False)


def secure(request: Request) -> bool:
    setting = web_of(request).settings.secure_cookies
    return request.url.scheme == "https" if setting is None else setting


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        web_of(request).settings.cookie_name,
        token,
        httponly=True,
        samesite="strict",
        secure=secure(request),
        path="/",
    )


def sign_in(request: Request, username: str, password: str) -> SignIn:
    """Check both components and start a new server session (its cookie token and row).

    Whatever session the browser presented is ended first (OWASP ASVS 3.2.1, a new token on
    every authentication): a second person signing in on a shared tablet, or anyone who had
    seen the old cookie, must not find the old session still alive behind the new one.
    """
    web = web_of(request)
    presented = request.cookies.get(web.settings.cookie_name)
    return web.bedside.sign_in(username, password, replacing=presented)


def home_for(roles: frozenset[str]) -> str:
    if roles & set(WARD) and not roles & set(PHARMACY):
        return "/ward"
    if roles & set(PHARMACY):
        return "/pharmacy"
    if roles & set(WARD):
        return "/ward"
    if roles & set(AUDIT):
        return "/archive"
    if roles & set(ADMIN):
        return "/admin/users"
    return "/ward"


def safe_next(target: str | None) -> str | None:
    """Only a path on this site (no scheme, no host): never an open redirect."""
    if not target:
        return None
    parsed = urlparse(target)
    if parsed.scheme or parsed.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


@router.get("/")
def root(request: Request) -> Response:
    web = web_of(request)
    try:
        viewer = current_viewer(request, web.bedside, web.settings)
    except NotSignedIn:
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse(home_for(viewer.user.roles), status_code=303)


def login_form(
    request: Request,
    next: str | None,
    why: str | None = None,
    error: CsrfFailed | None = None,
    token: str = "",
) -> Response:
    """The sign-in form with its double-submit token (the browser's own, or a fresh one), set
    in the cookie too."""
    web = web_of(request)
    token = token or new_login_csrf()
    context: dict[str, object] = {
        "csrf": token,
        "next": safe_next(next) or "",
        "why": why,
        "viewer": None,
    }
    if error is not None:
        context.update(error={"code": error.code, "message": error.message}, status=403)
    response = web.templates.TemplateResponse(
        request, "login.html", context, status_code=403 if error else 200
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=secure(request)
    )
    return response


@router.get("/login")
def login_page(request: Request, next: str | None = None, why: str | None = None) -> Response:
    # Only our own words: a link carrying text of its own cannot put it on the sign-in page.
    minutes = int(web_of(request).settings.idle_timeout.total_seconds() // 60)
    shown = SIGNED_OUT[why].format(minutes=minutes) if why in SIGNED_OUT else None
    return login_form(request, next, shown)


@router.post("/login")
def login(request: Request, form: FormData = FORM) -> Response:
    sent = str(form.get("csrf_token", ""))
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    next_ = str(form.get("next", ""))
    if not sent or not cookie or not hmac.compare_digest(sent, cookie):
        # Shown again with a token its cookie matches (a new pair if the cookie is gone), so
        # the form can be sent again.
        failed = CsrfFailed("The sign-in form expired; please try again.")
        return login_form(request, next_, error=failed, token=cookie)
    # After a wrong password the form is shown again: it keeps the token its cookie holds.
    request.state.retry = (
        "login.html",
        {"csrf": cookie, "next": safe_next(next_) or "", "viewer": None},
    )
    username = user_id_of(form)
    signed_in = sign_in(request, username, str(form.get("password", "")))
    target = safe_next(str(form.get("next", ""))) or home_for(signed_in.user.roles)
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(request, response, signed_in.token)
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
def logout(request: Request, form: FormData = FORM) -> Response:
    web = web_of(request)
    try:
        viewer = current_viewer(request, web.bedside, web.settings)
    except NotSignedIn:
        return RedirectResponse("/login", status_code=303)

    check_csrf(viewer, str(form.get("csrf_token", "")))
    web.bedside.end_web_session(viewer.session.id)
    response = RedirectResponse("/login?why=signed_out", status_code=303)
    response.delete_cookie(web.settings.cookie_name)
    return response
