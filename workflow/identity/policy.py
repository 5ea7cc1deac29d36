"""Local security policy: lockout, password aging, session continuity, password rules.

The defaults below are this installation's policy unless the site changes them; each is a
site decision, documented here so an auditor can see what was in force:

* 5 failed password attempts lock the account for 15 minutes (21 CFR 11.300(d): attempted misuse
  is stopped and recorded; every attempt is in the ``auth_events`` table).
* Passwords expire after 180 days (11.300(b): password aging); ``None`` turns aging off.
* A signing session (11.200(a)(1)(i)) stays continuous while used at least every 15 minutes and
  for at most 12 hours (one shift); after that both username and password are needed again.
* Passwords have at least 12 characters, at most 256, and do not contain the username.
* Passwords are stored as argon2id hashes at argon2-cffi's defaults, RFC 9106's second
  recommended (low-memory) profile: 64 MiB, 3 passes, 4 lanes, about 300 ms of CPU a check here.
  A site may lower that to OWASP's Password Storage Cheat Sheet minimum for argon2id (19 MiB,
  2 passes, 1 lane: about 60 ms) where tablets wait on a busy shared server, or raise it; never
  below that floor. A hash keeps the parameters it was made with, so a changed cost applies to
  each password at its owner's next successful check (it is then hashed again).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from workflow.core.errors import InputError

# OWASP Password Storage Cheat Sheet, argon2id: "a minimum configuration of 19 MiB of memory,
# an iteration count of 2, and 1 degree of parallelism". Upper bounds keep a typo from making a
# sign-in take minutes (1 GiB, 10 passes, 16 lanes).
HASH_MEMORY_KIB = (19 * 1024, 1024 * 1024)
HASH_ITERATIONS = (2, 10)
HASH_LANES = (1, 16)


@dataclass(frozen=True)
class PasswordHashCost:
    """The argon2id parameters new password hashes are made with (RFC 9106 low-memory profile,
    argon2-cffi's defaults, unless the site sets others within the bounds above)."""

    memory_kib: int = 64 * 1024
    iterations: int = 3
    lanes: int = 4

    def __post_init__(self) -> None:
        for name, (low, high) in (
            ("memory_kib", HASH_MEMORY_KIB),
            ("iterations", HASH_ITERATIONS),
            ("lanes", HASH_LANES),
        ):
            value = getattr(self, name)
            if not low <= value <= high:
                raise InputError(f"password_hash_{name}", f"must be between {low} and {high}")


@dataclass(frozen=True)
class SecurityPolicy:
    max_failed_attempts: int = 5
    lockout: timedelta = timedelta(minutes=15)
    password_max_age: timedelta | None = timedelta(days=180)
    session_idle_limit: timedelta = timedelta(minutes=15)
    session_max_length: timedelta = timedelta(hours=12)
    min_password_length: int = 12
    max_password_length: int = 256
    password_hash: PasswordHashCost = PasswordHashCost()

    def __post_init__(self) -> None:
        if self.max_failed_attempts < 1:
            raise InputError("max_failed_attempts", "must be 1 or more")
        for name in ("lockout", "session_idle_limit", "session_max_length"):
            if getattr(self, name) <= timedelta(0):
                raise InputError(name, "must be longer than zero")
        if self.password_max_age is not None and self.password_max_age <= timedelta(0):
            raise InputError("password_max_age", "must be longer than zero, or None")
        if not 1 <= self.min_password_length <= self.max_password_length:
            raise InputError("min_password_length", "must be between 1 and the maximum")

    def tries_left(self, failed: int) -> int:
        """Wrong passwords still allowed before the lockout, after ``failed`` in a row."""
        return max(0, self.max_failed_attempts - failed)

    def refused_message(self, failed: int) -> str:
        """The words for a wrong username or password: the same for an unknown name as for an
        account (both are counted alike), and how many tries remain before the lockout."""
        left = self.tries_left(failed)
        minutes = int(self.lockout.total_seconds() // 60)
        if left == 0:
            return f"Wrong username or password. Locked for {minutes} minutes after {failed} tries."
        tries = "try" if left == 1 else "tries"
        return f"Wrong username or password. {left} {tries} left before a {minutes}-minute lockout."

    def check_new_password(self, username: str, password: str) -> None:
        """Refuse a password that breaks the rules; the message never repeats the password."""
        if len(password) < self.min_password_length:
            raise InputError(
                "password", f"must have at least {self.min_password_length} characters"
            )
        if len(password) > self.max_password_length:
            raise InputError("password", f"must have at most {self.max_password_length} characters")
        if password.strip() != password or not password.strip():
            raise InputError("password", "must not start or end with spaces")
        if username and username.lower() in password.lower():
            raise InputError("password", "must not contain the username")
