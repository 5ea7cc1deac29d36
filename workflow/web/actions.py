"""Operations the pages and the API share, so both follow the same rules.

Each takes the signed-in viewer and plain values, asks the service, and records the 11.200
signing-session continuity when a signature succeeded. Nothing clinical is decided here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from workflow.errors import InputError, NotFound
from workflow.identity import User
from workflow.service import CaseView
from workflow.store import ArchivedRecord, CaseRecord

from .context import Web
from .present import blinded_steps
from .security import Viewer, after_signature, signing_proof
from .settings import PHARMACY


def sign_step(
    web: Web,
    viewer: Viewer,
    case_id: str,
    step_id: str,
    expected_version: int,
    values: dict[str, Any],
    password: str,
    username: str | None,
) -> CaseView:
    proof = signing_proof(viewer, password, username)
    view = web.bedside.sign_step(case_id, expected_version, step_id, values, proof.proof)
    after_signature(web.bedside, viewer, proof)
    return view


def side_exit(
    web: Web,
    viewer: Viewer,
    case_id: str,
    expected_version: int,
    action: str,
    reason: str,
    note: str,
    password: str,
    username: str | None,
) -> CaseView:
    proof = signing_proof(viewer, password, username)
    view = web.bedside.side_exit(case_id, expected_version, action, reason, note, proof.proof)
    after_signature(web.bedside, viewer, proof)
    return view


def correct(
    web: Web,
    viewer: Viewer,
    case_id: str,
    expected_version: int,
    target_seq: int,
    values: dict[str, Any],
    reason: str,
    password: str,
    username: str | None,
) -> CaseView:
    proof = signing_proof(viewer, password, username)
    view = web.bedside.correct(case_id, expected_version, target_seq, values, reason, proof.proof)
    after_signature(web.bedside, viewer, proof)
    return view


def ward_states(web: Web) -> list[str]:
    """States a ward's worklist shows: steps a nurse or prescriber signs, holds, mismatches."""
    protocol = web.bedside.protocol
    states = [
        s.id
        for s in protocol.steps
        if set(s.roles) & {"nurse", "prescriber"} and s.phase != "compounding"
    ]
    states += [s.id + "_mismatch" for s in protocol.steps if s.blinded_against]
    return [*states, "held"]


def pharmacy_states(web: Web) -> list[str]:
    protocol = web.bedside.protocol
    return [
        s.id
        for s in protocol.steps
        if set(s.roles) & set(PHARMACY) and s.phase in ("order", "eligibility", "compounding")
    ]


def worklist(web: Web, states: list[str]) -> list[CaseView]:
    records: list[CaseRecord] = web.bedside.store.worklist(
        states, limit=web.settings.worklist_limit
    )
    return [web.bedside.load(r.id) for r in records]


def pick_step(view: CaseView, viewer: Viewer, wanted: str | None) -> str | None:
    """The step this person may sign now (during a double-check mismatch, the one asked for)."""
    allowed = [
        s for s in view.case.allowed_steps() if viewer.has_any(view.case.protocol.step(s).roles)
    ]
    if wanted and wanted in allowed:
        return wanted
    if len(allowed) == 1:
        return allowed[0]
    return None  # none, or a mismatch: the page asks which checker re-enters


def prefill(view: CaseView, step_id: str) -> dict[str, Any]:
    """What the form may show before typing: never a blinded counterpart's entries."""
    if blinded_steps(view.case, step_id):
        return {}
    return {k: str(v) for k, v in view.case.blinded_values(step_id).items()}


def search_archive(
    web: Web,
    *,
    text: str | None,
    mrn: str | None,
    date_from: datetime | None,
    date_to: datetime | None,
    lot: str | None,
    signer: str | None,
    state: str | None,
    limit: int = 100,
) -> list[ArchivedRecord]:
    rows = web.bedside.store.search_archive(
        text=text or None,
        mrn=mrn or None,
        signed_from=date_from,
        signed_to=date_to,
        limit=500 if (lot or signer or state) else limit,
    )
    # Lot, signer and state are matched here: the index keeps them as display text.
    if lot:
        rows = [r for r in rows if lot.lower() in r.lots.lower()]
    if signer:
        rows = [r for r in rows if signer.lower() in r.signers.lower()]
    if state:
        rows = [r for r in rows if r.state == state]
    return rows[:limit]


def record_bytes(web: Web, sha: str) -> tuple[ArchivedRecord, bytes]:
    if web.archive is None:
        raise NotFound("this installation has no archive (run `bedside init`)")
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise InputError("sha256", "not a SHA-256 hex digest")
    return web.archive.get(sha)


def verify_record(web: Web, sha: str) -> dict[str, Any]:
    record, pdf = record_bytes(web, sha)
    assert web.archive is not None
    result = web.archive.verify_bytes(pdf).to_dict()
    result["sha256"] = record.sha256
    return result


def user_json(user: User) -> dict[str, Any]:
    return {
        "username": user.username,
        "id": user.id,
        "printed_name": user.printed_name,
        "roles": sorted(user.roles),
        "active": user.active,
        "must_change_password": user.must_change_password,
        "locked": user.locked_until is not None,
    }
