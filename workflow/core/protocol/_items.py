"""A step's ``items``: each entry's type, bounds, options, forbidden values and checks.

Used by the steps, by ``course_start.attestations`` and by an overlay's ``add_items``. A bound
may name a protocol quantity (``dosing.weight.accepted_min``) so a number is written once.
"""

from __future__ import annotations

from decimal import Decimal
from typing import cast

from ._context import Context
from ._fields import MapReader, to_decimal
from ._rules import condition
from ._yaml import YList, is_float_text
from .model import EXPECT_NAMESPACES, ITEM_TYPES, Forbidden, Item, ItemType, Option


def read_items(ctx: Context, seq: YList, where: str) -> tuple[Item, ...] | None:
    """The items listed under ``where``, or None when any is wrong (all are reported)."""
    items: list[Item] = []
    seen: set[str] = set()
    ok = True
    for i, node in enumerate(seq):
        r = MapReader(ctx.issues, node, f"{where}.items[{i}]", seq.line_of(i))
        if not r.ok:
            ok = False
            continue
        item = _item(ctx, r)
        if item is None:
            ok = False
            continue
        if item.id in seen:
            ctx.issues.add(r.line_of("id"), f"{where}: duplicate item id '{item.id}'")
            ok = False
            continue
        seen.add(item.id)
        items.append(item)
    # required_if may only look at items of the same step.
    for item in items:
        if item.required_if is not None:
            for ref in item.required_if.items():
                if ref not in seen:
                    ctx.issues.add(
                        seq.line,
                        f"{where}: item '{item.id}'.required_if names "
                        f"item '{ref}', which this step lacks",
                    )
                    ok = False
    return tuple(items) if ok else None


def _item(ctx: Context, r: MapReader) -> Item | None:
    iid = r.ident("id")
    if iid:
        r.where = f"{r.where} ('{iid}')"
    label = r.text("label")
    itype = r.text("type")
    required = r.flag("required", required=True)
    unit = r.text("unit", required=False)
    mn, mx = _bound(ctx, r, "min"), _bound(ctx, r, "max")
    options = read_options(r, r.seq("options", required=False), f"{r.where}.options")
    forbidden = _forbidden(ctx, r)
    must_be = _must_be(ctx, r)
    expect = r.text("expect", required=False)
    req_if_node = r.raw("required_if")
    max_length = r.whole("max_length", required=False)
    not_future = r.flag("not_future")
    decimals = r.whole("decimals", required=False)
    help_text = r.text("help", required=False, default="") or ""
    item_source = r.text("source", required=False)
    r.done()
    ctx.cite(r.line_of("source"), item_source, r.where)
    if not r.allowed("type", itype, ITEM_TYPES):
        return None
    if iid is None or label is None or itype is None:
        return None
    t = cast(ItemType, itype)
    _check_fits_type(ctx, r, t, unit, mn, mx, options, forbidden)
    _check_extras(ctx, r, t, must_be, max_length, not_future, decimals, expect)
    required_if = None
    if req_if_node is not None:
        required_if = condition(
            ctx, req_if_node, r.line_of("required_if"), f"{r.where}.required_if", None
        )
    return Item(
        id=iid,
        label=label,
        type=t,
        required=required,
        unit=unit,
        min=mn,
        max=mx,
        options=options,
        forbidden=forbidden,
        must_be=must_be,
        expect=expect,
        required_if=required_if,
        max_length=max_length,
        not_future=not_future,
        decimals=decimals,
        help=help_text,
        source=item_source,
    )


def read_options(r: MapReader, seq: YList | None, where: str) -> tuple[Option, ...]:
    """``{id, label}`` entries: a choice item's options, a side exit's reasons."""
    options: list[Option] = []
    for o in r.entries(seq, where):
        oid, olabel = o.ident("id"), o.text("label")
        o.done()
        if oid and olabel:
            options.append(Option(oid, olabel))
    return tuple(options)


def _forbidden(ctx: Context, r: MapReader) -> tuple[Forbidden, ...]:
    forbidden: list[Forbidden] = []
    for f in r.entries(r.seq("forbidden", required=False), f"{r.where}.forbidden"):
        value, reason, source = f.ident("value"), f.text("reason"), f.text("source")
        f.done()
        ctx.cite(f.line_of("source"), source, f.where)
        if value and reason and source:
            forbidden.append(Forbidden(value, reason, source))
    return tuple(forbidden)


