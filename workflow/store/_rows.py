"""Rows to values and back, shared by the log writer, the loader and the verifier."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row

from workflow.core.events import Event, Signer, canonical_json

from .models import CaseRecord, Cosignature, StoredSignature


def event_from_row(row: Row[Any]) -> Event:
    actor = None
    if row.actor_user_id is not None:
        actor = Signer(row.actor_user_id, row.actor_name or "", row.actor_role or "")
    return Event(
        case_id=row.case_id,
        seq=row.seq,
        type=row.type,
        at=row.at,
        actor=actor,
        data=json.loads(row.data),
        step=row.step,
        meaning=row.meaning,
        corrects=row.corrects,
    )


def event_columns(event: Event) -> dict[str, Any]:
    actor = event.actor
    return {
        "case_id": event.case_id,
        "seq": event.seq,
        "type": event.type,
        "step": event.step,
        "at": event.at,
        "actor_user_id": actor.user_id if actor else None,
        "actor_name": actor.name if actor else None,
        "actor_role": actor.role if actor else None,
        "meaning": event.meaning,
        "corrects": event.corrects,
        "data": canonical_json(event.data).decode("utf-8"),
    }


def signature_from_row(row: Row[Any], case_id: str, seq: int) -> StoredSignature:
    return StoredSignature(
        case_id=case_id,
        seq=seq,
        user_id=row.user_id,
        printed_name=row.printed_name,
        role=row.role,
        meaning=row.meaning,
        signed_at=row.signed_at,
        content_hash=row.content_hash,
    )


def signatures_for(event: Event, cosignatures: Sequence[Cosignature]) -> list[StoredSignature]:
    """The signature rows an event gets: its actor's when it carries a meaning, then any
    co-signatures, all bound to the event's content hash."""
    content = event.content_hash()
    out: list[StoredSignature] = []
    if event.meaning is not None and event.actor is not None:
        out.append(
            StoredSignature(
                event.case_id,
                event.seq,
                event.actor.user_id,
                event.actor.name,
                event.actor.role,
                event.meaning,
                event.at,
                content,
            )
        )
    for co in cosignatures:
        if co.seq == event.seq:
            out.append(
                StoredSignature(
                    event.case_id,
                    event.seq,
                    co.signer.user_id,
                    co.signer.name,
                    co.signer.role,
                    co.meaning,
                    co.signed_at,
                    content,
                )
            )
    return out


def case_from_row(row: Row[Any]) -> CaseRecord:
    return CaseRecord(
        id=row.id,
        course_id=row.course_id,
        patient_id=row.patient_id,
        cycle=row.cycle,
        dose_in_cycle=row.dose_in_cycle,
        dose_in_course=row.dose_in_course,
        state=row.state,
        version=row.version,
        scheduled_at=row.scheduled_at,
        protocol_version=row.protocol_version,
        protocol_hash=row.protocol_hash,
        updated_at=row.updated_at,
    )
