"""Site settings: ``<home>/bedside.yaml``, read once per command into frozen dataclasses.

Everything here is a local decision (security policy, the site's time zone, the web's idle
timeout), never a clinical number. A missing file means the documented defaults. Every problem
in a file (an unknown key, a wrong type, a value out of its range) is reported at once, one
``FILE:LINE: key: message`` line each, as one :class:`ConfigError` (exit 2).

The service opens a home with these settings (``open_bedside`` sets ``Bedside.settings``) and
every entry point reads them from there: the CLI, ``bedside serve`` and the web app factory. A
command-line flag that overrides a setting says so in its ``--help`` (``serve --idle-minutes``).

Example (every key, with its default and range)::

    site:
      name: Ward 7B, Example Cancer Centre  # text, up to 200 characters
      time_zone: Europe/Oslo                # an IANA zone; default UTC
    security:
      max_failed_attempts: 5          # 1 to 100
      lockout_minutes: 15             # 1 to 1440
      password_max_age_days: 180      # 1 to 3650, or null to turn password aging off
      session_idle_minutes: 15        # 1 to 1440; 21 CFR 11.200 continuous signing session
      session_max_hours: 12           # 1 to 24
      min_password_length: 12         # 1 to 256
      password_hash_memory_kib: 65536 # argon2id memory, 19456 (OWASP's floor) to 1048576
      password_hash_iterations: 3     # argon2id passes, 2 to 10
      password_hash_lanes: 4          # argon2id parallelism, 1 to 16
    web:
      idle_timeout_minutes: 15        # 1 to 1440; `bedside serve --idle-minutes` overrides it
      session_retention_days: 30      # 1 to 3650; ended sessions (verifiers wiped) deleted after
    labels:
      symbology: gs1_datamatrix       # the bag label's code: gs1_datamatrix or gs1_qr
    bench:
      balance_port: /dev/ttyUSB0      # a laboratory balance (MT-SICS) on this serial port;
                                      # unset: weights are typed in with a reason
      balance_baud: 9600              # 1200 to 115200
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from workflow.core.errors import ConfigError, ConfigIssue, InputError
from workflow.identity.policy import (
    HASH_ITERATIONS,
    HASH_LANES,
    HASH_MEMORY_KIB,
    PasswordHashCost,
    SecurityPolicy,
)

__all__ = [
    "ConfigError",
    "ConfigIssue",
    "Settings",
    "check_time_zone",
    "load_settings",
    "parse_settings",
    "settings_text",
]

SETTINGS_FILE = "bedside.yaml"
# One range per number, used by the file and by any flag that overrides the same setting.
IDLE_MINUTES = (1, 24 * 60)
RETENTION_DAYS = (1, 3650)
_MAX_NAME = 200
SYMBOLOGIES = ("gs1_datamatrix", "gs1_qr")  # labels.symbology (workflow/records/labels.py)
BAUD_RATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)


@dataclass(frozen=True)
class Settings:
    site_name: str = "Bedside site"
    time_zone: str = "UTC"
    security: SecurityPolicy = field(default_factory=SecurityPolicy)
    web_idle_timeout: timedelta = timedelta(minutes=15)
    web_session_retention: timedelta = timedelta(days=30)
    label_symbology: str = "gs1_datamatrix"
    balance_port: str | None = None  # bench.balance_port: None means typed weights only
    balance_baud: int = 9600
    source: str = "defaults"

    @property
    def tz(self) -> tzinfo:
        return ZoneInfo(self.time_zone)


class _Reader:
    """Typed reading of one section, collecting issues with the file's line numbers."""

    def __init__(self, file: str, issues: list[ConfigIssue]) -> None:
        self.file = file
        self.issues = issues

    def add(self, line: int, key: str, message: str) -> None:
        self.issues.append(ConfigIssue(self.file, line, key, message))

    def section(self, node: Any, line: int, key: str, allowed: Sequence[str]) -> dict[str, Any]:
        """The mapping at ``key`` (its known keys only); unknown keys are issues."""
        from workflow.core.protocol._yaml import YMap

        if not isinstance(node, YMap):
            self.add(getattr(node, "line", line), key, "must be a mapping of keys to values")
            return {}
        for k in node:
            if k not in allowed:
                where = f"{key}.{k}" if key != "(top level)" else str(k)
                self.add(node.line_of(k), where, f"unknown key (allowed: {', '.join(allowed)})")
        return {k: (node[k], node.line_of(k)) for k in node if k in allowed}

    def sub(self, top: dict[str, Any], key: str, allowed: Sequence[str]) -> dict[str, Any]:
        """A top-level section, or nothing when the file leaves it out (its defaults)."""
        if key not in top:
            return {}
        node, line = top[key]
        return self.section(node, line, key, allowed)

    def whole(
        self, found: dict[str, Any], section: str, key: str, bounds: tuple[int, int]
    ) -> int | None:
        if key not in found:
            return None
        value, line = found[key]
        low, high = bounds
        name = f"{section}.{key}"
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(line, name, f"must be a whole number (allowed: {low} to {high})")
            return None
        if not low <= value <= high:
            self.add(line, name, f"{value} is out of range (allowed: {low} to {high})")
            return None
        return value

    def text(self, found: dict[str, Any], section: str, key: str) -> str | None:
        if key not in found:
            return None
        value, line = found[key]
        if not isinstance(value, str) or not value.strip():
            self.add(line, f"{section}.{key}", "must be text (not empty)")
            return None
        if len(value) > _MAX_NAME:
            self.add(line, f"{section}.{key}", f"must be at most {_MAX_NAME} characters")
            return None
        return value.strip()


