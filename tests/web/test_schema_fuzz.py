"""Schemathesis against the app's own /openapi.json, in-process on the real app and store.

Every operation the schema documents is fuzzed with schema-valid (positive) and schema-invalid
(negative) requests, as a signed-in user holding every role and as a stranger, then once more
"deep": with the path pinned to a real case, record, course and user, the real password and the
case's current version, so requests get past the password check into the case machine. Each
response is checked: never a 5xx, a status code and content type the schema documents, a body
that matches the documented schema, and every error in the ``{code, message, field?, details?}``
shape. The run is deterministic (``derandomize``) and bounded; ``BEDSIDE_SOAK=1`` tries more.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from workflow.dev.demo import _SIGNERS
from workflow.dev.walk import values_for

from .conftest import PASSWORD, Site, cred, login

SOAK = os.environ.get("BEDSIDE_SOAK") == "1"
# Examples per operation, per generation mode and per identity.
EXAMPLES = 250 if SOAK else 6
EVERY_ROLE = ["nurse", "pharmacist", "pharmacy_technician", "prescriber", "auditor", "admin"]
ERROR_KEYS = {"code", "message", "field", "details", "fields"}


def error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx is ``{code, message, field?, details?}`` and nothing else; a field it names is
    named in the message too, so a person reading only the message knows what to fix."""
    if response.status_code < 400:
        return None
    body = response.json()
    assert isinstance(body, dict), f"error body is not an object: {body!r}"
    kind = response.headers.get("content-type") or ""
    kind = " ".join(kind) if isinstance(kind, list) else kind  # schemathesis keeps a list
    if kind.startswith("application/fhir+json"):
        # The FHIR order route answers about the order in FHIR: an OperationOutcome whose
        # issue says what is wrong (its session, role and CSRF errors keep the shape below).
        assert body.get("resourceType") == "OperationOutcome", body
        assert all(
            i.get("severity") and i.get("code") and i.get("diagnostics") for i in body["issue"]
        )
        assert "Traceback" not in response.text
        return None
    assert set(body) <= ERROR_KEYS, (
        f"undocumented keys in an error: {sorted(set(body) - ERROR_KEYS)}"
    )
    assert isinstance(body.get("code"), str) and body["code"], f"no code: {body!r}"
    assert isinstance(body.get("message"), str) and body["message"], f"no message: {body!r}"
    if "field" in body:
        assert isinstance(body["field"], str) and body["field"], f"empty field: {body!r}"
        if body["code"] == "invalid_input":
            assert body["field"] in body["message"], f"message does not name the field: {body!r}"
    if "details" in body:
        assert isinstance(body["details"], list), f"details is not a list: {body!r}"
        assert all(isinstance(d, str) for d in body["details"]), body
    assert "Traceback" not in response.text
    return None


CHECKS: list[Callable[..., bool | None]] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    error_shape,
]


@dataclass
class Tally:
    operations: set[str] = field(default_factory=set)
    cases: int = 0
    failures: dict[str, str] = field(default_factory=dict)  # first message per (operation, kind)
    failed_cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)  # the error bodies' ``code``


@dataclass
class Identity:
    """Who sends a request: a session's cookie and CSRF header, or nothing."""

    name: str
    cookies: dict[str, str]
    headers: dict[str, str]


def session_of(site: Site, username: str) -> Identity:
    client = site.client()
    token = login(client, username)
    cookie = client.cookies.get("bedside_session")
    assert cookie
    return Identity(username, {"bedside_session": cookie}, {"X-CSRF-Token": token})


def complete_case(site: Site) -> str:
    view = site.walk_to("hold_checks")
    case_id = view.case.case_id
    while (step := view.case.next_step()) is not None:
        site.clock.advance(minutes=15 if step.id == "infusion_stop" else 3)
        values = values_for(view.case, step.id, site.clock.now())
        view = site.bedside.sign_step(
            case_id, view.version, step.id, values, cred(_SIGNERS[step.id])
        )
    return case_id


def run_operation(
    operation: Any,
    mode: GenerationMode,
    who: Identity | Callable[[], Identity],
    tally: Tally,
    *,
    pinned: dict[str, Any] | None = None,
    deep: Callable[[Any], None] | None = None,
    examples: int = EXAMPLES,
) -> None:
    path_parameters = None
    if pinned:
        names = {p.name for p in operation.path_parameters}
        path_parameters = {k: v for k, v in pinned.items() if k in names} or None
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)
    label = f"{operation.label} [{mode.value}]"

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def one(case: Any) -> None:
        ident = who() if callable(who) else who
        if deep is not None:
            deep(case)
        tally.cases += 1
        try:
            response = case.call(headers=ident.headers, cookies=ident.cookies)
        except Exception as exc:  # the in-process transport re-raises what would be a 500
            tally.failed_cases += 1
            key = f"{label} as {ident.name}: unhandled {type(exc).__name__}"
            tally.failures.setdefault(
                key, f"{exc}\n  {case.as_curl_command(headers=ident.headers)}"
            )
            return
        tally.statuses[response.status_code] += 1
        if response.status_code >= 400 and "json" in response.headers.get("content-type", [""])[0]:
            tally.codes[str(response.json().get("code"))] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=ident.headers)
        except FailureGroup as group:  # keep going: report every kind of failure found
            tally.failed_cases += 1
            failures = group.exceptions
            for failure in failures:
                title = getattr(failure, "title", type(failure).__name__)
                key = f"{label} as {ident.name}: {title}"
                if key not in tally.failures:
                    tally.failures[key] = (
                        f"{getattr(failure, 'message', failure)}\n"
                        f"  -> {response.status_code} {response.text[:300]}\n"
                        f"  {case.as_curl_command(headers=ident.headers)}"
                    )

    tally.operations.add(operation.label)
    try:
        one()
    except Unsatisfiable:
        # Nothing to get wrong: an operation without parameters or body has no negative case.
        assert mode is GenerationMode.NEGATIVE, label


