"""Step forms built from the protocol's items, generically: a protocol edit changes the forms.

This turns items into widgets and a posted form back into the strings and booleans the service
takes. It judges nothing: bounds, expiry, forbidden values and rules are the case machine's.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from workflow.core.items import allowed_text
from workflow.core.protocol.model import Item, Step

# Choices with at most this many options are big radio buttons; more become a select.
MAX_RADIOS = 6


@dataclass
class Widget:
    item: Item
    kind: str  # checkbox, yesno, radio, select, date, datetime, text, number, expiry
    value: Any = None
    hint: str = ""
    attrs: dict[str, str] = field(default_factory=dict)


def widgets(
    step: Step,
    prefill: Mapping[str, Any] | None = None,
    invalid: Collection[str] = (),
    tz: tzinfo = UTC,
) -> list[Widget]:
    """The step's widgets; those named in ``invalid`` (a refusal's fields) are marked for
    assistive technology (aria-invalid) and tied to the page's error message. A date and time
    is a browser date-time picker in the site's zone ``tz``: its hint and its value say so."""
    out = []
    prefill = prefill or {}
    for item in step.items:
        value = prefill.get(item.id)
        ranged = item.type in ("number", "integer", "expiry", "datetime")
        hint = item.help or (allowed_text(item) if ranged else "")
        attrs: dict[str, str] = {}
        if item.type == "boolean":
            kind = "checkbox" if item.must_be else "yesno"
        elif item.type == "choice":
            kind = "radio" if len(item.options) <= MAX_RADIOS else "select"
        elif item.type in ("number", "integer"):
            kind = "number"
            attrs["inputmode"] = "numeric" if item.type == "integer" else "decimal"
        elif item.type == "date":
            kind = "date"
        elif item.type == "datetime":
            kind = "datetime"
            # The picker has no zone: it is the site's wall time (values_from_form reads it so).
            hint = item.help or datetime_hint(item, tz)
            value = _iso_to_local(value, tz)
        elif item.type == "expiry":
            kind = "expiry"
            attrs["placeholder"] = "YYYY-MM or YYYY-MM-DD"
        else:
            kind = "text"
            # Barcode scanners type like a keyboard and end with Enter; the page script turns
            # that Enter into "next field" (without script the server refuses a half form).
            attrs["data-scan"] = "1"
            if item.max_length:
                attrs["maxlength"] = str(item.max_length)
        if item.id in invalid:
            attrs["aria-invalid"] = "true"
            attrs["aria-describedby"] = "error"
        out.append(Widget(item, kind, value, hint, attrs))
    return out


def values_from_form(step: Step, form: Mapping[str, str], tz: tzinfo) -> dict[str, str | bool]:
    """A posted form's values as the service takes them (strings and booleans). Empty fields
    are left out, so a missing required item is the machine's refusal with its own words."""
    values: dict[str, str | bool] = {}
    for item in step.items:
        raw = form.get(f"v_{item.id}")
        if item.type == "boolean":
            if item.must_be:
                values[item.id] = raw in ("on", "yes", "true", "1")
            elif raw in ("yes", "no"):
                values[item.id] = raw == "yes"
            continue
        if raw is None or not raw.strip():
            continue
        text = raw.strip()
        if item.type == "datetime":
            text = _local_to_iso(text, tz)
        values[item.id] = text
    return values


def datetime_hint(item: Item, tz: tzinfo) -> str:
    """What the date-time picker takes, in words that match it (not the API's ISO form)."""
    zone = datetime.now(tz).strftime("%Z") or str(tz)
    future = ", not in the future" if item.not_future else ""
    return f"date and time, {zone} (the site's time){future}"


def _iso_to_local(value: Any, tz: tzinfo) -> Any:
    """A stored or typed time as the picker shows it (``YYYY-MM-DDTHH:MM``, site time); text
    that is no time is left as typed, so a refusal shows it again."""
    if not isinstance(value, str) or not value.strip():
        return value
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return value
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(tz)
    return parsed.strftime("%Y-%m-%dT%H:%M")


def _local_to_iso(text: str, tz: tzinfo) -> str:
    """A browser's datetime-local (no zone) is wall time at the site; anything else is passed
    on as typed for the machine to judge."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return text
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.isoformat()


def form_echo(step: Step, form: Mapping[str, str]) -> dict[str, Any]:
    """What the person typed, to show again after a refusal (never the password)."""
    return {item.id: form.get(f"v_{item.id}") for item in step.items}
