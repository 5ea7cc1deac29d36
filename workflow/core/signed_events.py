"""Do the events signed into a record still agree with the events the database holds?

A record embeds its case's events (``events.json``) and is signed, so it is evidence the
database cannot rewrite. A case may gain events after a record was signed (a correction after
the dose ended is archived again), so a record agrees when its events are exactly the first
events of the case as stored now; any other difference means the database was changed after
the record was signed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from workflow.core.events import canonical_json

MAX_PATHS = 5


def first_difference(signed: Sequence[Any], stored: Sequence[Mapping[str, Any]]) -> str | None:
    """None when ``signed`` (a record's embedded events) is a prefix of ``stored`` (the case's
    events as ``Event.to_json`` gives them); else where they first differ, naming the fields
    (never their values: a difference is reported, not repeated)."""
    for n, (was, now) in enumerate(zip(signed, stored, strict=False), start=1):
        if canonical_json(was) != canonical_json(now):
            step = now.get("step") or now.get("type") if isinstance(now, Mapping) else None
            fields = _paths(was, now, "")
            shown = ", ".join(fields[:MAX_PATHS]) + (" ..." if len(fields) > MAX_PATHS else "")
            return f"event {n}{f' ({step})' if step else ''} differs in {shown or 'its content'}"
    if len(signed) > len(stored):
        return (
            f"the record holds {len(signed)} events, the database only {len(stored)} "
            "(events were deleted)"
        )
    return None


def _paths(was: Any, now: Any, prefix: str) -> list[str]:
    if isinstance(was, Mapping) and isinstance(now, Mapping):
        out: list[str] = []
        for key in sorted(set(was) | set(now), key=str):
            where = f"{prefix}.{key}" if prefix else str(key)
            if key not in was or key not in now:
                out.append(where)
            elif canonical_json(was[key]) != canonical_json(now[key]):
                out.extend(_paths(was[key], now[key], where))
        return out
    return [prefix or "the event"]