def load_settings(home: Path) -> Settings:
    """``home``'s settings, or the defaults when it has no ``bedside.yaml``; ConfigError."""
    path = home / SETTINGS_FILE
    if not path.exists():
        return Settings()
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(name, 1, "(file)", f"cannot be read: {exc}")]) from None
    return parse_settings(text, name)


def parse_settings(text: str, name: str) -> Settings:
    from workflow.core.protocol._yaml import load_located

    issues: list[ConfigIssue] = []
    if not text.strip() or all(
        not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()
    ):
        raise ConfigError(
            [ConfigIssue(name, 1, "(file)", "is empty; delete it to use the defaults")]
        )
    root, found = load_located(text, name)
    for issue in found:  # YAML syntax, duplicate keys, unsafe tags: already FILE:LINE
        issues.append(ConfigIssue(name, issue.line, "(file)", issue.message))
    if issues:
        raise ConfigError(issues)
    r = _Reader(name, issues)
    top = r.section(root, 1, "(top level)", ("site", "security", "web", "labels", "bench"))
    site = r.sub(top, "site", ("name", "time_zone"))
    security = r.sub(
        top,
        "security",
        (
            "max_failed_attempts",
            "lockout_minutes",
            "password_max_age_days",
            "session_idle_minutes",
            "session_max_hours",
            "min_password_length",
            "password_hash_memory_kib",
            "password_hash_iterations",
            "password_hash_lanes",
        ),
    )
    web = r.sub(top, "web", ("idle_timeout_minutes", "session_retention_days"))
    labels = r.sub(top, "labels", ("symbology",))
    bench = r.sub(top, "bench", ("balance_port", "balance_baud"))
    symbology = r.text(labels, "labels", "symbology") or Settings.label_symbology
    if symbology not in SYMBOLOGIES:
        r.add(
            labels["symbology"][1],
            "labels.symbology",
            f"'{symbology}' is not a symbology (allowed: {', '.join(SYMBOLOGIES)})",
        )
    port = r.text(bench, "bench", "balance_port")
    baud = r.whole(bench, "bench", "balance_baud", (BAUD_RATES[0], BAUD_RATES[-1]))
    if baud is not None and baud not in BAUD_RATES:
        r.add(
            bench["balance_baud"][1],
            "bench.balance_baud",
            f"{baud} is not a serial rate (allowed: {', '.join(map(str, BAUD_RATES))})",
        )

    site_name = r.text(site, "site", "name") or Settings.site_name
    zone = r.text(site, "site", "time_zone") or Settings.time_zone
    if "time_zone" in site:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            r.add(
                site["time_zone"][1],
                "site.time_zone",
                f"'{zone}' is not a known time zone (e.g. UTC, Europe/Oslo)",
            )
    policy = _policy(r, security)
    idle = r.whole(web, "web", "idle_timeout_minutes", IDLE_MINUTES)
    retention = r.whole(web, "web", "session_retention_days", RETENTION_DAYS)
    if issues:
        raise ConfigError(issues)
    return Settings(
        site_name=site_name,
        time_zone=zone,
        security=policy,
        web_idle_timeout=timedelta(minutes=idle) if idle is not None else timedelta(minutes=15),
        web_session_retention=(
            timedelta(days=retention) if retention is not None else timedelta(days=30)
        ),
        label_symbology=symbology,
        balance_port=port,
        balance_baud=baud if baud is not None else Settings.balance_baud,
        source=name,
    )


