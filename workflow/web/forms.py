"""Step forms built from the protocol's items, generically: a protocol edit changes the forms.

This turns items into widgets and a posted form back into the strings and booleans the service
takes. It judges nothing: bounds, expiry, forbidden values and rules are the case machine's.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from workflow.core.bag_check import bag_fills
from workflow.core.errors import InputError
from workflow.core.items import allowed_text
from workflow.core.protocol.model import Item, NormalGroup, Step

# Choices with at most this many options are big radio buttons; more become a select.
MAX_RADIOS = 6


@dataclass
class Widget:
    item: Item
    kind: str  # checkbox, yesno, radio, select, date, datetime, text, number, expiry
    value: Any = None
    hint: str = ""
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass
class Group:
    """An "all normal" group of the form: one tap records every item's normal value."""

    id: str
    title: str
    normal_json: str  # item id -> value as the form posts it, for the page script
    ticked: bool
    widgets: list[Widget]


def posted(value: str | bool) -> str:
    """A value as the form posts it (a yes/no item posts "yes" or "no")."""
    return "yes" if value is True else "no" if value is False else str(value)


def group_field(group: NormalGroup) -> str:
    return f"g_{group.id}"


def grouped(
    step: Step,
    prefill: Mapping[str, Any] | None = None,
    invalid: Collection[str] = (),
    tz: tzinfo = UTC,
) -> tuple[list[Group], list[Widget]]:
    """The step's widgets split into its "all normal" groups and the rest, in item order."""
    prefill = prefill or {}
    all_widgets = {w.item.id: w for w in widgets(step, prefill, invalid, tz)}
    groups = []
    for g in step.normal_groups:
        normal = {k: posted(v) for k, v in g.normal}
        ticked = prefill.get(group_field(g)) in ("on", "yes", "true", "1")
        members = [w for w in all_widgets.values() if w.item.id in normal]
        groups.append(Group(g.id, g.title, json.dumps(normal, sort_keys=True), ticked, members))
    in_groups = {k for g in step.normal_groups for k in g.item_ids()}
    rest = [w for k, w in all_widgets.items() if k not in in_groups]
    return groups, rest


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
    from_bag = bag_fills(step)
    for item in step.items:
        value = prefill.get(item.id)
        ranged = item.type in ("number", "integer", "expiry", "datetime")
        hint = item.help or (allowed_text(item) if ranged else "")
        attrs: dict[str, str] = {}
        if item.id in from_bag:
            # The scanned label's code fills it on signing (bag_check.complete_from_bag):
            # the page shows nothing of the plan, the checker may still type it from the label.
            attrs["data-bag-fill"] = "1"
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
        if item.id in from_bag:
            typed = f" ({hint})" if hint else ""
            verb = "choose" if item.type == "choice" else "type"  # the route is a tap
            hint = f"Filled from the bag label's code when it is scanned; else {verb} it{typed}."
        out.append(Widget(item, kind, value, hint.strip(), attrs))
    return out


def values_from_form(step: Step, form: Mapping[str, str], tz: tzinfo) -> dict[str, str | bool]:
    """A posted form's values as the service takes them (strings and booleans). Empty fields
    are left out, so a missing required item is the machine's refusal with its own words."""
    values: dict[str, str | bool] = {}
    form = _with_normal_groups(step, form)
    form = _scanned_when_scan_given(step, form)
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


def _with_normal_groups(step: Step, form: Mapping[str, str]) -> Mapping[str, str]:
    """The form with each ticked "all normal" group's items set to their normal values, as if
    entered one by one (the rules read them so). A ticked group with an item entered
    otherwise is refused, naming the item: one tap never overrides what was typed."""
    out = dict(form)
    for g in step.normal_groups:
        if form.get(group_field(g)) not in ("on", "yes", "true", "1"):
            continue
        for item_id, normal in g.normal:
            raw = (form.get(f"v_{item_id}") or "").strip()
            want = posted(normal)
            if raw and raw != want and not (raw == "on" and want == "yes"):
                item = step.item(item_id)
                label = item.label if item else item_id
                raise InputError(
                    item_id,
                    f"entered as '{raw}' while 'All normal' is ticked for "
                    f"{g.title.split(':')[0]}: untick the group to record an abnormal finding",
                    label=label,
                )
            out[f"v_{item_id}"] = want
    return out


def _scanned_when_scan_given(step: Step, form: Mapping[str, str]) -> Mapping[str, str]:
    """A code in a product's scan field with "how identified" left blank was scanned: say so,
    rather than ask for a second tap. A typed entry still says "typed" with its reason."""
    out = dict(form)
    for spec in step.scans:
        entry, scan = f"v_{spec.kind}_entry", f"v_{spec.kind}_scan"
        if step.item(f"{spec.kind}_entry") is None:
            continue
        if (form.get(scan) or "").strip() and not (form.get(entry) or "").strip():
            out[entry] = "scanned"
    return out


def user_id_of(form: Mapping[str, Any]) -> str:
    """The signer's user id: as typed, else the staff badge's scan (a page without script posts
    the scan field and leaves the user id blank; with script the page copies it over)."""
    typed = str(form.get("username") or "").strip()
    return typed or str(form.get("scan_badge") or "").strip()


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
    echo: dict[str, Any] = {item.id: form.get(f"v_{item.id}") for item in step.items}
    for g in step.normal_groups:
        echo[group_field(g)] = form.get(group_field(g))
    return echo
