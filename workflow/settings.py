"""Site settings: ``<home>/bedside.yaml``, read once into a frozen object.

Everything here is a local decision (security policy, the site's time zone, the web's idle
timeout), never a clinical number. A missing file means the documented defaults. Unknown keys,
wrong types and bad values are refused with one error type naming the file, line and key, like
pyHanko's configuration loading.

Example::

    site:
      name: Ward 7B, Example Cancer Centre
      time_zone: Europe/Oslo
    security:
      max_failed_attempts: 5
      lockout_minutes: 15
      password_max_age_days: 180      # or null to turn password aging off
      session_idle_minutes: 15        # 21 CFR 11.200 continuous signing session
      session_max_hours: 12
      min_password_length: 12
    web:
      idle_timeout_minutes: 15
      session_retention_days: 30      # ended sessions (verifiers wiped) deleted after this
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import InputError, ProtocolError
from .identity import SecurityPolicy
from .protocol._fields import Issues, MapReader
from .protocol._yaml import load_located

SETTINGS_FILE = "bedside.yaml"


@dataclass(frozen=True)
class Settings:
    site_name: str = "Bedside site"
    time_zone: str = "UTC"
    security: SecurityPolicy = field(default_factory=SecurityPolicy)
    web_idle_timeout: timedelta = timedelta(minutes=15)
    # How long an ended web session's row (who, when; never a verifier) is kept.
    web_session_retention: timedelta = timedelta(days=30)
    source: str = "defaults"

    @property
    def tz(self) -> tzinfo:
        return ZoneInfo(self.time_zone)


def load_settings(home: Path) -> Settings:
    path = home / SETTINGS_FILE
    if not path.exists():
        return Settings()
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError("settings", f"cannot read {name}: {exc}") from None
    root, found = load_located(text, name)
    issues = Issues(name)
    issues.items.extend(found)
    if root is None or found:
        raise ProtocolError(issues.items)
    top = MapReader(issues, root, "settings", 1)
    site = top.sub("site", required=False)
    security = top.sub("security", required=False)
    web = top.sub("web", required=False)
    top.done()
    values: dict[str, object] = {}
    if site is not None:
        values["site_name"] = site.text("name", required=False, default="Bedside site")
        zone = site.text("time_zone", required=False, default="UTC") or "UTC"
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            issues.add(
                site.line_of("time_zone"),
                f"site.time_zone '{zone}' is not a known time zone (e.g. UTC, Europe/Oslo)",
            )
        values["time_zone"] = zone
        site.done()
    policy = SecurityPolicy()
    if security is not None:
        kwargs: dict[str, object] = {}
        for key, target, unit in (
            ("max_failed_attempts", "max_failed_attempts", None),
            ("lockout_minutes", "lockout", "minutes"),
            ("session_idle_minutes", "session_idle_limit", "minutes"),
            ("session_max_hours", "session_max_length", "hours"),
            ("min_password_length", "min_password_length", None),
        ):
            number = security.whole(key, required=False)
            if number is not None:
                kwargs[target] = timedelta(**{unit: number}) if unit else number
        if security.has("password_max_age_days"):
            raw = security.raw("password_max_age_days")
            if raw is None:
                kwargs["password_max_age"] = None
            else:
                days = security.whole("password_max_age_days", required=False)
                if days is not None:
                    kwargs["password_max_age"] = timedelta(days=days)
        security.done()
        try:
            policy = SecurityPolicy(**kwargs)  # type: ignore[arg-type]
        except InputError as exc:
            issues.add(security.line, f"security: {exc.message}")
    idle = timedelta(minutes=15)
    retention = timedelta(days=30)
    if web is not None:
        days = web.whole("session_retention_days", required=False)
        if days is not None:
            if not 1 <= days <= 3650:
                issues.add(
                    web.line_of("session_retention_days"),
                    "web.session_retention_days must be between 1 and 3650",
                )
            else:
                retention = timedelta(days=days)
        minutes = web.whole("idle_timeout_minutes", required=False)
        if minutes is not None:
            if minutes < 1:
                issues.add(
                    web.line_of("idle_timeout_minutes"),
                    "web.idle_timeout_minutes must be 1 or more",
                )
            else:
                idle = timedelta(minutes=minutes)
        web.done()
    if issues.items:
        raise ProtocolError(issues.items)
    return Settings(
        site_name=str(values.get("site_name", "Bedside site")),
        time_zone=str(values.get("time_zone", "UTC")),
        security=policy,
        web_idle_timeout=idle,
        web_session_retention=retention,
        source=name,
    )
