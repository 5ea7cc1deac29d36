"""The protocol file's head sections: ``protocol`` (id, name, version, drug), ``sources``,
``roles`` and ``side_exits`` (hold, discontinue, waste and the like)."""

from __future__ import annotations

from typing import cast

from workflow.core.events import MEANINGS

from ._context import Context
from ._fields import MapReader
from ._items import read_options
from .model import SIDE_EXITS, Role, SideExit, Source

_LABELS = ("current", "old", "none")


def meta(r: MapReader) -> tuple[str, str, str, str, str] | None:
    pid = r.text("id")
    name = r.text("name")
    version = r.text("version")
    drug = r.text("drug")
    brand = r.text("brand")
    r.done()
    if None in (pid, name, version, drug, brand):
        return None
    return cast(tuple[str, str, str, str, str], (pid, name, version, drug, brand))


def route(r: MapReader) -> str | None:
    """The protocol's route id (``protocol.route``, 1.7.0): optional, older texts lack it.
    Read before :func:`meta`, which reports every key not read by then as unknown."""
    return r.ident("route", required=False)


def sources(ctx: Context, r: MapReader) -> None:
    for key, sub in r.subs():
        title = sub.text("title")
        citation = sub.text("citation")
        label = sub.text("label")
        url = sub.text("url", required=False)
        sub.done()
        if label is not None and label not in _LABELS:
            ctx.issues.add(
                sub.line_of("label"),
                f"sources.{key}.label '{label}' is not allowed (allowed: {', '.join(_LABELS)})",
            )
            continue
        if title and citation and label:
            ctx.sources[key] = Source(key, title, citation, label, url)


def roles(ctx: Context, r: MapReader) -> None:
    for key, sub in r.subs():
        title = sub.text("title")
        sub.done()
        if title:
            ctx.roles[key] = Role(key, title)


def side_exits(ctx: Context, r: MapReader) -> dict[str, SideExit] | None:
    out: dict[str, SideExit] = {}
    for name in SIDE_EXITS:
        sub = r.sub(name)
        if sub is None:
            continue
        roles = sub.ident_list("roles", required=True)
        meaning = sub.ident("meaning")
        seq = sub.seq("reasons")
        reasons = read_options(sub, seq, f"side_exits.{name}.reasons")
        sub.done()
        for role in roles:
            if role not in ctx.roles:
                ctx.issues.add(
                    sub.line_of("roles"),
                    f"side_exits.{name}.roles: role '{role}' is not defined",
                )
        if meaning is not None and meaning not in MEANINGS:
            ctx.issues.add(
                sub.line_of("meaning"),
                f"side_exits.{name}.meaning '{meaning}' "
                "is not a Part 11 signature meaning "
                f"(allowed: {', '.join(sorted(MEANINGS))})",
            )
        if seq is not None and not reasons:
            ctx.issues.add(
                sub.line_of("reasons"), f"side_exits.{name}.reasons needs at least one reason"
            )
        if roles and meaning and reasons:
            out[name] = SideExit(name, roles, meaning, tuple(reasons))
    r.done()
    return out if len(out) == len(SIDE_EXITS) else None
