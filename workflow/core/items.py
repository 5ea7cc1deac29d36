"""Turn what a person typed into a checked, typed value for one protocol item.

Every refusal is a StepRefused naming the item (so it is bad input, exit 2 / HTTP 422) and the
allowed values or range. Stored forms are canonical text (see ``to_stored``) so events hash the
same on every machine.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from workflow.core.errors import StepRefused
from workflow.core.events import format_decimal, format_time
from workflow.core.protocol.model import Item

Value = Decimal | bool | str | date | datetime

# No dose, volume, weight or count has more than 15 digits either side of the point.
MAX_EXPONENT = 15
_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}


def _refuse(item: Item, message: str, allowed: str | None = None) -> StepRefused:
    text = f"{item.label}: {message}"
    if allowed:
        text += f" (allowed: {allowed})"
    return StepRefused("invalid_item", text, field=item.id)


def allowed_text(item: Item) -> str:
    if item.type in ("number", "integer"):
        unit = f" {item.unit}" if item.unit else ""
        kind = "a whole number" if item.type == "integer" else "a number"
        if item.min is not None and item.max is not None:
            return f"{kind} from {format_decimal(item.min)} to {format_decimal(item.max)}{unit}"
        if item.min is not None:
            return f"{kind} of at least {format_decimal(item.min)}{unit}"
        if item.max is not None:
            return f"{kind} of at most {format_decimal(item.max)}{unit}"
        return f"{kind}{unit}"
    if item.type == "boolean":
        return "true" if item.must_be else "true or false"
    if item.type == "choice":
        return ", ".join(item.option_ids())
    if item.type == "text":
        return f"text up to {item.max_length or 'any'} characters"
    if item.type == "date":
        return "a date YYYY-MM-DD"
    if item.type == "expiry":
        return "an expiry date YYYY-MM-DD or YYYY-MM, not passed"
    return "a date and time YYYY-MM-DDTHH:MM with a zone (Z or +hh:mm)"


def parse_value(item: Item, raw: Any, now: datetime) -> Value:
    """Check one entered value against its item; ``now`` judges future dates and expiries."""
    if isinstance(raw, str):
        raw = raw.strip()
    allowed = allowed_text(item)
    if item.type in ("number", "integer"):
        return _number(item, raw, allowed)
    if item.type == "boolean":
        value = _boolean(item, raw, allowed)
        if item.must_be is not None and value is not item.must_be:
            raise _refuse(item, "must be confirmed before this step can be signed", allowed)
        return value
    if item.type == "choice":
        text = str(raw)
        for fb in item.forbidden:
            if text == fb.value:
                raise StepRefused(
                    "forbidden_value",
                    f"{item.label}: '{text}' is refused: {fb.reason} [source: {fb.source}]",
                    field=item.id,
                )
        if text not in item.option_ids():
            raise _refuse(item, f"'{text}' is not an option", allowed)
        return text
    if item.type == "text":
        text = str(raw)
        if not text:
            raise _refuse(item, "is empty", allowed)
        if item.max_length is not None and len(text) > item.max_length:
            raise _refuse(item, f"is {len(text)} characters long", allowed)
        if any(ord(c) < 32 and c not in "\t\n" for c in text):
            raise _refuse(item, "contains control characters", allowed)
        return text
    if item.type == "date":
        d = _date(item, raw, allowed)
        if item.not_future and d > now.date():
            raise _refuse(item, f"{d.isoformat()} is in the future", "today or earlier")
        return d
    if item.type == "expiry":
        end = _expiry_end(item, raw, allowed)
        if end <= now:
            raise StepRefused(
                "expired",
                f"{item.label}: expired "
                f"{end.date().isoformat()}; an expired product cannot be used",
                field=item.id,
            )
        return end
    dt = _datetime(item, raw, allowed)
    if item.not_future and dt > now + timedelta(minutes=1):
        raise _refuse(item, f"{format_time(dt)} is in the future", "now or earlier")
    return dt


def parse_entries(
    items: Sequence[Item], values: Mapping[str, Any], now: datetime, *, unknown_what: str
) -> tuple[dict[str, Value], list[StepRefused]]:
    """Every given value parsed against its item, collecting each refusal instead of stopping
    at the first (a form is fixed in one go); blanks are left for the caller's "required"
    check. A value for no item is refused at once: ``unknown_what`` says what it is not."""
    known = {it.id for it in items}
    unknown = sorted(set(values) - known)
    if unknown:
        raise StepRefused(
            "unknown_item",
            f"{unknown[0]}: {unknown_what} (items: {', '.join(sorted(known))})",
            field=unknown[0],
        )
    typed: dict[str, Value] = {}
    problems: list[StepRefused] = []
    for it in items:
        raw = values.get(it.id)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            continue
        try:
            typed[it.id] = parse_value(it, raw, now)
        except StepRefused as exc:
            problems.append(exc)
    return typed, problems


def _number(item: Item, raw: Any, allowed: str) -> Decimal:
    if isinstance(raw, bool) or raw is None or raw == "":
        raise _refuse(item, "is not a number", allowed)
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise _refuse(item, f"'{raw}' is not a number", allowed) from None
    if not value.is_finite():
        raise _refuse(item, f"'{raw}' is not a finite number", allowed)
    if value and abs(value.adjusted()) > MAX_EXPONENT:
        # "1e999999999" is 11 characters but a billion digits written out (or an Overflow).
        raise _refuse(item, "is out of any sensible range", allowed)
    if item.type == "integer" and value != value.to_integral_value():
        raise _refuse(item, f"'{raw}' is not a whole number", allowed)
    if item.min is not None and value < item.min:
        raise _refuse(item, f"{format_decimal(value)} is below the minimum", allowed)
    if item.max is not None and value > item.max:
        raise _refuse(item, f"{format_decimal(value)} is above the maximum", allowed)
    return value


def _boolean(item: Item, raw: Any, allowed: str) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _refuse(item, f"'{raw}' is not yes or no", allowed)


def _date(item: Item, raw: Any, allowed: str) -> date:
    if isinstance(raw, datetime):
        return raw.date()
    if isinstance(raw, date):
        return raw
    try:
        return date.fromisoformat(str(raw))
    except ValueError:
        raise _refuse(item, f"'{raw}' is not a date", allowed) from None


def _expiry_end(item: Item, raw: Any, allowed: str) -> datetime:
    """An expiry date means usable through the end of that day (a month: its last day)."""
    if isinstance(raw, datetime):
        return raw.astimezone(UTC)
    text = str(raw)
    try:
        if len(text) == 7:
            year, month = int(text[:4]), int(text[5:7])
            if text[4] != "-":
                raise ValueError(text)
            day = date(year, month, calendar.monthrange(year, month)[1])
        else:
            day = date.fromisoformat(text)
    except ValueError:
        raise _refuse(item, f"'{raw}' is not an expiry date", allowed) from None
    return datetime.combine(day + timedelta(days=1), time(0, 0), tzinfo=UTC)


def _datetime(item: Item, raw: Any, allowed: str) -> datetime:
    if isinstance(raw, datetime):
        if raw.tzinfo is None:
            raise _refuse(item, "has no time zone", allowed)
        return raw.astimezone(UTC)
    try:
        value = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        raise _refuse(item, f"'{raw}' is not a date and time", allowed) from None
    if value.tzinfo is None:
        raise _refuse(item, f"'{raw}' has no time zone", allowed)
    return value.astimezone(UTC)


def to_stored(item: Item, value: Value) -> str | bool:
    """Canonical, JSON-safe text of a typed value (booleans stay booleans).

    Stored text parses back to the same value through ``parse_value``, which is how replay
    re-judges every entry.
    """
    if item.type == "expiry" and isinstance(value, datetime):
        return (value - timedelta(days=1)).date().isoformat()
    if isinstance(value, bool):
        return value
    if isinstance(value, Decimal):
        return format_decimal(value)
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def from_stored(item: Item, stored: Any) -> Value:
    """Rebuild a typed value from its stored text without re-judging time-relative limits."""
    if item.type in ("number", "integer"):
        return Decimal(str(stored))
    if item.type == "boolean":
        return bool(stored)
    if item.type == "date":
        return date.fromisoformat(str(stored))
    if item.type == "expiry":
        return datetime.combine(
            date.fromisoformat(str(stored)) + timedelta(days=1), time(0, 0), tzinfo=UTC
        )
    if item.type == "datetime":
        return datetime.fromisoformat(str(stored).replace("Z", "+00:00")).astimezone(UTC)
    return str(stored)


def tolerance(item: Item, entered: Decimal) -> Decimal:
    """How far a typed number may be from the expected one: half a unit of the item's required
    precision (``decimals``), or of the entry's own precision when that is finer."""
    exponent = entered.as_tuple().exponent
    entered_decimals = max(0, -exponent) if isinstance(exponent, int) else 0
    decimals = max(entered_decimals, item.decimals or 0)
    return Decimal(5).scaleb(-(decimals + 1))