def _policy(r: _Reader, found: dict[str, Any]) -> SecurityPolicy:
    kwargs: dict[str, Any] = {}
    for key, target, unit, bounds in (
        ("max_failed_attempts", "max_failed_attempts", None, (1, 100)),
        ("lockout_minutes", "lockout", "minutes", (1, 24 * 60)),
        ("session_idle_minutes", "session_idle_limit", "minutes", (1, 24 * 60)),
        ("session_max_hours", "session_max_length", "hours", (1, 24)),
        ("min_password_length", "min_password_length", None, (1, 256)),
    ):
        number = r.whole(found, "security", key, bounds)
        if number is not None:
            kwargs[target] = timedelta(**{unit: number}) if unit else number
    if "password_max_age_days" in found:
        if found["password_max_age_days"][0] is None:
            kwargs["password_max_age"] = None  # null: password aging off, said outright
        else:
            days = r.whole(found, "security", "password_max_age_days", (1, 3650))
            if days is not None:
                kwargs["password_max_age"] = timedelta(days=days)
    cost: dict[str, int] = {}
    for name, bounds in (
        ("memory_kib", HASH_MEMORY_KIB),
        ("iterations", HASH_ITERATIONS),
        ("lanes", HASH_LANES),
    ):
        number = r.whole(found, "security", f"password_hash_{name}", bounds)
        if number is not None:
            cost[name] = number
    if cost:
        kwargs["password_hash"] = PasswordHashCost(**cost)
    try:
        return SecurityPolicy(**kwargs)
    except InputError as exc:  # the policy's own cross-checks, should the ranges above allow
        line = min((line for _, line in found.values()), default=1)
        r.add(line, f"security.{exc.field}", exc.message)
        return SecurityPolicy()


def check_time_zone(zone: str, field: str = "time-zone") -> str:
    """An IANA zone name as given, or InputError naming ``field``."""
    text = zone.strip()
    try:
        if not text:
            raise ValueError(text)
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(
            field, f"'{zone}' is not a known time zone", "an IANA zone, e.g. UTC, Europe/Oslo"
        ) from None
    return text


def settings_text(site_name: str, time_zone: str) -> str:
    """A new ``bedside.yaml`` (``bedside init``): the site's name and zone, and every other
    setting at its default, commented out, with its range (parse_settings reads it back)."""
    name = json.dumps(site_name.strip()[:_MAX_NAME] or Settings.site_name)  # YAML-safe quoting
    return f"""# Bedside site settings (README, "Site settings"): local, never clinical numbers.
site:
  name: {name}              # text, up to {_MAX_NAME} characters
  time_zone: {time_zone}      # IANA zone: the schedule's days, times on pages and labels
# security:
#   max_failed_attempts: 5          # 1 to 100; then the account locks
#   lockout_minutes: 15             # 1 to 1440
#   password_max_age_days: 180      # 1 to 3650, or null to turn password aging off
#   session_idle_minutes: 15        # 1 to 1440; 21 CFR 11.200 continuous signing session
#   session_max_hours: 12           # 1 to 24
#   min_password_length: 12         # 1 to 256
#   password_hash_memory_kib: 65536 # argon2id memory, 19456 (OWASP's floor) to 1048576;
#   password_hash_iterations: 3     # passes, 2 to 10; lanes, 1 to 16 (RFC 9106's low-memory
#   password_hash_lanes: 4          # profile; each password takes a new cost at its next use)
# web:
#   idle_timeout_minutes: 15        # 1 to 1440; `bedside serve --idle-minutes` overrides it
#   session_retention_days: 30      # 1 to 3650; ended web sessions are deleted after this
"""
