"""The JSON API: every operation the pages offer, with the same rules and the same error shape.

Authentication: ``POST /api/session`` with id and password returns the session cookie (HttpOnly,
SameSite=Strict) and a CSRF token; every later POST sends the token in ``X-CSRF-Token``.
Signatures carry the password again in the body, as on the pages.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from workflow.core.blinding import refuse_while_blinded
from workflow.core.errors import InputError
from workflow.records.labels import bag_label_pdf
from workflow.service import CaseView, SittingEntry

from . import actions
from .context import web_of
from .pages_audit import parse_day
from .pages_auth import set_session_cookie, sign_in
from .present import case_json, pending_json
from .security import CSRF_HEADER, Viewer, check_csrf, csrf_token_for
from .settings import ADMIN, AUDIT, CLINICAL, PHARMACY, RECORD_READERS, WARD


class ErrorOut(BaseModel):
    code: str
    message: str
    field: str | None = None
    details: list[str] | None = None
    fields: list[str] | None = None  # when a form had several problems: each entry at fault


ERRORS: dict[int | str, dict[str, Any]] = {
    **{s: {"model": ErrorOut} for s in (401, 403, 404, 409, 422)},
    503: {"model": ErrorOut, "description": "The database is not answering; retry shortly"},
}
# Routes that read a body can also refuse one past ``WebSettings.max_body_bytes``.
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorOut, "description": "Request body larger than the server's limit"}
}
PDF: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/pdf": {}}, "description": "The PDF"}
}
NUL = "\x00"


def no_nul_in_url(request: Request) -> None:
    """Path and query parameters: a NUL character is no identifier, date or search text (and
    PostgreSQL refuses it in text), so it is bad input named by its parameter."""
    for params in (request.path_params, request.query_params):
        for name, value in params.items():
            if NUL in str(value):
                raise InputError(name, "must not contain a NUL character")


router = APIRouter(prefix="/api", responses=ERRORS, dependencies=[Depends(no_nul_in_url)])


def _reject_nul(value: Any) -> Any:
    if isinstance(value, str) and NUL in value:
        raise ValueError("must not contain a NUL character")
    if isinstance(value, dict):
        for k, v in value.items():
            _reject_nul(k)
            _reject_nul(v)
    elif isinstance(value, list):
        for v in value:
            _reject_nul(v)
    return value


class In(BaseModel):
    """A request body: unknown fields are refused (a misspelt ``usernme`` is not silently
    dropped from a signature), and so is a NUL character in any text."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return _reject_nul(value)


# An item id as the protocol defines them; a version or sequence number fits a database integer.
ItemId = Annotated[str, StringConstraints(min_length=1, max_length=100)]
MAX_INT = 2**31 - 1


class LoginIn(In):
    username: str = Field(max_length=64)
    password: str = Field(max_length=256)


class SessionOut(BaseModel):
    username: str
    printed_name: str
    roles: list[str]
    csrf_token: str
    signing_lapsed: bool = False


class Signature(In):
    expected_version: int = Field(ge=1, le=MAX_INT)
    password: str = Field(max_length=256)
    username: str | None = Field(
        default=None,
        max_length=64,
        description="Needed when the signing session lapsed, or for a second person signing",
    )


class StepIn(Signature):
    values: dict[ItemId, str | bool] = Field(default_factory=dict)
    wristband: str | None = Field(
        default=None,
        max_length=200,
        description="A wristband scan (the MRN): checked against the dose's patient, it fills "
        "the MRN the step asks for",
    )
    acknowledge_photo_barcodes: bool = Field(
        default=False,
        description="A verifying step: the verifier has seen that a barcode read in a verified "
        "step's photo disagrees with its entry (the web form's checkbox); without it such a "
        "step is refused",
    )


class SittingStepIn(In):
    step: ItemId = Field(description="A step of the sitting, in the protocol's order")
    values: dict[ItemId, str | bool] = Field(default_factory=dict)


class SittingIn(Signature):
    steps: list[SittingStepIn] = Field(
        min_length=1,
        max_length=8,
        description="The steps of one of the protocol's sittings, first to last, each with its "
        "values: all signed by this one signature, or none",
    )
    wristband: str | None = Field(
        default=None,
        max_length=200,
        description="A wristband scan (the MRN): fills the MRN a step of the sitting asks for",
    )


class ExitIn(Signature):
    action: str = Field(description="resume, discontinue, cancel or waste")
    reason: str = Field(max_length=64)
    note: str = Field(default="", max_length=2000)