def test_every_documented_operation_survives_schemathesis(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    identity = site.bedside.identity
    for username in ("fuzz.all", "fuzz.deep", "fuzz.out"):
        identity.add_user(username, f"Fuzz {username}", EVERY_ROLE, PASSWORD, by="test")
    identity.add_user("n.victim", "Victim Nurse", ["nurse"], PASSWORD, by="test")
    done = complete_case(site)
    site.clock.advance(hours=9)  # the next dose of the course is due
    live = site.walk_to("hold_checks")
    records = site.bedside.store.search_archive(case_id=done)
    assert records, "the completed dose has no signed record to fuzz with"

    schema = schemathesis.openapi.from_asgi("/openapi.json", site.app)
    everyone = session_of(site, "fuzz.all")
    deep_user = session_of(site, "fuzz.deep")
    stranger = Identity("a stranger", {}, {})

    def fresh() -> Identity:  # for POST /api/session/end, which ends the session it is sent with
        return session_of(site, "fuzz.out")

    pinned = {
        "case_id": live.case.case_id,
        "sha": records[0].sha256,
        "username": "n.victim",
        "course_id": site.course_id,
    }

    def make_deep(case: Any) -> None:
        """Past the password: the real password and the live case's current version."""
        if isinstance(case.body, dict):
            if "password" in case.body and case.operation.path != "/api/users":
                case.body["password"] = PASSWORD
            if "expected_version" in case.body:
                case.body["expected_version"] = site.bedside.load(live.case.case_id).version
            if "username" in case.body and case.operation.path.startswith("/api/cases"):
                case.body.pop("username")

    tally = Tally()
    operations = [r.ok() for r in schema.get_all_operations()]
    for op in operations:
        ends_session = op.path == "/api/session/end"
        signed_in: Identity | Callable[[], Identity] = fresh if ends_session else everyone
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run_operation(op, mode, signed_in, tally)
        run_operation(op, GenerationMode.POSITIVE, stranger, tally, examples=2 + SOAK * 48)
        run_operation(
            op,
            GenerationMode.POSITIVE,
            fresh if ends_session else deep_user,
            tally,
            pinned=pinned,
            deep=make_deep,
        )

    elapsed = time.monotonic() - started
    statuses = ", ".join(f"{n} x {s}" for s, n in sorted(tally.statuses.items()))
    with capsys.disabled():  # the figure to quote, shown in a plain `pytest` run too
        print(
            f"\nschemathesis: {len(tally.operations)} operations, {tally.cases} cases, "
            f"{tally.failed_cases} failures [{site.bedside.store.dialect}, {EXAMPLES} examples "
            f"per run, {elapsed:.0f} s; responses {statuses}]"
        )
    assert not tally.failures, "\n\n".join(f"{k}\n{v}" for k, v in tally.failures.items())
    assert len(tally.operations) == len(operations) >= 20
    # The deep runs got past the session, the role and the password into the case machine,
    # and some requests were accepted: the fuzz did not only bounce off a 401.
    assert tally.statuses[200] and tally.statuses[401] and tally.statuses[422]
    assert tally.codes["unknown_item"] or tally.codes["invalid_item"], tally.codes


def test_openapi_tells_the_truth(sqlite_site: Site) -> None:
    """What the fuzz found undocumented, now declared: each a regression assertion."""
    spec = sqlite_site.client().get("/openapi.json").json()
    paths = spec["paths"]
    error = {"$ref": "#/components/schemas/ErrorOut"}
    # The issue-7 routes had no error statuses, and a 422 of FastAPI's own shape.
    for path, method in (
        ("/api/scan", "post"),
        ("/api/cases/{case_id}/fhir", "get"),
        ("/api/reports/scan-failures", "get"),
        ("/api/protocol/diagram.svg", "get"),
        ("/api/courses/{course_id}/timeline.svg", "get"),
    ):
        responses = paths[path][method]["responses"]
        for status in ("401", "403", "404", "422"):
            assert responses[status]["content"]["application/json"]["schema"] == error, path
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    # Binary responses name their media type.
    for path, media in (
        ("/api/cases/{case_id}/label.pdf", "application/pdf"),
        ("/api/archive/{sha}/pdf", "application/pdf"),
        ("/api/protocol/diagram.svg", "image/svg+xml"),
        ("/api/courses/{course_id}/timeline.svg", "image/svg+xml"),
    ):
        assert media in paths[path]["get"]["responses"]["200"]["content"], path
    # Every route that reads a body can answer 413; request bodies refuse unknown fields.
    bodied = [op for ops in paths.values() for op in ops.values() if "requestBody" in op]
    assert len(bodied) >= 7
    for op in bodied:
        assert op["responses"]["413"]["content"]["application/json"]["schema"] == error
    for name in ("LoginIn", "StepIn", "ExitIn", "CorrectionIn", "UserIn", "PasswordIn", "ScanIn"):
        assert spec["components"]["schemas"][name]["additionalProperties"] is False, name
