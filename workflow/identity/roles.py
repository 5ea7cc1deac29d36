"""The fixed set of roles a user can hold. A signature is always made in exactly one of them."""

from __future__ import annotations

from collections.abc import Iterable

from workflow.core.errors import InputError

NURSE = "nurse"
PHARMACY_TECHNICIAN = "pharmacy_technician"
PHARMACIST = "pharmacist"
PRESCRIBER = "prescriber"
AUDITOR = "auditor"
ADMIN = "admin"

ROLES = frozenset({NURSE, PHARMACY_TECHNICIAN, PHARMACIST, PRESCRIBER, AUDITOR, ADMIN})


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InputError("role", f"unknown role {role!r}", ", ".join(sorted(ROLES)))
    return role


def check_roles(roles: Iterable[str]) -> frozenset[str]:
    chosen = frozenset(check_role(r) for r in roles)
    if not chosen:
        raise InputError("roles", "a user needs at least one role", ", ".join(sorted(ROLES)))
    return chosen


def encode_roles(roles: frozenset[str]) -> str:
    return " ".join(sorted(roles))


def decode_roles(text: str) -> frozenset[str]:
    return frozenset(text.split())