class CorrectionIn(Signature):
    target_seq: int = Field(ge=1, le=MAX_INT)
    values: dict[ItemId, str | bool]
    reason: str = Field(max_length=2000)


class WorklistRow(BaseModel):
    """One worklist line. ``mrn``, ``cycle``, ``dose_in_cycle`` and ``plan`` are empty (or
    null) while the viewer may sign an independent check of the case that asks for them."""

    id: str
    version: int
    patient: str
    mrn: str
    cycle: int | None
    dose_in_cycle: int | None
    doses_per_cycle: int
    scheduled_at: str
    scheduled_local: str
    overdue: bool
    state: str
    on_hold: bool
    step: str
    phase: str
    plan: dict[str, Any] | None
    plan_words: dict[str, str] | None = Field(
        default=None,
        description="The plan's numbers as text, rounded as the CLI and the record print them",
    )
    blinded: bool
    stage: str = Field(
        description="ordered, pharmacy, ready, bedside, infusing, after, held, ended"
    )
    stage_title: str
    due_local: str = Field(description="The due time in the site's zone, with the zone")
    due_time: str = Field(description="HH:MM in the site's zone")
    waiting_since: str = Field(description="The dose's last signed step (UTC)")
    waiting_minutes: int
    waiting: str
    minutes_left: int | None = Field(description="Infusing: planned minutes still to run")
    holds: list[str] = Field(description="The rules holding the dose, in words")
    stat: bool = Field(
        default=False, description="A STAT order from the hospital (pharmacy queue: first)"
    )
    order_stopped: bool = Field(
        default=False,
        description="The hospital discontinued the order after the bag was made: waste it",
    )


class CaseOut(BaseModel):
    """A case as the viewer may see it now. While they may sign an independent check of it
    (``blinded_steps``), whatever that check asks for is empty or null and named in
    ``hidden``; ``differences`` always names the differing items by label only, and
    ``difference_details`` (with the values) is empty for a viewer who may re-enter them."""

    id: str
    version: int
    state: str
    patient: dict[str, str]
    cycle: int | None
    dose_in_cycle: int | None
    doses_per_cycle: int
    dose_in_course: int | None
    scheduled_at: str
    overdue: bool
    on_hold: bool
    closed: bool
    next_step: dict[str, Any] | None
    allowed_steps: list[str]
    blinded_steps: list[str]
    hidden: list[str]
    plan: dict[str, Any] | None
    plan_words: dict[str, str] | None = Field(
        default=None,
        description="The plan's numbers as text, rounded as the CLI and the record print them",
    )
    beyond_use_at: str | None
    holds: list[dict[str, Any]]
    differences: list[str]
    difference_items: list[str]
    difference_details: list[str]
    mismatch: bool
    order_stopped: str | None = None  # the order was discontinued after the bag was made
    flags: list[dict[str, Any]]
    infusion_started_at: str | None
    infusion_stopped_at: str | None
    end: dict[str, Any] | None
    entries: list[dict[str, Any]]
    records: str | None = Field(
        default=None,
        description="An ended case's signed records: pending (being signed and archived just "
        "after the closing step), archived, or failed (ended without records: `bedside archive "
        "catch-up` makes them); null while the case is open. GET .../records-state to follow",
    )


class RecordOut(BaseModel):
    sha256: str
    case_id: str
    kind: str
    patient_name: str
    mrn: str
    dose_label: str
    signed_at: str
    lots: str
    signers: str
    state: str


class RecordsStateOut(BaseModel):
    """Where an ended case's records stand (the case page's script polls this while pending)."""

    state: str | None = Field(description="pending, archived or failed; null: the case is open")
    reason: str | None = Field(default=None, description="why none were made, when known")
    records: list[RecordOut]


class VerifyOut(BaseModel):
    ok: bool
    sha256: str
    signers: list[str]
    checks: list[dict[str, str]]


class UserOut(BaseModel):
    username: str
    # The account id records print beside the printed name.
    id: str
    printed_name: str
    roles: list[str]
    active: bool
    must_change_password: bool
    locked: bool


class UserIn(In):
    username: str = Field(max_length=64)
    printed_name: str = Field(max_length=200)
    roles: list[str]
    password: str = Field(max_length=256)
    # True once the admin has checked a printed name the API warned mixes look-alike scripts
    # (422 ``mixed_script_name``): it is then registered exactly as typed.
    confirm_mixed_script: bool = False


