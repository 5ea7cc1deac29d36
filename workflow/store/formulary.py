"""The site formulary's rows: products a scan may be, added by signed pharmacist entries.

Append-only: a product once listed stays listed (a case signed with its scan must replay on the
same list), and each addition writes its audit event in the same transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, insert, select

from workflow.core.errors import InputError
from workflow.core.events import Signer

from . import _schema as s
from . import web_sessions
from ._tx import read_tx, write_tx
from .web_sessions import SignatureMark

ADDED = "added"

# Built once (read on every case load): SQLAlchemy builds and keys a statement on every call.
_PRODUCTS = select(s.formulary_products).order_by(
    s.formulary_products.c.kind, s.formulary_products.c.description, s.formulary_products.c.gtin
)


@dataclass(frozen=True)
class FormularyProduct:
    gtin: str
    kind: str
    description: str
    strength: str
    added_at: datetime
    added_by_user_id: str


@dataclass(frozen=True)
class FormularyEvent:
    at: datetime
    action: str
    gtin: str
    detail: dict[str, str]
    user_id: str
    printed_name: str
    role: str
    meaning: str


def list_products(engine: Engine) -> list[FormularyProduct]:
    with read_tx(engine) as conn:
        return products(conn)


def products(conn: Connection) -> list[FormularyProduct]:
    """The listed products, by kind and description (in the caller's transaction: a case's
    load reads them in its own snapshot, Store.load_for_replay)."""
    rows = conn.execute(_PRODUCTS).all()
    return [
        FormularyProduct(r.gtin, r.kind, r.description, r.strength, r.added_at, r.added_by_user_id)
        for r in rows
    ]


def add_product(
    engine: Engine,
    *,
    gtin: str,
    kind: str,
    description: str,
    strength: str,
    signer: Signer,
    meaning: str,
    now: datetime,
    session: SignatureMark | None = None,
) -> FormularyProduct:
    """List a product (InputError when the GTIN is listed already) and its audit event, and
    for a tablet's signature its session's 11.200 state, in one transaction."""
    t = s.formulary_products
    with write_tx(engine) as conn:
        if session is not None:
            web_sessions.mark_signature(conn, session)
        if conn.execute(select(t.c.gtin).where(t.c.gtin == gtin)).first() is not None:
            raise InputError("gtin", f"GTIN {gtin} is in the formulary already")
        conn.execute(
            insert(t).values(
                gtin=gtin,
                kind=kind,
                description=description,
                strength=strength,
                added_at=now,
                added_by_user_id=signer.user_id,
            )
        )
        detail = {"kind": kind, "description": description, "strength": strength}
        conn.execute(
            insert(s.formulary_events).values(
                at=now,
                action=ADDED,
                gtin=gtin,
                detail=json.dumps(detail, sort_keys=True),
                user_id=signer.user_id,
                printed_name=signer.name,
                role=signer.role,
                meaning=meaning,
            )
        )
    return FormularyProduct(gtin, kind, description, strength, now, signer.user_id)


def list_events(engine: Engine) -> list[FormularyEvent]:
    t = s.formulary_events
    with read_tx(engine) as conn:
        rows = conn.execute(select(t).order_by(t.c.id)).all()
    return [
        FormularyEvent(
            r.at,
            r.action,
            r.gtin,
            json.loads(r.detail),
            r.user_id,
            r.printed_name,
            r.role,
            r.meaning,
        )
        for r in rows
    ]