def _must_be(ctx: Context, r: MapReader) -> bool | None:
    must_be_raw = r.raw("must_be")
    if must_be_raw is None:
        return None
    if not isinstance(must_be_raw, bool):
        ctx.issues.add(r.line_of("must_be"), f"{r.where}.must_be must be true or false")
        return None
    return must_be_raw


def _check_fits_type(
    ctx: Context,
    r: MapReader,
    t: ItemType,
    unit: str | None,
    mn: Decimal | None,
    mx: Decimal | None,
    options: tuple[Option, ...],
    forbidden: tuple[Forbidden, ...],
) -> None:
    """Units and bounds only on numbers; options and forbidden values only on choices."""
    line = r.line
    numeric = t in ("number", "integer")
    if not numeric and (unit is not None or mn is not None or mx is not None):
        ctx.issues.add(
            line, f"{r.where}: unit, min and max are only for number and integer items, not {t}"
        )
    if mn is not None and mx is not None and mn > mx:
        ctx.issues.add(line, f"{r.where}: min ({mn}) is above max ({mx})")
    if t == "choice" and not options:
        ctx.issues.add(line, f"{r.where}: a choice item needs at least one option")
    if t != "choice" and (options or forbidden):
        ctx.issues.add(line, f"{r.where}: options and forbidden are only for choice items")
    for fb in forbidden:
        if fb.value in {o.id for o in options}:
            ctx.issues.add(line, f"{r.where}: '{fb.value}' is both an option and forbidden")


def _check_extras(
    ctx: Context,
    r: MapReader,
    t: ItemType,
    must_be: bool | None,
    max_length: int | None,
    not_future: bool,
    decimals: int | None,
    expect: str | None,
) -> None:
    """must_be, max_length, not_future, decimals and expect each fit only some item types."""
    line = r.line
    if must_be is not None and t != "boolean":
        ctx.issues.add(line, f"{r.where}: must_be is only for boolean items")
    if max_length is not None and (t != "text" or max_length <= 0):
        ctx.issues.add(line, f"{r.where}: max_length must be a positive number on a text item")
    if not_future and t not in ("date", "datetime"):
        ctx.issues.add(line, f"{r.where}: not_future is only for date and datetime items")
    if decimals is not None and (t != "number" or decimals < 0 or decimals > 6):
        ctx.issues.add(line, f"{r.where}: decimals (0 to 6) is only for number items")
    if expect is not None:
        _check_expect(ctx, r, expect, t)
        if t == "number" and decimals is None:
            ctx.issues.add(
                line,
                f"{r.where}: a number checked against {expect} must say "
                "how many decimals an entry needs (decimals: 0 to 6)",
            )


def _bound(ctx: Context, r: MapReader, key: str) -> Decimal | None:
    value = r.raw(key)
    if value is None:
        return None
    if isinstance(value, str) and not is_float_text(value):
        # A reference to a protocol quantity, e.g. dosing.weight.accepted_min, so a bound
        # is written once with its source.
        q = ctx.quantity_refs.get(value)
        if q is None:
            ctx.issues.add(
                r.line_of(key),
                f"{r.where}.{key} '{value}' is neither a number "
                f"nor a known quantity (known: "
                f"{', '.join(sorted(ctx.quantity_refs))})",
            )
            return None
        return q.value
    return to_decimal(ctx.issues, value, r.line_of(key), f"{r.where}.{key}")


def _check_expect(ctx: Context, r: MapReader, expect: str, t: ItemType) -> None:
    ns, _, field = expect.partition(".")
    fields = EXPECT_NAMESPACES.get(ns)
    if fields is None or field not in fields:
        allowed = ", ".join(f"{n}.{f}" for n, fs in EXPECT_NAMESPACES.items() for f in fs)
        ctx.issues.add(
            r.line_of("expect"),
            f"{r.where}.expect '{expect}' is not a known value (allowed: {allowed})",
        )
        return
    want = fields[field]
    compatible = (
        want == t
        or (want == "integer" and t == "number")
        or (want == "number" and t in ("number", "integer"))
    )
    if not compatible:
        ctx.issues.add(
            r.line_of("expect"),
            f"{r.where}: a {t} item cannot be checked against {expect} (a {want})",
        )
