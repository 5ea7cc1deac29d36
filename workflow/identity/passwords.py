"""argon2id password hashes (argon2-cffi). Plain passwords live only in local variables."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .policy import PasswordHashCost


def default_hasher() -> PasswordHasher:
    """argon2-cffi's defaults: argon2id with RFC 9106's low-memory profile (t=3, 64 MiB, p=4)."""
    return PasswordHasher()


def hasher_for(cost: PasswordHashCost) -> PasswordHasher:
    """An argon2id hasher making hashes at the site's cost (security.password_hash_*)."""
    return PasswordHasher(
        time_cost=cost.iterations, memory_cost=cost.memory_kib, parallelism=cost.lanes
    )


class Passwords:
    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or default_hasher()
        self._dummy: str | None = None

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def verify(self, stored_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when the hash was made with weaker parameters than the current hasher's."""
        return self.hasher.check_needs_rehash(stored_hash)

    def burn(self, password: str) -> None:
        """Spend the same time as a real check, for unknown usernames: answering faster would
        tell an attacker which usernames exist."""
        if self._dummy is None:
            self._dummy = self.hasher.hash("bedside-dummy-password")
        self.verify(self._dummy, password)