class PasswordIn(In):
    password: str = Field(max_length=256)


def _viewer(request: Request, roles: tuple[str, ...], post: bool = False) -> Viewer:
    viewer = web_of(request).viewer(request, roles)
    if post:
        check_csrf(viewer, request.headers.get(CSRF_HEADER))
    return viewer


def need(roles: tuple[str, ...], post: bool = False) -> Any:
    """A dependency: session, role (and a POST's CSRF header) are checked before the body is
    validated, so a stranger learns nothing from validation messages."""

    def dependency(request: Request) -> Viewer:
        return _viewer(request, roles, post)

    return Depends(dependency)


CLINICAL_POST = need(CLINICAL, post=True)
ADMIN_POST = need(ADMIN, post=True)


def _case(
    request: Request,
    viewer: Viewer,
    case_id: str,
    step: str | None = None,
    view: CaseView | None = None,
) -> CaseOut:
    """The case as stored, or as ``view`` left it: a signature's answer describes the version
    that signature made, not a later one another tablet wrote meanwhile (found by the soak).
    What is hidden follows the viewer and the case's state; ``step`` hides nothing more or less."""
    web = web_of(request)
    view = view or web.bedside.load(case_id)
    if step is not None and step not in view.case.protocol.step_ids():
        raise InputError("step", f"'{step}' is not a step of this case's protocol")
    blinding = actions.blinding_of(web, view, viewer)
    data = case_json(view, web.bedside.tz, web.bedside.clock.now(), blinding)
    data["records"] = web.bedside.case_records(view).state
    return CaseOut(**data)


@router.post("/session", response_model=SessionOut, responses=BODY_ERRORS)
def login(request: Request, body: LoginIn) -> Response:
    signed_in = sign_in(request, body.username, body.password)
    user, token, session = signed_in.user, signed_in.token, signed_in.session
    out = SessionOut(
        username=user.username,
        printed_name=user.printed_name,
        roles=sorted(user.roles),
        csrf_token=csrf_token_for(session),
    )
    response = JSONResponse(out.model_dump())
    set_session_cookie(request, response, token)
    return response


@router.get("/session", response_model=SessionOut)
def me(request: Request) -> SessionOut:
    viewer = web_of(request).viewer(request, tuple(sorted({*CLINICAL, *AUDIT, *ADMIN})))
    return SessionOut(
        username=viewer.user.username,
        printed_name=viewer.user.printed_name,
        roles=sorted(viewer.user.roles),
        csrf_token=viewer.csrf_token,
        signing_lapsed=viewer.signing_lapsed,
    )


@router.post("/session/end", status_code=204)
def logout(request: Request) -> Response:
    web = web_of(request)
    viewer = _viewer(request, tuple(sorted({*CLINICAL, *AUDIT, *ADMIN})), post=True)
    web.bedside.end_web_session(viewer.session.id)
    response = Response(status_code=204)
    response.delete_cookie(web.settings.cookie_name)
    return response


@router.get("/ward", response_model=list[WorklistRow])
def ward(request: Request) -> list[WorklistRow]:
    """The ward board's rows (the /ward page's, from the same service query)."""
    web = web_of(request)
    viewer = _viewer(request, WARD)
    rows = web.bedside.ward_board(limit=web.settings.worklist_limit)
    return [WorklistRow(**r) for r in actions.board_rows(web, viewer, rows)]


@router.get("/pharmacy", response_model=list[WorklistRow])
def pharmacy(request: Request, step: str | None = None) -> list[WorklistRow]:
    """The pharmacy queue's rows (the /pharmacy page's, from the same service query);
    ``step`` keeps the doses waiting at that step (``held``: on hold), 422 naming the
    queue's steps otherwise."""
    web = web_of(request)
    viewer = _viewer(request, PHARMACY)
    queue = web.bedside.pharmacy_queue(limit=web.settings.worklist_limit, step=step)
    return [WorklistRow(**r) for r in actions.board_rows(web, viewer, queue.rows)]


@router.get("/pending-orders")
def pending_orders(request: Request, patient_id: str | None = None) -> list[dict[str, Any]]:
    """Orders from the hospital waiting for a prescriber to start their patient's course (the
    pharmacy queue's, the ward board's and the patient page's list), STAT first, then oldest."""
    web = web_of(request)
    _viewer(request, CLINICAL)
    pending = web.bedside.pending_orders(patient_id)
    return [pending_json(o, web.bedside.tz) for o in pending]