def matches_expected(item: Item, entered: Value, expected: Value) -> bool:
    """Does an entry agree with what the plan, patient or case says?

    Numbers: within half a unit of the item's required precision (``decimals``), or of the
    entry's own precision when that is finer: 209 matches a 209.33 mL/h plan at decimals 0, 200
    does not. Times match to the minute (labels show minutes); text ignores case and spaces.
    """
    if isinstance(entered, Decimal) and isinstance(expected, Decimal):
        return abs(entered - expected) <= tolerance(item, entered)
    if isinstance(entered, datetime) and isinstance(expected, datetime):
        return entered.replace(second=0, microsecond=0) == expected.replace(second=0, microsecond=0)
    if isinstance(entered, str) and isinstance(expected, str):
        return " ".join(entered.split()).casefold() == " ".join(expected.split()).casefold()
    return entered == expected


def rounded(item: Item, value: Decimal) -> Decimal:
    """``value`` at the item's display precision (``decimals``), half up; unchanged without one.

    Plans are computed exactly (209.0666... mL/h); people read and type 209.
    """
    if item.decimals is None:
        return value
    return value.quantize(Decimal(1).scaleb(-item.decimals), rounding=ROUND_HALF_UP)


def display(item: Item, value: Value | None, tz: tzinfo | None = None) -> str:
    """Human text of a value for screens and records; a time in ``tz`` (the site's zone) when
    given, else in UTC."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        unit = f" {item.unit}" if item.unit else ""
        return f"{format_decimal(rounded(item, value))}{unit}"
    if isinstance(value, datetime):
        if item.type == "expiry":
            return (value - timedelta(days=1)).date().isoformat()
        if tz is not None:
            return value.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")
        return value.strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(value, date):
        return value.isoformat()
    if item.type == "choice":
        for opt in item.options:
            if opt.id == value:
                return opt.label
    return str(value)
