"""The interface log and the doses external orders opened (tables of migration 0009)."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from workflow.core.errors import ConflictError

from . import _schema as s
from .models import InterfaceEntry, OrderCase, PendingOrder

# The log keeps what was received, up to this many characters (a message is a few kB).
MESSAGE_KEPT = 20_000


def applied_key(channel: str, control_id: str) -> str:
    return f"{channel}:{control_id}"


def add_entry(conn: Connection, entry: InterfaceEntry) -> InterfaceEntry:
    key = (
        applied_key(entry.channel, entry.control_id)
        if entry.status == "applied" and entry.control_id
        else None
    )
    values: dict[str, Any] = {
        "received_at": entry.received_at,
        "channel": entry.channel,
        "control_id": entry.control_id[:200] if entry.control_id else None,
        "applied_key": key,
        "kind": entry.kind[:64],
        "placer_order": entry.placer_order[:64] if entry.placer_order else None,
        "status": entry.status,
        "ack_code": entry.ack_code,
        "detail": entry.detail,
        "effects": json.dumps(list(entry.effects), sort_keys=True),
        "message": entry.message[:MESSAGE_KEPT],
    }
    try:
        result = conn.execute(insert(s.interface_log).values(**values))
    except DBIntegrityError:
        raise ConflictError(
            f"message {entry.control_id} from {entry.channel} was already applied"
        ) from None
    (entry_id,) = result.inserted_primary_key or (None,)
    row = conn.execute(select(s.interface_log).where(s.interface_log.c.id == entry_id)).one()
    return _entry(row)


def applied_entry(conn: Connection, channel: str, control_id: str) -> InterfaceEntry | None:
    row = conn.execute(
        select(s.interface_log).where(
            s.interface_log.c.applied_key == applied_key(channel, control_id)
        )
    ).first()
    return None if row is None else _entry(row)


def list_entries(
    conn: Connection, *, limit: int, placer_order: str | None, with_effects: bool
) -> list[InterfaceEntry]:
    query = select(s.interface_log).order_by(s.interface_log.c.id.desc()).limit(limit)
    if placer_order is not None:
        query = query.where(s.interface_log.c.placer_order == placer_order)
    if with_effects:
        query = query.where(s.interface_log.c.effects != "[]")
    return [_entry(r) for r in conn.execute(query)]


def add_order_case(conn: Connection, link: OrderCase) -> None:
    conn.execute(
        insert(s.order_cases).values(
            case_id=link.case_id,
            placer_order=link.placer_order,
            course_id=link.course_id,
            channel=link.channel,
            priority=link.priority,
            orderer=link.orderer[:200],
            created_at=link.created_at,
        )
    )


def set_order_priority(conn: Connection, placer_order: str, priority: str) -> None:
    conn.execute(
        update(s.order_cases)
        .where(s.order_cases.c.placer_order == placer_order)
        .values(priority=priority)
    )


def order_cases(
    conn: Connection, *, placer_order: str | None, case_ids: Collection[str] | None
) -> list[OrderCase]:
    query = select(s.order_cases).order_by(s.order_cases.c.created_at, s.order_cases.c.case_id)
    if placer_order is not None:
        query = query.where(s.order_cases.c.placer_order == placer_order)
    if case_ids is not None:
        if not case_ids:
            return []
        query = query.where(s.order_cases.c.case_id.in_(list(case_ids)))
    return [OrderCase(**r._mapping) for r in conn.execute(query)]


def add_pending_order(conn: Connection, order: PendingOrder) -> None:
    conn.execute(insert(s.pending_orders).values(**_pending_values(order)))


def update_pending_order(conn: Connection, order: PendingOrder) -> None:
    values = _pending_values(order)
    del values["placer_order"]
    conn.execute(
        update(s.pending_orders)
        .where(s.pending_orders.c.placer_order == order.placer_order)
        .values(**values)
    )


def pending_orders(
    conn: Connection,
    *,
    patient_id: str | None,
    placer_order: str | None,
    statuses: Collection[str] | None,
) -> list[PendingOrder]:
    t = s.pending_orders
    query = select(t).order_by(t.c.received_at, t.c.placer_order)
    if patient_id is not None:
        query = query.where(t.c.patient_id == patient_id)
    if placer_order is not None:
        query = query.where(t.c.placer_order == placer_order)
    if statuses is not None:
        query = query.where(t.c.status.in_(list(statuses)))
    out = []
    for row in conn.execute(query):
        values = dict(row._mapping)
        values["order"] = json.loads(values.pop("order_json"))
        out.append(PendingOrder(**values))
    return out


def _pending_values(order: PendingOrder) -> dict[str, Any]:
    return {
        "placer_order": order.placer_order[:64],
        "patient_id": order.patient_id,
        "channel": order.channel,
        "control_id": order.control_id[:200],
        "kind": order.kind[:64],
        "priority": order.priority,
        "orderer_id": order.orderer_id[:64],
        "orderer": order.orderer[:200],
        "order_json": json.dumps(dict(order.order), sort_keys=True),
        "received_at": order.received_at,
        "updated_at": order.updated_at,
        "status": order.status,
        "detail": order.detail,
        "case_id": order.case_id,
    }


def _entry(row: Row[Any]) -> InterfaceEntry:
    return InterfaceEntry(
        id=row.id,
        received_at=row.received_at,
        channel=row.channel,
        control_id=row.control_id,
        kind=row.kind,
        placer_order=row.placer_order,
        status=row.status,
        ack_code=row.ack_code,
        detail=row.detail,
        message=row.message,
        effects=tuple(json.loads(row.effects)),
    )