@router.get("/cases/{case_id}", response_model=CaseOut)
def get_case(request: Request, case_id: str, step: str | None = None) -> CaseOut:
    """The case as a screen shows it to this viewer now. ``step`` is checked to be one of the
    protocol's steps; it never changes what is hidden (the server decides that from who asks
    and the case's state)."""
    viewer = _viewer(request, CLINICAL)
    return _case(request, viewer, case_id, step)


@router.post("/cases/{case_id}/steps/{step_id}", response_model=CaseOut, responses=BODY_ERRORS)
def sign_step(
    request: Request,
    case_id: str,
    step_id: str,
    body: StepIn,
    viewer: Viewer = CLINICAL_POST,
) -> CaseOut:
    """Sign a step. A step that takes photos takes them through ``.../with-photos``."""
    return signed_step(request, viewer, case_id, step_id, body)


def signed_step(
    request: Request,
    viewer: Viewer,
    case_id: str,
    step_id: str,
    body: StepIn,
    photos: dict[str, bytes] | None = None,
) -> CaseOut:
    """The one way the API signs a step, with or without photos (the same service call as the
    page's form: photos checked by content, stored, their barcodes read and compared)."""
    web = web_of(request)
    values = dict(body.values)
    if body.wristband and body.wristband.strip():
        current = web.bedside.load(case_id)
        step = (
            current.case.protocol.step(step_id)
            if step_id in current.case.protocol.step_ids()
            else None
        )
        if step is None:
            raise InputError("step", f"'{step_id}' is not a step of this case's protocol")
        actions.from_wristband(web, viewer, current, step, body.wristband, values)
    view = actions.sign_step(
        web,
        viewer,
        case_id,
        step_id,
        body.expected_version,
        values,
        body.password,
        body.username,
        photos,
        body.acknowledge_photo_barcodes,
    )
    return _case(request, viewer, case_id, view=view)


@router.post("/cases/{case_id}/sittings", response_model=CaseOut, responses=BODY_ERRORS)
def sign_sitting(
    request: Request, case_id: str, body: SittingIn, viewer: Viewer = CLINICAL_POST
) -> CaseOut:
    """Sign the steps of a sitting (the protocol's ``sittings``: consecutive steps one person
    does at one sitting) with one signature: each step judged as when signed alone, all
    stored together or, on any refusal, none. The page's form does the same."""
    web = web_of(request)
    current = web.bedside.load(case_id)
    protocol = current.case.protocol
    entered = []
    for posted in body.steps:
        if posted.step not in protocol.step_ids():
            raise InputError("steps", f"'{posted.step}' is not a step of this case's protocol")
        entered.append((protocol.step(posted.step), dict(posted.values)))
    actions.wristband_into(web, viewer, current, entered, body.wristband)
    entries = [SittingEntry(step.id, values) for step, values in entered]
    view = actions.sign_sitting(
        web,
        viewer,
        case_id,
        body.expected_version,
        entries,
        body.password,
        body.username,
    )
    return _case(request, viewer, case_id, view=view)


@router.post("/cases/{case_id}/exit", response_model=CaseOut, responses=BODY_ERRORS)
def side_exit(
    request: Request, case_id: str, body: ExitIn, viewer: Viewer = CLINICAL_POST
) -> CaseOut:
    view = actions.side_exit(
        web_of(request),
        viewer,
        case_id,
        body.expected_version,
        body.action,
        body.reason,
        body.note,
        body.password,
        body.username,
    )
    return _case(request, viewer, case_id, view=view)


@router.post("/cases/{case_id}/corrections", response_model=CaseOut, responses=BODY_ERRORS)
def correct(
    request: Request, case_id: str, body: CorrectionIn, viewer: Viewer = CLINICAL_POST
) -> CaseOut:
    view = actions.correct(
        web_of(request),
        viewer,
        case_id,
        body.expected_version,
        body.target_seq,
        body.values,
        body.reason,
        body.password,
        body.username,
    )
    return _case(request, viewer, case_id, view=view)


@router.get("/cases/{case_id}/label.pdf", response_class=Response, responses=PDF)
def label(request: Request, case_id: str) -> Response:
    """The bag label; refused (403 ``blinded``) to someone who may sign an independent check
    of this case now: they read the label on the bag, and a reprint shows what it should say."""
    web = web_of(request)
    viewer = _viewer(request, PHARMACY)
    view = web.bedside.load(case_id)
    refuse_while_blinded(actions.blinding_of(web, view, viewer), "The bag label")
    pdf = bag_label_pdf(view.case, web.bedside.tz, web.bedside.settings.label_symbology)
    return Response(pdf, media_type="application/pdf")


