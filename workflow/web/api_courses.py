"""Courses and doses on the JSON API: start a course (the prescriber's signed attestations),
see why a patient has no active course, open the course's next dose.

Each route calls one service command; the service decides (roles, retreatment, schedule).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from workflow.core.errors import InputError
from workflow.service.vocabulary import Course

from .api import BODY_ERRORS, CLINICAL_POST, ERRORS, In, _viewer, no_nul_in_url
from .context import web_of
from .security import Viewer, signing_proof
from .settings import CLINICAL

router = APIRouter(prefix="/api", responses=ERRORS, dependencies=[Depends(no_nul_in_url)])


class CourseStartIn(In):
    attestations: dict[str, bool] = Field(
        description="Each attestation id of the protocol's course_start, true when attested"
    )
    override_reason: str = Field(
        default="",
        max_length=2000,
        description="After a toxicity that contraindicates retreatment: the prescriber's reason",
    )
    password: str = Field(max_length=256)
    username: str | None = Field(default=None, max_length=64)


class CourseOut(BaseModel):
    id: str
    mrn: str
    status: str
    started_at: str
    protocol_version: str
    start_record: dict[str, Any] | None


class DoseIn(In):
    scheduled_at: datetime | None = Field(
        default=None, description="When the dose is due (ISO 8601 with a zone); default now"
    )
    password: str = Field(max_length=256)
    username: str | None = Field(default=None, max_length=64)


class DoseOut(BaseModel):
    case_id: str
    version: int
    state: str
    cycle: int
    dose_in_cycle: int
    dose_in_course: int


def _course_out(course: Course, mrn: str) -> CourseOut:
    return CourseOut(
        id=course.id,
        mrn=mrn,
        status=course.status,
        started_at=course.started_at.isoformat(),
        protocol_version=course.protocol_version,
        start_record=course.start_record,
    )


def _patient_id(request: Request, mrn: str) -> str:
    return web_of(request).bedside.patient_by_mrn(mrn).id


@router.post(
    "/patients/{mrn}/courses", response_model=CourseOut, status_code=201, responses=BODY_ERRORS
)
def start_course(
    request: Request, mrn: str, body: CourseStartIn, viewer: Viewer = CLINICAL_POST
) -> CourseOut:
    web = web_of(request)
    proof = signing_proof(viewer, body.password, body.username)
    course = web.bedside.start_course(
        _patient_id(request, mrn),
        proof,
        body.attestations,
        override_reason=body.override_reason,
    )
    return _course_out(course, mrn)


@router.get("/patients/{mrn}/course", response_model=CourseOut)
def active_course(request: Request, mrn: str) -> CourseOut:
    _viewer(request, CLINICAL)
    course = web_of(request).bedside.active_course(_patient_id(request, mrn))
    return _course_out(course, mrn)


@router.post(
    "/courses/{course_id}/doses", response_model=DoseOut, status_code=201, responses=BODY_ERRORS
)
def open_dose(
    request: Request, course_id: str, body: DoseIn, viewer: Viewer = CLINICAL_POST
) -> DoseOut:
    web = web_of(request)
    at = body.scheduled_at or web.bedside.clock.now()
    if at.tzinfo is None:
        raise InputError("scheduled_at", "needs a time zone", "ISO 8601 with Z or +hh:mm")
    proof = signing_proof(viewer, body.password, body.username)
    view = web.bedside.open_case(course_id, at, proof)
    c = view.case
    return DoseOut(
        case_id=c.case_id,
        version=view.version,
        state=c.state,
        cycle=c.cycle,
        dose_in_cycle=c.dose_in_cycle,
        dose_in_course=c.dose_in_course,
    )