@router.get("/cases/{case_id}/records", response_model=list[RecordOut])
def case_records(request: Request, case_id: str) -> list[RecordOut]:
    web = web_of(request)
    viewer = _viewer(request, RECORD_READERS)
    # The index rows name the patient's MRN and the dose: not for a blinded checker.
    refuse_while_blinded(
        actions.blinding_of(web, web.bedside.load(case_id), viewer), "This dose's records"
    )
    return [_record(r) for r in web.bedside.search_archive(case_id=case_id)]


@router.get("/cases/{case_id}/records-state", response_model=RecordsStateOut)
def records_state(request: Request, case_id: str) -> RecordsStateOut:
    """Whether an ended case's records are still being made, archived (with them) or failed."""
    web = web_of(request)
    viewer = _viewer(request, RECORD_READERS)
    view = web.bedside.load(case_id)
    refuse_while_blinded(actions.blinding_of(web, view, viewer), "This dose's records")
    records = web.bedside.case_records(view)
    return RecordsStateOut(
        state=records.state, reason=records.reason, records=[_record(r) for r in records.records]
    )


def _record(r: Any) -> RecordOut:
    return RecordOut(
        sha256=r.sha256,
        case_id=r.case_id,
        kind=r.kind,
        patient_name=r.patient_name,
        mrn=r.mrn,
        dose_label=r.dose_label,
        signed_at=r.signed_at.isoformat(),
        lots=r.lots,
        signers=r.signers,
        state=r.state,
    )


@router.get("/archive", response_model=list[RecordOut])
def archive(
    request: Request,
    q: str = "",
    mrn: str = "",
    date_from: str = "",
    date_to: str = "",
    lot: str = "",
    signer: str = "",
    state: str = "",
) -> list[RecordOut]:
    web = web_of(request)
    _viewer(request, AUDIT)
    rows = actions.search_archive(
        web,
        text=q,
        mrn=mrn,
        date_from=parse_day("date_from", date_from),
        date_to=parse_day("date_to", date_to, end=True),
        lot=lot,
        signer=signer,
        state=state,
    )
    return [_record(r) for r in rows]


@router.get("/archive/{sha}", response_model=RecordOut)
def record(request: Request, sha: str) -> RecordOut:
    _viewer(request, AUDIT)
    rec, _pdf = actions.record_bytes(web_of(request), sha)
    return _record(rec)


@router.get("/archive/{sha}/pdf", response_class=Response, responses=PDF)
def record_pdf(request: Request, sha: str) -> Response:
    viewer = _viewer(request, RECORD_READERS)
    _rec, pdf = actions.record_for(web_of(request), viewer, sha)
    return Response(pdf, media_type="application/pdf")


@router.post("/archive/{sha}/verify", response_model=VerifyOut)
def verify(request: Request, sha: str) -> VerifyOut:
    _viewer(request, AUDIT, post=True)
    return VerifyOut(**actions.verify_record(web_of(request), sha))


@router.get("/users", response_model=list[UserOut])
def users(request: Request) -> list[UserOut]:
    _viewer(request, ADMIN)
    return [UserOut(**actions.user_json(u)) for u in web_of(request).bedside.list_users()]


@router.post("/users", response_model=UserOut, status_code=201, responses=BODY_ERRORS)
def add_user(request: Request, body: UserIn, viewer: Viewer = ADMIN_POST) -> UserOut:
    user = web_of(request).bedside.add_user(
        body.username,
        body.printed_name,
        body.roles,
        body.password,
        by=viewer.user.id,
        must_change_password=True,
        confirm_mixed_script=body.confirm_mixed_script,
    )
    return UserOut(**actions.user_json(user))


@router.post("/users/{username}/deactivate", response_model=UserOut)
def deactivate(request: Request, username: str) -> UserOut:
    viewer = _viewer(request, ADMIN, post=True)
    user = web_of(request).bedside.deactivate_user(username, by=viewer.user.id)
    return UserOut(**actions.user_json(user))


@router.post("/users/{username}/reset-password", response_model=UserOut, responses=BODY_ERRORS)
def reset_password(
    request: Request, username: str, body: PasswordIn, viewer: Viewer = ADMIN_POST
) -> UserOut:
    user = web_of(request).bedside.reset_password(username, body.password, by=viewer.user.id)
    return UserOut(**actions.user_json(user))
